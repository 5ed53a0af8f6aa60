"""Wall-clock timing: one stopwatch loop for the Evaluator, the real low-precision models and the benchmarks.

`measure(fn)` runs `fn` a few times untimed (kernel selection, allocator, caches), then times
`repeats` runs; on CUDA it synchronises after each run, so a time is the work done and not the
launch. `median_seconds` is the figure every report quotes. `synthetic_batch` gives a batch of
random ids for timing without data: a forward's time depends on the shapes, not on the tokens.
"""

from __future__ import annotations

import statistics
import time

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
