"""Head importance: how much each attention head matters, as an L x H array, four ways.

- `michel`  — Michel, Levy & Neubig 2019, "Are Sixteen Heads Really Better than One?". A gate
  ξ_h = 1 multiplies each head's output; the paper's importance is the expectation over
  examples I_h = E_x |∂L(x)/∂ξ_h|, a first-order estimate of the loss change when the head is
  masked. All L x H gradients come from ONE forward + backward per batch, taken with respect to
  the gates (`SimulatedModel.forward(gates=...)`), never by masking heads one at a time. Two
  modes (`MICHEL_MODES`):
  - "per-example" (the default): one gate per example — (B, nh) gates, still one backward —
    so I_h = (1/N) Σ_x |∂L(x)/∂ξ_h|, the paper's formula exactly. It does not depend on how the
    examples are batched or ordered (CPU batches of 64 and CUDA batches of 512 rank alike), and
    costs the same as per-batch.
  - "per-batch": one gate per head, the absolute value taken of each batch's summed gradient,
    I_h = (1/N) Σ_batches |Σ_{x in batch} ∂L(x)/∂ξ_h|. Gradients of different examples cancel
    inside a batch, so the ranking depends on batch size and composition.
  Neither is what HF's BERTology example (`run_bertology.py`) computes: it never zeroes
  `head_mask.grad` between batches, so after batch k it adds |g_1 + ... + g_k| (the absolute
  value of the running total) to the importance. `normalize_layer=True` divides each layer's
  row by its L2 norm, as the authors' pruning code does before ranking heads across layers.
- `ablation` — the metric drop when each head alone is masked (L x H evaluations, each through
  the Evaluator's incremental path: a head of layer l recomputes only layers l..L-1).
- `entropy` — mean attention entropy per head over real (non-padding) query tokens. Not an
  importance by itself; a diffuse (high-entropy) head is taken as the less important one.
- `taylor`  — TextPruner's score: |Σ W_O ⊙ ∂L/∂W_O| over each head's column slice of the output
  projection, per batch. Since head h's gate scales exactly that slice's input, this equals
  Michel's "per-batch" score up to rounding — it is computed the other way (w.r.t. weights) and
  serves as a cross-check.

Every function runs on an `EvalContext` (analysis/methods/context.py; the Evaluator is one).
Label-free mode uses the unmodified model's own predictions (`ctx.targets(batch, True)`) as the
targets, for data without labels; ablation then reports the drop in agreement with them.
`rank_agreement` gives Spearman's ρ between two score arrays (methods, or datasets/subsets:
the paper's "are important heads the same across datasets?").
"""

from __future__ import annotations

import copy
import dataclasses
import random
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from analysis.errors import HeadroomError
from analysis.jobs import Progress, check_cancel, report
from analysis.core.recipe import Recipe
from analysis.core.simulate import SimulatedModel
from analysis.methods.context import EvalContext, resolve_label_free

METHODS = ("michel", "ablation", "entropy", "taylor")
#: how Michel's |gradient| is taken: per example (the paper's expectation; the default) or per batch
MICHEL_MODES = ("per-example", "per-batch")


@dataclass
class HeadImportance:
    """One score per head, (L, H); NaN where the head is masked or its layer dropped."""

    method: str
    scores: np.ndarray  # (L, H)
    higher_is_important: bool  # False for entropy: the most diffuse heads go first
    label_free: bool
    normalized_by_layer: bool
    num_examples: int
    seconds: float
    device: str
    threads: int
    what: str
    details: dict = field(default_factory=dict)  # extra (L, H) arrays, e.g. ablation's loss increase

    def signed(self) -> np.ndarray:
        """Scores with 'higher = more important' for every method (entropy negated)."""
        return self.scores if self.higher_is_important else -self.scores

    def pruning_order(self) -> list[tuple[int, int]]:
        """Heads (layer, head) from least to most important; masked/dropped heads left out."""
        s = self.signed()
        L, H = s.shape
        heads = [(l, h) for l in range(L) for h in range(H) if np.isfinite(s[l, h])]
        # stable sort, ties broken by position, so the order is reproducible
        return sorted(heads, key=lambda lh: (s[lh], lh))

    def to_dict(self) -> dict:
        d = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("scores", "details")}
        d["scores"] = _nested(self.scores)
        d["details"] = {k: _nested(v) for k, v in self.details.items()}
        d["shape"] = list(self.scores.shape)
        return d


def _nested(a: np.ndarray) -> list:
    """(L, H) array -> nested lists, NaN as None (valid JSON)."""
    return [[None if not np.isfinite(x) else float(x) for x in row] for row in np.asarray(a, dtype=np.float64)]


# ----------------------------------------------------------------------------- shared helpers
def score_of(result, label_free: bool) -> float:
    """The number pruning decisions look at: the task metric, or agreement with the baseline."""
    return float(result.agreement if label_free else result.metric)


def grad_simulator(ctx: EvalContext, recipe: Recipe) -> SimulatedModel:
    """A private SimulatedModel for gradient passes.

    The Evaluator's shared cache builds its models under inference_mode, and inference tensors
    cannot be saved for backward; a fresh one built here can. It only reads the model.
    """
    with torch.inference_mode(False):
        return SimulatedModel(ctx.adapter, recipe, ctx.sim_dtype)


def _meta(ctx: EvalContext) -> dict:
    return {"num_examples": len(ctx.dataset), "device": str(ctx.device), "threads": torch.get_num_threads()}


def _empty(ctx: EvalContext) -> np.ndarray:
    return np.full((ctx.adapter.num_layers, ctx.adapter.num_heads), np.nan)


def _normalize_rows(scores: np.ndarray) -> np.ndarray:
    """Each layer's scores divided by their L2 norm (the authors' `normalize_scores_by_layer`)."""
    out = scores.copy()
    for l in range(out.shape[0]):
        row = out[l]
        ok = np.isfinite(row)
        if ok.any():
            row[ok] /= np.sqrt((row[ok] ** 2).sum()) + 1e-20
    return out


# ----------------------------------------------------------------------------- gradient scores
def forward_with_weight_leaves(sim: SimulatedModel, live: dict, role: str, batch, hidden):
    """Forward `batch` with a gradient-carrying copy of each live layer's `role` weight (in a shallow
    copy of the simulator, so the shared model is untouched); returns (output, {layer: leaf}).
    Taylor scores of heads (W_O) and FFN neurons (W_out) differentiate these leaves."""
    leaves = {i: getattr(lw, role).weight.detach().clone().requires_grad_(True) for i, lw in live.items()}
    local = copy.copy(sim)
    local.layers = {i: (lw.with_weights({role: leaves[i]}) if i in leaves else lw) for i, lw in sim.layers.items()}
    return local.forward(batch, start_layer=0, hidden=hidden), leaves


def _gradient_scores(ctx: EvalContext, recipe: Recipe, *, label_free, per_example, wrt, progress, cancel) -> np.ndarray:
    """One forward + backward per batch; per-layer |score| sums for `wrt` = "gates" or "wo"."""
    sim = grad_simulator(ctx, recipe)
    live = {i: lw for i, lw in sim.layers.items() if lw.num_heads > 0}
    n_batches = len(ctx.batches)
    with torch.inference_mode(False):  # a caller inside inference_mode must not turn gradients off
        sums = {i: torch.zeros(lw.num_heads, device=ctx.device, dtype=torch.float64) for i, lw in live.items()}
        for bi, batch in enumerate(ctx.batches):
            check_cancel(cancel, "importance computation")
            B = batch.input_ids.shape[0]
            with torch.no_grad():  # nothing below the first gate needs a gradient
                hidden = sim.embed(batch)  # (B, T, D)
            with torch.enable_grad():
                if wrt == "gates":
                    shape = (lambda n: (B, n)) if per_example else (lambda n: (n,))
                    leaves = {i: torch.ones(shape(lw.num_heads), device=ctx.device, requires_grad=True)
                              for i, lw in live.items()}
                    out = sim.forward(batch, start_layer=0, hidden=hidden, gates=leaves)
                else:
                    out, leaves = forward_with_weight_leaves(sim, live, "attention_output", batch, hidden)
                loss = F.cross_entropy(out.logits, ctx.targets(batch, label_free), reduction="sum")
                # autograd.grad, not backward(): no .grad is written onto the (shared) model
                grads = torch.autograd.grad(loss, list(leaves.values()))
            for (i, leaf), g in zip(leaves.items(), grads):
                if wrt == "gates":
                    s = g.abs().sum(0) if per_example else g.abs()  # (nh,)
                else:
                    lw = live[i]
                    D = leaf.shape[0]
                    s = (g.float() * leaf.detach().float()).view(D, lw.num_heads, lw.head_size).sum(dim=(0, 2)).abs()  # (nh,)
                sums[i] += s.double()
            report(progress, (bi + 1) / n_batches, f"{wrt} gradients: batch {bi + 1}/{n_batches}")
    scores = _empty(ctx)
    for i, lw in live.items():
        scores[i, lw.heads] = (sums[i] / len(ctx.dataset)).cpu().numpy()
    return scores


def michel_importance(ctx: EvalContext, recipe: Recipe | None = None, *, normalize_layer: bool = False,
                      label_free: bool | None = None, mode: str = "per-example", per_example: bool | None = None,
                      progress: Progress = None, cancel: threading.Event | None = None) -> HeadImportance:
    """Michel et al. 2019: E_x |∂L(x)/∂ξ_h| per head, gradients w.r.t. head gates, one backward per batch.

    `mode` is "per-example" (the paper's quantity, independent of batching) or "per-batch"
    (|summed gradient| of each batch); see the module docstring. `per_example=True/False` is the
    older spelling of the two modes.
    """
    if per_example is not None:
        mode = "per-example" if per_example else "per-batch"
    if mode not in MICHEL_MODES:
        raise HeadroomError(f"Unknown Michel mode '{mode}'; choose per-example or per-batch.")
    recipe = recipe or Recipe()
    label_free = resolve_label_free(ctx, label_free)
    t0 = time.perf_counter()
    scores = _gradient_scores(ctx, recipe, label_free=label_free, per_example=mode == "per-example", wrt="gates",
                              progress=progress, cancel=cancel)
    if normalize_layer:
        scores = _normalize_rows(scores)
    target = "the model's own predictions" if label_free else "the labels"
    how = ("per example: the paper's E_x |dL(x)/dgate|, independent of batching" if mode == "per-example" else
           f"per batch of {ctx.batches[0].input_ids.shape[0]}: |summed gradient of each batch|, depends on batching")
    return HeadImportance("michel", scores, True, label_free, normalize_layer, seconds=time.perf_counter() - t0,
                          what=f"Michel et al. 2019: mean |dLoss/dgate| per head, cross-entropy vs {target}, "
                               f"|.| taken {how}" + ("; each layer L2-normalised" if normalize_layer else ""),
                          **_meta(ctx))


def taylor_importance(ctx: EvalContext, recipe: Recipe | None = None, *, normalize_layer: bool = False,
                      label_free: bool | None = None, progress: Progress = None,
                      cancel: threading.Event | None = None) -> HeadImportance:
    """TextPruner's first-order Taylor score on each head's slice of W_O, per batch."""
    recipe = recipe or Recipe()
    label_free = resolve_label_free(ctx, label_free)
    t0 = time.perf_counter()
    scores = _gradient_scores(ctx, recipe, label_free=label_free, per_example=False, wrt="wo",
                              progress=progress, cancel=cancel)
    if normalize_layer:
        scores = _normalize_rows(scores)
    return HeadImportance("taylor", scores, True, label_free, normalize_layer, seconds=time.perf_counter() - t0,
                          what="first-order Taylor (TextPruner): mean |sum(W_O * dLoss/dW_O)| over each head's "
                               "slice of the output projection", **_meta(ctx))


# ----------------------------------------------------------------------------- entropy
def attention_entropy(probs: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Summed entropy (nats) of each head's attention rows over real query tokens, and their count.

    probs: (B, nh, T, T) rows sum to 1 over real keys (pads get exactly 0); attention_mask (B, T).
    Returns ((nh,) sum over real query tokens, number of real query tokens).
    """
    rows = -torch.special.xlogy(probs.float(), probs.float()).sum(-1)  # (B, nh, T): entropy per query
    real = attention_mask.to(rows.dtype)[:, None, :]  # (B, 1, T)
    return (rows * real).sum(dim=(0, 2)), int(attention_mask.sum())


@torch.inference_mode()
def entropy_importance(ctx: EvalContext, recipe: Recipe | None = None, *, progress: Progress = None,
                       cancel: threading.Event | None = None) -> HeadImportance:
    """Mean attention entropy per head (nats), over real query tokens of the whole subset."""
    recipe = recipe or Recipe()
    t0 = time.perf_counter()
    sim = ctx.simulator(recipe)
    sums = {i: 0.0 for i, lw in sim.layers.items() if lw.num_heads > 0}
    tokens = 0
    for bi, batch in enumerate(ctx.batches):
        check_cancel(cancel, "entropy computation")
        out = sim.forward(batch, output_attentions=True)
        for i in sums:
            s, n = attention_entropy(out.attentions[i], batch.attention_mask)
            sums[i] = sums[i] + s
        tokens += n
        report(progress, (bi + 1) / len(ctx.batches), f"attention entropy: batch {bi + 1}/{len(ctx.batches)}")
    scores = _empty(ctx)
    for i, s in sums.items():
        scores[i, sim.layers[i].heads] = (s / tokens).cpu().numpy()
    return HeadImportance("entropy", scores, False, False, False, seconds=time.perf_counter() - t0,
                          what=f"mean attention entropy per head (nats) over {tokens} real query tokens; "
                               "higher = more diffuse = pruned first", **_meta(ctx))


# ----------------------------------------------------------------------------- ablation
def ablation_importance(ctx: EvalContext, recipe: Recipe | None = None, *, label_free: bool | None = None,
                        progress: Progress = None, cancel: threading.Event | None = None) -> HeadImportance:
    """Metric drop when each head alone is masked (on top of `recipe`); incremental evaluation."""
    recipe = recipe or Recipe()
    label_free = resolve_label_free(ctx, label_free)
    t0 = time.perf_counter()
    base = ctx.evaluate(recipe, cancel=cancel)
    base_score, base_loss = score_of(base, label_free), _loss(ctx, base, label_free)
    L = ctx.adapter.num_layers
    scores, loss_increase = _empty(ctx), _empty(ctx)
    dropped, masked = set(recipe.dropped_layers), set(recipe.masked_heads)
    todo = [(l, h) for l in range(L) if l not in dropped for h in range(ctx.adapter.heads_in_layer(l))
            if (l, h) not in masked]
    for k, (l, h) in enumerate(todo):
        check_cancel(cancel, "ablation")
        result = ctx.evaluate(recipe.replace(masked_heads=[list(p) for p in recipe.masked_heads] + [[l, h]]),
                             cancel=cancel)
        scores[l, h] = base_score - score_of(result, label_free)
        loss_increase[l, h] = _loss(ctx, result, label_free) - base_loss
        report(progress, (k + 1) / len(todo), f"ablation: head {l}:{h} ({k + 1}/{len(todo)})")
    name = "agreement with the unmodified model's predictions" if label_free else base.metric_name
    return HeadImportance("ablation", scores, True, label_free, False, seconds=time.perf_counter() - t0,
                          what=f"drop in {name} when the head alone is masked (simulated, incremental)",
                          details={"loss_increase": loss_increase}, **_meta(ctx))


def _loss(ctx: EvalContext, result, label_free: bool) -> float:
    if not label_free:
        return float(result.loss)
    logits = torch.from_numpy(result.logits)
    return float(F.cross_entropy(logits, torch.from_numpy(ctx.baseline.predictions).long()))


# ----------------------------------------------------------------------------- dispatch, agreement
def compute_importance(ctx: EvalContext, method: str, recipe: Recipe | None = None, *, normalize_layer: bool = False,
                       label_free: bool | None = None, progress: Progress = None,
                       cancel: threading.Event | None = None, **kwargs) -> HeadImportance:
    """Any of METHODS by name (the CLI and the dashboard call this)."""
    if method == "michel":
        return michel_importance(ctx, recipe, normalize_layer=normalize_layer, label_free=label_free,
                                 progress=progress, cancel=cancel, **kwargs)
    if method == "taylor":
        return taylor_importance(ctx, recipe, normalize_layer=normalize_layer, label_free=label_free,
                                 progress=progress, cancel=cancel)
    if method == "ablation":
        return ablation_importance(ctx, recipe, label_free=label_free, progress=progress, cancel=cancel)
    if method == "entropy":
        return entropy_importance(ctx, recipe, progress=progress, cancel=cancel)
    raise HeadroomError(f"Unknown importance method '{method}'; choose from {', '.join(METHODS)}.")


def rank_agreement(a: HeadImportance | np.ndarray, b: HeadImportance | np.ndarray) -> float:
    """Spearman's ρ between two (L, H) score arrays over heads scored by both (NaN if < 3).

    HeadImportance arguments are compared as 'higher = more important' (entropy negated).
    """
    from scipy.stats import spearmanr

    sa = a.signed() if isinstance(a, HeadImportance) else np.asarray(a, dtype=float)
    sb = b.signed() if isinstance(b, HeadImportance) else np.asarray(b, dtype=float)
    if sa.shape != sb.shape:
        raise HeadroomError(f"Cannot compare importance arrays of shapes {sa.shape} and {sb.shape}.")
    ok = np.isfinite(sa) & np.isfinite(sb)
    if ok.sum() < 3 or np.ptp(sa[ok]) == 0 or np.ptp(sb[ok]) == 0:
        return float("nan")
    return float(spearmanr(sa[ok], sb[ok]).statistic)


def agreement_matrix(results: dict[str, HeadImportance]) -> dict[str, dict[str, float]]:
    """Pairwise Spearman ρ between named importance results."""
    names = list(results)
    return {a: {b: (1.0 if a == b else rank_agreement(results[a], results[b])) for b in names} for a in names}


def split_in_halves(dataset, seed: int = 0):
    """Two disjoint random halves of a TextDataset (for 'are the same heads important on both?')."""
    if len(dataset) < 4:
        raise HeadroomError("Splitting into halves needs at least 4 examples.")
    order = list(range(len(dataset)))
    random.Random(seed).shuffle(order)
    halves = []
    for part in (sorted(order[: len(order) // 2]), sorted(order[len(order) // 2:])):
        pick = lambda xs: None if xs is None else [xs[i] for i in part]  # noqa: E731
        halves.append(dataclasses.replace(
            dataset, name=f"{dataset.name} (half {len(halves) + 1})", texts=pick(dataset.texts),
            text_pairs=pick(dataset.text_pairs), labels=pick(dataset.labels), indices=pick(dataset.indices)))
    return halves[0], halves[1]
