"""The search space of `headroom search`: what a trial may choose, and the Recipe it stands for.

Declared once, in `SearchSpace` (a dataclass, one documented field per dimension), so a later
method (the weight-pruning issue's sparsity, say) adds a field here, a line in `suggest` and a
line in `recipe_from_params`, and nothing else changes. A trial's parameters are plain values
(`head_fraction`, `layer_strategy`, `dropped_layers`, `bits_0`..`bits_{L-1}`, `granularity`,
`embedding_bits`), so a stored Optuna trial can be turned back into its Recipe without Optuna.

Heads are pruned in importance order (`HeadImportance.pruning_order()`, computed once on the
unmodified model): a fraction f of the heads of the kept layers, least important first. Layers
are dropped by one of Sajjad et al.'s strategies (`methods/layers.py`) with k layers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from analysis.core.recipe import GRANULARITIES, SUPPORTED_BITS, Recipe
from analysis.errors import HeadroomError
from analysis.methods.layers import STRATEGIES, dropped_layers_for, max_k

#: strategies a search may use by default (custom needs a user's set; contribution a measurement)
DEFAULT_STRATEGIES = ("top", "bottom", "alternate-odd", "alternate-even", "symmetric")


@dataclass
class SearchSpace:
    """Every dimension `headroom search` explores (a trial picks one value of each)."""

    max_head_fraction: float = field(default=0.5, metadata={
        "help": "largest fraction of the kept layers' heads pruned (least important first, Michel et al.)"})
    head_fraction_step: float = field(default=0.05, metadata={
        "help": "the fraction moves in steps of this size (0, step, 2*step, ... max_head_fraction)"})
    layer_strategies: tuple[str, ...] = field(default=DEFAULT_STRATEGIES, metadata={
        "help": "Sajjad et al. strategies that choose which layers to drop"})
    max_dropped_layers: int | None = field(default=None, metadata={
        "help": "most layers dropped (None: half the layers, rounded down)"})
    bit_choices: tuple[int, ...] = field(default=(32, 8, 4), metadata={
        "help": "weight bits each encoder layer may take, chosen per layer"})
    granularities: tuple[str, ...] = field(default=("per-channel", "per-tensor"), metadata={
        "help": "quantisation ranges the bits are applied with (one for the whole recipe)"})
    embedding_bits: tuple[int, ...] = field(default=(32,), metadata={
        "help": "bits of the word-embedding matrix (32 only by default: the search is over the encoder)"})

    def __post_init__(self):
        self.layer_strategies = tuple(self.layer_strategies)
        self.bit_choices = tuple(int(b) for b in self.bit_choices)
        self.granularities = tuple(self.granularities)
        self.embedding_bits = tuple(int(b) for b in self.embedding_bits)
        if not 0.0 <= self.max_head_fraction < 1.0:
            raise HeadroomError("max_head_fraction must be at least 0 and below 1 (pruning every head leaves no attention).")
        if not 0.0 < self.head_fraction_step <= 1.0:
            raise HeadroomError("head_fraction_step must be above 0 and at most 1.")
        for s in self.layer_strategies:
            if s not in STRATEGIES or s in ("custom", "contribution"):
                raise HeadroomError(f"The search cannot use layer strategy '{s}'; choose from {', '.join(DEFAULT_STRATEGIES)}.")
        if not self.layer_strategies:
            raise HeadroomError("The search needs at least one layer strategy.")
        for b in self.bit_choices + self.embedding_bits:
            if b not in SUPPORTED_BITS:
                raise HeadroomError(f"{b}-bit weights are not supported; choose from {', '.join(map(str, SUPPORTED_BITS))}.")
        for g in self.granularities:
            if g not in GRANULARITIES:
                raise HeadroomError(f"Unknown granularity '{g}'; choose from {', '.join(GRANULARITIES)}.")
        if not self.bit_choices or not self.granularities or not self.embedding_bits:
            raise HeadroomError("The search space needs at least one bit-width, granularity and embedding bit-width.")

    def most_dropped(self, num_layers: int) -> int:
        k = num_layers // 2 if self.max_dropped_layers is None else self.max_dropped_layers
        return max(0, min(k, num_layers - 1))

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "SearchSpace":
        return cls(**d)


def head_fractions(space: SearchSpace) -> list[float]:
    """The fractions a trial may choose: 0, step, ..., up to max_head_fraction (rounded to the step)."""
    n = int(math.floor(space.max_head_fraction / space.head_fraction_step + 1e-9))
    return [round(i * space.head_fraction_step, 6) for i in range(n + 1)]


def suggest(trial, space: SearchSpace, num_layers: int) -> dict:
    """Ask an Optuna trial for one value of every dimension; returns the trial's params."""
    fractions = head_fractions(space)
    if len(fractions) > 1:
        trial.suggest_categorical("head_fraction", fractions)
    trial.suggest_categorical("layer_strategy", list(space.layer_strategies))
    trial.suggest_int("dropped_layers", 0, space.most_dropped(num_layers))
    for i in range(num_layers):
        trial.suggest_categorical(f"bits_{i}", list(space.bit_choices))
    trial.suggest_categorical("granularity", list(space.granularities))
    trial.suggest_categorical("embedding_bits", list(space.embedding_bits))
    return dict(trial.params)


def recipe_from_params(params: dict, space: SearchSpace, pruning_order: list[tuple[int, int]],
                       num_layers: int, num_heads: int) -> Recipe:
    """The Recipe a trial's params stand for (valid for a num_layers x num_heads model)."""
    L = num_layers
    strategy = params.get("layer_strategy", space.layer_strategies[0])
    k = min(int(params.get("dropped_layers", 0)), max_k(strategy, L), space.most_dropped(L))
    dropped = dropped_layers_for(strategy, k, L) if k > 0 else []
    # heads are pruned among the kept layers only: a dropped layer's heads are gone already
    gone = set(dropped)
    order = [(l, h) for l, h in pruning_order if l not in gone]
    fraction = float(params.get("head_fraction", 0.0))
    n_masked = int(round(fraction * (L - len(dropped)) * num_heads))
    masked = order[:min(n_masked, len(order))]
    bits = [int(params.get(f"bits_{i}", 32)) for i in range(L)]
    # the bits of a dropped layer do not matter; 32 keeps the recipe's identity canonical
    bits = [32 if i in gone else b for i, b in enumerate(bits)]
    quantized = any(b != 32 for b in bits) or int(params.get("embedding_bits", 32)) != 32
    return Recipe(
        masked_heads=masked,
        dropped_layers=dropped,
        weight_bits=bits[0] if len(set(bits)) == 1 else bits,
        embedding_bits=int(params.get("embedding_bits", 32)),
        granularity=params.get("granularity", space.granularities[0]) if quantized else "per-tensor",
        name=describe_params(fraction, strategy, k, bits),
    ).validate(L, num_heads)


def describe_params(fraction: float, strategy: str, k: int, bits: list[int]) -> str:
    parts = []
    if fraction:
        parts.append(f"{fraction:.0%} heads")
    if k:
        parts.append(f"drop {k} ({strategy})")
    if any(b != 32 for b in bits):
        parts.append("bits " + "/".join(map(str, bits)))
    return "search: " + (", ".join(parts) or "baseline")


def baseline_params(space: SearchSpace, num_layers: int) -> dict:
    """The params of the unmodified model (enqueued as a study's first trial)."""
    params = {"layer_strategy": space.layer_strategies[0], "dropped_layers": 0,
              "granularity": space.granularities[0], "embedding_bits": max(space.embedding_bits)}
    if len(head_fractions(space)) > 1:
        params["head_fraction"] = 0.0
    params.update({f"bits_{i}": max(space.bit_choices) for i in range(num_layers)})
    return params
