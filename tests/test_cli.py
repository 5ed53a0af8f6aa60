"""The command line, in-process: JSON on stdout, and one sentence + status 2 for every bad input."""

import json

import pytest

from analysis.cli import main
from analysis.testing import tiny_dataset, tiny_loaded


@pytest.fixture(scope="module")
def data_csv(tmp_path_factory):
    ds = tiny_dataset(40)
    path = tmp_path_factory.mktemp("data") / "tiny.csv"
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["utterance", "intent"])
        for t, y in zip(ds.texts, ds.labels):
            w.writerow([t, ds.label_names[y]])
    return str(path)


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_info(capsys, model_dir):
    code, out, err = run(capsys, "info", "--model", model_dir)
    assert code == 0, err
    info = json.loads(out)
    assert info["num_layers"] == 3 and info["num_heads"] == 4 and info["model_type"] == "bert"
    assert info["labels"] == ["card", "transfer", "refund"]


def test_evaluate_with_recipe_and_predictions(capsys, model_dir, data_csv, tmp_path):
    preds = tmp_path / "preds.jsonl"
    base = ["evaluate", "--model", model_dir, "--data", data_csv, "--text-column", "utterance",
            "--label-column", "intent", "--no-latency"]
    code, out, err = run(capsys, *base)
    assert code == 0, err
    baseline = json.loads(out)
    code, out, err = run(capsys, *base, "--mask-heads", "0:1,2:3", "--drop-layers", "1", "--bits", "8",
                         "--predictions", str(preds))
    assert code == 0, err
    result = json.loads(out)
    assert result["num_examples"] == 40 and result["mode"] == "simulated"
    assert result["recipe"]["masked_heads"] == [[0, 1], [2, 3]] and result["recipe"]["dropped_layers"] == [1]
    assert result["size"]["mb"] < baseline["size"]["mb"]
    lines = [json.loads(l) for l in preds.read_text().splitlines()]
    assert len(lines) == 40 and {"index", "label", "prediction", "logits"} <= set(lines[0])
    assert sum(l["prediction"] == l["label"] for l in lines) / 40 == pytest.approx(result["metrics"]["accuracy"])


def test_evaluate_counts_truncated_examples(capsys, model_dir, tmp_path):
    long = " ".join(["the card payment was declined again"] * 8)  # ~50 tokens
    rows = ["utterance,intent"] + [f"{long if i in (3, 7) else 'my card was declined'},card" for i in range(10)]
    data = _write(tmp_path / "long.csv", "\n".join(rows) + "\n")
    base = ["evaluate", "--model", model_dir, "--data", data, "--text-column", "utterance",
            "--label-column", "intent", "--no-latency"]
    counts = {}
    for max_length in (24, 128):
        code, out, err = run(capsys, *base, "--max-length", str(max_length))
        assert code == 0, err
        result = json.loads(out)
        assert result["max_length"] == max_length
        counts[max_length] = result["num_truncated"]
    assert counts == {24: 2, 128: 0}


def test_materialize_then_evaluate_materialized(capsys, model_dir, data_csv, tmp_path):
    out_dir = tmp_path / "pruned"
    code, out, err = run(capsys, "materialize", "--model", model_dir, "--mask-heads", "0:0,0:1,1:2", "--out", str(out_dir))
    assert code == 0, err
    saved = json.loads(out)
    assert saved["parameters"] < saved["baseline_parameters"] and not saved["plain_transformers_loadable"]
    code, out, err = run(capsys, "info", "--model", str(out_dir))
    assert code == 0, err
    assert json.loads(out)["kind"] == "materialized"
    # the pruned model's predictions equal the simulated masked model's predictions
    common = ["--data", data_csv, "--text-column", "utterance", "--label-column", "intent", "--no-latency"]
    _, sim_out, _ = run(capsys, "evaluate", "--model", model_dir, "--mask-heads", "0:0,0:1,1:2", *common)
    _, mat_out, _ = run(capsys, "evaluate", "--model", str(out_dir), *common)
    assert json.loads(sim_out)["metrics"] == json.loads(mat_out)["metrics"]


def _write(path, text, encoding="utf-8"):
    with open(path, "w", encoding=encoding) as f:
        f.write(text)
    return str(path)


@pytest.mark.parametrize("case, message", [
    ("unknown_name", "neither a demo model"),
    ("not_model_dir", "not a model directory"),
    ("bad_recipe_json", "not valid JSON"),
    ("recipe_all_layers", "drops every layer"),
    ("recipe_head", "does not exist"),
    ("recipe_bits", "not supported"),
    ("missing_column", "columns"),
    ("empty_file", "empty"),
    ("not_utf8", "UTF-8"),
    ("unknown_labels", "label"),
    ("missing_file", "does not exist"),
    ("bad_limit", "--limit"),
])
def test_bad_input_gives_one_sentence(case, message, capsys, model_dir, data_csv, tmp_path):
    ev = ["evaluate", "--model", model_dir, "--data", data_csv, "--text-column", "utterance",
          "--label-column", "intent", "--no-latency"]
    argv = {
        "unknown_name": ["info", "--model", "no such model!"],
        "not_model_dir": ["info", "--model", str(tmp_path)],
        "bad_recipe_json": ev + ["--recipe", _write(tmp_path / "r.json", "{not json")],
        "recipe_all_layers": ev + ["--drop-layers", "0,1,2"],
        "recipe_head": ev + ["--mask-heads", "0:9"],
        "recipe_bits": ev + ["--bits", "1"],
        "missing_column": ["evaluate", "--model", model_dir, "--data", data_csv, "--text-column", "text",
                           "--label-column", "intent", "--no-latency"],
        "empty_file": ["evaluate", "--model", model_dir, "--data", _write(tmp_path / "e.csv", ""), "--no-latency"],
        "not_utf8": ["evaluate", "--model", model_dir, "--data", _write(tmp_path / "l.csv", "text,label\ncaf\xe9,0\n", "latin-1"), "--no-latency"],
        "unknown_labels": ["evaluate", "--model", model_dir, "--data",
                           _write(tmp_path / "u.csv", "text,label\nhello there,weather\nhi,news\n"), "--no-latency"],
        "missing_file": ["evaluate", "--model", model_dir, "--data", str(tmp_path / "nope.csv"), "--no-latency"],
        "bad_limit": ev + ["--limit", "0"],
    }[case]
    code, out, err = run(capsys, *argv)
    assert code == 2, (out, err)
    assert out == ""
    lines = [l for l in err.strip().splitlines() if l]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message.lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in err


def test_pickle_checkpoint_refused_without_flag(capsys, tmp_path):
    import torch

    loaded = tiny_loaded()
    loaded.model.config.save_pretrained(str(tmp_path))
    loaded.tokenizer.save_pretrained(str(tmp_path))
    torch.save(loaded.model.state_dict(), tmp_path / "pytorch_model.bin")
    code, _, err = run(capsys, "info", "--model", str(tmp_path))
    assert code == 2 and "pickle" in err and "--allow-pickle" in err
    code, out, err = run(capsys, "info", "--model", str(tmp_path), "--allow-pickle")
    assert code == 0, err


def test_hub_id_offline_fails_fast_with_one_sentence(capsys, monkeypatch):
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    code, _, err = run(capsys, "info", "--model", "bert-base-uncased")
    assert code == 2 and "not reachable" in err and len(err.strip().splitlines()) == 1
    assert time.perf_counter() - t0 < 20


def test_bare_encoder_is_not_a_classifier(capsys, tmp_path):
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=4, intermediate_size=64)).save_pretrained(str(tmp_path))
    tiny_loaded().tokenizer.save_pretrained(str(tmp_path))
    code, _, err = run(capsys, "info", "--model", str(tmp_path))
    assert code == 2 and "not a sequence classifier" in err and "BertModel" in err


# ------------------------------------------------------------------------------ presets and Pareto
def test_presets_command_ranks_heads_like_the_importance_command(capsys, model_dir, data_csv):
    data = ["--data", data_csv, "--text-column", "utterance", "--label-column", "intent"]
    code, out, err = run(capsys, "presets", "--model", model_dir, *data)
    assert code == 0, err
    result = json.loads(out)
    by_id = {p["id"]: p for p in result["presets"]}
    assert set(by_id) == {"sixteen-heads", "poor-mans-bert", "q-bert", "8-bit"}
    assert all(p["citation"] for p in result["presets"])
    assert by_id["poor-mans-bert"]["recipe"]["dropped_layers"] == [1, 2]
    assert result["importance"]["method"] == "michel" and result["importance"]["num_examples"] == 40
    code, out, err = run(capsys, "importance", "--model", model_dir, *data, "--method", "michel")
    assert code == 0, err
    scores = json.loads(out)["importance"]["michel"]["scores"]
    order = sorted(((l, h) for l in range(3) for h in range(4)), key=lambda lh: (scores[lh[0]][lh[1]], lh))
    assert by_id["sixteen-heads"]["recipe"]["masked_heads"] == sorted([list(lh) for lh in order[:5]])

    code, out, err = run(capsys, "presets", "--model", model_dir, "--no-importance")
    assert code == 0, err
    skipped = {p["id"]: p for p in json.loads(out)["presets"]}["sixteen-heads"]
    assert skipped["recipe"] is None and "importance" in skipped["skipped"]
    code, out, err = run(capsys, "presets", "--model", model_dir, "--name", "q-bert")
    assert code == 0, err
    assert [p["recipe"]["weight_bits"] for p in json.loads(out)["presets"]] == [4]
    code, _, err = run(capsys, "presets", "--model", model_dir, "--name", "nope")
    assert code == 2 and "There is no preset 'nope'" in err and len(err.strip().splitlines()) == 1


def test_pareto_command_over_results_and_over_evaluated_presets(capsys, model_dir, data_csv, tmp_path):
    results = [{"metric": 0.9, "size": {"mb": 100}, "recipe": {"name": "base"}},
               {"metric": 0.85, "size": {"mb": 50}, "recipe": {"dropped_layers": [2], "name": "a"}},
               {"metric": 0.85, "size": {"mb": 50}, "recipe": {"dropped_layers": [2], "name": "a again"}},
               {"metric": 0.80, "size": {"mb": 60}, "recipe": {"dropped_layers": [1], "name": "worse"}},
               {"metric": None, "size": {"mb": 1}, "recipe": {"name": "no metric"}}]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    code, out, err = run(capsys, "pareto", "--results", str(path))
    assert code == 0, err
    front = json.loads(out)["front"]
    assert [p["index"] for p in front] == [1, 0] and front[0]["name"] == "a"

    data = ["--data", data_csv, "--text-column", "utterance", "--label-column", "intent"]
    code, out, err = run(capsys, "pareto", "--model", model_dir, *data, "--presets")
    assert code == 0, err
    result = json.loads(out)
    assert result["skipped"] == []  # a preset that does not fit the model would be named here
    assert result["num_results"] == 5 and result["front"]
    points = [(p["metric"], p["size.mb"]) for p in result["front"]]
    assert [c for _, c in points] == sorted(c for _, c in points)
    assert all(m1 < m2 for (m1, _), (m2, _) in zip(points, points[1:]))  # costlier must be better

    code, _, err = run(capsys, "pareto")
    assert code == 2 and "--results" in err
    path.write_text("{}")
    code, _, err = run(capsys, "pareto", "--results", str(path))
    assert code == 2 and "JSON list" in err


def test_recipe_options_take_help_and_defaults_from_the_recipe(capsys):
    from analysis.core.recipe import DEFAULT_NUM_GROUPS, field_help

    def help_of(*argv):
        assert main([*argv, "--help"]) == 0
        return "".join(capsys.readouterr().out.split())  # argparse wraps lines (also at hyphens)

    def squeeze(text):
        return "".join(text.split())

    evaluate, quantize = help_of("evaluate"), help_of("quantize")
    for name in ("masked_heads", "dropped_layers", "weight_bits", "embedding_bits", "granularity"):
        assert squeeze(field_help(name)) in evaluate, name
    for name in ("granularity", "num_groups", "symmetric", "embedding_bits", "activation_bits"):
        assert squeeze(field_help(name)) in quantize, name
    assert squeeze(f"{field_help('num_groups')} (default: {DEFAULT_NUM_GROUPS})") in quantize
    assert "{per-tensor,per-channel,per-head,groups}" in evaluate and squeeze("one of 8, 16, 32 (default: 32)") in quantize


def test_backends_prints_every_asked_backend_with_interleaved_latency(capsys, model_dir, data_csv):
    pytest.importorskip("onnxruntime")
    code, out, err = run(capsys, "backends", "--model", model_dir, "--data", data_csv, "--text-column", "utterance",
                         "--label-column", "intent", "--threads", "1", "--shapes", "2x8", "--rounds", "2",
                         "--backends", "torch fp32,ORT int8", "--mask-heads", "0:0")
    assert code == 0, err
    d = json.loads(out)
    assert [r["backend"] for r in d["results"]] == ["torch fp32", "ORT int8"]
    assert d["results"][1]["latency"][0]["shape"] == "2x8" and d["recipe"]["masked_heads"] == [[0, 0]]
    assert d["results"][0]["num_examples"] == 40
    code, out, err = run(capsys, "backends", "--model", model_dir, "--data", data_csv, "--text-column", "utterance",
                         "--label-column", "intent", "--shapes", "32")
    assert code == 2 and "not a shape" in err


def test_ffn_neuron_importance_recipe_through_evaluate_and_materialize(capsys, model_dir, data_csv, tmp_path):
    data = ["--data", data_csv, "--text-column", "utterance", "--label-column", "intent"]
    recipe_file = tmp_path / "ffn.json"
    code, out, err = run(capsys, "importance", "--model", model_dir, *data, "--unit", "ffn", "--method", "taylor",
                         "--prune-fraction", "0.5", "--recipe-out", str(recipe_file))
    assert code == 0, err
    result = json.loads(out)
    assert result["importance"]["method"] == "taylor" and result["importance"]["intermediate_sizes"] == [64, 64, 64]
    kept = result["pruning"]["kept_per_layer"]
    assert sum(kept) == 96 and len(kept) == 3  # half of 3 x 64, split unevenly by importance
    saved = json.loads(recipe_file.read_text())
    assert sum(len(u) for _, u in saved["masked_neurons"]) == 96
    base = ["evaluate", "--model", model_dir, *data, "--no-latency", "--no-store"]
    code, out, err = run(capsys, *base, "--recipe", str(recipe_file))
    assert code == 0, err
    evaluated = json.loads(out)
    assert evaluated["recipe"]["masked_neurons"] == saved["masked_neurons"]
    assert evaluated["size"]["parameters"] == evaluated["size"]["baseline_parameters"] - 96 * (32 + 1 + 32)
    code, out, err = run(capsys, "materialize", "--model", model_dir, "--recipe", str(recipe_file),
                         "--out", str(tmp_path / "pruned"))
    assert code == 0, err
    assert json.loads(out)["parameters"] == evaluated["size"]["parameters"]
    code, out, err = run(capsys, *base, "--mask-neurons", "0:0-9;2:5,7")
    assert code == 0, err
    assert json.loads(out)["recipe"]["masked_neurons"] == [[0, list(range(10))], [2, [5, 7]]]
    assert result["chosen_on"] == result["data"] and "train" not in result["data"]  # a user's file has no splits
    for argv, words in [(["--unit", "ffn", "--method", "ablation"], "choose gradient or taylor"),
                        (["--prune-fraction", "0.5"], "go with --unit ffn"),
                        (["--unit", "ffn", "--recipe-out", str(tmp_path / "x.json")], "needs --prune-fraction")]:
        code, out, err = run(capsys, "importance", "--model", model_dir, *data, *argv)
        assert code == 2 and words in err and err.count("\n") == 1, err
    code, out, err = run(capsys, *base, "--mask-neurons", "0-5")
    assert code == 2 and "layer:units" in err


def test_low_rank_and_sparsity_through_evaluate_and_materialize(capsys, model_dir, data_csv, tmp_path):
    base = ["evaluate", "--model", model_dir, "--data", data_csv, "--text-column", "utterance",
            "--label-column", "intent", "--no-latency", "--no-store"]
    code, out, err = run(capsys, *base, "--ranks", "0-2:ffn_in:8,1:value:4", "--embedding-size", "16")
    assert code == 0, err
    result = json.loads(out)
    assert result["recipe"]["ranks"] == [[0, "ffn_in", 8], [1, "value", 4], [1, "ffn_in", 8], [2, "ffn_in", 8]]
    energy = {(r["layer"], r["role"]): r["energy_kept"] for r in result["spectrum"]}
    assert len(energy) == 5 and all(0 < e < 1 for e in energy.values()) and (None, "embedding") in energy
    code, out, err = run(capsys, "materialize", "--model", model_dir, "--sparsity", "0.8", "--sparsity-roles",
                         "ffn_in,ffn_out", "--out", str(tmp_path / "sparse"))
    assert code == 0, err
    saved = json.loads(out)
    assert saved["sparse_weights_bytes"]["bitmask"] < saved["weights_bytes"]
    assert (tmp_path / "sparse" / "sparse" / "csr.safetensors").is_file()
    code, out, err = run(capsys, *base, "--ranks", "0:ffn_in")
    assert code == 2 and "layer:role:rank" in err


def test_ffn_pruning_importance_chooses_on_train_by_default(capsys):
    """The scores choose what is pruned: on bundled data they come from the train split unless told otherwise."""
    code, out, err = run(capsys, "importance", "--model", "demo", "--unit", "ffn", "--prune-fraction", "0.25",
                         "--limit", "12")
    assert code == 0, err
    result = json.loads(out)
    assert result["chosen_on"] == "banking77:train" and result["pruning"]["kept_per_layer"]
    code, out, err = run(capsys, "importance", "--model", "demo", "--unit", "ffn", "--limit", "12")
    assert code == 0, err
    assert "chosen_on" not in json.loads(out)  # scores only: the default split (test) is the one reported
