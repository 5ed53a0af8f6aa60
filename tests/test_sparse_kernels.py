"""CSR kernels of a magnitude-sparse model: the same logits, the chosen matrices converted, smaller on disk."""

import pytest
import torch

from analysis.core.materialize import materialize
from analysis.core.recipe import Recipe
from analysis.core.sparse_kernels import CSRLinear, csr_kernels, zero_fraction
from analysis.measure.lowbit import serialized_bytes
from analysis.testing import ALL_ARCHITECTURES, batch_for, hf_logits, tiny_model


def test_csr_linear_equals_the_dense_linear_on_any_leading_shape():
    torch.manual_seed(0)
    lin = torch.nn.Linear(16, 24)
    with torch.no_grad():
        lin.weight[torch.rand_like(lin.weight) < 0.8] = 0
    csr = CSRLinear(lin)
    assert csr.nnz == int((lin.weight != 0).sum()) and abs(csr.sparsity - zero_fraction(lin.weight)) < 1e-9
    for shape in [(5, 16), (2, 7, 16), (1, 1, 16)]:
        x = torch.randn(*shape)
        torch.testing.assert_close(csr(x), lin(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ALL_ARCHITECTURES)
def test_csr_model_gives_the_dense_sparse_models_logits(arch):
    model = tiny_model(arch)
    b = batch_for(arch)
    sparse = materialize(model, Recipe(sparsity=0.9))
    fast, report = csr_kernels(sparse, min_sparsity=0.5)
    assert report["converted"] and all(abs(s - 0.9) < 0.01 for s in report["converted"].values())
    assert sum(isinstance(m, CSRLinear) for m in fast.modules()) == len(report["converted"])
    with torch.inference_mode():
        dense_logits, csr_logits = hf_logits(sparse, b), hf_logits(fast, b)
    assert (dense_logits - csr_logits).abs().max() <= 1e-4
    assert not any(isinstance(m, CSRLinear) for m in sparse.modules())  # the input model is untouched
    assert serialized_bytes(fast) < serialized_bytes(sparse)  # (tiny models: the dense embeddings dominate)


def test_only_matrices_sparse_enough_are_converted():
    model = tiny_model("bert")
    sparse = materialize(model, Recipe(sparsity=0.6, sparsity_roles=["ffn_in", "ffn_out"]))
    _, none = csr_kernels(sparse, min_sparsity=0.7)
    assert none["converted"] == {}
    _, some = csr_kernels(sparse, min_sparsity=0.5)
    assert len(some["converted"]) == 2 * 3 and all("intermediate" in k or "output" in k for k in some["converted"])
    with pytest.raises(ValueError, match="min_sparsity"):
        csr_kernels(sparse, min_sparsity=1.5)
