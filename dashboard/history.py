"""The session's history in the results store (analysis/store), so it survives a restart.

Every evaluation the dashboard adds to its session history (the rows Trade-offs shows: the metrics
panel's exact figure, the presets evaluated on Trade-offs) is also written to the store as a row
of source "dashboard", with the model and data fingerprints (analysis/store/fingerprint.py,
computed once per loaded model and data) and its per-example predictions, so Compare on Trade-offs
can set two stored rows side by side after a restart. Trade-offs reads the rows of the current model
and data back, from every source (dashboard, cli, sweep, search, recovery).

The store is `$HEADROOM_STORE` or the default file (`analysis.store.store.default_store_path`).
A store that cannot be opened, read or written (a corrupt file, a read-only directory, a disk that
is full) gives one warning sentence, once per session; the session then keeps its history in
memory only and the dashboard works as before.
"""

from __future__ import annotations

import dataclasses
import threading

import streamlit as st

from analysis.core.recipe import Recipe
from analysis.store.store import ResultStore, default_store_path, record_evaluation

from . import resources, state
from .state import DataChoice

SOURCE = "dashboard"
#: the sources the Trade-offs filter offers (others found in the store are added to them)
SOURCES = ("dashboard", "cli", "sweep", "search", "recovery")

MAX_ROWS = 2000  # the newest rows of this model and data Trade-offs reads (a long search writes one per trial)
_lock = threading.Lock()
_stores: dict[str, ResultStore] = {}  # one opened (migrated) store per path, per process


def _store() -> ResultStore:
    """The store at HEADROOM_STORE (read now, so tests and users can move it) or the default path."""
    path = str(default_store_path())
    with _lock:
        store = _stores.get(path)
        if store is None:
            store = _stores[path] = ResultStore(path)
    return store


def problem() -> str | None:
    """Why this session keeps its history in memory only, or None while the store works."""
    return st.session_state.get(state.STORE_PROBLEM)


def _failed(exc: BaseException, doing: str) -> None:
    """Remember the store is unusable for this session; one warning sentence, the first time."""
    if problem() is not None:
        return
    reason = str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else type(exc).__name__
    sentence = (f"The results store '{default_store_path()}' cannot be {doing} ({reason}); this session's "
                "history is kept in memory only and is lost on restart.")
    st.session_state[state.STORE_PROBLEM] = sentence
    st.warning(sentence, icon=":material/warning:")


@st.cache_resource(max_entries=8, show_spinner=False)
def _fingerprints(key: tuple) -> tuple[str, str]:
    from analysis.store.fingerprint import data_fingerprint, model_fingerprint

    ev = resources.evaluator(DataChoice(*key))
    return model_fingerprint(ev.loaded.model), data_fingerprint(ev.dataset, ev.max_length)


def fingerprints(choice: DataChoice) -> tuple[str, str]:
    """(model fingerprint, data fingerprint) of the loaded model and data, computed once per process."""
    return _fingerprints(choice.key())


def add(choice: DataChoice, recipe: Recipe) -> None:
    """Put `recipe` into the session history and write its exact result to the store (once per session)."""
    st.session_state.setdefault(state.HISTORY, {})[(choice.key(), recipe.key())] = recipe
    written = st.session_state.setdefault(state.STORE_WRITTEN, {})
    key = (choice.key(), recipe.key())
    if key in written or problem() is not None:
        return
    result = resources.cached_result(choice, recipe)
    if result is None:
        return
    try:
        written[key] = write(choice, result)
    except Exception as exc:  # noqa: BLE001 - a store problem never stops the dashboard
        _failed(exc, "written")


def write(choice: DataChoice, result) -> int:
    """One row of source "dashboard": the exact result, with its measured latency when there is one and its
    per-example predictions (int32 each: 4 bytes an example), which Compare reads back after a restart."""
    ev = resources.evaluator(choice)
    lat = resources.cached_latency(choice, result.recipe)
    if lat is not None:
        result = dataclasses.replace(result, latency=lat)
    model_fp, data_fp = fingerprints(choice)
    record = record_evaluation(ev, result, source=SOURCE, model_fp=model_fp, data_fp=data_fp,
                               keep_predictions=True, extra={"url_recipe": state.encode_recipe(result.recipe), "data_spec": choice.data,
                                      "split": choice.split, "limit": choice.limit})
    return _store().add(record)


def search_store() -> ResultStore | None:
    """The store a search on the Find recipes page writes its trials to; None (warned once) when unusable."""
    if problem() is not None:
        return None
    try:
        return _store()
    except Exception as exc:  # noqa: BLE001
        _failed(exc, "opened")
        return None


def stored_rows(choice: DataChoice) -> list:
    """The store's rows for the current model and data (every source), newest first; [] when it is unusable."""
    if problem() is not None:
        return []
    try:
        model_fp, data_fp = fingerprints(choice)
        return [r for r in _store().records(model=model_fp, data=data_fp, limit=MAX_ROWS)
                if r.model_fingerprint == model_fp and r.data_fingerprint == data_fp]
    except Exception as exc:  # noqa: BLE001
        _failed(exc, "read")
        return []


def delete(ids: list[int]) -> int:
    """Remove rows from the store; the session's in-memory rows stay (they are this session's)."""
    if not ids:
        return 0
    try:
        n = _store().delete([int(i) for i in ids])
    except Exception as exc:  # noqa: BLE001
        _failed(exc, "written")
        return 0
    return n  # STORE_WRITTEN keeps the keys: this session does not write a deleted row again
