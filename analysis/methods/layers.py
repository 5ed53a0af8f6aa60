"""Layer dropping, after Sajjad et al. 2023, "On the Effect of Dropping Layers of Pre-trained
Transformer Models" (arXiv:2004.03844).

A model with L encoder layers loses k of them; a dropped layer becomes the identity (the hidden
states pass through unchanged), which is exactly what `Recipe.dropped_layers` simulates and what
`materialize` builds for real. The paper's strategies, with layers numbered 0 (next to the
embeddings) to L-1 (next to the classifier):

- top:            the last k layers, L-k .. L-1 (the paper finds this hurts least);
- bottom:         the first k layers, 0 .. k-1;
- alternate-odd:  every other layer counted from the top, the odd ones in the paper's 1-based
                  numbering (L-1, L-3, ... in 1-based terms: for 12 layers, k=4 drops 11, 9, 7, 5,
                  i.e. 0-based 10, 8, 6, 4);
- alternate-even: the even ones in 1-based numbering (12, 10, 8, 6 -> 0-based 11, 9, 7, 5);
- symmetric:      k layers from the middle, keeping the bottom and top ones;
- contribution:   the k layers that change their input least, measured as the mean cosine
                  similarity of the [CLS] (first-token) vector before and after the layer on a
                  subset of the data (a high similarity = a small contribution);
- custom:         any set of layers.

`sweep` evaluates k = 1..L-1 for each strategy on an `EvalContext` (the Evaluator); with its
cached trace, dropping the top k layers only recomputes layers from L-k on, so the sweep is cheap.
"""

from __future__ import annotations

import statistics
import threading
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from analysis.errors import HeadroomError
from analysis.jobs import Progress, check_cancel, report
from analysis.core.recipe import Recipe
from analysis.methods.context import EvalContext

STRATEGIES = ("top", "bottom", "alternate-odd", "alternate-even", "symmetric", "contribution", "custom")
SWEEP_STRATEGIES = STRATEGIES[:-1]  # custom needs a user's set


def max_k(strategy: str, num_layers: int) -> int:
    """The largest k the strategy can drop while keeping at least one layer."""
    if strategy == "alternate-odd":
        return min((num_layers + 1) // 2, num_layers - 1)  # how many odd numbers 1..L has
    if strategy == "alternate-even":
        return min(num_layers // 2, num_layers - 1)
    return num_layers - 1


def dropped_layers_for(
    strategy: str,
    k: int,
    num_layers: int,
    *,
    contribution: list[float] | None = None,
    custom: list[int] | None = None,
) -> list[int]:
    """0-based indices of the layers `strategy` drops for this k (sorted)."""
    L = num_layers
    if strategy not in STRATEGIES:
        raise HeadroomError(f"Unknown layer-dropping strategy '{strategy}'; choose from {', '.join(STRATEGIES)}.")
    if strategy == "custom":
        if not custom:
            raise HeadroomError("The custom strategy needs the layers to drop, e.g. --layers 2,4.")
        bad = [l for l in custom if not 0 <= l < L]
        if bad:
            raise HeadroomError(f"Layer {bad[0]} does not exist; the model has layers 0-{L - 1}.")
        if len(set(custom)) >= L:
            raise HeadroomError(f"Dropping all {L} layers leaves no model; keep at least one.")
        return sorted(set(custom))
    limit = max_k(strategy, L)
    if not 1 <= k <= limit:
        raise HeadroomError(f"k must be between 1 and {limit} for the {strategy} strategy on a {L}-layer model (got {k}).")
    if strategy == "top":
        return list(range(L - k, L))
    if strategy == "bottom":
        return list(range(k))
    if strategy in ("alternate-odd", "alternate-even"):
        # 1-based layer numbers from the top: odd ones are L-1, L-3, ... when L is even.
        numbers = [n for n in range(L, 0, -1) if n % 2 == (1 if strategy == "alternate-odd" else 0)]
        return sorted(n - 1 for n in numbers[:k])
    if strategy == "symmetric":
        start = (L - k) // 2
        return list(range(start, start + k))
    # contribution
    if contribution is None or len(contribution) != L:
        raise HeadroomError("The contribution strategy needs one [CLS] similarity per layer (layer_contributions).")
    order = sorted(range(L), key=lambda l: -contribution[l])  # most similar = least contribution first
    return sorted(order[:k])


@torch.inference_mode()
def layer_contributions(ctx: EvalContext, max_examples: int = 256) -> list[float]:
    """Mean cosine similarity of the [CLS] vector entering vs leaving each layer, per layer.

    Measured on the context's first batches up to `max_examples` (pads are irrelevant: the
    [CLS] token is position 0 of every example). Uses the cached trace when there is one.
    """
    L = ctx.adapter.num_layers
    sums = torch.zeros(L, dtype=torch.float64)
    seen = 0
    sim = None
    for bi, batch in enumerate(ctx.batches):
        if seen >= max_examples:
            break
        if ctx.trace is not None:
            states = ctx.trace[bi]
        else:
            sim = sim or ctx.simulator(Recipe())
            states = sim.forward(batch, output_hidden_states=True).hidden_states
        n = min(batch.input_ids.shape[0], max_examples - seen)
        for l in range(L):
            before, after = states[l][:n, 0].float(), states[l + 1][:n, 0].float()  # (n, D)
            sums[l] += F.cosine_similarity(before, after, dim=-1).double().sum()
        seen += n
    return [float(s / seen) for s in sums]


@dataclass
class DropResult:
    strategy: str
    k: int
    dropped_layers: list[int]
    metric: float | None
    agreement: float
    loss: float | None
    size_mb: float
    eval_seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LayerDropSweep:
    """Metric of every (strategy, k); `mode` says these are simulated (exact for dropping)."""

    model: str
    data: str
    num_examples: int
    num_layers: int
    metric_name: str
    baseline_metric: float | None
    contribution: list[float]
    rows: list[DropResult] = field(default_factory=list)
    mode: str = "simulated (dropping a layer = identity; exact, same logits as the materialized model)"

    def table(self) -> dict[str, dict[int, float | None]]:
        """{strategy: {k: metric}} for plots."""
        out: dict[str, dict[int, float | None]] = {}
        for r in self.rows:
            out.setdefault(r.strategy, {})[r.k] = r.metric
        return out

    def to_dict(self) -> dict:
        d = asdict(self)
        d["table"] = {s: {str(k): v for k, v in ks.items()} for s, ks in self.table().items()}
        return d


def evaluate_drop(ctx: EvalContext, strategy: str, k: int, *, contribution=None, custom=None, base: Recipe | None = None,
                  cancel: threading.Event | None = None) -> DropResult:
    """Simulated metric of dropping the layers `strategy` picks for k (on top of `base`)."""
    L = ctx.adapter.num_layers
    dropped = dropped_layers_for(strategy, k, L, contribution=contribution, custom=custom)
    base = base or Recipe()
    recipe = base.replace(dropped_layers=sorted(set(base.dropped_layers) | set(dropped)),
                          name=f"{strategy} k={len(dropped)}")
    r = ctx.evaluate(recipe, cancel=cancel)
    return DropResult(strategy, len(dropped), dropped, r.metric, r.agreement, r.loss, round(r.size.mb, 3),
                      round(r.eval_seconds, 3))


def sweep(
    ctx: EvalContext,
    strategies: tuple[str, ...] = SWEEP_STRATEGIES,
    ks: list[int] | None = None,
    *,
    contribution_examples: int = 256,
    progress: Progress = None,
    cancel: threading.Event | None = None,
) -> LayerDropSweep:
    """Every strategy at every k (default 1..L-1; k a strategy cannot reach is skipped)."""
    L = ctx.adapter.num_layers
    for s in strategies:
        if s not in SWEEP_STRATEGIES:
            raise HeadroomError(f"Unknown sweep strategy '{s}'; choose from {', '.join(SWEEP_STRATEGIES)}.")
    ks = list(ks or range(1, L))
    contribution = layer_contributions(ctx, contribution_examples)
    jobs = [(s, k) for s in strategies for k in ks if 1 <= k <= max_k(s, L)]
    result = LayerDropSweep(
        model=ctx.loaded.name, data=ctx.dataset.name, num_examples=len(ctx.dataset), num_layers=L,
        metric_name=ctx.baseline.metric_name, baseline_metric=ctx.baseline.metric, contribution=contribution,
    )
    for i, (s, k) in enumerate(jobs):
        check_cancel(cancel, "layer-dropping sweep")
        report(progress, i / len(jobs), f"{s}, k={k}")
        result.rows.append(evaluate_drop(ctx, s, k, contribution=contribution, cancel=cancel))
    report(progress, 1.0, "done")
    return result


@torch.inference_mode()
def materialized_latency(model, dropped_layers: list[int], batch, *, repeats: int = 5, warmup: int = 1) -> dict:
    """Measured HF-forward time of the model with `dropped_layers` really removed, vs the full one.

    Both models are timed in the same call on the same (B, T) batch, interleaved, so the ratio is
    fair on a machine whose speed drifts.
    """
    from analysis.measure.timing import measure
    from analysis.core.materialize import materialize

    device = next(model.parameters()).device
    small = materialize(model, Recipe(dropped_layers=dropped_layers))
    inputs = batch.model_inputs()
    full_t, small_t = [], []
    for _ in range(repeats):
        full_t += measure(lambda: model(**inputs), warmup=warmup, repeats=1, device=device)
        small_t += measure(lambda: small(**inputs), warmup=warmup, repeats=1, device=device)
        warmup = 0
    full_ms, small_ms = statistics.median(full_t) * 1000, statistics.median(small_t) * 1000
    return {
        "dropped_layers": sorted(dropped_layers),
        "full_ms": round(full_ms, 2),
        "dropped_ms": round(small_ms, 2),
        "latency_ratio": round(small_ms / full_ms, 4),
        "batch_size": int(batch.input_ids.shape[0]),
        "seq_len": int(batch.input_ids.shape[1]),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "what": "measured: HF forward of the materialized model (layers removed) vs the full model",
    }
