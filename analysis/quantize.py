"""Weight fake-quantisation and honest size accounting.

Fake quantisation rounds a weight matrix to `bits`-bit integers and maps it straight back to
floats, so the forward pass sees exactly the values an integer kernel would use, while the maths
still runs in floating point. Numbers that come from this path are *simulated*.

Granularity decides which weights share one range (a scale, plus a zero-point if asymmetric):
- per-tensor:  one range per matrix (Q8BERT);
- per-channel: one per output row;
- per-head:    one per attention head's slice — rows of W_Q/W_K/W_V, columns of W_O (Q-BERT's
               group-wise quantisation, which the paper shows matters most below 4 bits);
               FFN matrices, which have no heads, use `num_groups` row groups;
- groups:      `num_groups` equal row groups per matrix (Q-BERT's "N groups").
Ranges cost memory too: each is counted as a 32-bit scale (plus a 32-bit zero-point when
asymmetric) in `quantized_bytes`.
"""

from __future__ import annotations

import math

import torch

FP16_BITS = 16
FULL_BITS = 32


def _group_view(weight: torch.Tensor, granularity: str, *, role: str, head_size: int, num_groups: int):
    """Reshape `weight` (out, in) to (G, n) so each row is one range; return (view, restore)."""
    out_features, in_features = weight.shape
    if granularity == "per-tensor":
        return weight.reshape(1, -1), lambda g: g.reshape(out_features, in_features)
    if granularity == "per-channel":
        return weight, lambda g: g
    if granularity == "per-head" and role in ("query", "key", "value"):
        heads = out_features // head_size
        return weight.reshape(heads, -1), lambda g: g.reshape(out_features, in_features)
    if granularity == "per-head" and role == "attention_output":
        # W_O's *input* columns come in head-sized blocks: transpose so each block is a row group.
        heads = in_features // head_size
        t = weight.t().reshape(heads, -1)  # (heads, head_size * out)
        return t, lambda g: g.reshape(in_features, out_features).t()
    # "groups", and FFN matrices under "per-head": equal row groups (a divisor of out_features).
    groups = _largest_divisor_at_most(out_features, num_groups)
    return weight.reshape(groups, -1), lambda g: g.reshape(out_features, in_features)


def _largest_divisor_at_most(n: int, k: int) -> int:
    k = max(1, min(n, k))
    while n % k:
        k -= 1
    return k


def num_ranges(shape: tuple[int, int], granularity: str, *, role: str, head_size: int, num_groups: int) -> int:
    out_features, in_features = shape
    if granularity == "per-tensor":
        return 1
    if granularity == "per-channel":
        return out_features
    if granularity == "per-head" and role in ("query", "key", "value"):
        return out_features // head_size
    if granularity == "per-head" and role == "attention_output":
        return in_features // head_size
    return _largest_divisor_at_most(out_features, num_groups)


@torch.no_grad()
def fake_quantize(
    weight: torch.Tensor,
    bits: int,
    *,
    granularity: str = "per-tensor",
    symmetric: bool = True,
    role: str = "ffn_in",
    head_size: int = 64,
    num_groups: int = 12,
) -> torch.Tensor:
    """Quantise-dequantise a (out, in) weight matrix; returns a new tensor, input untouched."""
    if bits >= FULL_BITS:
        return weight
    if bits == FP16_BITS:
        return weight.to(torch.float16).to(weight.dtype)
    w = weight.float()
    if w.dim() == 1:
        w = w.unsqueeze(0)
    groups, restore = _group_view(w, granularity, role=role, head_size=head_size, num_groups=num_groups)
    if symmetric:
        qmax = 2 ** (bits - 1) - 1  # e.g. 127 for 8 bits, 1 for 2 bits: levels {-1, 0, 1}
        scale = groups.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / qmax
        q = torch.clamp(torch.round(groups / scale), -qmax, qmax)
        deq = q * scale
    else:
        qmax = 2**bits - 1
        lo = groups.amin(dim=1, keepdim=True).clamp_max(0.0)
        hi = groups.amax(dim=1, keepdim=True).clamp_min(0.0)
        scale = (hi - lo).clamp_min(1e-12) / qmax
        zero_point = torch.round(-lo / scale)
        q = torch.clamp(torch.round(groups / scale) + zero_point, 0, qmax)
        deq = (q - zero_point) * scale
    return restore(deq).reshape(weight.shape).to(weight.dtype)


@torch.no_grad()
def fake_quantize_activations(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Dynamic per-tensor symmetric quantisation of activations (simulated, as in Q8BERT)."""
    if bits >= FULL_BITS:
        return x
    if bits == FP16_BITS:
        return x.to(torch.float16).to(x.dtype)
    qmax = 2 ** (bits - 1) - 1
    scale = x.abs().amax().clamp_min(1e-12) / qmax
    return torch.clamp(torch.round(x / scale), -qmax, qmax) * scale


def quantized_bytes(
    shape: tuple[int, ...], bits: int, *, granularity: str, symmetric: bool, role: str, head_size: int, num_groups: int
) -> float:
    """Bytes to store a weight at `bits`, including its scales (and zero-points)."""
    numel = math.prod(shape)
    if bits >= FULL_BITS:
        return numel * 4.0
    if bits == FP16_BITS:
        return numel * 2.0
    if len(shape) == 1:
        ranges = 1
    else:
        ranges = num_ranges(tuple(shape), granularity, role=role, head_size=head_size, num_groups=num_groups)
    per_range = 4 if symmetric else 8  # fp32 scale (+ int32 zero-point)
    return numel * bits / 8.0 + ranges * per_range
