"""The store's table and its migrations.

`MIGRATIONS[i]` takes a database from schema version i to i + 1; `migrate` applies the missing
ones inside one transaction and records the version in SQLite's `user_version`. A database
written by a newer Headroom (a higher version) is refused with one sentence instead of being
read wrongly.
"""

from __future__ import annotations

import sqlite3

from analysis.errors import HeadroomError

MIGRATIONS = [
    # 0 -> 1: one row per evaluation
    """
    CREATE TABLE runs (
        id                INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at        TEXT NOT NULL,              -- UTC, ISO 8601
        headroom_version  TEXT NOT NULL,
        source            TEXT NOT NULL,              -- cli | dashboard | benchmark | sweep | search | recovery
        model_name        TEXT NOT NULL,
        model_fingerprint TEXT NOT NULL,
        data_name         TEXT NOT NULL,
        data_fingerprint  TEXT NOT NULL,
        num_examples      INTEGER NOT NULL,
        recipe_json       TEXT NOT NULL,
        recipe_key        TEXT NOT NULL,              -- Recipe.key(): the recipe without its name
        description       TEXT NOT NULL,
        mode              TEXT NOT NULL,              -- simulated | materialized | int8 | onnx ...
        metric_name       TEXT,
        metric            REAL,
        metrics_json      TEXT NOT NULL,
        loss              REAL,
        agreement         REAL,
        size_mb           REAL,
        size_json         TEXT,
        latency_json      TEXT,                       -- measured latency with device, threads, spread
        device            TEXT NOT NULL,
        threads           INTEGER,
        dtype             TEXT NOT NULL,
        predictions       BLOB,                       -- int32 per example, for Compare (optional)
        extra_json        TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX runs_model_data ON runs (model_fingerprint, data_fingerprint);
    CREATE INDEX runs_recipe ON runs (recipe_key);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, path: str) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise HeadroomError(f"The results store '{path}' was written by a newer Headroom (schema {version}, "
                            f"this one reads {SCHEMA_VERSION}); upgrade Headroom or point --store elsewhere.")
    if version == SCHEMA_VERSION:
        return
    # One transaction (the connection is in autocommit mode, so BEGIN/COMMIT are ours): a crash
    # mid-migration leaves the old schema, and a second process waits, then finds it done.
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for script in MIGRATIONS[version:]:
            for statement in filter(str.strip, script.split(";")):
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
