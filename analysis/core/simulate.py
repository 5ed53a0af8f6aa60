"""Simulate a Recipe on a loaded model without changing it.

The loaded HuggingFace model may be shared by several dashboard sessions at once, so simulation
never writes to its weights and never registers a hook. Instead it *reads* each layer's weights
through the architecture adapter into a `LayerWeights` record — with masked heads sliced out and
weights fake-quantised as the Recipe asks — and runs an explicit, flat forward pass over those
records (`encoder_layer` below, readable top to bottom like HF's own BERT layer). Embeddings and
the classification head are the model's own modules, called as pure functions.

Why slice masked heads out instead of multiplying by a zero gate? Both give the same logits (a
test checks it against the materialized model); slicing also saves the FLOPs, which is what makes
what-ifs fast. Gates are still available (`gates=`) for gradient-based head importance
(Michel et al. 2019), where dL/d(gate) is the score.

Incremental evaluation: the hidden states entering every layer of the *unmodified* model are
cached per batch (`BaselineTrace`); a Recipe whose first change is at layer k only runs layers
k..L-1 (see `Recipe.first_changed_layer`). Exact, because layers before k are untouched.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from analysis.core.adapters import Adapter
from analysis.core.quantize import fake_quantize, fake_quantize_activations
from analysis.core.recipe import Recipe

ROLES = ("query", "key", "value", "attention_output", "ffn_in", "ffn_out")


@dataclass
class LayerWeights:
    """Everything one encoder layer needs, already sliced and (fake-)quantised."""

    index: int  # layer index in the original model
    heads: list[int]  # original indices of the heads kept, in order
    head_size: int
    wq: torch.Tensor  # (nh*hs, D)
    bq: torch.Tensor
    wk: torch.Tensor
    bk: torch.Tensor
    wv: torch.Tensor
    bv: torch.Tensor
    wo: torch.Tensor  # (D, nh*hs)
    bo: torch.Tensor
    ln1: tuple  # (weight, bias, eps) of LN(x + attention)
    w1: torch.Tensor  # (I, D)
    b1: torch.Tensor
    w2: torch.Tensor  # (D, I)
    b2: torch.Tensor
    ln2: tuple  # (weight, bias, eps) of LN(a + FFN(a))
    activation: object
    activation_bits: int = 32

    @property
    def num_heads(self) -> int:
        return len(self.heads)


def _head_rows(heads: list[int], head_size: int, device) -> torch.Tensor:
    return torch.cat([torch.arange(h * head_size, (h + 1) * head_size, device=device) for h in heads]) if heads else torch.zeros(0, dtype=torch.long, device=device)


@torch.no_grad()
def prepare_layer(adapter: Adapter, index: int, recipe: Recipe, dtype: torch.dtype | None = None) -> LayerWeights:
    """Read layer `index` into a LayerWeights with the recipe's head slicing and bits applied."""
    parts = adapter.layer(index)
    hs = adapter.head_size
    heads = recipe.kept_heads(index, adapter.heads_in_layer(index))
    bits = recipe.layer_bits(adapter.num_layers)[index]
    device = parts.query.weight.device
    rows = _head_rows(heads, hs, device)

    def weight(role: str, linear) -> torch.Tensor:
        w = fake_quantize(
            linear.weight, bits, granularity=recipe.granularity, symmetric=recipe.symmetric,
            role=role, head_size=hs, num_groups=recipe.num_groups,
        )
        # Quantise the full matrix first, then slice: per-head ranges are per-head anyway, and
        # per-tensor ranges should not depend on which heads a user happens to mask.
        if role in ("query", "key", "value"):
            w = w.index_select(0, rows)
        elif role == "attention_output":
            w = w.index_select(1, rows)
        return w if dtype is None else w.to(dtype)

    def vec(t: torch.Tensor) -> torch.Tensor:
        return t if dtype is None else t.to(dtype)

    def ln(m) -> tuple:
        return (vec(m.weight), vec(m.bias), m.eps)

    return LayerWeights(
        index=index,
        heads=heads,
        head_size=hs,
        wq=weight("query", parts.query), bq=vec(parts.query.bias.index_select(0, rows)),
        wk=weight("key", parts.key), bk=vec(parts.key.bias.index_select(0, rows)),
        wv=weight("value", parts.value), bv=vec(parts.value.bias.index_select(0, rows)),
        wo=weight("attention_output", parts.attention_output), bo=vec(parts.attention_output.bias),
        ln1=ln(parts.attention_layernorm),
        w1=weight("ffn_in", parts.ffn_in), b1=vec(parts.ffn_in.bias),
        w2=weight("ffn_out", parts.ffn_out), b2=vec(parts.ffn_out.bias),
        ln2=ln(parts.ffn_layernorm),
        activation=adapter.activation,
        activation_bits=recipe.activation_bits,
    )


def additive_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, T) 1/0 mask -> (B, 1, 1, T) additive mask: 0 where attended, very negative on pads."""
    return (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


def encoder_layer(
    x: torch.Tensor,  # (B, T, D) hidden states entering the layer
    mask: torch.Tensor,  # (B, 1, 1, T) additive attention mask
    lw: LayerWeights,
    gates: torch.Tensor | None = None,  # (nh,) or per example (B, nh): multiplies each kept head's output
    return_probs: bool = False,
):
    """One post-LN Transformer encoder layer (BERT, RoBERTa, ELECTRA, DistilBERT, ALBERT)."""
    B, T, D = x.shape
    nh, hs = lw.num_heads, lw.head_size
    probs = None
    xin = fake_quantize_activations(x, lw.activation_bits)
    if nh == 0:
        # Every head masked: the attention block contributes only W_O's bias.
        attn_out = lw.bo.expand(B, T, D)
    else:
        q = F.linear(xin, lw.wq, lw.bq).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = F.linear(xin, lw.wk, lw.bk).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = F.linear(xin, lw.wv, lw.bv).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        if return_probs:
            scores = (q @ k.transpose(-1, -2)) * hs**-0.5 + mask  # (B, nh, T, T)
            probs = scores.softmax(dim=-1)
            ctx = probs @ v  # (B, nh, T, hs)
        else:
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype), scale=hs**-0.5)
        if gates is not None:
            ctx = ctx * gates.view(-1, nh, 1, 1).to(ctx.dtype)  # (1 or B, nh, 1, 1)
        ctx = ctx.transpose(1, 2).reshape(B, T, nh * hs)  # (B, T, nh*hs)
        attn_out = F.linear(fake_quantize_activations(ctx, lw.activation_bits), lw.wo, lw.bo)
    a = F.layer_norm(x + attn_out, (D,), *lw.ln1)
    h = lw.activation(F.linear(fake_quantize_activations(a, lw.activation_bits), lw.w1, lw.b1))  # (B, T, I)
    f = F.linear(fake_quantize_activations(h, lw.activation_bits), lw.w2, lw.b2)
    out = F.layer_norm(a + f, (D,), *lw.ln2)
    return out, probs


@dataclass
class ForwardOutput:
    logits: torch.Tensor  # (B, num_labels)
    attentions: list[torch.Tensor | None] | None = None  # per original layer: (B, nh_kept, T, T)
    hidden_states: list[torch.Tensor] | None = None  # entering each original layer, + final


class SimulatedModel:
    """A Recipe applied to a loaded model: prepared weights plus a forward pass. Read-only."""

    def __init__(self, adapter: Adapter, recipe: Recipe, dtype: torch.dtype | None = None):
        adapter.validate(recipe)
        self.adapter = adapter
        self.recipe = recipe
        self.dtype = dtype
        dropped = set(recipe.dropped_layers)
        self.layers: dict[int, LayerWeights] = {
            i: prepare_layer(adapter, i, recipe, dtype) for i in range(adapter.num_layers) if i not in dropped
        }
        self.word_embedding_weight = None
        if recipe.embedding_bits != 32:
            self.word_embedding_weight = fake_quantize(
                adapter.word_embeddings.weight, recipe.embedding_bits, granularity=recipe.granularity,
                symmetric=recipe.symmetric, role="embedding", head_size=adapter.head_size,
                num_groups=recipe.num_groups,
            )

    def embed(self, batch) -> torch.Tensor:
        h = self.adapter.embed(batch.input_ids, batch.attention_mask, batch.token_type_ids, self.word_embedding_weight)
        return h if self.dtype is None else h.to(self.dtype)

    def forward(
        self,
        batch,
        *,
        start_layer: int = 0,
        hidden: torch.Tensor | None = None,
        gates: dict[int, torch.Tensor] | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> ForwardOutput:
        """Run from `start_layer` (given the `hidden` entering it) or from the embeddings."""
        if hidden is None:
            hidden, start_layer = self.embed(batch), 0
        mask = additive_mask(batch.attention_mask, hidden.dtype)
        attentions = [None] * self.adapter.num_layers if output_attentions else None
        states = [] if output_hidden_states else None
        for i in range(start_layer, self.adapter.num_layers):
            if states is not None:
                states.append(hidden)
            lw = self.layers.get(i)
            if lw is None:  # dropped: the identity
                continue
            g = gates.get(i) if gates else None
            hidden, probs = encoder_layer(hidden, mask, lw, g, return_probs=output_attentions)
            if attentions is not None:
                attentions[i] = probs
        if states is not None:
            states.append(hidden)
        logits = self.adapter.classify(hidden.to(self.adapter.model.dtype))
        return ForwardOutput(logits=logits.float(), attentions=attentions, hidden_states=states)

    __call__ = forward


class SimulatorCache:
    """Prepared SimulatedModels per (recipe, dtype), LRU, safe to share between threads."""

    def __init__(self, adapter: Adapter, max_entries: int = 16):
        self.adapter = adapter
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple, SimulatedModel] = OrderedDict()

    def get(self, recipe: Recipe, dtype: torch.dtype | None = None) -> SimulatedModel:
        key = (recipe.key(), str(dtype))
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        sim = SimulatedModel(self.adapter, recipe, dtype)  # built outside the lock; pure
        with self._lock:
            self._entries[key] = sim
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return sim


def simulate(adapter: Adapter, recipe: Recipe, dtype: torch.dtype | None = None) -> SimulatedModel:
    """Apply `recipe` to the adapter's model for evaluation, without modifying the model."""
    return SimulatedModel(adapter, recipe, dtype)
