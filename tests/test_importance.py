"""Head importance (analysis/methods/importance.py) on tiny random BERTs.

The key check: Michel importance equals a finite-difference estimate of dLoss/dgate, taken by
perturbing each head's gate, and comes from one forward + one backward per batch.
"""

from __future__ import annotations

import dataclasses
import math
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from analysis.errors import HeadroomError
from analysis.measure.evaluate import Evaluator
from analysis.methods.importance import (HeadImportance, ablation_importance, agreement_matrix, attention_entropy,
                                 compute_importance, entropy_importance, grad_simulator, michel_importance,
                                 rank_agreement, split_in_halves, taylor_importance)
from analysis.core.recipe import Recipe
from analysis.core.simulate import SimulatedModel
from analysis.testing import tiny_dataset, tiny_loaded

L, H = 3, 4


@pytest.fixture(scope="module")
def ev():
    return Evaluator(tiny_loaded(layers=L, heads=H), tiny_dataset(48), batch_size=16)


@pytest.fixture(scope="module")
def ev64():
    """A float64 model, so finite differences are accurate to ~1e-9."""
    loaded = tiny_loaded(layers=L, heads=H)
    loaded.model.double()
    return Evaluator(loaded, tiny_dataset(24), batch_size=8)


def _batch_losses(ev, gate_value: dict[tuple[int, int], float]) -> list[float]:
    """Summed cross-entropy per batch with the given gates changed from 1."""
    sim = grad_simulator(ev, Recipe())
    losses = []
    with torch.no_grad():
        for batch in ev.batches:
            gates = {i: torch.ones(H, dtype=torch.float64) for i in range(L)}
            for (l, h), v in gate_value.items():
                gates[l][h] = v
            out = sim.forward(batch, gates=gates, output_hidden_states=True)
            logits = ev.adapter.classify(out.hidden_states[-1], batch.attention_mask)  # float64 (out.logits is fp32)
            y = torch.as_tensor(ev.labels[batch.example_ids.numpy()])
            losses.append(float(F.cross_entropy(logits, y, reduction="sum")))
    return losses


@pytest.fixture(scope="module", params=["bert", "deberta-v2", "modernbert"])
def fd_ev(request):
    """A float64 model of each layer family (post-LN, DeBERTa, pre-LN ModernBERT) for the finite differences."""
    loaded = tiny_loaded(request.param, layers=L, heads=H)
    loaded.model.double()
    return Evaluator(loaded, tiny_dataset(24), batch_size=8)


def test_michel_matches_finite_differences_wrt_gates(fd_ev):
    ev64 = fd_ev
    imp = michel_importance(ev64, mode="per-batch")
    eps = 1e-5
    expected = np.zeros((L, H))
    for l in range(L):
        for h in range(H):
            up, down = _batch_losses(ev64, {(l, h): 1 + eps}), _batch_losses(ev64, {(l, h): 1 - eps})
            # the authors' code: |gradient of the batch's summed loss|, summed over batches, / N
            expected[l, h] = sum(abs(u - d) / (2 * eps) for u, d in zip(up, down)) / len(ev64.dataset)
    assert expected.min() > 1e-4  # every head matters a little in this random model
    np.testing.assert_allclose(imp.scores, expected, rtol=1e-5)


def test_per_example_mode_is_the_papers_expectation_of_abs(ev64):
    """Per-example gates on batches of 8 == per-batch |grad| with batches of one example."""
    one_by_one = Evaluator(ev64.loaded, ev64.dataset, batch_size=1)
    a = michel_importance(ev64, per_example=True).scores
    b = michel_importance(one_by_one, mode="per-batch").scores
    np.testing.assert_allclose(a, b, rtol=1e-6)
    np.testing.assert_allclose(michel_importance(ev64).scores, a, rtol=1e-12)  # per-example is the default
    assert not np.allclose(a, michel_importance(ev64, mode="per-batch").scores, rtol=1e-3)  # |sum| <= sum|.| really differs


def test_default_michel_ranking_is_invariant_to_batch_size_and_example_order(ev64):
    from analysis.io.training import select
    from analysis.methods.importance import rank_agreement

    ds = ev64.dataset
    by_size = {bs: michel_importance(Evaluator(ev64.loaded, ds, batch_size=bs)) for bs in (1, 16, 64)}
    reversed_ds = select(ds, list(range(len(ds)))[::-1])
    by_size["reversed order"] = michel_importance(Evaluator(ev64.loaded, reversed_ds, batch_size=16))
    ref = by_size[1].scores
    for name, imp in by_size.items():
        np.testing.assert_allclose(imp.scores, ref, rtol=1e-5, err_msg=str(name))
        assert rank_agreement(imp, by_size[1]) == pytest.approx(1.0)
        assert "per example" in imp.what
    # the per-batch mode does depend on the batching: that is why it is not the default
    per_batch = {bs: michel_importance(Evaluator(ev64.loaded, ds, batch_size=bs), mode="per-batch").scores
                 for bs in (1, 16)}
    assert not np.allclose(per_batch[1], per_batch[16], rtol=1e-3)
    with pytest.raises(HeadroomError):
        michel_importance(ev64, mode="per-token")


def test_one_forward_and_one_backward_per_batch(ev, monkeypatch):
    calls = {"forward": 0, "grad": 0}
    forward, grad = SimulatedModel.forward, torch.autograd.grad

    def counting_forward(self, *a, **k):
        calls["forward"] += 1
        return forward(self, *a, **k)

    def counting_grad(*a, **k):
        calls["grad"] += 1
        return grad(*a, **k)

    monkeypatch.setattr(SimulatedModel, "forward", counting_forward)
    monkeypatch.setattr(torch.autograd, "grad", counting_grad)
    michel_importance(ev)
    assert calls == {"forward": len(ev.batches), "grad": len(ev.batches)}


def test_gradient_scores_leave_the_model_untouched(ev):
    before = {n: p.detach().clone() for n, p in ev.loaded.model.named_parameters()}
    michel_importance(ev)
    taylor_importance(ev)
    for n, p in ev.loaded.model.named_parameters():
        assert p.grad is None, n
        assert torch.equal(p, before[n]), n


def test_michel_works_inside_inference_mode(ev):
    with torch.inference_mode():
        a = michel_importance(ev).scores
    np.testing.assert_allclose(a, michel_importance(ev).scores, rtol=1e-6)


def test_taylor_on_wo_slices_equals_michel(ev):
    """|sum(W_O slice * dL/dW_O slice)| is the gate's gradient per batch: both per-batch scores agree."""
    np.testing.assert_allclose(taylor_importance(ev).scores, michel_importance(ev, mode="per-batch").scores,
                               rtol=1e-4, atol=1e-7)


def test_normalize_layer_gives_unit_rows(ev):
    imp = michel_importance(ev, normalize_layer=True)
    np.testing.assert_allclose(np.linalg.norm(imp.scores, axis=1), np.ones(L), rtol=1e-6)
    raw = michel_importance(ev).scores
    np.testing.assert_allclose(imp.scores, raw / np.linalg.norm(raw, axis=1, keepdims=True), rtol=1e-6)


def test_masked_heads_and_dropped_layers_are_nan(ev):
    recipe = Recipe(masked_heads=[(0, 1)], dropped_layers=[2])
    for method in ("michel", "taylor", "entropy", "ablation"):
        s = compute_importance(ev, method, recipe).scores
        assert np.isnan(s[0, 1]) and np.isnan(s[2]).all(), method
        assert np.isfinite(s[0, [0, 2, 3]]).all() and np.isfinite(s[1]).all(), method


def test_ablation_equals_evaluate_with_that_head_masked(ev):
    imp = ablation_importance(ev)
    base = ev.evaluate(Recipe(), full=True)
    for l in range(L):
        for h in range(H):
            masked = ev.evaluate(Recipe(masked_heads=[(l, h)]), full=True)  # full pass, not incremental
            assert imp.scores[l, h] == pytest.approx(base.metric - masked.metric, abs=1e-12)
            assert imp.details["loss_increase"][l, h] == pytest.approx(masked.loss - base.loss, abs=1e-5)
    assert np.abs(imp.details["loss_increase"]).max() > 0


def test_entropy_of_uniform_attention_is_log_T():
    T, n_real = 9, 6
    probs = torch.zeros(2, 3, T, T)
    probs[0] = 1.0 / T  # example 0: T real tokens, uniform
    probs[1, :, :, :n_real] = 1.0 / n_real  # example 1: padded after n_real
    mask = torch.zeros(2, T, dtype=torch.long)
    mask[0] = 1
    mask[1, :n_real] = 1
    total, count = attention_entropy(probs, mask)
    assert count == T + n_real
    expected = (T * math.log(T) + n_real * math.log(n_real)) / (T + n_real)
    np.testing.assert_allclose((total / count).numpy(), np.full(3, expected), rtol=1e-6)


def test_entropy_importance_of_a_model_with_uniform_attention():
    loaded = tiny_loaded(layers=L, heads=H)
    with torch.no_grad():  # W_Q = 0: every score equal, attention uniform over the real tokens
        for l in range(L):
            q = loaded.adapter.layer(l).query
            q.weight.zero_()
            q.bias.zero_()
    e = Evaluator(loaded, tiny_dataset(20), batch_size=8)
    n = torch.cat([b.attention_mask.sum(1) for b in e.batches]).double()
    expected = float((n * n.log()).sum() / n.sum())
    imp = entropy_importance(e)
    np.testing.assert_allclose(imp.scores, np.full((L, H), expected), rtol=1e-5)
    assert imp.higher_is_important is False


def test_label_free_uses_the_models_own_predictions(ev):
    preds = ev.baseline.predictions.tolist()
    relabelled = Evaluator(ev.loaded, dataclasses.replace(ev.dataset, labels=preds), batch_size=16)
    a = michel_importance(ev, label_free=True)
    b = michel_importance(relabelled, label_free=False)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)
    assert a.label_free and not np.allclose(a.scores, michel_importance(ev).scores)


def test_label_free_is_automatic_without_labels(ev):
    unlabelled = Evaluator(ev.loaded, dataclasses.replace(ev.dataset, labels=None), batch_size=16)
    imp = michel_importance(unlabelled)
    assert imp.label_free
    np.testing.assert_allclose(imp.scores, michel_importance(ev, label_free=True).scores, rtol=1e-6)
    abl = ablation_importance(unlabelled)  # drop in agreement with the unmodified model
    assert abl.label_free and np.nanmax(abl.scores) > 0 and np.nanmin(abl.scores) >= 0
    with pytest.raises(HeadroomError, match="no labels"):
        michel_importance(unlabelled, label_free=False)


def test_rank_agreement():
    a = np.arange(12, dtype=float).reshape(3, 4)
    assert rank_agreement(a, a * 2 + 1) == pytest.approx(1.0)
    assert rank_agreement(a, -a) == pytest.approx(-1.0)
    b = a.copy()
    b[0, 0] = np.nan  # ignored, not propagated
    assert rank_agreement(a, b) == pytest.approx(1.0)
    meta = dict(label_free=False, normalized_by_layer=False, num_examples=1, seconds=0.0, device="cpu", threads=1, what="")
    ent = HeadImportance("entropy", -a, False, **meta)  # low entropy = important
    grad = HeadImportance("michel", a, True, **meta)
    assert rank_agreement(ent, grad) == pytest.approx(1.0)
    m = agreement_matrix({"entropy": ent, "michel": grad})
    assert m["entropy"]["michel"] == pytest.approx(1.0) and m["michel"]["michel"] == 1.0
    with pytest.raises(HeadroomError):
        rank_agreement(a, a[:2])


def test_pruning_order_is_least_important_first(ev):
    imp = michel_importance(ev, Recipe(masked_heads=[(1, 1)]))
    order = imp.pruning_order()
    assert len(order) == L * H - 1 and (1, 1) not in order
    values = [imp.scores[lh] for lh in order]
    assert values == sorted(values)


def test_halves_are_disjoint_and_cover_the_data(ev):
    a, b = split_in_halves(ev.dataset, seed=3)
    assert sorted(a.indices + b.indices) == sorted(ev.dataset.indices)
    assert not set(a.indices) & set(b.indices)
    ia = michel_importance(Evaluator(ev.loaded, a, batch_size=16))
    ib = michel_importance(Evaluator(ev.loaded, b, batch_size=16))
    assert -1.0 <= rank_agreement(ia, ib) <= 1.0


def test_progress_and_cancel(ev):
    seen = []
    michel_importance(ev, progress=lambda f, msg: seen.append(f))
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) == len(ev.batches)
    stop = threading.Event()
    stop.set()
    for method in ("michel", "taylor", "entropy", "ablation"):
        with pytest.raises(HeadroomError, match="stopped"):
            compute_importance(ev, method, cancel=stop)
    with pytest.raises(HeadroomError, match="Unknown importance method"):
        compute_importance(ev, "magnitude")
