"""Sparse kernels for a magnitude-sparse model: each sparse enough encoder Linear as a CSR matrix.

A model whose weights are mostly zeros runs exactly as fast as a dense one on dense kernels: the
zeros are multiplied like any weight (`analysis.core.sparsity`). What can turn the zeros into speed
on a CPU is a sparse kernel, here torch's CSR x dense matrix product (MKL sparse BLAS on x86):
`CSRLinear` holds W as a `torch.sparse_csr` tensor and computes y = (W x^T)^T + b, which does work
proportional to the non-zeros instead of to the matrix size. Whether that is faster depends on the
sparsity, the matrix and the number of tokens; `benchmarks/bench_sparse.py` measures it against
the dense model in one interleaved run (on this project's CPU, CSR loses at 50% and wins from ~90%).

`csr_kernels(model, min_sparsity)` returns a copy with every encoder Linear that has at least
`min_sparsity` zeros replaced by a CSRLinear (the embeddings and the classifier stay dense: the
recipes never sparsify them). The copy is for inference: its CSR weights carry no gradient.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from analysis.core.adapters import Adapter


def zero_fraction(weight: torch.Tensor) -> float:
    return float((weight == 0).sum()) / max(weight.numel(), 1)


class CSRLinear(nn.Module):
    """A Linear whose weight is a CSR sparse matrix: y = (W x^T)^T + b, the same values as the dense one."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state": said once in the docs above
            warnings.simplefilter("ignore", UserWarning)
            weight = linear.weight.detach().to_sparse_csr()
        self.register_buffer("weight", weight)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())
        self.nnz = int(weight.values().numel())

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nnz / max(self.in_features * self.out_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        y = torch.mm(self.weight, flat.t()).t()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, sparsity={self.sparsity:.3f} (CSR)"


def csr_kernels(model: nn.Module, min_sparsity: float = 0.5) -> tuple[nn.Module, dict]:
    """A copy of `model` with each encoder Linear of at least `min_sparsity` zeros as a CSRLinear.

    Returns (the copy, a report: the converted matrices with their sparsity, and how many stayed dense)."""
    if not 0.0 <= min_sparsity <= 1.0:
        raise ValueError(f"min_sparsity must be in [0, 1], got {min_sparsity}.")
    out = copy.deepcopy(model).eval()
    adapter = Adapter(out)
    converted, dense, seen = {}, 0, set()
    for index in range(adapter.num_layers):
        layer = adapter.layer_module(index)
        if id(layer) in seen:  # a layer module shared by several layers (ALBERT) is converted once
            continue
        seen.add(id(layer))
        for parent_name, parent in list(layer.named_modules()):
            for name, child in list(parent.named_children()):
                if type(child) is not nn.Linear:
                    continue
                s = zero_fraction(child.weight)
                full = f"layer{index}.{parent_name + '.' if parent_name else ''}{name}"
                if s >= min_sparsity and s > 0:
                    setattr(parent, name, CSRLinear(child))
                    converted[full] = round(s, 4)
                else:
                    dense += 1
    return out, {"converted": converted, "dense_linears": dense, "min_sparsity": min_sparsity,
                 "kernel": "torch.mm(sparse_csr, dense) (MKL sparse BLAS on x86 CPUs)"}
