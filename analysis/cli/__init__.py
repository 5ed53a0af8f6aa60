"""Headroom's command line: `python -m analysis COMMAND ...`, JSON on stdout.

Each command group lives in its own module (core, heads, layers, quantization, profile) and
registers its sub-commands with `register(subparsers)`. Errors a user can cause print one
sentence on stderr and exit with status 2; nothing prints a traceback unless HEADROOM_DEBUG=1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback

import numpy as np

from ..errors import HeadroomError

GROUPS = ("core", "heads", "layers", "quantization", "profile")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: one sentence, status 2
        print(f"error: {message} (see python -m analysis {self.prog.split()[-1]} --help)", file=sys.stderr)
        sys.exit(2)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def emit(result: dict) -> None:
    json.dump(result, sys.stdout, indent=2, default=_json_default)
    sys.stdout.write("\n")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = _Parser(prog="python -m analysis", description="Headroom: BERT compression lab (JSON on stdout).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for group in GROUPS:
        importlib.import_module(f"{__name__}.{group}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv[:1] == ["train"]:  # training has its own argument parser (analysis/train.py)
            from .. import train

            return train.main(argv[1:])
        args = build_parser().parse_args(argv)
        result = args.func(args)
    except HeadroomError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted.", file=sys.stderr)
        return 130
    except Exception as e:  # a bug of ours: say so in one line, traceback only on request
        if os.environ.get("HEADROOM_DEBUG") == "1":
            traceback.print_exc()
        print(f"internal error: {type(e).__name__}: {e} (set HEADROOM_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1
    if result is not None:
        emit(result)
    return 0
