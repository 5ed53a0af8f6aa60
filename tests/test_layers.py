"""Layer dropping (Sajjad et al.): strategies, identity equivalence, contribution, sweep, CLI."""

import copy
import json
import threading

import pytest
import torch
from torch import nn

from analysis.core.adapters import Adapter
from analysis.errors import HeadroomError
from analysis.measure.evaluate import Evaluator
from analysis.methods.layers import (SWEEP_STRATEGIES, dropped_layers_for, layer_contributions, materialized_latency, max_k,
                             sweep)
from analysis.core.materialize import materialize
from analysis.core.recipe import Recipe
from analysis.core.simulate import simulate
from analysis.testing import tiny_batch, tiny_dataset, tiny_loaded, tiny_model


def test_strategies_match_the_paper_on_12_layers():
    # Sajjad et al. Table/figures, 1-based: odd-alternate k=4 drops 11,9,7,5; even 12,10,8,6;
    # symmetric k=4 drops the middle 5..8. Ours are 0-based.
    assert dropped_layers_for("top", 4, 12) == [8, 9, 10, 11]
    assert dropped_layers_for("bottom", 4, 12) == [0, 1, 2, 3]
    assert dropped_layers_for("alternate-odd", 4, 12) == [4, 6, 8, 10]
    assert dropped_layers_for("alternate-even", 4, 12) == [5, 7, 9, 11]
    assert dropped_layers_for("symmetric", 4, 12) == [4, 5, 6, 7]
    assert dropped_layers_for("symmetric", 1, 6) == [2]
    assert dropped_layers_for("custom", 0, 6, custom=[4, 1, 4]) == [1, 4]
    assert dropped_layers_for("contribution", 2, 4, contribution=[0.5, 0.99, 0.2, 0.98]) == [1, 3]
    for s in SWEEP_STRATEGIES[:-1]:
        for k in range(1, max_k(s, 6) + 1):
            assert len(dropped_layers_for(s, k, 6)) == k
    assert max_k("alternate-even", 6) == 3 and max_k("top", 6) == 5


@pytest.mark.parametrize("bad", [("top", 6, 6), ("top", 0, 6), ("alternate-even", 4, 6), ("nope", 1, 6)])
def test_bad_k_or_strategy_is_one_clear_error(bad):
    with pytest.raises(HeadroomError):
        dropped_layers_for(*bad)
    with pytest.raises(HeadroomError):
        dropped_layers_for("custom", 0, 3, custom=[0, 1, 2])


class IdentityLayer(nn.Module):
    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states


@pytest.mark.parametrize("arch", ["bert", "roberta", "electra"])
@pytest.mark.parametrize("strategy", ["top", "bottom", "symmetric", "alternate-odd"])
def test_recipe_dropping_equals_identity_layers(arch, strategy):
    model = tiny_model(arch, layers=4)
    batch = tiny_batch()
    dropped = dropped_layers_for(strategy, 2, 4)
    with_identity = copy.deepcopy(model)
    layers = Adapter(with_identity).spec.layers.split(".")
    module_list = with_identity
    for part in layers:
        module_list = getattr(module_list, part)
    for l in dropped:
        module_list[l] = IdentityLayer()
    with torch.no_grad():
        want = with_identity(**{k: getattr(batch, k) for k in ("input_ids", "attention_mask", "token_type_ids")}).logits
        got = simulate(Adapter(model), Recipe(dropped_layers=dropped)).forward(batch).logits
        real = materialize(model, Recipe(dropped_layers=dropped))(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask, token_type_ids=batch.token_type_ids).logits
        full = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                     token_type_ids=batch.token_type_ids).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(real, want, atol=1e-5, rtol=1e-5)
    assert (full - want).abs().max() > 1e-3  # dropping really changed something


@pytest.fixture(scope="module")
def ev():
    return Evaluator(tiny_loaded(layers=4), tiny_dataset(48), batch_size=16)


def test_contribution_is_cls_cosine_before_and_after(ev):
    contribution = layer_contributions(ev, max_examples=20)
    assert len(contribution) == 4 and all(-1.0 <= c <= 1.0 for c in contribution)
    # by hand, for layer 2, from a fresh full forward of the first 20 examples
    sims, seen = [], 0
    sim = simulate(ev.adapter, Recipe())
    with torch.no_grad():
        for b in ev.batches:
            states = sim.forward(b, output_hidden_states=True).hidden_states
            n = min(b.input_ids.shape[0], 20 - seen)
            sims.append(torch.nn.functional.cosine_similarity(states[2][:n, 0], states[3][:n, 0], dim=-1))
            seen += n
            if seen >= 20:
                break
    assert contribution[2] == pytest.approx(float(torch.cat(sims).mean()), abs=1e-5)
    least = max(range(4), key=lambda l: contribution[l])
    assert dropped_layers_for("contribution", 1, 4, contribution=contribution) == [least]


def test_sweep_table_progress_and_cancel(ev):
    seen = []
    result = sweep(ev, ("top", "alternate-even", "contribution"), progress=lambda f, m: seen.append(f))
    table = result.table()
    assert set(table["top"]) == {1, 2, 3} and set(table["alternate-even"]) == {1, 2}
    assert len(result.rows) == 3 + 2 + 3 and seen[-1] == 1.0 and seen[0] == 0.0
    want = ev.evaluate(Recipe(dropped_layers=[2, 3])).metric
    assert table["top"][2] == pytest.approx(want)
    json.dumps(result.to_dict())
    stop = threading.Event()
    stop.set()
    with pytest.raises(HeadroomError):
        sweep(ev, ("top",), cancel=stop)


def test_materialized_latency_reports_a_ratio(ev):
    batch = ev.latency_batch(4, 16)
    out = materialized_latency(ev.loaded.model, [2, 3], batch, repeats=2)
    assert out["dropped_layers"] == [2, 3] and out["latency_ratio"] > 0 and out["threads"] >= 1
    assert out["batch_size"] == 4 and out["seq_len"] == 16


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_model_layers")
    loaded = tiny_loaded(layers=4)
    loaded.model.save_pretrained(str(d))
    loaded.tokenizer.save_pretrained(str(d))
    return str(d)


@pytest.fixture(scope="module")
def data_csv(tmp_path_factory):
    import csv

    ds = tiny_dataset(30)
    path = tmp_path_factory.mktemp("data_layers") / "tiny.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for t, y in zip(ds.texts, ds.labels):
            w.writerow([t, ds.label_names[y]])
    return str(path)


def test_cli_layers(capsys, model_dir, data_csv):
    from analysis.cli import main

    base = ["layers", "--model", model_dir, "--data", data_csv]
    assert main(base + ["--strategy", "symmetric", "--k", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dropped_layers"] == [1, 2] and out["num_examples"] == 30 and "simulated" in out["mode"]
    assert main(base + ["--strategy", "contribution", "--k", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["contribution_cls_cosine"]) == 4
    assert main(base + ["--sweep", "--strategies", "top,bottom"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["table"]) == {"top", "bottom"} and len(out["rows"]) == 6
    assert main(base + ["--strategy", "top", "--k", "4"]) == 2
    assert "between 1 and 3" in capsys.readouterr().err
