"""FFN neuron importance: how much each intermediate unit matters, and which ones to prune.

The FFN of layer l maps hidden -> I_l intermediate units -> hidden. A gate g_j = 1 multiplies
unit j's activation (after the GELU, and after the gate product of a gated FFN such as
ModernBERT's GLU), so removing the unit is setting g_j = 0 (`SimulatedModel.forward(neuron_gates=...)`;
a test checks that a gate of 0 equals masking the unit). Two scores, as for heads
(`analysis.methods.importance`):

- `gradient` — Michel et al. 2019's head score applied to units: I_j = E_x |∂L(x)/∂g_j|, with one
  gate per example and unit ((B, I) gates), so all units of all layers come from ONE forward +
  backward per batch and the score does not depend on the batching.
- `taylor`  — TextPruner's FFN score (airaria/TextPruner, `TransformerPruner.get_importance_score`):
  |Σ_d (W_out ⊙ ∂L/∂W_out)[d, j]| over unit j's column of the output projection, per batch, summed
  over batches / N. Since g_j scales exactly that column's input, this is the per-batch gate
  gradient |Σ_{x in batch} ∂L(x)/∂g_j|, computed the other way (w.r.t. the weights); a test says so.

Scores are per layer, (I_l,) arrays in the model's unit numbering (NaN where the recipe already
masks the unit; None for a dropped layer): layers may have different widths (a pruned model).

`prune_fraction(importance, fraction)` turns scores into a recipe: the globally least important
`fraction` of the kept units, ranked after dividing each layer's scores by their L2 norm (as
Michel et al.'s code does before ranking heads across layers; `normalize_layer=False` ranks the
raw scores), at least `min_kept` units kept per layer. It returns the Recipe's `masked_neurons`
and the kept count per layer, which is uneven across layers by design; `per_layer=True` prunes the
same fraction of each layer instead (its own least important units: even widths).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from analysis.core.recipe import Recipe
from analysis.errors import HeadroomError
from analysis.jobs import Progress, check_cancel, report
from analysis.methods.context import EvalContext, resolve_label_free
from analysis.methods.importance import forward_with_weight_leaves, grad_simulator

NEURON_METHODS = ("gradient", "taylor")


@dataclass
class NeuronImportance:
    """One score per FFN unit and layer; higher = more important."""

    method: str
    scores: list[np.ndarray | None]  # per layer (I_l,); NaN for masked units, None for dropped layers
    label_free: bool
    num_examples: int
    seconds: float
    device: str
    threads: int
    what: str
    details: dict = field(default_factory=dict)

    def pruning_order(self, normalize_layer: bool = True) -> list[tuple[int, int]]:
        """Units (layer, unit) from least to most important, across layers; masked units left out.

        With `normalize_layer`, each layer's scores are divided by their L2 norm first (the scale
        of gradients differs between layers). Ties are broken by (layer, unit): reproducible.
        """
        units = []
        for layer, s in enumerate(self.scores):
            if s is None:
                continue
            ok = np.isfinite(s)
            if normalize_layer and ok.any():
                s = s / (np.sqrt((s[ok] ** 2).sum()) + 1e-20)
            units += [(float(s[j]), layer, int(j)) for j in np.flatnonzero(ok)]
        return [(layer, j) for _, layer, j in sorted(units)]

    def to_dict(self) -> dict:
        scores = [None if s is None else [None if not np.isfinite(x) else float(x) for x in s] for s in self.scores]
        return {"method": self.method, "label_free": self.label_free, "num_examples": self.num_examples,
                "seconds": self.seconds, "device": self.device, "threads": self.threads, "what": self.what,
                "intermediate_sizes": [None if s is None else len(s) for s in self.scores],
                "scores": scores, "details": self.details}


def _meta(ctx: EvalContext) -> dict:
    return {"num_examples": len(ctx.dataset), "device": str(ctx.device), "threads": torch.get_num_threads()}


def neuron_importance(ctx: EvalContext, method: str = "gradient", recipe: Recipe | None = None, *,
                      label_free: bool | None = None, progress: Progress = None,
                      cancel: threading.Event | None = None) -> NeuronImportance:
    """`gradient` (E_x |dL/dgate| per unit) or `taylor` (TextPruner's |sum W_out * dL/dW_out| per column).

    One forward + backward per batch through the simulated model of `recipe` (its masked units
    and dropped layers get no score). Nothing is written to the model.
    """
    if method not in NEURON_METHODS:
        raise HeadroomError(f"Unknown FFN neuron importance method '{method}'; choose from {', '.join(NEURON_METHODS)}.")
    recipe = recipe or Recipe()
    label_free = resolve_label_free(ctx, label_free)
    t0 = time.perf_counter()
    sim = grad_simulator(ctx, recipe)
    live = {i: lw for i, lw in sim.layers.items() if lw.neurons}
    n_batches = len(ctx.batches)
    with torch.inference_mode(False):  # a caller inside inference_mode must not turn gradients off
        sums = {i: torch.zeros(len(lw.neurons), device=ctx.device, dtype=torch.float64) for i, lw in live.items()}
        for bi, batch in enumerate(ctx.batches):
            check_cancel(cancel, "FFN neuron importance")
            B = batch.input_ids.shape[0]
            with torch.no_grad():  # nothing below the first gate needs a gradient
                hidden = sim.embed(batch)  # (B, T, D)
            with torch.enable_grad():
                if method == "gradient":
                    leaves = {i: torch.ones(B, len(lw.neurons), device=ctx.device, requires_grad=True)
                              for i, lw in live.items()}  # (B, I): one gate per example and unit
                    out = sim.forward(batch, start_layer=0, hidden=hidden, neuron_gates=leaves)
                else:
                    out, leaves = forward_with_weight_leaves(sim, live, "ffn_out", batch, hidden)
                loss = F.cross_entropy(out.logits, ctx.targets(batch, label_free), reduction="sum")
                # autograd.grad, not backward(): no .grad is written onto the (shared) model
                grads = torch.autograd.grad(loss, list(leaves.values()))
            for (i, leaf), g in zip(leaves.items(), grads):
                if method == "gradient":
                    s = g.abs().sum(0)  # (I,): Σ_x |dL(x)/dg_j|
                else:
                    s = (g.float() * leaf.detach().float()).sum(0).abs()  # (I,): |Σ_d W ⊙ dL/dW| per column
                sums[i] += s.double()
            report(progress, (bi + 1) / n_batches, f"FFN neuron {method} scores: batch {bi + 1}/{n_batches}")
    adapter = ctx.adapter
    scores: list[np.ndarray | None] = [None] * adapter.num_layers
    for i in sim.layers:
        scores[i] = np.full(adapter.intermediate_size(i), np.nan)
    for i, lw in live.items():
        scores[i][lw.neurons] = (sums[i] / len(ctx.dataset)).cpu().numpy()
    target = "the model's own predictions" if label_free else "the labels"
    what = ("Michel-style gates on FFN units: mean over examples of |dLoss/dgate| per unit (one gate per example), "
            if method == "gradient" else
            "first-order Taylor (TextPruner): |sum(W_out * dLoss/dW_out)| over each unit's column, per batch, / N; ")
    return NeuronImportance(method, scores, label_free, seconds=time.perf_counter() - t0,
                            what=what + f"cross-entropy vs {target}; simulated",
                            details={"data": getattr(ctx.dataset, "name", "")}, **_meta(ctx))


@dataclass
class NeuronPruning:
    """The units a global fraction removes: a Recipe's `masked_neurons` and what each layer keeps."""

    fraction: float  # of the units the importance scored
    masked_neurons: list[tuple[int, list[int]]]
    kept_per_layer: list[int | None]  # None for a dropped layer
    intermediate_sizes: list[int | None]

    def recipe(self, base: Recipe | None = None) -> Recipe:
        base = base or Recipe()
        return base.replace(masked_neurons=[[l, u] for l, u in base.masked_neurons] +
                            [[l, u] for l, u in self.masked_neurons])

    def to_dict(self) -> dict:
        return {"fraction": self.fraction, "kept_per_layer": self.kept_per_layer,
                "intermediate_sizes": self.intermediate_sizes,
                "masked_neurons": [[l, u] for l, u in self.masked_neurons]}


def prune_fraction(importance: NeuronImportance, fraction: float, *, normalize_layer: bool = True,
                   min_kept: int = 1, per_layer: bool = False) -> NeuronPruning:
    """The least important `fraction` of the scored units (global order), keeping >= `min_kept` per layer.

    `per_layer`: the same fraction of every layer instead (round(fraction x scored units) of each, its own
    least important; ties by unit), so every layer keeps the same share: uniform widths, no global ranking.
    """
    if not 0 <= fraction <= 1:
        raise HeadroomError(f"The fraction of FFN neurons to prune must be between 0 and 1, not {fraction}.")
    if per_layer:
        return _prune_per_layer(importance, fraction, min_kept)
    order = importance.pruning_order(normalize_layer)
    target = int(round(fraction * len(order)))
    scored = {l: int(np.isfinite(s).sum()) for l, s in enumerate(importance.scores) if s is not None}
    left = dict(scored)
    masked: dict[int, list[int]] = {}
    count = 0
    for layer, unit in order:
        if count >= target:
            break
        if left[layer] <= min_kept:  # this layer is at its floor: the next least important unit elsewhere goes
            continue
        masked.setdefault(layer, []).append(unit)
        left[layer] -= 1
        count += 1
    sizes = [None if s is None else len(s) for s in importance.scores]
    kept = [None if s is None else int(np.isfinite(s).sum()) - len(masked.get(l, [])) for l, s in enumerate(importance.scores)]
    return NeuronPruning(fraction, [(l, sorted(u)) for l, u in sorted(masked.items())], kept, sizes)


def _prune_per_layer(importance: NeuronImportance, fraction: float, min_kept: int) -> NeuronPruning:
    masked, kept = [], []
    for layer, s in enumerate(importance.scores):
        if s is None:
            kept.append(None)
            continue
        units = np.flatnonzero(np.isfinite(s))
        k = min(int(round(fraction * len(units))), max(len(units) - min_kept, 0))
        order = units[np.argsort(s[units], kind="stable")]  # least important first; ties: the lower unit
        if k:
            masked.append((layer, sorted(int(u) for u in order[:k])))
        kept.append(len(units) - k)
    sizes = [None if s is None else len(s) for s in importance.scores]
    return NeuronPruning(fraction, masked, kept, sizes)
