"""The methods' typed context (analysis/methods/context.py) and the cancel/progress helpers (analysis/jobs.py).

Every method runs on a view of an Evaluator that lets through only the members `EvalContext`
declares and records which ones were read: a method reaching past the Protocol fails here, and a
member no method reads is a member the Protocol should not list.
"""

import dataclasses
import threading

import pytest

from analysis.errors import HeadroomError
from analysis.jobs import check_cancel, report
from analysis.measure.evaluate import Evaluator
from analysis.methods import heads, importance, layers, neurons, sensitivity
from analysis.methods.context import EvalContext, resolve_label_free
from analysis.testing import tiny_dataset, tiny_loaded

MEMBERS = {name for name in vars(EvalContext) if not name.startswith("_")}


class OnlyTheContext:
    """An Evaluator seen through EvalContext: other attributes raise, read ones are recorded."""

    def __init__(self, inner, used: set):
        self._inner, self._used = inner, used

    def __getattr__(self, name):
        if name not in MEMBERS:
            raise AssertionError(f"a method read ctx.{name}, which EvalContext does not declare")
        self._used.add(name)
        return getattr(self._inner, name)


@pytest.fixture(scope="module")
def ev():
    return Evaluator(tiny_loaded(), tiny_dataset(24), batch_size=8)


def test_the_evaluator_is_an_eval_context(ev):
    assert isinstance(ev, EvalContext)
    assert MEMBERS == {"adapter", "loaded", "dataset", "batches", "labels", "baseline", "device", "sim_dtype",
                       "trace", "simulator", "evaluate", "targets"}


def test_methods_use_exactly_the_context(ev):
    used: set = set()
    ctx = OnlyTheContext(ev, used)
    for method in importance.METHODS:
        assert importance.compute_importance(ctx, method).scores.shape == (3, 4)
    importance.michel_importance(ctx, label_free=True, per_example=True)
    heads.head_stats(ctx)
    heads.keep_one_head(ctx)
    heads.prune_curve(ctx, step=0.5)
    layers.sweep(ctx, ("top",), [1])
    layers.evaluate_drop(ctx, "custom", 0, custom=[1])
    sensitivity.hessian_sensitivity(ctx, iters=2, batches=1, batch_size=4)
    for method in neurons.NEURON_METHODS:
        assert len(neurons.neuron_importance(ctx, method, label_free=True).scores) == 3
    assert used == MEMBERS


def test_label_free_follows_the_data():
    labelled = Evaluator(tiny_loaded(), tiny_dataset(8), batch_size=8)
    assert resolve_label_free(labelled, None) is False and resolve_label_free(labelled, True) is True
    unlabelled = Evaluator(tiny_loaded(), dataclasses.replace(tiny_dataset(8), labels=None), batch_size=8)
    assert resolve_label_free(unlabelled, None) is True
    with pytest.raises(HeadroomError, match="no labels"):
        resolve_label_free(unlabelled, False)


def test_check_cancel_and_report():
    stop = threading.Event()
    check_cancel(None, "sweep")
    check_cancel(stop, "sweep")
    stop.set()
    with pytest.raises(HeadroomError, match="^The layer sweep was stopped.$"):
        check_cancel(stop, "layer sweep")
    seen = []
    report(None, 0.5, "nobody listens")
    for fraction in (-0.2, 0.25, 1.7):
        report(lambda f, m: seen.append((f, m)), fraction, "step")
    assert seen == [(0.0, "step"), (0.25, "step"), (1.0, "step")]


def test_every_method_stops_when_cancelled(ev):
    stop = threading.Event()
    stop.set()
    runs = [
        lambda: importance.compute_importance(ev, "michel", cancel=stop),
        lambda: importance.compute_importance(ev, "entropy", cancel=stop),
        lambda: importance.compute_importance(ev, "ablation", cancel=stop),
        lambda: heads.head_stats(ev, cancel=stop),
        lambda: heads.keep_one_head(ev, cancel=stop),
        lambda: heads.prune_curve(ev, order="random", cancel=stop),
        lambda: layers.sweep(ev, ("top",), [1], cancel=stop),
        lambda: sensitivity.hessian_sensitivity(ev, iters=2, batches=1, cancel=stop),
        lambda: neurons.neuron_importance(ev, "gradient", cancel=stop),
    ]
    for run in runs:
        with pytest.raises(HeadroomError, match="stopped"):
            run()
