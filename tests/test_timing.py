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


# ------------------------------------------------------------------------------ compare
from analysis.measure.timing import NO_CHANGE, bootstrap_median_ci, compare, verdict  # noqa: E402


def test_compare_interleaves_baseline_and_candidates_in_every_round():
    calls = []
    out = compare({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                  lambda: calls.append("base"), rounds=5, warmup=1)
    assert len(calls) == 3 * 6  # every round (1 warm-up + 5 timed) runs all three once
    for r in range(6):
        assert sorted(calls[3 * r:3 * r + 3]) == ["a", "b", "base"]
    assert set(out) == {"a", "b", "baseline"} and out["a"].rounds == 5 and out["baseline"].ratio == 1.0
    assert out["a"].threads >= 1 and out["a"].device == "cpu"


def test_compare_states_slower_and_no_change_with_a_spread():
    out = compare({"twice": lambda: time.sleep(0.004), "same": lambda: time.sleep(0.002)},
                  lambda: time.sleep(0.002), rounds=8, warmup=1)
    slow, same = out["twice"], out["same"]
    assert 1.5 < slow.ratio < 3 and slow.verdict == "slower" and slow.ratio_ci95[0] > 1
    assert slow.ratio_iqr[0] <= slow.ratio <= slow.ratio_iqr[1]
    assert slow.baseline_ms > 1.5 and slow.ms > slow.baseline_ms
    assert same.verdict == NO_CHANGE and abs(same.ratio - 1) < 0.3
    assert "slower" in slow.describe() and slow.to_dict()["ratio_ci95"] == list(slow.ratio_ci95)


def test_verdict_rule_and_seeded_bootstrap():
    assert verdict((0.9, 1.1)) == NO_CHANGE and verdict((0.98, 0.99)) == NO_CHANGE  # inside the tolerance
    assert verdict((0.5, 0.8)) == "faster" and verdict((1.2, 1.4)) == "slower"
    assert verdict((0.98, 0.99), tolerance=0.0) == "faster"
    # an interval below 1 but a median within the tolerance: the same model timed twice on an idle
    # CPU measured 0.980 [0.96-0.995]; that is noise, not a 2% speed-up
    assert verdict((0.96, 0.995), 0.03) == "faster" and verdict((0.96, 0.995), 0.03, ratio=0.98) == NO_CHANGE
    assert verdict((0.90, 0.96), ratio=0.93) == "faster" and verdict((1.04, 1.2), ratio=1.1) == "slower"
    # too few rounds to be evidence, however far from 1
    assert verdict((0.5, 0.6), ratio=0.55, rounds=4) == NO_CHANGE
    assert verdict((0.5, 0.6), ratio=0.55, rounds=5) == "faster"
    values = [1.0, 1.1, 0.9, 1.05, 0.95, 1.2]
    lo, hi = bootstrap_median_ci(values)
    assert min(values) <= lo <= hi <= max(values) and (lo, hi) == bootstrap_median_ci(values)
    with pytest.raises(ValueError):
        compare({}, lambda: None, rounds=1)
