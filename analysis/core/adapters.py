"""Architecture adapters: where things live in each BERT-family sequence classifier.

Everything in Headroom (simulation, materialisation, importance, profiling) is written once
against this small table instead of once per architecture. An adapter knows, for BERT (MiniLM is
BERT), RoBERTa (and XLM-RoBERTa, the same modules), ELECTRA, DistilBERT, ALBERT, DeBERTa-v2/v3
and ModernBERT:

- where the encoder layers are, and inside each layer the Q/K/V projections, the attention output
  projection, the two FFN linears and the two LayerNorms;
- which functional layer runs them (`layer_forward`): the five original families are post-LN
  encoders with one dataflow (`analysis.core.simulate.encoder_layer`); DeBERTa is post-LN with
  disentangled (content + relative-position) attention (`analysis.core.families.deberta_layer`);
  ModernBERT is pre-LN with rotary embeddings, local/global attention and a gated FFN
  (`analysis.core.families.modernbert_layer`);
- ModernBERT's fused W_qkv (one (3*D, D) Linear) is read as three row blocks (`FusedRows`), so
  quantisation, head slicing and the profile still see one matrix per role;
- how to embed token ids into the hidden states that enter layer 0 (including ELECTRA's and
  ALBERT's embedding projection), optionally with a replacement word-embedding matrix (used to
  simulate quantised embeddings without touching the model);
- how to turn the last hidden states into logits (pooler / classification head).

Adapters only *read* the model; nothing here writes to weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN

from analysis.errors import HeadroomError


#: The six weight matrices of an encoder layer, in data-flow order: one name per matrix, used by
#: `LayerParts`, `ArchitectureSpec`, `simulate.LayerWeights`, quantisation, size and sensitivity.
ROLES = ("query", "key", "value", "attention_output", "ffn_in", "ffn_out")
#: The role of the word-embedding matrix when it is quantised (it has no heads: row groups).
EMBEDDING_ROLE = "embedding"


def head_axis(role: str) -> int | None:
    """Which axis of a role's (out, in) weight comes in head-sized blocks, if any.

    W_Q/W_K/W_V produce the heads (rows, axis 0); W_O reads the concatenated heads (columns,
    axis 1); the FFN matrices and the embeddings have no heads (None).
    """
    if role in ("query", "key", "value"):
        return 0
    if role == "attention_output":
        return 1
    return None


def sliced_shape(role: str, shape: tuple[int, int], width: int) -> tuple[int, int]:
    """(out, in) of a role's weight once only `width` (= kept heads x head size) of its head axis is kept."""
    axis = head_axis(role)
    if axis is None:
        return tuple(shape)
    return (width, shape[1]) if axis == 0 else (shape[0], width)


class FusedRows:
    """Rows [start, start + size) of a fused Linear (ModernBERT's W_qkv), read as one role's matrix.

    `weight` and `bias` are *views* of the fused parameters: reading them costs nothing, and an
    in-place write (materialize's fake quantisation, under no_grad) lands in the fused matrix.
    `module` is the fused Linear itself (what a forward hook or int8 kernel sees).
    """

    def __init__(self, module: nn.Linear, start: int, size: int):
        self.module, self.start, self.size = module, start, size

    @property
    def weight(self) -> torch.Tensor:
        return self.module.weight[self.start:self.start + self.size]  # (size, in)

    @property
    def bias(self) -> torch.Tensor | None:
        b = self.module.bias
        return None if b is None else b[self.start:self.start + self.size]  # (size,)

    @property
    def in_features(self) -> int:
        return self.module.in_features

    @property
    def out_features(self) -> int:
        return self.size


@dataclass(frozen=True)
class LayerParts:
    """The modules of one encoder layer, in the order the data flows through them.

    Post-LN families (BERT ... DeBERTa) normalise after each residual add; pre-LN ModernBERT
    normalises each block's input instead (and its layer 0 has no attention norm: nn.Identity).
    """

    query: nn.Linear | FusedRows
    key: nn.Linear | FusedRows
    value: nn.Linear | FusedRows
    attention_output: nn.Linear  # W_O: concatenated heads -> hidden
    attention_layernorm: nn.Module  # post-LN: LN(x + W_O ctx); pre-LN: LN(x) entering attention
    ffn_in: nn.Linear  # hidden -> intermediate (ModernBERT: 2 x intermediate, input and gate halves)
    ffn_out: nn.Linear  # intermediate -> hidden
    ffn_layernorm: nn.Module  # post-LN: LN(a + FFN(a)); pre-LN: LN(a) entering the FFN


@dataclass(frozen=True)
class ArchitectureSpec:
    """Attribute paths (relative to the layer module, or to the model) for one family."""

    model_type: str
    base: str  # attribute of the *ForSequenceClassification model holding the encoder
    layers: str  # path from the model to the ModuleList of layers
    query: str
    key: str
    value: str
    attention_output: str
    attention_layernorm: str
    ffn_in: str
    ffn_out: str
    ffn_layernorm: str
    num_layers_attr: str = "num_hidden_layers"
    num_heads_attr: str = "num_attention_heads"
    hidden_attr: str = "hidden_size"
    activation_attr: str = "hidden_act"
    family: str = ""  # the dataflow the adapter follows (embeddings, head); "" = model_type
    layer_forward: str = "post-ln"  # which functional layer runs it: post-ln | deberta | pre-ln
    fused_qkv: str | None = None  # path of one Linear holding W_Q, W_K, W_V stacked by rows


_BERT_LAYER = dict(
    query="attention.self.query",
    key="attention.self.key",
    value="attention.self.value",
    attention_output="attention.output.dense",
    attention_layernorm="attention.output.LayerNorm",
    ffn_in="intermediate.dense",
    ffn_out="output.dense",
    ffn_layernorm="output.LayerNorm",
)

SPECS: dict[str, ArchitectureSpec] = {
    "bert": ArchitectureSpec("bert", "bert", "bert.encoder.layer", **_BERT_LAYER),
    "roberta": ArchitectureSpec("roberta", "roberta", "roberta.encoder.layer", **_BERT_LAYER),
    "electra": ArchitectureSpec("electra", "electra", "electra.encoder.layer", **_BERT_LAYER),
    "distilbert": ArchitectureSpec(
        "distilbert",
        "distilbert",
        "distilbert.transformer.layer",
        query="attention.q_lin",
        key="attention.k_lin",
        value="attention.v_lin",
        attention_output="attention.out_lin",
        attention_layernorm="sa_layer_norm",
        ffn_in="ffn.lin1",
        ffn_out="ffn.lin2",
        ffn_layernorm="output_layer_norm",
        num_layers_attr="n_layers",
        num_heads_attr="n_heads",
        hidden_attr="dim",
        activation_attr="activation",
    ),
    # XLM-RoBERTa is RoBERTa's modules under another model_type (and a 250k vocabulary).
    "xlm-roberta": ArchitectureSpec("xlm-roberta", "roberta", "roberta.encoder.layer", family="roberta",
                                    **_BERT_LAYER),
    "deberta-v2": ArchitectureSpec(
        "deberta-v2",
        "deberta",
        "deberta.encoder.layer",
        query="attention.self.query_proj",
        key="attention.self.key_proj",
        value="attention.self.value_proj",
        attention_output="attention.output.dense",
        attention_layernorm="attention.output.LayerNorm",
        ffn_in="intermediate.dense",
        ffn_out="output.dense",
        ffn_layernorm="output.LayerNorm",
        layer_forward="deberta",
    ),
    "modernbert": ArchitectureSpec(
        "modernbert",
        "model",
        "model.layers",
        query="attn.Wqkv",
        key="attn.Wqkv",
        value="attn.Wqkv",
        attention_output="attn.Wo",
        attention_layernorm="attn_norm",
        ffn_in="mlp.Wi",
        ffn_out="mlp.Wo",
        ffn_layernorm="mlp_norm",
        activation_attr="hidden_activation",
        layer_forward="pre-ln",
        fused_qkv="attn.Wqkv",
    ),
    "albert": ArchitectureSpec(
        "albert",
        "albert",
        "albert.encoder.albert_layer_groups",
        query="attention.query",
        key="attention.key",
        value="attention.value",
        attention_output="attention.dense",
        attention_layernorm="attention.LayerNorm",
        ffn_in="ffn",
        ffn_out="ffn_output",
        ffn_layernorm="full_layer_layer_norm",
    ),
}


def _get(module: nn.Module, path: str):
    for part in path.split("."):
        module = getattr(module, part)
    return module


class Adapter:
    """Read-only view of one loaded sequence classifier through its `ArchitectureSpec`."""

    def __init__(self, model: nn.Module):
        model_type = getattr(model.config, "model_type", None)
        if model_type not in SPECS:
            raise HeadroomError(
                f"Architecture '{model_type}' has no Headroom adapter; supported: "
                f"{', '.join(sorted(SPECS))}."
            )
        if not type(model).__name__.endswith("ForSequenceClassification"):
            raise HeadroomError(
                f"{type(model).__name__} is not a sequence classifier; load a "
                f"*ForSequenceClassification checkpoint (a model with a classification head)."
            )
        self.model = model
        self.spec = SPECS[model_type]
        config = model.config
        self.model_type = model_type
        self.family: str = self.spec.family or model_type  # xlm-roberta runs as roberta
        self.layer_forward: str = self.spec.layer_forward
        self.num_layers: int = getattr(config, self.spec.num_layers_attr)
        self.num_heads: int = getattr(config, self.spec.num_heads_attr)
        self.hidden_size: int = getattr(config, self.spec.hidden_attr)
        self.head_size: int = self.hidden_size // self.num_heads
        self.activation = ACT2FN[getattr(config, self.spec.activation_attr)]
        if model_type == "albert" and getattr(config, "inner_group_num", 1) != 1:
            raise HeadroomError("ALBERT models with inner_group_num > 1 are not supported.")
        if model_type == "deberta-v2":
            _check_deberta(config, self.head_size)
        if model_type == "modernbert":
            _check_modernbert(config)

    # ----------------------------------------------------------------------------- structure
    @property
    def base(self) -> nn.Module:
        return getattr(self.model, self.spec.base)

    def layer_module(self, index: int) -> nn.Module:
        """The module that runs layer `index` (for ALBERT, the shared layer of its group)."""
        layers = _get(self.model, self.spec.layers)
        if self.model_type == "albert":
            config = self.model.config
            group = int(index / (config.num_hidden_layers / config.num_hidden_groups))
            return layers[group].albert_layers[0]
        return layers[index]

    def layer(self, index: int) -> LayerParts:
        if not 0 <= index < self.num_layers:
            raise HeadroomError(f"Layer {index} does not exist; the model has {self.num_layers} layers.")
        module = self.layer_module(index)
        s = self.spec
        if s.fused_qkv:
            fused = _get(module, s.fused_qkv)  # (3 * nh*hs, D): W_Q rows, then W_K, then W_V
            width = fused.out_features // 3
            q, k, v = (FusedRows(fused, r * width, width) for r in range(3))
        else:
            q, k, v = _get(module, s.query), _get(module, s.key), _get(module, s.value)
        return LayerParts(
            query=q,
            key=k,
            value=v,
            attention_output=_get(module, s.attention_output),
            attention_layernorm=_get(module, s.attention_layernorm),
            ffn_in=_get(module, s.ffn_in),
            ffn_out=_get(module, s.ffn_out),
            ffn_layernorm=_get(module, s.ffn_layernorm),
        )

    def heads_in_layer(self, index: int) -> int:
        """Heads layer `index` really has (fewer than `num_heads` in a materialized, pruned model)."""
        return self.layer(index).query.weight.shape[0] // self.head_size

    @property
    def heads_per_layer(self) -> list[int]:
        return [self.heads_in_layer(i) for i in range(self.num_layers)]

    def attention_type(self, index: int) -> str | None:
        """ModernBERT: "full_attention" (global) or "sliding_attention" (local) for layer `index`."""
        if self.family != "modernbert":
            return None
        return self.model.config.layer_types[index]

    # ----------------------------------------------------------------------------- FFN layout
    @property
    def ffn_gated(self) -> bool:
        """True when ffn_in holds two halves, input and gate (ModernBERT's GLU: act(W_i x) * (W_g x))."""
        return self.layer_forward == "pre-ln"

    def intermediate_size(self, index: int) -> int:
        """Intermediate units of layer `index` (ffn_out's columns; ffn_in has twice as many rows when gated)."""
        return self.layer(index).ffn_out.weight.shape[1]

    def ffn_in_rows(self, index: int, units) -> torch.Tensor:
        """Rows of layer `index`'s ffn_in weight that belong to the intermediate units `units`.

        Unit j is row j of an ungated ffn_in; of a gated one, rows j (input half) and I + j (gate
        half), returned as [units..., I + units...] so slicing both halves keeps the fused layout.
        Columns of ffn_out are `units` either way.
        """
        units = torch.as_tensor(units, dtype=torch.long, device=self.layer(index).ffn_in.weight.device)
        if not self.ffn_gated:
            return units
        return torch.cat([units, units + self.intermediate_size(index)])

    def kept_shape(self, recipe, index: int, role: str) -> tuple[int, int]:
        """(out, in) of layer `index`'s `role` weight once the recipe's heads and FFN neurons are sliced out."""
        shape = tuple(getattr(self.layer(index), role).weight.shape)
        if head_axis(role) is not None:
            return sliced_shape(role, shape, len(recipe.kept_heads(index, self.heads_in_layer(index))) * self.head_size)
        if role not in ("ffn_in", "ffn_out"):
            return shape
        units = len(recipe.kept_neurons(index, self.intermediate_size(index)))
        if role == "ffn_in":
            return ((2 if self.ffn_gated else 1) * units, shape[1])
        return (shape[0], units)

    def validate(self, recipe) -> None:
        """Check a Recipe against this model (layers, heads per layer, bits); raise HeadroomError."""
        recipe.validate(self.num_layers, self.num_heads)
        for layer, head in recipe.masked_heads:
            n = self.heads_in_layer(layer)
            if head >= n:
                raise HeadroomError(
                    f"Head {layer}:{head} does not exist; layer {layer} of this pruned model has {n} heads (0-{n - 1})."
                )
        for layer, units in recipe.masked_neurons:
            n = self.intermediate_size(layer)
            if units[-1] >= n:
                raise HeadroomError(
                    f"FFN neuron {layer}:{units[-1]} does not exist; layer {layer} has {n} intermediate units (0-{n - 1})."
                )
        for layer, role, rank in recipe.ranks:
            shape = getattr(self.layer(layer), role).weight.shape
            if rank > min(shape):
                raise HeadroomError(f"Layer {layer}'s {role} matrix is {shape[0]} x {shape[1]}: its rank is at most "
                                    f"{min(shape)}, not {rank}.")
        if recipe.embedding_size:
            V, E = self.word_embeddings.weight.shape
            if recipe.embedding_size > min(V, E):
                raise HeadroomError(f"The word embeddings are {V} x {E}: a factorised size above {min(V, E)} "
                                    f"(here {recipe.embedding_size}) is not a factorisation.")
        from analysis.core.sparsity import pattern_problem  # (sparsity reads adapters)

        problem = self._num_groups_problem(recipe) or self._sharing_problem(recipe) or pattern_problem(self, recipe)
        if problem:
            raise HeadroomError(problem)

    def _sharing_problem(self, recipe) -> str | None:
        """Groups of shared layers this model can hold (and a recipe that treats the model's own ties alike)."""
        from analysis.core.sharing import share_groups, sharing_problem, tied_groups

        groups, tied = share_groups(recipe), tied_groups(self)
        if groups and self.shares_layers():
            return "ALBERT already runs one shared layer at every depth; cross-layer sharing applies to the other families."
        tied_layers = {i for g in tied for i in g}
        for group in groups:
            if self.family == "modernbert" and 0 in group:
                return ("ModernBERT's layer 0 has no attention LayerNorm (the others have one), so it cannot share weights "
                        "with another layer; start the group at layer 1.")
            shapes = [[tuple(p.shape) for p in self.layer_module(i).parameters()] for i in group]
            odd = next((i for i, s in zip(group, shapes) if s != shapes[0]), None)
            if odd is not None:
                return (f"Layers {group[0]} and {odd} have different shapes (pruned heads, FFN units or ranks), so they "
                        "cannot share one set of weights; share layers of the same shape.")
            again = sorted(tied_layers & set(group))
            if again:
                return (f"Layer {again[0]} of this model already shares its weights with another layer; a recipe's groups "
                        "may only hold layers that share nothing yet.")
        for group in tied:
            problem = sharing_problem(recipe, group, self.num_layers, why="of this model share weights")
            if problem:
                return problem
        return None

    def _num_groups_problem(self, recipe) -> str | None:
        """num_groups must divide the rows of every encoder matrix it splits (the quantised ones under its
        granularity); the word embeddings use the largest divisor of the vocabulary instead (see the field)."""
        from analysis.core.quantize import num_groups_problem, uses_row_groups

        integer = lambda bits: bits < 16  # 16 (fp16) and 32 have no ranges
        rows = {}
        bits = recipe.layer_bits(self.num_layers)
        dropped = set(recipe.dropped_layers)
        for i in range(self.num_layers):
            if i in dropped or not integer(bits[i]):
                continue
            parts = self.layer(i)
            for role in ROLES:
                if uses_row_groups(recipe.granularity, role):
                    rows[f"layer {i}'s {role} matrix"] = getattr(parts, role).weight.shape[0]
        return num_groups_problem(recipe.num_groups, rows) if rows else None

    def shares_layers(self) -> bool:
        """True when several layer indices run the same weights (ALBERT)."""
        return self.model_type == "albert"

    @property
    def embeddings(self) -> nn.Module:
        return self.base.embeddings

    @property
    def word_embeddings(self) -> nn.Embedding:
        if self.family == "modernbert":
            return self.embeddings.tok_embeddings
        return self.embeddings.word_embeddings

    def embedding_projection(self) -> nn.Linear | None:
        """ELECTRA-small and ALBERT embed in a smaller size and project up to the hidden size."""
        if self.model_type == "electra":
            return getattr(self.base, "embeddings_project", None)
        if self.model_type == "albert":
            return self.base.encoder.embedding_hidden_mapping_in
        return None

    def embedding_extras(self) -> list[nn.Module]:
        """Modules outside `embeddings` whose parameters count as embeddings.

        ELECTRA's / ALBERT's projection up to the hidden size; DeBERTa's relative-position
        embeddings and their LayerNorm, shared by every layer (they live in its encoder).
        """
        projection = self.embedding_projection()
        extras = [projection] if projection is not None else []
        if self.family == "deberta-v2":
            encoder = self.base.encoder
            extras += [m for m in (getattr(encoder, "rel_embeddings", None), getattr(encoder, "LayerNorm", None))
                       if m is not None]
        return extras

    def classifier_modules(self) -> dict[str, nn.Module]:
        """Modules after the encoder (pooler + classifier), for counting and profiling."""
        m = self.model
        if self.model_type == "bert":
            mods = {"classifier": m.classifier}
            if m.bert.pooler is not None:
                mods = {"pooler": m.bert.pooler.dense, **mods}
            return mods
        if self.family in ("roberta", "electra"):
            return {"pooler": m.classifier.dense, "classifier": m.classifier.out_proj}
        if self.model_type == "distilbert":
            return {"pooler": m.pre_classifier, "classifier": m.classifier}
        if self.family == "deberta-v2":
            return {"pooler": m.pooler.dense, "classifier": m.classifier}
        if self.family == "modernbert":  # the final norm belongs to the encoder but runs after every layer
            return {"final_norm": m.model.final_norm, "pooler": m.head, "classifier": m.classifier}
        return {"pooler": m.albert.pooler, "classifier": m.classifier}  # albert

    # ----------------------------------------------------------------------------- dataflow
    def embed(
        self,
        input_ids: torch.Tensor,  # (B, T)
        attention_mask: torch.Tensor,  # (B, T)
        token_type_ids: torch.Tensor | None = None,
        word_embedding_weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Hidden states entering layer 0, (B, T, hidden). Pure function of its inputs."""
        emb = self.embeddings
        weight = self.word_embeddings.weight if word_embedding_weight is None else word_embedding_weight
        inputs_embeds = F.embedding(input_ids, weight)  # (B, T, E)
        if self.model_type == "distilbert":
            hidden = emb(input_ids=None, inputs_embeds=inputs_embeds)
        elif self.family == "modernbert":  # no positions here (rotary, inside attention): LN of the tokens
            hidden = emb(input_ids=None, inputs_embeds=inputs_embeds)
        else:
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(input_ids)
            position_ids = None
            if self.family == "roberta":
                # RoBERTa counts positions from padding_idx + 1 and leaves pads at padding_idx.
                pad = emb.padding_idx
                not_pad = input_ids.ne(pad).int()
                position_ids = (torch.cumsum(not_pad, dim=1) * not_pad).long() + pad
            extra = {"mask": attention_mask} if self.family == "deberta-v2" else {}  # DeBERTa zeroes pads
            hidden = emb(
                input_ids=None,
                token_type_ids=token_type_ids,
                position_ids=position_ids,
                inputs_embeds=inputs_embeds,
                **extra,
            )
        projection = self.embedding_projection()
        if projection is not None:
            hidden = projection(hidden)
        return hidden

    def classify(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, num_labels) from the last hidden states (B, T, hidden). Eval-mode only.

        `attention_mask` (B, T) is read only by ModernBERT's mean pooling (absent: every token counts).
        """
        m = self.model
        if self.model_type == "bert":
            pooled = m.bert.pooler(hidden) if m.bert.pooler is not None else hidden[:, 0]
            return m.classifier(pooled)
        if self.family in ("roberta", "electra"):
            return m.classifier(hidden)
        if self.model_type == "distilbert":
            return m.classifier(F.relu(m.pre_classifier(hidden[:, 0])))
        if self.family == "deberta-v2":
            return m.classifier(m.pooler(hidden))  # ContextPooler: act(dense(hidden[:, 0]))
        if self.family == "modernbert":
            hidden = m.model.final_norm(hidden)  # (B, T, D)
            if m.config.classifier_pooling == "mean":
                if attention_mask is None:
                    attention_mask = torch.ones(hidden.shape[:2], dtype=hidden.dtype, device=hidden.device)
                w = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
                pooled = (hidden * w).sum(dim=1) / attention_mask.sum(dim=1, keepdim=True).to(hidden.dtype)
            else:  # "cls"
                pooled = hidden[:, 0]
            return m.classifier(m.head(pooled))  # head: norm(act(dense(pooled)))
        pooled = m.albert.pooler_activation(m.albert.pooler(hidden[:, 0]))  # albert
        return m.classifier(pooled)


# ------------------------------------------------------------------------------- config checks
def _check_deberta(config, head_size: int) -> None:
    """Headroom's DeBERTa forward follows what DeBERTa-v2/v3 checkpoints use; refuse the rest in one sentence."""
    pos_att_type = list(config.pos_att_type or [])
    unknown = [t for t in pos_att_type if t not in ("c2p", "p2c")]
    if unknown:
        raise HeadroomError(f"DeBERTa pos_att_type {'|'.join(unknown)} is not supported; Headroom runs c2p and p2c.")
    if getattr(config, "relative_attention", False) and pos_att_type and not getattr(config, "share_att_key", False):
        raise HeadroomError("DeBERTa with share_att_key = false (separate position projections, as in DeBERTa-v1 "
                            "style configs) is not supported; DeBERTa-v2/v3 checkpoints share them.")
    if getattr(config, "conv_kernel_size", 0) or 0:
        raise HeadroomError("DeBERTa with a convolution layer (conv_kernel_size > 0, DeBERTa-v2 xlarge/xxlarge) "
                            "is not supported.")
    hs = getattr(config, "attention_head_size", None)
    if hs is not None and hs != head_size:
        raise HeadroomError(f"DeBERTa with attention_head_size {hs} != hidden_size / heads ({head_size}) "
                            "is not supported.")
    if getattr(config, "pooler_hidden_size", config.hidden_size) != config.hidden_size:
        raise HeadroomError("DeBERTa whose pooler_hidden_size differs from hidden_size cannot run its classifier.")


def _check_modernbert(config) -> None:
    """ModernBERT: static RoPE (global and local theta), full or sliding attention, cls or mean pooling.

    The cos/sin tables come from the model's own rotary module, so any RoPE whose tables depend
    only on the config works (default, linear, ...); the dynamic kinds rewrite the module's
    buffers with the sequence length, which a read-only simulation must not do.
    """
    for kind, params in (config.rope_parameters or {}).items():
        rope_type = (params or {}).get("rope_type", "default")
        if rope_type in ("dynamic", "longrope"):
            raise HeadroomError(f"ModernBERT with rope_type '{rope_type}' for {kind} is not supported; its rotary "
                                "tables change with the sequence length (use a static RoPE such as default or linear).")
    odd = sorted(set(config.layer_types) - {"full_attention", "sliding_attention"})
    if odd:
        raise HeadroomError(f"ModernBERT layer type(s) {', '.join(odd)} are not supported.")
    if config.classifier_pooling not in ("cls", "mean"):
        raise HeadroomError(f"ModernBERT classifier_pooling '{config.classifier_pooling}' is not supported (cls or mean).")
