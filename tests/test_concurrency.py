"""One loaded model shared by several sessions: concurrent what-ifs get exactly their serial results."""

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from analysis.errors import HeadroomError
from analysis.measure.evaluate import Evaluator
from analysis.core.recipe import Recipe
from analysis.testing import tiny_dataset, tiny_loaded

RECIPES = [
    Recipe(),
    Recipe(masked_heads=[(0, 1), (2, 3)]),
    Recipe(dropped_layers=[1]),
    Recipe(weight_bits=4, granularity="per-head", num_groups=4),  # 4 divides the tiny FFN (64 rows)
    Recipe(masked_heads=[(1, 0)], weight_bits=[8, 3, 8], embedding_bits=8),
    Recipe(masked_heads=[(2, h) for h in range(4)]),
]


def test_threads_on_one_shared_model_match_serial():
    loaded = tiny_loaded()
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    ev = Evaluator(loaded, tiny_dataset(80), batch_size=16)
    serial = [ev.evaluate(r, full=True).logits for r in RECIPES]
    # a second Evaluator on the same model object, as a second dashboard session would have
    ev2 = Evaluator(loaded, tiny_dataset(80), batch_size=16)
    jobs = [(e, i) for i in range(len(RECIPES)) for e in (ev, ev2)] * 3
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda job: (job[1], job[0].evaluate(RECIPES[job[1]]).logits), jobs))
    for i, logits in results:
        np.testing.assert_allclose(logits, serial[i], atol=1e-5, rtol=0)
    # distinct recipes really give distinct outputs, so the comparison is not vacuous
    assert not np.allclose(serial[0], serial[1])
    after = loaded.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_cancel_stops_an_evaluation_and_leaves_the_evaluator_usable():
    ev = Evaluator(tiny_loaded(), tiny_dataset(40), batch_size=8)
    stop = threading.Event()
    stop.set()
    with pytest.raises(HeadroomError, match="stopped"):
        ev.evaluate(Recipe(masked_heads=[(0, 0)]), cancel=stop)
    assert ev.evaluate(Recipe(masked_heads=[(0, 0)])).num_examples == 40


def test_resource_limits(monkeypatch):
    monkeypatch.setenv("HEADROOM_MAX_EXAMPLES", "30")
    with pytest.raises(HeadroomError, match="more than the 30 allowed"):
        Evaluator(tiny_loaded(), tiny_dataset(40))
    monkeypatch.delenv("HEADROOM_MAX_EXAMPLES")
    with pytest.raises(HeadroomError, match="max_length must be between"):
        Evaluator(tiny_loaded(), tiny_dataset(10), max_length=4096)
    with pytest.raises(HeadroomError, match="batch size must be between"):
        Evaluator(tiny_loaded(), tiny_dataset(10), batch_size=100000)


def test_incremental_equals_full_predictions():
    ev = Evaluator(tiny_loaded(), tiny_dataset(60), batch_size=16)
    assert ev.trace is not None
    for r in RECIPES[1:]:
        inc, full = ev.evaluate(r), ev.evaluate(r, full=True)
        assert (inc.predictions == full.predictions).all()
        np.testing.assert_allclose(inc.logits, full.logits, atol=1e-5, rtol=0)


def test_a_toggle_after_earlier_changes_starts_at_the_changed_layer():
    ev = Evaluator(tiny_loaded(), tiny_dataset(60), batch_size=16)
    first = Recipe(masked_heads=[(0, 1)])
    assert ev.evaluate(first).started_at_layer == 0
    second = Recipe(masked_heads=[(0, 1), (2, 3)])  # one more head, in the last layer
    result = ev.evaluate(second)
    assert result.started_at_layer == 2  # from the first recipe's trace, not from layer 0
    np.testing.assert_allclose(result.logits, ev.evaluate(second, full=True).logits, atol=1e-5, rtol=0)
    # a recipe that differs from every kept trace at layer 1 starts there (baseline agrees on layer 0)
    third = Recipe(masked_heads=[(1, 0)], weight_bits=[32, 32, 8])
    r3 = ev.evaluate(third)
    assert r3.started_at_layer == 1
    np.testing.assert_allclose(r3.logits, ev.evaluate(third, full=True).logits, atol=1e-5, rtol=0)
    # only a bounded number of recipe traces is kept
    for h in range(4):
        ev.evaluate(Recipe(masked_heads=[(1, h)]))
    assert len(ev._recipe_traces) <= Evaluator.MAX_RECIPE_TRACES
