"""`sweep SPEC`: models x datasets x recipe generators, locally or on Ray, into the results store."""

from __future__ import annotations

import sys

from .arguments import count
from .runs import add_store_args


def register(sub) -> None:
    p = sub.add_parser("sweep", help="evaluate models x datasets x recipe generators (YAML/JSON spec) into the store")
    p.add_argument("spec", help="a sweep spec (.yaml / .json); see analysis/sweeps/spec.py")
    p.add_argument("--engine", default="local", choices=["local", "ray"], help="where evaluations run (default local)")
    p.add_argument("--address", default=None, help="an existing Ray cluster (e.g. ray://head:10001 or auto); "
                                                   "default: start a local Ray")
    p.add_argument("--num-cpus", type=count(1), default=None, help="CPUs of the local Ray (default: all)")
    add_store_args(p)
    p.set_defaults(func=cmd_sweep)


def cmd_sweep(args) -> dict:
    from analysis.store.store import ResultStore
    from analysis.sweeps.engines import run_sweep
    from analysis.sweeps.spec import SweepSpec

    spec = SweepSpec.load(args.spec)
    store = ResultStore(args.store)

    def progress(fraction, message):
        print(f"[{fraction:6.1%}] {message}", file=sys.stderr, flush=True)

    result = run_sweep(spec, store, engine=args.engine, address=args.address, num_cpus=args.num_cpus,
                       progress=progress)
    out = result.to_dict()
    out["store"] = str(store.path)
    out["spec"] = spec.name
    return out
