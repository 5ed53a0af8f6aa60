"""Latency of a Recipe, as a user may trust it: the model that would run, against the baseline, interleaved.

What is timed is the model a deployment of the recipe would run, not Headroom's simulation:
- masked heads and dropped layers: the materialized model (heads sliced out, layers removed);
- 8-bit weights in every layer: a real int8 model (`lowbit.build`, the deterministic backend
  rule) of the materialized model; 16-bit weights: a real bf16 model (CPU) / fp16 (CUDA);
- magnitude sparsity: unstructured zeros run through the same dense kernels, so a sparsity-only
  recipe gets "fp32 kernels: no speed change" and no timing (its size gain is in a compressed file);
- any other bit-width (2-7 bits, mixed, activation-only): there are no such kernels here, so the
  weights would run fp32 kernels. A bits-only recipe then gets no number at all but the
  statement "fp32 kernels: no speed change"; with structural changes, the structure is timed
  and a note says the bits were not.
The recipe's model and the baseline are timed in the same call, interleaved
(`timing.compare`), and the figure is their ratio with its spread and verdict. A `Latency`
also carries the ratio predicted from counted FLOPs, labelled "predicted", which costs nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from analysis.core.recipe import Recipe
from analysis.measure.timing import MIN_VERDICT_ROUNDS, NO_CHANGE, compare

FP32_KERNELS = "fp32 kernels: no speed change"
#: interleaved rounds per latency (each runs the baseline and the recipe's model once)
DEFAULT_ROUNDS = 15


@dataclass
class Latency:
    """A recipe's forward time on one fixed batch, measured against the baseline in the same run."""

    ms_per_batch: float | None  # median ms of the recipe's model (None: not timed, see `kind`)
    ms_per_example: float | None
    batch_size: int
    seq_len: int
    device: str
    threads: int
    dtype: str
    repeats: int  # interleaved rounds
    what: str  # which model was timed, e.g. "materialized model (heads sliced out, layers removed)"
    kind: str = "measured"  # "measured" | "baseline" | FP32_KERNELS (not timed: it would run as fast as fp32)
    ratio: float | None = None  # median of per-round (recipe time / baseline time); < 1 is faster
    ratio_iqr: tuple[float, float] | None = None  # 25th-75th percentile of the per-round ratios
    ratio_ci95: tuple[float, float] | None = None  # bootstrap 95% interval of `ratio`
    verdict: str | None = None  # "faster" | "slower" | "no measurable change"
    baseline_ms_per_batch: float | None = None  # the baseline's median ms in the same rounds
    load_average: float | None = None  # 1-minute load average at measurement time
    predicted_ratio: float | None = None  # counted FLOPs of the recipe / of the baseline: predicted, not measured
    notes: list[str] = field(default_factory=list)

    @property
    def front_ratio(self) -> float | None:
        """The time ratio a Pareto front or a speed-up uses: 1.0 where no change was measured or
        none is possible (fp32 kernels), the measured median otherwise."""
        if self.kind in ("baseline", FP32_KERNELS) or self.verdict == NO_CHANGE:
            return 1.0
        return self.ratio

    def label(self) -> str:
        """One line for a table: the ratio, its interval and the verdict (or why there is none)."""
        if self.kind == FP32_KERNELS:
            return FP32_KERNELS
        if self.kind == "baseline" or self.ratio is None:
            return "baseline (reference)"
        lo, hi = self.ratio_ci95
        label = f"{self.ratio:.2f}x [{lo:.2f}-{hi:.2f}] {self.verdict}"
        if self.repeats < MIN_VERDICT_ROUNDS:
            label += f" ({self.repeats} rounds: too few for a verdict)"
        return label

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("ratio_iqr", "ratio_ci95"):  # lists, as they come back from JSON
            d[k] = None if d[k] is None else list(d[k])
        d["front_ratio"] = self.front_ratio
        return d


def structural_part(recipe: Recipe) -> Recipe:
    """The recipe without its bits: what materialization changes in the model's shape."""
    return Recipe(masked_heads=recipe.masked_heads, dropped_layers=recipe.dropped_layers,
                  masked_neurons=recipe.masked_neurons, ranks=recipe.ranks, embedding_size=recipe.embedding_size,
                  shared_layers=recipe.shared_layers, share_mode=recipe.share_mode)


def has_bits(recipe: Recipe, num_layers: int) -> bool:
    return (any(b != 32 for b in recipe.layer_bits(num_layers)) or recipe.embedding_bits != 32
            or recipe.activation_bits != 32)


def real_kernels_for(recipe: Recipe, num_layers: int) -> str | None:
    """"int8" / "bf16" when the recipe's bits have real kernels here, None when they run as fp32."""
    bits = set(recipe.layer_bits(num_layers))
    if bits == {8} and recipe.embedding_bits in (8, 32):
        return "int8"
    if bits == {16} and recipe.embedding_bits in (16, 32) and recipe.activation_bits == 32:
        return "bf16"
    return None


def deployed_model(model: torch.nn.Module, recipe: Recipe, device: torch.device) -> tuple[torch.nn.Module | None, str, list[str]]:
    """(the model that would run, what it is, notes); None for a bits-only recipe on fp32 kernels."""
    from analysis.core.adapters import Adapter
    from analysis.core.materialize import materialize

    L = Adapter(model).num_layers
    structure = structural_part(recipe)
    notes: list[str] = []
    bits = has_bits(recipe, L)
    kernels = real_kernels_for(recipe, L) if bits else None
    sparse_note = ("unstructured zeros (magnitude sparsity) run through the same dense kernels: they buy size in a "
                   "compressed format, not speed, so they are not timed")
    if recipe.has_sparsity() and structure.is_baseline() and (not bits or kernels is None):
        return None, FP32_KERNELS, [sparse_note] + (["these bit-widths have no integer kernels here"] if bits else [])
    if recipe.has_sparsity():
        notes.append(sparse_note)
    if bits and kernels is None and structure.is_baseline():
        return None, FP32_KERNELS, ["these bit-widths have no integer kernels here: the model runs fp32 kernels"]
    new = model if structure.is_baseline() else materialize(model, structure)
    what = "materialized model (heads and FFN neurons sliced out, layers removed)" if not structure.is_baseline() else "unmodified model"
    if kernels is not None:
        from analysis.measure import lowbit

        mode = kernels if kernels == "int8" or device.type == "cpu" else "fp16"
        new, backend, notes = lowbit.build(new, mode, device=device)
        what = f"real {mode} model ({backend})" + (" of the materialized model" if not structure.is_baseline() else "")
    elif bits:
        notes.append("bits not timed: these bit-widths run fp32 kernels, so only the structure changes speed")
    return new, what, notes


def predicted_ratio(adapter, recipe: Recipe, batch_size: int, seq_len: int) -> float | None:
    """Counted FLOPs of the recipe over the baseline's (structure only): a prediction, not a timing."""
    from analysis.measure.flops import count_flops, total_flops

    try:
        base = total_flops(count_flops(adapter, Recipe(), batch_size, seq_len))
        return total_flops(count_flops(adapter, structural_part(recipe), batch_size, seq_len)) / base
    except Exception:  # noqa: BLE001 - a family flops does not count: no prediction, not an error
        return None


@torch.inference_mode()
def measure_recipe_latency(loaded, recipe: Recipe, batch, *, dtype: str = "fp32", rounds: int = DEFAULT_ROUNDS,
                           warmup: int = 2) -> Latency:
    """The recipe's `deployed_model` and the loaded model timed interleaved on `batch`."""
    adapter = loaded.adapter
    B, T = batch.input_ids.shape
    device = batch.input_ids.device
    common = dict(batch_size=B, seq_len=T, device=str(device), dtype=dtype,
                  predicted_ratio=predicted_ratio(adapter, recipe, B, T))
    inputs = batch.model_inputs()
    baseline_model = loaded.model
    run_base = lambda: baseline_model(**inputs)  # noqa: E731
    if recipe.is_baseline():
        c = compare({}, run_base, rounds=rounds, warmup=warmup, device=device)["baseline"]
        return Latency(c.ms, c.ms / B, threads=c.threads, repeats=rounds, what="unmodified model", kind="baseline",
                       ratio=1.0, ratio_iqr=(1.0, 1.0), ratio_ci95=(1.0, 1.0), verdict="baseline",
                       baseline_ms_per_batch=c.ms, load_average=c.load_average, **common)
    model, what, notes = deployed_model(baseline_model, recipe, device)
    if model is None:
        return Latency(None, None, threads=torch.get_num_threads(), repeats=0, what=what, kind=FP32_KERNELS,
                       notes=notes, **common)
    run = lambda: model(**inputs)  # noqa: E731
    c = compare({"recipe": run}, run_base, rounds=rounds, warmup=warmup, device=device)["recipe"]
    return Latency(c.ms, c.ms / B, threads=c.threads, repeats=rounds, what=what, kind="measured", ratio=c.ratio,
                   ratio_iqr=c.ratio_iqr, ratio_ci95=c.ratio_ci95, verdict=c.verdict, baseline_ms_per_batch=c.baseline_ms,
                   load_average=c.load_average, notes=notes, **common)
