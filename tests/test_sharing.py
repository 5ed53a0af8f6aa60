"""Cross-layer sharing (Recipe.shared_layers / share_mode, analysis/core/sharing.py): simulated ==
materialized == reloaded for every adapter, the trivial cases equal the original, parameters counted
and saved once, validation in one sentence, and recovery keeping the group tied."""

from __future__ import annotations

import os

import pytest
import torch

from analysis.cli.common import add_recipe_args, recipe_from_args
from analysis.core.adapters import Adapter
from analysis.core.materialize import load_materialized, materialize, plain_loadable, save_materialized
from analysis.core.recipe import Recipe, parse_share_groups
from analysis.core.sharing import SHARED_KEY, tied_groups
from analysis.errors import HeadroomError
from analysis.measure.flops import count_flops, count_parameters
from analysis.measure.size import size_report
from analysis.testing import batch_for, hf_logits, sim_logits, tiny_dataset, tiny_loaded, tiny_model

#: the families of the issue (BERT, RoBERTa / XLM-R, DistilBERT, DeBERTa-v2/v3, ModernBERT) and ELECTRA
FAMILIES = ("bert", "roberta", "xlm-roberta", "distilbert", "deberta-v2", "modernbert", "electra")
TOL = 1e-4


def layer_parameters(adapter: Adapter, index: int) -> int:
    return sum(p.numel() for p in adapter.layer_module(index).parameters())


@pytest.mark.parametrize("arch", FAMILIES)
@pytest.mark.parametrize("mode", ["first", "mean"])
def test_simulated_equals_materialized_and_reloaded(arch, mode, tmp_path):
    model = tiny_model(arch, layers=4)
    batch = batch_for(arch)
    # heads and FFN units masked alike in the group (sharing applies first, then the slicing)
    recipe = Recipe(shared_layers=[[1, 2, 3]], share_mode=mode, masked_heads=[(l, 0) for l in (1, 2, 3)],
                    masked_neurons=[(l, [3, 5]) for l in (1, 2, 3)])
    simulated = sim_logits(model, recipe, batch)
    assert (simulated - hf_logits(model, batch)).abs().max() > 1e-3  # sharing changes what the model computes
    new = materialize(model, recipe)
    assert (simulated - hf_logits(new, batch)).abs().max() <= TOL
    adapter = Adapter(new)
    assert tied_groups(adapter) == [[1, 2, 3]]
    assert adapter.layer(1).ffn_in.weight is adapter.layer(3).ffn_in.weight  # one storage, not a copy
    assert getattr(new.config, SHARED_KEY) == [[1, 2, 3]] and not plain_loadable(new.config)
    saved = save_materialized(new, None, str(tmp_path / "m"), recipe)
    reloaded = load_materialized(saved["dir"])
    assert tied_groups(Adapter(reloaded)) == [[1, 2, 3]]
    assert (hf_logits(reloaded, batch) - simulated).abs().max() <= TOL
    assert sum(p.numel() for p in reloaded.parameters()) == sum(p.numel() for p in new.parameters())


@pytest.mark.parametrize("arch", FAMILIES)
def test_parameters_drop_by_exactly_the_shared_layers(arch, tmp_path):
    model = tiny_model(arch, layers=4)
    adapter = Adapter(model)
    recipe = Recipe(shared_layers=[[1, 2, 3]])
    new = materialize(model, recipe)
    before = sum(p.numel() for p in model.parameters())
    after = sum(p.numel() for p in new.parameters())
    assert after == before - layer_parameters(adapter, 2) - layer_parameters(adapter, 3)
    assert size_report(adapter, recipe).parameters == after  # counted from the recipe, as materialized
    assert sum(r.params for r in count_parameters(adapter, recipe)) == after
    assert sum(c.total for c in count_flops(adapter, recipe)) == sum(c.total for c in count_flops(adapter))  # FLOPs unchanged
    # saved once: the file is smaller by the shared layers' bytes (fp32) plus their names in the header
    whole = save_materialized(materialize(model, Recipe()), None, str(tmp_path / "a"), Recipe())["weights_bytes"]
    shared = save_materialized(new, None, str(tmp_path / "b"), recipe)["weights_bytes"]
    dropped = 4 * (before - after)
    assert dropped <= whole - shared <= dropped + 200 * 2 * len(list(adapter.layer_module(2).parameters()))


@pytest.mark.parametrize("arch", FAMILIES)
def test_a_group_of_one_layer_is_the_original(arch):
    model = tiny_model(arch)
    batch = batch_for(arch)
    recipe = Recipe(shared_layers=[[1]], share_mode="mean")
    assert recipe.first_changed_layer(3) == 3  # nothing changes
    assert (sim_logits(model, recipe, batch) - hf_logits(model, batch)).abs().max() <= TOL
    new = materialize(model, recipe)
    assert tied_groups(Adapter(new)) == []
    assert sum(p.numel() for p in new.parameters()) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("arch", FAMILIES)
@pytest.mark.parametrize("mode", ["first", "mean"])
def test_sharing_identical_layers_is_the_original(arch, mode):
    model = tiny_model(arch)
    adapter = Adapter(model)
    adapter.layer_module(2).load_state_dict(adapter.layer_module(1).state_dict())  # layers 1 and 2 identical
    batch = batch_for(arch)
    recipe = Recipe(shared_layers=[[1, 2]], share_mode=mode)
    reference = hf_logits(model, batch)
    assert (sim_logits(model, recipe, batch) - reference).abs().max() <= TOL
    assert (hf_logits(materialize(model, recipe), batch) - reference).abs().max() <= TOL


def test_mean_is_the_elementwise_mean_and_first_is_the_first_layer():
    model = tiny_model("bert", layers=4)
    adapter = Adapter(model)
    group = [0, 2, 3]
    for mode in ("first", "mean"):
        new = Adapter(materialize(model, Recipe(shared_layers=[group], share_mode=mode)))
        for role in ("query", "ffn_out"):
            weights = torch.stack([getattr(adapter.layer(i), role).weight for i in group])
            expected = weights[0] if mode == "first" else weights.mean(dim=0)
            assert torch.equal(getattr(new.layer(3), role).weight, expected)
        assert torch.equal(new.layer(1).query.weight, adapter.layer(1).query.weight)  # not in the group
    ln = new.layer(0).ffn_layernorm.weight  # the LayerNorms are shared (and averaged) too
    assert torch.equal(ln, torch.stack([adapter.layer(i).ffn_layernorm.weight for i in group]).mean(dim=0))


@pytest.mark.parametrize("scope", ["local", "global"])
def test_sparsity_and_bits_apply_to_the_shared_weights(scope):
    model = tiny_model("bert", layers=4)
    batch = batch_for("bert")
    recipe = Recipe(shared_layers=[[0, 1], [2, 3]], share_mode="mean", sparsity=0.5, sparsity_scope=scope,
                    weight_bits=8, granularity="per-channel")
    assert (sim_logits(model, recipe, batch) - hf_logits(materialize(model, recipe), batch)).abs().max() <= TOL


def test_modernbert_layer_zero_and_albert_are_refused():
    with pytest.raises(HeadroomError, match="ModernBERT's layer 0"):
        Adapter(tiny_model("modernbert")).validate(Recipe(shared_layers=[[0, 1]]))
    with pytest.raises(HeadroomError, match="ALBERT already"):
        Adapter(tiny_model("albert")).validate(Recipe(shared_layers=[[0, 1]]))


@pytest.mark.parametrize("recipe, words", [
    (Recipe(shared_layers=[[0, 1], [1, 2]]), "in two groups"),
    (Recipe(shared_layers=[[0, 3]]), "Layer 3 cannot share"),
    (Recipe(shared_layers=[[0, 1]], dropped_layers=[1]), "dropped and also shares"),
    (Recipe(shared_layers=[[0, 1]], masked_heads=[(0, 1)]), "mask different heads"),
    (Recipe(shared_layers=[[0, 1]], masked_neurons=[(1, [2])]), "mask different FFN neurons"),
    (Recipe(shared_layers=[[0, 1]], weight_bits=[8, 4, 8]), "different weight bits"),
    (Recipe(shared_layers=[[0, 1]], ranks=[(0, "ffn_in", 4)]), "different low ranks"),
    (Recipe(shared_layers=[[]]), "empty"),
    (Recipe(share_mode="median"), "Unknown share_mode"),
])
def test_validation_refuses_in_one_sentence(recipe, words):
    with pytest.raises(HeadroomError, match=words) as e:
        Adapter(tiny_model("bert")).validate(recipe)
    assert "\n" not in str(e.value) and str(e.value).endswith(".")


def test_a_model_that_already_shares_refuses_uneven_recipes_on_its_groups():
    shared = materialize(tiny_model("bert"), Recipe(shared_layers=[[0, 1]]))
    adapter = Adapter(shared)
    with pytest.raises(HeadroomError, match="of this model share weights"):
        adapter.validate(Recipe(masked_heads=[(0, 2)]))
    with pytest.raises(HeadroomError, match="already shares"):
        adapter.validate(Recipe(shared_layers=[[1, 2]]))
    pruned = materialize(shared, Recipe(masked_heads=[(0, 2), (1, 2)]))  # alike: allowed, still tied
    assert tied_groups(Adapter(pruned)) == [[0, 1]] and Adapter(pruned).heads_in_layer(1) == 3
    assert size_report(adapter, Recipe()).parameters == sum(p.numel() for p in shared.parameters())


def test_json_describe_signature_cli_and_link():
    import argparse

    from dashboard.state import decode_recipe, encode_recipe

    r = Recipe(shared_layers=[[5, 4], [0, 1, 1]], share_mode="mean")
    assert r.shared_layers == [[0, 1], [4, 5]]
    assert Recipe.from_json(r.to_json()) == r
    assert r.describe() == "layers 0-1, 4-5 shared (mean)"
    assert Recipe(shared_layers=[[0, 2, 4]]).describe() == "layers 0+2+4 shared (first)"
    assert Recipe(shared_layers=[[2, 3]]).first_changed_layer(6) == 3  # "first": layer 2 runs its own weights
    assert Recipe(shared_layers=[[2, 3]], share_mode="mean").first_changed_layer(6) == 2
    assert decode_recipe(encode_recipe(r)) == r
    assert decode_recipe(encode_recipe(Recipe(shared_layers=[[0, 2]]))) == Recipe(shared_layers=[[0, 2]])
    assert parse_share_groups("0-1,2+4") == [[0, 1], [2, 4]]
    with pytest.raises(HeadroomError, match="not a group of layers"):
        parse_share_groups("0-a")
    with pytest.raises(HeadroomError, match="must be a list of groups"):
        Recipe.from_dict({"shared_layers": [0, 1]})
    p = argparse.ArgumentParser()
    add_recipe_args(p)
    args = p.parse_args(["--share-layers", "0-1,2-3", "--share-mode", "mean"])
    assert recipe_from_args(args) == Recipe(shared_layers=[[0, 1], [2, 3]], share_mode="mean")


def test_recovery_trains_one_tied_tensor_and_exports_it_shared(tmp_path):
    from analysis.recovery.config import RecoveryConfig
    from analysis.recovery.loop import recover
    from analysis.recovery.student import build_student

    loaded = tiny_loaded(layers=3)
    recipe = Recipe(shared_layers=[[0, 1, 2]], share_mode="mean", masked_heads=[(0, 1), (1, 1), (2, 1)])
    student = build_student(loaded.model, recipe)
    names = [n for n, _ in student.model.named_parameters()]
    assert not any(".layer.1." in n or ".layer.2." in n for n in names)  # the optimizer sees one tensor per weight
    start = Adapter(student.model).layer(0).ffn_in.weight.detach().clone()
    config = RecoveryConfig.for_objective("ce", holdout=0, epochs=2, batch_size=16, lr=1e-2, warmup_ratio=0.0,
                                          device="cpu", eval_split="none")
    res = recover(loaded, recipe, config, train=tiny_dataset(n=32, seed=4), out_dir=str(tmp_path / "r"))
    model = load_materialized(res["out_dir"])
    adapter = Adapter(model)
    assert tied_groups(adapter) == [[0, 1, 2]]
    for role in ("query", "attention_output", "ffn_in", "ffn_out"):
        assert getattr(adapter.layer(0), role).weight is getattr(adapter.layer(2), role).weight
    assert not torch.equal(adapter.layer(0).ffn_in.weight, start)  # it did train
    assert res["student"]["parameters"] == sum(p.numel() for p in model.parameters())
    assert res["saved"]["weights_bytes"] < 4 * res["student"]["teacher_parameters"]
    assert os.path.exists(os.path.join(res["out_dir"], "model.safetensors"))
