"""Bytes on disk of a sparse model, honestly: dense-with-zeros against two compressed formats, as real files.

Zeroing weights does not shrink a checkpoint: `save_pretrained` stores every zero in 4 bytes. A
compressed format stores only the nonzeros plus where they are:

- `bitmask`: one bit per weight (1 = nonzero, row-major, packed little-endian into uint8) and the
  nonzero values in order: n/8 + 4 * nnz bytes for n weights;
- `csr`: compressed sparse rows, int32 row pointers (rows + 1) and column indices with the values:
  4 * (rows + 1) + 8 * nnz bytes. It wins over the bitmask only above ~97% sparsity.

- `2:4` (counted, no file written): NVIDIA's semi-structured layout as cuSPARSELt stores it for a matrix
  with 2 zeros in every group of 4 along its input dimension: the kept half of the values plus 2 bits of
  metadata (the position in its group) per kept value: n/2 * size + n/8 bytes. Only a matrix that holds
  the pattern can be stored so (the others count dense); at 50% it is the bitmask's size, its point is
  the kernels that read it (`analysis.core.sparse_kernels`, CUDA only).

Every 2-D floating tensor is written in the format where that is smaller than dense, else dense
(a dense matrix in a bitmask costs 3% more); everything else (biases, LayerNorms, embeddings tables
with no zeros) stays dense. The files are safetensors (a tensor per part, the original shapes in
the metadata), `read_sparse_state` rebuilds the exact dense tensors, and a test checks the round trip.
`counted_sparse_bytes(adapter, recipe)` gives the same bytes from the recipe's masks without writing a file
(the dashboard's Weights page, on every change).
"""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

FORMATS = ("bitmask", "csr")
#: formats whose bytes are counted from the tensors, not written to a file
COUNTED_FORMATS = ("2:4",)
TWO_FOUR_WHAT = ("2:4 semi-structured, counted (not written): the kept half of the values + 2 bits of metadata per "
                 "kept value, as cuSPARSELt stores it; matrices without the pattern count dense")


def holds_two_four(w: torch.Tensor) -> bool:
    """True when the 2-D `w` has at least 2 zeros in every group of 4 consecutive entries of each row."""
    if w.ndim != 2 or w.shape[1] % 4 or w.numel() == 0:
        return False
    zeros = (w == 0).reshape(w.shape[0], w.shape[1] // 4, 4).sum(-1)  # (out, in/4)
    return bool((zeros >= 2).all())


def two_four_bytes(w: torch.Tensor, element_size: int | None = None) -> int:
    """Bytes of `w` in the 2:4 layout (values at `element_size` bytes, default w's own) or dense if it lacks the pattern."""
    size = element_size or w.element_size()
    if not (w.is_floating_point() and holds_two_four(w)):
        return w.numel() * size
    kept = w.numel() // 2
    return kept * size + (2 * kept + 7) // 8


def _bitmask(w: torch.Tensor) -> dict[str, torch.Tensor]:
    nonzero = (w != 0).flatten().cpu().numpy()
    packed = np.packbits(nonzero, bitorder="little")
    return {"mask": torch.from_numpy(packed), "values": w.flatten()[torch.from_numpy(nonzero)].contiguous()}


def _csr(w: torch.Tensor) -> dict[str, torch.Tensor]:
    with warnings.catch_warnings():  # torch's CSR tensors warn that they are beta
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*", category=UserWarning)
        c = w.to_sparse_csr()
    return {"crow": c.crow_indices().to(torch.int32), "col": c.col_indices().to(torch.int32),
            "values": c.values().contiguous()}


def _encoded_bytes(w: torch.Tensor, fmt: str) -> int:
    nnz, rows = int((w != 0).sum()), w.shape[0]
    size = w.element_size()
    return (w.numel() + 7) // 8 + size * nnz if fmt == "bitmask" else 4 * (rows + 1) + (4 + size) * nnz


def write_sparse_state(state: dict[str, torch.Tensor], path: str, fmt: str) -> int:
    """Write `state` to the safetensors file `path` with its sparse matrices in `fmt`; return its bytes."""
    if fmt not in FORMATS:
        raise ValueError(fmt)
    tensors, meta = {}, {}
    for name, t in state.items():
        t = t.detach().cpu()
        if t.ndim == 2 and t.is_floating_point() and _encoded_bytes(t, fmt) < t.numel() * t.element_size():
            parts = _bitmask(t) if fmt == "bitmask" else _csr(t)
            tensors.update({f"{name}::{k}": v for k, v in parts.items()})
            meta[name] = list(t.shape)
        else:
            tensors[name] = t.contiguous().clone()  # clone: tied/shared storage cannot be saved twice
    save_file(tensors, path, metadata={"format": fmt, "sparse_shapes": json.dumps(meta)})
    return os.path.getsize(path)


def read_sparse_state(path: str) -> dict[str, torch.Tensor]:
    """The dense tensors of a file written by `write_sparse_state`."""
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
        fmt, shapes = meta["format"], json.loads(meta["sparse_shapes"])
        raw = {k: f.get_tensor(k) for k in f.keys()}
    out = {k: v for k, v in raw.items() if "::" not in k}
    for name, shape in shapes.items():
        values = raw[f"{name}::values"]
        if fmt == "bitmask":
            n = shape[0] * shape[1]
            nonzero = np.unpackbits(raw[f"{name}::mask"].numpy(), bitorder="little", count=n).astype(bool)
            dense = torch.zeros(n, dtype=values.dtype)
            dense[torch.from_numpy(nonzero)] = values
            out[name] = dense.view(shape)
        else:
            with warnings.catch_warnings():  # torch's CSR tensors warn that they are beta
                warnings.filterwarnings("ignore", message=".*[Ss]parse.*", category=UserWarning)
                out[name] = torch.sparse_csr_tensor(raw[f"{name}::crow"].long(), raw[f"{name}::col"].long(), values,
                                                    size=shape, check_invariants=True).to_dense()
    return out


def _payload_bytes(t: torch.Tensor, fmt: str | None) -> int:
    """Bytes of `t`'s tensors in a file of format `fmt` (None = dense), as `write_sparse_state` would choose."""
    dense = t.numel() * t.element_size()
    if fmt is None or t.ndim != 2 or not t.is_floating_point():
        return dense
    return min(dense, _encoded_bytes(t, fmt))


@torch.no_grad()
def counted_sparse_bytes(adapter, recipe) -> dict:
    """Bytes of the model's tensors under `recipe`'s magnitude sparsity alone, counted from the masks (nothing written).

    Dense (zeros stored, as `save_pretrained` would), bitmask and CSR: exactly the tensor bytes `write_sparse_state`
    writes for the sparsified state dict (its safetensors header, a few kB, aside). Heads, neurons, bits and ranks of
    the recipe are not applied here: this is what the zeros alone buy on this model's weights.
    """
    from analysis.core.sparsity import magnitude_masks, sparsify

    masks = magnitude_masks(adapter, recipe)
    by_ptr = {}
    for (layer, role), mask in masks.items():
        w = getattr(adapter.layer(layer), role).weight
        by_ptr.setdefault(w.data_ptr(), (w, mask))  # ALBERT's shared matrix: one mask, counted once
    out = {"dense": 0, **{fmt: 0 for fmt in FORMATS + COUNTED_FORMATS}, "dense_fp16": 0, "2:4_fp16": 0}
    zeros = numel = 0
    for t in adapter.model.state_dict().values():  # every entry, as `sparse_sizes` writes them
        if t.data_ptr() in by_ptr and tuple(t.shape) == tuple(by_ptr[t.data_ptr()][0].shape):
            t = sparsify(t, by_ptr[t.data_ptr()][1])
        out["dense"] += _payload_bytes(t, None)
        for fmt in FORMATS:
            out[fmt] += _payload_bytes(t, fmt)
        matrix = t.ndim == 2 and t.is_floating_point()
        out["2:4"] += two_four_bytes(t) if matrix else _payload_bytes(t, None)
        half = 2 if t.is_floating_point() else t.element_size()  # fp16 values, as the CUDA 2:4 kernels run them
        out["dense_fp16"] += t.numel() * half
        out["2:4_fp16"] += two_four_bytes(t, 2) if matrix else t.numel() * half
        if matrix:
            zeros, numel = zeros + int((t == 0).sum()), numel + t.numel()
    return {"bytes": out, "zero_fraction_of_matrices": zeros / max(numel, 1), "sparsified_matrices": len(by_ptr),
            "relative_to_dense": {fmt: out[fmt] / out["dense"] for fmt in FORMATS + COUNTED_FORMATS},
            "2:4_fp16_relative_to_dense_fp16": out["2:4_fp16"] / max(out["dense_fp16"], 1),
            "counted": {"2:4": TWO_FOUR_WHAT, "dense_fp16": "every floating tensor at 2 bytes (no file)"}}


def sparse_sizes(model: torch.nn.Module, directory: str) -> dict:
    """Write the model's weights dense (safetensors, zeros included) and in every format under `directory`.

    Returns bytes per file, the fraction of zeros over all 2-D weights, and each format's size relative to dense.
    """
    os.makedirs(directory, exist_ok=True)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    dense_path = os.path.join(directory, "dense.safetensors")
    save_file(state, dense_path)
    out = {"dense_with_zeros": os.path.getsize(dense_path)}
    for fmt in FORMATS:
        out[fmt] = write_sparse_state(state, os.path.join(directory, f"{fmt}.safetensors"), fmt)
    matrices = [t for t in state.values() if t.ndim == 2 and t.is_floating_point()]
    zeros = sum(int((t == 0).sum()) for t in matrices)
    # the 2:4 layout is counted from the tensors (the tensor bytes, no header): no file holds it
    two_four = sum(two_four_bytes(t) if t.ndim == 2 and t.is_floating_point() else t.numel() * t.element_size()
                   for t in state.values())
    return {"bytes": out, "zero_fraction_of_matrices": zeros / sum(t.numel() for t in matrices),
            "counted_bytes": {"2:4": two_four, "what": TWO_FOUR_WHAT},
            "two_four_matrices": sum(holds_two_four(t) for t in matrices if t.is_floating_point()),
            "relative_to_dense": {fmt: out[fmt] / out["dense_with_zeros"] for fmt in FORMATS},
            "files": {k: os.path.join(directory, f"{'dense' if k == 'dense_with_zeros' else k}.safetensors") for k in out}}
