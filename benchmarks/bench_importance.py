"""Cost of each head-importance method relative to ONE evaluation pass over the same examples.

The baseline, measured in the same run on the same Evaluator: one full evaluation pass from the
embeddings (`Evaluator.evaluate(Recipe(), full=True)`: every batch through the simulated forward,
no cache). Against it:
- michel  — one forward + one backward per batch, gradients w.r.t. the head gates (the issue's
  goal: <= 3x one pass): per-example |grad| (the default, the paper's), its per-batch mode and
  label-free mode;
- taylor  — the same with gradients w.r.t. each layer's W_O;
- entropy — one forward pass with explicit attention probabilities;
- ablation — one incremental evaluation per head (a head of layer l recomputes layers l..L-1).
Each method run is paired with an evaluation pass just before it; the ratio is the median of the
paired ratios over `--repeats` pairs (ablation: one pair), same process, same threads.

    python benchmarks/bench_importance.py --model demo --data banking77 --limit 500 --out benchmarks/results/importance_cpu_demo.json
    python benchmarks/bench_importance.py --model tiny --limit 200
    python benchmarks/bench_importance.py --model demo --limit 2000 --device cuda --out importance_cuda_demo.json
"""

from __future__ import annotations

import argparse
import statistics

import torch

from analysis.io.datasets import load_dataset, report_split
from analysis.measure.evaluate import Evaluator
from analysis.methods.importance import compute_importance
from analysis.io.models import load_model
from analysis.core.recipe import Recipe
from analysis.measure.record import write_json
from analysis.measure.timing import median_seconds


def load(args):
    if args.model == "tiny":  # a tiny random BERT with the real tokenizer: for a quick check only
        from analysis.testing import tiny_dataset, tiny_loaded

        return tiny_loaded(layers=6, heads=12, hidden=384), tiny_dataset(args.limit or 200)
    loaded = load_model(args.model, device=args.device)
    data = args.data or loaded.default_data
    split = args.split or report_split(loaded, args.data)
    return loaded, load_dataset(data, split, limit=args.limit)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="demo", help="demo, demo-sst2, a directory, or 'tiny' (random 6x12 BERT)")
    p.add_argument("--data", default=None)
    p.add_argument("--split", default=None)
    p.add_argument("--limit", type=int, default=500)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--methods", default="michel,taylor,entropy,ablation")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    loaded, dataset = load(args)
    ev = Evaluator(loaded, dataset)
    dev = ev.device
    L, H = ev.adapter.num_layers, ev.adapter.num_heads
    print(f"{loaded.name} ({L}x{H} heads) on {dataset.name}: {len(dataset)} examples, {len(ev.batches)} batches "
          f"of <= {ev.batch_size}, device {dev}, threads {torch.get_num_threads()}, repeats {args.repeats}", flush=True)

    # Paired timing: each method's run follows its own evaluation pass, so load from other processes
    # on a shared machine hits both; the ratio reported is the median of the paired ratios.
    passes = [median_seconds(lambda: ev.evaluate(Recipe(), full=True), warmup=0, repeats=1, device=dev)
              for _ in range(args.repeats)]
    variants = []
    for m in [m.strip() for m in args.methods.split(",") if m.strip()]:
        variants.append((m + (" (per-example |grad|, the default)" if m == "michel" else ""), m, {}))
        if m == "michel":
            variants.append(("michel, per-batch |grad|", m, {"mode": "per-batch"}))
            variants.append(("michel, label-free", m, {"label_free": True}))
    rows = []
    for name, method, kw in variants:
        pairs = []
        for _ in range(1 if method == "ablation" else args.repeats):
            t_pass = median_seconds(lambda: ev.evaluate(Recipe(), full=True), warmup=0, repeats=1, device=dev)
            t_method = median_seconds(lambda: compute_importance(ev, method, **kw), warmup=0, repeats=1, device=dev)
            passes.append(t_pass)
            pairs.append((t_method, t_pass))
        seconds = statistics.median(t for t, _ in pairs)
        ratio = statistics.median(t / b for t, b in pairs)
        rows.append((name, seconds, ratio))
        print(f"  {name:<36} {seconds:8.2f} s   {ratio:6.2f}x one pass", flush=True)
    one_pass = statistics.median(passes)
    rows.insert(0, ("one evaluation pass (full, from the embeddings)", one_pass, 1.0))

    print("\n| method | seconds | x one evaluation pass |\n| --- | --- | --- |")
    for name, s, r in rows:
        print(f"| {name} | {s:.2f} | {r:.2f}x |")
    result = {
        "what": "seconds of each head-importance method over the same examples, and the ratio to one full "
                "evaluation pass measured in the same run (medians; ablation one run)",
        "model": loaded.name, "data": dataset.name, "num_examples": len(dataset), "layers": L, "heads": H,
        "device": str(dev), "threads": torch.get_num_threads(),
        "batch_size": ev.batch_size, "repeats": args.repeats,
        "one_pass_seconds": one_pass,
        "methods": {name: {"seconds": s, "ratio_to_one_pass": r} for name, s, r in rows[1:]},
        "michel_goal_met": {n: r for n, _, r in rows}.get("michel", float("inf")) <= 3.0,
    }
    if args.out:
        write_json(args.out, result, device=dev)  # with the load average: other processes add noise
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
