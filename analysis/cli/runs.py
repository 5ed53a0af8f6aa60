"""`runs`: the results store — list, show, export (CSV / Parquet) and delete evaluations."""

from __future__ import annotations

from .arguments import count


def add_store_args(p) -> None:
    p.add_argument("--store", default=None,
                   help="results store file (default: $HEADROOM_STORE or ~/.local/share/headroom/results.sqlite)")


def register(sub) -> None:
    p = sub.add_parser("runs", help="the results store: list | show ID | export --out FILE | rm ID...")
    verbs = p.add_subparsers(dest="verb", required=True, parser_class=type(p))
    lst = verbs.add_parser("list", help="evaluations, newest first")
    add_store_args(lst)
    lst.add_argument("--model", default=None, help="a model name or fingerprint")
    lst.add_argument("--data", default=None, help="a data name (e.g. banking77:test) or fingerprint")
    lst.add_argument("--source", default=None, help="cli, dashboard, benchmark, sweep, search or recovery")
    lst.add_argument("--limit", type=count(1), default=50)
    lst.set_defaults(func=cmd_list)
    show = verbs.add_parser("show", help="one evaluation in full")
    add_store_args(show)
    show.add_argument("id", type=count(1))
    show.set_defaults(func=cmd_show)
    export = verbs.add_parser("export", help="every (filtered) row to a CSV or Parquet file")
    add_store_args(export)
    export.add_argument("--out", required=True, help="a new .csv or .parquet file")
    export.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    export.add_argument("--model", default=None)
    export.add_argument("--data", default=None)
    export.set_defaults(func=cmd_export)
    rm = verbs.add_parser("rm", help="delete evaluations by id")
    add_store_args(rm)
    rm.add_argument("ids", type=count(1), nargs="+")
    rm.set_defaults(func=cmd_rm)


def _store(args):
    from analysis.store.store import ResultStore

    return ResultStore(args.store)


def cmd_list(args) -> dict:
    store = _store(args)
    rows = store.list(model=args.model, data=args.data, source=args.source, limit=args.limit)
    return {"store": str(store.path), "total": store.count(), "runs": rows}


def cmd_show(args) -> dict:
    from dataclasses import asdict

    record = _store(args).get(args.id)
    out = asdict(record)
    out["predictions"] = None if record.predictions is None else f"{len(record.predictions)} kept"
    return out


def cmd_export(args) -> dict:
    from analysis.errors import HeadroomError
    from analysis.io.outputs import atomic_file, check_output_file

    fmt = "parquet" if args.out.endswith(".parquet") else "csv" if args.out.endswith(".csv") else None
    if fmt is None:
        raise HeadroomError(f"'{args.out}' must end in .csv or .parquet.")
    store = _store(args)
    target = check_output_file(args.out, inputs=[str(store.path)], overwrite=args.overwrite, what="export file")
    table = store.table(model=args.model, data=args.data)
    with atomic_file(target, "wb") as f:
        if fmt == "csv":
            f.write(table.to_csv(index=False).encode("utf-8"))
        else:
            table.to_parquet(f, index=False)
    return {"store": str(store.path), "out": str(target), "format": fmt, "rows": len(table)}


def cmd_rm(args) -> dict:
    store = _store(args)
    known = {r["id"] for r in store.list()}
    missing = [i for i in args.ids if i not in known]
    deleted = store.delete(args.ids)
    return {"store": str(store.path), "deleted": deleted, "not_found": missing}
