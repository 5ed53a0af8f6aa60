"""Architecture adapters: where things live in each BERT-family sequence classifier.

Everything in Headroom (simulation, materialisation, importance, profiling) is written once
against this small table instead of once per architecture. An adapter knows, for BERT (MiniLM is
BERT), RoBERTa, ELECTRA, DistilBERT and ALBERT:

- where the encoder layers are, and inside each layer the Q/K/V projections, the attention output
  projection, the two FFN linears and the two LayerNorms (all five are post-LN encoders with the
  same dataflow, so one functional layer, `analysis.core.simulate.encoder_layer`, serves them all);
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


@dataclass(frozen=True)
class LayerParts:
    """The modules of one encoder layer, in the order the data flows through them."""

    query: nn.Linear
    key: nn.Linear
    value: nn.Linear
    attention_output: nn.Linear  # W_O: concatenated heads -> hidden
    attention_layernorm: nn.LayerNorm  # LN(x + W_O ctx)
    ffn_in: nn.Linear  # hidden -> intermediate
    ffn_out: nn.Linear  # intermediate -> hidden
    ffn_layernorm: nn.LayerNorm  # LN(a + FFN(a))


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
        self.num_layers: int = getattr(config, self.spec.num_layers_attr)
        self.num_heads: int = getattr(config, self.spec.num_heads_attr)
        self.hidden_size: int = getattr(config, self.spec.hidden_attr)
        self.head_size: int = self.hidden_size // self.num_heads
        self.activation = ACT2FN[getattr(config, self.spec.activation_attr)]
        if model_type == "albert" and getattr(config, "inner_group_num", 1) != 1:
            raise HeadroomError("ALBERT models with inner_group_num > 1 are not supported.")

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
        return LayerParts(
            query=_get(module, s.query),
            key=_get(module, s.key),
            value=_get(module, s.value),
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

    def validate(self, recipe) -> None:
        """Check a Recipe against this model (layers, heads per layer, bits); raise HeadroomError."""
        recipe.validate(self.num_layers, self.num_heads)
        for layer, head in recipe.masked_heads:
            n = self.heads_in_layer(layer)
            if head >= n:
                raise HeadroomError(
                    f"Head {layer}:{head} does not exist; layer {layer} of this pruned model has {n} heads (0-{n - 1})."
                )
        problem = self._num_groups_problem(recipe)
        if problem:
            raise HeadroomError(problem)

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
        return self.embeddings.word_embeddings

    def embedding_projection(self) -> nn.Linear | None:
        """ELECTRA-small and ALBERT embed in a smaller size and project up to the hidden size."""
        if self.model_type == "electra":
            return getattr(self.base, "embeddings_project", None)
        if self.model_type == "albert":
            return self.base.encoder.embedding_hidden_mapping_in
        return None

    def classifier_modules(self) -> dict[str, nn.Module]:
        """Modules after the encoder (pooler + classifier), for counting and profiling."""
        m = self.model
        if self.model_type == "bert":
            mods = {"classifier": m.classifier}
            if m.bert.pooler is not None:
                mods = {"pooler": m.bert.pooler.dense, **mods}
            return mods
        if self.model_type in ("roberta", "electra"):
            return {"pooler": m.classifier.dense, "classifier": m.classifier.out_proj}
        if self.model_type == "distilbert":
            return {"pooler": m.pre_classifier, "classifier": m.classifier}
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
        else:
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(input_ids)
            position_ids = None
            if self.model_type == "roberta":
                # RoBERTa counts positions from padding_idx + 1 and leaves pads at padding_idx.
                pad = emb.padding_idx
                not_pad = input_ids.ne(pad).int()
                position_ids = (torch.cumsum(not_pad, dim=1) * not_pad).long() + pad
            hidden = emb(
                input_ids=None,
                token_type_ids=token_type_ids,
                position_ids=position_ids,
                inputs_embeds=inputs_embeds,
            )
        projection = self.embedding_projection()
        if projection is not None:
            hidden = projection(hidden)
        return hidden

    def classify(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_labels) from the last hidden states (B, T, hidden). Eval-mode only."""
        m = self.model
        if self.model_type == "bert":
            pooled = m.bert.pooler(hidden) if m.bert.pooler is not None else hidden[:, 0]
            return m.classifier(pooled)
        if self.model_type in ("roberta", "electra"):
            return m.classifier(hidden)
        if self.model_type == "distilbert":
            return m.classifier(F.relu(m.pre_classifier(hidden[:, 0])))
        pooled = m.albert.pooler_activation(m.albert.pooler(hidden[:, 0]))  # albert
        return m.classifier(pooled)
