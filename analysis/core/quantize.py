"""Weight fake-quantisation and honest size accounting, under one `QuantScheme`.

Fake quantisation rounds a weight matrix to `bits`-bit integers and maps it straight back to
floats, so the forward pass sees exactly the values an integer kernel would use, while the maths
still runs in floating point. Numbers that come from this path are *simulated*.

A `QuantScheme` (bits, granularity, symmetric, num_groups) says how one matrix is quantised, as
torchao describes a scheme by one config object; it is built from a Recipe for one encoder layer
(`QuantScheme.for_layer`) or for the word embeddings (`QuantScheme.for_embeddings`), and every
function here takes it, with the matrix's role (`adapters.ROLES`) and the head size.

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

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import torch

from analysis.core.adapters import EMBEDDING_ROLE, head_axis
from analysis.core.recipe import DEFAULT_NUM_GROUPS, GRANULARITIES, MAX_NUM_GROUPS, SUPPORTED_BITS
from analysis.errors import HeadroomError

if TYPE_CHECKING:
    from analysis.core.recipe import Recipe

FP16_BITS = 16
FULL_BITS = 32


@dataclass(frozen=True)
class QuantScheme:
    """How one weight matrix is quantised. Frozen: equal schemes quantise identically."""

    bits: int = FULL_BITS  # one of recipe.SUPPORTED_BITS; 32 = untouched, 16 = fp16-rounded
    granularity: str = "per-tensor"  # one of recipe.GRANULARITIES: which weights share a range
    symmetric: bool = True  # zero-point 0 (symmetric) or min/max ranges with a zero-point
    num_groups: int = DEFAULT_NUM_GROUPS  # row groups under "groups" (and FFN matrices under "per-head")

    def __post_init__(self):
        if isinstance(self.bits, bool) or self.bits not in SUPPORTED_BITS:
            raise HeadroomError(
                f"{self.bits}-bit weights are not supported; choose from {', '.join(map(str, SUPPORTED_BITS))}."
            )
        if self.granularity not in GRANULARITIES:
            raise HeadroomError(
                f"Unknown granularity '{self.granularity}'; choose from {', '.join(GRANULARITIES)}."
            )
        if not 1 <= self.num_groups <= MAX_NUM_GROUPS:
            raise HeadroomError(f"num_groups must be between 1 and {MAX_NUM_GROUPS} (got {self.num_groups}).")

    @classmethod
    def for_layer(cls, recipe: Recipe, layer: int, num_layers: int) -> "QuantScheme":
        """The scheme of encoder layer `layer`'s six matrices under `recipe`."""
        return cls(recipe.layer_bits(num_layers)[layer], recipe.granularity, recipe.symmetric, recipe.num_groups)

    @classmethod
    def for_embeddings(cls, recipe: Recipe) -> "QuantScheme":
        """The scheme of the word-embedding matrix under `recipe`."""
        return cls(recipe.embedding_bits, recipe.granularity, recipe.symmetric, recipe.num_groups)

    def with_bits(self, bits: int) -> "QuantScheme":
        return dataclasses.replace(self, bits=bits)

    @property
    def is_full_precision(self) -> bool:
        return self.bits >= FULL_BITS

    @property
    def is_integer(self) -> bool:
        """Integer codes (2..8 bits); 16 is fp16 rounding and 32 is no change."""
        return self.bits < FP16_BITS


def _group_view(weight: torch.Tensor, scheme: QuantScheme, role: str, head_size: int):
    """Reshape `weight` (out, in) to (G, n) so each row is one range; return (view, restore)."""
    out_features, in_features = weight.shape
    granularity, axis = scheme.granularity, head_axis(role)
    if granularity == "per-tensor":
        return weight.reshape(1, -1), lambda g: g.reshape(out_features, in_features)
    if granularity == "per-channel":
        return weight, lambda g: g
    if granularity == "per-head" and axis == 0:  # W_Q/W_K/W_V: each head is a block of rows
        heads = out_features // head_size
        return weight.reshape(heads, -1), lambda g: g.reshape(out_features, in_features)
    if granularity == "per-head" and axis == 1:
        # W_O's *input* columns come in head-sized blocks: transpose so each block is a row group.
        heads = in_features // head_size
        t = weight.t().reshape(heads, -1)  # (heads, head_size * out)
        return t, lambda g: g.reshape(in_features, out_features).t()
    # "groups", and FFN matrices under "per-head": num_groups equal row groups. A num_groups that
    # does not divide the rows is refused, never rounded to a divisor behind the user's back
    # (`Adapter.validate` checks the whole model before any work with `num_groups_problem`).
    # The word embeddings are the exception, documented with the field: a vocabulary (30522 rows in
    # BERT's) is rarely divisible, so they use the largest divisor of their rows not above num_groups.
    groups = scheme.num_groups
    if role == EMBEDDING_ROLE:
        groups = _largest_divisor_at_most(out_features, groups)
    elif out_features % groups:
        raise HeadroomError(num_groups_problem(groups, {f"this {role} matrix": out_features}))
    return weight.reshape(groups, -1), lambda g: g.reshape(out_features, in_features)


def _largest_divisor_at_most(n: int, k: int) -> int:
    k = max(1, min(n, k))
    while n % k:
        k -= 1
    return k


def uses_row_groups(granularity: str, role: str) -> bool:
    """Whether `num_groups` splits a matrix of `role` under `granularity` (else it is not used)."""
    return granularity == "groups" or (granularity == "per-head" and head_axis(role) is None)


def num_groups_problem(num_groups: int, rows: dict[str, int]) -> str | None:
    """The sentence refusing `num_groups` for matrices with these row counts, or None if it divides them all.

    `rows` maps a matrix's description ("layer 0's query", "the word embeddings") to its rows.
    """
    bad = [(what, n) for what, n in rows.items() if n % num_groups]
    if not bad:
        return None
    what, n = bad[0]
    common = math.gcd(*rows.values())
    divisors = [d for d in range(1, min(common, MAX_NUM_GROUPS) + 1) if common % d == 0]
    shown = ", ".join(map(str, divisors[:16])) + (", ..." if len(divisors) > 16 else "")
    return (f"num_groups {num_groups} does not divide the {n} rows of {what} (row groups must be equal); "
            f"values that divide every quantised encoder matrix of this model: {shown}.")


def num_ranges(shape: tuple[int, int], scheme: QuantScheme, role: str, head_size: int) -> int:
    """How many ranges (scales) `fake_quantize` uses for a matrix of this shape: `_group_view`'s rows."""
    rows = shape[0]
    if uses_row_groups(scheme.granularity, role) and role != EMBEDDING_ROLE and rows % scheme.num_groups:
        # a matrix sliced after quantisation (heads pruned): it keeps at most the full matrix's ranges
        return min(scheme.num_groups, rows)
    meta = torch.empty(shape, device="meta")  # shapes only, no memory
    return _group_view(meta, scheme, role, head_size)[0].shape[0]


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
def quantize_weight(weight: torch.Tensor, scheme: QuantScheme, role: str, head_size: int) -> QuantizedWeight:
    """Integer codes + scales (+ zero-points) of a (out, in) matrix under an integer `scheme` (2..8 bits)."""
    bits = scheme.bits
    if not scheme.is_integer:
        raise HeadroomError(f"Integer codes need 2 to 8 bits (got {bits}); 16 and 32 are float formats.")
    w = weight.float()
    if w.dim() == 1:
        w = w.unsqueeze(0)
    groups, restore = _group_view(w, scheme, role, head_size)
    if scheme.symmetric:
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
    return QuantizedWeight(q, scale, zero_point, bits, scheme.symmetric, restore, tuple(weight.shape))


@torch.no_grad()
def fake_quantize(weight: torch.Tensor, scheme: QuantScheme, role: str, head_size: int) -> torch.Tensor:
    """Quantise-dequantise a (out, in) weight matrix of `role`; a new tensor, the input untouched.

    At 32 bits the weight itself is returned (nothing to do); at 16 it is rounded through fp16.
    """
    if scheme.is_full_precision:
        return weight
    if scheme.bits == FP16_BITS:
        return weight.to(torch.float16).to(weight.dtype)
    return quantize_weight(weight, scheme, role, head_size).dequantize().to(weight.dtype)


@torch.no_grad()
def quantization_error(weight: torch.Tensor, scheme: QuantScheme, role: str, head_size: int) -> float:
    """Squared error ||W - Q(W)||^2 of fake-quantising `weight` (0 at 32 bits)."""
    if scheme.is_full_precision:
        return 0.0
    deq = fake_quantize(weight, scheme, role, head_size)
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


def quantized_bytes(shape: tuple[int, ...], scheme: QuantScheme, role: str, head_size: int) -> float:
    """Bytes to store a weight of `shape` under `scheme`, including its scales (and zero-points)."""
    numel = math.prod(shape)
    if scheme.is_full_precision:
        return numel * 4.0
    if scheme.bits == FP16_BITS:
        return numel * 2.0
    ranges = 1 if len(shape) == 1 else num_ranges(tuple(shape), scheme, role, head_size)
    per_range = 4 if scheme.symmetric else 8  # fp32 scale (+ int32 zero-point)
    return numel * scheme.bits / 8.0 + ranges * per_range
