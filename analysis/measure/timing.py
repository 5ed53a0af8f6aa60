"""Wall-clock timing: one stopwatch loop for the Evaluator, the real low-precision models and the benchmarks.

`measure(fn)` runs `fn` a few times untimed (kernel selection, allocator, caches), then times
`repeats` runs; on CUDA it synchronises after each run, so a time is the work done and not the
launch. `median_seconds` is the figure every report quotes. `synthetic_batch` gives a batch of
random ids for timing without data: a forward's time depends on the shapes, not on the tokens.

`compare(candidates, baseline)` is the one way a speed-up is stated. A time measured now and a
baseline measured a minute ago under another load are not comparable on a shared machine, so the
baseline and every candidate are timed in the same call, interleaved: each round runs the
baseline and each candidate once, in a shuffled order, and a candidate's figure is the median of
its per-round ratios to the baseline of the same round (load that changes between rounds cancels
out). The spread is stated with the ratios' IQR and a bootstrap 95% interval of that median, and
a verdict says "no measurable change" when the interval includes 1 (or lies within
`tolerance` of it), otherwise "faster" or "slower". The machine's load average at measurement
time is recorded with it.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch

from analysis.io.batching import Batch


def measure(fn, *, warmup: int = 2, repeats: int = 5, device: torch.device | None = None) -> list[float]:
    """Wall-clock seconds of `fn()` over `repeats` runs after `warmup` runs (CUDA synchronised)."""
    sync = torch.cuda.synchronize if device is not None and device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def median_seconds(fn, *, warmup: int = 2, repeats: int = 5, device: torch.device | None = None) -> float:
    """Median of `measure(fn, ...)`: the one figure reported for a timing."""
    return statistics.median(measure(fn, warmup=warmup, repeats=repeats, device=device))


@torch.inference_mode()
def time_forward(model: torch.nn.Module, batch: Batch, *, repeats: int = 5, warmup: int = 2) -> float:
    """Median seconds of a HF model's forward on `batch` (on the batch's device)."""
    inputs = batch.model_inputs()
    return median_seconds(lambda: model(**inputs), warmup=warmup, repeats=repeats, device=batch.input_ids.device)


def synthetic_batch(vocab_size: int, batch_size: int, seq_len: int, device, seed: int = 0) -> Batch:
    """(B, T) random token ids, every position attended: for timing without data."""
    g = torch.Generator().manual_seed(seed)
    low = min(1000, vocab_size // 2)  # above BERT's special and unused ids when the vocabulary is real
    ids = torch.randint(low, vocab_size, (batch_size, seq_len), generator=g).to(device)  # (B, T)
    ones = torch.ones_like(ids)  # (B, T)
    return Batch(input_ids=ids, attention_mask=ones, token_type_ids=torch.zeros_like(ids),
                 example_ids=torch.arange(batch_size))


# ----------------------------------------------------------------------------------- comparisons
NO_CHANGE = "no measurable change"
#: a change within 1 +/- this (interval or median) is reported as no measurable change: a masked head timed
#: 10 times on the idle 2-core CPU read 0.96-1.03 (benchmarks/RESULTS.md, latency spread); below what a shared
#: machine's timings resolve, and below what anyone deploys a change for
TOLERANCE = 0.05
#: fewer timed rounds than this give no verdict ("no measurable change"), whatever their ratios
MIN_VERDICT_ROUNDS = 5


def load_average() -> float | None:
    """The 1-minute load average (runnable processes), or None where the OS does not say."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def verdict(ci95: tuple[float, float], tolerance: float = TOLERANCE, *, ratio: float | None = None,
            rounds: int | None = None) -> str:
    """"faster" / "slower" only with evidence of a change bigger than the tolerance, else no change.

    Evidence: the whole 95% interval of time ratios on one side of 1, and the median ratio
    (`ratio`, when given) more than `tolerance` away from 1; an interval wholly inside
    1 +- tolerance is no change either. Timing the same model against itself on an idle 2-core CPU
    gives medians within +-2% whose tight intervals can exclude 1 (benchmarks/RESULTS.md, latency
    spread): the median rule keeps such noise from reading as a speed-up. Fewer than
    MIN_VERDICT_ROUNDS rounds are not evidence at all (a bootstrap of 2-4 ratios is just those ratios).
    """
    lo, hi = ci95
    if rounds is not None and rounds < MIN_VERDICT_ROUNDS:
        return NO_CHANGE
    if lo <= 1.0 <= hi or (lo >= 1.0 - tolerance and hi <= 1.0 + tolerance):
        return NO_CHANGE
    if ratio is not None and abs(ratio - 1.0) <= tolerance:
        return NO_CHANGE
    return "faster" if hi < 1.0 else "slower"


def bootstrap_median_ci(values: list[float], *, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the median of `values` (seeded: the same data, the same interval)."""
    rng = random.Random(seed)
    n = len(values)
    medians = sorted(statistics.median(rng.choices(values, k=n)) for _ in range(resamples))
    return medians[int(0.025 * (resamples - 1))], medians[int(round(0.975 * (resamples - 1)))]


def quartiles(values: list[float]) -> tuple[float, float]:
    """(25th, 75th) percentile: the IQR's ends."""
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


@dataclass
class Comparison:
    """One candidate timed against the baseline in the same interleaved run."""

    name: str
    ratio: float  # median over rounds of (candidate time / baseline time of the same round); < 1 is faster
    ratio_iqr: tuple[float, float]  # 25th and 75th percentile of the per-round ratios
    ratio_ci95: tuple[float, float]  # bootstrap 95% interval of `ratio`
    verdict: str  # "faster", "slower" or "no measurable change"
    ms: float  # median milliseconds of one candidate run
    baseline_ms: float  # median milliseconds of one baseline run, same rounds
    rounds: int  # timed rounds (each ran the baseline and the candidate once)
    warmup: int  # untimed rounds before them
    device: str
    threads: int  # torch's intra-op threads at measurement time
    load_average: float | None  # 1-minute load average when the run ended

    @property
    def speedup(self) -> float:
        """Baseline time / candidate time (1 / ratio): > 1 is faster."""
        return 1.0 / self.ratio

    def describe(self) -> str:
        lo, hi = self.ratio_ci95
        return f"{self.ratio:.2f}x baseline time (95% interval {lo:.2f}-{hi:.2f}, {self.rounds} rounds): {self.verdict}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ratio_iqr"], d["ratio_ci95"] = list(self.ratio_iqr), list(self.ratio_ci95)
        return d


def compare(candidates: dict[str, Callable[[], object]], baseline: Callable[[], object], *, rounds: int = 20,
            warmup: int = 2, device: torch.device | str | None = None, tolerance: float = TOLERANCE,
            seed: int = 0) -> dict[str, Comparison]:
    """Time `baseline` and every candidate interleaved in one call; a `Comparison` per candidate.

    The result also holds the baseline against itself under the name "baseline" when it is not a
    candidate's name: its ratio is 1 by construction, and its ms are the reference.
    """
    if rounds < 2:
        raise ValueError("compare needs at least 2 rounds to state a spread")
    device = torch.device(device) if device is not None else torch.device("cpu")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    names = list(candidates)
    fns = {"\0baseline": baseline, **candidates}
    order = list(fns)
    rng = random.Random(seed)

    def run(fn) -> float:
        t0 = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - t0

    for _ in range(warmup):
        for key in order:
            fns[key]()
        sync()
    times: dict[str, list[float]] = {key: [] for key in order}
    for _ in range(rounds):
        rng.shuffle(order)  # no fixed position: caches warmed by the previous call favour nobody
        for key in order:
            times[key].append(run(fns[key]))
    load, threads = load_average(), torch.get_num_threads()
    base = times["\0baseline"]
    base_ms = statistics.median(base) * 1000
    out: dict[str, Comparison] = {}
    for name in names + ([] if "baseline" in names else ["baseline"]):
        t = base if name == "baseline" and name not in candidates else times[name]
        ratios = [a / b for a, b in zip(t, base)]
        ci = bootstrap_median_ci(ratios, seed=seed)
        out[name] = Comparison(
            name=name, ratio=statistics.median(ratios), ratio_iqr=quartiles(ratios), ratio_ci95=ci,
            verdict=verdict(ci, tolerance, ratio=statistics.median(ratios), rounds=rounds), ms=statistics.median(t) * 1000, baseline_ms=base_ms, rounds=rounds,
            warmup=warmup, device=str(device), threads=threads, load_average=load)
    return out
