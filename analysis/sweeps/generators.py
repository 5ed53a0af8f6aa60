"""Recipe generators: each turns one generator entry of a sweep into Recipes for one model.

They run where the Evaluator lives (in-process, or inside the Ray actor holding it), because
some need it: the importance order of a pruning curve is computed on that model and data.
"""

from __future__ import annotations

from analysis.core.recipe import Recipe
from analysis.errors import HeadroomError
from analysis.methods.context import EvalContext


def _check(g: dict, allowed: set[str]) -> None:
    extra = sorted(set(g) - allowed - {"kind"})
    if extra:
        raise HeadroomError(f"Unknown field(s) {', '.join(extra)} for a '{g['kind']}' generator.")


def head_ablations(ctx: EvalContext, g: dict) -> list[Recipe]:
    """Every head masked alone (Michel et al.'s ablation): L x H recipes."""
    _check(g, set())
    a = ctx.adapter
    return [Recipe(masked_heads=[(l, h)], name=f"ablate L{l} H{h}")
            for l in range(a.num_layers) for h in range(a.heads_in_layer(l))]


def prune_curve(ctx: EvalContext, g: dict) -> list[Recipe]:
    """Heads masked cumulatively in importance (or random / reverse) order, at each fraction."""
    from analysis.methods.heads import fraction_steps
    from analysis.methods.importance import compute_importance
    from analysis.methods.selection import all_heads, random_order

    _check(g, {"order", "step", "seeds", "method"})
    order, step, seeds = g.get("order", "importance"), float(g.get("step", 0.1)), int(g.get("seeds", 1))
    if order not in ("importance", "reverse", "random"):
        raise HeadroomError(f"prune-curve order must be importance, reverse or random (got {order!r}).")
    if not 0 < step <= 1:
        raise HeadroomError(f"prune-curve step must be in (0, 1] (got {step}).")
    heads = all_heads(ctx.adapter.num_layers, ctx.adapter.num_heads)
    if order == "random":
        orders = {f"random seed {s}": random_order(heads, s) for s in range(seeds)}
    else:
        ranked = compute_importance(ctx, g.get("method", "michel"), normalize_layer=True).pruning_order()
        orders = {order: ranked if order == "importance" else ranked[::-1]}
    recipes = []
    for label, ranking in orders.items():
        for fraction in fraction_steps(step):
            k = round(fraction * len(ranking))
            if 0 < k < len(ranking):
                recipes.append(Recipe(masked_heads=ranking[:k], name=f"{k} heads masked ({label})"))
    return recipes


def layer_strategies(ctx: EvalContext, g: dict) -> list[Recipe]:
    """Sajjad et al.'s strategies x k layers dropped."""
    from analysis.methods.layers import SWEEP_STRATEGIES, dropped_layers_for, layer_contributions, max_k

    _check(g, {"strategies", "k"})
    L = ctx.adapter.num_layers
    strategies = g.get("strategies") or [s for s in SWEEP_STRATEGIES]
    contribution = layer_contributions(ctx) if "contribution" in strategies else None
    recipes = []
    for strategy in strategies:
        if strategy not in SWEEP_STRATEGIES:
            raise HeadroomError(f"Unknown layer strategy '{strategy}'; choose from {', '.join(SWEEP_STRATEGIES)}.")
        for k in g.get("k") or range(1, max_k(strategy, L) + 1):
            if not isinstance(k, int) or not 1 <= k <= max_k(strategy, L):
                continue  # this strategy cannot drop k layers of this model
            layers = dropped_layers_for(strategy, k, L, contribution=contribution)
            recipes.append(Recipe(dropped_layers=layers, name=f"{strategy}, {k} dropped"))
    return recipes


def bit_grid(ctx: EvalContext, g: dict) -> list[Recipe]:
    """Uniform weight bits x granularity (x embedding bits)."""
    _check(g, {"bits", "granularity", "embedding_bits"})
    recipes = []
    for bits in g.get("bits", [8, 4]):
        for granularity in g.get("granularity", ["per-channel"]):
            for emb in g.get("embedding_bits", [32]):
                recipes.append(Recipe(weight_bits=bits, granularity=granularity, embedding_bits=emb,
                                      name=f"{bits}-bit {granularity}" + (f", {emb}-bit embeddings" if emb != 32 else "")))
    return recipes


def explicit(ctx: EvalContext, g: dict) -> list[Recipe]:
    _check(g, {"recipes"})
    items = g.get("recipes")
    if not isinstance(items, list) or not items:
        raise HeadroomError("A 'recipes' generator needs `recipes`: a list of recipe objects.")
    return [Recipe.from_dict(r) for r in items]


GENERATORS = {"recipes": explicit, "head-ablations": head_ablations, "prune-curve": prune_curve,
              "layer-strategies": layer_strategies, "bit-grid": bit_grid}


def expand(ctx: EvalContext, generators: list[dict]) -> list[Recipe]:
    """All recipes of a sweep for one (model, data), each once (by Recipe.key()), validated."""
    seen, out = set(), []
    for g in generators:
        for recipe in GENERATORS[g["kind"]](ctx, g):
            ctx.adapter.validate(recipe)
            if recipe.key() not in seen:
                seen.add(recipe.key())
                out.append(recipe)
    return out
