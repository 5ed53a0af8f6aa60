"""Recovery on `demo`: drop k layers by a Sajjad strategy, then re-fine-tune (ce) and distil (kd), full test.

For each objective, one `analysis.recovery.recover` run on the Banking77 train split (500 held out,
stratified, for model selection), then the full test split scored once: the recipe one-shot
(simulated) and the recovered model (measured). Same process, one after the other.

    python benchmarks/recovery_demo.py --k 2 --strategy top --objectives ce,kd --epochs 1 \
        --out benchmarks/results/recovery_demo.json
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from analysis.cli.arguments import count
from analysis.core.recipe import Recipe
from analysis.io.models import load_model
from analysis.measure.record import write_json
from analysis.methods.layers import dropped_layers_for
from analysis.recovery.config import RecoveryConfig
from analysis.recovery.loop import recover


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="demo")
    p.add_argument("--k", type=count(1), default=2)
    p.add_argument("--strategy", default="top")
    p.add_argument("--objectives", default="ce,kd")
    p.add_argument("--epochs", type=count(1), default=1)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    loaded = load_model(args.model)
    load_s = time.perf_counter() - t0
    dropped = dropped_layers_for(args.strategy, args.k, loaded.adapter.num_layers)
    recipe = Recipe(dropped_layers=dropped, name=f"{args.strategy} {args.k} layers dropped")
    rows = []
    for objective in args.objectives.split(","):
        config = RecoveryConfig.for_objective(objective, epochs=args.epochs, device="cpu")
        load_before = os.getloadavg()
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            res = recover(loaded, recipe, config, out_dir=os.path.join(tmp, "m"))
            wall = time.perf_counter() - t
            t = time.perf_counter()
            reloaded = load_model(os.path.join(tmp, "m"))
            reload_s = time.perf_counter() - t
            del reloaded
        ev = res["eval"]
        rows.append({"objective": objective, "config": res["config"], "dropped_layers": dropped,
                     "teacher": ev["teacher"], "before": ev["before"], "after": ev["after"],
                     "after_macro_f1": ev["after_metrics"].get("macro_f1"),
                     "train_minutes": res["train_minutes"], "wall_minutes_with_eval": round(wall / 60, 2),
                     "reload_seconds": round(reload_s, 2), "steps": res["steps"],
                     "holdout_best": res["selection"]["holdout_metric"], "chosen_step": res["selection"]["chosen_step"],
                     "train_examples": res["data"]["train_examples"], "holdout_examples": res["data"]["holdout_examples"],
                     "eval_split": ev["split"], "eval_examples": ev["examples"],
                     "loadavg_before": [round(x, 2) for x in load_before],
                     "loadavg_after": [round(x, 2) for x in os.getloadavg()], "history": res["history"]})
        print(f"{objective}: {100 * ev['before']:.1f}% before -> {100 * ev['after']:.1f}% after "
              f"(teacher {100 * ev['teacher']:.1f}%), {res['train_minutes']:.1f} min training, "
              f"load {os.getloadavg()[0]:.1f}", flush=True)
    result = {"model": args.model, "strategy": args.strategy, "k": args.k, "epochs": args.epochs,
              "threads": torch.get_num_threads(), "model_load_seconds": round(load_s, 2),
              "device": "cpu", "rows": rows,
              "note": "model selection on 500 examples held out of banking77 train; the test split (3,080) "
                      "was scored once per run, after training"}
    if args.out:
        write_json(args.out, result, device="cpu")


if __name__ == "__main__":
    main()
