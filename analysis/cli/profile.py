"""Profile command: where parameters, FLOPs and measured time go, per component (analysis/measure/profile*.py)."""

from __future__ import annotations

import torch

from analysis.errors import HeadroomError
from analysis.core.recipe import parse_int_list
from .arguments import MAX_LENGTH, count
from .common import add_model_args, add_recipe_args, load_model_from_args, recipe_from_args


def register(sub) -> None:
    p = sub.add_parser("profile", help="parameters, bytes, FLOPs and measured time per component (and a sweep)")
    add_model_args(p)
    add_recipe_args(p)
    p.add_argument("--batch", type=count(1), default=32, help="batch size of the timed forward (default 32)")
    p.add_argument("--seq-len", type=MAX_LENGTH, default=128, help="tokens per example of the timed forward (default 128)")
    p.add_argument("--repeats", type=count(1), default=5, help="timed runs; every time is their median (default 5)")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--threads", type=count(1), default=None, help="CPU threads (default: torch's default)")
    p.add_argument("--no-materialized", action="store_true", help="skip timing the materialized model")
    p.add_argument("--per-layer", action="store_true", help="also list every (component, layer) row")
    p.add_argument("--sweep", action="store_true", help="also sweep the sequence length (measured ms vs FLOPs)")
    p.add_argument("--sweep-seq-lens", default="16,32,64,128,256,512")
    p.add_argument("--sweep-batch", type=count(1), default=None, help="batch size of the sweep (default: --batch)")
    p.add_argument("--json", action="store_true", help="JSON on stdout (the default; kept for scripts)")
    p.set_defaults(func=cmd_profile)


def cmd_profile(args) -> dict:
    from analysis.measure.observations import course_observations
    from analysis.measure.profile import profile_model
    from analysis.measure.profile_sweeps import sweep_seq_len

    if args.threads is not None:
        if args.threads < 1:
            raise HeadroomError("--threads must be a positive number.")
        torch.set_num_threads(args.threads)
    recipe = recipe_from_args(args)
    loaded = load_model_from_args(args)
    report = profile_model(loaded, recipe, args.batch, args.seq_len, loaded.device, args.repeats,
                           dtype=args.dtype, materialized=not args.no_materialized)
    out = report.to_dict()
    if not args.per_layer:
        out.pop("rows")
        if "materialized" in out:
            out["materialized"].pop("rows")
    out["observations"] = course_observations(report)
    if args.sweep:
        df = sweep_seq_len(loaded, recipe, parse_int_list(args.sweep_seq_lens, "sequence lengths"), args.sweep_batch or args.batch,
                           loaded.device, max(1, min(args.repeats, 3)), dtype=args.dtype)
        out["sweep_seq_len"] = {"batch_size": args.sweep_batch or args.batch,
                                "skipped_seq_lens": df.attrs.get("skipped_seq_lens", []),
                                "rows": df.round(6).to_dict(orient="records")}
    return out
