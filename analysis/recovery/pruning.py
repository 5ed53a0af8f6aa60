"""Unstructured pruning inside recovery: the recipe's zeros kept, and gradual magnitude / movement pruning.

Two things share one mechanism, a masked forward (as QAT swaps weights with `functional_call`):

- **Keeping a recipe's zeros.** A recipe with magnitude `sparsity` is materialized with real zeros;
  fine-tuning would fill them back in. Each sparsified matrix of the student gets a fixed keep mask
  (its nonzeros right after `materialize`), the forward uses W * mask (so the zeroed weights get no
  gradient) and `export()` writes W * mask: the recovered model has exactly the recipe's zeros.
- **Pruning while fine-tuning** (`RecoveryConfig.prune_method`), over the encoder's linears only
  (`prune_roles` of Q, K, V, O, FFN in/out; embeddings and classifier stay dense), each matrix
  pruned on its own (local top-k, exactly round(s * n) of its n weights, ties by position), with
  the cubic schedule of Zhu & Gupta (2017) as Sanh, Wolf & Rush (2020) use it:

      s_t = s_f + (s_i - s_f) * (1 - (t - t_i) / (t_f - t_i))^3   for t_i <= t < t_f,
      s_i before t_i, s_f from t_f on;  t = fraction of training done, s_i = 0.

  * magnitude (gradual magnitude pruning, Zhu & Gupta): the mask is the top-k of |W|, recomputed
    every `prune_every` steps (and as soon as s_f is reached); pruned weights get no gradient.
  * movement (hard movement pruning, Sanh et al. 2020): every pruned matrix has learned scores S of
    its shape (initialised to 0, trained by AdamW at `prune_lr` without weight decay, as the
    paper's code: `mask_scores_learning_rate`, constant init 0), the forward uses W * TopK(S) and
    the TopK is straight-through, so dL/dS = dL/dW' * W: a weight's score rises when it moves away
    from zero and falls when it moves towards it. TopK(S) is retaken every `prune_every` steps
    (the paper: every step), the straight-through gradient reaches S at every step.

Held-out model selection only considers steps at the final sparsity, and the exported model is
W * mask at s_f: exactly round(s_f * n) zeros per pruned matrix. ModernBERT's fused W_qkv is pruned
per row block (query, key, value each on its own). The zeros run through the same dense kernels:
sparsity buys size (a compressed file, `analysis.measure.sparse_files`), not speed.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from analysis.core.adapters import Adapter, FusedRows
from analysis.core.sparsity import smallest_k
from analysis.errors import HeadroomError

PRUNE_METHODS = ("none", "magnitude", "movement")
SPEED_NOTE = "sparsity buys size (compressed bitmask/CSR files), not speed on dense kernels"


def cubic_sparsity(t: float, final: float, *, initial: float = 0.0, start: float = 0.0, end: float = 1.0) -> float:
    """Zhu & Gupta's cubic schedule at fraction `t` of training: `initial` before `start`, `final` from `end` on."""
    if t >= end:
        return final
    if t <= start:
        return initial
    return final + (initial - final) * (1.0 - (t - start) / (end - start)) ** 3


def pruned_mask(values: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Bool mask (True = pruned) of the round(sparsity * n) smallest entries of `values`, ties by position.

    The same weights as `sparsity.smallest_k`, with the threshold found by `topk` of the smaller side
    (4x faster than `kthvalue` on a 1536 x 384 matrix: the mask is taken every few training steps).
    """
    flat = values.detach().flatten()
    n, k = flat.numel(), round(sparsity * flat.numel())
    if k <= 0 or k >= n:
        return smallest_k(flat, k).view(values.shape)
    if k <= n - k:  # the k-th smallest value
        threshold = flat.topk(k, largest=False, sorted=False).values.max()
    else:  # = the (n - k + 1)-th largest
        threshold = flat.topk(n - k + 1, largest=True, sorted=False).values.min()
    mask = flat < threshold
    need = k - int(mask.sum())
    tied = flat == threshold
    if int(tied.sum()) == need:
        return (mask | tied).view(values.shape)
    mask[torch.nonzero(tied).flatten()[:need]] = True  # ties at the threshold: earliest positions first
    return mask.view(values.shape)


class _StraightThrough(torch.autograd.Function):
    """Forward: the float keep mask of a pruned mask (TopK(S), taken now or at the last mask step).
    Backward: the gradient to the scores S, unchanged (straight-through, Sanh et al.'s TopKBinarizer)."""

    @staticmethod
    def forward(ctx, scores, pruned):
        return (~pruned).to(scores.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def topk_keep(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """TopK(S) with the straight-through gradient: the keep mask of the top (1 - s) scores."""
    return _StraightThrough.apply(scores, pruned_mask(scores, sparsity))


@dataclass(frozen=True)
class Slot:
    """One pruned matrix: rows [start, start + rows) of parameter `name` (all rows but for a fused W_qkv)."""

    name: str
    start: int
    rows: int
    layer: int  # student layer
    role: str


def slots(model: nn.Module, roles, layers=None) -> list[Slot]:
    """The matrices of `roles` in the student's layers (`layers`: student indices, None = all), each once."""
    adapter = Adapter(model)
    names = {id(p): n for n, p in model.named_parameters()}
    out, seen = [], set()
    for j in range(adapter.num_layers) if layers is None else layers:
        parts = adapter.layer(j)
        for role in roles:
            part = getattr(parts, role)
            if isinstance(part, FusedRows):
                weight, start, rows = part.module.weight, part.start, part.size
            else:
                weight, start, rows = part.weight, 0, part.weight.shape[0]
            if getattr(weight, "ndim", 0) != 2 or id(weight) not in names:
                raise HeadroomError(f"Layer {j}'s {role} matrix is not a plain weight matrix (low rank?), "
                                    "so it cannot be pruned during recovery.")
            key = (names[id(weight)], start)
            if key not in seen:  # ALBERT's shared layer: one matrix for every layer
                seen.add(key)
                out.append(Slot(names[id(weight)], start, rows, j, role))
    return out


class Pruner:
    """The masks of a student: fixed ones (the recipe's zeros) and a scheduled one (gradual pruning)."""

    def __init__(self, model: nn.Module, *, fixed: dict[str, torch.Tensor] | None = None, method: str = "none",
                 targets: list[Slot] = (), final: float = 0.0, start: float = 0.0, end: float = 1.0,
                 every: int = 1):
        self.model, self.method, self.targets = model, method, list(targets)
        self.final, self.start, self.end, self.every = final, start, end, max(1, every)
        self.fixed = dict(fixed or {})  # param name -> bool keep mask (the recipe's nonzeros)
        params = dict(model.named_parameters())
        self.sparsity = 0.0  # the schedule's value now
        self.mask_sparsity = 0.0  # the sparsity the current masks were computed at
        self.masks: dict[Slot, torch.Tensor] = {}  # slot -> bool pruned mask (magnitude)
        self.scores: dict[Slot, nn.Parameter] = {}
        if method == "movement":
            for s in self.targets:
                w = params[s.name]
                self.scores[s] = nn.Parameter(torch.zeros(s.rows, w.shape[1], device=w.device, dtype=torch.float32))
        if method != "none":
            self._recompute()

    # ------------------------------------------------------------------ schedule
    @property
    def active(self) -> bool:
        return bool(self.fixed) or self.method != "none"

    @property
    def at_final(self) -> bool:
        """Whether the masks are those of the final sparsity (only then may a checkpoint be chosen)."""
        return self.method == "none" or self.mask_sparsity == self.final

    def to(self, dev) -> "Pruner":
        """Masks and scores on the model's device (call after moving the model)."""
        self.fixed = {n: m.to(dev) for n, m in self.fixed.items()}
        self.masks = {s: m.to(dev) for s, m in self.masks.items()}
        with torch.no_grad():
            for p in self.scores.values():
                p.data = p.data.to(dev)
        return self

    def score_parameters(self) -> list[nn.Parameter]:
        return list(self.scores.values())

    def update(self, step: int, fraction: float) -> None:
        """Before training step `step` (0-based) at `fraction` of training: the schedule's sparsity, new masks."""
        if self.method == "none":
            return
        self.sparsity = cubic_sparsity(fraction, self.final, start=self.start, end=self.end)
        if step % self.every == 0 or (self.sparsity == self.final and self.mask_sparsity != self.final):
            self._recompute()

    def finish(self) -> None:
        """Jump to the final sparsity (a run that ended before the schedule did)."""
        if self.method != "none" and not self.at_final:
            self.sparsity = self.final
            self.update(0, 1.0)

    @torch.no_grad()
    def _recompute(self) -> None:
        params = dict(self.model.named_parameters())
        for s in self.targets:
            if self.method == "movement":  # TopK of the learned scores
                self.masks[s] = pruned_mask(self.scores[s], self.sparsity)
            else:  # TopK of |W|
                self.masks[s] = pruned_mask(params[s.name][s.start:s.start + s.rows].abs().float(), self.sparsity)
        self.mask_sparsity = self.sparsity

    # ------------------------------------------------------------------ masks
    def _keep(self, name: str, weight: torch.Tensor, *, differentiable: bool) -> torch.Tensor | None:
        """The float keep mask of parameter `name` (None: nothing of it is pruned)."""
        mine = [s for s in self.targets if s.name == name] if self.method != "none" else []
        fixed = self.fixed.get(name)
        if not mine and fixed is None:
            return None
        if not mine:
            return fixed.to(weight.device, weight.dtype)
        blocks, row = [], 0
        for s in sorted(mine, key=lambda s: s.start):
            if s.start > row:  # rows of a fused matrix that are not pruned
                blocks.append(torch.ones(s.start - row, weight.shape[1], dtype=weight.dtype, device=weight.device))
            if self.method == "movement" and differentiable:  # straight-through to the scores
                keep = _StraightThrough.apply(self.scores[s], self.masks[s].to(weight.device))
            else:
                keep = (~self.masks[s]).float().to(weight.device)
            blocks.append(keep.to(weight.dtype))
            row = s.start + s.rows
        if row < weight.shape[0]:
            blocks.append(torch.ones(weight.shape[0] - row, weight.shape[1], dtype=weight.dtype, device=weight.device))
        keep = torch.cat(blocks) if len(blocks) > 1 else blocks[0]
        return keep if fixed is None else keep * fixed.to(weight.device, weight.dtype)

    def names(self) -> set[str]:
        return set(self.fixed) | ({s.name for s in self.targets} if self.method != "none" else set())

    def swapped(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """W * mask for every masked parameter (the training forward's weights; gradients reach W and S)."""
        out = {}
        for name in self.names():
            keep = self._keep(name, params[name], differentiable=True)
            if keep is not None:
                out[name] = params[name] * keep
        return out

    @torch.no_grad()
    def keep_masks(self) -> dict[str, torch.Tensor]:
        """Bool keep mask per masked parameter, as the model would be exported now."""
        params = dict(self.model.named_parameters())
        return {n: self._keep(n, params[n], differentiable=False).bool() for n in self.names()}

    @contextlib.contextmanager
    def applied(self):
        """The model's masked weights zeroed in place for the duration (export copies it), then restored."""
        params = dict(self.model.named_parameters())
        saved = {}
        with torch.no_grad():
            for name, keep in self.keep_masks().items():
                saved[name] = params[name].detach().clone()
                params[name].mul_(keep.to(params[name].dtype))
        try:
            yield
        finally:
            with torch.no_grad():
                for name, value in saved.items():
                    params[name].copy_(value)

    # ------------------------------------------------------------------ state (best checkpoint, resume)
    def state_dict(self) -> dict:
        return {"sparsity": self.sparsity, "mask_sparsity": self.mask_sparsity,
                "masks": [self.masks[s].cpu().clone() for s in self.targets] if self.masks else [],
                "scores": [self.scores[s].detach().cpu().clone() for s in self.targets] if self.scores else []}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        self.sparsity, self.mask_sparsity = state["sparsity"], state["mask_sparsity"]
        for s, m in zip(self.targets, state["masks"]):
            self.masks[s] = m.to(self.masks[s].device)
        for s, v in zip(self.targets, state["scores"]):
            self.scores[s].copy_(v)

    def describe(self) -> dict:
        """What the card says about pruning."""
        keep = self.keep_masks()
        per_matrix = []
        for s in self.targets if self.method != "none" else []:
            block = keep[s.name][s.start:s.start + s.rows]
            per_matrix.append({"layer": s.layer, "role": s.role, "weights": block.numel(),
                               "zeros": int((~block).sum())})
        fixed = {n: int((~m).sum()) for n, m in self.fixed.items()}
        return {"per_matrix": per_matrix, "recipe_zeros_kept": sum(fixed.values()),
                "recipe_matrices_kept_sparse": len(fixed)}


def fixed_masks(model: nn.Module, recipe, kept_layers: list[int], teacher_layers: int) -> dict[str, torch.Tensor]:
    """Keep masks (nonzeros) of the matrices the recipe sparsified, read off the just-materialized student."""
    if not recipe.has_sparsity():
        return {}
    fractions = recipe.layer_sparsity(teacher_layers)
    layers = [j for j, i in enumerate(kept_layers) if fractions[i] > 0]
    params = dict(model.named_parameters())
    out: dict[str, torch.Tensor] = {}
    for s in slots(model, recipe.sparsity_roles, layers):
        keep = out.setdefault(s.name, torch.ones_like(params[s.name], dtype=torch.bool))
        keep[s.start:s.start + s.rows] = params[s.name][s.start:s.start + s.rows].detach() != 0
    return out
