"""Heavy objects, cached and shared between sessions: loaded models, Evaluators, results.

- `loaded_model(name, device)`: one LoadedModel per (name, device) per process (st.cache_resource).
- `evaluator(choice)`: one Evaluator per (model, data spec, split, limit, columns, device, dtype).
  It tokenises once and keeps the baseline trace, so each what-if recomputes only the layers
  from the recipe's first change on.
- `evaluate_quick(choice, recipe)`: the same on a 100-example subset, the panel's first figure.
- `evaluate(choice, recipe)` / `latency(choice, recipe)`: one EvalResult / one measured latency
  per (evaluator key, recipe.key()), kept in a process-wide, lock-guarded table. A latency is
  never a lone timing set against an older baseline: each one is the recipe's deployed model
  timed against the baseline in the same interleaved run (a ratio with its 95% interval and
  verdict, analysis/measure/latency.py), so keeping it is safe; `remeasure` drops it to time again. Several sessions share a model: `Evaluator.evaluate` never
  writes to the model, and two sessions asking for the same recipe at once compute it once.
- `upload_path(name, data)`: an uploaded file saved under a name derived from its bytes, so the
  data spec (and the cache key) is the same for the same content.

The model name `tiny` (a 3-layer random BERT from analysis/testing.py) and data `tiny` exist so
the dashboard's tests run in seconds; HEADROOM_DASHBOARD_MODEL=tiny starts the app on them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

import streamlit as st

from analysis.errors import HeadroomError
from analysis.measure.evaluate import EvalResult, Evaluator, Latency
from analysis.core.recipe import Recipe

from .state import DataChoice

UPLOAD_DIR = Path(tempfile.gettempdir()) / "headroom-uploads"
MAX_RESULTS = 512  # EvalResults kept per process (each holds N x num_labels logits)
#: interleaved rounds per dashboard latency: ~2 s for demo at 32 x 16 on 2 idle cores; fewer rounds
#: only widen the interval (more "no measurable change"), they never make a ratio less honest
LATENCY_ROUNDS = 10
# The panel's first figure comes from this many examples (stratified) in fp32, the exact one after it.
# Not bf16: on this project's 2-core AMD EPYC (no AVX512-BF16), the bf16 simulated forward measured
# 3-4x slower than fp32 (interleaved, same process), so it could not answer first.
QUICK_EXAMPLES = 100


@st.cache_resource(max_entries=4, show_spinner="Loading the model ...")
def loaded_model(name: str, device: str):
    if name == "tiny":
        from analysis.testing import tiny_loaded

        # hidden 48 (FFN 96): the default num_groups (12) divides every matrix, as in real BERTs
        return tiny_loaded(layers=3, heads=4, hidden=48, num_labels=3)
    from analysis.io.models import load_model

    return load_model(name, device=device)


def load_data(choice: DataChoice):
    from analysis.io.datasets import load_dataset

    if choice.data == "tiny":
        from analysis.testing import tiny_dataset

        # the tiny data's "train" split: other made-up sentences (a search chooses on them)
        ds = tiny_dataset(n=choice.limit or 60, seed=1 if choice.split == "train" else 0)
        ds.name = f"tiny:{choice.split}"
        return ds
    return load_dataset(
        choice.data, choice.split, limit=choice.limit or None,
        text_column=choice.text_column or None, pair_column=choice.pair_column or None,
        label_column=choice.label_column or None,
    )


@st.cache_resource(max_entries=6, show_spinner="Tokenising the data and running the baseline ...")
def _evaluator(key: tuple, dtype: str) -> Evaluator:
    choice = DataChoice(*key)
    loaded = loaded_model(choice.model, choice.device)
    return Evaluator(loaded, load_data(choice), dtype=dtype)


def evaluator(choice: DataChoice, dtype: str = "fp32") -> Evaluator:
    return _evaluator(choice.key(), dtype)


class ResultTable:
    """Results by (evaluator key, recipe key); thread-safe, one computation per key."""

    def __init__(self):
        self._lock = threading.Lock()
        self._results: OrderedDict[tuple, EvalResult] = OrderedDict()
        self._pending: dict[tuple, threading.Lock] = {}

    def get(self, key: tuple) -> EvalResult | None:
        with self._lock:
            return self._results.get(key)

    def drop(self, key: tuple) -> None:
        with self._lock:
            self._results.pop(key, None)

    def compute(self, key: tuple, fn) -> EvalResult:
        with self._lock:
            if key in self._results:
                return self._results[key]
            key_lock = self._pending.setdefault(key, threading.Lock())
        with key_lock:  # a second session asking for the same recipe waits for the first
            with self._lock:
                if key in self._results:
                    return self._results[key]
            result = fn()
            with self._lock:
                self._results[key] = result
                while len(self._results) > MAX_RESULTS:
                    self._results.popitem(last=False)
                self._pending.pop(key, None)
            return result


@st.cache_resource
def result_table() -> ResultTable:
    return ResultTable()


def evaluate(choice: DataChoice, recipe: Recipe, progress=None) -> EvalResult:
    """The recipe's metrics and size (simulated), computed once per (model, data, recipe).

    `progress(fraction, message)` hears each batch when this call computes it (not when another
    session is already computing the same result and this one waits for it).
    """
    ev = evaluator(choice)
    ev.adapter.validate(recipe)
    return result_table().compute((choice.key(), recipe.key(), "metrics"),
                                  lambda: ev.evaluate(recipe, progress=progress))


def quick_choice(choice: DataChoice) -> DataChoice | None:
    """The same model on a QUICK_EXAMPLES stratified subset, for a first figure; None if the data is small."""
    if choice.limit and choice.limit <= 2 * QUICK_EXAMPLES:
        return None
    return dataclasses.replace(choice, limit=QUICK_EXAMPLES)


def cached_result(choice: DataChoice, recipe: Recipe) -> EvalResult | None:
    return result_table().get((choice.key(), recipe.key(), "metrics"))


def evaluate_quick(choice: DataChoice, recipe: Recipe) -> EvalResult | None:
    """A first estimate of the recipe's metrics on QUICK_EXAMPLES examples, while the exact one runs;
    None when the data is small enough that the exact figure is the quick one."""
    quick = quick_choice(choice)
    if quick is None:
        return None
    return evaluate(quick, recipe)


def latency(choice: DataChoice, recipe: Recipe) -> Latency:
    """The recipe's deployed model timed against the baseline, interleaved (a fixed batch of the data's tokens)."""
    ev = evaluator(choice)
    ev.adapter.validate(recipe)
    return result_table().compute((choice.key(), recipe.key(), "latency"),
                                  lambda: ev.measure_latency(recipe, rounds=LATENCY_ROUNDS))


def remeasure(choice: DataChoice, recipe: Recipe) -> Latency:
    """Forget the recipe's latency and measure it again (the "Re-measure" button)."""
    result_table().drop((choice.key(), recipe.key(), "latency"))
    return latency(choice, recipe)


def cached_latency(choice: DataChoice, recipe: Recipe) -> Latency | None:
    return result_table().get((choice.key(), recipe.key(), "latency"))


def upload_path(name: str, data: bytes) -> str:
    """Save an uploaded file under a content-derived name (read later as data, never executed)."""
    suffix = Path(name).suffix.lower()
    if suffix not in (".csv", ".tsv", ".jsonl", ".json"):
        raise HeadroomError(f"{name} is not a .csv, .tsv, .jsonl or .json file; convert it to one of those.")
    UPLOAD_DIR.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(data).hexdigest()[:16]
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(name).stem)[:40]
    path = UPLOAD_DIR / f"{stem}-{digest}{suffix}"
    if not path.exists():
        path.write_bytes(data)
    return str(path)


def file_columns(path: str) -> list[str]:
    """Column names of an uploaded table (header line or first JSON object), for the pickers."""
    import csv
    import json

    p = Path(path)
    try:
        text = p.read_bytes()[:200_000].decode("utf-8-sig")
    except UnicodeDecodeError:
        raise HeadroomError(f"{p.name} is not UTF-8 text; re-save it with UTF-8 encoding.") from None
    first = text.strip().splitlines()[0] if text.strip() else ""
    if not first:
        raise HeadroomError(f"{p.name} is empty; it needs a header line and at least one row.")
    if p.suffix in (".jsonl", ".json"):
        try:
            row = json.loads(first)
        except json.JSONDecodeError:
            raise HeadroomError(f"{p.name} line 1 is not valid JSON; each line must be one JSON object.") from None
        if not isinstance(row, dict):
            raise HeadroomError(f"{p.name} row 1 is not a JSON object; each row must map column names to values.")
        return list(row)
    return next(csv.reader([first], delimiter="\t" if p.suffix == ".tsv" else ","))
