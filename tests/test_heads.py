"""Attention statistics, attention maps and the Sixteen-Heads experiments (analysis/methods/heads.py)."""

from __future__ import annotations

import json
import math
import threading

import numpy as np
import pytest
import torch

from analysis.errors import HeadroomError
from analysis.measure.evaluate import Evaluator
from analysis.methods.heads import (STATS, area_under_curve, attention_maps, batch_head_stats, fraction_steps, head_stats,
                            keep_one_head, prune_curve, prune_half_recipe, punctuation_ids, within_one_point)
from analysis.methods.importance import michel_importance
from analysis.core.recipe import Recipe
from analysis.testing import tiny_dataset, tiny_loaded

L, H = 3, 4


@pytest.fixture(scope="module")
def ev():
    return Evaluator(tiny_loaded(layers=L, heads=H), tiny_dataset(40), batch_size=16)


@pytest.fixture(scope="module")
def uniform_ev():
    """W_Q = 0: every attention row is uniform over the example's real tokens."""
    loaded = tiny_loaded(layers=L, heads=H)
    with torch.no_grad():
        for l in range(L):
            loaded.adapter.layer(l).query.weight.zero_()
            loaded.adapter.layer(l).query.bias.zero_()
    ds = tiny_dataset(20)
    ds.texts[0] = "my card, again! please."  # some punctuation
    return Evaluator(loaded, ds, batch_size=8)


# ----------------------------------------------------------------------------- statistics
def test_stats_of_uniform_attention_are_exact(uniform_ev):
    st = head_stats(uniform_ev)
    n = torch.cat([b.attention_mask.sum(1) for b in uniform_ev.batches]).double()  # real tokens per example
    N = float(n.sum())
    expect = {
        "entropy": float((n * n.log()).sum()) / N,  # log n_b for each of the n_b queries
        "cls": len(n) / N,  # each query gives 1/n_b to the one [CLS]: n_b * 1/n_b per example
        "sep": len(n) / N,
        "self": len(n) / N,
        "previous": float(((n - 1) / n).sum() / (n - 1).sum()),
        "next": float(((n - 1) / n).sum() / (n - 1).sum()),
    }
    for name, value in expect.items():
        np.testing.assert_allclose(st.values[name], np.full((L, H), value), rtol=1e-5, err_msg=name)
    assert st.num_tokens == int(N) and st.num_examples == 20
    assert (st.values["punctuation"] > 0).all()  # "," "!" "." in the first example


def test_stats_sum_sanity(ev):
    st = head_stats(ev)
    v = st.values
    for name in STATS:
        assert v[name].shape == (L, H) and np.isfinite(v[name]).all(), name
    for name in ("cls", "sep", "punctuation", "previous", "next", "self"):
        assert (v[name] >= 0).all() and (v[name] <= 1 + 1e-6).all(), name
    # disjoint sets of keys get disjoint shares of each row, which sums to 1
    assert (v["cls"] + v["sep"] + v["punctuation"] <= 1 + 1e-5).all()
    longest = max(b.input_ids.shape[1] for b in ev.batches)
    assert (v["entropy"] > 0).all() and (v["entropy"] <= math.log(longest) + 1e-5).all()


def test_batch_stats_on_hand_made_attention():
    """Every query attends to its previous token (the first one to itself)."""
    T = 5
    p = torch.zeros(1, 2, T, T)
    p[0, :, 0, 0] = 1.0
    for i in range(1, T):
        p[0, :, i, i - 1] = 1.0
    from types import SimpleNamespace

    batch = SimpleNamespace(input_ids=torch.tensor([[101, 7, 8, 9, 102]]), attention_mask=torch.ones(1, T, dtype=torch.long))
    s = batch_head_stats(p, batch, 101, 102, torch.zeros(200, dtype=torch.bool))
    assert s["count"] == T and s["count_previous"] == T - 1
    np.testing.assert_allclose(s["previous"].numpy(), [T - 1, T - 1])  # every defined position: 1
    np.testing.assert_allclose(s["self"].numpy(), [1, 1])  # only the first query
    np.testing.assert_allclose(s["next"].numpy(), [0, 0])
    np.testing.assert_allclose(s["cls"].numpy(), [2, 2])  # queries 0 and 1 look at [CLS]
    np.testing.assert_allclose(s["entropy"].numpy(), [0, 0], atol=1e-7)  # one-hot rows


def test_punctuation_ids(ev):
    tok = ev.loaded.tokenizer
    punct = punctuation_ids(tok)
    ids = tok.convert_tokens_to_ids([",", ".", "!", "?", "card", "[CLS]", "[SEP]"])
    assert punct[ids].tolist() == [True, True, True, True, False, False, False]


# ----------------------------------------------------------------------------- attention maps
def test_attention_maps_match_hf_and_zero_masked_heads(ev):
    loaded = ev.loaded
    recipe = Recipe(masked_heads=[(1, 2)], dropped_layers=[2])
    maps = attention_maps(loaded, "my card was declined, again!", recipe=recipe)
    T = len(maps.tokens)
    assert maps.tokens[0] == "[CLS]" and maps.tokens[-1] == "[SEP]"
    assert [a.shape for a in maps.attentions] == [(H, T, T)] * L
    assert np.abs(maps.attentions[1][2]).sum() == 0 and np.abs(maps.attentions[2]).sum() == 0
    np.testing.assert_allclose(maps.attentions[0].sum(-1), np.ones((H, T)), rtol=1e-5)
    plain = attention_maps(loaded, "my card was declined, again!")
    enc = loaded.tokenizer("my card was declined, again!", return_tensors="pt")
    loaded.model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            hf = loaded.model(**enc, output_attentions=True).attentions
    finally:
        loaded.model.set_attn_implementation("sdpa")
    for l in range(L):
        np.testing.assert_allclose(plain.attentions[l], hf[l][0].numpy(), atol=1e-5)
    np.testing.assert_allclose(maps.attentions[0], plain.attentions[0], atol=1e-6)  # layer 0 untouched
    with pytest.raises(HeadroomError):
        attention_maps(loaded, "   ")


# ----------------------------------------------------------------------------- keep one head
def test_keep_one_head_shape_and_values(ev):
    k = keep_one_head(ev)
    assert k.only_head.shape == (L, H)
    assert len(k.best_head) == len(k.best_metric) == len(k.all_masked) == L
    for l in range(L):
        assert k.best_metric[l] == k.only_head[l].max() == k.only_head[l, k.best_head[l]]
        only = ev.evaluate(Recipe(masked_heads=[(l, h) for h in range(H) if h != 1]), full=True)
        assert k.only_head[l, 1] == pytest.approx(only.metric)
        none = ev.evaluate(Recipe(masked_heads=[(l, h) for h in range(H)]), full=True)
        assert k.all_masked[l] == pytest.approx(none.metric)
    assert k.baseline == ev.baseline.metric
    d = json.loads(json.dumps(k.to_dict()))
    assert len(d["only_head"]) == L and len(d["only_head"][0]) == H


# ----------------------------------------------------------------------------- pruning curve
def test_fraction_steps_and_summary_numbers():
    assert fraction_steps(0.1) == [round(0.1 * k, 6) for k in range(11)]
    assert fraction_steps(0.3) == [0.0, 0.3, 0.6, 0.9, 1.0]
    with pytest.raises(HeadroomError):
        fraction_steps(0)
    f = [0.0, 0.25, 0.5, 0.75, 1.0]
    assert within_one_point(f, [0.90, 0.895, 0.891, 0.85, 0.2], 0.90) == 0.5
    assert within_one_point(f, [0.90, 0.85, 0.9, 0.9, 0.9], 0.90) == 0.0  # must hold at every step up to f
    assert area_under_curve(f, [1, 1, 1, 1, 1]) == pytest.approx(1.0)
    assert area_under_curve(f, [1.0, 0.75, 0.5, 0.25, 0.0]) == pytest.approx(0.5)


def test_prune_curve_bookkeeping(ev):
    imp = michel_importance(ev, normalize_layer=True)
    curves = {o: prune_curve(ev, order=o, step=0.25, seeds=3, importance=imp) for o in ("importance", "random", "reverse")}
    total = L * H
    for o, c in curves.items():
        assert c.fractions == [0.0, 0.25, 0.5, 0.75, 1.0]
        assert c.num_pruned == [0, 3, 6, 9, 12]
        assert c.metric[0] == pytest.approx(ev.baseline.metric) and c.baseline == ev.baseline.metric
        assert len(c.pruned_order) == total and len({tuple(x) for x in c.pruned_order}) == total
        assert len(c.runs) == (3 if o == "random" else 1) and all(len(r) == 5 for r in c.runs)
        assert all(s >= 0 for s in c.metric_std)
        assert 0.0 <= c.max_fraction_within_1pt <= 1.0
    # all heads masked is one and the same recipe in every order
    assert len({run[-1] for c in curves.values() for run in c.runs}) == 1
    assert curves["random"].metric_std[-1] == pytest.approx(0, abs=1e-12) and max(curves["random"].metric_std) > 0.01
    order = [list(lh) for lh in imp.pruning_order()]
    assert curves["importance"].pruned_order == order
    assert curves["reverse"].pruned_order == order[::-1]
    # each point is the evaluation of the first k heads of the order
    k = curves["importance"].num_pruned[2]
    masked = ev.evaluate(Recipe(masked_heads=order[:k]), full=True)
    assert curves["importance"].metric[2] == pytest.approx(masked.metric)


def test_prune_curve_with_recompute_and_label_free(ev):
    seen = []
    c = prune_curve(ev, order="importance", step=0.25, recompute=True, label_free=True,
                    progress=lambda f, m: seen.append(f))
    assert c.recompute and c.metric_name == "agreement" and c.metric[0] == 1.0
    assert len({tuple(x) for x in c.pruned_order}) == L * H
    assert seen[-1] == 1.0 and seen == sorted(seen)
    stop = threading.Event()
    stop.set()
    with pytest.raises(HeadroomError, match="stopped"):
        prune_curve(ev, order="random", step=0.25, cancel=stop)
    with pytest.raises(HeadroomError, match="order"):
        prune_curve(ev, order="sideways")


def test_prune_half_recipe(ev):
    imp = michel_importance(ev)
    r = prune_half_recipe(imp, 0.5)
    assert len(r.masked_heads) == L * H // 2
    kept = {lh for lh in imp.pruning_order()[L * H // 2:]}
    assert not kept & set(r.masked_heads)


# ----------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def cli_args(tmp_path_factory):
    import csv

    d = tmp_path_factory.mktemp("tiny_model")
    loaded = tiny_loaded(layers=L, heads=H)
    loaded.model.save_pretrained(str(d))
    loaded.tokenizer.save_pretrained(str(d))
    ds = tiny_dataset(24)
    path = tmp_path_factory.mktemp("data") / "tiny.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for t, y in zip(ds.texts, ds.labels):
            w.writerow([t, ds.label_names[y]])
    return ["--model", str(d), "--data", str(path)]


def _cli(capsys, *argv):
    from analysis.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_cli_commands(capsys, cli_args):
    out = _cli(capsys, "importance", *cli_args, "--method", "michel,entropy", "--normalize-layer", "--label-free")
    assert out["num_examples"] == 24 and out["device"] == "cpu" and "threads" in out
    assert np.array(out["importance"]["michel"]["scores"]).shape == (L, H)
    assert out["importance"]["michel"]["label_free"] and out["importance"]["michel"]["normalized_by_layer"]
    assert -1 <= out["spearman_between_methods"]["michel"]["entropy"] <= 1
    stats = _cli(capsys, "head-stats", *cli_args)
    assert set(stats["stats"]) == set(STATS) and np.array(stats["stats"]["cls"]).shape == (L, H)
    keep = _cli(capsys, "keep-one-head", *cli_args)
    assert np.array(keep["only_head"]).shape == (L, H) and len(keep["best_head"]) == L
    curve = _cli(capsys, "prune-curve", *cli_args, "--step", "0.5", "--order", "importance,random", "--seeds", "2")
    assert curve["curves"]["importance"]["fractions"] == [0.0, 0.5, 1.0]
    assert len(curve["curves"]["random"]["runs"]) == 2


def test_cli_bad_method_is_one_sentence(capsys, cli_args):
    from analysis.cli import main

    code = main(["importance", *cli_args, "--method", "magnitude"])
    err = capsys.readouterr().err
    assert code == 2 and "Unknown importance method" in err and "Traceback" not in err
