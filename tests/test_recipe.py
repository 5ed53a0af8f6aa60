"""Recipe: JSON round-trip, validation messages, and the views other modules rely on."""

import json

import pytest

from analysis.errors import HeadroomError
from analysis.core.recipe import Recipe, parse_head_list, parse_int_list


def test_json_round_trip_keeps_everything():
    r = Recipe(masked_heads=[(1, 2), (0, 3), (1, 2)], dropped_layers=[5, 4], weight_bits=[8, 8, 4, 4, 2, 2],
               embedding_bits=8, granularity="per-head", num_groups=6, symmetric=False, activation_bits=8, name="x")
    back = Recipe.from_json(r.to_json())
    assert back == r
    assert back.masked_heads == [(0, 3), (1, 2)]  # sorted, de-duplicated
    assert back.dropped_layers == [4, 5]
    assert json.loads(r.to_json())["masked_heads"] == [[0, 3], [1, 2]]


def test_key_ignores_name_only():
    assert Recipe(name="a").key() == Recipe(name="b").key()
    assert Recipe(weight_bits=8).key() != Recipe().key()


@pytest.mark.parametrize("recipe, message", [
    (Recipe(masked_heads=[(6, 0)]), "Head 6:0 does not exist"),
    (Recipe(masked_heads=[(0, 12)]), "Head 0:12 does not exist"),
    (Recipe(dropped_layers=[7]), "Layer 7 cannot be dropped"),
    (Recipe(dropped_layers=list(range(6))), "drops every layer"),
    (Recipe(weight_bits=1), "1-bit weights are not supported"),
    (Recipe(weight_bits=[8, 8]), "lists 2 values but the model has 6 layers"),
    (Recipe(embedding_bits=12), "12-bit weights are not supported"),
    (Recipe(granularity="per-row"), "Unknown granularity"),
    (Recipe(activation_bits=4), "activation_bits must be"),
])
def test_validation_messages(recipe, message):
    with pytest.raises(HeadroomError, match=message):
        recipe.validate(6, 12)


@pytest.mark.parametrize("text, message", [
    ("{", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"masked_heads": [[1]]}', r"masked_heads must be a list of \[layer, head\] pairs"),
    ('{"dropped_layers": ["x"]}', "dropped_layers must be a list of whole numbers"),
    ('{"prune": 3}', "Unknown recipe field"),
])
def test_bad_json(text, message):
    with pytest.raises(HeadroomError, match=message):
        Recipe.from_json(text)


def test_missing_recipe_file(tmp_path):
    with pytest.raises(HeadroomError, match="does not exist"):
        Recipe.load(str(tmp_path / "nope.json"))


def test_views():
    r = Recipe(masked_heads=[(1, 0), (1, 3)], dropped_layers=[2], weight_bits=[32, 32, 32, 8])
    mask = r.head_mask(4, 4)
    assert mask.sum() == 14 and mask[1, 0] == 0 and mask[1, 3] == 0
    assert r.kept_heads(1, 4) == [1, 2]
    assert r.first_changed_layer(4) == 1
    assert Recipe(weight_bits=[32, 32, 32, 8]).first_changed_layer(4) == 3
    assert Recipe(embedding_bits=8).first_changed_layer(4) == 0
    assert Recipe(name="only a name").first_changed_layer(4) == 4
    assert r.describe() == "2 heads masked (L1 H0, L1 H3); layer 2 dropped; bits 32/32/32/8 (per-tensor)"
    assert Recipe(masked_heads=[(0, 3)]).describe() == "1 head masked (L0 H3)"
    assert Recipe(masked_heads=[(0, 1), (0, 2), (0, 3), (2, 0)], dropped_layers=[4, 5]).describe() == \
        "4 heads masked (L0: 3, L2: 1); layers 4,5 dropped"
    assert Recipe(masked_heads=[(l, 0) for l in range(12)]).describe() == "12 heads masked in 12 layers"
    assert Recipe().describe().startswith("baseline")


def test_parsers():
    assert parse_head_list("0:3, 5:11") == [(0, 3), (5, 11)]
    assert parse_int_list("4,5") == [4, 5]
    with pytest.raises(HeadroomError, match="layer:head"):
        parse_head_list("0:x")
    with pytest.raises(HeadroomError, match="not a list of layers"):
        parse_int_list("four")


def test_every_field_documents_itself():
    from dataclasses import fields

    from analysis.core.recipe import (ACTIVATION_BITS, DEFAULT_NUM_GROUPS, GRANULARITIES, SUPPORTED_BITS, field_choices,
                                      field_default, field_help)

    for f in fields(Recipe):
        assert len(field_help(f.name)) > 20, f.name
        assert field_default(f.name) == getattr(Recipe(), f.name)
    assert field_default("num_groups") == DEFAULT_NUM_GROUPS == 12
    assert field_choices("granularity") == GRANULARITIES and field_choices("weight_bits") == SUPPORTED_BITS
    assert field_choices("activation_bits") == ACTIVATION_BITS and field_choices("name") is None
    assert field_default("masked_heads") == [] and field_default("masked_heads") is not field_default("masked_heads")
