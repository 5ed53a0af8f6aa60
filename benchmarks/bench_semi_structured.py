"""2:4 semi-structured sparsity on `demo`, on a CUDA GPU: dense fp16 vs the 2:4 sparse kernels, timed.

Recipe: sparsity 0.5 with `sparsity_pattern` "2:4" on all six encoder matrices of every layer, one shot
(`analysis.core.sparsity`: in every group of 4 weights along the input dimension the 2 of smallest |w|).
The materialized model in fp16 on the GPU is run two ways:
- dense kernels (its zeros multiplied like any weight);
- every encoder Linear as `torch.sparse.to_sparse_semi_structured` (`core.sparse_kernels.SemiStructuredLinear`:
  cuSPARSELt, or CUTLASS where torch lacks it), the kernels that skip the zeros on sparse tensor cores;
both timed in ONE interleaved `timing.compare` call per shape against the unmodified model in fp16 (median of
per-round ratios, bootstrap 95% interval, verdict). Also: the 2:4 model's logits against the dense-with-zeros
model's (max |difference|, fp16), and the accuracy of both on `--limit` examples.

Without a usable GPU (no CUDA, pre-Ampere, `--device cpu`) the benchmark writes why it was skipped and
exits 0: 2:4 kernels exist only on CUDA.

    python benchmarks/bench_semi_structured.py --out OUT/semi_structured_cuda_demo.json
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from analysis.core.materialize import materialize
from analysis.core.recipe import Recipe
from analysis.core.sparse_kernels import semi_structured_kernels, semi_structured_problem
from analysis.io.datasets import load_dataset, report_split
from analysis.io.models import load_model
from analysis.measure.backends import parse_shapes
from analysis.measure.evaluate import Evaluator
from analysis.measure.record import write_json
from analysis.measure.timing import compare, load_average

RECIPE = Recipe(sparsity=0.5, sparsity_pattern="2:4", name="2:4 on all six matrices")


def _accuracy(model, ev, device) -> float:
    from analysis.measure.metrics import compute_metrics
    from analysis.runtime import predict

    preds = predict(model, ev.batches, len(ev.dataset), device=device)
    return compute_metrics(ev.labels, preds, ev.dataset.metric, ev.loaded.num_labels)["metric"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="demo")
    p.add_argument("--device", default="cuda")
    p.add_argument("--limit", type=int, default=500, help="examples for the accuracy check (default 500)")
    p.add_argument("--shapes", default="32x128,256x128")
    p.add_argument("--rounds", type=int, default=30, help="interleaved rounds per shape (default 30)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    why = ("asked for --device cpu: 2:4 sparse kernels run only on CUDA" if not args.device.startswith("cuda")
           else semi_structured_problem())
    if why:
        out = {"skipped": True, "why": why, "device": args.device, "torch": torch.__version__}
        print(f"skipped: {why}")
        if args.out:
            write_json(args.out, out)
        return out

    device = torch.device(args.device)
    props = torch.cuda.get_device_properties(device)
    cusparselt = getattr(torch.backends, "cusparselt", None)
    facts = {"gpu": props.name, "capability": f"{props.major}.{props.minor}", "torch": torch.__version__,
             "cuda": torch.version.cuda, "cusparselt": bool(cusparselt and cusparselt.is_available())}
    loaded = load_model(args.model, device=str(device))
    base = loaded.model.float().eval()
    data = loaded.default_data
    split = report_split(loaded)
    ev = Evaluator(loaded, load_dataset(data, split, limit=args.limit))
    simulated = ev.evaluate(RECIPE).metric  # simulated in fp32 (on the GPU), the reference
    dense = materialize(base, RECIPE).half().to(device).eval()
    sparse, how = semi_structured_kernels(dense)
    base16 = copy.deepcopy(base).half().to(device).eval()  # .half() is in place: the loaded model stays fp32
    probe = {k: v.to(device) for k, v in ev.latency_batch(8, 32).model_inputs().items()}
    with torch.inference_mode():
        diff = float((dense(**probe).logits.float() - sparse(**probe).logits.float()).abs().max())
        acc = {"2:4 kernels fp16": _accuracy(sparse, ev, device), "dense-with-zeros fp16": _accuracy(dense, ev, device),
               "unmodified fp16": _accuracy(base16, ev, device)}
    print(f"{facts}; {len(how['converted'])} Linears as 2:4 ({how['kernel']}), dense {how['dense_linears']}; "
          f"2:4 vs dense-with-zeros logits {diff:.2e}; accuracy {acc}", flush=True)
    timings = []

    def result() -> dict:
        return {
            "what": "2:4 semi-structured sparsity (local, all six encoder matrices, one shot) on CUDA, fp16: the "
                    "materialized model on dense kernels and on 2:4 sparse kernels vs the unmodified model in fp16, "
                    "interleaved in one timing.compare call per shape (ratio = time / unmodified fp16 time)",
            "recipe": RECIPE.to_dict(), "model": args.model, "data": f"{data}:{split}", "examples": len(ev.dataset),
            "device": str(device), **facts, "kernel": how["kernel"], "linears_as_2_4": len(how["converted"]),
            "dense_linears": how["dense_linears"], "max_abs_logit_diff_2_4_vs_dense_fp16": diff,
            "accuracy": {"simulated fp32": simulated, **acc}, "baseline_metric_fp32": ev.baseline.metric,
            "timings": timings, "load_average_end": load_average(), "seconds": round(time.perf_counter() - t0, 1)}

    for b, seq in parse_shapes(args.shapes):
        inputs = {k: v.to(device) for k, v in ev.latency_batch(b, seq).model_inputs().items()}
        fns = {"2:4 kernels fp16": lambda: sparse(**inputs), "dense-with-zeros fp16": lambda: dense(**inputs)}
        with torch.inference_mode():
            out = compare(fns, lambda: base16(**inputs), rounds=args.rounds, warmup=3, device=device)
        for name, c in out.items():
            timings.append({"shape": f"{b}x{seq}", "candidate": name, **c.to_dict()})
        print(f"{b}x{seq}: unmodified fp16 {out['baseline'].ms:.2f} ms; " + ", ".join(
            f"{n} {c.ratio:.2f}x [{c.ratio_ci95[0]:.2f}-{c.ratio_ci95[1]:.2f}] {c.verdict}"
            for n, c in out.items() if n != "baseline"), flush=True)
        if args.out:  # after every shape: a step stopped by its timeout keeps what it measured
            write_json(args.out, result())
    out = result()
    if args.out:
        write_json(args.out, out, device=str(device))
    return out


if __name__ == "__main__":
    main()
