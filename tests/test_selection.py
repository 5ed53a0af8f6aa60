"""Head selections, the named presets and the Pareto front (analysis/methods/selection.py,
analysis/methods/presets.py, analysis/measure/pareto.py): hand-made scores with known answers,
plus a real importance of a tiny random BERT."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.core.recipe import Recipe
from analysis.errors import HeadroomError
from analysis.measure.evaluate import Evaluator
from analysis.measure.pareto import lookup, pareto_front
from analysis.methods import presets
from analysis.methods.importance import HeadImportance, michel_importance
from analysis.methods.selection import (all_but_best_head, all_heads, best_head_per_layer, least_important_fraction,
                                        least_important_heads, random_heads, random_order)
from analysis.testing import tiny_dataset, tiny_loaded

L, H = 3, 4


def importance(scores, higher_is_important: bool = True, method: str = "hand") -> HeadImportance:
    return HeadImportance(method, np.asarray(scores, dtype=float), higher_is_important, False, False, 0, 0.0,
                          "cpu", 1, "hand-made")


# rows = layers; the least important head overall is (1, 2), the most important (2, 0)
SCORES = [[0.5, 0.1, 0.9, 0.3],
          [0.4, 0.2, 0.0, 0.8],
          [1.0, 0.6, 0.7, 0.05]]


@pytest.fixture(scope="module")
def tiny_importance():
    ev = Evaluator(tiny_loaded(layers=L, heads=H), tiny_dataset(40), batch_size=16)
    return michel_importance(ev)


# ----------------------------------------------------------------------------- selections
def test_least_important_heads_follow_the_scores():
    imp = importance(SCORES)
    assert least_important_heads(imp, 4) == [(1, 2), (2, 3), (0, 1), (1, 1)]
    assert least_important_heads(imp, 0) == []
    assert least_important_fraction(imp, 0.5) == imp.pruning_order()[:6]
    with pytest.raises(HeadroomError, match="13 heads"):
        least_important_heads(imp, 13)
    with pytest.raises(HeadroomError, match="between 0 and 1"):
        least_important_fraction(imp, 1.5)


def test_entropy_style_scores_rank_high_scores_first():
    imp = importance(SCORES, higher_is_important=False)  # high entropy = less important
    assert least_important_heads(imp, 2) == [(2, 0), (0, 2)]


def test_least_important_skips_heads_without_a_score():
    s = np.array(SCORES)
    s[1, 2] = np.nan  # masked when importance was computed
    assert least_important_heads(importance(s), 2) == [(2, 3), (0, 1)]


def test_all_but_best_head_keeps_exactly_the_best_head_of_each_layer():
    imp = importance(SCORES)
    masked = all_but_best_head(imp)
    assert len(masked) == L * (H - 1)
    kept = {(l, h) for l, h in all_heads(L, H)} - set(masked)
    assert sorted(kept) == [(0, 2), (1, 3), (2, 0)]  # the argmax of each row
    assert best_head_per_layer(imp) == {0: 2, 1: 3, 2: 0}
    # entropy: the lowest score of each row is the most important head
    assert best_head_per_layer(importance(SCORES, higher_is_important=False)) == {0: 1, 1: 2, 2: 3}


def test_all_but_best_head_masks_unscored_heads_and_refuses_an_unscored_layer():
    s = np.array(SCORES)
    s[0, 2] = np.nan  # the best of layer 0 was masked: the next best (0, 0) stays
    kept = set(all_heads(L, H)) - set(all_but_best_head(importance(s)))
    assert sorted(kept) == [(0, 0), (1, 3), (2, 0)]
    s[1, :] = np.nan  # a dropped layer has no best head
    with pytest.raises(HeadroomError, match="Layer 1 has no importance score"):
        all_but_best_head(importance(s))


def test_all_but_best_head_on_a_real_importance(tiny_importance):
    masked = set(all_but_best_head(tiny_importance))
    s = tiny_importance.signed()
    for l in range(L):
        kept = [h for h in range(H) if (l, h) not in masked]
        assert kept == [int(np.argmax(s[l]))]


def test_random_heads_are_reproducible_and_distinct():
    heads = all_heads(L, H)
    a, b = random_heads(heads, 5, seed=3), random_heads(heads, 5, seed=3)
    assert a == b and len(set(a)) == 5 and set(a) <= set(heads)
    assert random_heads(heads, 5, seed=4) != a
    assert sorted(random_order(heads, seed=0)) == heads
    # the same draw as numpy's permutation of the row-major indices (what the dashboard drew before)
    assert a == [(int(i) // H, int(i) % H) for i in np.random.default_rng(3).permutation(L * H)[:5]]
    with pytest.raises(HeadroomError):
        random_heads(heads, 13, seed=0)


# ----------------------------------------------------------------------------- presets
def test_sixteen_heads_needs_importance_and_masks_the_button_heads(tiny_importance):
    with pytest.raises(HeadroomError, match="importance"):
        presets.sixteen_heads(None)
    with pytest.raises(HeadroomError, match="importance"):
        presets.preset_recipes(L)  # all four: one of them needs importance
    recipe = presets.build_preset(presets.SIXTEEN_HEADS, L, tiny_importance)
    k = round(0.4 * L * H)
    # the preset and the "Mask k least important" button rank the same scores the same way
    assert recipe.masked_heads == sorted(least_important_heads(tiny_importance, k))
    assert recipe.masked_heads == sorted(tiny_importance.pruning_order()[:k])
    assert recipe.name.startswith(presets.SIXTEEN_HEADS) and "michel" in recipe.name


def test_the_other_presets(tiny_importance):
    recipes = presets.preset_recipes(L, tiny_importance)
    assert list(recipes) == list(presets.PRESETS)
    assert recipes[presets.POOR_MANS_BERT].dropped_layers == [1, 2]
    assert presets.poor_mans_bert(12).dropped_layers == [10, 11]
    assert presets.poor_mans_bert(2).dropped_layers == [1]  # one layer must stay
    with pytest.raises(HeadroomError, match="no layer to drop"):
        presets.poor_mans_bert(1)
    q = recipes[presets.Q_BERT]
    assert (q.weight_bits, q.granularity, q.embedding_bits) == (4, "per-head", 8)
    # its FFN row groups divide the tiny model's and ELECTRA-small's widths (the default 12 does not)
    assert q.num_groups == 8 and all(n % q.num_groups == 0 for n in (32, 64, 256, 384, 768, 1024, 1536, 3072))
    e = recipes[presets.EIGHT_BIT]
    assert (e.weight_bits, e.granularity, e.embedding_bits, e.activation_bits) == (8, "per-channel", 8, 32)
    for name, recipe in recipes.items():
        assert recipe.name.startswith(name)
        assert presets.PRESETS[name].citation and presets.PRESETS[name].what


def test_presets_by_id_and_unknown_names():
    assert presets.get_preset("q-bert").name == presets.Q_BERT
    assert presets.get_preset("8-BIT everything").name == presets.EIGHT_BIT
    assert presets.preset_recipes(L, names=["poor-mans-bert"])[presets.POOR_MANS_BERT].dropped_layers == [1, 2]
    with pytest.raises(HeadroomError, match="There is no preset 'nope'"):
        presets.get_preset("nope")


# ----------------------------------------------------------------------------- Pareto front
def test_pareto_front_of_a_hand_made_set():
    #           0     1     2     3     4     5     6     7
    metric = [0.90, 0.85, 0.80, 0.85, 0.70, 0.92, 0.85, None]
    cost = [100.0, 50.0, 50.0, 60.0, 10.0, 100.0, 50.0, 1.0]
    # 0 is beaten by 5 (same cost, better); 2 by 1 (same cost, worse); 3 by 1 (costlier, same metric);
    # 1 and 6 tie exactly and are different recipes: both stay; 7 has no metric: left out
    assert pareto_front(metric, cost) == [4, 1, 6, 5]
    # 6 is the same recipe as 1 evaluated again: counted once, the first kept
    keys = ["a", "b", "c", "d", "e", "f", "b", "g"]
    assert pareto_front(metric, cost, keys) == [4, 1, 5]
    assert pareto_front([0.5, math.nan], [1.0, 0.1]) == [0]
    assert pareto_front([], []) == []
    with pytest.raises(ValueError):
        pareto_front([0.1], [1.0, 2.0])


def test_pareto_front_keeps_the_cheapest_of_equal_metrics_and_the_best_of_equal_costs():
    assert pareto_front([0.8, 0.8, 0.8], [3.0, 1.0, 2.0]) == [1]
    assert pareto_front([0.7, 0.9, 0.8], [1.0, 1.0, 1.0]) == [1]
    # a strictly increasing staircase is entirely on the front, cheapest first
    assert pareto_front([0.9, 0.5, 0.7], [30.0, 10.0, 20.0]) == [1, 2, 0]


def test_lookup_reads_dotted_fields():
    entry = {"metric": 0.5, "size": {"mb": 4.0}, "latency": None}
    assert lookup(entry, "size.mb") == 4.0 and lookup(entry, "metric") == 0.5
    assert lookup(entry, "latency.ms_per_example") is None and lookup(entry, "nope") is None


def test_recipe_keys_deduplicate_renamed_recipes():
    a, b = Recipe(dropped_layers=[2], name="one"), Recipe(dropped_layers=[2], name="two")
    assert pareto_front([0.5, 0.5], [1.0, 1.0], [a.key(), b.key()]) == [0]
