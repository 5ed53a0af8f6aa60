"""Low rank: truncated SVD of encoder matrices, and ALBERT's factorised word embeddings.

A weight W (out, in) = U S V^T is replaced by its best rank-r approximation (Eckart-Young):
W_r = (U_r sqrt(S_r)) (sqrt(S_r) V_r^T), i.e. two Linears, `down` (in -> r, no bias) then `up`
(r -> out, with W's bias). It pays r (in + out) weights instead of in x out, so it saves only for
r < in*out/(in + out). The spectrum energy kept, sum_{i<r} s_i^2 / sum s_i^2, is the fraction of
||W||_F^2 the approximation keeps (`energy_kept`).

ALBERT (Lan et al. 2020) factorises the vocabulary embedding V x H into V x E and E x H with E << H;
here the same from a trained model: the word-embedding matrix's SVD gives A = U_E sqrt(S_E) (V x E,
the new table) and B = sqrt(S_E) V_E^T (E x H, a projection), E chosen by the user.

Order, in `simulate` and `materialize` alike: a matrix is sparsified and quantised, its heads or
FFN neurons are sliced out, and only then factorised (the embedding: quantised, then factorised),
so both compute from the same matrix and agree to float rounding. The SVD runs in float64.

`LowRankLinear` and `FactorizedEmbedding` are what a materialized model holds; both expose a
read-only `weight` (the product) so Headroom's adapters still read one matrix per role.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


CACHE_BYTES = 512 * 2**20  # float64 factors kept, least recently used dropped first
_cache: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = OrderedDict()
_cache_lock = threading.Lock()


def _content_key(weight: torch.Tensor) -> tuple:
    """The matrix by its values (a new tensor with the same values hits; any changed value misses)."""
    w = weight.detach().contiguous().cpu()
    if w.dtype == torch.bfloat16:
        w = w.view(torch.int16)
    return w.shape, str(weight.dtype), str(weight.device), hashlib.blake2b(w.numpy(), digest_size=16).digest()


def full_svd(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """U, S, Vh of W in float64, computed once per distinct matrix (a change of rank or E reuses them)."""
    key = _content_key(weight)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    factors = torch.linalg.svd(weight.detach().double(), full_matrices=False)  # (out, k), (k,), (k, in)
    size = sum(t.numel() * t.element_size() for t in factors)
    with _cache_lock:
        if size <= CACHE_BYTES:
            _cache[key] = factors
            while sum(t.numel() * t.element_size() for f in _cache.values() for t in f) > CACHE_BYTES:
                _cache.popitem(last=False)
    return factors


@torch.no_grad()
def truncated_svd(weight: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(down (r, in), up (out, r), energy kept) of W (out, in) at rank r (capped at min(out, in))."""
    U, S, Vh = full_svd(weight)
    r = max(1, min(rank, S.numel()))
    root = S[:r].sqrt()
    up = (U[:, :r] * root).to(weight.dtype)  # (out, r)
    down = (root[:, None] * Vh[:r]).to(weight.dtype)  # (r, in)
    total = float((S ** 2).sum())
    energy = float((S[:r] ** 2).sum()) / total if total > 0 else 1.0
    return down, up, energy


def low_rank(weight: torch.Tensor, rank: int) -> torch.Tensor:
    """The rank-r approximation of `weight` as one (out, in) matrix (what simulation multiplies by)."""
    down, up = truncated_svd(weight, rank)[:2]
    return up @ down


def spectrum_energy(weight: torch.Tensor, rank: int) -> float:
    return truncated_svd(weight, rank)[2]


class LowRankLinear(nn.Module):
    """y = up(down(x)): a rank-r Linear (in -> r -> out); `weight` is the (out, in) product, read-only."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True, dtype=None, device=None):
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.down = nn.Linear(in_features, rank, bias=False, dtype=dtype, device=device)
        self.up = nn.Linear(rank, out_features, bias=bias, dtype=dtype, device=device)

    @classmethod
    def from_linear(cls, linear, rank: int) -> "LowRankLinear":
        down, up, _ = truncated_svd(linear.weight, rank)
        new = cls(linear.in_features, linear.out_features, down.shape[0], bias=linear.bias is not None,
                  dtype=linear.weight.dtype, device=linear.weight.device)
        with torch.no_grad():
            new.down.weight.copy_(down)
            new.up.weight.copy_(up)
            if linear.bias is not None:
                new.up.bias.copy_(linear.bias)
        return new

    @property
    def weight(self) -> torch.Tensor:
        return self.up.weight @ self.down.weight  # (out, in)

    @property
    def bias(self) -> torch.Tensor | None:
        return self.up.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, rank={self.rank}, out_features={self.out_features}"


class FactorizedEmbedding(nn.Module):
    """ALBERT-style word embeddings: a V x E table, then an E x H projection; `weight` is the V x H product."""

    def __init__(self, num_embeddings: int, embedding_size: int, embedding_dim: int, padding_idx: int | None = None,
                 dtype=None, device=None):
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.padding_idx = num_embeddings, embedding_dim, padding_idx
        self.table = nn.Embedding(num_embeddings, embedding_size, dtype=dtype, device=device)
        self.projection = nn.Linear(embedding_size, embedding_dim, bias=False, dtype=dtype, device=device)

    @classmethod
    def from_embedding(cls, embedding: nn.Embedding, embedding_size: int) -> "FactorizedEmbedding":
        down, up, _ = truncated_svd(embedding.weight.T, embedding_size)  # W^T (H, V) = up (H, E) @ down (E, V)
        V, H = embedding.weight.shape
        new = cls(V, down.shape[0], H, padding_idx=embedding.padding_idx, dtype=embedding.weight.dtype,
                  device=embedding.weight.device)
        with torch.no_grad():
            new.table.weight.copy_(down.T)  # (V, E)
            new.projection.weight.copy_(up)  # (H, E)
        return new

    @property
    def weight(self) -> torch.Tensor:
        return self.table.weight @ self.projection.weight.T  # (V, H)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.projection(F.embedding(input_ids, self.table.weight))  # (B, T, H)


def factorized_embedding_weight(weight: torch.Tensor, embedding_size: int) -> torch.Tensor:
    """The V x H product of the factorised table (what simulation looks tokens up in)."""
    return low_rank(weight.T, embedding_size).T


def spectrum_report(adapter, recipe) -> list[dict]:
    """Per low-rank matrix of `recipe` (and the factorised embeddings): rank kept of its full rank and the
    spectrum energy kept, computed on the matrix exactly as it would be factorised (sparse, quantised, sliced)."""
    from analysis.core.simulate import SimulatedModel

    if not recipe.ranks and not recipe.embedding_size:
        return []
    before = SimulatedModel(adapter, recipe.replace(ranks=[], embedding_size=0))
    rows = []
    for layer, role, rank in recipe.ranks:
        lw = before.layers.get(layer)
        if lw is None:  # a dropped layer: nothing runs, nothing to report
            continue
        w = lw.weight(role)
        down, _, energy = truncated_svd(w, rank)
        rows.append({"layer": layer, "role": role, "rank": down.shape[0], "full_rank": min(w.shape),
                     "shape": list(w.shape), "energy_kept": energy})
    if recipe.embedding_size:
        w = adapter.word_embeddings.weight if before.word_embedding_weight is None else before.word_embedding_weight
        down, _, energy = truncated_svd(w.T, recipe.embedding_size)
        rows.append({"layer": None, "role": "embedding", "rank": down.shape[0], "full_rank": min(w.shape),
                     "shape": list(w.shape), "energy_kept": energy})
    return rows


@torch.no_grad()
def singular_values(weight: torch.Tensor) -> list[float]:
    """The singular values of `weight`, largest first (float64): the whole spectrum, for any rank's energy."""
    return [float(s) for s in torch.linalg.svdvals(weight.detach().double())]


def energy_kept(values: list[float], rank: int) -> float:
    """sum_{i<r} s_i^2 / sum s_i^2 from a spectrum (`singular_values`); 1.0 for an all-zero matrix."""
    squares = [s * s for s in values]
    total = sum(squares)
    return sum(squares[:max(1, rank)]) / total if total > 0 else 1.0


def spectra(adapter, recipe, matrices: list[tuple[int, str]], embedding: bool = False) -> dict:
    """{(layer, role): singular values} of each matrix as `recipe` would factorise it (its sparsity, bits and
    head/neuron slicing applied; its own ranks and embedding size ignored), and {(None, "embedding"): ...} for
    the word-embedding matrix when `embedding`. A dropped layer's matrices are left out."""
    from analysis.core.simulate import SimulatedModel

    before = SimulatedModel(adapter, recipe.replace(ranks=[], embedding_size=0))
    out = {}
    for layer, role in matrices:
        lw = before.layers.get(layer)
        if lw is not None:
            out[(layer, role)] = singular_values(lw.weight(role))
    if embedding:
        w = adapter.word_embeddings.weight if before.word_embedding_weight is None else before.word_embedding_weight
        out[(None, "embedding")] = singular_values(w)
    return out
