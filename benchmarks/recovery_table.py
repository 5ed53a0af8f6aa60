"""The recovery table: compression recipes x recovery objectives, scored on the full evaluation split.

For `demo` (Banking77 test, 3,080) or `demo-sst2` (SST-2 dev, 872), the issue's recipes

    36 heads pruned by importance | 2 layers dropped by each Sajjad strategy | 4-bit per-channel |
    3-bit per-head | 2 layers dropped + 36 heads + 8-bit

each recovered by every objective (`ce`, `kd`, `tinybert`, and `qat` for the recipes with bits);
the "none" column is the recipe one-shot (simulated), as every page shows it. Everything that
chooses (head importance, the `contribution` layers) and everything trained on uses the train
split only: importance and contributions on 500 stratified train examples, training on the train
split (optionally a stratified `--train-limit` subset) minus 500 held out for model selection.
The evaluation split is scored once per run, after training.

Rows are written to `--out` as they finish; rerunning with the same `--out` skips the rows already
there, so a stopped run continues. `--keep DIR` keeps every recovered model (DIR/<recipe>-<objective>).

    python benchmarks/recovery_table.py --model demo --out benchmarks/results/recovery_table_demo.json
    python benchmarks/recovery_table.py --model demo-sst2 --train-limit 10000 \
        --out benchmarks/results/recovery_table_sst2.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time

import torch

from analysis.cli.arguments import count
from analysis.core.recipe import Recipe
from analysis.io.datasets import load_dataset, own_splits
from analysis.io.models import load_model
from analysis.io.subsets import align_labels
from analysis.measure.evaluate import Evaluator
from analysis.measure.record import write_json
from analysis.methods.importance import michel_importance
from analysis.methods.layers import STRATEGIES, dropped_layers_for, layer_contributions
from analysis.recovery.config import RecoveryConfig
from analysis.recovery.loop import recover

SAJJAD = [s for s in STRATEGIES if s != "custom"]


def table_recipes(loaded, selection: Evaluator, heads: int = 36, k: int = 2) -> dict[str, Recipe]:
    """The issue's recipes, chosen on `selection` (train examples, never the evaluation split)."""
    L = loaded.adapter.num_layers
    order = michel_importance(selection).pruning_order()
    pruned = [tuple(h) for h in order[:heads]]
    contribution = layer_contributions(selection)
    recipes = {f"{heads} heads pruned (Michel)": Recipe(masked_heads=pruned)}
    for s in SAJJAD:
        recipes[f"{k} layers dropped ({s})"] = Recipe(
            dropped_layers=dropped_layers_for(s, k, L, contribution=contribution if s == "contribution" else None))
    recipes["4-bit per-channel"] = Recipe(weight_bits=4, granularity="per-channel")
    recipes["3-bit per-head"] = Recipe(weight_bits=3, granularity="per-head")
    sym = dropped_layers_for("symmetric", k, L)
    # the 36 least important heads among the layers that stay
    kept_heads = [h for h in order if h[0] not in sym][:heads]
    recipes[f"{k} layers (symmetric) + {heads} heads + 8-bit"] = Recipe(
        dropped_layers=sym, masked_heads=[tuple(h) for h in kept_heads], weight_bits=8, granularity="per-channel")
    return recipes


def objectives_for(recipe: Recipe, objectives: list[str], num_layers: int) -> list[str]:
    with_bits = any(b < 32 for b in recipe.layer_bits(num_layers))
    return [o for o in objectives if o != "qat" or with_bits]


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="demo")
    p.add_argument("--objectives", default="ce,kd,tinybert,qat")
    p.add_argument("--only", default=None, help="regex: run only the recipes whose name matches")
    p.add_argument("--epochs", type=count(1), default=1)
    p.add_argument("--train-limit", type=count(1), default=None,
                   help="train on a stratified subset of this many train examples (SST-2 train has 67,349)")
    p.add_argument("--keep", default=None, help="directory to keep every recovered model in")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    loaded = load_model(args.model, device="cpu")
    data = loaded.default_data
    test, train = own_splits(loaded, train_limit=args.train_limit)
    selection = Evaluator(loaded, align_labels(load_dataset(data, "train", limit=500, seed=1), loaded.id2label))
    recipes = table_recipes(loaded, selection)
    if args.only:
        recipes = {n: r for n, r in recipes.items() if re.search(args.only, n)}
    done = {}
    if os.path.exists(args.out):
        with open(args.out) as f:
            done = {(r["recipe_name"], r["objective"]): r for r in json.load(f).get("rows", [])}
    rows = list(done.values())
    objectives = args.objectives.split(",")
    header = {"model": args.model, "data": data, "eval_split": test.name, "eval_examples": len(test),
              "train": train.name, "train_examples_before_holdout": len(train), "epochs": args.epochs,
              "threads": torch.get_num_threads(), "device": "cpu",
              "selection": f"head importance (Michel, per-example) and layer contributions on {len(selection.dataset)} "
                           f"stratified train examples (seed 1); never the evaluation split",
              "recipes": {n: r.to_dict() for n, r in recipes.items()}}

    def save():
        write_json(args.out, {**header, "rows": rows, "seconds": round(time.perf_counter() - t0, 1)}, device="cpu")

    for name, recipe in recipes.items():
        for objective in objectives_for(recipe, objectives, loaded.adapter.num_layers):
            if (name, objective) in done:
                continue
            config = RecoveryConfig.for_objective(objective, epochs=args.epochs, device="cpu")
            load_before = os.getloadavg()
            with tempfile.TemporaryDirectory() as tmp:
                out_dir = os.path.join(args.keep, slug(f"{name}-{objective}")) if args.keep else os.path.join(tmp, "m")
                t = time.perf_counter()
                res = recover(loaded, recipe, config, train=train, test=test, out_dir=out_dir,
                              overwrite=bool(args.keep))
                wall = time.perf_counter() - t
            ev = res["eval"]
            rows.append({"recipe_name": name, "objective": objective, "recipe": recipe.to_dict(),
                         "metric": ev["metric"], "teacher": ev["teacher"], "before": ev["before"], "after": ev["after"],
                         "train_minutes": res["train_minutes"], "wall_minutes_with_eval": round(wall / 60, 2),
                         "steps": res["steps"], "epochs_done": res["epochs_done"],
                         "holdout_best": res["selection"]["holdout_metric"], "chosen_step": res["selection"]["chosen_step"],
                         "train_examples": res["data"]["train_examples"], "holdout_examples": res["data"]["holdout_examples"],
                         "eval_examples": ev["examples"], "student": res["student"], "device": res["device"],
                         "threads": res["threads"], "kept_at": out_dir if args.keep else None,
                         "loadavg_before": [round(x, 2) for x in load_before],
                         "loadavg_after": [round(x, 2) for x in os.getloadavg()]})
            save()
            print(f"{name} / {objective}: {100 * ev['before']:.1f} -> {100 * ev['after']:.1f} "
                  f"(teacher {100 * ev['teacher']:.1f}), {res['train_minutes']:.1f} min, load {os.getloadavg()[0]:.1f}",
                  flush=True)
    save()


if __name__ == "__main__":
    main()
