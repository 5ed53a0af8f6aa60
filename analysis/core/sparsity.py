"""Magnitude sparsity: which weights a Recipe zeroes, exactly and reproducibly.

Unstructured magnitude pruning (Han et al. 2015; for BERT, Gordon et al. 2020 and Sanh et al. 2020's
baseline) zeroes the weights of smallest |w|. A Recipe says how many (`sparsity`, one fraction or
one per layer), in which matrices (`sparsity_roles`, of `adapters.ROLES`) and against which
threshold (`sparsity_scope`):

- local:  each chosen matrix of n weights loses exactly round(s * n) of them, its own smallest;
- global: all chosen matrices of all kept layers are ranked together and exactly round(s * N) of
  their N weights go, so some matrices lose more than others. A matrix shared by several layers
  (ALBERT) is counted once.

With `sparsity_pattern` "2:4" (NVIDIA's semi-structured sparsity, Mishra et al. 2021, which Ampere and
later sparse tensor cores run) the choice is made inside every group of 4 consecutive weights along a
matrix's input dimension (a row of the (out, in) weight): its 2 of smallest |w| go, so each chosen
matrix is exactly 50% zero, 2 in every group (sparsity 0.5, local, an input dimension divisible by 4:
`Recipe.check_values` and `pattern_problem` refuse the rest). A fused matrix read as row blocks
(ModernBERT's W_qkv) is unaffected: groups run along the input dimension, inside one row.

Ties are broken by position: among weights of equal |w| at the threshold, the earliest in
row-major order (and, globally, in layer-then-role order) is zeroed first, so a recipe always
zeroes the same weights. The count is exact, not "everything below a threshold" (which would
zero all tied weights and miss the fraction).

`magnitude_masks` returns a boolean mask (True = zeroed) of each matrix's full shape, before heads
or FFN neurons are sliced out and before fake quantisation; `simulate` applies it to the values it
reads (the model is not touched) and `materialize` writes the zeros into the new model. The zeros
are real, but dense kernels multiply them like any weight: sparsity buys size in a compressed
format (`analysis.measure.sparse_files`), not speed.
"""

from __future__ import annotations

import torch

from analysis.core.adapters import Adapter
from analysis.core.recipe import Recipe
from analysis.errors import HeadroomError

Masks = dict[tuple[int, str], torch.Tensor]  # (layer, role) -> bool (out, in), True = zeroed


def smallest_k(values: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask of the `k` smallest entries of a 1-D tensor; ties at the threshold go earliest-index first."""
    n = values.numel()
    mask = torch.zeros(n, dtype=torch.bool, device=values.device)
    if k <= 0:
        return mask
    if k >= n:
        return ~mask
    threshold = values.kthvalue(k).values  # the k-th smallest value (1-based)
    mask = values < threshold
    need = k - int(mask.sum())
    tied = torch.nonzero(values == threshold).flatten()[:need]  # ascending positions: earliest first
    mask[tied] = True
    return mask


def two_of_four(values: torch.Tensor) -> torch.Tensor:
    """Bool mask of the 2 smallest of every 4 consecutive entries of each row of a 2-D tensor (ties: earlier first).

    `values` (out, in) with in % 4 == 0, e.g. |w|. A stable sort keeps tied values in position order, so of
    equal values the earlier ones are zeroed first, as in `smallest_k`.
    """
    rows, cols = values.shape
    groups = values.reshape(rows, cols // 4, 4)  # (out, in/4, 4)
    order = torch.sort(groups, dim=-1, stable=True).indices[..., :2]  # the 2 smallest of each group
    mask = torch.zeros_like(groups, dtype=torch.bool)
    mask.scatter_(-1, order, True)
    return mask.view(rows, cols)


def pattern_problem(adapter: Adapter, recipe: Recipe) -> str | None:
    """Why `recipe`'s 2:4 pattern cannot apply to this model's matrices (an input dimension not divisible by 4), or None."""
    if recipe.sparsity_pattern != "2:4" or not recipe.has_sparsity():
        return None
    fractions = recipe.layer_sparsity(adapter.num_layers)
    for i in range(min(adapter.num_layers, len(fractions))):
        if fractions[i] <= 0 or i in recipe.dropped_layers:
            continue
        for role in recipe.sparsity_roles:
            cols = getattr(adapter.layer(i), role).weight.shape[1]
            if cols % 4:
                return (f"Layer {i}'s {role} matrix has {cols} input columns, not a multiple of 4, so it cannot hold the "
                        "2:4 pattern (2 zeros in every group of 4 along the input); leave it out of sparsity_roles.")
    return None


def _chosen(adapter: Adapter, recipe: Recipe, shared: dict | None) -> list[tuple[int, str, torch.Tensor, float]]:
    """(layer, role, weight, fraction) for every matrix the recipe sparsifies (a shared layer's: its group's)."""
    dropped = set(recipe.dropped_layers)
    fractions = recipe.layer_sparsity(adapter.num_layers)
    out = []
    for i in range(adapter.num_layers):
        if i in dropped or fractions[i] <= 0:
            continue
        parts = shared.get(i) or adapter.layer(i)
        out += [(i, role, getattr(parts, role).weight, fractions[i]) for role in recipe.sparsity_roles]
    return out


@torch.no_grad()
def magnitude_masks(adapter: Adapter, recipe: Recipe, shared: dict | None = None) -> Masks:
    """The weights `recipe` zeroes, per (layer, role); {} when it has no sparsity.

    `shared`: the weights shared layers read (`sharing.shared_parts`); None computes them.
    """
    if not recipe.has_sparsity():
        return {}
    if shared is None:
        from analysis.core.sharing import shared_parts

        shared = shared_parts(adapter, recipe)
    chosen = _chosen(adapter, recipe, shared)
    if recipe.sparsity_pattern != "unstructured":
        recipe.check_values()  # a known pattern; 2:4: 0.5 (or 0) and local only, the pattern fixes the fraction
    if recipe.sparsity_pattern == "2:4":
        problem = pattern_problem(adapter, recipe)
        if problem:
            raise HeadroomError(problem)
        return {(i, role): two_of_four(w.abs()) for i, role, w, _ in chosen}
    if recipe.sparsity_scope == "local":
        return {(i, role): smallest_k(w.abs().flatten(), round(s * w.numel())).view(w.shape)
                for i, role, w, s in chosen}
    # global: one ranking over the distinct matrices (a shared ALBERT or grouped matrix appears once)
    distinct: dict[tuple, tuple[int, str, torch.Tensor]] = {}
    for i, role, w, _ in chosen:
        distinct.setdefault((w.data_ptr(), tuple(w.shape), role), (i, role, w))
    flat = torch.cat([w.abs().flatten().float() for _, _, w in distinct.values()])
    s = chosen[0][3] if chosen else 0.0
    mask = smallest_k(flat, round(s * flat.numel()))
    by_matrix, start = {}, 0
    for key, (_, _, w) in distinct.items():
        by_matrix[key] = mask[start:start + w.numel()].view(w.shape)
        start += w.numel()
    return {(i, role): by_matrix[(w.data_ptr(), tuple(w.shape), role)] for i, role, w, _ in chosen}


def sparsify(weight: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """`weight` with the masked entries set to 0 (a new tensor; the argument is not changed)."""
    return weight if mask is None else weight.masked_fill(mask, 0.0)
