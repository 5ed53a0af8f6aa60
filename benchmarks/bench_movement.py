"""Magnitude vs movement pruning during fine-tuning, at the same budget, against one-shot magnitude.

For `demo` (Banking77: trained on a stratified subset of the train split, scored on the full test
split, 3,080) and `demo-sst2` (SST-2: the train split from shared/data/sst2 as the loader reads it,
scored on dev, 872), at each sparsity (the fraction of zeros of every encoder linear, Q/K/V/O and
FFN in/out, local top-k; embeddings and classifier dense):

- one-shot: the recipe `sparsity = s` (magnitude, local), simulated exactly, no fine-tuning;
- magnitude: gradual magnitude pruning while fine-tuning (`prune_method = magnitude`);
- movement: hard movement pruning while fine-tuning (`prune_method = movement`, Sanh et al. 2020).

Both fine-tuned methods get the SAME budget: the same train examples (`--train-limit`, seed 0),
epochs, batch, learning rate and warm-up, the same cubic schedule (0 until 10% of the steps, the
final sparsity at 70%, then 30% of the steps at it), no held-out selection (the last weights, at the
final sparsity, ship). Movement's scores have their own lr (`prune_lr`, the paper's 1e-2). The
evaluation split is scored once per run, on the exported model reloaded from disk. Bytes: the
dense safetensors (zeros included) and the bitmask / CSR files of `analysis.measure.sparse_files`.

`--start pretrained` is Sanh et al.'s own setting: pruning while fine-tuning the *pretrained* encoder
(all-MiniLM-L6-v2 from its pip package, a fresh classifier, seed 0), not the fine-tuned demo model;
there is no one-shot row then (an untrained head scores chance) but a `dense` row: the same budget
without pruning, the reference the pruned runs are read against.

Two diagnostics per fine-tuned row: `pruned_weight_magnitude` (the mean |W| of the teacher's weights
that the run pruned, over the mean |W| of the pruned matrices: < 1 prunes small weights, > 1 large
ones) and `max_logged_loss` (the worst logged training loss, 10-step means: a collapse shows there).

Rows are written as they finish; a rerun with the same --out skips them (refused if its budget differs).

    OMP_NUM_THREADS=2 nice python benchmarks/bench_movement.py --model demo --out benchmarks/results/movement_demo.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch

from analysis.core.adapters import Adapter
from analysis.core.materialize import materialize
from analysis.core.recipe import Recipe
from analysis.io.datasets import own_splits
from analysis.io.models import load_model
from analysis.measure.evaluate import Evaluator
from analysis.measure.record import write_json
from analysis.measure.sparse_files import sparse_sizes
from analysis.recovery.config import RecoveryConfig
from analysis.recovery.loop import recover


def pruned_magnitude(teacher, pruned) -> float:
    """Mean |W| of the teacher's weights that are zero in `pruned`, over the mean |W| of those matrices."""
    a, b = Adapter(teacher), Adapter(pruned)
    at_zeros, zeros, total, count = 0.0, 0, 0.0, 0
    for j in range(a.num_layers):
        for role in ("query", "key", "value", "attention_output", "ffn_in", "ffn_out"):
            w, p = getattr(a.layer(j), role).weight.detach(), getattr(b.layer(j), role).weight.detach()
            z = p == 0
            at_zeros, zeros = at_zeros + float(w.abs()[z].sum()), zeros + int(z.sum())
            total, count = total + float(w.abs().sum()), count + w.numel()
    return (at_zeros / max(zeros, 1)) / (total / count)


def pretrained_start(loaded) -> None:
    """Sanh et al.'s start: the pretrained MiniLM encoder (and pooler) in place of the fine-tuned one, a fresh head."""
    from safetensors.torch import load_file

    from analysis.io.train import resolve_base

    base_dir = resolve_base("minilm")[0]  # the pip package's model, as `train --base minilm` reads it
    base = {k: v for k, v in load_file(os.path.join(base_dir, "model.safetensors")).items() if "position_ids" not in k}
    encoder = loaded.model.bert
    missing, unexpected = encoder.load_state_dict(base, strict=False)
    missing = [k for k in missing if "position_ids" not in k]
    if missing or unexpected:
        raise SystemExit(f"the pretrained encoder does not fit {loaded.name}: missing {missing}, unexpected {unexpected}")
    torch.manual_seed(0)
    loaded.model.classifier.reset_parameters()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="demo")
    p.add_argument("--sparsities", default="0.1,0.3,0.5,0.7,0.9,0.97")
    p.add_argument("--methods", default="magnitude,movement")
    p.add_argument("--train-limit", type=int, default=4000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--prune-lr", type=float, default=1e-2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prune-every", type=int, default=4)
    p.add_argument("--start", choices=("fine-tuned", "pretrained"), default="fine-tuned",
                   help="prune the fine-tuned model (default) or fine-tune the pretrained encoder while pruning")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    loaded = load_model(args.model, device="cpu")
    if args.start == "pretrained":
        pretrained_start(loaded)
    data = loaded.default_data
    test, train = own_splits(loaded, train_limit=args.train_limit)
    sparsities = [float(s) for s in args.sparsities.split(",")]
    methods = args.methods.split(",")
    base = dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, warmup_ratio=0.1, holdout=0,
                eval_split="none", device="cpu", prune_warmup=0.1, prune_end=0.7, prune_every=args.prune_every,
                prune_lr=args.prune_lr)
    budget = {k: base[k] for k in ("epochs", "batch_size", "lr", "warmup_ratio", "prune_warmup", "prune_end",
                                   "prune_every", "prune_lr")} | {"train_examples": args.train_limit}
    if args.start == "pretrained":
        budget["start"] = "pretrained"
    rows = []
    if os.path.exists(args.out):
        with open(args.out) as f:
            old = json.load(f)
        if {k: old.get("budget", {}).get(k) for k in budget} != budget:
            raise SystemExit(f"{args.out} holds rows of another budget; give another --out.")
        rows = old.get("rows", [])
    done = {(r["method"], r["sparsity"]) for r in rows}
    ev = Evaluator(loaded, test)
    header = {"model": args.model, "data": data, "eval_split": test.name, "eval_examples": len(test),
              "train": train.name, "train_examples": len(train), "teacher_metric": ev.baseline.metric,
              "metric": ev.baseline.metric_name, "threads": args.threads, "device": "cpu", "start": args.start,
              "budget": budget | {"selection": "none: the last weights (at the final sparsity)"},
              "roles": "query,key,value,attention_output,ffn_in,ffn_out (local top-k; embeddings, classifier dense)",
              "note": "sparsity buys size (bitmask/CSR files), not speed on dense kernels"}

    def save():
        write_json(args.out, {**header, "rows": rows, "seconds": round(time.perf_counter() - t0, 1)}, device="cpu")

    def sizes_of(model, tmp):
        s = sparse_sizes(model, os.path.join(tmp, "sizes"))
        return {"dense_with_zeros": s["bytes"]["dense_with_zeros"], "bitmask": s["bytes"]["bitmask"],
                "csr": s["bytes"]["csr"], "zero_fraction_of_matrices": s["zero_fraction_of_matrices"]}

    if args.start == "pretrained" and ("dense", 0.0) not in done:
        config = RecoveryConfig.for_objective("ce", **base)
        with tempfile.TemporaryDirectory() as tmp:
            res = recover(loaded, Recipe(), config, train=train, out_dir=os.path.join(tmp, "m"))
            metric = Evaluator(load_model(os.path.join(tmp, "m"), device="cpu"), test).baseline.metric
        rows.append({"method": "dense", "sparsity": 0.0, "metric": metric, "train_minutes": res["train_minutes"],
                     "steps": res["steps"], "final_loss": res["history"][-1]["loss"],
                     "loadavg": [round(x, 2) for x in os.getloadavg()]})
        save()
        print(f"dense: {100 * metric:.2f}", flush=True)
    for s in sparsities:
        if args.start == "fine-tuned" and ("one-shot", s) not in done:
            t = time.perf_counter()
            recipe = Recipe(sparsity=s)
            metric = ev.evaluate(recipe).metric
            with tempfile.TemporaryDirectory() as tmp:
                sizes = sizes_of(materialize(loaded.model, recipe), tmp)
            rows.append({"method": "one-shot", "sparsity": s, "metric": metric, "train_minutes": 0.0,
                         "bytes": sizes, "eval_seconds": round(time.perf_counter() - t, 1),
                         "loadavg": [round(x, 2) for x in os.getloadavg()]})
            save()
            print(f"one-shot {s:.0%}: {100 * metric:.2f}", flush=True)
        for method in methods:
            if (method, s) in done:
                continue
            config = RecoveryConfig.for_objective("ce", **base, prune_method=method, prune_sparsity=s)
            load_before = os.getloadavg()
            with tempfile.TemporaryDirectory() as tmp:
                out_dir = os.path.join(tmp, "m")
                res = recover(loaded, Recipe(), config, train=train, out_dir=out_dir)
                t = time.perf_counter()
                again = load_model(out_dir, device="cpu")
                metric = Evaluator(again, test).baseline.metric
                eval_s = time.perf_counter() - t
                sizes = sizes_of(again.model, tmp)
                magnitude_ratio = pruned_magnitude(loaded.model, again.model)
            pr = res["pruning"]
            rows.append({"method": method, "sparsity": s, "metric": metric, "train_minutes": res["train_minutes"],
                         "steps": res["steps"], "bytes": sizes,
                         "saved_sparse_bytes": {k: v for k, v in res["saved"]["sparse_weights_bytes"].items()
                                                if k != "files"},
                         "pruned_zero_fraction": pr["zero_fraction"], "pruned_matrices": pr["pruned_matrices"],
                         "min_matrix_zero_fraction": min(m["zeros"] / m["weights"] for m in pr["per_matrix"]),
                         "max_matrix_zero_fraction": max(m["zeros"] / m["weights"] for m in pr["per_matrix"]),
                         "final_loss": res["history"][-1]["loss"],
                         "max_logged_loss": max(r["loss"] for r in res["history"] if r["loss"] is not None),
                         "pruned_weight_magnitude": round(magnitude_ratio, 3), "eval_seconds": round(eval_s, 1),
                         "loadavg_before": [round(x, 2) for x in load_before],
                         "loadavg_after": [round(x, 2) for x in os.getloadavg()]})
            save()
            print(f"{method} {s:.0%}: {100 * metric:.2f} ({res['train_minutes']:.2f} min, {res['steps']} steps, "
                  f"load {os.getloadavg()[0]:.1f})", flush=True)
    save()


if __name__ == "__main__":
    main()
