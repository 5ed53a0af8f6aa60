"""What a search optimises and under which limits: the metric, a cost, a target.

- metric: the task metric of the fast incremental evaluation (`Evaluator.evaluate`, simulated:
  fake-quantised weights, masked heads, identity layers) — maximised;
- cost, one of COSTS — minimised:
  - "size": MB of the recipe's weights at their bits (`size_report`: counted, exact for the
    stored tensors);
  - "latency": ms per batch PREDICTED from the recipe's counted FLOPs (`measure/flops.py`) with
    one factor, ms per GFLOP, fitted once per device by timing the materialized baseline and two
    smaller recipes (`calibrate`). Bits do not enter it: a materialized recipe keeps fp32 kernels
    (fake-quantised values), so only heads and layers change its time. The front is then
    MEASURED (`front.py`);
- target (`--target "speedup>=2,drop<=1,size<=40"`): limits as Optuna constraints (a value <= 0
  is met) and as a filter on the front. speedup = baseline ms / recipe ms (predicted during the
  search); drop = baseline metric minus recipe metric, in points (x100).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

import torch

from analysis.core.recipe import Recipe
from analysis.errors import HeadroomError
from analysis.measure.flops import count_flops, total_flops

COSTS = ("size", "latency")
METRIC_NAMES = ("accuracy", "metric")  # "accuracy,size" reads naturally; the metric is the task's own


def parse_objectives(text: str) -> str:
    """'accuracy,latency' -> 'latency' (the cost; the first objective is always the metric)."""
    parts = [p.strip().lower() for p in text.split(",") if p.strip()]
    if len(parts) != 2 or parts[0] not in METRIC_NAMES or parts[1] not in COSTS:
        raise HeadroomError(f"--objectives must be the metric and a cost, e.g. accuracy,latency or accuracy,size "
                            f"(got '{text}').")
    return parts[1]


# ----------------------------------------------------------------------------------------- target
_LIMIT = re.compile(r"^\s*(speedup|drop|size)\s*(>=|<=)\s*([0-9]*\.?[0-9]+)\s*$")
_DIRECTION = {"speedup": ">=", "drop": "<=", "size": "<="}


@dataclass
class Target:
    """Limits a recipe must meet (None: no limit)."""

    min_speedup: float | None = None  # baseline ms / recipe ms
    max_drop: float | None = None  # metric points (x100) below the baseline
    max_size_mb: float | None = None

    @classmethod
    def parse(cls, text: str | None) -> "Target":
        target = cls()
        for item in filter(str.strip, (text or "").split(",")):
            m = _LIMIT.match(item)
            if not m:
                raise HeadroomError(f"'{item.strip()}' is not a limit; write e.g. --target \"speedup>=2,drop<=1,size<=40\".")
            what, op, value = m.group(1), m.group(2), float(m.group(3))
            if op != _DIRECTION[what]:
                raise HeadroomError(f"A {what} limit is written {what}{_DIRECTION[what]}VALUE.")
            setattr(target, {"speedup": "min_speedup", "drop": "max_drop", "size": "max_size_mb"}[what], value)
        return target

    def is_empty(self) -> bool:
        return self.min_speedup is None and self.max_drop is None and self.max_size_mb is None

    def violations(self, outcome: "Outcome") -> list[float]:
        """One number per limit, <= 0 when met (Optuna's constraint convention)."""
        out = []
        if self.min_speedup is not None:
            out.append(self.min_speedup - outcome.predicted_speedup)
        if self.max_drop is not None:
            out.append(outcome.drop_points - self.max_drop)
        if self.max_size_mb is not None:
            out.append(outcome.size_mb - self.max_size_mb)
        return out

    def met_by(self, outcome: "Outcome") -> bool:
        return all(v <= 1e-9 for v in self.violations(outcome))

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------------------- latency
def recipe_gflops(adapter, recipe: Recipe, batch_size: int, seq_len: int) -> float:
    return total_flops(count_flops(adapter, recipe, batch_size=batch_size, seq_len=seq_len)) / 1e9


@dataclass
class LatencyModel:
    """ms per batch predicted as ms_per_gflop x counted GFLOPs, fitted on timed recipes."""

    ms_per_gflop: float
    batch_size: int
    seq_len: int
    device: str
    threads: int
    points: list[dict] = field(default_factory=list)  # the calibration: description, gflops, measured_ms, predicted_ms
    what: str = ("predicted: counted FLOPs x ms per GFLOP, fitted (least squares through 0) on the measured "
                 "HF forward of the materialized baseline and smaller recipes")

    def predict_ms(self, adapter, recipe: Recipe) -> float:
        return self.ms_per_gflop * recipe_gflops(adapter, recipe, self.batch_size, self.seq_len)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LatencyModel":
        return cls(**d)

    @classmethod
    def fit(cls, gflops: list[float], ms: list[float], *, descriptions: list[str], batch_size: int, seq_len: int,
            device: str, threads: int) -> "LatencyModel":
        """Least squares through the origin: ms = a * GFLOP (a forward with no work takes no time)."""
        a = sum(g * t for g, t in zip(gflops, ms)) / sum(g * g for g in gflops)
        points = [{"recipe": d, "gflops": round(g, 4), "measured_ms": round(t, 3), "predicted_ms": round(a * g, 3)}
                  for d, g, t in zip(descriptions, gflops, ms)]
        return cls(a, batch_size, seq_len, device, threads, points)


def calibration_recipes(num_layers: int, pruning_order: list[tuple[int, int]]) -> list[Recipe]:
    """The baseline and two smaller recipes that move the FLOPs differently (layers, heads)."""
    half = len(pruning_order) // 2
    return [Recipe(name="baseline"),
            Recipe(dropped_layers=list(range(num_layers - num_layers // 2, num_layers)), name="top half of the layers dropped"),
            Recipe(masked_heads=pruning_order[:half], name="half of the heads pruned")]


def calibrate(model, adapter, recipes: list[Recipe], batch, *, repeats: int = 5) -> LatencyModel:
    """Time the materialized `recipes` interleaved on `batch` and fit ms per GFLOP."""
    from analysis.search.front import interleaved_ms

    models = {r.name: _materialized(model, r) for r in recipes}
    times = interleaved_ms(models, batch, repeats=repeats)
    B, T = batch.input_ids.shape
    return LatencyModel.fit([recipe_gflops(adapter, r, B, T) for r in recipes], [times[r.name] for r in recipes],
                            descriptions=[r.name for r in recipes], batch_size=int(B), seq_len=int(T),
                            device=str(batch.input_ids.device), threads=torch.get_num_threads())


def _materialized(model, recipe: Recipe):
    from analysis.core.materialize import materialize

    return model if recipe.is_baseline() else materialize(model, recipe)


# ----------------------------------------------------------------------------------------- one trial
@dataclass
class Outcome:
    """A recipe's figures in a search: what the objectives and the target read."""

    recipe: Recipe
    metric: float
    drop_points: float  # (baseline metric - metric) x 100
    size_mb: float
    predicted_ms: float | None
    predicted_speedup: float | None
    gflops: float | None
    agreement: float | None = None

    def cost(self, cost: str) -> float:
        return self.size_mb if cost == "size" else self.predicted_ms

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "recipe"}
        d["recipe"] = self.recipe.to_dict()
        d["description"] = self.recipe.describe()
        return d


def outcome_of(result, baseline_metric: float, adapter, latency: LatencyModel | None,
               baseline_ms: float | None) -> Outcome:
    """The Outcome of an EvalResult (and the latency model, where latency is predicted)."""
    pred = gflops = speedup = None
    if latency is not None:
        gflops = recipe_gflops(adapter, result.recipe, latency.batch_size, latency.seq_len)
        pred = latency.ms_per_gflop * gflops
        speedup = baseline_ms / pred if pred > 0 else None
    metric = float(result.metric if result.metric is not None else result.agreement)
    return Outcome(result.recipe, metric, (baseline_metric - metric) * 100.0, float(result.size.mb), pred, speedup,
                   gflops, result.agreement)
