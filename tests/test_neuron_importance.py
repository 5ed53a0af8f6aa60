"""FFN neuron importance (analysis/methods/neurons.py) on tiny random models.

The key check: the gradient score equals a finite-difference estimate of each example's dLoss/dgate
(perturbing one unit's gate), and TextPruner's Taylor score equals the per-batch version of it.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from analysis.core.recipe import Recipe
from analysis.errors import HeadroomError
from analysis.measure.evaluate import Evaluator
from analysis.methods.importance import grad_simulator
from analysis.methods.neurons import NeuronImportance, neuron_importance, prune_fraction
from analysis.testing import tiny_dataset, tiny_loaded


@pytest.fixture(scope="module")
def ev():
    return Evaluator(tiny_loaded(), tiny_dataset(32), batch_size=16)


@pytest.fixture(scope="module", params=["bert", "modernbert"])
def ev64(request):
    """A float64 model (post-LN BERT; ModernBERT's gated FFN), so finite differences are accurate."""
    loaded = tiny_loaded(request.param)
    loaded.model.double()
    return Evaluator(loaded, tiny_dataset(12), batch_size=4)


def _losses_per_example(ev, layer, unit, value) -> list[torch.Tensor]:
    """Each batch's per-example cross-entropy with gate `unit` of `layer` set to `value` for every example."""
    sim = grad_simulator(ev, Recipe())
    out = []
    with torch.no_grad():
        for batch in ev.batches:
            gate = torch.ones(ev.adapter.intermediate_size(layer), dtype=torch.float64)
            gate[unit] = value
            res = sim.forward(batch, neuron_gates={layer: gate}, output_hidden_states=True)
            logits = ev.adapter.classify(res.hidden_states[-1], batch.attention_mask)  # float64
            y = torch.as_tensor(ev.labels[batch.example_ids.numpy()])
            out.append(F.cross_entropy(logits, y, reduction="none"))
    return out


def test_gradient_and_taylor_match_finite_differences(ev64):
    grad = neuron_importance(ev64, "gradient")
    taylor = neuron_importance(ev64, "taylor")
    eps, N = 1e-5, len(ev64.dataset)
    checked = 0
    for layer in range(3):
        for unit in range(0, ev64.adapter.intermediate_size(layer), 7):
            up = _losses_per_example(ev64, layer, unit, 1 + eps)
            down = _losses_per_example(ev64, layer, unit, 1 - eps)
            d = [(u - w) / (2 * eps) for u, w in zip(up, down)]  # per example: dL(x)/dg (examples are independent)
            per_example = sum(float(x.abs().sum()) for x in d) / N
            per_batch = sum(abs(float(x.sum())) for x in d) / N
            np.testing.assert_allclose(grad.scores[layer][unit], per_example, rtol=1e-5, atol=1e-12)
            np.testing.assert_allclose(taylor.scores[layer][unit], per_batch, rtol=1e-4, atol=1e-10)
            checked += per_example > 1e-6
    assert checked >= 20  # the units checked really move the loss
    # |sum| <= sum |.|: the two scores really differ
    assert not np.allclose(grad.scores[0], taylor.scores[0], rtol=1e-3)


def test_scores_follow_the_recipe_and_leave_the_model_untouched(ev):
    before = {n: p.detach().clone() for n, p in ev.loaded.model.named_parameters()}
    recipe = Recipe(masked_neurons=[(0, [1, 5])], dropped_layers=[2])
    imp = neuron_importance(ev, "gradient", recipe)
    assert imp.scores[2] is None and len(imp.scores[0]) == 64
    assert np.isnan(imp.scores[0][[1, 5]]).all() and np.isfinite(np.delete(imp.scores[0], [1, 5])).all()
    assert (imp.scores[1] > 0).all()
    for n, p in ev.loaded.model.named_parameters():
        assert p.grad is None and torch.equal(p, before[n]), n
    d = imp.to_dict()
    assert d["scores"][2] is None and d["scores"][0][1] is None and d["intermediate_sizes"] == [64, 64, None]


def test_unknown_method_and_cancel(ev):
    with pytest.raises(HeadroomError, match="Unknown FFN neuron importance method 'michel'"):
        neuron_importance(ev, "michel")
    stop = threading.Event()
    stop.set()
    with pytest.raises(HeadroomError, match="stopped"):
        neuron_importance(ev, "gradient", cancel=stop)
    seen = []
    neuron_importance(ev, "taylor", progress=lambda f, m: seen.append(f))
    assert seen[-1] == 1.0 and len(seen) == len(ev.batches)


def _fake(scores) -> NeuronImportance:
    return NeuronImportance("gradient", [None if s is None else np.asarray(s, dtype=float) for s in scores],
                            False, 1, 0.0, "cpu", 1, "test")


def test_prune_fraction_counts_ties_and_floors():
    imp = _fake([[1.0, 1.0, 1.0, 1.0], [4.0, 3.0, 2.0, 1.0], None, [np.nan, 5.0, 5.0, 0.0]])
    # raw order: (3,3)=0, then (0,0..3)=1 and (1,3)=1 tie, broken by (layer, unit), then (1,2)=2; 11 scored units
    p = prune_fraction(imp, 0.5, normalize_layer=False, min_kept=1)
    assert sum(len(u) for _, u in p.masked_neurons) == 6  # round(5.5)
    assert p.masked_neurons == [(0, [0, 1, 2]), (1, [2, 3]), (3, [3])]  # layer 0 keeps its floor of 1 unit
    assert p.kept_per_layer == [1, 2, None, 2] and p.intermediate_sizes == [4, 4, None, 4]
    assert prune_fraction(imp, 0.5, normalize_layer=False).masked_neurons == p.masked_neurons  # deterministic
    none_left = prune_fraction(imp, 1.0, normalize_layer=False, min_kept=0)
    assert none_left.kept_per_layer == [0, 0, None, 0]
    # per-layer L2 normalisation changes the global order: layer 3's 0.0 stays first, layer 0's units weigh 0.5 each
    normed = prune_fraction(imp, 2 / 11, min_kept=0)
    assert normed.masked_neurons == [(1, [3]), (3, [3])]
    r = p.recipe(Recipe(masked_neurons=[(3, [0])]))
    assert r.masked_neurons_in(3) == [0, 3] and r.masked_neurons_in(0) == [0, 1, 2]
    with pytest.raises(HeadroomError, match="between 0 and 1"):
        prune_fraction(imp, 1.5)


def test_prune_fraction_per_layer_takes_the_same_share_of_every_layer():
    imp = _fake([[1.0, 1.0, 1.0, 1.0], [4.0, 3.0, 2.0, 1.0], None, [np.nan, 5.0, 5.0, 0.0]])
    p = prune_fraction(imp, 0.5, per_layer=True)
    # each layer its own least important half (ties: the lower unit), of its scored units (layer 3 has 3: round(1.5) = 2)
    assert p.masked_neurons == [(0, [0, 1]), (1, [2, 3]), (3, [1, 3])]
    assert p.kept_per_layer == [2, 2, None, 1]
    assert prune_fraction(imp, 1.0, per_layer=True).kept_per_layer == [1, 1, None, 1]  # the floor of min_kept
    assert prune_fraction(imp, 0.0, per_layer=True).masked_neurons == []
    # the global order of the same scores is uneven: layer 0's ties all go before layer 3's 5.0s
    assert prune_fraction(imp, 0.5, normalize_layer=False).kept_per_layer != p.kept_per_layer


def test_pruning_the_least_important_half_beats_the_most_important_half(ev):
    imp = neuron_importance(ev, "gradient")
    least = prune_fraction(imp, 0.5).recipe()
    order = imp.pruning_order()
    most = Recipe(masked_neurons=[(l, [u]) for l, u in order[len(order) // 2:]])
    a, b = ev.evaluate(least), ev.evaluate(most)
    # first-order importance predicts |loss change|: the random model's loss may fall either way
    assert abs(a.loss - ev.baseline.loss) < abs(b.loss - ev.baseline.loss) / 3
    assert a.agreement > b.agreement
