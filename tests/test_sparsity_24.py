"""2:4 semi-structured sparsity (Recipe.sparsity_pattern "2:4", analysis/core/sparsity.py).

- in every group of 4 consecutive weights along each chosen matrix's input dimension exactly 2 are zero,
  the 2 of smallest |w|, ties by position;
- simulated == materialized logits for every adapter (ModernBERT's fused W_qkv too);
- refusals in one sentence: sparsity other than 0.5, global scope, an input dimension not divisible by 4;
- JSON, key and URL round trips; the counted 2:4 bytes; the CUDA backend is absent without CUDA.
"""

import pytest
import torch

from analysis.core.adapters import ROLES, Adapter
from analysis.core.materialize import materialize, save_materialized
from analysis.core.recipe import Recipe
from analysis.core.sparsity import magnitude_masks, two_of_four
from analysis.errors import HeadroomError
from analysis.measure.sparse_files import counted_sparse_bytes, holds_two_four, two_four_bytes
from analysis.testing import ALL_ARCHITECTURES, batch_for, hf_logits, sim_logits, tiny_model

TOL = 1e-4
TWO_FOUR = Recipe(sparsity=0.5, sparsity_pattern="2:4")


def test_two_of_four_keeps_the_two_largest_of_each_group_ties_by_position():
    v = torch.tensor([[3.0, 1.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0],
                      [0.0, 5.0, 0.0, 0.0, 4.0, 3.0, 2.0, 1.0]])
    assert two_of_four(v).int().tolist() == [[0, 1, 0, 1, 1, 1, 0, 0],  # tied 1.0s: the first two go
                                             [1, 0, 1, 0, 0, 0, 1, 1]]


@pytest.mark.parametrize("arch", ALL_ARCHITECTURES)
def test_every_group_of_four_has_exactly_two_zeros(arch):
    adapter = Adapter(tiny_model(arch))
    masks = magnitude_masks(adapter, TWO_FOUR)
    assert set(masks) == {(i, r) for i in range(3) for r in ROLES}
    for (i, role), m in masks.items():
        w = getattr(adapter.layer(i), role).weight
        assert m.shape == w.shape
        groups = m.reshape(w.shape[0], -1, 4)
        assert (groups.sum(-1) == 2).all(), (i, role)
        a = w.abs().reshape(w.shape[0], -1, 4)  # the zeroed are the 2 smallest of their group
        assert (a.masked_fill(~groups, -1).amax(-1) <= a.masked_fill(groups, float("inf")).amin(-1)).all()
        assert int(m.sum()) == w.numel() // 2


@pytest.mark.parametrize("arch", ALL_ARCHITECTURES)
def test_simulated_equals_materialized(arch):
    model = tiny_model(arch)
    b = batch_for(arch)
    recipe = TWO_FOUR.replace(sparsity=[0.5, 0.0, 0.5] if arch != "albert" else 0.5)
    sim = sim_logits(model, recipe, b)
    real = materialize(model, recipe)
    torch.testing.assert_close(sim, hf_logits(real, b), atol=TOL, rtol=0)
    assert (sim - hf_logits(model, b)).abs().max() > 1e-3
    ra = Adapter(real)
    layers = range(3) if arch == "albert" else (0, 2)
    for i in layers:  # the materialized matrices hold the pattern (ModernBERT: the whole fused W_qkv)
        for role in ROLES:
            w = getattr(ra.layer(i), role)
            assert holds_two_four(getattr(w, "module", w).weight), (i, role)
    if arch != "albert":
        assert not holds_two_four(ra.layer(1).ffn_in.weight)  # sparsity 0 there: left dense


@pytest.mark.parametrize("recipe, words", [
    (Recipe(sparsity=0.3, sparsity_pattern="2:4"), "sparsity must be 0.5 .*not 0.3"),
    (Recipe(sparsity=[0.5, 0.9, 0.5], sparsity_pattern="2:4"), "not 0.9"),
    (Recipe(sparsity=0.5, sparsity_pattern="2:4", sparsity_scope="global"), "no global threshold"),
    (Recipe(sparsity=0.5, sparsity_pattern="4:8"), "Unknown sparsity_pattern"),
])
def test_bad_pattern_is_one_sentence(recipe, words):
    with pytest.raises(HeadroomError, match=words) as e:
        recipe.validate(3, 4)
    assert str(e.value).count(". ") == 0 and str(e.value).endswith(".")
    with pytest.raises(HeadroomError, match=words):  # the masks refuse it too, not a silent 50%
        magnitude_masks(Adapter(tiny_model("bert")), recipe)


def test_input_dimension_not_divisible_by_four_is_refused_naming_the_matrix():
    model = tiny_model("bert", hidden=30, heads=3)  # 30 input columns in Q/K/V/O and W_in
    adapter = Adapter(model)
    with pytest.raises(HeadroomError, match="Layer 0's query matrix has 30 input columns, not a multiple of 4"):
        adapter.validate(TWO_FOUR)
    with pytest.raises(HeadroomError, match="query matrix has 30"):
        magnitude_masks(adapter, TWO_FOUR)
    ok = TWO_FOUR.replace(sparsity_roles=["ffn_out"])  # W_out reads the 60 intermediate units
    adapter.validate(ok)
    assert all((m.reshape(30, -1, 4).sum(-1) == 2).all() for m in magnitude_masks(adapter, ok).values())


def test_json_key_describe_and_url_round_trip():
    from dashboard.state import decode_recipe, encode_recipe

    r = TWO_FOUR.replace(sparsity_roles=["ffn_in", "ffn_out"])
    assert Recipe.from_json(r.to_json()) == r and Recipe.from_json(r.to_json()).key() == r.key()
    assert r.key() != r.replace(sparsity_pattern="unstructured").key()
    assert "sparsity_pattern" not in Recipe().key()  # the default is left out: keys stored before it stay valid
    assert r.describe() == "50% sparse (2:4 magnitude, ffn_in+ffn_out)"
    assert encode_recipe(r) == "p5000_riu_t24"
    for x in (r, TWO_FOUR, TWO_FOUR.replace(sparsity=[0.5, 0.0, 0.5]), Recipe(sparsity=0.5)):
        assert decode_recipe(encode_recipe(x)).key() == x.key(), encode_recipe(x)
    assert r.first_changed_layer(3) == 0
    assert r.signature(3) != r.replace(sparsity_pattern="unstructured").signature(3)  # not an incremental-eval hit
    with pytest.raises(HeadroomError, match="link"):
        decode_recipe("p3000_t24")  # a 2:4 link with another fraction: refused, baseline shown


def test_counted_two_four_bytes(tmp_path):
    model = tiny_model("bert", hidden=64)
    counted = counted_sparse_bytes(Adapter(model), TWO_FOUR)
    b = counted["bytes"]
    encoder = sum(getattr(Adapter(model).layer(i), r).weight.numel() for i in range(3) for r in ROLES)
    # each of the encoder's n weights: fp32 dense 4 bytes -> 2:4 2 bytes (half the values) + 1/8 (2 bits per kept value)
    assert b["dense"] - b["2:4"] == encoder * 4 - (encoder // 2 * 4 + encoder // 8)
    assert b["dense_fp16"] - b["2:4_fp16"] == encoder * 2 - (encoder // 2 * 2 + encoder // 8)
    assert counted_sparse_bytes(Adapter(model), Recipe(sparsity=0.5))["bytes"]["2:4"] == b["dense"]  # no pattern: dense
    assert two_four_bytes(torch.tensor([[0.0, 1.0, 0.0, 2.0]])) == 2 * 4 + 1
    assert two_four_bytes(torch.tensor([[0.0, 1.0, 3.0, 2.0]])) == 4 * 4
    saved = save_materialized(materialize(model, TWO_FOUR), None, str(tmp_path / "out"), TWO_FOUR)
    assert saved["sparse_weights_bytes"]["counted"]["2:4"] == b["2:4"] and "counted" in saved["sparse_weights_bytes"]["counted"]["what"]


def test_the_cuda_backend_is_offered_only_with_cuda(monkeypatch):
    from analysis.measure import backends

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert backends.SEMI_STRUCTURED_BACKEND not in backends.available_backends(TWO_FOUR)
    assert "need a CUDA GPU" in backends.semi_structured_unavailable()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (8, 0))
    assert backends.SEMI_STRUCTURED_BACKEND in backends.available_backends(TWO_FOUR)
    assert backends.SEMI_STRUCTURED_BACKEND not in backends.available_backends(Recipe(sparsity=0.5))  # no pattern
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (7, 5))
    assert "Ampere" in backends.semi_structured_unavailable()


def test_cli_sparsity_pattern(capsys, model_dir, tmp_path):
    import json

    from analysis.cli import main

    def run(*argv):
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    for command in ("evaluate", "materialize", "backends"):  # the field's help text goes through argparse's % formatting
        assert main([command, "--help"]) == 0 and "--sparsity-pattern" in capsys.readouterr().out
    code, out, err = run("materialize", "--model", model_dir, "--sparsity-pattern", "2:4", "--out", str(tmp_path / "m"))
    assert code == 0, err
    saved = json.loads(out)
    recipe = json.loads((tmp_path / "m" / "recipe.json").read_text())
    assert recipe["sparsity"] == 0.5 and recipe["sparsity_pattern"] == "2:4"  # the pattern's fraction, set for you
    counted = saved["sparse_weights_bytes"]["counted"]
    assert counted["2:4"] < saved["sparse_weights_bytes"]["dense_with_zeros"] and "not written" in counted["what"]
    code, out, err = run("materialize", "--model", model_dir, "--sparsity", "0.3", "--sparsity-pattern", "2:4",
                         "--out", str(tmp_path / "n"))
    assert code == 2 and "sparsity must be 0.5" in err and "Traceback" not in err and not (tmp_path / "n").exists()


def test_asking_for_the_cuda_backend_without_cuda_is_one_sentence(monkeypatch):
    from analysis.measure.backends import SEMI_STRUCTURED_BACKEND, compare_backends

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(HeadroomError, match="need a CUDA GPU of the Ampere generation or newer; this machine has none"):
        compare_backends(None, TWO_FOUR, backends=[SEMI_STRUCTURED_BACKEND])  # refused before anything is built
