"""Low rank (analysis/core/lowrank.py): truncated SVD of encoder matrices and ALBERT-style factorised embeddings.

- full rank == the original model (simulated and materialized), for every adapter;
- a truncated rank: simulated == materialized (two Linears), reloaded from disk, uneven across layers;
- the spectrum energy kept is Eckart-Young's (the squared error is the energy dropped);
- factorised embeddings (E x H projection from the SVD): full size == original, small E simulated ==
  materialized, counted parameters follow.
"""

import pytest
import torch

from analysis.core.adapters import Adapter
from analysis.core.lowrank import FactorizedEmbedding, LowRankLinear, truncated_svd
from analysis.core.materialize import load_materialized, materialize, save_materialized
from analysis.core.recipe import Recipe
from analysis.core.simulate import simulate
from analysis.errors import HeadroomError
from analysis.measure.flops import count_flops, count_parameters, total_flops
from analysis.measure.size import size_report
from analysis.testing import ALL_ARCHITECTURES, tiny_batch, tiny_model

TOL = 1e-4
ROLES_CUT = ("attention_output", "ffn_in", "ffn_out")  # materializable in every family (ModernBERT: fused QKV)


def hf_logits(model, batch):
    with torch.no_grad():
        return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits


def sim_logits(model, recipe, batch):
    with torch.no_grad():
        return simulate(Adapter(model), recipe)(batch).logits


def batch_for(arch):
    return tiny_batch(pad_id=1 if arch in ("roberta", "xlm-roberta") else 0)


def test_energy_kept_is_eckart_young():
    w = torch.randn(24, 40, dtype=torch.float64)
    s = torch.linalg.svdvals(w)
    for r in (1, 5, 24):
        down, up, energy = truncated_svd(w, r)
        assert down.shape == (r, 40) and up.shape == (24, r)
        err = float(((w - up @ down) ** 2).sum())
        assert err == pytest.approx(float((s[r:] ** 2).sum()), rel=1e-9, abs=1e-9)
        assert energy == pytest.approx(1 - err / float((w ** 2).sum()), rel=1e-9)


@pytest.mark.parametrize("arch", ALL_ARCHITECTURES)
def test_full_rank_equals_the_original(arch):
    model = tiny_model(arch)
    adapter = Adapter(model)
    b = batch_for(arch)
    roles = ROLES_CUT + (("query", "key", "value") if arch != "modernbert" else ())
    full = [(l, role, min(getattr(adapter.layer(l), role).weight.shape)) for l in range(3) for role in roles]
    recipe = Recipe(ranks=full, embedding_size=min(adapter.word_embeddings.weight.shape))
    original = hf_logits(model, b)
    torch.testing.assert_close(sim_logits(model, recipe, b), original, atol=TOL, rtol=0)
    if arch == "modernbert":
        recipe = recipe.replace(ranks=[e for e in full if e[1] in ROLES_CUT])
    real = materialize(model, recipe)
    torch.testing.assert_close(hf_logits(real, b), original, atol=TOL, rtol=0)
    assert isinstance(Adapter(real).layer(0).ffn_in, LowRankLinear)
    assert isinstance(Adapter(real).word_embeddings, FactorizedEmbedding)


@pytest.mark.parametrize("arch", ALL_ARCHITECTURES)
def test_truncated_rank_simulated_equals_materialized_and_reloads(arch, tmp_path):
    model = tiny_model(arch)
    b = batch_for(arch)
    if arch == "albert":  # one shared layer: the same ranks in every layer
        ranks = [(l, role, r) for l in range(3) for role, r in (("ffn_in", 4), ("key", 3))]
    else:  # uneven: layer 0 cuts its FFN hard, layer 2 its attention output; with heads and neurons sliced too
        ranks = [(0, "ffn_in", 3), (0, "ffn_out", 5), (2, "attention_output", 2), (1, "value", 6)]
        if arch == "modernbert":  # its value is a row block of the fused W_qkv
            ranks[-1] = (1, "attention_output", 6)
    extra = {} if arch == "albert" else dict(masked_heads=[(2, 1)], masked_neurons=[(0, [1, 2, 9])], dropped_layers=[1])
    recipe = Recipe(ranks=ranks, embedding_size=6, **extra)
    sim = sim_logits(model, recipe, b)
    real = materialize(model, recipe)
    torch.testing.assert_close(hf_logits(real, b), sim, atol=TOL, rtol=0)
    assert (sim - hf_logits(model, b)).abs().max() > 1e-3
    save_materialized(real, None, str(tmp_path), recipe)
    torch.testing.assert_close(hf_logits(load_materialized(str(tmp_path)), b), sim, atol=TOL, rtol=0)
    # counted parameters == the materialized model's own (ALBERT's shared layer counted once)
    assert sum(r.params for r in count_parameters(Adapter(model), recipe)) == sum(p.numel() for p in real.parameters())


def test_counts_shrink_with_the_rank():
    adapter = Adapter(tiny_model("bert", hidden=64))
    recipe = Recipe(ranks=[(l, role, 8) for l in range(3) for role in ("ffn_in", "ffn_out")], embedding_size=16)
    assert size_report(adapter, recipe).parameters < size_report(adapter, Recipe()).parameters
    assert total_flops(count_flops(adapter, recipe, 2, 16)) < total_flops(count_flops(adapter, Recipe(), 2, 16))
    # one FFN matrix 128 x 64 at rank 8: 8 x (128 + 64) weights instead of 8192
    cut = size_report(adapter, Recipe(ranks=[(0, "ffn_in", 8)]))
    assert size_report(adapter, Recipe()).parameters - cut.parameters == 128 * 64 - 8 * (128 + 64)


@pytest.mark.parametrize("recipe, words", [
    (Recipe(ranks=[(0, "ffn_in", 65)]), "rank is at most 32"),
    (Recipe(ranks=[(0, "ffn", 4)]), "Unknown matrix role"),
    (Recipe(ranks=[(0, "ffn_in", 0)]), "at least 1"),
    (Recipe(ranks=[(5, "ffn_in", 4)]), "layers 0-2"),
    (Recipe(embedding_size=40), "not a factorisation"),
])
def test_bad_ranks_are_one_sentence(recipe, words):
    with pytest.raises(HeadroomError, match=words):
        Adapter(tiny_model("bert")).validate(recipe)


def test_refusals_and_views():
    with pytest.raises(HeadroomError, match="fused W_qkv"):
        materialize(tiny_model("modernbert"), Recipe(ranks=[(0, "query", 4)]))
    with pytest.raises(HeadroomError, match="same heads and FFN"):
        materialize(tiny_model("albert"), Recipe(ranks=[(0, "ffn_in", 4)]))
    with pytest.raises(HeadroomError, match="already factorised"):
        materialize(materialize(tiny_model("bert"), Recipe(ranks=[(0, "ffn_in", 4)])), Recipe(weight_bits=8))
    r = Recipe(ranks=[(1, "ffn_out", 4), (0, "query", 8), (1, "ffn_out", 2)], embedding_size=128)
    assert r.ranks == [(0, "query", 8), (1, "ffn_out", 2)] and Recipe.from_json(r.to_json()) == r
    assert r.describe() == "2 low-rank matrices (L0 query r8, L1 ffn_out r2); embeddings factorised (E = 128)"
    assert Recipe(ranks=[(2, "ffn_in", 4)]).first_changed_layer(3) == 2
    assert Recipe(embedding_size=16).first_changed_layer(3) == 0


def test_ranks_travel_in_the_url():
    from dashboard.state import decode_recipe, encode_recipe

    r = Recipe(ranks=[(0, "ffn_in", 8), (11, "attention_output", 128)], embedding_size=128, sparsity=0.5)
    assert encode_recipe(r) == "p5000_w0i8.11o128_x128"
    assert decode_recipe(encode_recipe(r)).key() == r.key()
    with pytest.raises(HeadroomError, match="link"):
        decode_recipe("w0z8")
    with pytest.raises(HeadroomError, match="link"):
        decode_recipe("wx")


def test_spectra_give_the_energy_spectrum_report_gives_for_any_rank():
    """The Weights page keeps each matrix's spectrum and reads the energy of any rank from it."""
    from analysis.core.lowrank import energy_kept, spectra, spectrum_report

    adapter = Adapter(tiny_model("bert"))
    base = Recipe(sparsity=0.3, masked_heads=[(1, 0)], masked_neurons=[(0, [1, 2])])
    s = spectra(adapter, base, [(0, "ffn_in"), (1, "query"), (2, "ffn_out")], embedding=True)
    for rank in (1, 3, 8):
        recipe = base.replace(ranks=[[0, "ffn_in", rank], [1, "query", rank], [2, "ffn_out", rank]], embedding_size=rank)
        report = {(r["layer"], r["role"]): r["energy_kept"] for r in spectrum_report(adapter, recipe)}
        assert {k: energy_kept(v, rank) for k, v in s.items()} == pytest.approx(report, abs=1e-9)
    assert len(s[(1, "query")]) == min(adapter.kept_shape(base, 1, "query"))  # head 0 sliced out first
    assert energy_kept(s[(0, "ffn_in")], 10 ** 6) == pytest.approx(1.0)
    assert spectra(adapter, Recipe(dropped_layers=[2]), [(2, "query")]) == {}  # a dropped layer has none


def test_a_factorised_embedding_recipe_recovers_with_the_table_frozen_and_the_projection_trained(tmp_path):
    from analysis.core.recipe import Recipe
    from analysis.recovery.config import RecoveryConfig
    from analysis.recovery.loop import recover
    from analysis.testing import tiny_dataset, tiny_loaded

    loaded = tiny_loaded()
    captured = {}
    import analysis.recovery.loop as loop_module

    real = loop_module.build_student

    def spy(*a, **kw):
        student = real(*a, **kw)
        captured["words"] = student.adapter.word_embeddings
        captured["before"] = (student.adapter.word_embeddings.table.weight.detach().clone(),
                              student.adapter.word_embeddings.projection.weight.detach().clone())
        return student

    loop_module.build_student = spy
    try:
        recover(loaded, Recipe(embedding_size=8), RecoveryConfig(epochs=1, batch_size=8, holdout=8, lr=1e-2),
                train=tiny_dataset(32, seed=1), test=tiny_dataset(16), out_dir=str(tmp_path / "r"))
    finally:
        loop_module.build_student = real
    words = captured["words"]
    table0, proj0 = captured["before"]
    assert torch.equal(words.table.weight.detach(), table0)  # frozen
    assert not torch.equal(words.projection.weight.detach(), proj0)  # trained


def test_svd_factors_are_cached_by_value_and_a_changed_matrix_misses():
    from analysis.core import lowrank

    torch.manual_seed(0)
    w = torch.randn(48, 32)
    lowrank._cache.clear()
    first = lowrank.truncated_svd(w, 8)
    assert len(lowrank._cache) == 1
    again = lowrank.truncated_svd(w.clone(), 16)  # same values, another tensor and rank: a hit
    assert len(lowrank._cache) == 1
    assert torch.equal(again[0][:8], first[0]) and torch.equal(again[1][:, :8], first[1])
    changed = w.clone()
    changed[3, 4] += 1e-3
    other = lowrank.truncated_svd(changed, 8)
    assert len(lowrank._cache) == 2 and not torch.equal(other[0], first[0])
    assert torch.allclose(other[1] @ other[0], lowrank.low_rank(changed, 8))
