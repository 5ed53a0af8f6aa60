"""`export`: the real model of a recipe in a deployment format (ONNX, optionally ONNX Runtime int8);
`backends`: that model on torch fp32 / torch int8 / ORT fp32 / ORT int8 (/ torch CSR sparse kernels), accuracy, size and latency
in one run (analysis/measure/backends.py)."""

from __future__ import annotations

from analysis.measure.backends import ALL_BACKENDS as BACKEND_NAMES

from .arguments import count
from .common import add_data_args, add_model_args, add_recipe_args, evaluator_from_args, load_model_from_args, recipe_from_args


def register(sub) -> None:
    p = sub.add_parser("export", help="materialize a recipe and export it to ONNX (optionally ORT dynamic int8)")
    add_model_args(p)
    add_recipe_args(p)
    p.add_argument("--format", default="onnx", choices=["onnx"], help="deployment format (default onnx)")
    p.add_argument("--int8", action="store_true", help="also write ONNX Runtime's dynamic int8 model (model.int8.onnx)")
    p.add_argument("--per-channel", action="store_true",
                   help="also write ONNX Runtime's dynamic int8 with one range per weight column "
                        "(model.int8-per-channel.onnx): more accurate; time it with `backends`")
    p.add_argument("--out", required=True, help="a new directory to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing, non-empty --out directory whole")
    p.set_defaults(func=cmd_export)

    b = sub.add_parser("backends", help="the recipe's model on torch fp32/int8 and ONNX Runtime fp32/int8: accuracy, "
                                         "size on disk, latency vs torch fp32 (interleaved)")
    add_model_args(b)
    add_data_args(b)
    add_recipe_args(b)
    b.add_argument("--threads", default="1,2", help="comma-separated CPU thread counts to time (default 1,2)")
    b.add_argument("--shapes", default="32x128,1x16", help="batch x sequence shapes to time (default 32x128,1x16)")
    b.add_argument("--rounds", type=count(2), default=10, help="interleaved rounds per shape and thread count (default 10)")
    b.add_argument("--backends", default=None,
                   help=f"comma-separated subset of: {', '.join(BACKEND_NAMES)} (default: all but torch CSR, which is "
                        "added when the recipe has magnitude sparsity, and torch 2:4 (CUDA), added for a 2:4 recipe where "
                        "a CUDA GPU of the Ampere generation or newer is present)")
    b.set_defaults(func=cmd_backends)



def _thread_list(text: str) -> list[int]:
    from analysis.errors import HeadroomError

    try:
        threads = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        threads = []
    if not threads or min(threads) < 1:
        raise HeadroomError(f"--threads '{text}' is not a list of thread counts; write e.g. 1,2.")
    return threads


def cmd_backends(args) -> dict:
    from analysis.measure.backends import (SEMI_STRUCTURED_BACKEND, compare_backends, parse_shapes,
                                           semi_structured_unavailable)

    shapes, threads = parse_shapes(args.shapes), _thread_list(args.threads)
    backends = None if args.backends is None else [b.strip() for b in args.backends.split(",") if b.strip()]
    recipe = recipe_from_args(args)
    ev = evaluator_from_args(args)
    out = compare_backends(ev, recipe, shapes=shapes, threads=threads, rounds=args.rounds, backends=backends).to_dict()
    if recipe.sparsity_pattern == "2:4" and semi_structured_unavailable():
        out["not_offered"] = {SEMI_STRUCTURED_BACKEND: semi_structured_unavailable()}  # said, not silently missing
    return out


def cmd_export(args) -> dict:
    from analysis.core.export import export_onnx
    from analysis.core.materialize import materialize
    from analysis.io.outputs import check_output_dir

    from .core import _inputs

    recipe = recipe_from_args(args)
    check_output_dir(args.out, inputs=_inputs(args), overwrite=args.overwrite, what="ONNX export directory")
    loaded = load_model_from_args(args)
    model = materialize(loaded.model, recipe)
    result = export_onnx(model, loaded.tokenizer, args.out, int8=args.int8, per_channel=args.per_channel, recipe=recipe, overwrite=args.overwrite,
                         inputs=_inputs(args) + (loaded.source,))
    out = result.to_dict()
    out.update({"model": loaded.name, "recipe": recipe.to_dict(),
                "parameters": sum(p.numel() for p in model.parameters()),
                "baseline_parameters": loaded.num_parameters()})
    return out
