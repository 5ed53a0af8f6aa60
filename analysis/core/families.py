"""The flat, read-only layer forwards of DeBERTa-v2/v3 and ModernBERT.

`analysis.core.simulate.encoder_layer` runs the five post-LN families (BERT, RoBERTa, ELECTRA,
DistilBERT, ALBERT). The two families here differ in their attention (and ModernBERT in where it
normalises), so each gets its own function with the same signature,

    layer(x, context, lw, gates=None, return_probs=False, timer=None) -> (out, probs)

where `lw` is the `simulate.LayerWeights` of the layer (heads already sliced, weights already
fake-quantised: nothing here reads the model) and `context` is what every layer's attention
needs besides its weights, built once per batch by `deberta_context` / `modernbert_context`
(the post-LN families' context is just the additive padding mask). The adapter's
`layer_forward` ("post-ln" | "deberta" | "pre-ln") selects the pair, see `simulate.layer_forward`.

Both follow transformers 5.23's modeling code (models/deberta_v2/modeling_deberta_v2.py,
models/modernbert/modeling_modernbert.py) in eval mode with eager attention, step for step, so
their logits equal the HF model's; tests/test_equivalence.py and tests/test_families.py check it.

DeBERTa (He et al. 2021): scores = (Q K^T + c2p + p2c) / sqrt(hs * scale_factor), where
- c2p[i, j] = Q_i . K_r[δ(i, j)]  (content of the query -> position of the key),
- p2c[i, j] = K_j . Q_r[δ(j, i)]  (position of the query -> content of the key),
- K_r = W_K r + b_K and Q_r = W_Q r + b_Q: the layer's own key/query projections applied to the
  shared relative-position embeddings r (2*span, D), LayerNorm'd once ("share_att_key"),
- δ(i, j) = clamp(bucket(i - j) + span, 0, 2*span - 1) with log-spaced buckets beyond span/2,
- scale_factor = 1 + (c2p in pos_att_type) + (p2c in pos_att_type).
Padding is masked on both sides (query i and key j must both be real tokens), as HF does.
Because K_r and Q_r come from W_K and W_Q, slicing heads out of W_K/W_Q slices them too.

ModernBERT (Warner et al. 2024): pre-LN, x + Attn(LN(x)), then + MLP(LN(.)); layer 0 has no
attention norm (its input is the embedding norm's output). Attention is rotary (RoPE with
`rope_theta` per layer type: global layers use the global theta, local layers the local one)
and is either global (padding mask only) or local: a bidirectional sliding window, key j
visible from query i when |i - j| <= local_attention // 2. The FFN is a GLU with one fused W_i
(2I x D): act(first half) * second half, then W_o. No biases by default.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from analysis.core.quantize import fake_quantize_activations


# ----------------------------------------------------------------------------------- DeBERTa
def log_bucket_position(relative_pos: torch.Tensor, bucket_size: int, max_position: int) -> torch.Tensor:
    """DeBERTa's position buckets: exact within ±bucket_size/2, log-spaced out to max_position."""
    sign = torch.sign(relative_pos)
    mid = bucket_size // 2
    abs_pos = torch.where((relative_pos < mid) & (relative_pos > -mid),
                          torch.tensor(mid - 1).type_as(relative_pos), torch.abs(relative_pos))
    log_pos = torch.ceil(torch.log(abs_pos / mid) / torch.log(torch.tensor((max_position - 1) / mid)) * (mid - 1)) + mid
    return torch.where(abs_pos <= mid, relative_pos.type_as(log_pos), log_pos * sign)


def relative_positions(seq_len: int, bucket_size: int, max_position: int, device) -> torch.Tensor:
    """(T, T) long: the (bucketed) relative position i - j of query i and key j."""
    ids = torch.arange(seq_len, dtype=torch.long, device=device)
    rel = ids[:, None] - ids[None, :]  # (T, T)
    if bucket_size > 0 and max_position > 0:
        rel = log_bucket_position(rel, bucket_size, max_position)
    return rel.to(torch.long)


@dataclass
class DebertaContext:
    """What every DeBERTa layer's attention needs besides its weights, for one batch."""

    keep: torch.Tensor  # (B, 1, T, T) bool: query i and key j are both real tokens
    relative_pos: torch.Tensor | None  # (T, T) long, bucketed i - j; None without relative attention
    rel_embeddings: torch.Tensor | None  # (2*span, D) shared relative embeddings (LayerNorm'd)
    span: int  # attention span: position_buckets, or max_relative_positions without buckets
    c2p: bool
    p2c: bool
    scale_factor: int  # 1 + c2p + p2c


def deberta_settings(config) -> tuple[int, int]:
    """(position_buckets, max_relative_positions) as DebertaV2Encoder resolves them."""
    buckets = getattr(config, "position_buckets", -1) or -1
    max_rel = getattr(config, "max_relative_positions", -1)
    if max_rel < 1:
        max_rel = config.max_position_embeddings
    return buckets, max_rel


def deberta_context(adapter, attention_mask: torch.Tensor, dtype: torch.dtype) -> DebertaContext:
    """Pairwise padding mask, bucketed relative positions and the normalised relative embeddings."""
    config = adapter.model.config
    m = attention_mask.bool()  # (B, T)
    keep = (m[:, None, :, None] & m[:, None, None, :])  # (B, 1, T, T)
    types = list(config.pos_att_type or [])
    c2p, p2c = "c2p" in types, "p2c" in types
    rel_pos = rel_emb = None
    span = 0
    if getattr(config, "relative_attention", False):
        buckets, max_rel = deberta_settings(config)
        span = buckets if buckets > 0 else max_rel
        rel_pos = relative_positions(attention_mask.shape[1], buckets, max_rel, attention_mask.device)
        encoder = adapter.base.encoder
        rel_emb = encoder.get_rel_embedding()[: 2 * span].to(dtype)  # (2*span, D): LN(rel_embeddings) if configured
    return DebertaContext(keep, rel_pos, rel_emb, span, c2p, p2c, 1 + c2p + p2c)


def gate_neurons(h, neuron_gates):
    from analysis.core.simulate import gate_neurons as gate

    return gate(h, neuron_gates)


def _untimed(component, layer):
    from analysis.core.simulate import _UNTIMED

    return _UNTIMED


def _heads(t: torch.Tensor, nh: int, hs: int) -> torch.Tensor:
    """(..., T, nh*hs) -> (..., nh, T, hs)."""
    return t.view(*t.shape[:-1], nh, hs).transpose(-3, -2)


def deberta_layer(
    x: torch.Tensor,  # (B, T, D) hidden states entering the layer
    ctx: DebertaContext,
    lw,  # simulate.LayerWeights
    gates: torch.Tensor | None = None,  # (nh,) or (B, nh)
    return_probs: bool = False,
    timer=None,
    neuron_gates: torch.Tensor | None = None,  # (I,) or (B, I): one gate per kept FFN unit
):
    """One DeBERTa-v2/v3 layer: disentangled self-attention, then BERT's post-LN FFN."""
    B, T, D = x.shape
    nh, hs, i = lw.num_heads, lw.head_size, lw.index
    timer = timer or _untimed
    act_bits = lw.activation_bits
    probs = None
    if nh == 0:  # every head masked: the attention block contributes only W_O's bias
        with timer("attention_output", i):
            attn_out = lw.attention_output.bias.expand(B, T, D)
    else:
        with timer("attention_qkv", i):
            xin = fake_quantize_activations(x, act_bits)
            q = _heads(F.linear(xin, *lw.query), nh, hs)  # (B, nh, T, hs)
            k = _heads(F.linear(xin, *lw.key), nh, hs)  # (B, nh, T, hs)
            v = _heads(F.linear(xin, *lw.value), nh, hs)  # (B, nh, T, hs)
        with timer("attention_scores", i):
            # HF computes the scale as a float32 tensor; the same here, for equal rounding
            scale = torch.sqrt(torch.tensor(hs, dtype=torch.float) * ctx.scale_factor).to(q.dtype)
            scores = q @ (k.transpose(-1, -2) / scale)  # (B, nh, T, T)
            if ctx.rel_embeddings is not None and (ctx.c2p or ctx.p2c):
                s = ctx.span
                rel = fake_quantize_activations(ctx.rel_embeddings.to(x.dtype), act_bits)  # (2s, D)
                bias = 0
                if ctx.c2p:  # content -> position: the query against the keys of relative positions
                    pos_k = _heads(F.linear(rel, *lw.key), nh, hs)  # (nh, 2s, hs)
                    c2p = q @ pos_k.transpose(-1, -2)  # (B, nh, T, 2s)
                    idx = (ctx.relative_pos + s).clamp(0, 2 * s - 1)  # (T, T)
                    bias = bias + c2p.gather(-1, idx.expand(B, nh, T, T)) / scale  # (B, nh, T, T)
                if ctx.p2c:  # position -> content: the key against the queries of relative positions
                    pos_q = _heads(F.linear(rel, *lw.query), nh, hs)  # (nh, 2s, hs)
                    p2c = k @ pos_q.transpose(-1, -2)  # (B, nh, T_key, 2s)
                    idx = (-ctx.relative_pos + s).clamp(0, 2 * s - 1)  # (T, T)
                    bias = bias + p2c.gather(-1, idx.expand(B, nh, T, T)).transpose(-1, -2) / scale
                scores = scores + bias
            scores = scores.masked_fill(~ctx.keep, torch.finfo(scores.dtype).min)  # pads: both sides
            p = scores.softmax(dim=-1)  # (B, nh, T, T)
            probs = p if return_probs else None
            c = p @ v  # (B, nh, T, hs)
            if gates is not None:
                c = c * gates.view(-1, nh, 1, 1).to(c.dtype)  # (1 or B, nh, 1, 1)
            c = c.transpose(1, 2).reshape(B, T, nh * hs)  # (B, T, nh*hs)
        with timer("attention_output", i):
            attn_out = F.linear(fake_quantize_activations(c, act_bits), *lw.attention_output)  # (B, T, D)
    with timer("layernorm", i):
        a = F.layer_norm(x + attn_out, (D,), *lw.attention_layernorm)
    with timer("ffn_in", i):
        h = gate_neurons(lw.activation(F.linear(fake_quantize_activations(a, act_bits), *lw.ffn_in)),
                         neuron_gates)  # (B, T, I)
    with timer("ffn_out", i):
        f = F.linear(fake_quantize_activations(h, act_bits), *lw.ffn_out)  # (B, T, D)
    with timer("layernorm", i):
        out = F.layer_norm(a + f, (D,), *lw.ffn_layernorm)
    return out, probs


# ----------------------------------------------------------------------------------- ModernBERT
@dataclass
class ModernBertContext:
    """Masks and rotary tables per layer type ("full_attention" | "sliding_attention"), for one batch."""

    masks: dict  # layer type -> additive mask: (B, 1, 1, T) global, (B, 1, T, T) local
    rotary: dict  # layer type -> (cos, sin), each (1, T, hs)


def modernbert_context(adapter, attention_mask: torch.Tensor, dtype: torch.dtype) -> ModernBertContext:
    """The padding mask (global layers), padding & |i - j| <= window (local layers), cos/sin per type."""
    config = adapter.model.config
    B, T = attention_mask.shape
    device = attention_mask.device
    neg = torch.finfo(dtype).min
    real = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T): key j is a real token
    pos = torch.arange(T, device=device)
    near = (pos[:, None] - pos[None, :]).abs() <= config.sliding_window  # (T, T); sliding_window = local_attention // 2
    zero = torch.zeros((), dtype=dtype, device=device)
    masks = {
        "full_attention": torch.where(real, zero, neg),  # (B, 1, 1, T)
        "sliding_attention": torch.where(real & near, zero, neg),  # (B, 1, T, T)
    }
    probe = torch.empty(0, dtype=dtype, device=device)  # the rotary module reads only dtype and device
    position_ids = pos[None]  # (1, T)
    rope = adapter.base.rotary_emb
    rotary = {t: rope(probe, position_ids, t) for t in set(config.layer_types)}  # (1, T, hs) each
    return ModernBertContext(masks, rotary)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary(t: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE on (B, nh, T, hs) with (1, T, hs) tables, in at least fp32 as HF does."""
    up = t.to(torch.promote_types(t.dtype, torch.float32))
    cos, sin = cos[:, None], sin[:, None]  # (1, 1, T, hs)
    return (up * cos + rotate_half(up) * sin).to(t.dtype)


def modernbert_layer(
    x: torch.Tensor,  # (B, T, D) hidden states entering the layer
    ctx: ModernBertContext,
    lw,  # simulate.LayerWeights (attention_type says global or local)
    gates: torch.Tensor | None = None,  # (nh,) or (B, nh)
    return_probs: bool = False,
    timer=None,
    neuron_gates: torch.Tensor | None = None,  # (I,) or (B, I): one gate per kept FFN unit
):
    """One ModernBERT layer: x + Attn(LN(x)), then + GLU-MLP(LN(.)); pre-LN, rotary attention."""
    B, T, D = x.shape
    nh, hs, i = lw.num_heads, lw.head_size, lw.index
    timer = timer or _untimed
    act_bits = lw.activation_bits
    probs = None
    with timer("layernorm", i):
        h = x if lw.attention_layernorm is None else F.layer_norm(x, (D,), *lw.attention_layernorm)
    if nh == 0:  # every head masked: only W_O's bias (if any) is left
        with timer("attention_output", i):
            b = lw.attention_output.bias
            attn_out = torch.zeros_like(x) if b is None else b.expand(B, T, D)
    else:
        with timer("attention_qkv", i):
            hin = fake_quantize_activations(h, act_bits)
            q = _heads(F.linear(hin, *lw.query), nh, hs)  # (B, nh, T, hs)
            k = _heads(F.linear(hin, *lw.key), nh, hs)  # (B, nh, T, hs)
            v = _heads(F.linear(hin, *lw.value), nh, hs)  # (B, nh, T, hs)
        with timer("attention_scores", i):
            cos, sin = ctx.rotary[lw.attention_type]
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
            mask = ctx.masks[lw.attention_type].to(q.dtype)
            if return_probs:
                scores = (q @ k.transpose(-1, -2)) * hs**-0.5 + mask  # (B, nh, T, T)
                probs = scores.softmax(dim=-1)
                c = probs @ v  # (B, nh, T, hs)
            else:
                c = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=hs**-0.5)
            if gates is not None:
                c = c * gates.view(-1, nh, 1, 1).to(c.dtype)  # (1 or B, nh, 1, 1)
            c = c.transpose(1, 2).reshape(B, T, nh * hs)  # (B, T, nh*hs)
        with timer("attention_output", i):
            attn_out = F.linear(fake_quantize_activations(c, act_bits), *lw.attention_output)  # (B, T, D)
    with timer("layernorm", i):
        a = x + attn_out
        m = F.layer_norm(a, (D,), *lw.ffn_layernorm)
    with timer("ffn_in", i):
        up, gate = F.linear(fake_quantize_activations(m, act_bits), *lw.ffn_in).chunk(2, dim=-1)  # (B, T, I) each
        g = gate_neurons(lw.activation(up) * gate, neuron_gates)  # (B, T, I)
    with timer("ffn_out", i):
        f = F.linear(fake_quantize_activations(g, act_bits), *lw.ffn_out)  # (B, T, D)
    return a + f, probs
