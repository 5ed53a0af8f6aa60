"""Typed command-line values, validated at the boundary: one sentence and status 2 for a bad one.

argparse's `type=int` accepts 0, -3 and (for floats) nan, inf and 1e400, and the run then goes
on to a wrong number or a traceback. Every numeric option of every command uses one of these
instead, so the range a value must lie in is declared where the option is, and said in the error.
"""

from __future__ import annotations

import argparse
import math


def count(minimum: int = 1, maximum: int | None = None):
    """A whole number in [minimum, maximum], e.g. `type=count(1)` for a batch size."""

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f"at least {minimum}" if maximum is None else f"between {minimum} and {maximum}"
            raise argparse.ArgumentTypeError(f"must be {bounds} (got {value})")
        return value

    parse.__name__ = "whole number"
    return parse


def number(minimum: float | None = None, maximum: float | None = None, *, above: bool = False, below: bool = False):
    """A finite number in a range; `above`/`below` make the bound strict (e.g. a learning rate > 0)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number (got {text})")
        too_low = minimum is not None and (value <= minimum if above else value < minimum)
        too_high = maximum is not None and (value >= maximum if below else value > maximum)
        if too_low or too_high:
            lo = "" if minimum is None else f"{'>' if above else '>='} {minimum:g}"
            hi = "" if maximum is None else f"{'<' if below else '<='} {maximum:g}"
            raise argparse.ArgumentTypeError(f"must be {' and '.join(x for x in (lo, hi) if x)} (got {value:g})")
        return value

    parse.__name__ = "number"
    return parse


#: tokens per example: [CLS] + at least one token + [SEP]
MAX_LENGTH = count(3, 8192)
