"""Core commands: info, evaluate, materialize, train."""

from __future__ import annotations

import json
import time

import torch

from analysis.io.outputs import atomic_write_text, check_output_dir, check_output_file

from .runs import add_store_args
from .common import (add_data_args, add_model_args, add_recipe_args, evaluator_from_args, load_model_from_args,
                     recipe_from_args)


def register(sub) -> None:
    p = sub.add_parser("info", help="describe a model: architecture, layers x heads, parameters, labels")
    add_model_args(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("evaluate", help="evaluate a recipe (simulated) on a dataset")
    add_model_args(p)
    add_data_args(p)
    add_recipe_args(p)
    p.add_argument("--predictions", default=None, help="write one JSON line per example to this (new) file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --predictions file")
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    add_store_args(p)
    p.add_argument("--no-store", action="store_true", help="do not record this evaluation in the results store")
    p.add_argument("--json", action="store_true", help="JSON on stdout (the default; kept for scripts)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("materialize", help="build the real smaller model of a recipe and save it")
    add_model_args(p)
    add_recipe_args(p)
    p.add_argument("--out", required=True, help="a new directory to write (save_pretrained format)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing, non-empty --out directory whole")
    p.set_defaults(func=cmd_materialize)


def _inputs(args) -> tuple:
    """Every path this command reads: an output may never be one of them."""
    return tuple(p for p in (getattr(args, "model", None), getattr(args, "data", None), getattr(args, "recipe", None)) if p)


def cmd_info(args) -> dict:
    loaded = load_model_from_args(args)
    info = loaded.describe()
    info["labels"] = [loaded.id2label[i] for i in range(loaded.num_labels)]
    info["card"] = loaded.card
    return info


def cmd_evaluate(args) -> dict:
    from analysis.store.store import ResultStore, record_evaluation

    recipe = recipe_from_args(args)
    store = None if args.no_store else ResultStore(args.store)  # opened first: a bad --store fails now
    if args.predictions:  # checked before the work: a bad path fails now, not after the evaluation
        check_output_file(args.predictions, inputs=_inputs(args), overwrite=args.overwrite, what="predictions file")
    t0 = time.perf_counter()
    ev = evaluator_from_args(args)
    ev.adapter.validate(recipe)
    setup = time.perf_counter() - t0
    result = ev.evaluate(recipe, latency=not args.no_latency)
    if args.predictions:
        labels = ev.labels
        lines = (json.dumps({
            "index": int(ev.dataset.indices[i]),
            "label": None if labels is None else int(labels[i]),
            "prediction": int(result.predictions[i]),
            "logits": [round(float(x), 5) for x in result.logits[i]],
        }) for i in range(result.num_examples))
        atomic_write_text(args.predictions, "".join(line + "\n" for line in lines), overwrite=args.overwrite,
                          inputs=_inputs(args), what="predictions file")
    out = result.to_dict()
    if recipe.ranks or recipe.embedding_size:
        from analysis.core.lowrank import spectrum_report

        out["spectrum"] = spectrum_report(ev.adapter, recipe)  # energy kept per low-rank matrix
    out.update({
        "model": ev.loaded.name,
        "data": ev.dataset.name,
        "num_truncated": ev.num_truncated,
        "max_length": ev.max_length,
        "threads": torch.get_num_threads(),
        "baseline": {"metric": ev.baseline.metric, "metrics": ev.baseline.metrics},
        "setup_seconds": round(setup, 3),
        "note": "metrics and size are simulated from the recipe; latency is measured on this device",
    })
    if store is not None:
        out["run_id"] = store.add(record_evaluation(ev, result, source="cli", keep_predictions=True))
        out["store"] = str(store.path)
    return out


def cmd_materialize(args) -> dict:
    from analysis.core.materialize import materialize, save_materialized

    recipe = recipe_from_args(args)
    check_output_dir(args.out, inputs=_inputs(args), overwrite=args.overwrite, what="model directory")
    loaded = load_model_from_args(args)
    model = materialize(loaded.model, recipe)
    saved = save_materialized(model, loaded.tokenizer, args.out, recipe, overwrite=args.overwrite,
                              inputs=_inputs(args) + (loaded.source,))
    saved["parameters"] = sum(p.numel() for p in model.parameters())
    saved["baseline_parameters"] = loaded.num_parameters()
    saved["recipe"] = recipe.to_dict()
    return saved
