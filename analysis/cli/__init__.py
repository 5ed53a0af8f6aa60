"""Headroom's command line: `python -m analysis COMMAND ...`, JSON on stdout.

Each command group lives in its own module (core, heads, layers, quantization, profile, recipes) and
registers its sub-commands with `register(subparsers)`. Errors a user can cause print one
sentence on stderr and exit with status 2; nothing prints a traceback unless HEADROOM_DEBUG=1.
Inputs that are suspicious but usable (some empty texts, labels matched by order) are scored and
listed in the JSON's "warnings" (and on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback

import numpy as np

from analysis.errors import HeadroomError

GROUPS = ("core", "export", "train", "recover", "heads", "layers", "quantization", "profile", "recipes", "runs",
          "sweep", "search")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: one sentence, status 2
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def emit(result: dict) -> None:
    # Serialise first, so a value JSON cannot hold fails before anything is printed; NaN and
    # infinities are refused (allow_nan=False): `--json` never prints text a JSON parser rejects.
    try:
        text = json.dumps(result, indent=2, default=_json_default, allow_nan=False)
    except ValueError:
        raise HeadroomError("The result holds a value JSON cannot represent (NaN or infinity); "
                            "check the inputs that produced it.") from None
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def build_parser() -> argparse.ArgumentParser:
    import importlib

    prog = "headroom" if os.path.basename(sys.argv[0]) == "headroom" else "python -m analysis"
    parser = _Parser(prog=prog, description="Headroom: BERT compression lab (JSON on stdout).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for group in GROUPS:
        importlib.import_module(f"{__name__}.{group}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    import analysis

    analysis.quiet()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as e:  # --help (0) or a bad argument (2, its sentence already printed)
            return int(e.code or 0)
        result = args.func(args)
        warnings = getattr(args, "warnings", None)
        for w in warnings or ():
            print(f"warning: {w}", file=sys.stderr)
        if result is not None:
            emit({**result, "warnings": list(warnings)} if warnings and isinstance(result, dict) else result)
    except BrokenPipeError:  # `headroom ... | head`: the reader left; not an error of the run
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
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
    return 0
