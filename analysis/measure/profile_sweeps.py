"""Profile sweeps: measured ms vs counted FLOPs per component over sequence lengths or batch sizes.

Each point is one `profile_model` run of Headroom's forward (the materialized model is not
timed here); the table has one row per (point, component), so attention's quadratic growth in
the sequence length can be set against the FFN's linear one.
"""

from __future__ import annotations

from analysis.core.recipe import Recipe
from analysis.errors import HeadroomError
from analysis.measure.profile import as_adapter, max_seq_len, profile_model


def _sweep(model_like, recipe, points: list[tuple[int, int]], device, repeats, dtype):
    import pandas as pd

    frames = []
    for batch_size, seq_len in points:
        r = profile_model(model_like, recipe, batch_size, seq_len, device, repeats, dtype=dtype, materialized=False)
        df = r.by_component()
        df.insert(0, "seq_len", seq_len)
        df.insert(0, "batch_size", batch_size)
        df["forward_ms"], df["coverage"], df["device"], df["threads"] = r.forward_ms, r.coverage, r.device, r.threads
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def sweep_seq_len(model_like, recipe: Recipe | None = None, seq_lens=(16, 32, 64, 128, 256, 512), batch_size: int = 8,
                  device=None, repeats: int = 3, dtype: str = "fp32"):
    """Measured ms vs counted FLOPs per component for each sequence length (longer than the model takes: skipped)."""
    limit = max_seq_len(as_adapter(model_like)[0])
    kept = [t for t in seq_lens if t <= limit]
    if not kept:
        raise HeadroomError(f"No sequence length in the sweep fits this model (at most {limit} tokens).")
    df = _sweep(model_like, recipe, [(batch_size, t) for t in kept], device, repeats, dtype)
    df.attrs["skipped_seq_lens"] = [t for t in seq_lens if t > limit]
    return df


def sweep_batch_size(model_like, recipe: Recipe | None = None, batch_sizes=(1, 4, 16, 64), seq_len: int = 128,
                     device=None, repeats: int = 3, dtype: str = "fp32"):
    """Measured ms vs counted FLOPs per component for each batch size."""
    return _sweep(model_like, recipe, [(b, seq_len) for b in batch_sizes], device, repeats, dtype)
