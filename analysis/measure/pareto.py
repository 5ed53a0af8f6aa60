"""The Pareto front of evaluated recipes: the ones no other recipe beats on metric and cost.

Definition (maximise the metric, minimise the cost — size in MB, latency in ms, ...):
point j *dominates* point i when metric_j >= metric_i and cost_j <= cost_i, with at least one
of the two strictly better. The front is every point no other point dominates.

- Ties: two different recipes with the same metric and the same cost do not dominate each
  other, so both are on the front.
- Duplicates: entries with the same `key` (e.g. `Recipe.key()`, the same recipe evaluated twice
  or under two names) are counted once: the first is kept, the later ones are never on the front.
- Points whose metric or cost is missing (None or NaN) are left out.

The result is a list of indices into the inputs, cheapest first (then higher metric, then input
order), so it can be drawn as a line. Plain numbers in, so any table of results can use it.
"""

from __future__ import annotations

import math
from typing import Hashable, Sequence


def _number(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


def pareto_front(metric: Sequence[float | None], cost: Sequence[float | None],
                 keys: Sequence[Hashable] | None = None) -> list[int]:
    """Indices of the points on the front (see the module docstring), cheapest first."""
    if len(metric) != len(cost) or (keys is not None and len(keys) != len(metric)):
        raise ValueError("metric, cost and keys must have the same length")
    seen: set = set()
    points: list[tuple[int, float, float]] = []  # (index, metric, cost) of the candidates
    for i, (m, c) in enumerate(zip(metric, cost)):
        m, c = _number(m), _number(c)
        if m is None or c is None:
            continue
        if keys is not None:
            if keys[i] in seen:
                continue
            seen.add(keys[i])
        points.append((i, m, c))
    front = [(i, m, c) for i, m, c in points
             if not any(mj >= m and cj <= c and (mj > m or cj < c) for _, mj, cj in points)]
    return [i for i, _, _ in sorted(front, key=lambda p: (p[2], -p[1], p[0]))]


def lookup(entry: dict, path: str):
    """A field of a nested result dict by dotted path ('size.mb'); None when absent."""
    value = entry
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value
