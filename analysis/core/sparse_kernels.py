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


def encoder_linears(model: nn.Module):
    """(name, parent, attribute, Linear) of every plain nn.Linear inside the encoder layers, a shared layer
    module (ALBERT) once; the list is taken first, so the caller may replace the Linears as it goes."""
    adapter, seen, found = Adapter(model), set(), []
    for index in range(adapter.num_layers):
        layer = adapter.layer_module(index)
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        for parent_name, parent in list(layer.named_modules()):
            for name, child in list(parent.named_children()):
                if type(child) is nn.Linear:
                    found.append((f"layer{index}.{parent_name + '.' if parent_name else ''}{name}", parent, name, child))
    return found


def csr_kernels(model: nn.Module, min_sparsity: float = 0.5) -> tuple[nn.Module, dict]:
    """A copy of `model` with each encoder Linear of at least `min_sparsity` zeros as a CSRLinear.

    Returns (the copy, a report: the converted matrices with their sparsity, and how many stayed dense)."""
    if not 0.0 <= min_sparsity <= 1.0:
        raise ValueError(f"min_sparsity must be in [0, 1], got {min_sparsity}.")
    out = copy.deepcopy(model).eval()
    converted, dense = {}, 0
    for full, parent, name, child in encoder_linears(out):
        s = zero_fraction(child.weight)
        if s >= min_sparsity and s > 0:
            setattr(parent, name, CSRLinear(child))
            converted[full] = round(s, 4)
        else:
            dense += 1
    return out, {"converted": converted, "dense_linears": dense, "min_sparsity": min_sparsity,
                 "kernel": "torch.mm(sparse_csr, dense) (MKL sparse BLAS on x86 CPUs)"}


# ------------------------------------------------------------------------------ 2:4 semi-structured (CUDA)
#: the GPUs whose sparse tensor cores run 2:4 (Ampere = compute capability 8.0 and newer)
MIN_CAPABILITY = (8, 0)
SEMI_STRUCTURED_DTYPES = (torch.float16, torch.bfloat16)


def semi_structured_problem() -> str | None:
    """Why torch's 2:4 kernels cannot run here (no CUDA, a pre-Ampere GPU), in one sentence; None when they can."""
    if not torch.cuda.is_available():
        return ("2:4 sparse kernels (torch.sparse.to_sparse_semi_structured) need a CUDA GPU of the Ampere generation "
                "or newer; this machine has none, so the torch 2:4 (CUDA) backend is not offered.")
    major, minor = torch.cuda.get_device_capability()
    if (major, minor) < MIN_CAPABILITY:
        return (f"2:4 sparse kernels need an Ampere or newer GPU (compute capability 8.0+); this one is {major}.{minor}, "
                "so the torch 2:4 (CUDA) backend is not offered.")
    return None


def _semi_structured_class():
    """cuSPARSELt when torch has it (what `to_sparse_semi_structured` uses by default), else the CUTLASS kernels."""
    from torch.sparse import SparseSemiStructuredTensorCUSPARSELT, SparseSemiStructuredTensorCUTLASS

    cusparselt = getattr(torch.backends, "cusparselt", None)
    if cusparselt is not None and cusparselt.is_available():
        return SparseSemiStructuredTensorCUSPARSELT
    return SparseSemiStructuredTensorCUTLASS


class SemiStructuredLinear(nn.Module):
    """A Linear whose 2:4-sparse weight is a `torch.sparse` semi-structured tensor (fp16/bf16 on CUDA).

    The kernels read the kept half of the values and 2 bits of position per value, so the product does
    half the multiply-adds on sparse tensor cores. Inputs are flattened to (tokens, in), contiguous, as
    the semi-structured matmul needs a 2-D operand; torch pads the token count to the kernel's tile itself.
    """

    def __init__(self, linear: nn.Linear):
        super().__init__()
        from torch.sparse import to_sparse_semi_structured

        self.in_features, self.out_features = linear.in_features, linear.out_features
        dense = linear.weight.detach().contiguous()  # (out, in), 2 zeros in every group of 4 along `in`
        cls = _semi_structured_class()
        if cls.__name__.endswith("CUSPARSELT"):
            sparse = to_sparse_semi_structured(dense)
        else:  # torch built without cuSPARSELt: the same format through CUTLASS
            sparse = cls.from_dense(dense)
        self.weight = nn.Parameter(sparse, requires_grad=False)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
        self.kernel = cls.BACKEND

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).contiguous()  # (tokens, in)
        y = torch.nn.functional.linear(flat, self.weight, self.bias)  # (tokens, out): the sparse dispatch
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features} (2:4 semi-structured, {self.kernel})"


def semi_structured_kernels(model: nn.Module) -> tuple[nn.Module, dict]:
    """A copy of `model` (on CUDA, fp16 or bf16) with each encoder Linear that holds the 2:4 pattern as a SemiStructuredLinear.

    A Linear without the pattern (not sparsified, or its groups broken by slicing heads or FFN neurons out of
    its input dimension) or of a shape the kernels refuse stays dense; the report counts both.
    """
    from analysis.errors import HeadroomError
    from analysis.measure.sparse_files import holds_two_four

    problem = semi_structured_problem()
    if problem:
        raise HeadroomError(problem)
    p = next(model.parameters())
    if p.device.type != "cuda" or p.dtype not in SEMI_STRUCTURED_DTYPES:
        raise HeadroomError(f"2:4 sparse kernels run fp16 or bf16 weights on CUDA; this model is {p.dtype} on {p.device}.")
    limits = _semi_structured_class()._DTYPE_SHAPE_CONSTRAINTS[p.dtype]
    out = copy.deepcopy(model).eval()
    converted, dense = {}, {"no 2:4 pattern": 0, "shape the kernels refuse": 0}
    for full, parent, name, child in encoder_linears(out):
        rows, cols = child.weight.shape
        if not holds_two_four(child.weight):
            dense["no 2:4 pattern"] += 1
        elif rows % limits.sparse_min_rows or cols % limits.sparse_min_cols:
            dense["shape the kernels refuse"] += 1
        else:
            setattr(parent, name, SemiStructuredLinear(child))
            converted[full] = [rows, cols]
    kernel = _semi_structured_class().BACKEND
    return out, {"converted": converted, "dense_linears": dense,
                 "kernel": f"torch.sparse.to_sparse_semi_structured ({kernel}), {str(p.dtype).removeprefix('torch.')}"}
