"""What every JSON-configurable dataclass (Recipe, RecoveryConfig, ...) shares.

A field declares its help text (and allowed values) in `field(metadata=...)`; these read them,
build an instance from a JSON object refusing unknown keys with one sentence, and parse JSON text
with the line and column of a syntax error.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, Field, fields

from analysis.errors import HeadroomError


def default_of(f: Field):
    """A dataclass field's default value (calling its default_factory)."""
    return f.default_factory() if f.default is MISSING else f.default


def from_mapping(cls, d, *, what: str, example: str, unknown: str, known: str):
    """`cls(**d)` for a JSON object `d` whose keys are all fields of `cls`; else one sentence."""
    if not isinstance(d, dict):
        raise HeadroomError(f"A {what} must be a JSON object, e.g. {example}.")
    names = {f.name for f in fields(cls)}
    extra = sorted(set(d) - names)
    if extra:
        raise HeadroomError(f"{unknown} {', '.join(extra)}; {known}: {', '.join(sorted(names))}.")
    return cls(**d)


def parse_json(text: str, what: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise HeadroomError(f"The {what} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}).") from None
