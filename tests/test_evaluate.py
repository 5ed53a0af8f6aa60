"""The Evaluator's own bookkeeping: truncation count, typed results, targets, the shared latency batch."""

import dataclasses
import json
import threading
import time

import numpy as np
import pytest
import torch

from analysis.core.recipe import Recipe
from analysis.errors import HeadroomError
from analysis.measure.evaluate import EvalResult, Evaluator, Latency
from analysis.measure.size import SizeReport
from analysis.testing import tiny_dataset, tiny_loaded

LONG = " ".join(["the card payment was declined again"] * 8)  # ~50 tokens


def _with_long_examples(n: int, long_at: list[int]):
    ds = tiny_dataset(n)
    texts = list(ds.texts)
    for i in long_at:
        texts[i] = LONG
    return dataclasses.replace(ds, texts=texts)


def test_num_truncated_counts_examples_longer_than_max_length():
    loaded = tiny_loaded()
    ds = _with_long_examples(30, [2, 11, 29])
    # the count the Evaluator must report, from the tokenizer alone (untruncated lengths)
    want = sum(len(loaded.tokenizer(t)["input_ids"]) > 24 for t in ds.texts)
    assert want == 3
    ev = Evaluator(loaded, ds, max_length=24, batch_size=8)
    assert ev.num_truncated == want
    assert max(b.input_ids.shape[1] for b in ev.batches) == 24  # and they really were cut
    assert Evaluator(loaded, ds, max_length=64, batch_size=8).num_truncated == 0
    assert Evaluator(loaded, tiny_dataset(30), max_length=24, batch_size=8).num_truncated == 0


def test_eval_result_keeps_recipe_size_and_latency_objects():
    ev = Evaluator(tiny_loaded(), tiny_dataset(24), batch_size=8)
    recipe = Recipe(masked_heads=[(0, 1)], weight_bits=8, name="eight")
    r = ev.evaluate(recipe, latency=True)
    assert isinstance(r, EvalResult) and r.recipe == recipe
    assert isinstance(r.size, SizeReport) and r.size.mb < r.size.baseline_mb
    assert isinstance(r.latency, Latency) and r.latency.ms_per_example > 0
    base = ev.evaluate(Recipe(name="plain"), latency=True)  # the cached baseline, with this recipe's name
    assert base.recipe.name == "plain" and isinstance(base.latency, Latency) and ev.baseline.latency is None
    # the JSON boundary: plain dicts, the same keys the CLI has always printed
    d = json.loads(json.dumps(r.to_dict()))
    assert d["recipe"] == recipe.to_dict() and d["recipe"]["name"] == "eight"
    assert d["size"] == r.size.to_dict() and d["size"]["mb"] == round(r.size.mb, 3)
    assert d["latency"] == r.latency.to_dict() and d["latency"]["threads"] >= 1
    assert "predictions" not in d and "logits" not in d
    assert list(d)[:3] == ["recipe", "description", "mode"]
    assert ev.evaluate(recipe).to_dict()["latency"] is None
    assert ev.evaluate(recipe).to_dict(with_predictions=True)["predictions"] == r.predictions.tolist()


def test_targets_are_labels_or_the_baseline_predictions():
    ev = Evaluator(tiny_loaded(), tiny_dataset(24), batch_size=8)
    for batch in ev.batches:
        ids = batch.example_ids.numpy()
        gold = ev.targets(batch, label_free=False)
        assert gold.dtype == torch.long and gold.tolist() == ev.labels[ids].tolist()
        assert ev.targets(batch, label_free=True).tolist() == ev.baseline.predictions[ids].tolist()
    # the random model does not predict the labels, so the two sources really differ
    assert not np.array_equal(ev.baseline.predictions, ev.labels)
    unlabelled = Evaluator(tiny_loaded(), dataclasses.replace(tiny_dataset(8), labels=None), batch_size=8)
    with pytest.raises(HeadroomError, match="no labels"):
        unlabelled.targets(unlabelled.batches[0], label_free=False)


def test_latency_batch_is_one_object_per_shape_across_threads():
    ev = Evaluator(tiny_loaded(), tiny_dataset(24), batch_size=8)
    build = ev._build_latency_batch

    def slow_build(*args):  # widen the window in which two sessions race for the same shape
        time.sleep(0.05)
        return build(*args)

    ev._build_latency_batch = slow_build
    start = threading.Barrier(8)
    got = [None] * 8

    def ask(i):
        start.wait()
        got[i] = ev.latency_batch(4, 16)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(b is got[0] for b in got)
    assert list(ev._latency_batches) == [(4, 16)]
    assert got[0].input_ids.shape == (4, 16) and ev.latency_batch(4, 16) is got[0]
    assert ev.latency_batch(2, 16) is not got[0]


def test_evaluation_progress_names_the_layers_run_and_every_batch():
    ev = Evaluator(tiny_loaded(), tiny_dataset(20), batch_size=8)  # 3 batches, 3 layers
    heard = []
    ev.evaluate(Recipe(masked_heads=[(1, 0)]), progress=lambda f, m: heard.append((f, m)))
    # the first change is in layer 1: layers 1-2 run on every batch, from the baseline's trace
    assert [m for _, m in heard] == ["layers 1-2, batch 1 of 3", "layers 1-2, batch 2 of 3",
                                     "layers 1-2, batch 3 of 3", "layers 1-2, 3 batches done"]
    assert [f for f, _ in heard] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    heard.clear()
    ev.evaluate(Recipe(masked_heads=[(2, 1)]), progress=lambda f, m: heard.append((f, m)))
    assert heard[0][1] == "layer 2, batch 1 of 3"
