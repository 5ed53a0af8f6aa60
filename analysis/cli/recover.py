"""`recover`: train a recipe's student back (fine-tuning, distillation, QAT) and save it with its card.

    python -m analysis recover --model demo --recipe R.json --objective kd --epochs 1 --out DIR

Every option of `RecoveryConfig` is an option here (`--kd-weight`, `--temperature`, `--layer-map`,
...), with the help, default and range declared on the field; `--objective` picks the weights
first and the options given change them. `--resume DIR` continues a stopped run in DIR.
"""

from __future__ import annotations

import argparse
from dataclasses import fields

from analysis.configs import default_of

from analysis.errors import HeadroomError

from .arguments import count, number
from .common import add_recipe_args, recipe_from_args

SKIP = {"objective"}  # chosen with --objective


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"'{text}' is not true or false")


def _comma_list(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma list")
    return items


#: extra spellings of a field's flag
ALIASES = {"prune_method": ["--prune"]}


def _type(f):
    meta, default = f.metadata, default_of(f)
    if isinstance(default, list):
        return _comma_list
    if isinstance(default, bool):
        return _bool
    if meta.get("minimum") is not None:
        if isinstance(default, int):
            return count(int(meta["minimum"]))
        return number(meta["minimum"], above=meta["above"])
    return str


def register(sub) -> None:
    from analysis.recovery.config import OBJECTIVES, RecoveryConfig

    p = sub.add_parser("recover", help="re-train a compressed model (ce, kd, tinybert, pkd, qat) and save it with its card")
    p.add_argument("--model", default="demo", help="the teacher: demo, demo-sst2, a directory (a recovered one too)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow custom model code")
    p.add_argument("--allow-pickle", action="store_true", help="allow pickle-based .bin checkpoints")
    add_recipe_args(p)
    p.add_argument("--objective", default="ce", choices=list(OBJECTIVES),
                   help="; ".join(f"{k}: {v[1]}" for k, v in OBJECTIVES.items()))
    p.add_argument("--config", default=None, help="a RecoveryConfig JSON file (the options below change it)")
    for f in fields(RecoveryConfig):
        if f.name in SKIP:
            continue
        default = default_of(f)
        shown = ",".join(default) if isinstance(default, list) else default
        kw = {"type": _type(f), "default": None, "help": f"{f.metadata['help']} (default: {shown})",
              "dest": f.name}
        if f.metadata.get("choices"):
            kw["choices"] = f.metadata["choices"]
        p.add_argument(_flag(f.name), *ALIASES.get(f.name, []), **kw)
    p.add_argument("--out", default=None, help="a new directory for the recovered model (left out: save nothing)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out directory whole")
    p.add_argument("--resume", default=None, help="continue the stopped run saved in this directory (writes back to it)")
    p.add_argument("--json", action="store_true", help="JSON on stdout (the default; kept for scripts)")
    p.set_defaults(func=cmd_recover)


def config_from_args(args):
    from analysis.recovery.config import RecoveryConfig

    if args.config:
        try:
            with open(args.config, encoding="utf-8") as fh:
                base = RecoveryConfig.from_json(fh.read()).to_dict()
        except FileNotFoundError:
            raise HeadroomError(f"Recovery config file '{args.config}' does not exist.") from None
    else:
        base = RecoveryConfig.for_objective(args.objective).to_dict()
    if args.config and args.objective != "ce":
        base.update(RecoveryConfig.for_objective(args.objective).to_dict())
    changes = {f.name: getattr(args, f.name) for f in fields(RecoveryConfig)
               if f.name not in SKIP and getattr(args, f.name, None) is not None}
    if args.minutes is not None and args.epochs is None and not args.config:
        changes["epochs"] = 1_000  # a time budget alone: train until the minutes are spent
    return RecoveryConfig.from_dict({**base, **changes})


def cmd_recover(args) -> dict:
    from analysis.core.recipe import Recipe
    from analysis.io.models import load_model
    from analysis.recovery.checkpoint import read_card
    from analysis.recovery.config import RecoveryConfig
    from analysis.recovery.loop import recover

    if args.resume:
        card = read_card(args.resume)
        recipe = Recipe.from_dict(card["recipe"])
        config = RecoveryConfig.from_dict(card["config"])
        model = card["teacher_source"] if card["teacher"] not in ("demo", "demo-sst2") else card["teacher"]
        out = args.out or args.resume
    else:
        recipe, config, model, out = recipe_from_args(args), config_from_args(args), args.model, args.out
    loaded = load_model(model, device="cpu", trust_remote_code=args.trust_remote_code, allow_pickle=args.allow_pickle)
    return recover(loaded, recipe, config, out_dir=out, overwrite=args.overwrite, resume=args.resume)
