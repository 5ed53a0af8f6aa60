"""Recipe commands: `presets` (the named recipes from papers) and `pareto` (the front of results).

    python -m analysis presets --model demo [--name q-bert] [--method michel]
    python -m analysis evaluate ... > a.json; ...; jq -s . a.json b.json > all.json
    python -m analysis pareto --results all.json [--cost size.mb | latency.front_ratio]
    python -m analysis pareto --model demo --presets [--recipes r1.json,r2.json] [--cost latency]
"""

from __future__ import annotations

import json
import sys
import time

from analysis.errors import HeadroomError
from .common import add_data_args, add_model_args, evaluator_from_args, load_model_from_args

COSTS = {"size": "size.mb", "latency": "latency.front_ratio"}  # short names; latency: time x baseline, interleaved (1.0 within noise)


def register(sub) -> None:
    p = sub.add_parser("presets", help="the named recipes from papers (Sixteen Heads, Poor Man's BERT, Q-BERT, "
                                       "8-bit) as JSON, built for a model")
    add_model_args(p)
    add_data_args(p)
    p.add_argument("--name", action="append", default=None,
                   help="only this preset, by id (sixteen-heads, poor-mans-bert, q-bert, 8-bit) or full name "
                        "(repeatable; default: all of them)")
    p.add_argument("--method", default="michel", help="importance method for presets that rank heads (default michel)")
    p.add_argument("--no-importance", action="store_true",
                   help="do not compute importance: presets that need it are listed without a recipe")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("pareto", help="the Pareto front (max metric, min cost) of evaluated recipes: a JSON list "
                                      "of `evaluate` results, or the presets evaluated on a model")
    add_model_args(p)
    add_data_args(p)
    p.add_argument("--results", default=None, help="a JSON file holding a list of result objects ('-' = stdin)")
    p.add_argument("--presets", action="store_true", help="evaluate the baseline and every preset on --model")
    p.add_argument("--recipes", default=None, help="with --model: recipe JSON files to evaluate too, comma-separated")
    p.add_argument("--method", default="michel", help="with --presets: importance method for Sixteen Heads")
    p.add_argument("--metric", default="metric", help="dotted field to maximise (default: metric)")
    p.add_argument("--cost", default="size",
                   help="dotted field to minimise, or size (= size.mb) / latency (= latency.front_ratio, the time ratio to the baseline timed interleaved, 1.0 within noise); "
                        "default size")
    p.set_defaults(func=cmd_pareto)


def _importance(args, ev):
    from analysis.methods.importance import METHODS, compute_importance

    if args.method not in METHODS:
        raise HeadroomError(f"Unknown importance method '{args.method}'; choose from {', '.join(METHODS)}.")
    return compute_importance(ev, args.method)


def cmd_presets(args) -> dict:
    from analysis.methods.presets import PRESETS, get_preset

    presets = [get_preset(n) for n in args.name] if args.name else list(PRESETS.values())
    t0 = time.perf_counter()
    loaded = load_model_from_args(args)
    importance = None
    if any(p.needs_importance for p in presets) and not args.no_importance:
        ev = evaluator_from_args(args, loaded)
        importance = _importance(args, ev)
    out = {"model": loaded.name, "num_layers": loaded.adapter.num_layers, "num_heads": loaded.adapter.num_heads,
           "presets": []}
    for p in presets:
        entry = p.to_dict()
        if p.needs_importance and importance is None:
            entry["recipe"] = None
            entry["skipped"] = "needs head importance (run without --no-importance)"
        else:
            entry["recipe"] = p.build(loaded.adapter.num_layers, importance).to_dict()
        out["presets"].append(entry)
    if importance is not None:
        out["importance"] = {"method": importance.method, "data": ev.dataset.name,
                             "num_examples": importance.num_examples, "seconds": round(importance.seconds, 3)}
    out["seconds"] = round(time.perf_counter() - t0, 3)
    return out


def _read_results(path: str) -> list[dict]:
    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    except FileNotFoundError:
        raise HeadroomError(f"Results file '{path}' does not exist.") from None
    except (UnicodeDecodeError, IsADirectoryError):
        raise HeadroomError(f"Results file '{path}' is not a UTF-8 JSON text file.") from None
    try:
        results = json.loads(text)
    except json.JSONDecodeError as e:
        raise HeadroomError(f"The results are not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}).") from None
    if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        raise HeadroomError("The results must be a JSON list of objects (e.g. `evaluate` outputs).")
    return results


def _evaluate_recipes(args) -> tuple[list[dict], list[dict]]:
    """(results, presets skipped because they do not fit this model, each with its sentence)."""
    from analysis.core.recipe import Recipe
    from analysis.methods.presets import PRESETS

    ev = evaluator_from_args(args)
    recipes = [Recipe(name="baseline")]
    if args.presets:
        importance = None
        if any(p.needs_importance for p in PRESETS.values()):
            importance = _importance(args, ev)
    skipped = []
    if args.presets:
        for p in PRESETS.values():
            recipe = p.build(ev.adapter.num_layers, importance)
            try:
                ev.adapter.validate(recipe)  # e.g. Q-BERT's 12 FFN row groups on a model whose rows 12 does not divide
            except HeadroomError as e:
                skipped.append({"preset": p.name, "reason": str(e)})
                continue
            recipes.append(recipe)
    recipes += [Recipe.load(path.strip()) for path in (args.recipes or "").split(",") if path.strip()]
    latency = args.cost.startswith("latency")
    results = []
    for recipe in recipes:
        ev.adapter.validate(recipe)
        results.append(ev.evaluate(recipe, latency=latency).to_dict())
    return results, skipped


def _key(entry: dict):
    from analysis.core.recipe import Recipe

    recipe = entry.get("recipe")
    if isinstance(recipe, dict):
        try:
            return Recipe.from_dict(recipe).key()
        except HeadroomError:
            pass
    return json.dumps(recipe, sort_keys=True) if recipe is not None else id(entry)


def cmd_pareto(args) -> dict:
    from analysis.measure.pareto import lookup, pareto_front

    if (args.results is None) == (not args.presets and not args.recipes):
        raise HeadroomError("Give either --results FILE or recipes to evaluate (--presets and/or --recipes).")
    results, skipped = (_read_results(args.results), []) if args.results else _evaluate_recipes(args)
    cost = COSTS.get(args.cost, args.cost)
    metric = [lookup(r, args.metric) for r in results]
    costs = [lookup(r, cost) for r in results]
    if not any(isinstance(m, (int, float)) for m in metric) or not any(isinstance(c, (int, float)) for c in costs):
        raise HeadroomError(f"No result has both a numeric '{args.metric}' and a numeric '{cost}'.")
    try:
        front = pareto_front(metric, costs, keys=[_key(r) for r in results])
    except (TypeError, ValueError):
        raise HeadroomError(f"'{args.metric}' and '{cost}' must be numbers in every result that has them.") from None
    return {
        "what": f"Pareto front: maximise {args.metric}, minimise {cost}; identical recipes counted once, "
                "ties both kept, results without both fields left out; cheapest first",
        "metric": args.metric, "cost": cost, "num_results": len(results), "skipped": skipped,
        "front": [{"index": i, "name": _name(results[i]), args.metric: metric[i], cost: costs[i],
                   "recipe": results[i].get("recipe")} for i in front],
    }


def _name(entry: dict) -> str:
    recipe = entry.get("recipe")
    name = recipe.get("name") if isinstance(recipe, dict) else None
    return name or entry.get("description") or entry.get("name") or ""
