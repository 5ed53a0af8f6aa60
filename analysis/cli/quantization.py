"""Quantisation commands: `quantize` (simulated fake-quant, or --real kernels), `sensitivity`
(Q-BERT Hessian eigenvalues per layer) and `allocate-bits` (Hessian-guided mixed precision vs
uniform bits at the same size)."""

from __future__ import annotations

import json
import time

import torch

from analysis.core.recipe import Recipe, field_default, field_help
from analysis.errors import HeadroomError

from .arguments import MAX_LENGTH, count, number
from .common import add_data_args, add_model_args, add_recipe_option, evaluator_from_args

#: what these commands choose where a plain Recipe would not quantise at all
QUANTIZE_GRANULARITY = "per-channel"


def _add_quant_args(p) -> None:
    add_recipe_option(p, "--granularity", "granularity", default=QUANTIZE_GRANULARITY)
    add_recipe_option(p, "--num-groups", "num_groups", default=field_default("num_groups"))
    p.add_argument("--asymmetric", action="store_true",
                   help=f"set symmetric to false; symmetric: {field_help('symmetric')} (default: symmetric)")
    add_recipe_option(p, "--embedding-bits", "embedding_bits", shown="32 for quantize, 8 for allocate-bits")


def register(sub) -> None:
    p = sub.add_parser("quantize", help="weight quantisation: simulated fake-quant, or --real int8/bf16/fp16 kernels")
    add_model_args(p)
    add_data_args(p)
    add_recipe_option(p, "--bits", "weight_bits", default=8, how="the command line takes one value, for all layers")
    _add_quant_args(p)
    add_recipe_option(p, "--activation-bits", "activation_bits", default=field_default("activation_bits"))
    p.add_argument("--real", default=None, choices=["int8", "bf16", "fp16"], help="build and measure the real model instead")
    p.add_argument("--int8-backend", default="auto", choices=["auto", "torchao", "torch.ao"],
                   help="int8 kernels for --real int8; auto is a fixed rule: torch.ao on CPU, torchao on CUDA")
    p.add_argument("--threads", type=count(1), default=None, help="CPU threads for the --real latency (default: torch's)")
    p.add_argument("--latency-batch-size", type=count(1), default=32)
    p.add_argument("--latency-seq-len", type=MAX_LENGTH, default=128)
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("sensitivity", help="Q-BERT: top Hessian eigenvalue per layer (power iteration)")
    add_model_args(p)
    add_data_args(p)
    p.add_argument("--method", default="hessian", choices=["hessian"])
    p.add_argument("--iters", type=count(1), default=20, help="power iterations per layer and batch (default 20)")
    p.add_argument("--batches", type=count(1), default=4, help="batches to average over (default 4)")
    p.add_argument("--hessian-batch-size", type=count(1), default=32, help="examples per batch (default 32)")
    p.add_argument("--out", default=None, help="also write the result JSON here (input of allocate-bits --sensitivity)")
    p.set_defaults(func=cmd_sensitivity)

    p = sub.add_parser("allocate-bits", help="bits per layer for a size budget, by Hessian sensitivity, vs uniform")
    add_model_args(p)
    add_data_args(p)
    p.add_argument("--budget-mb", type=number(0, above=True), required=True, help="whole-model size budget in MB (scales included)")
    p.add_argument("--candidate-bits", default="2,3,4,8")
    _add_quant_args(p)
    p.add_argument("--sensitivity", default=None, help="a JSON file from `sensitivity --out` (else computed now)")
    p.add_argument("--iters", type=count(1), default=20)
    p.add_argument("--batches", type=count(1), default=4)
    p.add_argument("--hessian-batch-size", type=count(1), default=32)
    p.set_defaults(func=cmd_allocate_bits)


def _base_recipe(args, embedding_default: int) -> Recipe:
    emb = args.embedding_bits if args.embedding_bits is not None else embedding_default
    return Recipe(granularity=args.granularity, num_groups=args.num_groups, symmetric=not args.asymmetric,
                  embedding_bits=emb)


def _summary(r, baseline) -> dict:
    d = r.to_dict()  # the JSON boundary: sizes rounded as `evaluate` prints them
    return {"name": r.recipe.name or r.description, "metric": r.metric, "delta_points": _points(r.metric, baseline),
            "agreement": r.agreement, "size_mb": d["size"]["mb"], "recipe": d["recipe"]}


def _points(metric, baseline):
    return None if metric is None or baseline is None else round(100 * (metric - baseline), 3)


def cmd_quantize(args) -> dict:
    t0 = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    ev = evaluator_from_args(args)
    common = {"model": ev.loaded.name, "data": ev.dataset.name, "num_examples": len(ev.dataset),
              "metric_name": ev.baseline.metric_name, "baseline_metric": ev.baseline.metric,
              "device": str(ev.device), "threads": torch.get_num_threads()}
    if args.real:
        from analysis.measure.lowbit import real_quantize

        kw = dict(evaluator=ev, backend=args.int8_backend, device=ev.device,
                  batch_size=args.latency_batch_size, seq_len=args.latency_seq_len)
        fp32 = real_quantize(ev.loaded.model, "fp32", **kw)
        real = real_quantize(ev.loaded.model, args.real, **kw)
        out = {**common, "real": real.to_dict(), "fp32": fp32.to_dict(),
               "latency_ratio_fp32_over_real": round(fp32.latency["ms_per_batch"] / real.latency["ms_per_batch"], 3),
               "size_ratio_real_over_fp32": round(real.serialized_bytes / fp32.serialized_bytes, 4),
               "delta_points": _points(real.metric, fp32.metric)}
    else:
        recipe = _base_recipe(args, 32).replace(weight_bits=args.bits, activation_bits=args.activation_bits,
                                                name=f"{args.bits}-bit {args.granularity}")
        r = ev.evaluate(recipe)
        out = {**common, **r.to_dict(), "delta_points": _points(r.metric, ev.baseline.metric),
               "mode": "simulated (fake-quantised weights in fp32 maths)"}
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out


def _sensitivity(args, ev):
    from analysis.methods.sensitivity import hessian_sensitivity

    return hessian_sensitivity(ev, iters=args.iters, batches=args.batches, batch_size=args.hessian_batch_size)


def cmd_sensitivity(args) -> dict:
    ev = evaluator_from_args(args)
    s = _sensitivity(args, ev)
    L = ev.adapter.num_layers
    out = {"model": ev.loaded.name, "data": ev.dataset.name, **s.to_dict(),
           "order_most_sensitive_first": sorted(range(L), key=lambda l: -abs(s.mean[l]))}
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=2)
    return out


def cmd_allocate_bits(args) -> dict:
    from analysis.methods.sensitivity import allocate_bits, uniform_bits_at_size

    try:
        cands = tuple(int(b) for b in args.candidate_bits.split(",") if b.strip())
    except ValueError:
        raise HeadroomError(f"--candidate-bits '{args.candidate_bits}' is not a list of integers, e.g. 2,3,4,8.") from None
    ev = evaluator_from_args(args)
    L = ev.adapter.num_layers
    if args.sensitivity:
        try:
            with open(args.sensitivity, encoding="utf-8") as f:
                sens = json.load(f)
        except (OSError, ValueError):
            raise HeadroomError(f"Cannot read sensitivity JSON '{args.sensitivity}'; write one with `sensitivity --out`.") from None
        if not isinstance(sens, dict) or "mean" not in sens:
            raise HeadroomError(f"'{args.sensitivity}' has no 'mean' list; write it with `sensitivity --out`.")
    else:
        sens = _sensitivity(args, ev).to_dict()
    base = _base_recipe(args, 8)
    alloc = allocate_bits(sens["mean"], args.budget_mb, ev.adapter, cands, args.granularity, base=base)
    mixed = ev.evaluate(Recipe.from_dict(alloc.recipe))
    uni = uniform_bits_at_size(ev.adapter, alloc.size_mb, candidate_bits=(2, 3, 4, 5, 6, 8), base=base)
    comparisons = [dict(_summary(ev.evaluate(Recipe.from_dict(uni["recipe"])), ev.baseline.metric), side="at or below")]
    if "next_up" in uni:
        comparisons.append(dict(_summary(ev.evaluate(Recipe.from_dict(uni["next_up"]["recipe"])), ev.baseline.metric),
                                side="next size up"))
    # A control at exactly equal size: the same multiset of bits given in the reverse order
    # (most bits to the least sensitive layers). If Hessian ordering matters, this should be worse.
    order = sorted(range(L), key=lambda l: -abs(sens["mean"][l]))
    reverse_bits = [0] * L
    for l, b in zip(order, sorted(alloc.bits)):
        reverse_bits[l] = b
    reverse = ev.evaluate(Recipe.from_dict(alloc.recipe).replace(weight_bits=reverse_bits, name="reverse-Hessian order"))
    return {
        "model": ev.loaded.name, "data": ev.dataset.name, "num_examples": len(ev.dataset),
        "metric_name": ev.baseline.metric_name, "baseline_metric": ev.baseline.metric,
        "allocation": alloc.to_dict(),
        "hessian_guided": _summary(mixed, ev.baseline.metric),
        "uniform": comparisons,
        "reverse_order_same_size": _summary(reverse, ev.baseline.metric),
        "sensitivity_mean": sens["mean"], "sensitivity_std": sens.get("std"),
        "sensitivity_seconds": sens.get("seconds"),
        "mode": "simulated (fake-quantised weights); sizes counted from the bits including scales",
    }
