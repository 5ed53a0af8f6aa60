"""Magnitude sparsity (analysis/core/sparsity.py) and its honest size (analysis/measure/sparse_files.py).

- sparsity s zeroes exactly round(s * n) weights of each chosen matrix (local) or of all of them
  together (global), the smallest |w|, ties broken by position, reproducibly;
- simulated == materialized == the HF model with those weights zeroed by hand (every adapter);
- the simulation leaves the model untouched;
- the compressed files are real, rebuild the exact weights, and are smaller than dense-with-zeros.
"""

import copy

import pytest
import torch

from analysis.core.adapters import ROLES, Adapter
from analysis.core.materialize import materialize, save_materialized
from analysis.core.recipe import Recipe
from analysis.core.sparsity import magnitude_masks, smallest_k
from analysis.errors import HeadroomError
from analysis.measure.latency import FP32_KERNELS, deployed_model
from analysis.measure.sparse_files import counted_sparse_bytes, read_sparse_state, sparse_sizes, write_sparse_state
from analysis.testing import ALL_ARCHITECTURES, batch_for, hf_logits, sim_logits, tiny_model

TOL = 1e-4



def test_smallest_k_breaks_ties_by_position():
    v = torch.tensor([3.0, 1.0, 2.0, 1.0, 1.0, 0.5])
    assert smallest_k(v, 3).tolist() == [False, True, False, True, False, True]  # 0.5, then the first two 1.0s
    assert smallest_k(v, 0).sum() == 0 and smallest_k(v, 6).all()


@pytest.mark.parametrize("s", [0.1, 0.5, 0.9, 1.0])
def test_local_sparsity_is_exact_per_matrix(s):
    adapter = Adapter(tiny_model("bert"))
    masks = magnitude_masks(adapter, Recipe(sparsity=s))
    assert set(masks) == {(i, r) for i in range(3) for r in ROLES}
    for (i, role), m in masks.items():
        w = getattr(adapter.layer(i), role).weight
        k = round(s * w.numel())
        assert int(m.sum()) == k
        if 0 < k < w.numel():  # the zeroed are the smallest: max |w| zeroed <= min |w| kept
            assert w.abs()[m].max() <= w.abs()[~m].min()


def test_global_sparsity_is_exact_overall_and_uneven_per_matrix():
    model = tiny_model("bert")
    with torch.no_grad():
        model.bert.encoder.layer[2].attention.self.query.weight.mul_(3.0)  # larger weights: fewer of them go
    adapter = Adapter(model)
    recipe = Recipe(sparsity=0.6, sparsity_scope="global", sparsity_roles=["ffn_in", "ffn_out", "query"],
                    dropped_layers=[1])
    masks = magnitude_masks(adapter, recipe)
    assert set(masks) == {(i, r) for i in (0, 2) for r in ("query", "ffn_in", "ffn_out")}
    total = sum(m.numel() for m in masks.values())
    assert sum(int(m.sum()) for m in masks.values()) == round(0.6 * total)
    fractions = {k: float(m.float().mean()) for k, m in masks.items()}
    assert fractions[(2, "query")] < 0.4 < 0.6 < min(v for k, v in fractions.items() if k != (2, "query"))
    zeroed = torch.cat([getattr(adapter.layer(i), r).weight.abs()[m] for (i, r), m in masks.items()])
    kept = torch.cat([getattr(adapter.layer(i), r).weight.abs()[~m] for (i, r), m in masks.items()])
    assert zeroed.max() <= kept.min()


def test_ties_are_deterministic_in_a_whole_model():
    model = tiny_model("bert")
    with torch.no_grad():  # weights on a coarse grid: many exact ties at every threshold
        for p in model.parameters():
            p.copy_((p * 10).round() / 10)
    adapter = Adapter(model)
    for scope in ("local", "global"):
        recipe = Recipe(sparsity=0.37, sparsity_scope=scope)
        a, b = magnitude_masks(adapter, recipe), magnitude_masks(adapter, recipe)
        assert all(torch.equal(a[k], b[k]) for k in a)
        n = sum(m.numel() for m in a.values())
        count = sum(int(m.sum()) for m in a.values())
        if scope == "global":
            assert count == round(0.37 * n)
        else:
            assert all(int(m.sum()) == round(0.37 * m.numel()) for m in a.values())


@pytest.mark.parametrize("arch", ALL_ARCHITECTURES)
def test_simulated_equals_materialized_equals_zeroed_by_hand(arch):
    model = tiny_model(arch)
    b = batch_for(arch)
    recipe = Recipe(sparsity=[0.5, 0.8, 0.5] if arch != "albert" else 0.5, sparsity_roles=["value", "ffn_in", "ffn_out"],
                    masked_heads=[(0, 1)] if arch != "albert" else [], masked_neurons=[(2, [0, 3])] if arch != "albert" else [])
    by_hand = copy.deepcopy(model)
    adapter = Adapter(by_hand)
    with torch.no_grad():
        for (i, role), m in magnitude_masks(adapter, Recipe(sparsity=recipe.sparsity, sparsity_roles=recipe.sparsity_roles)).items():
            getattr(adapter.layer(i), role).weight.masked_fill_(m, 0.0)
    sim = sim_logits(model, recipe, b)
    torch.testing.assert_close(sim, sim_logits(by_hand, recipe.replace(sparsity=0.0), b), atol=TOL, rtol=0)
    real = materialize(model, recipe)
    torch.testing.assert_close(sim, hf_logits(real, b), atol=TOL, rtol=0)
    assert (sim - hf_logits(model, b)).abs().max() > 1e-3
    value = Adapter(real).layer(1).value.weight
    assert float((value == 0).float().mean()) > 0.45  # the zeros are really in the materialized weights


def test_simulation_leaves_the_model_untouched_and_albert_refuses_uneven():
    model = tiny_model("bert")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sim_logits(model, Recipe(sparsity=0.9, sparsity_scope="global"), batch_for("bert"))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(HeadroomError, match="same bits, sparsity and ranks"):
        materialize(tiny_model("albert"), Recipe(sparsity=[0.1, 0.2, 0.3]))


@pytest.mark.parametrize("recipe, words", [
    (Recipe(sparsity=1.5), "between 0 and 1"),
    (Recipe(sparsity=[0.1, 0.2]), "sparsity lists 2 values"),
    (Recipe(sparsity_roles=["ffn"]), "Unknown matrix role"),
    (Recipe(sparsity=[0.1, 0.2, 0.3], sparsity_scope="global"), "one value for all layers"),
    (Recipe(sparsity_scope="everywhere"), "Unknown sparsity_scope"),
])
def test_bad_sparsity_is_one_sentence(recipe, words):
    with pytest.raises(HeadroomError, match=words):
        recipe.validate(3, 4)


def test_sparse_recipe_views():
    r = Recipe(sparsity=0.5, sparsity_roles=["ffn_out", "ffn_in"])
    assert r.sparsity_roles == ["ffn_in", "ffn_out"] and Recipe.from_json(r.to_json()) == r
    assert r.describe() == "50% sparse (magnitude, local, ffn_in+ffn_out)"
    assert Recipe(sparsity=[0.0, 0.0, 0.3]).first_changed_layer(3) == 2
    assert Recipe(sparsity=0.0).is_baseline() and not Recipe(sparsity=0.1).is_baseline()
    with pytest.raises(HeadroomError, match="sparsity must be a number"):
        Recipe.from_json('{"sparsity": "half"}')


def test_sparsity_buys_no_latency_claim():
    model = tiny_model("bert")
    m, what, notes = deployed_model(model, Recipe(sparsity=0.9), torch.device("cpu"))
    assert m is None and what == FP32_KERNELS and "dense kernels" in notes[0]


def test_compressed_files_are_real_exact_and_smaller(tmp_path):
    model = materialize(tiny_model("bert", hidden=64), Recipe(sparsity=0.9))
    sizes = sparse_sizes(model, str(tmp_path / "files"))
    b = sizes["bytes"]
    assert all((tmp_path / "files" / f"{k}.safetensors").stat().st_size == b[k] for k in ("bitmask", "csr"))
    assert b["bitmask"] < b["csr"] < b["dense_with_zeros"]  # at 90%: bitmask n/8 + 4nnz beats CSR 8nnz
    for fmt in ("bitmask", "csr"):
        back = read_sparse_state(str(tmp_path / "files" / f"{fmt}.safetensors"))
        for k, v in model.state_dict().items():
            assert torch.equal(back[k], v), (fmt, k)
    # a dense matrix stays dense (a bitmask would cost more): the file is no bigger than the dense one
    dense = {"w": torch.randn(16, 16) + 5}
    assert write_sparse_state(dense, str(tmp_path / "d.safetensors"), "bitmask") < 16 * 16 * 4 + 200
    saved = save_materialized(model, None, str(tmp_path / "out"), Recipe(sparsity=0.9))
    assert saved["sparse_weights_bytes"]["bitmask"] == (tmp_path / "out" / "sparse" / "bitmask.safetensors").stat().st_size
    assert saved["sparse_weights_bytes"]["bitmask"] < saved["weights_bytes"]


@pytest.mark.parametrize("recipe", [Recipe(sparsity=0.9), Recipe(sparsity=0.5, sparsity_roles=["ffn_in", "ffn_out"]),
                                    Recipe(sparsity=0.99, sparsity_scope="global"), Recipe()])
@pytest.mark.parametrize("arch", ["bert", "albert"])
def test_counted_sparse_bytes_equal_the_tensors_of_the_written_files(tmp_path, recipe, arch):
    """The Weights page counts from the masks; the files `sparse_sizes` writes hold exactly those tensor bytes."""
    from safetensors import safe_open

    model = tiny_model(arch, hidden=64)
    counted = counted_sparse_bytes(Adapter(model), recipe)
    sizes = sparse_sizes(materialize(model, recipe), str(tmp_path / "files"))

    def payload(path):
        with safe_open(path, framework="pt") as f:
            return sum(f.get_tensor(k).numel() * f.get_tensor(k).element_size() for k in f.keys())

    for fmt, name in (("dense", "dense"), ("bitmask", "bitmask"), ("csr", "csr")):
        assert counted["bytes"][fmt] == payload(str(tmp_path / "files" / f"{name}.safetensors")), fmt
    assert counted["zero_fraction_of_matrices"] == pytest.approx(sizes["zero_fraction_of_matrices"])
    if recipe.is_baseline():
        assert counted["bytes"]["bitmask"] == counted["bytes"]["dense"] and counted["sparsified_matrices"] == 0
    else:
        assert counted["bytes"]["bitmask"] < counted["bytes"]["dense"]


def test_sparsity_travels_in_the_url():
    from dashboard.state import decode_recipe, encode_recipe

    for r in (Recipe(sparsity=0.5), Recipe(sparsity=[0.1, 0.25, 0.9], sparsity_roles=["ffn_in", "ffn_out"]),
              Recipe(sparsity=0.37, sparsity_scope="global", masked_neurons=[(1, [3])])):
        assert decode_recipe(encode_recipe(r)).key() == r.key(), encode_recipe(r)
    assert encode_recipe(Recipe(sparsity=0.5, sparsity_roles=["ffn_in"])) == "p5000_ri"
    with pytest.raises(HeadroomError, match="link"):
        decode_recipe("rx")
