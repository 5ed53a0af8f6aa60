"""Cross-layer sharing (ALBERT-style) on `demo`: what survives one-shot, and after recovery.

Recipes: MiniLM-L6's layers in pairs {0,1},{2,3},{4,5}, and all six in one group, each with the
group's first layer's weights ("first") or the element-wise mean of the group ("mean"). For each:
size (parameters and MB counted from the recipe, and the bytes of the materialized safetensors
file: a tied tensor is saved once), accuracy one-shot on the full evaluation split (Banking77 test,
3,080; simulated, exact), then after recovery: `recover` with the ce objective, on the train split
minus 500 held out for model selection (selection never sees the test split), for a time budget
of one epoch (296 steps of 32; or `--minutes`, which on a shared CPU gives
each recipe a different number of steps). The recovered model is reloaded and its groups checked to still be tied.

Rows are written to `--out` as they finish; rerunning with the same `--out` skips the rows done.

    OMP_NUM_THREADS=1 nice python benchmarks/bench_sharing.py --out benchmarks/results/sharing_cpu_demo_1epoch.json
    OMP_NUM_THREADS=1 nice python benchmarks/bench_sharing.py --minutes 3 --out benchmarks/results/sharing_cpu_demo.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time

import torch

from analysis.core.adapters import Adapter
from analysis.core.materialize import load_materialized, materialize, save_materialized
from analysis.core.recipe import Recipe
from analysis.core.sharing import tied_groups
from analysis.io.datasets import own_splits
from analysis.io.models import load_model
from analysis.measure.record import write_json
from analysis.measure.size import size_report
from analysis.recovery.config import RecoveryConfig
from analysis.recovery.loop import recover

RECIPES = {
    "pairs (first)": Recipe(shared_layers=[[0, 1], [2, 3], [4, 5]], share_mode="first"),
    "pairs (mean)": Recipe(shared_layers=[[0, 1], [2, 3], [4, 5]], share_mode="mean"),
    "all six (first)": Recipe(shared_layers=[[0, 1, 2, 3, 4, 5]], share_mode="first"),
    "all six (mean)": Recipe(shared_layers=[[0, 1, 2, 3, 4, 5]], share_mode="mean"),
}


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "n/a"


def saved_bytes(loaded, recipe: Recipe) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "m")
        return save_materialized(materialize(loaded.model, recipe), None, out, recipe)["weights_bytes"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="demo")
    p.add_argument("--minutes", type=float, default=0.0,
                   help="training budget per recipe (0 = one whole epoch, whatever the load: comparable rows)")
    p.add_argument("--only", default=None, help="comma list of recipe names to run")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    loaded = load_model(args.model, device="cpu")
    data = loaded.default_data
    test, train = own_splits(loaded)
    done = {}
    if os.path.exists(args.out):
        with open(args.out) as f:
            done = {r["recipe_name"]: r for r in json.load(f).get("rows", [])}
    rows = list(done.values())
    base = size_report(loaded.adapter, Recipe())
    header = {"model": args.model, "data": data, "eval_split": test.name, "eval_examples": len(test),
              "train": train.name, "train_examples_before_holdout": len(train), "objective": "ce",
              "minutes_budget": args.minutes or None, "threads": torch.get_num_threads(), "device": "cpu",
              "baseline": {"parameters": base.parameters, "mb": round(base.mb, 2),
                           "saved_bytes": saved_bytes(loaded, Recipe())},
              "selection": "the checkpoint kept is the best on 500 stratified train examples held out of training; "
                           "the evaluation split is scored once, after training"}

    def save():
        write_json(args.out, {**header, "rows": rows, "seconds": round(time.perf_counter() - t0, 1)}, device="cpu")

    names = args.only.split(",") if args.only else list(RECIPES)
    for name in names:
        if name in done:
            continue
        recipe = RECIPES[name]
        size = size_report(loaded.adapter, recipe)
        config = RecoveryConfig.for_objective("ce", minutes=args.minutes or None, epochs=1, device="cpu")
        load_before, t = uptime(), time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            out_dir = os.path.join(tmp, "m")
            res = recover(loaded, recipe, config, train=train, test=test, out_dir=out_dir)
            reloaded = load_materialized(out_dir)
            ties = tied_groups(Adapter(reloaded))
            reloaded_params = sum(q.numel() for q in reloaded.parameters())
        wall = time.perf_counter() - t
        ev = res["eval"]
        rows.append({"recipe_name": name, "recipe": recipe.to_dict(), "description": recipe.describe(),
                     "parameters": size.parameters, "mb": round(size.mb, 2),
                     "saved_bytes": saved_bytes(loaded, recipe), "recovered_saved_bytes": res["saved"]["weights_bytes"],
                     "metric": ev["metric"], "teacher": ev["teacher"], "one_shot": ev["before"], "recovered": ev["after"],
                     "train_minutes": res["train_minutes"], "steps": res["steps"], "epochs_done": res["epochs_done"],
                     "holdout_best": res["selection"]["holdout_metric"], "chosen_step": res["selection"]["chosen_step"],
                     "train_examples": res["data"]["train_examples"], "holdout_examples": res["data"]["holdout_examples"],
                     "eval_examples": ev["examples"], "reloaded_tied_groups": ties, "reloaded_parameters": reloaded_params,
                     "device": res["device"], "threads": res["threads"], "wall_minutes_with_eval": round(wall / 60, 2),
                     "uptime_before": load_before, "uptime_after": uptime()})
        save()
        print(f"{name}: {size.mb:.1f} MB, {100 * ev['before']:.1f} -> {100 * ev['after']:.1f} "
              f"(teacher {100 * ev['teacher']:.1f}), {res['train_minutes']:.1f} min, {uptime()}", flush=True)
    save()


if __name__ == "__main__":
    main()
