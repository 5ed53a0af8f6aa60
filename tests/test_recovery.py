"""Recovery (analysis/recovery): objectives, the straight-through estimator, the teacher left alone,
Stop / resume, the saved model and its card, and the evaluation split kept out of training."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest
import torch

from analysis.core.quantize import QuantScheme, fake_quantize
from analysis.core.recipe import Recipe
from analysis.errors import HeadroomError
from analysis.recovery.checkpoint import STATE_FILE, read_card
from analysis.recovery.config import OBJECTIVES, RecoveryConfig
from analysis.recovery.loop import recover
from analysis.recovery.objectives import LayerMap
from analysis.recovery.student import build_student, ste_fake_quantize
from analysis.testing import tiny_dataset, tiny_loaded

PRUNE = Recipe(dropped_layers=[2], masked_heads=[(0, 1), (1, 3)])


@pytest.fixture(scope="module")
def loaded():
    return tiny_loaded(layers=3, heads=4, hidden=32)


def quick(objective: str, **changes) -> RecoveryConfig:
    base = dict(holdout=0, epochs=1, batch_size=16, lr=1e-3, warmup_ratio=0.0, device="cpu", eval_split="none")
    return RecoveryConfig.for_objective(objective, **{**base, **changes})


# ------------------------------------------------------------------------------------- config
def test_config_round_trips_and_refuses_bad_values_in_one_sentence():
    c = RecoveryConfig.for_objective("tinybert", minutes=2.5, layer_map="uniform")
    assert RecoveryConfig.from_json(c.to_json()) == c
    assert c.hidden_weight == 1.0 and c.attention_weight == 1.0 and c.ce_weight == 0.0
    for bad, words in [({"lr": 0}, "lr must be above 0"), ({"epochs": 0}, "epochs must be at least 1"),
                       ({"layer_map": "diagonal"}, "layer_map must be one of"), ({"qat": "yes"}, "true or false"),
                       ({"ce_weight": 0.0}, "nothing to train for"), ({"warmup_ratio": 1.0}, "below 1"),
                       ({"tempo": 2}, "Unknown recovery option")]:
        with pytest.raises(HeadroomError, match=words):
            RecoveryConfig.from_dict(bad)
    with pytest.raises(HeadroomError, match="Unknown objective"):
        RecoveryConfig.for_objective("magic")


def test_layer_maps_original_and_uniform():
    assert LayerMap.build("original", [0, 1, 3], 6).teacher_layer == (0, 1, 3)
    assert LayerMap.build("uniform", [0, 1, 3], 6).teacher_layer == (1, 3, 5)  # TinyBERT: g(m) = m * N / M
    assert LayerMap.build("original", [0, 1, 3], 6).hidden_pairs() == [(0, 0), (1, 1), (2, 2), (3, 4)]


# ------------------------------------------------------------------------------------- objectives
@pytest.mark.parametrize("objective", list(OBJECTIVES))
def test_each_objective_lowers_its_own_loss(loaded, objective):
    """A tiny task: one fixed batch, the objective's own weighted loss, 15 Adam steps, no dropout."""
    from analysis.core.adapters import Adapter
    from analysis.core.simulate import SimulatedModel
    from analysis.io.batching import make_batches
    from analysis.recovery.objectives import combined_loss

    recipe = PRUNE.replace(weight_bits=4, granularity="per-channel") if objective == "qat" else PRUNE
    config = quick(objective)
    data = tiny_dataset(n=12, seed=3)
    batch = make_batches(data, loaded.tokenizer, batch_size=12)[0]
    labels = torch.tensor(data.labels)[batch.example_ids]
    student = build_student(loaded.model, recipe, qat=config.qat)
    student.model.eval()  # no dropout: the loss of a fixed batch must fall step after step
    teacher = SimulatedModel(Adapter(loaded.model), Recipe())
    layer_map = LayerMap.build(config.layer_map, student.kept_layers, student.teacher_layers)
    optimizer = torch.optim.Adam([p for p in student.model.parameters() if p.ndim > 1], lr=1e-3)
    losses = []
    for _ in range(15):
        out = student(batch, output_hidden_states=True, output_attentions=True)
        with torch.no_grad():
            target = teacher(batch, output_hidden_states=True, output_attentions=True)
        loss, parts = combined_loss(config, out, target, labels, batch.attention_mask, layer_map, student.kept_heads)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0], losses
    expected = {"ce": {"ce"}, "kd": {"ce", "kd"}, "tinybert": {"kd", "hidden", "attention"}, "pkd": {"ce", "kd", "pkd"},
                "qat": {"ce"}}[objective]
    assert set(parts) == expected
    assert all(v > 0 for v in parts.values())


def test_the_loop_lowers_the_training_loss(loaded):
    res = recover(loaded, PRUNE, quick("kd", epochs=12, batch_size=12, lr=3e-3), train=tiny_dataset(n=12, seed=3))
    losses = [row["loss"] for row in res["history"] if row["loss"] is not None]
    assert len(losses) == 12 and np.mean(losses[-3:]) < np.mean(losses[:3]), losses


def test_qat_gradient_is_straight_through():
    torch.manual_seed(0)
    w = torch.randn(8, 6, requires_grad=True)
    scheme = QuantScheme(bits=3, granularity="per-channel")
    q = ste_fake_quantize(w, scheme, "ffn_in", 2)
    assert torch.equal(q, fake_quantize(w.detach(), scheme, "ffn_in", 2))
    assert not torch.equal(q, w)  # it does round
    g = torch.randn(8, 6)
    q.backward(g)
    assert torch.equal(w.grad, g)  # d Q(w) / d w = identity


def test_qat_student_trains_exactly_what_it_exports(loaded):
    recipe = PRUNE.replace(weight_bits=4, embedding_bits=8, granularity="per-head", num_groups=4)  # 4 divides the tiny FFN
    student = build_student(loaded.model, recipe, qat=True)
    assert len(student.quantized) == 2 * 6 + 1  # six matrices in two kept layers + the embeddings
    from analysis.io.batching import make_batches

    batch = make_batches(tiny_dataset(n=8), loaded.tokenizer, batch_size=8)[0]
    student.model.eval()
    with torch.no_grad():
        trained = student(batch).logits
        shipped = student.export()(**batch.model_inputs()).logits
    assert torch.allclose(trained, shipped, atol=1e-6)
    float_student = build_student(loaded.model, recipe, qat=False)
    with torch.no_grad():
        assert not torch.allclose(float_student(batch).logits, trained, atol=1e-4)


def test_teacher_weights_are_bit_identical_after_recovery(loaded):
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    flags = [p.requires_grad for p in loaded.model.parameters()]
    recover(loaded, PRUNE, quick("tinybert", epochs=2), train=tiny_dataset(n=32, seed=4))
    recover(loaded, PRUNE.replace(weight_bits=4), quick("qat"), train=tiny_dataset(n=32, seed=4))
    after = loaded.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [p.requires_grad for p in loaded.model.parameters()] == flags
    assert not loaded.model.training


# ------------------------------------------------------------------------------------- stop, resume, reload
def _stop_after(step: int):
    cancel = threading.Event()

    def log(row):
        if row["step"] >= step:
            cancel.set()
    return cancel, log


def test_stopped_run_leaves_a_loadable_checkpoint_and_resume_continues(loaded, tmp_path):
    from analysis.io.models import load_model

    train = tiny_dataset(n=64, seed=5)
    config = quick("kd", epochs=2, holdout=16, eval_every=1)
    cancel, log = _stop_after(3)
    out = tmp_path / "stopped"
    res = recover(loaded, PRUNE, config, train=train, out_dir=str(out), cancel=cancel, log=log)
    assert res["status"] == "stopped" and res["steps"] == 3 and res["saved"]["resumable"]
    assert (out / STATE_FILE).exists()
    again = load_model(str(out))  # the best checkpoint so far, a model like any other
    assert again.adapter.num_layers == 2 and again.adapter.heads_per_layer == [3, 3]

    resumed = recover(loaded, PRUNE, config, train=train, out_dir=str(out), resume=str(out))
    assert resumed["status"] == "complete" and resumed["steps"] == resumed["planned_steps"] == 6
    steps = [row["step"] for row in resumed["history"]]
    assert steps[:4] == [0, 1, 2, 3] and steps == sorted(steps) and steps[-1] == 6
    assert not (out / STATE_FILE).exists()  # a finished run has nothing left to resume

    # the same run without a stop ends at the same weights: the resume restored order, RNG and optimiser
    whole = recover(loaded, PRUNE, config, train=train)
    np.testing.assert_allclose(whole["check"]["logits"], resumed["check"]["logits"], atol=1e-5)


def test_resume_refuses_another_recipe(loaded, tmp_path):
    train = tiny_dataset(n=32, seed=5)
    config = quick("ce", epochs=2)
    cancel, log = _stop_after(1)
    out = tmp_path / "stopped"
    recover(loaded, PRUNE, config, train=train, out_dir=str(out), cancel=cancel, log=log)
    with pytest.raises(HeadroomError, match="another recipe"):
        recover(loaded, Recipe(dropped_layers=[0]), config, train=train, resume=str(out))


@pytest.mark.parametrize("recipe", [PRUNE, Recipe(dropped_layers=[1]), PRUNE.replace(weight_bits=8)],
                         ids=["heads+layer", "layer", "bits"])
def test_recovered_model_reloads_and_reproduces_its_card_logits(loaded, tmp_path, recipe):
    from transformers import AutoModelForSequenceClassification

    from analysis.io.models import load_model
    from analysis.measure.evaluate import Evaluator

    out = tmp_path / "m"
    res = recover(loaded, recipe, quick("kd", epochs=2), train=tiny_dataset(n=32, seed=6), out_dir=str(out))
    card = read_card(str(out))
    assert card["recipe"] == recipe.to_dict() and card["config"]["objective"] == "kd"
    assert (out / "MODEL_CARD.md").read_text().startswith("# Recovered model")
    again = load_model(str(out))
    enc = again.tokenizer(card["check"]["texts"], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = again.model(**enc).logits
    np.testing.assert_allclose(logits.numpy(), card["check"]["logits"], atol=1e-5)
    if res["saved"]["plain_transformers_loadable"]:
        plain = AutoModelForSequenceClassification.from_pretrained(str(out)).eval()
        with torch.no_grad():
            np.testing.assert_allclose(plain(**enc).logits.numpy(), card["check"]["logits"], atol=1e-5)
    else:
        assert recipe.masked_heads  # only pruned heads need Headroom's loader
    # a recovered model is a model: new recipes apply to it (iterative prune -> retrain)
    ev = Evaluator(again, tiny_dataset(n=12, seed=7))
    assert ev.evaluate(Recipe(masked_heads=[(0, 0)])).num_examples == 12
    recover(again, Recipe(dropped_layers=[0]), quick("ce"), train=tiny_dataset(n=16, seed=8))


def test_recovered_model_keeps_its_teachers_data(loaded, tmp_path):
    from analysis.io.models import load_model

    teacher = replace(loaded, card={"data": "banking77", "eval_split": "test", "metric": "accuracy"})
    out = tmp_path / "m"
    recover(teacher, Recipe(dropped_layers=[1]), quick("ce"), train=tiny_dataset(n=16, seed=9), out_dir=str(out))
    again = load_model(str(out))
    assert again.default_data == "banking77" and again.card["eval_split"] == "test"
    out2 = tmp_path / "m2"  # a model without a data card stays without one
    recover(loaded, Recipe(dropped_layers=[1]), quick("ce"), train=tiny_dataset(n=16, seed=9), out_dir=str(out2))
    assert load_model(str(out2)).default_data is None


def test_existing_output_is_refused_before_training(loaded, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("keep me")
    with pytest.raises(HeadroomError, match="not empty"):
        recover(loaded, PRUNE, quick("ce"), train=tiny_dataset(n=16), out_dir=str(tmp_path / "full"))
    assert (tmp_path / "full" / "x.txt").read_text() == "keep me"


# ------------------------------------------------------------------------------------- data discipline
class _Watched(list):
    """A list that records, in a shared event log, every time it is read."""

    def __init__(self, items, events):
        super().__init__(items)
        self.events = events

    def __getitem__(self, i):
        self.events.append("eval-read")
        return super().__getitem__(i)

    def __iter__(self):
        self.events.append("eval-read")
        return super().__iter__()


def test_eval_split_is_read_only_after_training(loaded):
    events = []
    test = tiny_dataset(n=20, seed=9)
    test = replace(test, texts=_Watched(test.texts, events), labels=_Watched(test.labels, events))
    res = recover(loaded, PRUNE, quick("kd", epochs=2, holdout=8, eval_every=1, eval_split=None),
                  train=tiny_dataset(n=40, seed=10), test=test, log=lambda row: events.append("train"))
    assert "eval-read" in events and "train" in events
    assert events.index("eval-read") > max(i for i, e in enumerate(events) if e == "train")
    assert res["eval"]["examples"] == 20
    assert "held out" in res["selection"]["note"] and "after training" in res["selection"]["note"]


def test_time_budget_stops_training(loaded):
    res = recover(loaded, PRUNE, quick("ce", epochs=1000, minutes=0.02), train=tiny_dataset(n=32))
    assert res["status"] == "time budget reached" and res["steps"] < res["planned_steps"]
    assert res["train_seconds"] < 10


# ------------------------------------------------------------------------------------- CLI
def test_cli_recover_writes_a_model_and_json(loaded, tmp_path, capsys):
    import json

    from analysis.cli import main

    teacher = tmp_path / "teacher"
    loaded.model.save_pretrained(teacher)
    loaded.tokenizer.save_pretrained(teacher)
    data = tiny_dataset(n=40, seed=11)
    train_file = tmp_path / "train.csv"
    train_file.write_text("text,label\n" + "".join(f"{t},{data.label_names[l]}\n" for t, l in zip(data.texts, data.labels)))
    out = tmp_path / "recovered"
    code = main(["recover", "--model", str(teacher), "--drop-layers", "2", "--objective", "kd", "--epochs", "1",
                 "--data", str(train_file), "--holdout", "8", "--batch-size", "16", "--device", "cpu",
                 "--out", str(out), "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["config"]["kd_weight"] == 0.5 and result["student"]["layers"] == 2
    assert "eval" not in result  # a train file alone: no evaluation file named, nothing scored
    assert read_card(str(out))["steps"] == result["steps"]
    assert main(["recover", "--model", str(teacher), "--lr", "0", "--data", str(train_file)]) == 2
    assert "--lr" in capsys.readouterr().err
