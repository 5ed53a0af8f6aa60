"""analysis.measure.latency: the model that would run, timed against the baseline in one interleaved run."""

import json

import pytest
import torch

from analysis.core.recipe import Recipe
from analysis.measure.evaluate import Evaluator
from analysis.measure.latency import FP32_KERNELS, deployed_model, real_kernels_for
from analysis.measure.timing import NO_CHANGE
from analysis.testing import tiny_dataset, tiny_loaded


@pytest.fixture(scope="module")
def ev():
    return Evaluator(tiny_loaded(), tiny_dataset(24), batch_size=8)


def test_bits_only_fake_quant_says_fp32_kernels_instead_of_a_number(ev):
    lat = ev.measure_latency(Recipe(weight_bits=4), rounds=3)
    assert lat.kind == FP32_KERNELS and lat.ratio is None and lat.ms_per_batch is None
    assert lat.front_ratio == 1.0 and lat.label() == FP32_KERNELS
    assert json.loads(json.dumps(lat.to_dict()))["front_ratio"] == 1.0


def test_masked_and_dropped_time_the_materialized_model_against_the_baseline(ev):
    recipe = Recipe(masked_heads=[(0, 1)], dropped_layers=[2])
    lat = ev.measure_latency(recipe, batch_size=4, seq_len=16, rounds=4)
    assert lat.kind == "measured" and lat.what.startswith("materialized model") and lat.repeats == 4
    assert lat.ratio > 0 and lat.ratio_ci95[0] <= lat.ratio <= lat.ratio_ci95[1]
    assert lat.verdict in ("faster", "slower", NO_CHANGE) and lat.baseline_ms_per_batch > 0
    assert (lat.batch_size, lat.seq_len) == (4, 16)
    # 4 rounds are too few for a verdict: no speed is claimed, and the label says why
    assert lat.verdict == NO_CHANGE and "too few for a verdict" in lat.label()
    assert 0 < lat.predicted_ratio < 1  # fewer FLOPs counted: a prediction, carried beside the timing
    if lat.verdict == NO_CHANGE:
        assert lat.front_ratio == 1.0
    else:
        assert lat.front_ratio == lat.ratio


def test_the_baseline_is_its_own_reference(ev):
    lat = ev.measure_latency(Recipe(), rounds=3)
    assert lat.kind == "baseline" and lat.ratio == 1.0 and lat.front_ratio == 1.0 and lat.ms_per_batch > 0


def test_int8_and_bf16_bits_run_real_kernels(ev):
    model = ev.loaded.model
    assert real_kernels_for(Recipe(weight_bits=8), 3) == "int8"
    assert real_kernels_for(Recipe(weight_bits=16), 3) == "bf16"
    assert real_kernels_for(Recipe(weight_bits=[8, 4, 8]), 3) is None
    q, what, _ = deployed_model(model, Recipe(weight_bits=8, masked_heads=[(0, 0)]), torch.device("cpu"))
    assert "int8" in what and "materialized" in what
    assert any("quantized" in type(m).__module__ for m in q.modules())  # real int8 Linear modules
    b, what, _ = deployed_model(model, Recipe(weight_bits=16), torch.device("cpu"))
    assert "bf16" in what and next(b.parameters()).dtype == torch.bfloat16
    none, what, _ = deployed_model(model, Recipe(weight_bits=3), torch.device("cpu"))
    assert none is None and what == FP32_KERNELS
    m, what, notes = deployed_model(model, Recipe(weight_bits=3, dropped_layers=[0]), torch.device("cpu"))
    assert m is not None and any("bits not timed" in n for n in notes)
