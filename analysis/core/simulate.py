"""Simulate a Recipe on a loaded model without changing it.

The loaded HuggingFace model may be shared by several dashboard sessions at once, so simulation
never writes to its weights and never registers a hook. Instead it *reads* each layer's weights
through the architecture adapter into a `LayerWeights` record — with masked heads sliced out and
weights fake-quantised as the Recipe asks — and runs an explicit, flat forward pass over those
records (`encoder_layer` below, readable top to bottom like HF's own BERT layer; DeBERTa's and
ModernBERT's layers are in `analysis.core.families`, chosen by the adapter's `layer_forward`).
Embeddings and the classification head are the model's own modules, called as pure functions.

Why slice masked heads out instead of multiplying by a zero gate? Both give the same logits (a
test checks it against the materialized model); slicing also saves the FLOPs, which is what makes
what-ifs fast. Gates are still available (`gates=`) for gradient-based head importance
(Michel et al. 2019), where dL/d(gate) is the score.

Incremental evaluation: the hidden states entering every layer of the *unmodified* model are
cached per batch (`BaselineTrace`); a Recipe whose first change is at layer k only runs layers
k..L-1 (see `Recipe.first_changed_layer`). Exact, because layers before k are untouched.

There is one forward. The profiler times it through the optional `timer` (a context manager per
component block, `measure/stopwatch.py`); evaluation, importance and sensitivity run the same
code with no timer. Anything new in the layer (FFN neurons, sparsity, low rank) goes here once.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, ContextManager, NamedTuple

import torch
import torch.nn.functional as F

from analysis.core.adapters import EMBEDDING_ROLE, ROLES, Adapter, head_axis
from analysis.core.quantize import QuantScheme, fake_quantize, fake_quantize_activations
from analysis.core.recipe import Recipe
from analysis.core.lowrank import factorized_embedding_weight, low_rank
from analysis.core.sharing import shared_parts
from analysis.core.sparsity import magnitude_masks, sparsify

#: `timer(component, layer)` returns a context manager that times the block it wraps (the
#: profiler's stopwatch); components are `flops.COMPONENTS`, layer None outside the encoder.
Timer = Callable[[str, "int | None"], ContextManager]
_UNTIMED = nullcontext()  # reusable and re-entrant: an absent timer costs one call per block


def _untimed(component: str, layer: int | None) -> ContextManager:
    return _UNTIMED


class LinearWeights(NamedTuple):
    """One linear layer's (weight, bias), so the forward reads `F.linear(x, *lw.query)`."""

    weight: torch.Tensor  # (out, in)
    bias: torch.Tensor  # (out,)


@dataclass
class LayerWeights:
    """Everything one encoder layer needs, already sliced and (fake-)quantised.

    The six linear layers are named by their roles (`adapters.ROLES`), as in `LayerParts`.
    """

    index: int  # layer index in the original model
    heads: list[int]  # original indices of the heads kept, in order
    neurons: list[int]  # original indices of the FFN intermediate units kept, in order
    head_size: int
    query: LinearWeights  # (nh*hs, D), (nh*hs,); a bias is None where the model has none (ModernBERT)
    key: LinearWeights  # (nh*hs, D), (nh*hs,)
    value: LinearWeights  # (nh*hs, D), (nh*hs,)
    attention_output: LinearWeights  # W_O: (D, nh*hs), (D,)
    attention_layernorm: tuple | None  # (weight, bias, eps) of LN(x + attention); pre-LN: LN(x), None if absent
    ffn_in: LinearWeights  # (I, D), (I,)
    ffn_out: LinearWeights  # (D, I), (D,)
    ffn_layernorm: tuple  # (weight, bias, eps) of LN(a + FFN(a)); pre-LN: LN(a) entering the FFN
    activation: object
    activation_bits: int = 32
    attention_type: str | None = None  # ModernBERT: "full_attention" | "sliding_attention" (mask, rotary)

    @property
    def num_heads(self) -> int:
        return len(self.heads)

    def weight(self, role: str) -> torch.Tensor:
        return getattr(self, role).weight

    def with_weights(self, weights: dict[str, torch.Tensor]) -> "LayerWeights":
        """A copy with some roles' weight matrices replaced (biases kept), e.g. by gradient leaves."""
        return dataclasses.replace(self, **{r: getattr(self, r)._replace(weight=w) for r, w in weights.items()})


def _head_rows(heads: list[int], head_size: int, device) -> torch.Tensor:
    return torch.cat([torch.arange(h * head_size, (h + 1) * head_size, device=device) for h in heads]) if heads else torch.zeros(0, dtype=torch.long, device=device)


@torch.no_grad()
def prepare_layer(adapter: Adapter, index: int, recipe: Recipe, dtype: torch.dtype | None = None,
                  zeroed: dict | None = None, shared: dict | None = None) -> LayerWeights:
    """Read layer `index` into a LayerWeights with the recipe's sparsity, head/neuron slicing and bits applied.

    `zeroed` are the recipe's magnitude masks (`sparsity.magnitude_masks`, computed once for all
    layers because a global threshold needs them all); None computes nothing (no sparsity).
    `shared` are the weights shared layers read (`sharing.shared_parts`, once for all layers);
    None computes them when the recipe shares layers.
    """
    if shared is None:
        shared = shared_parts(adapter, recipe)
    parts = shared.get(index) or adapter.layer(index)  # sharing applies first
    hs = adapter.head_size
    heads = recipe.kept_heads(index, adapter.heads_in_layer(index))
    scheme = QuantScheme.for_layer(recipe, index, adapter.num_layers)
    rows = _head_rows(heads, hs, parts.query.weight.device)
    intermediate = adapter.intermediate_size(index)
    neurons = recipe.kept_neurons(index, intermediate)
    units = None if len(neurons) == intermediate else torch.as_tensor(neurons, dtype=torch.long,
                                                                      device=parts.ffn_out.weight.device)

    def cast(t: torch.Tensor | None) -> torch.Tensor | None:
        return t if dtype is None or t is None else t.to(dtype)

    def linear(role: str) -> LinearWeights:
        lin = getattr(parts, role)
        # Zero the sparse weights, quantise the full matrix, then slice: per-head ranges are per-head
        # anyway, and per-tensor ranges should not depend on which heads a user happens to mask.
        w = sparsify(lin.weight, (zeroed or {}).get((index, role)))
        w, b = fake_quantize(w, scheme, role, hs), lin.bias
        axis = head_axis(role)
        if axis is not None:
            w = w.index_select(axis, rows)
        if axis == 0 and b is not None:  # W_Q/W_K/W_V's biases are per head too; W_O's is per hidden unit
            b = b.index_select(0, rows)
        if units is not None and role == "ffn_in":  # unit j: row j (and I + j, the gate half, when gated)
            ffn_rows = adapter.ffn_in_rows(index, units)
            w, b = w.index_select(0, ffn_rows), (None if b is None else b.index_select(0, ffn_rows))
        if units is not None and role == "ffn_out":  # unit j: column j; the bias is per hidden unit
            w = w.index_select(1, units)
        rank = recipe.rank_of(index, role)
        if rank is not None:  # truncated SVD of the matrix as it would run (sparse, quantised, sliced)
            w = low_rank(w, rank)
        return LinearWeights(cast(w), cast(b))

    def layernorm(m) -> tuple | None:
        if isinstance(m, torch.nn.Identity):  # ModernBERT's layer 0: no norm before attention
            return None
        return (cast(m.weight), cast(m.bias), m.eps)

    return LayerWeights(
        index=index,
        heads=heads,
        neurons=neurons,
        head_size=hs,
        **{role: linear(role) for role in ROLES},
        attention_layernorm=layernorm(parts.attention_layernorm),
        ffn_layernorm=layernorm(parts.ffn_layernorm),
        activation=adapter.activation,
        activation_bits=recipe.activation_bits,
        attention_type=adapter.attention_type(index),
    )


def additive_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, T) 1/0 mask -> (B, 1, 1, T) additive mask: 0 where attended, very negative on pads."""
    return (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


def attention_context(adapter: Adapter, attention_mask: torch.Tensor, dtype: torch.dtype):
    """What every layer's attention needs besides its weights, built once per batch.

    Post-LN families: the additive padding mask (B, 1, 1, T). DeBERTa: the pairwise mask and the
    relative positions/embeddings; ModernBERT: masks and rotary tables per layer type.
    """
    if adapter.layer_forward == "post-ln":
        return additive_mask(attention_mask, dtype)
    from analysis.core import families

    build = families.deberta_context if adapter.layer_forward == "deberta" else families.modernbert_context
    return build(adapter, attention_mask, dtype)


def layer_forward(adapter: Adapter) -> Callable:
    """The functional layer for the adapter's family: `encoder_layer` or one of `families`."""
    if adapter.layer_forward == "post-ln":
        return encoder_layer
    from analysis.core import families

    return families.deberta_layer if adapter.layer_forward == "deberta" else families.modernbert_layer


def encoder_layer(
    x: torch.Tensor,  # (B, T, D) hidden states entering the layer
    mask: torch.Tensor,  # (B, 1, 1, T) additive attention mask
    lw: LayerWeights,
    gates: torch.Tensor | None = None,  # (nh,) or per example (B, nh): multiplies each kept head's output
    return_probs: bool = False,
    timer: Timer | None = None,  # times each component's block (the profiler); None: untimed
    neuron_gates: torch.Tensor | None = None,  # (I,) or per example (B, I): multiplies each kept FFN unit
):
    """One post-LN Transformer encoder layer (BERT, RoBERTa, ELECTRA, DistilBERT, ALBERT).

    The blocks are the profile's components (`flops.COMPONENTS`), so `timer` sees exactly the
    pieces that parameters and FLOPs are counted for.
    """
    B, T, D = x.shape
    nh, hs, i = lw.num_heads, lw.head_size, lw.index
    timer = timer or _untimed
    act_bits = lw.activation_bits
    probs = None
    if nh == 0:
        # Every head masked: the attention block contributes only W_O's bias.
        with timer("attention_output", i):
            attn_out = lw.attention_output.bias.expand(B, T, D)
    else:
        with timer("attention_qkv", i):
            xin = fake_quantize_activations(x, act_bits)
            q = F.linear(xin, *lw.query).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
            k = F.linear(xin, *lw.key).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
            v = F.linear(xin, *lw.value).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        with timer("attention_scores", i):
            if return_probs:
                scores = (q @ k.transpose(-1, -2)) * hs**-0.5 + mask  # (B, nh, T, T)
                probs = scores.softmax(dim=-1)
                ctx = probs @ v  # (B, nh, T, hs)
            else:
                ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype), scale=hs**-0.5)
            if gates is not None:
                ctx = ctx * gates.view(-1, nh, 1, 1).to(ctx.dtype)  # (1 or B, nh, 1, 1)
            ctx = ctx.transpose(1, 2).reshape(B, T, nh * hs)  # (B, T, nh*hs)
        with timer("attention_output", i):
            attn_out = F.linear(fake_quantize_activations(ctx, act_bits), *lw.attention_output)  # (B, T, D)
    with timer("layernorm", i):
        a = F.layer_norm(x + attn_out, (D,), *lw.attention_layernorm)
    with timer("ffn_in", i):
        h = lw.activation(F.linear(fake_quantize_activations(a, act_bits), *lw.ffn_in))  # (B, T, I)
        h = gate_neurons(h, neuron_gates)
    with timer("ffn_out", i):
        f = F.linear(fake_quantize_activations(h, act_bits), *lw.ffn_out)  # (B, T, D)
    with timer("layernorm", i):
        out = F.layer_norm(a + f, (D,), *lw.ffn_layernorm)
    return out, probs


def gate_neurons(h: torch.Tensor, neuron_gates: torch.Tensor | None) -> torch.Tensor:
    """(B, T, I) intermediate activations times one gate per kept unit ((I,) or per example (B, I))."""
    if neuron_gates is None:
        return h
    return h * neuron_gates.view(-1, 1, h.shape[-1]).to(h.dtype)  # (1 or B, 1, I)


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
        shared = shared_parts(adapter, recipe)  # the weights a group's layers read, one copy per group
        zeroed = magnitude_masks(adapter, recipe, shared)
        self.layers: dict[int, LayerWeights] = {
            i: prepare_layer(adapter, i, recipe, dtype, zeroed, shared) for i in range(adapter.num_layers) if i not in dropped
        }
        self.word_embedding_weight = None
        scheme = QuantScheme.for_embeddings(recipe)
        if not scheme.is_full_precision:
            self.word_embedding_weight = fake_quantize(
                adapter.word_embeddings.weight, scheme, EMBEDDING_ROLE, adapter.head_size)
        if recipe.embedding_size:  # ALBERT's V x E times E x H, from the SVD of the (quantised) table
            weight = adapter.word_embeddings.weight if self.word_embedding_weight is None else self.word_embedding_weight
            with torch.no_grad():
                self.word_embedding_weight = factorized_embedding_weight(weight, recipe.embedding_size)

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
        neuron_gates: dict[int, torch.Tensor] | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        timer: Timer | None = None,
    ) -> ForwardOutput:
        """Run from `start_layer` (given the `hidden` entering it) or from the embeddings.

        `timer(component, layer)` times every block (see `encoder_layer`); None runs untimed.
        `gates` / `neuron_gates` map a layer to gates on its kept heads / kept FFN units (importance).
        """
        timed = timer or _untimed
        with timed("embeddings", None):
            if hidden is None:
                hidden, start_layer = self.embed(batch), 0
            mask = attention_context(self.adapter, batch.attention_mask, hidden.dtype)
        run_layer = layer_forward(self.adapter)
        attentions = [None] * self.adapter.num_layers if output_attentions else None
        states = [] if output_hidden_states else None
        for i in range(start_layer, self.adapter.num_layers):
            if states is not None:
                states.append(hidden)
            lw = self.layers.get(i)
            if lw is None:  # dropped: the identity
                continue
            g = gates.get(i) if gates else None
            ng = neuron_gates.get(i) if neuron_gates else None
            hidden, probs = run_layer(hidden, mask, lw, g, return_probs=output_attentions, timer=timer, neuron_gates=ng)
            if attentions is not None:
                attentions[i] = probs
        if states is not None:
            states.append(hidden)
        with timed("classifier", None):
            logits = self.adapter.classify(hidden.to(self.adapter.model.dtype), batch.attention_mask)
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
