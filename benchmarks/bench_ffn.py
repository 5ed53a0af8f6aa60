"""FFN neuron pruning on `demo`: accuracy one-shot, and the materialized model's latency vs the unpruned one.

The FFN holds most of a BERT layer's FLOPs (2 x D x 4D of the ~12 D^2 per token), so removing
intermediate units should buy real speed, unlike masking a few heads. Here:
- FFN neuron importance (`analysis.methods.neurons`, `--method`: gradient = Michel-style E|dL/dgate|
  per unit, or taylor = TextPruner's W_out column score) on `--limit` stratified TRAIN examples (never
  the evaluation split); accuracy on `--limit` examples of the evaluation split (demo: Banking77 test);
- the `--fraction` least important units, ranked globally after per-layer L2 normalisation, are
  masked (per-layer kept counts come out uneven); accuracy one-shot (no re-fine-tuning), simulated,
  and checked on the materialized model itself (its HF forward on the same examples);
- latency: `analysis.measure.latency.measure_recipe_latency`, i.e. the materialized model and the
  unpruned one timed in the same call, interleaved in shuffled order (`timing.compare`), median of
  per-round ratios with its bootstrap interval and the verdict rule, at batch 32 x 128 and 1 x 16;
- size: safetensors bytes on disk of both.

    nice python benchmarks/bench_ffn.py --model demo --threads 2 --out benchmarks/results/ffn_cpu_demo.json
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from analysis.core.materialize import materialize, save_materialized
from analysis.core.recipe import Recipe
from analysis.io.datasets import load_dataset, report_split
from analysis.io.models import load_model
from analysis.measure.evaluate import Evaluator
from analysis.measure.latency import measure_recipe_latency
from analysis.measure.record import write_json
from analysis.methods.neurons import neuron_importance, prune_fraction


def disk_bytes(model, recipe: Recipe) -> int:
    with tempfile.TemporaryDirectory() as d:
        return save_materialized(model, None, d + "/m", recipe)["weights_bytes"]


@torch.inference_mode()
def materialized_predictions(model, ev) -> np.ndarray:
    """Predictions of a HF model on the Evaluator's batches, in dataset order."""
    preds = np.zeros(len(ev.dataset), dtype=np.int64)
    for batch in ev.batches:
        preds[batch.example_ids.cpu().numpy()] = model(**batch.model_inputs()).logits.argmax(-1).cpu().numpy()
    return preds


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="demo")
    p.add_argument("--data", default=None, help="default: the model's own data (demo: banking77)")
    p.add_argument("--limit", type=int, default=500, help="examples for importance and accuracy (default 500)")
    p.add_argument("--method", default="gradient", choices=["gradient", "taylor"])
    p.add_argument("--fraction", type=float, default=0.5, help="fraction of all FFN neurons pruned (default 0.5)")
    p.add_argument("--shapes", default="32x128,1x16", help="batch x seq_len to time (default 32x128,1x16)")
    p.add_argument("--rounds", default="15,40", help="interleaved rounds per shape (default 15,40)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    loaded = load_model(args.model, device="cpu")
    data = args.data or loaded.default_data
    dataset = load_dataset(data, report_split(loaded, args.data), limit=args.limit)
    ev = Evaluator(loaded, dataset)
    # importance on train examples (stratified, seed 1): the evaluation split never chooses what is pruned
    from analysis.io.subsets import align_labels

    chooser = Evaluator(loaded, align_labels(load_dataset(data, "train", limit=args.limit, seed=1), loaded.id2label))
    t0 = time.perf_counter()
    imp = neuron_importance(chooser, args.method)
    importance_s = time.perf_counter() - t0
    pruning = prune_fraction(imp, args.fraction)
    recipe = pruning.recipe().replace(name=f"{args.fraction:.0%} FFN neurons ({args.method})")
    simulated = ev.evaluate(recipe)
    pruned = materialize(loaded.model, recipe)
    real_preds = materialized_predictions(pruned, ev)
    agree_sim = float((real_preds == simulated.predictions).mean())
    labels = ev.labels
    real_accuracy = float((real_preds == labels).mean())
    sizes = [s for s in pruning.intermediate_sizes if s]
    print(f"{loaded.name}: {recipe.num_masked_neurons}/{sum(sizes)} FFN neurons pruned by {args.method} importance "
          f"on {len(chooser.dataset)} {chooser.dataset.name} examples ({importance_s:.1f} s); kept per layer {pruning.kept_per_layer}",
          flush=True)
    print(f"  accuracy {ev.baseline.metric:.4f} -> {simulated.metric:.4f} simulated, {real_accuracy:.4f} materialized "
          f"(predictions agree {agree_sim:.4f})", flush=True)

    rows = []
    for shape, rounds in zip(args.shapes.split(","), [int(r) for r in args.rounds.split(",")]):
        B, T = (int(x) for x in shape.split("x"))
        lat = measure_recipe_latency(loaded, recipe, ev.latency_batch(B, T), rounds=rounds)
        rows.append({"batch_size": B, "seq_len": T, **lat.to_dict()})
        print(f"  batch {B} x {T}: {lat.label()} (pruned {lat.ms_per_batch:.2f} ms, unpruned "
              f"{lat.baseline_ms_per_batch:.2f} ms; FLOPs predict {lat.predicted_ratio:.2f}x; load {lat.load_average})",
              flush=True)
    size_base, size_pruned = disk_bytes(loaded.model, Recipe()), disk_bytes(pruned, recipe)
    print(f"  size on disk (fp32 safetensors): {size_base / 1e6:.1f} MB -> {size_pruned / 1e6:.1f} MB "
          f"({size_pruned / size_base:.3f})")
    result = {
        "what": "FFN neurons pruned by importance, one-shot (no re-fine-tuning): accuracy simulated and of the "
                "materialized model; latency of the materialized vs the unpruned model timed interleaved in one run "
                "(median per-round ratio, bootstrap 95% interval, verdict); size = safetensors bytes on disk",
        "model": loaded.name, "data": dataset.name, "num_examples": len(dataset), "method": args.method,
        "importance_data": chooser.dataset.name, "importance_examples": len(chooser.dataset),
        "importance_seconds": importance_s, "fraction": args.fraction,
        "masked_neurons": recipe.num_masked_neurons, "intermediate_sizes": pruning.intermediate_sizes,
        "kept_per_layer": pruning.kept_per_layer,
        "metric_name": simulated.metric_name, "baseline_metric": ev.baseline.metric,
        "pruned_metric_simulated": simulated.metric, "pruned_metric_materialized": real_accuracy,
        "materialized_agrees_with_simulated": agree_sim,
        "latency": rows, "threads": torch.get_num_threads(),
        "size_bytes": {"unpruned": size_base, "pruned": size_pruned, "ratio": size_pruned / size_base},
        "recipe": recipe.to_dict(),
    }
    if args.out:
        write_json(args.out, result, device="cpu")
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
