"""Does Michel importance depend on the batch size? Per-example (the default) vs per-batch mode.

On the same examples, each mode is computed with evaluation batches of 1, 16 and 64 (and 64 with
the examples in reverse order); reported: Spearman's rho between every pair of batchings within a
mode (per-example must be 1.0: it is the paper's E_x |dL(x)/dxi_h|, which batching cannot change),
rho between the two modes, the 18 least important heads they share, and the seconds each took.

    python benchmarks/bench_importance_batching.py --model demo --limit 500 --out benchmarks/results/importance_batching_demo.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import numpy as np
import torch

from analysis.io.datasets import load_dataset, report_split
from analysis.io.models import load_model
from analysis.io.training import select
from analysis.measure.evaluate import Evaluator
from analysis.measure.record import write_json
from analysis.measure.timing import load_average
from analysis.methods.importance import MICHEL_MODES, michel_importance, rank_agreement


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="demo")
    ap.add_argument("--limit", type=int, default=500)
    ap.add_argument("--batch-sizes", default="1,16,64")
    ap.add_argument("--bottom", type=int, default=18, help="least important heads compared between modes")
    ap.add_argument("--per-batch-sizes", default=None,
                    help="batch sizes the per-batch mode is run at (default: the same as --batch-sizes)")
    ap.add_argument("--no-reversed", action="store_true", help="skip the reversed-order run")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    loaded = load_model(args.model, device="cpu")
    ds = load_dataset(loaded.default_data, report_split(loaded), limit=args.limit)
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    batchings = {f"batch {b}": Evaluator(loaded, ds, batch_size=b) for b in sizes}
    if not args.no_reversed:
        batchings[f"batch {sizes[-1]}, reversed order"] = Evaluator(loaded, select(ds, list(range(len(ds)))[::-1]),
                                                                    batch_size=sizes[-1])
    per_batch = {f"batch {b}" for b in (args.per_batch_sizes or args.batch_sizes).split(",")}
    scores, seconds = {}, {}
    for mode in MICHEL_MODES:
        for name, ev in batchings.items():
            if mode == "per-batch" and name not in per_batch:
                continue
            t0 = time.perf_counter()
            scores[mode, name] = michel_importance(ev, mode=mode)
            seconds[f"{mode}, {name}"] = round(time.perf_counter() - t0, 2)
            print(mode, name, seconds[f"{mode}, {name}"], "s", flush=True)
    rho = {mode: {f"{a} vs {b}": round(rank_agreement(scores[mode, a], scores[mode, b]), 4)
                  for a, b in itertools.combinations(batchings, 2) if (mode, a) in scores and (mode, b) in scores}
           for mode in MICHEL_MODES}
    between = {}
    for name in [n for n in batchings if ("per-batch", n) in scores]:
        a, b = scores["per-example", name], scores["per-batch", name]
        shared = len(set(a.pruning_order()[:args.bottom]) & set(b.pruning_order()[:args.bottom]))
        between[name] = {"spearman": round(rank_agreement(a, b), 4), f"bottom_{args.bottom}_shared": shared}
    max_diff = max(float(np.abs(scores["per-example", n].scores - scores["per-example", "batch 1"].scores).max())
                   for n in batchings)
    out = {"what": "Michel importance of every head under different batchings, per-example vs per-batch |grad|",
           "model": loaded.name, "data": ds.name, "examples": len(ds), "threads": torch.get_num_threads(),
           "spearman_within_mode": rho, "per_example_max_abs_score_difference": max_diff,
           "between_modes": between, "seconds": seconds, "load_average_end": load_average()}
    print(json.dumps(out, indent=2))
    if args.out:
        write_json(args.out, out)


if __name__ == "__main__":
    main()
