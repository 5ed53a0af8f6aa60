"""Q-BERT layer sensitivity and Hessian-guided mixed-precision bit allocation.

Follows Shen et al. 2020, "Q-BERT: Hessian Based Ultra Low Precision Quantization of BERT"
(arXiv:1909.05840). For every encoder layer l, the top eigenvalue lambda_l of the Hessian of the
loss with respect to that layer's weight matrices (W_Q, W_K, W_V, W_O, W_1, W_2; biases and
LayerNorms stay fp32, so they are left out) is found by power iteration on Hessian-vector
products, H v = d/dW (g . v) with g = dL/dW kept in the graph (double backward). Q-BERT repeats
this on several batches and orders layers by the mean and spread of lambda: a flat loss (small
lambda) tolerates coarser weights.

The loss is run through Headroom's own flat forward (`simulate.layer_forward(adapter)`), starting from the
hidden states that enter layer l (the Evaluator's cached trace), so layers before l cost nothing.
Attention uses the explicit softmax(QK^T)V path (`return_probs=True`), which is twice
differentiable on every device; nothing is written to the model.

Bit allocation (`allocate_bits`). A second-order Taylor expansion at a minimum gives
dL ~ 1/2 dW^T H dW <= 1/2 lambda_l ||W_l - Q_b(W_l)||^2, so the cost of giving layer l b bits is
Omega_l(b) = lambda_l * ||W_l - Q_b(W_l)||^2. Starting with every layer at the fewest candidate
bits, a greedy step raises the layer with the largest drop of Omega per extra byte to its next
candidate width, while the whole model (counted by `size.size_report`, scales included) stays
within the budget. One constraint keeps Q-BERT's ordering: a layer never gets more bits than a
more sensitive one. `uniform_bits_at_size` gives the uniform recipe to compare at equal size.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from analysis.core.adapters import ROLES
from analysis.core.quantize import QuantScheme, quantization_error
from analysis.jobs import Progress, check_cancel, report
from analysis.methods.context import EvalContext
from analysis.core.recipe import Recipe
from analysis.core.simulate import attention_context, layer_forward, simulate
from analysis.errors import HeadroomError
from analysis.measure.size import MB, size_report


# ----------------------------------------------------------------------------------- Hessian
def top_eigenvalue(
    loss_fn: Callable[[list[torch.Tensor]], torch.Tensor],
    params: list[torch.Tensor],
    *,
    iters: int = 20,
    tol: float = 1e-3,
    seed: int = 0,
) -> tuple[float, int]:
    """Largest-magnitude eigenvalue of the Hessian of `loss_fn(params)` by power iteration.

    `params` are leaf tensors with requires_grad. The gradient is built once with create_graph and
    reused for every Hessian-vector product. Returns (eigenvalue, iterations run); stops early
    when the estimate changes by less than `tol` (relative).
    """
    loss = loss_fn(params)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    g = torch.Generator(device="cpu").manual_seed(seed)
    v = [torch.randn(p.shape, generator=g).to(p.device, p.dtype) for p in params]
    norm = torch.sqrt(sum((x * x).sum() for x in v))
    v = [x / norm for x in v]
    eig, it = 0.0, 0
    for it in range(1, iters + 1):
        dot = sum((gi * vi).sum() for gi, vi in zip(grads, v))
        hv = torch.autograd.grad(dot, params, retain_graph=True)  # (H v) per tensor
        new = float(sum((h * x).sum() for h, x in zip(hv, v)))  # Rayleigh quotient v^T H v
        norm = torch.sqrt(sum((h * h).sum() for h in hv)).clamp_min(1e-30)
        v = [h.detach() / norm for h in hv]
        converged = it > 1 and abs(new - eig) <= tol * max(abs(eig), 1e-12)
        eig = new
        if converged:
            break
    return eig, it


def layer_loss_fn(adapter, layer: int, batch, labels: torch.Tensor, hidden: torch.Tensor, prepared: dict):
    """loss(params) of running layers `layer`..L-1 with `layer`'s six matrices (ROLES order) replaced by params.

    `hidden` (B, T, D) enters `layer`; `prepared` maps layer index -> LayerWeights of the rest.
    """
    mask = attention_context(adapter, batch.attention_mask, hidden.dtype)  # post-LN: (B, 1, 1, T)
    encoder_layer = layer_forward(adapter)

    def loss(params: list[torch.Tensor]) -> torch.Tensor:
        lw = prepared[layer].with_weights(dict(zip(ROLES, params)))
        h, _ = encoder_layer(hidden, mask, lw, return_probs=True)  # explicit attention: double-backward safe
        for i in range(layer + 1, adapter.num_layers):
            h, _ = encoder_layer(h, mask, prepared[i], return_probs=True)
        logits = adapter.classify(h, batch.attention_mask)
        return F.cross_entropy(logits.float(), labels)

    return loss


@dataclass
class Sensitivity:
    """Per-layer top Hessian eigenvalues (Q-BERT), mean and std over batches, and what it cost."""

    method: str
    mean: list[float]
    std: list[float]
    per_batch: list[list[float]]  # [layer][batch]
    iterations: list[list[int]]  # power iterations run, [layer][batch]
    seconds_per_layer: list[float]
    seconds: float
    num_batches: int
    num_examples: int
    max_iters: int
    device: str
    threads: int
    labels: str  # "gold" or "the model's own predictions" (unlabelled data)
    note: str = ("top eigenvalue of the loss Hessian w.r.t. each layer's Q/K/V/O/FFN weights, "
                 "power iteration on Hessian-vector products (double backward); measured time")

    def to_dict(self) -> dict:
        return asdict(self)


def hessian_sensitivity(
    ctx: EvalContext,
    *,
    iters: int = 20,
    batches: int = 4,
    batch_size: int = 32,
    layers: list[int] | None = None,
    tol: float = 1e-3,
    progress: Progress = None,
    cancel: threading.Event | None = None,
) -> Sensitivity:
    """Q-BERT sensitivity of every layer over the first `batches` batches of `batch_size` examples."""
    adapter = ctx.adapter
    L = adapter.num_layers
    layers = list(range(L)) if layers is None else layers
    if iters < 1 or batches < 1:
        raise HeadroomError("--iters and --batches must be at least 1.")
    # Own fp32 weights, built outside inference mode (tensors made under inference_mode cannot be
    # saved for backward).
    with torch.no_grad():
        prepared = simulate(adapter, Recipe()).layers
    use_gold = ctx.labels is not None
    chunks = _chunks(ctx, batches, batch_size, label_free=not use_gold)
    per_batch = [[0.0] * len(chunks) for _ in range(L)]
    iterations = [[0] * len(chunks) for _ in range(L)]
    seconds_per_layer = [0.0] * L
    t_all = time.perf_counter()
    steps, done = len(layers) * len(chunks), 0
    for l in layers:
        t0 = time.perf_counter()
        for c, (batch, hidden_all, labels) in enumerate(chunks):
            check_cancel(cancel, "sensitivity computation")
            report(progress, done / steps, f"layer {l}, batch {c + 1}/{len(chunks)}")
            params = [prepared[l].weight(r).detach().clone().float().requires_grad_(True) for r in ROLES]
            fn = layer_loss_fn(adapter, l, batch, labels, hidden_all[l], prepared)
            eig, its = top_eigenvalue(fn, params, iters=iters, tol=tol, seed=c)
            per_batch[l][c], iterations[l][c] = eig, its
            done += 1
        seconds_per_layer[l] = time.perf_counter() - t0
    report(progress, 1.0, "done")
    mean = [statistics.fmean(r) if r else 0.0 for r in per_batch]
    std = [statistics.pstdev(r) if len(r) > 1 else 0.0 for r in per_batch]
    return Sensitivity(
        method="hessian", mean=mean, std=std, per_batch=per_batch, iterations=iterations,
        seconds_per_layer=[round(s, 3) for s in seconds_per_layer], seconds=round(time.perf_counter() - t_all, 3),
        num_batches=len(chunks), num_examples=sum(b.input_ids.shape[0] for b, _, _ in chunks), max_iters=iters,
        device=str(ctx.device), threads=torch.get_num_threads(),
        labels="gold" if use_gold else "the model's own predictions (the data has no labels)",
    )


def _chunks(ctx: EvalContext, batches: int, batch_size: int, *, label_free: bool):
    """(batch, [hidden entering each layer], targets) for up to `batches` slices of the data."""
    from analysis.io.batching import Batch

    with torch.no_grad():
        sim = simulate(ctx.adapter, Recipe())
        out = []
        for b in ctx.batches:
            for start in range(0, b.input_ids.shape[0], batch_size):
                if len(out) >= batches:
                    return out
                sl = slice(start, start + batch_size)
                sub = Batch(b.input_ids[sl].clone(), b.attention_mask[sl].clone(),
                            None if b.token_type_ids is None else b.token_type_ids[sl].clone(), b.example_ids[sl].clone())
                labels = ctx.targets(sub, label_free)  # (b,)
                hidden = [h.float() for h in sim.forward(sub, output_hidden_states=True).hidden_states]
                out.append((sub, hidden, labels))
        return out


# ----------------------------------------------------------------------------------- allocation
@dataclass
class BitAllocation:
    bits: list[int]
    size_mb: float
    budget_mb: float
    recipe: dict
    sensitivity: list[float]
    candidate_bits: list[int]
    predicted_cost: float  # sum_l lambda_l ||W_l - Q(W_l)||^2 / 2 (second-order estimate)
    steps: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _layer_errors(adapter, bits_options, recipe: Recipe) -> list[dict[int, float]]:
    """||W_l - Q_b(W_l)||^2 summed over each layer's six matrices, for every candidate b."""
    errs = []
    for l in range(adapter.num_layers):
        parts = adapter.layer(l)
        scheme = QuantScheme.for_layer(recipe, l, adapter.num_layers)
        errs.append({b: sum(quantization_error(getattr(parts, r).weight, scheme.with_bits(b), r, adapter.head_size)
                            for r in ROLES)
                     for b in bits_options})
    return errs


def allocate_bits(
    sensitivity: list[float],
    budget_mb: float,
    adapter,
    candidate_bits: tuple[int, ...] = (2, 3, 4, 8),
    granularity: str = "per-channel",
    *,
    base: Recipe | None = None,
) -> BitAllocation:
    """Bits per layer under a model-size budget (MB, whole model as `size_report` counts it).

    `base` supplies everything else (embedding bits, symmetric, num_groups, masked heads...).
    """
    L = adapter.num_layers
    if len(sensitivity) != L:
        raise HeadroomError(f"The sensitivity lists {len(sensitivity)} layers but the model has {L}.")
    cands = sorted(set(int(b) for b in candidate_bits))
    base = (base or Recipe()).replace(granularity=granularity)
    bits = [cands[0]] * L

    def size_of(b: list[int]) -> float:
        return size_report(adapter, base.replace(weight_bits=list(b))).bytes

    size = size_of(bits)
    budget = budget_mb * MB
    if size > budget:
        raise HeadroomError(
            f"A budget of {budget_mb} MB is too small: even {cands[0]}-bit layers give {size / MB:.2f} MB "
            f"(embeddings at {base.embedding_bits} bits); raise the budget or lower --embedding-bits.")
    errs = _layer_errors(adapter, cands, base)
    lam = [abs(s) for s in sensitivity]
    steps = []
    while True:
        best = None
        for l in range(L):
            higher = [b for b in cands if b > bits[l]]
            if not higher:
                continue
            nb = higher[0]
            # Q-BERT's ordering: never more bits than a strictly more sensitive layer.
            if any(bits[m] < nb for m in range(L) if lam[m] > lam[l]):
                continue
            trial = bits.copy()
            trial[l] = nb
            new_size = size_of(trial)
            if new_size > budget:
                continue
            gain = lam[l] * (errs[l][bits[l]] - errs[l][nb]) / max(new_size - size, 1.0)
            if best is None or gain > best[0]:
                best = (gain, l, nb, new_size)
        if best is None:
            break
        _, l, nb, size = best
        steps.append(f"layer {l}: {bits[l]} -> {nb} bits ({size / MB:.3f} MB)")
        bits[l] = nb
    recipe = base.replace(weight_bits=bits, name=f"Hessian-guided {'/'.join(map(str, bits))} bits")
    cost = sum(lam[l] * errs[l][bits[l]] / 2 for l in range(L))
    return BitAllocation(bits, size / MB, budget_mb, recipe.to_dict(), list(sensitivity), cands, cost, steps)


def uniform_bits_at_size(
    adapter, size_mb: float, *, candidate_bits: tuple[int, ...] = (2, 3, 4, 5, 6, 8), base: Recipe | None = None,
    granularity: str | None = None,
) -> dict:
    """The uniform-bits recipe with the largest size not above `size_mb` (and the next one up).

    Uniform widths come in steps, so the sizes rarely match exactly: both neighbours are returned
    so a comparison can be honest about which side of equal size it sits.
    """
    base = base or Recipe()
    if granularity:
        base = base.replace(granularity=granularity)
    options = []
    for b in sorted(set(candidate_bits)):
        r = base.replace(weight_bits=b, name=f"uniform {b}-bit")
        options.append((b, size_report(adapter, r).mb, r))
    tol = 1e-6 * size_mb  # equal sizes (e.g. 4/3/3/3/3/2 vs uniform 3) count as at-or-below
    below = [o for o in options if o[1] <= size_mb + tol]
    above = [o for o in options if o[1] > size_mb + tol]
    pick = below[-1] if below else options[0]
    out = {"bits": pick[0], "size_mb": round(pick[1], 4), "recipe": pick[2].to_dict(), "at_or_below_size": bool(below)}
    if above:
        out["next_up"] = {"bits": above[0][0], "size_mb": round(above[0][1], 4), "recipe": above[0][2].to_dict()}
    return out
