"""The results store: every evaluation a row in one SQLite file, so results last and meet.

CLI, dashboard, benchmarks (and later sweeps, search and recovery) write here; `headroom runs`
lists, shows, exports and deletes. See `store.py` for where the file lives and how concurrent
writers are handled, `schema.py` for the table and its migrations, `fingerprint.py` for how a
model and a dataset are identified.
"""
