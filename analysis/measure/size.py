"""Model size under a Recipe, counted from the bits: parameters and bytes, per component.

Honest accounting: quantised matrices cost `bits` per weight *plus* their scales and zero-points;
biases, LayerNorms, position/type embeddings, the pooler and the classifier stay fp32 (as Q-BERT
and Q8BERT keep them). Pruned heads, masked FFN neurons and dropped layers cost nothing. ALBERT's shared layer, and
the layers of a group of `shared_layers` (or of a model that already ties them), are counted once. The result is a prediction of the size of a real int-packed checkpoint; the size of
a materialized directory on disk is measured separately (`materialize.save_materialized`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from analysis.core.adapters import EMBEDDING_ROLE, ROLES, Adapter
from analysis.core.quantize import QuantScheme, quantized_bytes
from analysis.core.recipe import Recipe
from analysis.core.sharing import counted_elsewhere
from analysis.measure.flops import COMPONENT_OF_ROLE

MB = 1e6


#: the precision sizes are recorded at (cards, the results store); Trade-offs rounds live rows alike
MB_DECIMALS = 3


@dataclass
class SizeReport:
    parameters: int
    bytes: float
    baseline_parameters: int
    baseline_bytes: float
    by_component: dict[str, float] = field(default_factory=dict)  # bytes per flops.COMPONENTS name

    @property
    def mb(self) -> float:
        return self.bytes / MB

    @property
    def baseline_mb(self) -> float:
        return self.baseline_bytes / MB

    @property
    def fraction_of_baseline(self) -> float:
        return self.bytes / self.baseline_bytes

    def to_dict(self) -> dict:
        return {
            "parameters": self.parameters,
            "mb": round(self.mb, MB_DECIMALS),
            "baseline_parameters": self.baseline_parameters,
            "baseline_mb": round(self.baseline_bytes / MB, MB_DECIMALS),
            "fraction_of_baseline": round(self.fraction_of_baseline, 4),
            "by_component_mb": {k: round(v / MB, 3) for k, v in self.by_component.items()},
        }


def size_report(adapter: Adapter, recipe: Recipe) -> SizeReport:
    model = adapter.model
    baseline_params = sum(p.numel() for p in model.parameters())
    hs = adapter.head_size
    by: dict[str, float] = {}
    params = 0

    def add(component: str, numel: int, nbytes: float):
        nonlocal params
        params += numel
        by[component] = by.get(component, 0.0) + nbytes

    # Embeddings: the word matrix at embedding_bits, everything else in the embedding block fp32.
    word = adapter.word_embeddings.weight
    if recipe.embedding_size:  # V x E table + E x H projection, fp32
        n = recipe.embedding_size * (word.shape[0] + word.shape[1])
        add("embeddings", n, 4.0 * n)
    else:
        add("embeddings", word.numel(),
            quantized_bytes(tuple(word.shape), QuantScheme.for_embeddings(recipe), EMBEDDING_ROLE, hs))
    for p in adapter.embeddings.parameters():
        if p is not word:
            add("embeddings", p.numel(), p.numel() * 4.0)
    for module in adapter.embedding_extras():  # a projection up to hidden; DeBERTa's relative embeddings
        n = sum(p.numel() for p in module.parameters())
        add("embeddings", n, n * 4.0)

    dropped = set(recipe.dropped_layers)
    counted_shared = False
    elsewhere = counted_elsewhere(adapter, recipe)  # grouped layers: counted on their group's first
    for i in range(adapter.num_layers):
        if i in dropped or i in elsewhere or (adapter.shares_layers() and counted_shared):
            continue
        counted_shared = True
        parts = adapter.layer(i)
        scheme = QuantScheme.for_layer(recipe, i, adapter.num_layers)
        for role in ROLES:
            shape = adapter.kept_shape(recipe, i, role)  # heads and FFN neurons sliced out
            rank = recipe.rank_of(i, role)
            if rank is not None:  # two factors, (out, r) and (r, in), in fp32 (materialize keeps them unquantised)
                r = min(rank, *shape)
                add(COMPONENT_OF_ROLE[role], r * (shape[0] + shape[1]), 4.0 * r * (shape[0] + shape[1]))
            else:
                numel = shape[0] * shape[1]
                # Ranges of the *kept* slice; per-tensor and per-channel ranges are stored either way.
                add(COMPONENT_OF_ROLE[role], numel, quantized_bytes(shape, scheme, role, hs) if numel else 0.0)
            bias = shape[0] if getattr(parts, role).bias is not None else 0  # ModernBERT has no biases
            add(COMPONENT_OF_ROLE[role], bias, bias * 4.0)
        for ln in (parts.attention_layernorm, parts.ffn_layernorm):  # ModernBERT's layer 0: nn.Identity, 0
            n = sum(p.numel() for p in ln.parameters())
            add("layernorm", n, n * 4.0)

    for name, module in adapter.classifier_modules().items():
        n = sum(p.numel() for p in module.parameters())
        add("classifier", n, n * 4.0)
    return SizeReport(
        parameters=params,
        bytes=sum(by.values()),
        baseline_parameters=baseline_params,
        baseline_bytes=baseline_params * 4.0,
        by_component=by,
    )
