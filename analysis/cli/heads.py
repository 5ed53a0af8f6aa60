"""Head commands: importance, head-stats, keep-one-head, prune-curve (JSON out; L x H as nested lists)."""

from __future__ import annotations

import time

import torch

from analysis.errors import HeadroomError
from .arguments import count, number
from .common import add_data_args, add_model_args, evaluator_from_args, load_data_from_args, load_model_from_args


def register(sub) -> None:
    p = sub.add_parser("importance", help="importance of every head (L x H): michel, ablation, entropy, taylor; "
                                          "or of every FFN neuron (--unit ffn): gradient, taylor")
    add_model_args(p)
    add_data_args(p)
    p.add_argument("--unit", default="heads", choices=["heads", "ffn"],
                   help="score attention heads (default) or FFN intermediate neurons")
    p.add_argument("--method", default="michel",
                   help="heads: michel, ablation, entropy or taylor; a comma list (e.g. michel,ablation) also reports "
                        "Spearman rank agreement between them (default: michel). ffn: gradient (Michel-style gates, "
                        "the default; michel means the same) or taylor (TextPruner's W_out score)")
    p.add_argument("--prune-fraction", type=number(0, 1), default=None,
                   help="ffn: also give the recipe masking this fraction of all neurons, least important first "
                        "(global order, each layer's scores L2-normalised; at least one unit kept per layer)")
    p.add_argument("--recipe-out", default=None, help="ffn with --prune-fraction: write that recipe to this new JSON file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --recipe-out file")
    p.add_argument("--normalize-layer", action="store_true", help="divide each layer's scores by their L2 norm")
    p.add_argument("--label-free", action="store_true", help="the model's own predictions as targets (no labels)")
    p.add_argument("--michel-mode", default="per-example", choices=["per-example", "per-batch"],
                   help="michel: |gradient| per example (default: the paper's E_x|dL/dgate|, independent of batch "
                        "size) or per batch (|summed gradient| of each batch, depends on the batching)")
    p.add_argument("--per-example", action="store_true", help="michel: the same as --michel-mode per-example (the default)")
    p.add_argument("--halves", action="store_true",
                   help="also score two random halves of the data and report their rank agreement")
    p.set_defaults(func=cmd_importance)

    p = sub.add_parser("head-stats", help="attention statistics per head (Clark et al. 2019)")
    add_model_args(p)
    add_data_args(p)
    p.set_defaults(func=cmd_head_stats)

    p = sub.add_parser("keep-one-head", help="per layer: metric with only its best head kept / all heads masked")
    add_model_args(p)
    add_data_args(p)
    p.add_argument("--label-free", action="store_true", help="agreement with the model's own predictions")
    p.set_defaults(func=cmd_keep_one_head)

    p = sub.add_parser("prune-curve", help="metric vs fraction of heads masked, by importance / random / reverse")
    add_model_args(p)
    add_data_args(p)
    p.add_argument("--step", type=number(0, 1, above=True), default=0.1, help="fraction of all heads masked per step (default 0.1)")
    p.add_argument("--order", default="importance",
                   help="importance, random or reverse; a comma list runs several (default: importance)")
    p.add_argument("--seeds", type=count(1), default=3, help="random orders to average (default 3)")
    p.add_argument("--recompute", action="store_true", help="recompute importance after each step")
    p.add_argument("--method", default="michel", choices=["michel", "ablation", "entropy", "taylor"])
    p.add_argument("--no-normalize-layer", action="store_true",
                   help="rank gradient scores without the per-layer L2 normalisation")
    p.add_argument("--label-free", action="store_true", help="agreement with the model's own predictions")
    p.set_defaults(func=cmd_prune_curve)


def _label_free(args):
    return True if args.label_free else None


def _where(ev, seconds: float) -> dict:
    return {
        "model": ev.loaded.name,
        "data": ev.dataset.name,
        "num_examples": len(ev.dataset),
        "device": str(ev.device),
        "threads": torch.get_num_threads(),
        "dtype": ev.dtype_name,
        "baseline": {"metric_name": ev.baseline.metric_name, "metric": ev.baseline.metric},
        "seconds": round(seconds, 3),
    }


def _methods(text: str) -> list[str]:
    from analysis.methods.importance import METHODS

    methods = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if not methods or bad:
        raise HeadroomError(f"Unknown importance method '{', '.join(bad) or text}'; choose from {', '.join(METHODS)}.")
    return methods


def cmd_ffn_importance(args) -> dict:
    """`importance --unit ffn`: one score per FFN neuron and layer; optionally the recipe pruning a fraction."""
    from analysis.io.outputs import atomic_write_text, check_output_file
    from analysis.methods.neurons import NEURON_METHODS, neuron_importance, prune_fraction

    method = {"michel": "gradient"}.get(args.method, args.method)
    if method not in NEURON_METHODS:
        raise HeadroomError(f"FFN neuron importance method '{args.method}' is not available; choose gradient or taylor.")
    if args.recipe_out and args.prune_fraction is None:
        raise HeadroomError("--recipe-out needs --prune-fraction (the fraction of FFN neurons the recipe masks).")
    if args.recipe_out:
        check_output_file(args.recipe_out, inputs=(args.model,), overwrite=args.overwrite, what="recipe file")
    import os

    t0 = time.perf_counter()
    loaded = load_model_from_args(args)
    data = args.data or loaded.default_data
    bundled = data is not None and not os.path.isfile(data) and not os.path.isdir(data)
    if args.prune_fraction is not None and args.split is None and bundled:
        args.split = "train"  # the scores choose what is pruned: never on the evaluation split
    ev = evaluator_from_args(args, loaded)
    imp = neuron_importance(ev, method, label_free=_label_free(args))
    out = _where(ev, time.perf_counter() - t0)
    out["what"] = "FFN neuron importance: per layer, one score per intermediate unit (simulated)"
    out["importance"] = imp.to_dict()
    if args.prune_fraction is not None:
        pruning = prune_fraction(imp, args.prune_fraction)
        recipe = pruning.recipe().replace(name=f"{args.prune_fraction:.0%} FFN neurons ({method})")
        out["pruning"] = pruning.to_dict()
        out["chosen_on"] = ev.dataset.name  # evaluate the recipe on another split (e.g. evaluate --recipe-file)
        out["recipe"] = recipe.to_dict()
        if args.recipe_out:
            atomic_write_text(args.recipe_out, recipe.to_json(), overwrite=args.overwrite, inputs=(args.model,),
                              what="recipe file")
            out["recipe_file"] = args.recipe_out
    return out


def cmd_importance(args) -> dict:
    from analysis.measure.evaluate import Evaluator
    from analysis.methods.importance import agreement_matrix, compute_importance, rank_agreement, split_in_halves

    if args.unit == "ffn":
        return cmd_ffn_importance(args)
    if args.prune_fraction is not None or args.recipe_out:
        raise HeadroomError("--prune-fraction and --recipe-out go with --unit ffn (heads: see prune-curve and presets).")
    methods = _methods(args.method)
    t0 = time.perf_counter()
    loaded = load_model_from_args(args)
    ev = evaluator_from_args(args, loaded)
    kw = dict(normalize_layer=args.normalize_layer, label_free=_label_free(args))
    extra = {"mode": "per-example" if args.per_example else args.michel_mode}
    results = {m: compute_importance(ev, m, **kw, **(extra if m == "michel" else {})) for m in methods}
    out = _where(ev, time.perf_counter() - t0)
    out["what"] = "head importance, one L x H array per method (rows = layers, columns = heads; simulated)"
    out["importance"] = {m: r.to_dict() for m, r in results.items()}
    if len(methods) > 1:
        out["spearman_between_methods"] = agreement_matrix(results)
    if args.halves:
        halves = split_in_halves(load_data_from_args(args, loaded), seed=args.seed)
        out["spearman_between_halves"] = {}
        for m in methods:
            a, b = (compute_importance(Evaluator(loaded, h, max_length=args.max_length, batch_size=args.batch_size,
                                                 dtype=args.dtype), m, **kw) for h in halves)
            out["spearman_between_halves"][m] = {"rho": rank_agreement(a, b), "num_examples": [len(h) for h in halves]}
    return out


def cmd_head_stats(args) -> dict:
    from analysis.methods.heads import head_stats

    t0 = time.perf_counter()
    ev = evaluator_from_args(args)
    stats = head_stats(ev)
    out = _where(ev, time.perf_counter() - t0)
    out.update(stats.to_dict())
    return out


def cmd_keep_one_head(args) -> dict:
    from analysis.methods.heads import keep_one_head

    t0 = time.perf_counter()
    ev = evaluator_from_args(args)
    result = keep_one_head(ev, label_free=_label_free(args))
    out = _where(ev, time.perf_counter() - t0)
    out.update(result.to_dict())
    return out


def cmd_prune_curve(args) -> dict:
    from analysis.methods.heads import ORDERS, prune_curve
    from analysis.methods.importance import compute_importance

    orders = [o.strip() for o in args.order.split(",") if o.strip()]
    bad = [o for o in orders if o not in ORDERS]
    if not orders or bad:
        raise HeadroomError(f"Unknown pruning order '{', '.join(bad) or args.order}'; choose from {', '.join(ORDERS)}.")
    t0 = time.perf_counter()
    ev = evaluator_from_args(args)
    normalize = not args.no_normalize_layer
    shared = None  # one importance score for every non-recomputed order
    if any(o != "random" for o in orders):
        kw = {"normalize_layer": normalize} if args.method in ("michel", "taylor") else {}
        shared = compute_importance(ev, args.method, label_free=_label_free(args), **kw)
    curves = {o: prune_curve(ev, order=o, step=args.step, method=args.method, recompute=args.recompute,
                             seeds=args.seeds, normalize_layer=normalize, label_free=_label_free(args),
                             importance=shared) for o in orders}
    out = _where(ev, time.perf_counter() - t0)
    out["what"] = "metric (simulated) vs fraction of heads masked; max_fraction_within_1pt = largest fraction " \
                  "with every step up to it within 1 point of the baseline; area_under_curve = mean metric"
    out["curves"] = {o: c.to_dict() for o, c in curves.items()}
    if shared is not None:
        out["importance_seconds"] = round(shared.seconds, 3)
    return out
