"""The spread of repeated latency ratios: the same recipe measured N times in a row, against the baseline.

Each measurement is what the dashboard shows (`Evaluator.measure_latency`: the recipe's deployed
model timed interleaved with the baseline, median of per-round ratios, bootstrap 95% interval,
verdict). The same recipe measured `--times` times in a row should give the same verdict every
time and ratios whose spread is small; "baseline vs baseline" (the unmodified model as the
candidate) shows the noise floor. `--busy K` starts K CPU-spinning processes for the run, so the
loaded-machine figures are measured on purpose, not by chance; the load average is recorded with
every measurement either way.

    python benchmarks/bench_latency_spread.py --model demo --times 10 --out benchmarks/results/latency_spread_demo.json
    python benchmarks/bench_latency_spread.py --model demo --times 10 --busy 1 --out benchmarks/results/latency_spread_demo_busy.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics

import torch

from analysis.core.recipe import Recipe
from analysis.io.datasets import load_dataset, report_split
from analysis.io.models import load_model
from analysis.measure.evaluate import Evaluator
from analysis.measure.record import write_json
from analysis.measure.timing import compare, load_average

RECIPES = {
    "one head masked (0:0)": Recipe(masked_heads=[(0, 0)]),
    "one head masked (3:5)": Recipe(masked_heads=[(3, 5)]),
    "2 layers dropped (4 and 5)": Recipe(dropped_layers=[4, 5]),
    "fake 4-bit weights": Recipe(weight_bits=4),
    "int8 weights (real int8 kernels)": Recipe(weight_bits=8),
}


def _spin() -> None:  # a busy process for --busy
    while True:
        pass


def spread(ratios: list[float]) -> dict:
    return {"min": round(min(ratios), 4), "max": round(max(ratios), 4), "max_over_min": round(max(ratios) / min(ratios), 4),
            "median": round(statistics.median(ratios), 4), "stdev": round(statistics.stdev(ratios), 4)}


@torch.inference_mode()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="demo")
    ap.add_argument("--limit", type=int, default=64, help="examples the latency batch is built from")
    ap.add_argument("--times", type=int, default=10, help="measurements of each recipe in a row")
    ap.add_argument("--rounds", type=int, default=15, help="interleaved rounds per measurement (the dashboard's)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--busy", type=int, default=0, help="CPU-spinning processes to run alongside (a loaded machine)")
    ap.add_argument("--recipes", default=";".join(RECIPES), help="semicolon-separated names of RECIPES to measure")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_model(args.model, device="cpu")
    ds = load_dataset(loaded.default_data, report_split(loaded), limit=args.limit)
    ev = Evaluator(loaded, ds)
    spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.busy)]
    for p in spinners:
        p.start()
    try:
        batch = ev.latency_batch(args.batch_size, ev.typical_seq_len)
        inputs = batch.model_inputs()
        run_base = lambda: loaded.model(**inputs)  # noqa: E731
        rows = {}
        same = [compare({"baseline again": run_base}, run_base, rounds=args.rounds)["baseline again"]
                for _ in range(args.times)]
        rows["baseline vs baseline"] = [c.to_dict() for c in same]
        print("baseline vs baseline", [(round(c.ratio, 3), c.verdict) for c in same], flush=True)
        for name in [n.strip() for n in args.recipes.split(";") if n.strip()]:
            if name not in RECIPES:
                raise SystemExit(f"unknown recipe '{name}'; choose from: {'; '.join(RECIPES)}")
            recipe = RECIPES[name]
            rows[name] = [ev.measure_latency(recipe, batch_size=args.batch_size, rounds=args.rounds).to_dict()
                          for _ in range(args.times)]
            print(name, [(r["ratio"] and round(r["ratio"], 3), r["verdict"] or r["kind"]) for r in rows[name]], flush=True)
    finally:
        for p in spinners:
            p.terminate()
    summary = {}
    for name, ms in rows.items():
        ratios = [m["ratio"] for m in ms if m["ratio"] is not None]
        summary[name] = {
            "verdicts": sorted({m["verdict"] or m.get("kind") for m in ms}),
            "ratio_spread": spread(ratios) if len(ratios) > 1 else None,
            "widest_ci95": None if not ratios else max(m["ratio_ci95"][1] - m["ratio_ci95"][0] for m in ms),
            "front_ratios": sorted({round(m.get("front_ratio") or m["ratio"], 4) for m in ms}),
            "load_average": [m["load_average"] for m in ms],
        }
    out = {
        "what": "measured: the same recipe's latency ratio to the baseline (interleaved, one call each) "
                f"{args.times} times in a row",
        "model": loaded.name, "device": "cpu", "threads": torch.get_num_threads(), "busy_processes": args.busy,
        "batch": [args.batch_size, ev.typical_seq_len], "rounds_per_measurement": args.rounds,
        "load_average_end": load_average(), "summary": summary, "measurements": rows,
    }
    print(json.dumps({"summary": summary, "threads": out["threads"], "busy": args.busy}, indent=2))
    if args.out:
        write_json(args.out, out)


if __name__ == "__main__":
    main()
