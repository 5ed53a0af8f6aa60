"""The profiler's stopwatch: wall time per (component, layer), and the conditions it ran under.

A `Stopwatch` is the `timer` that `simulate.encoder_layer` / `SimulatedModel.forward` accept:
`watch(component, layer)` is a context manager around one component's block, so the profiled
forward is the forward itself, not a copy of it. On CUDA every reading synchronises first, so a
block's time is the wall time it adds (kernel launch and execution, serialised).

`time_pair` alternates the whole forward (untimed) with a profiled one, so drift (other jobs,
clock boosts) hits both alike; every number it returns is a median over `repeats` runs.
"""

from __future__ import annotations

import os
import statistics
import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Callable, Iterator

import torch


class Stopwatch:
    """Seconds per (component, layer), summed over the blocks timed; synchronises CUDA when reading."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.laps: dict[tuple, float] = defaultdict(float)  # (component, layer or None) -> seconds

    def now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def add(self, component: str, layer: int | None, seconds: float) -> None:
        self.laps[(component, layer)] += seconds

    @contextmanager
    def __call__(self, component: str, layer: int | None) -> Iterator[None]:
        """Time the block inside `with watch(component, layer):` — the `simulate.Timer` protocol."""
        start = self.now()
        try:
            yield
        finally:
            self.add(component, layer, self.now() - start)


@torch.inference_mode()
def time_pair(whole: Callable[[], object], profiled: Callable[[Stopwatch], object], device: torch.device,
              repeats: int, warmup: int) -> tuple[float, dict]:
    """Median ms of `whole()` and per-(component, layer) median ms of `profiled(watch)`, alternating runs."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        whole()
        profiled(Stopwatch(device))
    sync()
    wholes, laps = [], defaultdict(list)
    for _ in range(repeats):
        t0 = time.perf_counter()
        whole()
        sync()
        wholes.append(time.perf_counter() - t0)
        watch = Stopwatch(device)
        profiled(watch)
        for key, s in watch.laps.items():
            laps[key].append(s)
    return statistics.median(wholes) * 1e3, {k: statistics.median(v) * 1e3 for k, v in laps.items()}


def load_average(device: torch.device) -> float | None:
    """CPU only: the 1-minute load average while measuring (other jobs slow a CPU measurement down)."""
    return round(os.getloadavg()[0], 2) if device.type == "cpu" and hasattr(os, "getloadavg") else None


def peak_memory_mb(fn: Callable[[], object], device: torch.device) -> float | None:
    """CUDA only: peak memory allocated while running `fn()` once, in MB."""
    if device.type != "cuda":
        return None
    torch.cuda.reset_peak_memory_stats(device)
    with torch.inference_mode():
        fn()
    torch.cuda.synchronize()
    return round(torch.cuda.max_memory_allocated(device) / 1e6, 1)
