"""Deployment backends of `demo`: torch fp32 / torch int8 / ONNX Runtime fp32 / ONNX Runtime int8, in one run.

For the baseline and (with `--pruned K`) the K-least-important-heads-pruned recipe (Michel
importance, per-example, of `--importance-limit` examples): accuracy on the full test split
(Banking77 test: 3,080 examples), size on disk, and latency at each shape and thread count, every
backend timed interleaved against the unmodified torch fp32 model in one `timing.compare` call
(analysis/measure/backends.py). The load average is recorded with every latency.

    python benchmarks/bench_backends.py --model demo --shapes 32x128,1x16 --threads 1,2 --rounds 8 \
        --out benchmarks/results/backends_cpu_demo.json

A recovered model (a checkpoint directory) against the model it replaces, every backend of the
student timed against the teacher's torch fp32:

    python benchmarks/bench_backends.py --model runs/demo-drop2-kd --reference demo --threads 2
"""

from __future__ import annotations

import argparse
import json
import time

from analysis.core.recipe import Recipe
from analysis.io.datasets import load_dataset, report_split
from analysis.io.models import load_model
from analysis.measure.backends import compare_backends, parse_shapes, table_rows
from analysis.measure.evaluate import Evaluator
from analysis.measure.record import write_json
from analysis.measure.timing import load_average


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="demo")
    ap.add_argument("--limit", type=int, default=None, help="examples for accuracy (default: the full test split)")
    ap.add_argument("--shapes", default="32x128,1x16")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    ap.add_argument("--pruned", type=int, default=0, help="also the recipe with this many least important heads masked")
    ap.add_argument("--importance-limit", type=int, default=500)
    ap.add_argument("--reference", default=None,
                    help="time and compare every backend against this model's unmodified torch fp32 (e.g. the "
                         "teacher of a recovered --model)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    t0 = time.perf_counter()
    loaded = load_model(args.model, device="cpu")
    split = report_split(loaded)
    ds = load_dataset(loaded.default_data, split, limit=args.limit)
    ev = Evaluator(loaded, ds)
    ref_ev = None
    if args.reference:
        ref_ev = Evaluator(load_model(args.reference, device="cpu"), ds)
    recipes = {"baseline": Recipe()}
    if args.pruned:
        from analysis.methods.importance import michel_importance

        small = Evaluator(loaded, load_dataset(loaded.default_data, split, limit=args.importance_limit))
        imp = michel_importance(small)
        order = imp.pruning_order()[:args.pruned]
        recipes[f"{args.pruned} heads pruned (Michel, per-example)"] = Recipe(masked_heads=list(order))
    shapes, threads = parse_shapes(args.shapes), [int(t) for t in args.threads.split(",")]
    reports = {}
    for name, recipe in recipes.items():
        rep = compare_backends(ev, recipe, shapes=shapes, threads=threads, rounds=args.rounds,
                               warmup=args.warmup, reference=ref_ev, progress=lambda m: print(f"[{time.perf_counter() - t0:6.0f}s] {name}: {m}", flush=True))
        reports[name] = rep.to_dict()
        for row in table_rows(rep):
            print(json.dumps(row), flush=True)
    out = {
        "what": "measured on CPU: accuracy on the full test split, size on disk, latency = time / unmodified torch "
                "fp32 time (interleaved, one compare call per shape and thread count)",
        "model": loaded.name, "reference": args.reference or loaded.name, "data": ev.dataset.name, "examples": len(ev.dataset), "rounds": args.rounds, "warmup": args.warmup,
        "load_average_end": load_average(), "seconds": round(time.perf_counter() - t0, 1), "reports": reports,
    }
    print(json.dumps({k: v for k, v in out.items() if k != "reports"}, indent=2))
    if args.out:
        write_json(args.out, out)


if __name__ == "__main__":
    main()
