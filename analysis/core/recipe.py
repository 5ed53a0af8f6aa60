"""The Recipe: one plain, JSON-serialisable description of a compressed model.

Every what-if in Headroom — mask heads, drop layers, choose bits per layer — is a `Recipe`. The
dashboard, the CLI, the tests and the benchmarks all speak Recipes; nothing else describes a
compressed model. A Recipe is applied either by `simulate` (gates and fake-quantised weights
inside the forward pass, the loaded model untouched) or by `materialize` (a real, smaller model).

Indices are 0-based: layer 0 is the one nearest the embeddings, head 0 the first head.
A Recipe does not know the model's size; `validate(num_layers, num_heads)` checks it against one.
"""

from __future__ import annotations

import json
import math
import numbers
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields

import numpy as np

from analysis.configs import default_of, from_mapping, parse_json
from analysis.core.adapters import ROLES
from analysis.core.sharing import SHARE_MODES, share_groups, sharing_problem
from analysis.errors import HeadroomError

#: weight bit-widths the quantiser supports (32 = full precision, 16 = fp16-rounded values).
SUPPORTED_BITS = (2, 3, 4, 5, 6, 7, 8, 16, 32)
#: simulated activation bit-widths (32 = not quantised).
ACTIVATION_BITS = (8, 16, 32)
#: how a weight matrix is split into ranges that share one scale (and zero-point).
GRANULARITIES = ("per-tensor", "per-channel", "per-head", "groups")
#: row groups per matrix under granularity "groups" (and for FFN matrices under "per-head").
DEFAULT_NUM_GROUPS = 12
MAX_NUM_GROUPS = 4096
#: how magnitude sparsity picks the weights to zero: each matrix its own smallest |w|, or the smallest of all together
SPARSITY_SCOPES = ("local", "global")
#: which weights magnitude sparsity may zero: any (unstructured), or 2 of every 4 consecutive along the input dimension
#: (NVIDIA's 2:4 semi-structured pattern, which sparse tensor cores run: exactly 50% per chosen matrix)
SPARSITY_PATTERNS = ("unstructured", "2:4")


def _field(default=MISSING, *, help: str, choices: tuple | None = None, default_factory=MISSING):
    """A Recipe field carrying its help text (and allowed values) where it is declared."""
    metadata = {"help": help} if choices is None else {"help": help, "choices": choices}
    return field(default=default, default_factory=default_factory, metadata=metadata)


@dataclass
class Recipe:
    """What to take out of the model and how precisely to keep the rest.

    Every field documents itself: `field_help(name)` (the CLI's --help is built from it).
    """

    masked_heads: list[tuple[int, int]] = _field(
        default_factory=list,
        help="attention heads switched off, as [layer, head] pairs: masked in simulation (a gate of 0 "
             "on the head's output), sliced out of Q/K/V/O when materialized")
    dropped_layers: list[int] = _field(
        default_factory=list,
        help="whole encoder layers removed (Sajjad et al.): each is replaced by the identity")
    weight_bits: int | list[int] = _field(
        32, choices=SUPPORTED_BITS,
        help="weight bits of every encoder layer's linear layers: one int for all, or one per layer")
    embedding_bits: int = _field(
        32, choices=SUPPORTED_BITS,
        help="bits of the word-embedding matrix (position/type embeddings and LayerNorms stay fp32)")
    granularity: str = _field(
        "per-tensor", choices=GRANULARITIES,
        help="how ranges are shared: one per matrix, one per output row, one per attention head's slice "
             "of Q/K/V/O (Q-BERT's group-wise; FFN matrices use num_groups row groups), or num_groups "
             "equal row groups per matrix")
    num_groups: int = _field(
        DEFAULT_NUM_GROUPS,
        help="row groups per matrix for granularity 'groups' (and for FFN matrices under 'per-head'); it must "
             "divide the rows of every quantised encoder matrix (refused otherwise); the word embeddings, whose "
             "vocabulary rarely divides, use the largest divisor of their rows not above it")
    symmetric: bool = _field(
        True, help="symmetric ranges (zero-point 0), or asymmetric (min/max with a zero-point)")
    activation_bits: int = _field(
        32, choices=ACTIVATION_BITS,
        help="simulated activation bits at the input of every encoder linear layer (32 = off)")
    masked_neurons: list[tuple[int, list[int]]] = _field(
        default_factory=list,
        help="FFN intermediate units switched off, as [layer, [unit, ...]] entries (any number per layer, "
             "uneven across layers): sliced out of the intermediate in simulation, W_in rows and W_out columns "
             "(both halves of a gated FFN's W_i) removed when materialized")
    sparsity: float | list[float] = _field(
        0.0,
        help="fraction of weights zeroed by magnitude (unstructured pruning): one value for all encoder layers, "
             "or one per layer; the smallest |w| go, ties broken by position (row-major, earlier first)")
    sparsity_roles: list[str] = _field(
        default_factory=lambda: list(ROLES), choices=ROLES,
        help="which matrices of each layer the sparsity applies to (default: all six)")
    sparsity_scope: str = _field(
        "local", choices=SPARSITY_SCOPES,
        help="local: each matrix loses exactly its fraction; global: one threshold over all chosen matrices of all "
             "kept layers, so the fraction holds overall (one value for all layers)")
    sparsity_pattern: str = _field(
        "unstructured", choices=SPARSITY_PATTERNS,
        help="unstructured: the smallest |w| anywhere in the matrix (or in all of them, global); 2:4: in every group of 4 "
             "consecutive weights along a matrix's input dimension the 2 of smallest |w| (ties by position), NVIDIA's "
             "semi-structured pattern: exactly half of each matrix, so sparsity must be 0.5 (or 0 for a layer left dense), the scope "
             "local, and each chosen matrix's input dimension a multiple of 4")
    ranks: list[tuple[int, str, int]] = _field(
        default_factory=list,
        help="truncated SVD, as [layer, role, rank] entries: that matrix (after its sparsity, bits and head/neuron "
             "slicing) is replaced by its best rank-r approximation; materialized as two Linears (in -> r -> out)")
    embedding_size: int = _field(
        0, help="ALBERT's factorised embeddings: the V x H word-embedding matrix becomes V x E times E x H from its "
                "SVD, E this size (0 = unchanged)")
    shared_layers: list[list[int]] = _field(
        default_factory=list,
        help="cross-layer sharing (ALBERT): groups of layers, e.g. [[0, 1], [2, 3]], each running one set of encoder-layer "
             "weights (Q/K/V/O, both FFN matrices, biases, both LayerNorms); applied first, so the other fields must "
             "treat a group's layers alike; materialized as tied modules (one storage, counted and saved once)")
    share_mode: str = _field(
        "first", choices=SHARE_MODES,
        help="which weights a group runs: its first layer's own copy, or the element-wise mean of the group's layers")
    name: str = _field("", help="a label for plots and tables; not part of the recipe's identity")

    # ------------------------------------------------------------------ construction, JSON
    def __post_init__(self):
        # Every field is checked against its declared type (bools are not ints, 4.9 is not a
        # layer, "no" is not False): a value that would have to be coerced is refused instead.
        for name, hint in _field_types().items():
            setattr(self, name, _conform(getattr(self, name), hint, name))
        self.masked_heads = sorted(set(self.masked_heads))
        self.dropped_layers = sorted(set(self.dropped_layers))
        merged: dict[int, set[int]] = {}
        for layer, units in self.masked_neurons:
            merged.setdefault(layer, set()).update(units)
        self.masked_neurons = [(layer, sorted(units)) for layer, units in sorted(merged.items()) if units]
        self.ranks = sorted({(layer, role): (layer, role, rank) for layer, role, rank in self.ranks}.values(),
                            key=lambda e: (e[0], ROLES.index(e[1]) if e[1] in ROLES else len(ROLES), e[1]))
        groups = [sorted(set(g)) for g in self.shared_layers]
        self.shared_layers = sorted(groups, key=lambda g: (g[0] if g else -1, g))
        self.sparsity_roles = [r for r in ROLES if r in set(self.sparsity_roles)] + \
            sorted(set(self.sparsity_roles) - set(ROLES))  # data-flow order; unknown ones kept for `check_values`

    def to_dict(self) -> dict:
        d = asdict(self)
        d["masked_heads"] = [list(p) for p in self.masked_heads]
        d["masked_neurons"] = [[layer, list(units)] for layer, units in self.masked_neurons]
        d["ranks"] = [list(e) for e in self.ranks]
        d["shared_layers"] = [list(g) for g in self.shared_layers]
        return d

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: dict) -> "Recipe":
        # __post_init__ checks every value against its field's type
        return from_mapping(cls, d, what="recipe", example='{"dropped_layers": [5]}',
                            unknown="Unknown recipe field(s)", known="known fields")

    @classmethod
    def from_json(cls, text: str) -> "Recipe":
        return cls.from_dict(parse_json(text, "recipe"))

    @classmethod
    def load(cls, path: str) -> "Recipe":
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            raise HeadroomError(f"Recipe file '{path}' does not exist.") from None
        except (UnicodeDecodeError, IsADirectoryError):
            raise HeadroomError(f"Recipe file '{path}' is not a UTF-8 JSON text file.") from None
        return cls.from_json(text)

    def key(self) -> str:
        """Canonical identity for caching: everything but the name."""
        d = self.to_dict()
        d.pop("name")
        if d["sparsity_pattern"] == "unstructured":  # the default, added later: the keys stored before it stay valid
            d.pop("sparsity_pattern")
        return json.dumps(d, sort_keys=True, separators=(",", ":"))

    def replace(self, **changes) -> "Recipe":
        d = self.to_dict()
        d.update(changes)
        return Recipe.from_dict(d)

    # ------------------------------------------------------------------ views
    def layer_bits(self, num_layers: int) -> list[int]:
        if isinstance(self.weight_bits, list):
            return list(self.weight_bits)
        return [self.weight_bits] * num_layers

    def head_mask(self, num_layers: int, num_heads: int) -> np.ndarray:
        """(L, H) array, 1.0 = kept, 0.0 = masked. Dropped layers keep their row as is."""
        mask = np.ones((num_layers, num_heads), dtype=np.float32)
        for layer, head in self.masked_heads:
            mask[layer, head] = 0.0
        return mask

    def kept_heads(self, layer: int, num_heads: int) -> list[int]:
        masked = {h for l, h in self.masked_heads if l == layer}
        return [h for h in range(num_heads) if h not in masked]

    def rank_of(self, layer: int, role: str) -> int | None:
        """The rank `layer`'s `role` matrix is cut to, or None (kept whole)."""
        return next((r for l, ro, r in self.ranks if l == layer and ro == role), None)

    def layer_sparsity(self, num_layers: int) -> list[float]:
        if isinstance(self.sparsity, list):
            return list(self.sparsity)
        return [self.sparsity] * num_layers

    def has_sparsity(self) -> bool:
        s = self.sparsity if isinstance(self.sparsity, list) else [self.sparsity]
        return any(x > 0 for x in s) and bool(self.sparsity_roles)

    def masked_neurons_in(self, layer: int) -> list[int]:
        """The FFN units of `layer` this recipe switches off (sorted; [] for none)."""
        return next((units for l, units in self.masked_neurons if l == layer), [])

    def kept_neurons(self, layer: int, intermediate_size: int) -> list[int]:
        """The FFN units of `layer` kept, in order, out of the `intermediate_size` it has."""
        masked = set(self.masked_neurons_in(layer))
        return [j for j in range(intermediate_size) if j not in masked]

    @property
    def num_masked_neurons(self) -> int:
        return sum(len(units) for _, units in self.masked_neurons)

    def is_baseline(self) -> bool:
        return self.key() == Recipe().key()

    def signature(self, num_layers: int) -> tuple:
        """What each stage computes under this recipe: (embeddings, layer 0, ..., layer L-1).

        Two recipes whose signatures agree up to layer k produce the same hidden states entering
        layer k, which is what incremental evaluation relies on (`first_difference`).
        """
        bits = self.layer_bits(num_layers)
        quant = (self.granularity, self.num_groups, self.symmetric, self.activation_bits)
        embedding = (self.embedding_bits, quant if self.embedding_bits != 32 else None, self.embedding_size)
        dropped = set(self.dropped_layers)
        masked = [tuple(h for l, h in self.masked_heads if l == i) for i in range(num_layers)]
        neurons = [tuple(self.masked_neurons_in(i)) for i in range(num_layers)]
        sparsity = self.layer_sparsity(num_layers) if self.has_sparsity() else [0.0] * num_layers
        # a global threshold depends on every layer's weights: then every layer carries the whole setting
        how = (tuple(self.sparsity_roles), self.sparsity_scope, self.sparsity_pattern)
        sparse = [(sparsity[i], how) if sparsity[i] > 0 else None for i in range(min(num_layers, len(sparsity)))]
        sparse += [None] * (num_layers - len(sparse))
        # a shared layer reads its group's weights (under "first", the group's first layer reads its own)
        shared = [None] * num_layers
        for group in share_groups(self):
            for i in group:
                if i < num_layers and not (self.share_mode == "first" and i == group[0]):
                    shared[i] = (tuple(group), self.share_mode)
        layers = tuple(
            ("dropped",) if i in dropped else
            (masked[i], neurons[i], sparse[i], tuple(e for e in self.ranks if e[0] == i), bits[i],
             quant if bits[i] != 32 or self.activation_bits != 32 else None, shared[i])
            for i in range(num_layers)
        )
        return (embedding,) + layers

    @staticmethod
    def first_difference(a: tuple, b: tuple) -> int:
        """The first layer computed differently under two signatures (0 if the embeddings differ)."""
        for stage, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return max(stage - 1, 0)
        return len(a) - 1

    def first_changed_layer(self, num_layers: int) -> int:
        """The first layer whose computation differs from the unmodified model.

        Layers before it produce the baseline's hidden states, so incremental evaluation can start
        there. 0 when the embeddings change; `num_layers` when only the name differs.
        """
        return self.first_difference(self.signature(num_layers), Recipe().signature(num_layers))

    def describe(self) -> str:
        """What the recipe changes, in words a table label can carry: "1 head masked (L0 H3)",
        "14 heads masked (L0: 3, L2: 11)", "layer 5 dropped"; two different recipes read differently
        unless they mask the same number of heads per layer (then `key()` still tells them apart)."""
        parts = []
        if self.masked_heads:
            parts.append(self._describe_heads())
        if self.masked_neurons:
            parts.append(self._describe_neurons())
        if self.dropped_layers:
            many = len(self.dropped_layers) > 1
            parts.append(("layers " if many else "layer ") + ",".join(map(str, self.dropped_layers)) + " dropped")
        bits = self.weight_bits
        if isinstance(bits, list):
            if len(set(bits)) == 1:
                bits = bits[0]
            else:
                parts.append("bits " + "/".join(map(str, bits)) + f" ({self.granularity})")
        if isinstance(bits, int) and bits != 32:
            parts.append(f"{bits}-bit weights ({self.granularity})")
        if self.has_sparsity():
            parts.append(self._describe_sparsity())
        if self.ranks:
            parts.append(self._describe_ranks())
        if share_groups(self):
            parts.append(self._describe_sharing())
        if self.embedding_size:
            parts.append(f"embeddings factorised (E = {self.embedding_size})")
        if self.embedding_bits != 32:
            parts.append(f"{self.embedding_bits}-bit embeddings")
        if self.activation_bits != 32:
            parts.append(f"{self.activation_bits}-bit activations")
        return "; ".join(parts) or "baseline (no change)"

    def _describe_heads(self, max_listed: int = 3, max_layers: int = 6) -> str:
        n = len(self.masked_heads)
        what = f"{n} head{'s' if n != 1 else ''} masked"
        if n <= max_listed:
            return f"{what} ({', '.join(f'L{l} H{h}' for l, h in self.masked_heads)})"
        per_layer: dict[int, int] = {}
        for layer, _ in self.masked_heads:
            per_layer[layer] = per_layer.get(layer, 0) + 1
        if len(per_layer) <= max_layers:
            return f"{what} ({', '.join(f'L{l}: {c}' for l, c in per_layer.items())})"
        return f"{what} in {len(per_layer)} layers"

    def _describe_sharing(self) -> str:
        groups = share_groups(self)
        shown = [f"{g[0]}-{g[-1]}" if g == list(range(g[0], g[-1] + 1)) else "+".join(map(str, g)) for g in groups]
        return f"layers {', '.join(shown)} shared ({self.share_mode})"

    def _describe_sparsity(self) -> str:
        s = self.sparsity
        if isinstance(s, list) and len(set(s)) == 1:
            s = s[0]
        amount = f"{s:.0%} sparse" if not isinstance(s, list) else "sparsity " + "/".join(f"{x:.0%}" for x in s)
        roles = "" if len(self.sparsity_roles) == len(ROLES) else ", " + "+".join(self.sparsity_roles)
        if self.sparsity_pattern == "2:4":
            return f"{amount} (2:4 magnitude{roles})"
        return f"{amount} (magnitude, {self.sparsity_scope}{roles})"

    def _describe_ranks(self, max_listed: int = 3, max_groups: int = 4) -> str:
        """"2 low-rank matrices (L0 query r8, L1 ffn_out r2)"; many: grouped by role and rank,
        "12 low-rank matrices (ffn_in r64 in L0-5, ffn_out r96 in L0-5)", "12 ... (ffn_in+ffn_out r64 in L0-5)"."""
        n = len(self.ranks)
        what = f"{n} low-rank matri{'ces' if n > 1 else 'x'}"
        if n <= max_listed:
            return f"{what} ({', '.join(f'L{l} {ro} r{r}' for l, ro, r in self.ranks)})"
        groups: dict[tuple[str, int], list[int]] = {}
        for layer, role, rank in sorted(self.ranks, key=lambda e: (ROLES.index(e[1]) if e[1] in ROLES else 99, e[2], e[0])):
            groups.setdefault((role, rank), []).append(layer)
        by_layers: dict[tuple, list[str]] = {}  # roles cut to the same rank in the same layers read as one
        for (role, rank), layers in groups.items():
            by_layers.setdefault((rank, tuple(layers)), []).append(role)
        listed = [f"{'+'.join(roles) if len(roles) < len(ROLES) else 'every matrix'} r{rank} in {_layer_ranges(list(layers))}"
                  for (rank, layers), roles in by_layers.items()]
        return f"{what} ({', '.join(listed[:max_groups])}{', ...' if len(listed) > max_groups else ''})"

    def _describe_neurons(self, max_layers: int = 6) -> str:
        n = self.num_masked_neurons
        what = f"{n} FFN neuron{'s' if n != 1 else ''} masked"
        if len(self.masked_neurons) <= max_layers:
            return f"{what} ({', '.join(f'L{l}: {len(u)}' for l, u in self.masked_neurons)})"
        return f"{what} in {len(self.masked_neurons)} layers"

    # ------------------------------------------------------------------ validation
    def validate(self, num_layers: int, num_heads: int) -> "Recipe":
        """Raise HeadroomError with one clear sentence if this recipe cannot apply to the model."""
        for layer, head in self.masked_heads:
            if not 0 <= layer < num_layers or not 0 <= head < num_heads:
                raise HeadroomError(
                    f"Head {layer}:{head} does not exist; the model has {num_layers} layers "
                    f"(0-{num_layers - 1}) x {num_heads} heads (0-{num_heads - 1})."
                )
        for layer, units in self.masked_neurons:
            if not 0 <= layer < num_layers:
                raise HeadroomError(
                    f"FFN neurons of layer {layer} cannot be masked; the model has layers 0-{num_layers - 1}."
                )
            if units[0] < 0:
                raise HeadroomError(f"FFN neuron {layer}:{units[0]} does not exist; units count from 0.")
        for layer in self.dropped_layers:
            if not 0 <= layer < num_layers:
                raise HeadroomError(
                    f"Layer {layer} cannot be dropped; the model has layers 0-{num_layers - 1}."
                )
        if len(self.dropped_layers) >= num_layers:
            raise HeadroomError(
                f"The recipe drops every layer ({num_layers} of {num_layers}); keep at least one."
            )
        bits = self.layer_bits(num_layers)
        if len(bits) != num_layers:
            raise HeadroomError(
                f"weight_bits lists {len(bits)} values but the model has {num_layers} layers."
            )
        for layer, role, rank in self.ranks:
            if not 0 <= layer < num_layers:
                raise HeadroomError(f"Layer {layer} has no matrices to cut to low rank; the model has layers 0-{num_layers - 1}.")
        if len(self.layer_sparsity(num_layers)) != num_layers:
            raise HeadroomError(
                f"sparsity lists {len(self.layer_sparsity(num_layers))} values but the model has {num_layers} layers."
            )
        self._check_sharing(num_layers)
        return self.check_values()

    def _check_sharing(self, num_layers: int) -> None:
        """Groups of shared layers: in range, disjoint, no dropped layer, the other fields alike within a group."""
        grouped: dict[int, int] = {}
        dropped = set(self.dropped_layers)
        for k, group in enumerate(self.shared_layers):
            if not group:
                raise HeadroomError("A group of shared layers is empty; list its layers, e.g. [[0, 1], [2, 3]].")
            for layer in group:
                if not 0 <= layer < num_layers:
                    raise HeadroomError(f"Layer {layer} cannot share weights; the model has layers 0-{num_layers - 1}.")
                if layer in grouped:
                    raise HeadroomError(f"Layer {layer} is in two groups of shared layers; a layer shares one set of "
                                        "weights, so put it in one group.")
                if layer in dropped and len(group) > 1:
                    raise HeadroomError(f"Layer {layer} is dropped and also shares weights; drop it or share it, not both.")
                grouped[layer] = k
        for group in share_groups(self):
            problem = sharing_problem(self, group, num_layers)
            if problem:
                raise HeadroomError(problem)

    def check_values(self) -> "Recipe":
        """The checks that need no model: bits, granularity and num_groups are ones Headroom supports."""
        bits = self.weight_bits if isinstance(self.weight_bits, list) else [self.weight_bits]
        for b in bits + [self.embedding_bits]:
            if b not in SUPPORTED_BITS:
                raise HeadroomError(
                    f"{b}-bit weights are not supported; choose from {', '.join(map(str, SUPPORTED_BITS))}."
                )
        if self.activation_bits not in ACTIVATION_BITS:
            raise HeadroomError("activation_bits must be 8, 16 or 32 (32 = not quantised).")
        if self.granularity not in GRANULARITIES:
            raise HeadroomError(
                f"Unknown granularity '{self.granularity}'; choose from {', '.join(GRANULARITIES)}."
            )
        if not 1 <= self.num_groups <= MAX_NUM_GROUPS:
            raise HeadroomError(f"num_groups must be between 1 and {MAX_NUM_GROUPS}.")
        sparsity = self.sparsity if isinstance(self.sparsity, list) else [self.sparsity]
        if any(not 0.0 <= x <= 1.0 for x in sparsity):
            raise HeadroomError("sparsity must be a fraction between 0 and 1 (e.g. 0.5 zeroes half the weights).")
        unknown = [r for r in self.sparsity_roles if r not in ROLES]
        if unknown:
            raise HeadroomError(f"Unknown matrix role(s) {', '.join(unknown)} in sparsity_roles; choose from {', '.join(ROLES)}.")
        for layer, role, rank in self.ranks:
            if role not in ROLES:
                raise HeadroomError(f"Unknown matrix role '{role}' in ranks; choose from {', '.join(ROLES)}.")
            if rank < 1:
                raise HeadroomError(f"The rank of layer {layer}'s {role} must be at least 1, not {rank}.")
        if self.embedding_size < 0:
            raise HeadroomError("embedding_size must be 0 (unchanged) or the factorised size E, e.g. 128.")
        if self.share_mode not in SHARE_MODES:
            raise HeadroomError(f"Unknown share_mode '{self.share_mode}'; choose first (the group's first layer) or "
                                "mean (the element-wise mean of the group).")
        if self.sparsity_scope not in SPARSITY_SCOPES:
            raise HeadroomError(f"Unknown sparsity_scope '{self.sparsity_scope}'; choose local or global.")
        if self.sparsity_scope == "global" and isinstance(self.sparsity, list) and len(set(self.sparsity)) > 1:
            raise HeadroomError("A global sparsity threshold takes one value for all layers; use local scope for "
                                "a fraction per layer.")
        self._check_pattern(sparsity)
        return self

    def _check_pattern(self, sparsity: list[float]) -> None:
        """2:4 zeroes exactly half of each chosen matrix within groups of 4: only 0.5 (or 0), only local."""
        if self.sparsity_pattern not in SPARSITY_PATTERNS:
            raise HeadroomError(f"Unknown sparsity_pattern '{self.sparsity_pattern}'; choose unstructured or 2:4.")
        if self.sparsity_pattern != "2:4":
            return
        other = next((x for x in sparsity if x not in (0.0, 0.5)), None)
        if other is not None:
            raise HeadroomError(f"The 2:4 pattern zeroes exactly 2 of every 4 weights, so sparsity must be 0.5 (or 0 "
                                f"for a layer left dense), not {other:g}.")
        if self.sparsity_scope == "global":
            raise HeadroomError("The 2:4 pattern picks within each group of 4 weights, so it has no global threshold; "
                                "use sparsity_scope local.")


def _layer_ranges(layers: list[int]) -> str:
    """[0, 1, 2, 5] -> "L0-2+L5"."""
    runs: list[list[int]] = []
    for layer in sorted(set(layers)):
        if runs and layer == runs[-1][-1] + 1:
            runs[-1].append(layer)
        else:
            runs.append([layer])
    return "+".join(f"L{r[0]}-{r[-1]}" if len(r) > 1 else f"L{r[0]}" for r in runs)


class _Refused(Exception):
    """A value that does not have its field's type (turned into one HeadroomError by `_conform`)."""


def _field_types() -> dict:
    """Recipe's field types, resolved from their annotations once (`from __future__` makes them strings)."""
    global _FIELD_TYPES
    if _FIELD_TYPES is None:
        _FIELD_TYPES = typing.get_type_hints(Recipe)
    return _FIELD_TYPES


_FIELD_TYPES: dict | None = None


def _describe(hint) -> str:
    """A field type in a user's words: 'a whole number', 'a list of [layer, head] pairs', ..."""
    if hint is bool:
        return "true or false"
    if hint is int:
        return "a whole number"
    if hint is float:
        return "a number"
    if hint is str:
        return "a string"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list and args and typing.get_origin(args[0]) is tuple:
        inner = typing.get_args(args[0])
        if typing.get_origin(inner[1]) is list:
            return "a list of [layer, [unit, ...]] entries of whole numbers"
        if inner[1] is str:
            return "a list of [layer, role, rank] entries"
        return "a list of [layer, head] pairs of whole numbers"
    if origin is list and typing.get_origin(args[0]) is list:
        return "a list of groups of layers (lists of whole numbers), e.g. [[0, 1], [2, 3]]"
    if origin is list:
        return f"a list of {_describe(args[0]).removeprefix('a ').replace('number', 'numbers')}"
    if origin is tuple:
        return f"a pair of {_describe(args[0]).removeprefix('a ').replace('number', 'numbers')}"
    return " or ".join(_describe(a) for a in args)


def _check(value, hint):
    """`value` as type `hint` (ints from numpy ints, tuples from JSON lists); raise _Refused otherwise."""
    if hint is bool:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        raise _Refused
    if hint is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
            return int(value)
        raise _Refused
    if hint is float:
        if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and math.isfinite(value):
            return float(value)
        raise _Refused
    if hint is str:
        if isinstance(value, str):
            return value
        raise _Refused
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise _Refused
        return [_check(v, args[0]) for v in value]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise _Refused
        return tuple(_check(v, a) for v, a in zip(value, args))
    for arm in args:  # a union: the first arm the value fits
        try:
            return _check(value, arm)
        except _Refused:
            pass
    raise _Refused


def _shown(value) -> str:
    """The value as the user wrote it in JSON (Infinity, NaN, true), shortened."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _conform(value, hint, name: str):
    try:
        return _check(value, hint)
    except _Refused:
        extra = ""
        if isinstance(value, float) and not math.isfinite(value):
            extra = " (1e400, Infinity and NaN are never valid recipe values)"
        raise HeadroomError(f"Recipe field {name} must be {_describe(hint)}, not {_shown(value)}{extra}.") from None


def field_help(name: str) -> str:
    """The help text of Recipe field `name` (declared with the field)."""
    return RECIPE_FIELDS[name].metadata["help"]


def field_default(name: str):
    """The default value of Recipe field `name`."""
    return default_of(RECIPE_FIELDS[name])


def field_choices(name: str) -> tuple | None:
    """The values Recipe field `name` allows, where it lists them (None: any, checked by `validate`)."""
    return RECIPE_FIELDS[name].metadata.get("choices")


#: Recipe's fields by name: default, help text and allowed values in one place.
RECIPE_FIELDS = {f.name: f for f in fields(Recipe)}


def parse_head_list(text: str) -> list[tuple[int, int]]:
    """'0:3,5:11' -> [(0, 3), (5, 11)]; also accepts '0-3' style pairs."""
    pairs = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        sep = ":" if ":" in item else "-"
        try:
            layer, head = (int(x) for x in item.split(sep))
        except ValueError:
            raise HeadroomError(
                f"'{item}' is not a head; write heads as layer:head pairs, e.g. 0:3,5:11."
            ) from None
        pairs.append((layer, head))
    return pairs


def parse_neuron_list(text: str) -> list[tuple[int, list[int]]]:
    """'0:5,17,100-199;3:0-767' -> [(0, [5, 17, 100, ..., 199]), (3, [0, ..., 767])]: layer:units, ';' between layers."""
    entries = []
    for item in filter(None, (t.strip() for t in text.split(";"))):
        try:
            layer_text, units_text = item.split(":")
            units = []
            for part in filter(None, (u.strip() for u in units_text.split(","))):
                lo, _, hi = part.partition("-")
                units += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
            entries.append((int(layer_text), units))
        except ValueError:
            raise HeadroomError(
                f"'{item}' is not a layer's FFN neurons; write layer:units with ';' between layers, e.g. 0:5,17,100-199;3:0-767."
            ) from None
    return entries


def parse_rank_list(text: str) -> list[tuple[int, str, int]]:
    """'0:ffn_in:64,1-2:ffn_out:128' -> [(0, 'ffn_in', 64), (1, 'ffn_out', 128), (2, 'ffn_out', 128)]."""
    entries = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        try:
            layer_text, role, rank_text = (x.strip() for x in item.split(":"))
            lo, _, hi = layer_text.partition("-")
            layers = range(int(lo), int(hi) + 1) if hi else [int(lo)]
            entries += [(layer, role, int(rank_text)) for layer in layers]
        except ValueError:
            raise HeadroomError(f"'{item}' is not a low-rank matrix; write layer:role:rank, e.g. 0:ffn_in:64 "
                                "(or a layer range, 0-5:ffn_out:128).") from None
    return entries


def parse_share_groups(text: str) -> list[list[int]]:
    """'0-1,2-3' -> [[0, 1], [2, 3]]; a range 'a-b' or layers joined by '+' ('0+2+4') per group, ',' between groups."""
    groups = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        try:
            if "-" in item:
                lo, hi = (int(x) for x in item.split("-"))
                layers = list(range(lo, hi + 1))
            else:
                layers = [int(x) for x in item.split("+")]
        except ValueError:
            raise HeadroomError(f"'{item}' is not a group of layers; write ranges or '+'-joined layers with ',' between "
                                "groups, e.g. 0-1,2-3 or 0+2+4,1+3+5.") from None
        if not layers:
            raise HeadroomError(f"'{item}' is an empty group of layers; write the first layer before the last, e.g. 0-1.")
        groups.append(layers)
    return groups


def parse_int_list(text: str, what: str = "layers") -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise HeadroomError(f"'{text}' is not a list of {what}; write e.g. 4,5.") from None
