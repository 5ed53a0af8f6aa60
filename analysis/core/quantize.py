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

`quantize_weight` returns the integer codes and ranges themselves (for tests and for real packing);
`quantization_error` is ||W - Q(W)||^2, the quantity Q-BERT's bit allocation weighs by the Hessian.
Activations (`fake_quantize_activations`) use one dynamic symmetric range per tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from analysis.errors import HeadroomError

FP16_BITS = 16
FULL_BITS = 32
#: the weight bit-widths offered in the tools (Recipe also accepts 7).
QUANT_BITS = (2, 3, 4, 5, 6, 8, 16, 32)


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
    """How many ranges (scales) `fake_quantize` uses for a matrix of this shape: `_group_view`'s rows."""
    meta = torch.empty(shape, device="meta")  # shapes only, no memory
    return _group_view(meta, granularity, role=role, head_size=head_size, num_groups=num_groups)[0].shape[0]


@dataclass
class QuantizedWeight:
    """Integer codes and ranges of one matrix: `dequantize()` gives what an int kernel would use.

    `q` holds the integer levels in the (G, n) grouped layout (one row per range); `scale` and
    `zero_point` are (G, 1). Symmetric codes lie in [-(2^(b-1)-1), 2^(b-1)-1] (zero_point = 0),
    asymmetric ones in [0, 2^b - 1].
    """

    q: torch.Tensor  # (G, n) integer levels, stored as float
    scale: torch.Tensor  # (G, 1)
    zero_point: torch.Tensor  # (G, 1), zeros when symmetric
    bits: int
    symmetric: bool
    restore: Callable = field(repr=False)  # (G, n) -> original (out, in) layout
    shape: tuple = ()

    @property
    def num_ranges(self) -> int:
        return self.scale.shape[0]

    def dequantize(self) -> torch.Tensor:
        return self.restore((self.q - self.zero_point) * self.scale).reshape(self.shape)


@torch.no_grad()
def quantize_weight(
    weight: torch.Tensor,
    bits: int,
    *,
    granularity: str = "per-tensor",
    symmetric: bool = True,
    role: str = "ffn_in",
    head_size: int = 64,
    num_groups: int = 12,
) -> QuantizedWeight:
    """Integer codes + scales (+ zero-points) of a (out, in) matrix at 2..8 bits (or any < 16)."""
    if not 1 < bits < FP16_BITS:
        raise HeadroomError(f"Integer quantisation needs 2 to 15 bits (got {bits}); 16 and 32 are float formats.")
    w = weight.float()
    if w.dim() == 1:
        w = w.unsqueeze(0)
    groups, restore = _group_view(w, granularity, role=role, head_size=head_size, num_groups=num_groups)
    if symmetric:
        qmax = 2 ** (bits - 1) - 1  # e.g. 127 for 8 bits, 1 for 2 bits: levels {-1, 0, 1}
        scale = groups.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / qmax
        zero_point = torch.zeros_like(scale)
        q = torch.clamp(torch.round(groups / scale), -qmax, qmax)
    else:
        qmax = 2**bits - 1
        # The range always contains 0, so zero (padding, pruned weights) stays exactly zero.
        lo = groups.amin(dim=1, keepdim=True).clamp_max(0.0)
        hi = groups.amax(dim=1, keepdim=True).clamp_min(0.0)
        scale = (hi - lo).clamp_min(1e-12) / qmax
        zero_point = torch.round(-lo / scale)
        q = torch.clamp(torch.round(groups / scale) + zero_point, 0, qmax)
    return QuantizedWeight(q, scale, zero_point, bits, symmetric, restore, tuple(weight.shape))


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
    qw = quantize_weight(weight, bits, granularity=granularity, symmetric=symmetric, role=role,
                         head_size=head_size, num_groups=num_groups)
    return qw.dequantize().to(weight.dtype)


@torch.no_grad()
def quantization_error(
    weight: torch.Tensor,
    bits: int,
    *,
    granularity: str = "per-tensor",
    symmetric: bool = True,
    role: str = "ffn_in",
    head_size: int = 64,
    num_groups: int = 12,
) -> float:
    """Squared error ||W - Q(W)||^2 of fake-quantising `weight` (0 at 32 bits)."""
    if bits >= FULL_BITS:
        return 0.0
    deq = fake_quantize(weight, bits, granularity=granularity, symmetric=symmetric, role=role,
                        head_size=head_size, num_groups=num_groups)
    return float((weight.float() - deq.float()).pow(2).sum())


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
