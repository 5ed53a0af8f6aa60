"""A few small checks on the shipped demo checkpoints (the rest of the suite uses tiny models)."""

import json

import pytest

from analysis.cli import main
from analysis.io.datasets import load_dataset
from analysis.measure.evaluate import Evaluator
from analysis.core.materialize import materialize
from analysis.io.models import ASSETS, load_model
from analysis.core.recipe import Recipe


@pytest.fixture(scope="module")
def demo():
    return load_model("demo")


def test_assets_are_small():
    total = sum(f.stat().st_size for f in ASSETS.rglob("*") if f.is_file())
    assert total < 60e6, f"assets/ is {total / 1e6:.1f} MB"


def test_demo_is_a_banking77_minilm(demo):
    info = demo.describe()
    assert (info["num_layers"], info["num_heads"], info["hidden_size"], info["num_labels"]) == (6, 12, 384, 77)
    assert demo.default_data == "banking77"


def test_demo_accuracy_on_a_stratified_subset(demo):
    ev = Evaluator(demo, load_dataset("banking77", "test", limit=300))
    assert ev.baseline.num_examples == 300
    assert ev.baseline.metric >= 0.85  # the model card reports the full test set
    # masking every head of the last layer costs something, dropping the last two costs more
    masked = ev.evaluate(Recipe(masked_heads=[(5, h) for h in range(12)]))
    assert masked.started_at_layer == 5 and masked.agreement < 1.0


def test_masked_equals_pruned_on_the_demo(demo):
    ds = load_dataset("banking77", "test", limit=80)
    recipe = Recipe(masked_heads=[(0, 1), (2, 5), (2, 6), (5, 0)], dropped_layers=[4])
    ev = Evaluator(demo, ds)
    simulated = ev.evaluate(recipe)
    pruned = materialize(demo.model, recipe)
    import torch

    with torch.inference_mode():
        for batch in ev.batches:
            logits = pruned(**batch.model_inputs()).logits
            ids = batch.example_ids.numpy()
            torch.testing.assert_close(logits, torch.from_numpy(simulated.logits[ids]), atol=1e-4, rtol=0)


def test_done_when_command(capsys):
    code = main(["evaluate", "--model", "demo", "--data", "banking77", "--limit", "120", "--json", "--no-latency"])
    out = capsys.readouterr().out
    assert code == 0
    result = json.loads(out)
    assert result["num_examples"] == 120 and result["metric_name"] == "accuracy" and result["metric"] > 0.8
