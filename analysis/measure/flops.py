"""Counted costs of a model under a Recipe, per component and layer: FLOPs, parameters, bytes.

Everything here is analytic (nothing runs); `profile.py` measures time against these counts.
Parameters and bytes follow `size.size_report` exactly (quantised matrices pay for their scales;
biases, LayerNorms and the head stay fp32; ALBERT's shared layer is stored once) — a test checks
that the per-component rows sum to its totals and to the model's own parameter count.

FLOPs:
The counting follows the usual Transformer accounting (Kaplan et al. 2020, "Scaling Laws", table 1;
the same convention as fvcore and DeepSpeed's flops profiler for matmuls):

- **a multiply-add is 2 FLOPs**: a linear layer on (B*T, d_in) -> (B*T, d_out) costs
  2*B*T*d_in*d_out, plus B*T*d_out for its bias;
- element-wise work is counted too, but kept apart in `FlopCount.elementwise` so the matmul count
  can be checked against a hand count: LayerNorm 7 FLOPs per element (mean, subtract, square, sum,
  rsqrt-scale, gamma, beta) plus 1 for the residual add before it; softmax 5 per score (max,
  subtract, exp, sum, divide) plus 2 for the 1/sqrt(hs) scale and the mask add; GELU 5 per element
  (a transcendental such as erf, exp or tanh counts as one FLOP), ReLU 1;
- the embedding is a table lookup: 0 FLOPs, but adding the word/position/type rows and the
  embedding LayerNorm are counted (and ELECTRA's / ALBERT's projection up to the hidden size);
- attention runs over the full padded length T (dense kernels compute padded positions too);
- the pooler and classifier see one vector per example (the [CLS] token), not B*T.

Family differences (same components, shapes read from the weights):
- DeBERTa: each layer also projects the 2*span shared relative embeddings through its W_K and
  W_Q (share_att_key) and takes the c2p and p2c products (B, nh, T, 2*span); these relative
  terms are counted in `attention_scores`, the relative embeddings' LayerNorm in `embeddings`;
- ModernBERT: ffn_in is the gated W_i (2I x D) and the gate multiply is counted with the
  activation; it has no biases and no attention LayerNorm in layer 0 (pre-LN); local layers are
  still counted over all T keys (dense kernels compute the masked scores too); the final norm
  is counted with the classifier (it runs once after the last layer).

Recipes: a layer with nh of its heads kept costs nh/H of its Q/K/V, scores and output-projection
FLOPs (heads are sliced out, as `simulate` and `materialize` do); a layer keeping u of its I FFN
units costs u/I of its FFN FLOPs; a dropped layer costs nothing.
Shapes are read from the weights, so an already pruned model (uneven heads) is counted as it is.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from torch import nn

from analysis.core.adapters import EMBEDDING_ROLE, ROLES, Adapter
from analysis.core.quantize import QuantScheme, quantized_bytes
from analysis.core.recipe import Recipe
from analysis.core.sharing import counted_elsewhere

MATMUL = 2  # FLOPs per multiply-add
LAYERNORM = 7  # per element
RESIDUAL = 1  # the add before each post-LN LayerNorm, per element
SOFTMAX = 5  # per attention score
SCALE_AND_MASK = 2  # per attention score
ACTIVATION = {"relu": 1}  # per element; GELU and its variants: DEFAULT_ACTIVATION
DEFAULT_ACTIVATION = 5
HEAD_ACTIVATION = 1  # tanh / ReLU / GELU on the pooled (B, D) vector: one per element

#: The pieces of the forward, in the order the data flows through them. Every profile table
#: (parameters, bytes, FLOPs, time) uses exactly these names.
COMPONENTS = (
    "embeddings",  # lookup (0 FLOPs) + sum of word/position/type rows + LayerNorm (+ projection)
    "attention_qkv",  # W_Q, W_K, W_V
    "attention_scores",  # QK^T, scale, mask, softmax, probs @ V: no parameters
    "attention_output",  # W_O
    "layernorm",  # residual add + LayerNorm, twice per layer
    "ffn_in",  # hidden -> intermediate, with the activation
    "ffn_out",  # intermediate -> hidden
    "classifier",  # pooler + classification head, on the [CLS] vector
)
#: The component each weight matrix (`adapters.ROLES`) is counted in: the FFN's two matrices
#: keep their role's name; W_Q, W_K and W_V are counted together.
COMPONENT_OF_ROLE = {"query": "attention_qkv", "key": "attention_qkv", "value": "attention_qkv",
                     "attention_output": "attention_output", "ffn_in": "ffn_in", "ffn_out": "ffn_out"}


@dataclass
class FlopCount:
    component: str
    layer: int | None  # None for embeddings and classifier
    matmul: int  # FLOPs of matrix products (2 per multiply-add)
    elementwise: int  # bias adds, softmax, LayerNorm, activation, residual adds

    @property
    def total(self) -> int:
        return self.matmul + self.elementwise


def linear_flops(rows: int, d_in: int, d_out: int, bias: bool = True) -> tuple[int, int]:
    """(matmul, elementwise) FLOPs of a linear layer applied to `rows` vectors."""
    return MATMUL * rows * d_in * d_out, (rows * d_out if bias else 0)


def layer_flops(
    batch_size: int, seq_len: int, hidden_size: int, num_heads: int, head_size: int,
    intermediate_size: int, activation: str = "gelu", layer: int | None = None, *,
    biases: bool = True, gated: bool = False, layernorms: int = 2, relative_rows: int = 0, relative_terms: int = 0,
) -> list[FlopCount]:
    """FLOPs of one encoder layer keeping `num_heads` heads, per component.

    The defaults are a post-LN BERT layer. `gated`: ffn_in has 2I rows and the activation is
    multiplied by the gate half (ModernBERT); `biases`: whether the linears add a bias;
    `layernorms`: LayerNorms the layer runs (ModernBERT's layer 0 has one); `relative_rows`
    (DeBERTa: 2*span) relative embeddings are projected by W_K/W_Q for `relative_terms` (c2p,
    p2c) extra score products.
    """
    B, T, D, nh, hs, I = batch_size, seq_len, hidden_size, num_heads, head_size, intermediate_size
    tokens, width = B * T, nh * hs
    act = ACTIVATION.get(activation, DEFAULT_ACTIVATION) + (1 if gated else 0)  # + the gate multiply
    qkv_mm, qkv_el = linear_flops(tokens, D, width, biases)
    scores = B * nh * T * T  # (B, nh, T, T) attention scores
    o_mm, o_el = linear_flops(tokens, width, D, biases) if nh else (0, 0)  # 0 heads: W_O's bias only, no add
    in_mm, in_el = linear_flops(tokens, D, 2 * I if gated else I, biases)
    out_mm, out_el = linear_flops(tokens, I, D, biases)
    # DeBERTa: W_K r and W_Q r on the relative embeddings, then (B, nh, T, hs) @ (nh, hs, 2*span) per term
    rel_mm = rel_el = 0
    if relative_terms and nh:
        proj_mm, proj_el = linear_flops(relative_rows, D, width, biases)
        rel_mm = relative_terms * (proj_mm + MATMUL * B * nh * T * relative_rows * hs)
        rel_el = relative_terms * (proj_el + 2 * scores)  # gather is free; scale and add per score
    return [
        FlopCount("attention_qkv", layer, 3 * qkv_mm, 3 * qkv_el),
        # QK^T: (B, nh, T, hs) @ (B, nh, hs, T); context: (B, nh, T, T) @ (B, nh, T, hs)
        FlopCount("attention_scores", layer, 2 * MATMUL * scores * hs + rel_mm,
                  scores * (SOFTMAX + SCALE_AND_MASK) + rel_el),
        FlopCount("attention_output", layer, o_mm, o_el),
        FlopCount("layernorm", layer, 0, layernorms * tokens * D * (LAYERNORM + RESIDUAL)),
        FlopCount("ffn_in", layer, in_mm, in_el + tokens * I * act),
        FlopCount("ffn_out", layer, out_mm, out_el),
    ]


def _family_kwargs(adapter: Adapter, index: int) -> dict:
    """`layer_flops` keywords describing layer `index` of the adapter's family."""
    parts = adapter.layer(index)
    kw = dict(biases=parts.ffn_out.bias is not None, gated=adapter.ffn_gated,
              layernorms=sum(1 for m in (parts.attention_layernorm, parts.ffn_layernorm) if isinstance(m, nn.LayerNorm)))
    config = adapter.model.config
    if adapter.family == "deberta-v2" and getattr(config, "relative_attention", False):
        from analysis.core.families import deberta_settings

        buckets, max_rel = deberta_settings(config)
        kw.update(relative_rows=2 * (buckets if buckets > 0 else max_rel),
                  relative_terms=sum(t in (config.pos_att_type or []) for t in ("c2p", "p2c")))
    return kw


def activation_name(adapter: Adapter) -> str:
    return str(getattr(adapter.model.config, adapter.spec.activation_attr, "gelu"))


def embedding_flops(adapter: Adapter, batch_size: int, seq_len: int, embedding_size: int = 0) -> FlopCount:
    tokens = batch_size * seq_len
    E = adapter.word_embeddings.weight.shape[1]
    tables = sum(1 for m in adapter.embeddings.modules() if isinstance(m, nn.Embedding))
    elementwise = tokens * E * (tables - 1 + LAYERNORM)  # sum the looked-up rows, then LayerNorm
    for m in adapter.embedding_extras():  # DeBERTa: LayerNorm of the shared relative embeddings
        if isinstance(m, nn.LayerNorm):
            rel = adapter.base.encoder.rel_embeddings.weight
            elementwise += rel.shape[0] * rel.shape[1] * LAYERNORM
    matmul = 0
    projection = adapter.embedding_projection()
    if projection is not None:
        mm, el = linear_flops(tokens, projection.in_features, projection.out_features, projection.bias is not None)
        matmul, elementwise = matmul + mm, elementwise + el
    if embedding_size:  # the factorised table's E x H projection
        matmul += linear_flops(tokens, embedding_size, E, bias=False)[0]
    return FlopCount("embeddings", None, matmul, elementwise)


def classifier_flops(adapter: Adapter, batch_size: int) -> FlopCount:
    matmul = elementwise = 0
    linears = [m for module in adapter.classifier_modules().values() for m in module.modules() if isinstance(m, nn.Linear)]
    for i, lin in enumerate(linears):
        mm, el = linear_flops(batch_size, lin.in_features, lin.out_features, lin.bias is not None)
        matmul += mm
        elementwise += el + (batch_size * lin.out_features * HEAD_ACTIVATION if i < len(linears) - 1 else 0)
    return FlopCount("classifier", None, matmul, elementwise)


def count_flops(adapter: Adapter, recipe: Recipe | None = None, batch_size: int = 1, seq_len: int = 128) -> list[FlopCount]:
    """FLOPs of one forward pass on (batch_size, seq_len) under `recipe`, per component and layer."""
    recipe = recipe or Recipe()
    adapter.validate(recipe)
    counts = [embedding_flops(adapter, batch_size, seq_len, recipe.embedding_size)]
    dropped = set(recipe.dropped_layers)
    act = activation_name(adapter)
    for i in range(adapter.num_layers):
        if i in dropped:
            continue
        parts = adapter.layer(i)
        nh = len(recipe.kept_heads(i, adapter.heads_in_layer(i)))
        units = len(recipe.kept_neurons(i, adapter.intermediate_size(i)))
        layer = layer_flops(batch_size, seq_len, adapter.hidden_size, nh, adapter.head_size,
                            units, act, layer=i, **_family_kwargs(adapter, i))
        for role in ROLES:  # a rank-r matrix runs as two products: r (in + out) multiply-adds per token, not in x out
            rank = recipe.rank_of(i, role)
            if rank is not None:
                out_f, in_f = adapter.kept_shape(recipe, i, role)
                r = min(rank, out_f, in_f)
                c = next(c for c in layer if c.component == COMPONENT_OF_ROLE[role])
                c.matmul += MATMUL * batch_size * seq_len * (r * (in_f + out_f) - in_f * out_f)
        counts += layer
    counts.append(classifier_flops(adapter, batch_size))
    return counts


def flops_by_component(counts: list[FlopCount]) -> dict[str, int]:
    """Total FLOPs per component (summed over layers), in COMPONENTS order."""
    by: dict[str, int] = defaultdict(int)
    for c in counts:
        by[c.component] += c.total
    return {k: by[k] for k in COMPONENTS if k in by}


def total_flops(counts: list[FlopCount]) -> int:
    return sum(c.total for c in counts)


# ------------------------------------------------------------------------------- parameters
@dataclass
class ParamCount:
    component: str
    layer: int | None
    params: int
    bytes: float


def count_parameters(adapter: Adapter, recipe: Recipe | None = None) -> list[ParamCount]:
    """Parameters and bytes per component and layer; sums equal `size_report(adapter, recipe)`."""
    recipe = recipe or Recipe()
    hs = adapter.head_size
    word = adapter.word_embeddings.weight
    params = word.numel()
    nbytes = quantized_bytes(tuple(word.shape), QuantScheme.for_embeddings(recipe), EMBEDDING_ROLE, hs)
    if recipe.embedding_size:  # V x E table + E x H projection, fp32 (as size_report)
        params = recipe.embedding_size * (word.shape[0] + word.shape[1])
        nbytes = 4.0 * params
    rest = [p for p in adapter.embeddings.parameters() if p is not word]
    rest += [p for m in adapter.embedding_extras() for p in m.parameters()]
    params += sum(p.numel() for p in rest)
    rows = [ParamCount("embeddings", None, params, nbytes + 4.0 * sum(p.numel() for p in rest))]

    dropped, counted_shared = set(recipe.dropped_layers), False
    elsewhere = counted_elsewhere(adapter, recipe)  # grouped layers: counted on their group's first
    for i in range(adapter.num_layers):
        if i in dropped or i in elsewhere or (adapter.shares_layers() and counted_shared):
            continue  # ALBERT's shared layer is stored once: its parameters sit on the first kept layer
        counted_shared = True
        parts = adapter.layer(i)
        scheme = QuantScheme.for_layer(recipe, i, adapter.num_layers)
        by: dict[str, list] = defaultdict(lambda: [0, 0.0])
        for role in ROLES:
            shape = adapter.kept_shape(recipe, i, role)  # heads and FFN neurons sliced out
            numel, comp = shape[0] * shape[1], COMPONENT_OF_ROLE[role]
            bias = shape[0] if getattr(parts, role).bias is not None else 0  # ModernBERT has none
            rank = recipe.rank_of(i, role)
            if rank is not None:  # two fp32 factors (out, r) and (r, in), as size_report
                numel = min(rank, *shape) * (shape[0] + shape[1])
                by[comp][0] += numel + bias
                by[comp][1] += 4.0 * (numel + bias)
                continue
            by[comp][0] += numel + bias  # weight + bias (fp32)
            by[comp][1] += (quantized_bytes(shape, scheme, role, hs) if numel else 0.0) + 4.0 * bias
        ln = sum(p.numel() for m in (parts.attention_layernorm, parts.ffn_layernorm) for p in m.parameters())
        by["layernorm"] = [ln, 4.0 * ln]
        rows += [ParamCount(c, i, *by[c]) for c in COMPONENTS if c in by]
    head = sum(p.numel() for m in adapter.classifier_modules().values() for p in m.parameters())
    rows.append(ParamCount("classifier", None, head, 4.0 * head))
    return rows
