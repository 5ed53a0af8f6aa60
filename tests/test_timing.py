"""analysis.measure.timing: the one stopwatch loop, its median, and the batch for timing without data."""

import time

import pytest
import torch

from analysis.measure.timing import measure, median_seconds, synthetic_batch, time_forward
from analysis.testing import VOCAB, tiny_model


def test_measure_runs_warmup_untimed_then_times_each_repeat():
    calls = []
    times = measure(lambda: calls.append(time.sleep(0.002)), warmup=3, repeats=4)
    assert len(calls) == 7 and len(times) == 4
    assert all(t >= 0.002 for t in times)


def test_median_seconds_is_the_median_of_the_runs():
    pauses = iter([0.0, 0.03, 0.0, 0.01])  # warm-up, then three timed runs: 30, 0, 10 ms
    s = median_seconds(lambda: time.sleep(next(pauses)), warmup=1, repeats=3)
    assert 0.01 <= s < 0.03


def test_synthetic_batch_shape_range_and_seed():
    b = synthetic_batch(30522, 3, 7, torch.device("cpu"))
    assert b.input_ids.shape == (3, 7) and b.attention_mask.sum().item() == 21
    assert b.input_ids.min().item() >= 1000 and b.input_ids.max().item() < 30522  # past [CLS]/[SEP]/[unused]
    assert b.token_type_ids.sum().item() == 0 and b.example_ids.tolist() == [0, 1, 2]
    assert torch.equal(synthetic_batch(30522, 3, 7, "cpu").input_ids, b.input_ids)
    assert not torch.equal(synthetic_batch(30522, 3, 7, "cpu", seed=1).input_ids, b.input_ids)
    small = synthetic_batch(VOCAB, 2, 5, "cpu")  # a tiny vocabulary still gets ids inside it
    assert small.input_ids.min().item() >= VOCAB // 2 and small.input_ids.max().item() < VOCAB


def test_time_forward_times_the_model_on_its_batch():
    model = tiny_model("bert")
    s = time_forward(model, synthetic_batch(VOCAB, 2, 8, "cpu"), repeats=2, warmup=1)
    assert 0 < s < 5
    with pytest.raises(IndexError):  # ids outside the vocabulary reach the model: it really ran
        time_forward(model, synthetic_batch(10 * VOCAB, 2, 8, "cpu"), repeats=1, warmup=0)
