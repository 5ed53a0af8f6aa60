"""After a search: the front measured on real models, and the uniform recipes it must beat.

- `interleaved_ms`: several models timed on one batch in rounds (A, B, C, A, B, C, ...), so a
  machine whose speed drifts (other processes, frequency) slows every model alike and the
  ratios stay fair; the figure is each model's median.
- `measure_front`: every front recipe is materialized (`core/materialize.py`: heads sliced out,
  layers removed) and timed interleaved against the unmodified model: measured ms and speedup,
  next to the predicted ones.
- `uniform_recipes`: what a user would try without a search — uniform 8- and 4-bit weights and
  the least important k heads pruned (Michel order) for a ladder of k, plus the top k layers
  dropped — evaluated the same way; `dominance` says, for each, whether a front recipe is at
  least as good on the metric at no more cost (and strictly better on one).
"""

from __future__ import annotations

import statistics

import torch

from analysis.core.recipe import Recipe
from analysis.measure.timing import measure
from analysis.measure.pareto import pareto_front
from analysis.search.objectives import Outcome, Target


def select_front(outcomes: list[Outcome], target: Target, cost: str) -> list[Outcome]:
    """The outcomes that meet the target and no other such outcome beats on (metric, cost), cheapest first."""
    feasible = [o for o in outcomes if target.met_by(o)]
    idx = pareto_front([o.metric for o in feasible], [o.cost(cost) for o in feasible],
                       keys=[o.recipe.key() for o in feasible])
    return [feasible[i] for i in idx]


@torch.inference_mode()
def interleaved_ms(models: dict, batch, *, repeats: int = 5, warmup: int = 2) -> dict[str, float]:
    """Median ms per forward of each model on `batch`, the models timed in turn within each round."""
    inputs = batch.model_inputs()
    device = batch.input_ids.device
    for m in models.values():  # warm every model first, so no model pays for the others' first run
        measure(lambda: m(**inputs), warmup=warmup, repeats=0, device=device)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeats):
        for name, m in models.items():
            times[name] += measure(lambda: m(**inputs), warmup=0, repeats=1, device=device)
    return {name: statistics.median(t) * 1000 for name, t in times.items()}


def measure_front(model, front: list[Outcome], batch, *, repeats: int = 5) -> list[dict]:
    """Measured ms and speedup of each front recipe's materialized model against the unmodified one."""
    from analysis.core.materialize import materialize

    rows = []
    for o in front:
        if o.recipe.is_baseline():
            rows.append({"measured_ms": None, "baseline_measured_ms": None, "measured_speedup": 1.0})
            continue
        small = materialize(model, o.recipe)
        t = interleaved_ms({"baseline": model, "recipe": small}, batch, repeats=repeats)
        rows.append({"measured_ms": round(t["recipe"], 3), "baseline_measured_ms": round(t["baseline"], 3),
                     "measured_speedup": round(t["baseline"] / t["recipe"], 4)})
        del small
    return rows


def uniform_recipes(num_layers: int, num_heads: int, pruning_order: list[tuple[int, int]],
                    granularity: str = "per-channel") -> list[Recipe]:
    """Uniform 8/4-bit, top-k heads pruned (k = 10%, 20%, ... 50% of the heads), top-k layers dropped."""
    total = num_layers * num_heads
    recipes = [Recipe(weight_bits=8, granularity=granularity, name="uniform 8-bit"),
               Recipe(weight_bits=4, granularity=granularity, name="uniform 4-bit")]
    for pct in (10, 20, 30, 40, 50):
        k = round(total * pct / 100)
        recipes.append(Recipe(masked_heads=pruning_order[:k], name=f"least important {k} heads pruned ({pct}%)"))
    for k in range(1, num_layers // 2 + 1):
        recipes.append(Recipe(dropped_layers=list(range(num_layers - k, num_layers)), name=f"top {k} layers dropped"))
    return recipes


def dominance(front: list[Outcome], uniform: list[Outcome], cost: str) -> list[dict]:
    """For each uniform recipe: the best front metric at no more cost, whether a front recipe dominates it
    (as good on both, better on one) and whether one is at least as good on both (a tie counts)."""
    rows = []
    for u in uniform:
        c = u.cost(cost)
        cheaper = [o for o in front if o.cost(cost) <= c + 1e-9]
        best = max(cheaper, key=lambda o: o.metric, default=None)
        dominated = any(o.metric >= u.metric and o.cost(cost) <= c and (o.metric > u.metric or o.cost(cost) < c)
                        for o in front)
        matched = any(o.metric >= u.metric and o.cost(cost) <= c for o in front)
        rows.append({"recipe": u.recipe.name, "metric": round(u.metric, 4), "drop_points": round(u.drop_points, 3),
                     "size_mb": round(u.size_mb, 3), "predicted_ms": _round(u.predicted_ms),
                     "predicted_speedup": _round(u.predicted_speedup),
                     "best_front_metric_at_no_more_cost": None if best is None else round(best.metric, 4),
                     "front_dominates": dominated, "front_at_least_as_good": matched})
    return rows


def _round(x, n: int = 4):
    return None if x is None else round(x, n)
