"""`search`: multi-objective search for the best recipes under a budget (Optuna; see analysis/search/)."""

from __future__ import annotations

import os

from .arguments import count, number
from .common import add_data_args, add_model_args, evaluator_from_args, load_model_from_args
from .runs import add_store_args


def register(sub) -> None:
    from analysis.search.study import SAMPLERS

    p = sub.add_parser("search", help="search heads pruned, layers dropped and per-layer bits for the Pareto front of "
                                      "metric vs size or latency (simulated metric; predicted, then measured latency)")
    add_model_args(p)
    add_data_args(p)
    p.add_argument("--objectives", default="accuracy,size",
                   help="the metric and a cost: accuracy,size (MB) or accuracy,latency (predicted ms) (default accuracy,size)")
    p.add_argument("--target", default=None,
                   help='limits, e.g. "speedup>=2,drop<=1,size<=40" (drop in metric points; speedup predicted during '
                        "the search): Optuna constraints and a filter on the front")
    p.add_argument("--trials", type=count(1), default=40,
                   help="finished trials the study should hold; a resumed --study runs the missing ones (default 40)")
    p.add_argument("--sampler", default="nsga2", choices=SAMPLERS, help="NSGA-II (default) or multi-objective TPE")
    p.add_argument("--population", type=count(2), default=10, help="NSGA-II trials per generation (default 10)")
    p.add_argument("--search-seed", type=count(0), default=0, help="seed of the sampler (default 0; --seed is the data subset's)")
    p.add_argument("--study", default=None, help="study name, to resume it (default: MODEL-DATA-N-COST)")
    p.add_argument("--max-head-fraction", type=number(0, 1, below=True), default=None, help="largest fraction of heads pruned (default 0.5)")
    p.add_argument("--bits", default=None, help="weight bits a layer may take, e.g. 32,8,4 (the default)")
    p.add_argument("--repeats", type=count(1), default=5, help="timed runs per model when measuring (default 5)")
    p.add_argument("--report-split", default=None,
                   help="the evaluation split the front is scored on once, after the search (default: the "
                        "model's evaluation split, e.g. test; 'none' to skip); recipes are chosen on --split, "
                        "which for bundled data defaults to train, so no evaluation example chooses a recipe")
    p.add_argument("--report-limit", type=count(0), default=None,
                   help="examples of the report split (stratified; default: --limit; 0 = all)")
    add_store_args(p)
    p.add_argument("--no-store", action="store_true", help="do not write the trials' evaluations as rows "
                   "(the study is still kept in the store's file)")
    p.set_defaults(func=cmd_search)


def cmd_search(args) -> dict:
    from analysis.core.recipe import parse_int_list
    from analysis.errors import HeadroomError
    from analysis.io.datasets import load_dataset
    from analysis.search.objectives import Target, parse_objectives
    from analysis.search.run import search
    from analysis.search.space import SearchSpace
    from analysis.search.study import StudyConfig
    from analysis.store.store import ResultStore

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # stdout is the JSON; no per-trial log lines
    cost = parse_objectives(args.objectives)
    target = Target.parse(args.target)
    space_args = {}
    if args.max_head_fraction is not None:
        space_args["max_head_fraction"] = args.max_head_fraction
    if args.bits:
        space_args["bit_choices"] = tuple(parse_int_list(args.bits, "bit-widths"))
    space = SearchSpace(**space_args)
    store = ResultStore(args.store)  # opened first: a bad --store fails before the model loads
    loaded = load_model_from_args(args)
    data = args.data or loaded.default_data
    bundled = data is not None and not os.path.isfile(data) and not os.path.isdir(data)
    from analysis.io.datasets import report_split as split_reported

    report_split = args.report_split or (split_reported(loaded, args.data) if data else None)
    if args.split is None and bundled:
        args.split = "train"  # recipes are chosen on training examples, never on the evaluation split
    if not bundled or report_split in (None, args.split) or report_split.lower() == "none":
        report_split = None  # a user's file has no splits; nothing to score apart from the search data
    ev = evaluator_from_args(args, loaded)
    if ev.baseline.metric is None:
        raise HeadroomError("The search needs labelled data (the metric is one objective).")
    report = None
    if report_split:
        from analysis.measure.evaluate import Evaluator

        limit = args.limit if args.report_limit is None else (args.report_limit or None)
        report = Evaluator(loaded, load_dataset(data, report_split, limit=limit, seed=args.seed),
                           max_length=args.max_length, batch_size=args.batch_size, dtype=args.dtype)
    config = StudyConfig(cost=cost, trials=args.trials, sampler=args.sampler, seed=args.search_seed,
                         population_size=args.population, target=target, space=space)
    return search(ev, config, store=None if args.no_store else store, storage_path=store.path,
                  study_name=args.study, repeats=args.repeats, score_on=report)
