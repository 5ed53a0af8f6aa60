"""Does torch.compile pay for live what-ifs? Eager vs compiled flat encoder layer, one run.

Times full passes of Headroom's simulated forward (a one-head recipe) over the demo's 500-example
subset: eager, then `torch.compile(encoder_layer, dynamic=True)` — its first pass (compilation
included) and its later passes. Compilation pays only if (first - later) is recovered by enough
later passes; with what-ifs that change the weights' shapes (masked heads are sliced out), more
recompilation would follow.

    python benchmarks/bench_compile.py --out benchmarks/results/compile_cpu_demo.json
"""

from __future__ import annotations

import argparse
import json

import torch

from analysis.core import simulate as S
from analysis.io.datasets import load_dataset, report_split
from analysis.measure.evaluate import Evaluator
from analysis.io.models import load_model
from analysis.core.recipe import Recipe
from analysis.measure.record import write_json
from analysis.measure.timing import measure, median_seconds


@torch.inference_mode()
def full_pass(ev: Evaluator, sim, layer_fn) -> None:
    """Every batch through the simulated forward `sim`, with `layer_fn` as the encoder layer."""
    for batch in ev.batches:
        h = sim.embed(batch)
        mask = S.additive_mask(batch.attention_mask, h.dtype)
        for i in sorted(sim.layers):
            h, _ = layer_fn(h, mask, sim.layers[i])
        sim.adapter.classify(h)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="demo")
    p.add_argument("--limit", type=int, default=500)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    loaded = load_model(args.model)
    ev = Evaluator(loaded, load_dataset(loaded.default_data, report_split(loaded), limit=args.limit))
    sim = ev.simulators.get(Recipe(masked_heads=[(0, 0)]))  # a one-head recipe, its weights prepared untimed
    e = median_seconds(lambda: full_pass(ev, sim, S.encoder_layer), warmup=0, repeats=args.repeats, device=ev.device)
    compiled_layer = torch.compile(S.encoder_layer, dynamic=True)
    first = measure(lambda: full_pass(ev, sim, compiled_layer), warmup=0, repeats=1, device=ev.device)[0]
    c = median_seconds(lambda: full_pass(ev, sim, compiled_layer), warmup=0, repeats=args.repeats, device=ev.device)
    result = {
        "model": args.model, "examples": len(ev.dataset), "device": str(ev.device), "threads": torch.get_num_threads(),
        "eager_pass_s": e, "compiled_first_pass_s": first, "compiled_pass_s": c,
        "speedup_after_compile": e / c,
        "passes_to_recover_compile_time": (first - c) / max(e - c, 1e-9),
    }
    print(json.dumps(result, indent=1))
    if args.out:
        write_json(args.out, result, device=ev.device)


if __name__ == "__main__":
    main()
