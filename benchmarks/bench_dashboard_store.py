"""What the dashboard's history costs: one row write to the results store, and reading them back.

    PYTHONPATH=. python benchmarks/bench_dashboard_store.py [--model demo] [--limit 500] [--writes 100] \
        [--out benchmarks/results/dashboard_store_demo.json]

The write is what dashboard/history.py does per history row: `record_evaluation` with the cached
fingerprints, then `ResultStore.add` (one WAL transaction, its own connection) into a fresh store
in a temporary directory. Also timed: the fingerprints (once per loaded model and data), and what
Trade-offs reads (the rows of this model and data: `ResultStore.records`, one query) after the writes.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from analysis.io.datasets import default_split
from analysis.core.recipe import Recipe
from analysis.measure.record import write_json
from analysis.store.fingerprint import data_fingerprint, model_fingerprint
from analysis.store.store import ResultStore, record_evaluation


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="demo")
    p.add_argument("--data", default="banking77")
    p.add_argument("--limit", type=int, default=500)
    p.add_argument("--writes", type=int, default=100)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    from analysis.io.datasets import load_dataset
    from analysis.io.models import load_model
    from analysis.measure.evaluate import Evaluator

    ev = Evaluator(load_model(args.model), load_dataset(args.data, default_split(args.data), limit=args.limit))
    result = ev.evaluate(Recipe(masked_heads=[(0, 3)]))
    t0 = time.perf_counter()
    mfp = model_fingerprint(ev.loaded.model)
    t1 = time.perf_counter()
    dfp = data_fingerprint(ev.dataset, ev.max_length)
    t2 = time.perf_counter()
    writes, reads = [], None
    with tempfile.TemporaryDirectory() as d:
        store = ResultStore(Path(d) / "results.sqlite")
        for i in range(args.writes):
            s = time.perf_counter()
            store.add(record_evaluation(ev, result, source="dashboard", model_fp=mfp, data_fp=dfp, extra={"i": i}))
            writes.append(1000 * (time.perf_counter() - s))
        s = time.perf_counter()
        rows = store.records(model=mfp, data=dfp)  # what a Trade-offs redraw reads (history.stored_rows)
        reads = 1000 * (time.perf_counter() - s)
        assert len(rows) == args.writes
        file_kb = (Path(d) / "results.sqlite").stat().st_size / 1024
    out = {
        "model": args.model, "data": args.data, "examples": len(ev.dataset), "writes": args.writes,
        "threads": torch.get_num_threads(),
        "write_ms_median": round(statistics.median(writes), 3),
        "write_ms_p90": round(sorted(writes)[int(0.9 * len(writes)) - 1], 3),
        "write_ms_max": round(max(writes), 3),
        "model_fingerprint_ms": round(1000 * (t1 - t0), 1), "data_fingerprint_ms": round(1000 * (t2 - t1), 1),
        "read_all_rows_ms": round(reads, 1), "store_kb_after_writes": round(file_kb, 1),
    }
    print(out)
    if args.out:
        write_json(args.out, out, device="cpu")


if __name__ == "__main__":
    main()
