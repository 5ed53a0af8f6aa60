"""Which heads to mask: selections from one importance ranking, and seeded random ones.

Every selection that uses importance goes through `HeadImportance.pruning_order()` (least to
most important, ties broken by position, masked/dropped heads left out), so the dashboard's
buttons, the presets, the pruning curve and the CLI rank the same scores the same way.

- `least_important_heads(importance, k)` — the k heads ranked first (Michel et al. 2019's
  one-shot pruning step); `least_important_fraction` for a fraction of the scored heads.
- `all_but_best_head(importance)` — every head except the highest-ranked one of each layer
  (Michel et al. 2019, sec. 3.2: "most layers can be reduced to a single head"); the best of a
  layer is the head `pruning_order` puts last among that layer's heads.
- `random_order(heads, seed)` / `random_heads(heads, k, seed)` — a reproducible shuffle, the
  control the paper compares against.

Each returns (layer, head) pairs to mask, the form `Recipe.masked_heads` takes.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from analysis.errors import HeadroomError
from analysis.methods.importance import HeadImportance

Head = tuple[int, int]


def all_heads(num_layers: int, num_heads: int) -> list[Head]:
    """Every (layer, head) in row-major order: layer 0's heads first."""
    return [(l, h) for l in range(num_layers) for h in range(num_heads)]


def least_important_heads(importance: HeadImportance, k: int) -> list[Head]:
    """The k least important heads, in the order `pruning_order` ranks them."""
    order = importance.pruning_order()
    if not 0 <= k <= len(order):
        raise HeadroomError(f"Cannot mask {k} heads: the importance scores {len(order)} heads.")
    return order[:k]


def least_important_fraction(importance: HeadImportance, fraction: float) -> list[Head]:
    """The least important `fraction` of the scored heads (rounded to the nearest count)."""
    if not 0 <= fraction <= 1:
        raise HeadroomError(f"The fraction of heads to mask must be between 0 and 1 (got {fraction}).")
    return least_important_heads(importance, int(round(fraction * len(importance.pruning_order()))))


def best_head_per_layer(importance: HeadImportance) -> dict[int, int]:
    """layer -> its most important head (the last of that layer in `pruning_order`)."""
    best: dict[int, int] = {}
    for layer, head in importance.pruning_order():  # least important first: the last one wins
        best[layer] = head
    return best


def all_but_best_head(importance: HeadImportance) -> list[Head]:
    """Heads to mask so that each layer keeps exactly one head, its most important.

    Heads without a score (masked, or in a dropped layer, when importance was computed) are
    masked too; a layer with no scored head at all has no best one, which is an error.
    """
    num_layers, num_heads = np.shape(importance.scores)
    best = best_head_per_layer(importance)
    unscored = [l for l in range(num_layers) if l not in best]
    if unscored:
        raise HeadroomError(f"Layer {unscored[0]} has no importance score (it was dropped or all its heads were "
                            "masked when importance was computed); compute importance on the unpruned model.")
    return [(l, h) for l, h in all_heads(num_layers, num_heads) if h != best[l]]


def random_order(heads: Sequence[Head], seed: int) -> list[Head]:
    """The heads shuffled by numpy's default generator with this seed (reproducible)."""
    return [tuple(heads[i]) for i in np.random.default_rng(seed).permutation(len(heads))]


def random_heads(heads: Sequence[Head], k: int, seed: int) -> list[Head]:
    """k heads picked at random (the first k of `random_order`)."""
    if not 0 <= k <= len(heads):
        raise HeadroomError(f"Cannot pick {k} heads at random out of {len(heads)}.")
    return random_order(heads, seed)[:k]
