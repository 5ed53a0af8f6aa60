"""`ResultStore`: the SQLite file every evaluation is written to, and read back from.

Where: `--store PATH`, else `$HEADROOM_STORE`, else `$XDG_DATA_HOME/headroom/results.sqlite`
(`~/.local/share/headroom/results.sqlite`). One file, WAL journal: several dashboard sessions,
CLI runs and sweep workers (threads or processes) write at once — each write is one short
transaction, writers queue for up to `BUSY_TIMEOUT_S` — and a crash mid-write loses only that
row. A connection is opened per operation (cheap for SQLite), so a store object is safe to share
between threads.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from analysis.errors import HeadroomError
from analysis.store.schema import migrate

BUSY_TIMEOUT_S = 30.0
#: columns `list()` returns (everything but the predictions blob)
SUMMARY_COLUMNS = ("id", "created_at", "source", "model_name", "model_fingerprint", "data_name", "data_fingerprint",
                   "num_examples", "description", "mode", "metric_name", "metric", "agreement", "size_mb", "device",
                   "threads", "dtype", "recipe_key")


def default_store_path() -> Path:
    if os.environ.get("HEADROOM_STORE"):
        return Path(os.environ["HEADROOM_STORE"]).expanduser()
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "headroom" / "results.sqlite"


@dataclass
class RunRecord:
    """One evaluation as the store keeps it (see schema.py for the columns' meaning)."""

    source: str
    model_name: str
    model_fingerprint: str
    data_name: str
    data_fingerprint: str
    num_examples: int
    recipe: dict
    recipe_key: str
    description: str
    mode: str
    metric_name: str | None
    metric: float | None
    metrics: dict
    loss: float | None
    agreement: float | None
    size_mb: float | None
    size: dict | None
    latency: dict | None
    device: str
    threads: int | None
    dtype: str
    predictions: np.ndarray | None = None
    extra: dict = field(default_factory=dict)
    id: int | None = None
    created_at: str | None = None
    headroom_version: str | None = None


def _json(value) -> str:
    return json.dumps(value, sort_keys=True, default=lambda o: o.item() if hasattr(o, "item") else str(o))


class ResultStore:
    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path).expanduser() if path else default_store_path()
        if self.path.exists() and self.path.is_dir():
            raise HeadroomError(f"The results store '{self.path}' is a directory; give a file path.")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise HeadroomError(f"Cannot create the folder of the results store '{self.path}' ({e.strerror}).") from None
        with self._connect() as conn:
            migrate(conn, str(self.path))

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as e:
            raise HeadroomError(f"Cannot open the results store '{self.path}' ({e}).") from None
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, never corrupt
            yield conn
        except sqlite3.DatabaseError as e:
            if "not a database" in str(e) or "malformed" in str(e):
                raise HeadroomError(f"'{self.path}' is not a Headroom results store (or it is corrupt); "
                                    "point --store at another file.") from None
            raise
        finally:
            conn.close()

    # ---------------------------------------------------------------------------- writing
    def add(self, record: RunRecord) -> int:
        from analysis import __version__

        preds = None
        if record.predictions is not None:
            preds = np.asarray(record.predictions, dtype=np.int32).tobytes()
        row = {
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "headroom_version": __version__, "source": record.source, "model_name": record.model_name,
            "model_fingerprint": record.model_fingerprint, "data_name": record.data_name,
            "data_fingerprint": record.data_fingerprint, "num_examples": int(record.num_examples),
            "recipe_json": _json(record.recipe), "recipe_key": record.recipe_key, "description": record.description,
            "mode": record.mode, "metric_name": record.metric_name, "metric": record.metric,
            "metrics_json": _json(record.metrics), "loss": record.loss, "agreement": record.agreement,
            "size_mb": record.size_mb, "size_json": None if record.size is None else _json(record.size),
            "latency_json": None if record.latency is None else _json(record.latency), "device": record.device,
            "threads": record.threads, "dtype": record.dtype, "predictions": preds, "extra_json": _json(record.extra),
        }
        columns = ", ".join(row)
        marks = ", ".join(f":{k}" for k in row)
        with self._connect() as conn:
            cur = conn.execute(f"INSERT INTO runs ({columns}) VALUES ({marks})", row)  # one implicit transaction
            return int(cur.lastrowid)

    def delete(self, ids: list[int]) -> int:
        with self._connect() as conn:
            cur = conn.execute(f"DELETE FROM runs WHERE id IN ({', '.join('?' * len(ids))})", list(ids))
            return cur.rowcount

    # ---------------------------------------------------------------------------- reading
    def list(self, *, model: str | None = None, data: str | None = None, source: str | None = None,
             limit: int | None = None) -> list[dict]:
        """Summaries, newest first; `model`/`data` match a name or a fingerprint."""
        sql, args = self._select(", ".join(SUMMARY_COLUMNS), model, data, source, limit)
        with self._connect() as conn:
            return [dict(r) for r in conn.execute(sql, args)]

    def records(self, *, model: str | None = None, data: str | None = None, source: str | None = None,
                limit: int | None = None) -> list[RunRecord]:
        """Whole rows (predictions included), newest first, read in one query (what a dashboard redraw reads)."""
        sql, args = self._select("*", model, data, source, limit)
        with self._connect() as conn:
            return [_record(r) for r in conn.execute(sql, args)]

    @staticmethod
    def _select(columns: str, model, data, source, limit) -> tuple[str, list]:
        where, args = [], []
        for value, name_col, fp_col in ((model, "model_name", "model_fingerprint"), (data, "data_name", "data_fingerprint")):
            if value:
                where.append(f"({name_col} = ? OR {fp_col} = ?)")
                args += [value, value]
        if source:
            where.append("source = ?")
            args.append(source)
        sql = f"SELECT {columns} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return sql, args

    def get(self, run_id: int) -> RunRecord:
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise HeadroomError(f"There is no run {run_id} in the results store '{self.path}'.")
        return _record(row)

    def find(self, *, model_fingerprint: str, data_fingerprint: str, recipe_key: str, mode: str = "simulated",
             dtype: str = "fp32") -> RunRecord | None:
        """The newest row for exactly this evaluation (what a rerun of a sweep may skip), or None."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT * FROM runs WHERE model_fingerprint = ? AND data_fingerprint = ? AND recipe_key = ? "
                "AND mode = ? AND dtype = ? ORDER BY id DESC LIMIT 1",
                (model_fingerprint, data_fingerprint, recipe_key, mode, dtype)).fetchone()
        return None if row is None else _record(row)

    def count(self) -> int:
        with self._connect() as conn:
            return conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]

    def table(self, **filters):
        """The rows as a pandas DataFrame (recipe, metrics, size and latency as JSON text)."""
        import pandas as pd

        ids = [r["id"] for r in self.list(**filters)]
        records = [self.get(i) for i in ids]
        rows = []
        for r in records:
            lat = r.latency or {}
            rows.append({"id": r.id, "created_at": r.created_at, "source": r.source, "model": r.model_name,
                         "model_fingerprint": r.model_fingerprint, "data": r.data_name,
                         "data_fingerprint": r.data_fingerprint, "examples": r.num_examples,
                         "description": r.description, "mode": r.mode, "metric_name": r.metric_name,
                         "metric": r.metric, "loss": r.loss, "agreement": r.agreement, "size_mb": r.size_mb,
                         "latency_ms_per_batch": lat.get("ms_per_batch"), "device": r.device, "threads": r.threads,
                         "dtype": r.dtype, "headroom_version": r.headroom_version, "recipe": _json(r.recipe),
                         "metrics": _json(r.metrics), "latency": _json(r.latency) if r.latency else None})
        return pd.DataFrame(rows)


def _record(row: sqlite3.Row) -> RunRecord:
    preds = row["predictions"]
    return RunRecord(
        id=row["id"], created_at=row["created_at"], headroom_version=row["headroom_version"], source=row["source"],
        model_name=row["model_name"], model_fingerprint=row["model_fingerprint"], data_name=row["data_name"],
        data_fingerprint=row["data_fingerprint"], num_examples=row["num_examples"],
        recipe=json.loads(row["recipe_json"]), recipe_key=row["recipe_key"], description=row["description"],
        mode=row["mode"], metric_name=row["metric_name"], metric=row["metric"], metrics=json.loads(row["metrics_json"]),
        loss=row["loss"], agreement=row["agreement"], size_mb=row["size_mb"],
        size=None if row["size_json"] is None else json.loads(row["size_json"]),
        latency=None if row["latency_json"] is None else json.loads(row["latency_json"]),
        device=row["device"], threads=row["threads"], dtype=row["dtype"],
        predictions=None if preds is None else np.frombuffer(preds, dtype=np.int32).copy(),
        extra=json.loads(row["extra_json"]),
    )


def record_evaluation(ev, result, *, source: str, keep_predictions: bool = False, extra: dict | None = None,
                      model_fp: str | None = None, data_fp: str | None = None) -> RunRecord:
    """The RunRecord of an Evaluator's EvalResult (the one place that maps one to the other).

    `model_fp` / `data_fp`: the fingerprints when the caller has them already (the dashboard caches
    them per loaded model and data); computed here otherwise."""
    import torch

    from analysis.store.fingerprint import data_fingerprint, model_fingerprint

    size = result.size.to_dict() if hasattr(result.size, "to_dict") else result.size
    latency = result.latency.to_dict() if hasattr(result.latency, "to_dict") else result.latency
    recipe = result.recipe
    return RunRecord(
        source=source, model_name=ev.loaded.name, model_fingerprint=model_fp or model_fingerprint(ev.loaded.model),
        data_name=ev.dataset.name, data_fingerprint=data_fp or data_fingerprint(ev.dataset, ev.max_length),
        num_examples=result.num_examples, recipe=recipe.to_dict(), recipe_key=recipe.key(),
        description=result.description, mode=result.mode, metric_name=result.metric_name, metric=result.metric,
        metrics=result.metrics, loss=result.loss, agreement=result.agreement,
        size_mb=None if size is None else size.get("mb"), size=size, latency=latency, device=result.device,
        threads=(latency or {}).get("threads") or torch.get_num_threads(), dtype=result.dtype,
        predictions=result.predictions if keep_predictions else None, extra=extra or {},
    )
