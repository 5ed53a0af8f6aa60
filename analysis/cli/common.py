"""Arguments every analysis command shares (--model, --data, --limit, ...) and how to load them."""

from __future__ import annotations

import argparse

from analysis.core.recipe import (Recipe, field_choices, field_default, field_help, parse_head_list, parse_int_list,
                                  parse_neuron_list, parse_rank_list, parse_share_groups)
from analysis.errors import HeadroomError


from .arguments import MAX_LENGTH, count

_UNSET = object()


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="demo", help="demo, demo-sst2, a local directory or a hub id (default: demo)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow custom model code (off by default)")
    p.add_argument("--allow-pickle", action="store_true", help="allow pickle-based .bin checkpoints (off by default)")


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=None, help="banking77, sst2, glue:<task>, bolt:<name> or a CSV/TSV/JSONL path "
                   "(default: the data the model was trained for)")
    p.add_argument("--split", default=None, help="split of a bundled dataset (default: test, or dev for GLUE)")
    p.add_argument("--limit", type=count(1), default=None, help="evaluate a deterministic, stratified subset of N examples")
    p.add_argument("--seed", type=count(0), default=0, help="seed of the subset (default 0)")
    p.add_argument("--text-column", default=None)
    p.add_argument("--pair-column", default=None)
    p.add_argument("--label-column", default=None)
    p.add_argument("--max-length", type=MAX_LENGTH, default=128, help="tokens per example; longer ones are truncated (default 128)")
    p.add_argument("--batch-size", type=count(1), default=None, help="examples per batch (default: 64 on CPU, 512 on CUDA)")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])


def add_recipe_option(p: argparse.ArgumentParser, flag: str, name: str, *, default=None, shown=_UNSET,
                      how: str = "", **kw) -> None:
    """Add `flag`, which sets Recipe field `name`: help text, default and allowed values come from the field.

    `default` None leaves the field as the recipe (file) has it; `shown` is the default the help
    states (the Recipe's own unless given). Word choices (granularity) are enforced by argparse;
    bit-widths are listed in the help and checked by `Recipe.validate`, whose sentence names them.
    """
    choices = field_choices(name)
    if shown is _UNSET:
        shown = default if default is not None else field_default(name)
    text = field_help(name) + (f"; {how}" if how else "")
    if choices and isinstance(choices[0], str):
        kw.setdefault("choices", choices)
    elif choices:
        text += f"; one of {', '.join(map(str, choices))}"
    if shown is not None and kw.get("action") is None:
        shown_text = (", ".join(map(str, shown)) or "none") if isinstance(shown, list) else shown
        text += f" (default: {shown_text})"
    own = field_default(name)
    if kw.get("action") is None and "type" not in kw and isinstance(own, int) and not isinstance(own, bool):
        kw["type"] = int
    p.add_argument(flag, default=default, help=text, **kw)


def add_recipe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", default=None, help="a recipe JSON file (the options below change it)")
    add_recipe_option(p, "--mask-heads", "masked_heads", how="layer:head pairs, e.g. 0:3,5:11")
    add_recipe_option(p, "--drop-layers", "dropped_layers", how="e.g. 4,5")
    add_recipe_option(p, "--mask-neurons", "masked_neurons",
                      how="layer:units with ';' between layers, e.g. '0:5,17,100-199;3:0-767' (a recipe file "
                          "from `importance --unit ffn --prune-fraction F --recipe-out R.json` carries them too)")
    add_recipe_option(p, "--bits", "weight_bits", how="the command line takes one value, for all layers")
    add_recipe_option(p, "--embedding-bits", "embedding_bits")
    add_recipe_option(p, "--granularity", "granularity")
    add_recipe_option(p, "--sparsity", "sparsity", type=float,
                      how="the command line takes one value, for all layers (a recipe file may list one per layer)")
    add_recipe_option(p, "--sparsity-roles", "sparsity_roles", how="a comma list, e.g. ffn_in,ffn_out", choices=None,
                      shown=None)
    add_recipe_option(p, "--sparsity-scope", "sparsity_scope")
    add_recipe_option(p, "--sparsity-pattern", "sparsity_pattern",
                      how="2:4 without --sparsity sets it to 0.5, the fraction the pattern has")
    add_recipe_option(p, "--ranks", "ranks", how="layer:role:rank entries, e.g. 0:ffn_in:64,0-5:ffn_out:128 (a layer range)")
    add_recipe_option(p, "--embedding-size", "embedding_size")
    add_recipe_option(p, "--share-layers", "shared_layers",
                      how="groups of layers with ',' between groups: ranges or '+'-joined layers, e.g. 0-1,2-3 or 0+2+4")
    add_recipe_option(p, "--share-mode", "share_mode")


def recipe_from_args(args) -> Recipe:
    recipe = Recipe.load(args.recipe) if getattr(args, "recipe", None) else Recipe()
    changes = {}
    if getattr(args, "mask_heads", None):
        changes["masked_heads"] = [list(p) for p in recipe.masked_heads] + [list(p) for p in parse_head_list(args.mask_heads)]
    if getattr(args, "mask_neurons", None):
        changes["masked_neurons"] = [[l, u] for l, u in recipe.masked_neurons] + \
            [[l, u] for l, u in parse_neuron_list(args.mask_neurons)]
    if getattr(args, "drop_layers", None):
        changes["dropped_layers"] = recipe.dropped_layers + parse_int_list(args.drop_layers)
    if getattr(args, "bits", None) is not None:
        changes["weight_bits"] = args.bits
    if getattr(args, "embedding_bits", None) is not None:
        changes["embedding_bits"] = args.embedding_bits
    if getattr(args, "granularity", None):
        changes["granularity"] = args.granularity
    if getattr(args, "ranks", None):
        changes["ranks"] = [list(e) for e in recipe.ranks] + [list(e) for e in parse_rank_list(args.ranks)]
    if getattr(args, "embedding_size", None) is not None:
        changes["embedding_size"] = args.embedding_size
    if getattr(args, "share_layers", None):
        changes["shared_layers"] = [list(g) for g in recipe.shared_layers] + parse_share_groups(args.share_layers)
    if getattr(args, "share_mode", None):
        changes["share_mode"] = args.share_mode
    if getattr(args, "sparsity", None) is not None:
        changes["sparsity"] = args.sparsity
    if getattr(args, "sparsity_roles", None):
        changes["sparsity_roles"] = [r.strip() for r in args.sparsity_roles.split(",") if r.strip()]
    if getattr(args, "sparsity_scope", None):
        changes["sparsity_scope"] = args.sparsity_scope
    if getattr(args, "sparsity_pattern", None):
        changes["sparsity_pattern"] = args.sparsity_pattern
        if args.sparsity_pattern == "2:4" and getattr(args, "sparsity", None) is None and not recipe.has_sparsity():
            changes["sparsity"] = 0.5  # the pattern's fraction, by construction
    return recipe.replace(**changes) if changes else recipe


def load_model_from_args(args):
    from analysis.io.models import load_model

    return load_model(args.model, device=args.device, trust_remote_code=args.trust_remote_code,
                      allow_pickle=args.allow_pickle)



def load_data_from_args(args, loaded):
    from analysis.io.datasets import load_dataset, report_split

    data = args.data or loaded.default_data
    if data is None:
        raise HeadroomError("This model does not say which data it was trained for; pass --data.")
    split = args.split or report_split(loaded, args.data)  # the demo models' cards say which split they report
    if args.limit is not None and args.limit < 1:
        raise HeadroomError("--limit must be a positive number of examples.")
    dataset = load_dataset(data, split, limit=args.limit, seed=args.seed, text_column=args.text_column,
                           pair_column=args.pair_column, label_column=args.label_column)
    note_warnings(args, dataset.warnings)
    return dataset


def note_warnings(args, warnings: list[str]) -> None:
    """Keep what looked suspicious about the inputs; `analysis.cli.main` adds it to the JSON as "warnings"."""
    kept = getattr(args, "warnings", None)
    if kept is None:
        kept = []
        setattr(args, "warnings", kept)
    kept.extend(w for w in warnings if w not in kept)


def evaluator_from_args(args, loaded=None):
    from analysis.measure.evaluate import Evaluator

    loaded = loaded or load_model_from_args(args)
    dataset = load_data_from_args(args, loaded)
    ev = Evaluator(loaded, dataset, max_length=args.max_length, batch_size=args.batch_size, dtype=args.dtype)
    note_warnings(args, ev.dataset.warnings)  # aligning the labels may have added one
    return ev
