"""Layer-dropping commands: `layers --strategy top --k 2` and `layers --sweep` (Sajjad et al. 2023)."""

from __future__ import annotations

import time

import torch

from analysis.errors import HeadroomError
from analysis.core.recipe import parse_int_list
from .arguments import MAX_LENGTH, count
from .common import add_data_args, add_model_args, evaluator_from_args


def register(sub) -> None:
    from analysis.methods.layers import STRATEGIES

    p = sub.add_parser("layers", help="drop encoder layers by a strategy (simulated metric; optional measured latency)")
    add_model_args(p)
    add_data_args(p)
    p.add_argument("--strategy", default="top", choices=STRATEGIES)
    p.add_argument("--k", type=count(1), default=2, help="how many layers to drop (default 2)")
    p.add_argument("--layers", default=None, help="layers to drop for --strategy custom, e.g. 2,4")
    p.add_argument("--sweep", action="store_true", help="every strategy at k = 1..L-1 (metric table)")
    p.add_argument("--strategies", default=None, help="with --sweep: a comma list of strategies (default: all but custom)")
    p.add_argument("--latency", action="store_true",
                   help="also materialize the dropped model and measure its latency against the full one")
    p.add_argument("--latency-batch-size", type=count(1), default=32)
    p.add_argument("--latency-seq-len", type=MAX_LENGTH, default=128)
    p.add_argument("--contribution-examples", type=count(1), default=256,
                   help="examples used to measure each layer's [CLS] change (default 256)")
    p.set_defaults(func=cmd_layers)


def cmd_layers(args) -> dict:
    from analysis.methods.layers import SWEEP_STRATEGIES, evaluate_drop, layer_contributions, materialized_latency, max_k, sweep

    t0 = time.perf_counter()
    ev = evaluator_from_args(args)
    L = ev.adapter.num_layers
    common = {
        "model": ev.loaded.name, "data": ev.dataset.name, "num_examples": len(ev.dataset), "num_layers": L,
        "metric_name": ev.baseline.metric_name, "baseline_metric": ev.baseline.metric,
        "device": str(ev.device), "threads": torch.get_num_threads(),
    }
    if args.sweep:
        strategies = tuple(s.strip() for s in args.strategies.split(",")) if args.strategies else SWEEP_STRATEGIES
        result = sweep(ev, strategies, contribution_examples=args.contribution_examples).to_dict()
        if args.latency:
            batch = ev.latency_batch(args.latency_batch_size, args.latency_seq_len)
            result["materialized_latency"] = [
                materialized_latency(ev.loaded.model, list(range(L - k, L)), batch) for k in range(1, L)]
        result.update({k: v for k, v in common.items() if k not in result})
        result["seconds"] = round(time.perf_counter() - t0, 2)
        return result
    custom = parse_int_list(args.layers) if args.layers else None
    if args.strategy == "custom" and not custom:
        raise HeadroomError("--strategy custom needs --layers, e.g. --layers 2,4.")
    contribution = layer_contributions(ev, args.contribution_examples) if args.strategy == "contribution" else None
    k = len(set(custom)) if custom else args.k
    if args.strategy != "custom" and not 1 <= k <= max_k(args.strategy, L):
        raise HeadroomError(f"--k must be between 1 and {max_k(args.strategy, L)} for {args.strategy} on this {L}-layer model.")
    row = evaluate_drop(ev, args.strategy, k, contribution=contribution, custom=custom)
    out = {**common, **row.to_dict(), "mode": "simulated (dropping = identity layers; exact)"}
    if contribution is not None:
        out["contribution_cls_cosine"] = [round(c, 4) for c in contribution]
    if args.latency:
        batch = ev.latency_batch(args.latency_batch_size, args.latency_seq_len)
        out["materialized_latency"] = materialized_latency(ev.loaded.model, row.dropped_layers, batch)
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out
