"""Magnitude sparsity on `demo`: what it buys in bytes and in time, dense kernels vs CSR sparse kernels.

For each sparsity s (local magnitude pruning of all six encoder matrices of every layer, one shot,
no fine-tuning; `analysis.core.sparsity`):
- accuracy, simulated, on `--limit` examples of the evaluation split (the one-shot reference; the
  fine-tuned curves are bench_movement's);
- bytes on disk: dense with zeros (safetensors), bitmask + values and CSR (`measure.sparse_files`,
  real files), and the CSR kernels' model (torch.save of its CSR tensors, int64 indices);
- latency: the materialized model on dense kernels (its zeros multiplied like any weight) and the
  same model with every encoder Linear as a CSR matrix (`core.sparse_kernels`), all timed in ONE
  interleaved `timing.compare` call against the unpruned model, per shape and thread count: median
  of per-round ratios, bootstrap 95% interval, verdict;
- the CSR model's logits against the dense sparse model's (max |difference|), so speed is not
  bought with a different function.

    nice python benchmarks/bench_sparse.py --threads 1,2 --out benchmarks/results/sparse_kernels_cpu_demo.json
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from analysis.core.materialize import materialize
from analysis.core.recipe import Recipe
from analysis.core.sparse_kernels import csr_kernels
from analysis.io.datasets import load_dataset, report_split
from analysis.io.models import load_model
from analysis.measure.backends import parse_shapes
from analysis.measure.lowbit import serialized_bytes
from analysis.measure.record import write_json
from analysis.measure.sparse_files import sparse_sizes
from analysis.measure.evaluate import Evaluator
from analysis.measure.timing import compare, load_average


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="demo")
    p.add_argument("--limit", type=int, default=500, help="evaluation examples for the one-shot accuracy (default 500)")
    p.add_argument("--sparsities", default="0.5,0.7,0.9,0.95,0.97,0.99")
    p.add_argument("--shapes", default="32x128,1x16")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--rounds", default="10,30", help="interleaved rounds per shape (default 10,30)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    sparsities = [float(s) for s in args.sparsities.split(",")]
    shapes = parse_shapes(args.shapes)
    rounds = [int(r) for r in args.rounds.split(",")]
    threads = [int(t) for t in args.threads.split(",")]

    loaded = load_model(args.model)
    model = loaded.model.float().eval()
    data = loaded.default_data
    split = report_split(loaded)
    ev = Evaluator(loaded, load_dataset(data, split, limit=args.limit))
    base_bytes = serialized_bytes(model)
    print(f"{args.model}: baseline {ev.baseline.metric:.4f} on {len(ev.dataset)} {data}:{split}, {base_bytes / 1e6:.1f} MB")

    points, dense_models, csr_models = [], {}, {}
    probe = ev.latency_batch(8, 32).model_inputs()
    for s in sparsities:
        recipe = Recipe(sparsity=s)
        acc = ev.evaluate(recipe).metric
        dense = materialize(model, recipe).float().eval()
        fast, how = csr_kernels(dense, min_sparsity=0.0)
        with torch.inference_mode():
            diff = float((dense(**probe).logits - fast(**probe).logits).abs().max())
        with tempfile.TemporaryDirectory() as d:
            files = sparse_sizes(dense, d)["bytes"]
        points.append({"sparsity": s, "accuracy_one_shot": round(acc, 4), "linears_as_csr": len(how["converted"]),
                       "max_abs_logit_diff_csr_vs_dense": diff, "bytes": {**files, "csr_kernels_model": serialized_bytes(fast)}})
        dense_models[s], csr_models[s] = dense, fast
        print(f"s={s}: acc {acc:.4f}, csr-vs-dense logits {diff:.1e}, files {files}")

    timings = []

    def result() -> dict:
        return {
            "what": "magnitude sparsity (local, all six encoder matrices, one shot): accuracy simulated on the evaluation "
                    "subset; latency measured: materialized dense-with-zeros and CSR-kernel models vs the unpruned model, "
                    "interleaved in one call per (threads, shape)",
            "model": args.model, "data": f"{data}:{split}", "examples": len(ev.dataset), "baseline_metric": ev.baseline.metric,
            "baseline_bytes": base_bytes, "device": "cpu", "points": points, "timings": timings,
            "load_average_end": load_average(), "minutes": round((time.perf_counter() - t0) / 60, 2),
        }

    old = torch.get_num_threads()
    try:
        for t in threads:
            torch.set_num_threads(t)
            for (b, seq), r in zip(shapes, rounds + [rounds[-1]] * len(shapes)):
                inputs = ev.latency_batch(b, seq).model_inputs()
                fns = {}
                for s in sparsities:
                    fns[f"dense {s:g}"] = lambda m=dense_models[s]: m(**inputs)
                    fns[f"csr {s:g}"] = lambda m=csr_models[s]: m(**inputs)
                with torch.inference_mode():
                    out = compare(fns, lambda: model(**inputs), rounds=r, warmup=2)
                for name, c in out.items():
                    timings.append({"shape": f"{b}x{seq}", "candidate": name, **c.to_dict()})
                print(f"{t} thread(s) {b}x{seq}: baseline {out['baseline'].ms:.1f} ms; " + ", ".join(
                    f"{n} {c.ratio:.2f}x [{c.ratio_ci95[0]:.2f}-{c.ratio_ci95[1]:.2f}]" for n, c in out.items() if n != "baseline"),
                    flush=True)
                if args.out:  # after every (threads, shape): a run stopped part-way keeps what it measured
                    write_json(args.out, result())
    finally:
        torch.set_num_threads(old)
    return result()


if __name__ == "__main__":
    main()
