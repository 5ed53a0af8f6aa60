"""The same sweep on the local and the Ray engine: wall time of each, and whether the rows agree.

    python benchmarks/bench_sweep_engines.py [--spec benchmarks/specs/ablations_demo.yaml] \
        [--num-cpus 2] --out benchmarks/results/sweep_engines_demo.json

Each engine writes into its own fresh store (so nothing is skipped); the rows are compared field
by field (metric, loss, agreement, size). Ray's time includes starting a local Ray and building
the actor (model load + tokenisation), the local engine's its own model load: both are what a
user waits for.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from analysis.measure.record import write_json
from analysis.store.store import ResultStore
from analysis.sweeps.engines import run_sweep
from analysis.sweeps.spec import SweepSpec


def rows(store):
    return {r.recipe_key: (r.metric, r.loss, r.agreement, r.size_mb) for r in (store.get(x["id"]) for x in store.list())}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--spec", default="benchmarks/specs/ablations_demo.yaml")
    p.add_argument("--num-cpus", type=int, default=2)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    spec = SweepSpec.load(args.spec)
    out = {"spec": args.spec, "threads_per_evaluation": spec.threads}
    with tempfile.TemporaryDirectory() as d:
        stores = {}
        for engine in ("local", "ray"):
            stores[engine] = ResultStore(Path(d) / f"{engine}.sqlite")
            t0 = time.perf_counter()
            result = run_sweep(spec, stores[engine], engine=engine, num_cpus=args.num_cpus)
            out[engine] = {"seconds": round(time.perf_counter() - t0, 2), "evaluated": result.evaluated,
                           "pairs": result.pairs}
            print(f"{engine}: {result.evaluated} evaluations in {out[engine]['seconds']} s", flush=True)
        a, b = rows(stores["local"]), rows(stores["ray"])
        out["identical_rows"] = a == b
        out["rows"] = len(a)
    print(f"identical rows: {out['identical_rows']} ({out['rows']})")
    if args.out:
        write_json(args.out, out)


if __name__ == "__main__":
    main()
