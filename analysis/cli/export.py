"""`export`: the real model of a recipe in a deployment format (ONNX, optionally ONNX Runtime int8)."""

from __future__ import annotations

from .common import add_model_args, add_recipe_args, load_model_from_args, recipe_from_args


def register(sub) -> None:
    p = sub.add_parser("export", help="materialize a recipe and export it to ONNX (optionally ORT dynamic int8)")
    add_model_args(p)
    add_recipe_args(p)
    p.add_argument("--format", default="onnx", choices=["onnx"], help="deployment format (default onnx)")
    p.add_argument("--int8", action="store_true", help="also write ONNX Runtime's dynamic int8 model (model.int8.onnx)")
    p.add_argument("--out", required=True, help="a new directory to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing, non-empty --out directory whole")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> dict:
    from analysis.core.export import export_onnx
    from analysis.core.materialize import materialize
    from analysis.io.outputs import check_output_dir

    from .core import _inputs

    recipe = recipe_from_args(args)
    check_output_dir(args.out, inputs=_inputs(args), overwrite=args.overwrite, what="ONNX export directory")
    loaded = load_model_from_args(args)
    model = materialize(loaded.model, recipe)
    result = export_onnx(model, loaded.tokenizer, args.out, int8=args.int8, recipe=recipe, overwrite=args.overwrite,
                         inputs=_inputs(args) + (loaded.source,))
    out = result.to_dict()
    out.update({"model": loaded.name, "recipe": recipe.to_dict(),
                "parameters": sum(p.numel() for p in model.parameters()),
                "baseline_parameters": loaded.num_parameters()})
    return out
