"""FFN intermediate-neuron pruning, for every adapter on tiny random models.

- the Recipe field round-trips through JSON, merges per layer and describes itself;
- masked neurons (simulated: sliced out of the intermediate) == the same neurons pruned
  (materialized: W_in rows / W_out columns, both halves of ModernBERT's gated W_i), uneven across
  layers, and the saved directory reloads to the same logits;
- a neuron gate of 0 equals masking the neuron;
- counted parameters and FLOPs shrink by exactly the sliced rows and columns.
"""

import json

import pytest
import torch

from analysis.core.adapters import Adapter
from analysis.core.materialize import INTERMEDIATE_KEY, is_materialized_with_pruned_heads, load_materialized, \
    materialize, save_materialized
from analysis.core.recipe import Recipe
from analysis.errors import HeadroomError
from analysis.measure.flops import count_flops, count_parameters, total_flops
from analysis.measure.size import size_report
from analysis.testing import ALL_ARCHITECTURES, batch_for, hf_logits, sim_logits, tiny_model

TOL = 1e-4



def uneven_neurons(arch, intermediate: int) -> Recipe:
    """Layer 0 loses a scattered third, layer 1 keeps everything but one unit, layer 2 loses all (ALBERT:
    the same units in every layer, its only materializable form)."""
    scattered = list(range(0, intermediate, 3))
    if arch == "albert":
        return Recipe(masked_neurons=[(l, scattered) for l in range(3)])
    return Recipe(masked_neurons=[(0, scattered), (1, [intermediate - 1]), (2, list(range(intermediate)))])


def test_recipe_field_round_trip_and_views():
    r = Recipe(masked_neurons=[(1, [5, 2]), (0, [7]), (1, [2, 9]), (3, [])], masked_heads=[(0, 1)])
    assert r.masked_neurons == [(0, [7]), (1, [2, 5, 9])]  # merged per layer, sorted, empty layers gone
    back = Recipe.from_json(r.to_json())
    assert back == r and back.key() == r.key()
    assert json.loads(r.to_json())["masked_neurons"] == [[0, [7]], [1, [2, 5, 9]]]
    assert r.kept_neurons(1, 10) == [0, 1, 3, 4, 6, 7, 8] and r.kept_neurons(2, 3) == [0, 1, 2]
    assert r.num_masked_neurons == 4
    assert r.describe() == "1 head masked (L0 H1); 4 FFN neurons masked (L0: 1, L1: 3)"
    assert Recipe(masked_neurons=[(l, [0]) for l in range(8)]).describe() == "8 FFN neurons masked in 8 layers"
    assert Recipe(masked_neurons=[(2, [0])]).first_changed_layer(4) == 2
    assert Recipe(masked_neurons=[(2, [0])]).key() != Recipe(masked_neurons=[(2, [1])]).key()


@pytest.mark.parametrize("text, message", [
    ('{"masked_neurons": [[1, 2]]}', r"must be a list of \[layer, \[unit, ...\]\] entries"),
    ('{"masked_neurons": [[1, [2.5]]]}', r"must be a list of \[layer, \[unit, ...\]\] entries"),
])
def test_bad_neuron_json(text, message):
    with pytest.raises(HeadroomError, match=message):
        Recipe.from_json(text)


def test_neurons_are_checked_against_the_model():
    adapter = Adapter(tiny_model("bert"))  # 3 layers, 64 intermediate units
    for recipe, words in [(Recipe(masked_neurons=[(3, [0])]), "layers 0-2"),
                          (Recipe(masked_neurons=[(1, [64])]), "FFN neuron 1:64 does not exist; layer 1 has 64"),
                          (Recipe(masked_neurons=[(1, [-1])]), "units count from 0")]:
        with pytest.raises(HeadroomError, match=words):
            adapter.validate(recipe)


@pytest.mark.parametrize("arch", ALL_ARCHITECTURES)
def test_masked_neurons_equal_pruned(arch, tmp_path):
    model = tiny_model(arch)
    adapter = Adapter(model)
    I = adapter.intermediate_size(0)
    b = batch_for(arch)
    recipe = uneven_neurons(arch, I)
    masked = sim_logits(model, recipe, b)
    pruned_model = materialize(model, recipe)
    pruned = hf_logits(pruned_model, b)
    torch.testing.assert_close(masked, pruned, atol=TOL, rtol=0)
    assert (masked - hf_logits(model, b)).abs().max() > 1e-3  # the recipe really changes the output
    # the FFN matrices really are smaller: rows of W_in (x2 when gated), columns of W_out
    new = Adapter(pruned_model)
    halves = 2 if adapter.ffn_gated else 1
    expected = [I - len(recipe.masked_neurons_in(i)) or 1 for i in range(3)]  # a layer losing all keeps 1 zero unit
    if arch == "albert":
        expected = expected[:1]
    for i, units in enumerate(expected):
        parts = new.layer(i)
        assert parts.ffn_out.weight.shape[1] == units and parts.ffn_in.weight.shape[0] == halves * units
    # saved and reloaded (uneven widths need load_materialized; ALBERT's one width is plain transformers)
    saved = save_materialized(pruned_model, None, str(tmp_path), recipe)
    assert saved["plain_transformers_loadable"] == (arch == "albert")
    assert is_materialized_with_pruned_heads(str(tmp_path)) == (arch != "albert")
    torch.testing.assert_close(hf_logits(load_materialized(str(tmp_path)), b), pruned, atol=TOL, rtol=0)


@pytest.mark.parametrize("arch", ["bert", "distilbert", "modernbert"])
def test_equal_widths_go_into_the_config(arch, tmp_path):
    from transformers import AutoModelForSequenceClassification

    model = tiny_model(arch)
    I = Adapter(model).intermediate_size(0)
    recipe = Recipe(masked_neurons=[(l, list(range(l % 2, I, 2))) for l in range(3)])  # half of each, different units
    pruned = materialize(model, recipe)
    assert not hasattr(pruned.config, INTERMEDIATE_KEY)
    save_materialized(pruned, None, str(tmp_path), recipe)
    plain = AutoModelForSequenceClassification.from_pretrained(str(tmp_path)).eval()
    b = batch_for(arch)
    torch.testing.assert_close(hf_logits(plain, b), sim_logits(model, recipe, b), atol=TOL, rtol=0)


def test_pruning_a_pruned_model_again():
    model = tiny_model("bert")
    first = Recipe(masked_neurons=[(0, list(range(10))), (2, [1, 2])])
    once = materialize(model, first)
    again = Recipe(masked_neurons=[(0, [0, 1]), (1, [5])])  # unit indices of the pruned model
    assert Adapter(once).intermediate_size(0) == 54
    b = batch_for("bert")
    torch.testing.assert_close(hf_logits(materialize(once, again), b), sim_logits(once, again, b), atol=TOL, rtol=0)
    with pytest.raises(HeadroomError, match="layer 0 has 54 intermediate units"):
        Adapter(once).validate(Recipe(masked_neurons=[(0, [60])]))


def test_albert_uneven_neurons_are_refused():
    with pytest.raises(HeadroomError, match="same heads and FFN neurons") as e:
        materialize(tiny_model("albert"), Recipe(masked_neurons=[(0, [1])]))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("arch", ALL_ARCHITECTURES)
def test_zero_neuron_gate_equals_mask(arch):
    model = tiny_model(arch)
    I = Adapter(model).intermediate_size(1)
    b = batch_for(arch)
    gate = torch.ones(I)
    gate[[0, 5, I - 1]] = 0.0
    torch.testing.assert_close(
        sim_logits(model, Recipe(), b, neuron_gates={1: gate}),
        sim_logits(model, Recipe(masked_neurons=[(1, [0, 5, I - 1])]), b),
        atol=TOL, rtol=0,
    )


@pytest.mark.parametrize("arch", ["bert", "modernbert", "albert"])
def test_counts_follow_the_sliced_matrices(arch):
    model = tiny_model(arch)
    adapter = Adapter(model)
    I = adapter.intermediate_size(0)
    recipe = uneven_neurons(arch, I)
    pruned = materialize(model, recipe)
    # counted parameters under the recipe == the materialized model's own (ALBERT: one shared layer)
    counted = sum(r.params for r in count_parameters(adapter, recipe))
    D, halves, bias = adapter.hidden_size, 2 if adapter.ffn_gated else 1, adapter.layer(2).ffn_in.bias is not None
    zero_unit = 0 if arch == "albert" else halves * (D + bias) + D  # layer 2 keeps one zero unit: W_in row(s), W_out column
    assert counted == sum(p.numel() for p in pruned.parameters()) - zero_unit
    assert size_report(adapter, recipe).parameters == counted
    assert total_flops(count_flops(adapter, recipe, 2, 16)) < total_flops(count_flops(adapter, Recipe(), 2, 16))


def test_neurons_travel_in_the_url():
    import random

    from dashboard.state import decode_recipe, encode_recipe

    rng = random.Random(0)
    r = Recipe(masked_heads=[(0, 3)], masked_neurons=[(0, [0, 7, 8, 63]), (3, sorted(rng.sample(range(1536), 768)))])
    code = encode_recipe(r)
    assert decode_recipe(code).key() == r.key() and "_f" in code
    # half of BERT-base's 12 x 3072 neurons still fits a link
    big = Recipe(masked_neurons=[(l, sorted(rng.sample(range(3072), 1536))) for l in range(12)])
    assert len(encode_recipe(big)) < 6500 and decode_recipe(encode_recipe(big)).key() == big.key()
    for bad in ("f!!", "f" + "A" * 20000):
        with pytest.raises(HeadroomError, match="link"):
            decode_recipe(bad)
