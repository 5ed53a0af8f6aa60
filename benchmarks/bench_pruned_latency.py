"""Real head pruning: latency and size of the materialized model with half its heads pruned.

Michel et al. 2019 (section 6) report up to 17.5% faster inference after pruning 50% of BERT's
heads. Here: Michel importance (per-layer L2-normalised, as in their pruning code) on `--limit`
examples ranks every head; the `--fraction` least important heads (globally) are pruned; the
Recipe is materialized (`analysis.core.materialize`: heads sliced out of Q/K/V/O, uneven heads per
layer) and the plain HuggingFace forward of the pruned and the unpruned model is timed with
`analysis.measure.timing.measure` at batch sizes 1/8/32 and sequence lengths 32/128, alternating the
two models round by round so drift on a shared machine hits both alike. Masking heads with a
zero gate in HF costs the same FLOPs as the unpruned model, so "unpruned" is also "masked".
Size on disk = the safetensors written by `save_materialized` for each model (fp32).

    python benchmarks/bench_pruned_latency.py --model demo --limit 500 --out benchmarks/results/pruned_latency_cpu_demo.json
    python benchmarks/bench_pruned_latency.py --model demo --limit 500 --device cuda --out pruned_latency_cuda_demo.json
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import torch

from analysis.io.datasets import load_dataset, report_split
from analysis.measure.evaluate import Evaluator
from analysis.methods.heads import prune_half_recipe
from analysis.methods.importance import michel_importance
from analysis.core.materialize import materialize, save_materialized
from analysis.io.models import load_model
from analysis.core.recipe import Recipe
from analysis.measure.record import write_json
from analysis.measure.timing import measure


def load(args):
    loaded = load_model(args.model, device=args.device)
    data = args.data or loaded.default_data
    split = args.split or report_split(loaded, args.data)
    return loaded, load_dataset(data, split, limit=args.limit)


def disk_bytes(model, tokenizer, recipe: Recipe) -> int:
    with tempfile.TemporaryDirectory() as d:
        return save_materialized(model, tokenizer, d, recipe)["weights_bytes"]


@torch.inference_mode()
def time_pair(unpruned, pruned, batch, *, rounds: int, repeats: int, device) -> tuple[float, float]:
    """Median ms per batch of each model, alternating models every round."""
    inputs = batch.model_inputs()
    times = {"unpruned": [], "pruned": []}
    for _ in range(rounds):
        for name, model in (("unpruned", unpruned), ("pruned", pruned)):
            times[name] += measure(lambda: model(**inputs), warmup=1, repeats=repeats, device=device)
    return statistics.median(times["unpruned"]) * 1000, statistics.median(times["pruned"]) * 1000


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="demo")
    p.add_argument("--data", default=None)
    p.add_argument("--split", default=None)
    p.add_argument("--limit", type=int, default=500, help="examples to compute importance on (and to take tokens from)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--fraction", type=float, default=0.5, help="fraction of all heads to prune (default 0.5)")
    p.add_argument("--batch-sizes", default="1,8,32")
    p.add_argument("--seq-lens", default="32,128")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per shape (default 3)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per model per round (default 5)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    loaded, dataset = load(args)
    ev = Evaluator(loaded, dataset)
    dev = ev.device
    importance = michel_importance(ev, normalize_layer=True)
    recipe = prune_half_recipe(importance, args.fraction)
    pruned = materialize(loaded.model, recipe)
    unpruned = loaded.model
    L, H = ev.adapter.num_layers, ev.adapter.num_heads
    kept = [H - sum(1 for l, _ in recipe.masked_heads if l == i) for i in range(L)]
    simulated = ev.evaluate(recipe)
    print(f"{loaded.name}: pruning {len(recipe.masked_heads)}/{L * H} heads by Michel importance on {len(dataset)} "
          f"{dataset.name} examples; heads kept per layer {kept}; {simulated.metric_name} "
          f"{ev.baseline.metric:.4f} -> {simulated.metric:.4f} (simulated); device {dev}, threads {torch.get_num_threads()}",
          flush=True)

    # The materialized model must compute what the simulation computed (a real, smaller model).
    check = ev.batches[0]
    with torch.inference_mode():
        diff = (pruned(**check.model_inputs()).logits - torch.as_tensor(
            simulated.logits[check.example_ids.numpy()], device=dev)).abs().max().item()

    rows = []
    for T in [int(x) for x in args.seq_lens.split(",")]:
        for B in [int(x) for x in args.batch_sizes.split(",")]:
            batch = ev.latency_batch(B, T)
            u, q = time_pair(unpruned, pruned, batch, rounds=args.rounds, repeats=args.repeats, device=dev)
            rows.append({"batch_size": B, "seq_len": T, "unpruned_ms": u, "pruned_ms": q, "ratio": q / u,
                         "faster_percent": 100 * (1 - q / u)})
            print(f"  batch {B:>3} seq {T:>3}: unpruned {u:8.2f} ms  pruned {q:8.2f} ms  ratio {q / u:.3f} "
                  f"({100 * (1 - q / u):+.1f}% faster)", flush=True)

    size_unpruned = disk_bytes(unpruned, loaded.tokenizer, Recipe())
    size_pruned = disk_bytes(pruned, loaded.tokenizer, recipe)
    print("\n| batch | seq len | unpruned ms | pruned ms | pruned / unpruned |\n| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['batch_size']} | {r['seq_len']} | {r['unpruned_ms']:.2f} | {r['pruned_ms']:.2f} | {r['ratio']:.3f} |")
    print(f"size on disk (fp32 safetensors): unpruned {size_unpruned / 1e6:.1f} MB, pruned {size_pruned / 1e6:.1f} MB "
          f"({size_pruned / size_unpruned:.3f}); max |logit diff| pruned vs simulated {diff:.2e}")
    result = {
        "what": "median wall-clock ms per batch of the plain HF forward, pruned (materialized) vs unpruned, "
                "measured in the same run, alternating rounds; sizes are safetensors bytes on disk",
        "model": loaded.name, "data": dataset.name, "num_examples": len(dataset),
        "device": str(dev), "threads": torch.get_num_threads(),
        "fraction_pruned": len(recipe.masked_heads) / (L * H), "heads_kept_per_layer": kept,
        "recipe": recipe.to_dict(), "importance": "michel, per-layer L2-normalised",
        "metric_name": simulated.metric_name, "baseline_metric": ev.baseline.metric, "pruned_metric_simulated": simulated.metric,
        "max_abs_logit_diff_pruned_vs_simulated": diff,
        "latency": rows, "rounds": args.rounds, "repeats": args.repeats,
        "size_bytes": {"unpruned": size_unpruned, "pruned": size_pruned, "ratio": size_pruned / size_unpruned},
    }
    if args.out:
        write_json(args.out, result, device=dev)  # with the load average: other processes slow both models
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
