"""Resource limits, so a large upload or model cannot take the machine down.

Checked before any work starts, each with one sentence that says what to change. The numbers are
per device: a 2-core CPU evaluates ~100 examples/s on MiniLM-L6, so 20,000 examples is a few
minutes; a GPU takes ten times more. Override with HEADROOM_MAX_EXAMPLES if you know better.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from analysis.errors import HeadroomError


@dataclass(frozen=True)
class Limits:
    max_examples: int
    max_length: int
    max_batch_size: int


def limits_for(device_type: str) -> Limits:
    default_examples = 200_000 if device_type == "cuda" else 20_000
    max_examples = int(os.environ.get("HEADROOM_MAX_EXAMPLES", default_examples))
    return Limits(max_examples=max_examples, max_length=512, max_batch_size=4096 if device_type == "cuda" else 512)


def check(device_type: str, *, examples: int, max_length: int, batch_size: int) -> None:
    lim = limits_for(device_type)
    if examples > lim.max_examples:
        raise HeadroomError(
            f"{examples:,} examples is more than the {lim.max_examples:,} allowed on {device_type}; "
            f"use a subset (--limit / the subset slider)."
        )
    if not 2 <= max_length <= lim.max_length:
        raise HeadroomError(f"max_length must be between 2 and {lim.max_length} tokens (got {max_length}).")
    if not 1 <= batch_size <= lim.max_batch_size:
        raise HeadroomError(f"batch size must be between 1 and {lim.max_batch_size} on {device_type} (got {batch_size}).")
