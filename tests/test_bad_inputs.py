"""Bad inputs a new user can give, each answered with one sentence and exit status 2 (issue 15).

Every case runs the real command line (`analysis.cli.main`) on a tiny BERT saved to disk and a
small CSV, with one thing wrong: a recipe value that would have been coerced, suspicious data, an
output path Headroom must not write, a number out of range, a train set nothing can be learnt
from. The answer must be exactly one line on stderr starting with "error:", no traceback and no
"internal error", and nothing on stdout. Dashboard links are checked the same way through
`dashboard.state.parse_link` (one warning sentence and the default, never an exception).
Suspicious-but-usable data is scored, with its warning in the JSON's "warnings".
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from analysis.cli import main
from analysis.testing import tiny_dataset, tiny_loaded


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> str:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("bad_inputs")
    loaded = tiny_loaded()  # hidden 32, FFN 64, 3 layers x 4 heads, labels from TINY_LABELS
    loaded.model.save_pretrained(str(d / "model"))
    loaded.tokenizer.save_pretrained(str(d / "model"))
    ds = tiny_dataset(24)
    rows = [[t, ds.label_names[y]] for t, y in zip(ds.texts, ds.labels)]
    f = {"dir": str(d), "model": str(d / "model"), "data": _write_csv(d / "data.csv", ["text", "label"], rows)}
    f["eval"] = _write_csv(d / "eval.csv", ["text", "label"], rows[:9])
    f["one"] = _write_csv(d / "one.csv", ["text", "label"], rows[:1])
    f["one_class"] = _write_csv(d / "one_class.csv", ["text", "label"], [[t, "same"] for t, _ in rows])
    f["other_labels"] = _write_csv(d / "other_labels.csv", ["text", "label"], [[t, "zzz"] for t, _ in rows[:4]])
    f["unlabelled"] = _write_csv(d / "unlabelled.csv", ["text"], [[t] for t, _ in rows[:4]])
    f["all_empty"] = _write_csv(d / "all_empty.csv", ["text", "label"], [["", y] for _, y in rows])
    f["dup_cols"] = _write_csv(d / "dup.csv", ["text", "text", "label"], [["", t, y] for t, y in rows])
    (d / "dup.tsv").write_text("text\ttext\tlabel\n\thello\tcard\n", encoding="utf-8")
    f["dup_tsv"] = str(d / "dup.tsv")
    (d / "list.jsonl").write_text('{"text": ["a", "b"], "label": "card"}\n', encoding="utf-8")
    f["list_jsonl"] = str(d / "list.jsonl")
    (d / "obj.jsonl").write_text('{"text": {"t": "a"}, "label": "card"}\n', encoding="utf-8")
    f["obj_jsonl"] = str(d / "obj.jsonl")
    (d / "pair.jsonl").write_text('{"text": "a", "p": [1], "label": "card"}\n', encoding="utf-8")
    f["pair_jsonl"] = str(d / "pair.jsonl")
    (d / "header_only.csv").write_text("text,label\n", encoding="utf-8")
    f["header_only"] = str(d / "header_only.csv")
    (d / "numbers.json").write_text("[1, 2, 3]", encoding="utf-8")
    f["numbers_json"] = str(d / "numbers.json")
    (d / "empty_label.csv").write_text("text,label\nhello,\n", encoding="utf-8")
    f["empty_label"] = str(d / "empty_label.csv")
    (d / "folder.csv").mkdir()
    f["folder_csv"] = str(d / "folder.csv")
    (d / "full").mkdir()
    (d / "full" / "mine.txt").write_text("keep me", encoding="utf-8")
    f["full_dir"] = str(d / "full")
    (d / "exists.jsonl").write_text("old\n", encoding="utf-8")
    f["exists"] = str(d / "exists.jsonl")
    (d / "empty_model").mkdir()
    f["empty_model"] = str(d / "empty_model")
    f["missing_folder"] = str(d / "no" / "such" / "p.jsonl")
    return f


# ------------------------------------------------------------------------------ recipes
RECIPES = {
    "symmetric-no": {"symmetric": "no"},
    "symmetric-0": {"symmetric": 0},
    "float-heads": {"masked_heads": [[0.7, 1.9]]},
    "float-layer": {"dropped_layers": [1.9]},
    "num-groups-string": {"num_groups": "12"},
    "num-groups-infinity": "INFINITY",
    "bits-1e400": "1E400",
    "bits-nan": "NAN",
    "bits-true": {"weight_bits": True},
    "embedding-bits-float": {"embedding_bits": 8.0},
    "granularity-number": {"granularity": 5},
    "name-number": {"name": 7},
    "heads-string": {"masked_heads": "0:1"},
    "heads-triple": {"masked_heads": [[0, 1, 2]]},
    "heads-bool": {"masked_heads": [[True, 1]]},
    "layers-string": {"dropped_layers": "1"},
    "bits-list-string": {"weight_bits": [8, "4", 8]},
    "activation-null": {"activation_bits": None},
    "bits-object": {"weight_bits": {"a": 1}},
    "top-level-list": [1, 2],
    "layer-negative": {"dropped_layers": [-1]},
    "bits-list-too-short": {"weight_bits": [8, 8]},
    "num-groups-7": {"weight_bits": 4, "granularity": "groups", "num_groups": 7},
    "num-groups-1000": {"weight_bits": 4, "granularity": "groups", "num_groups": 1000},
    "num-groups-5-per-head": {"weight_bits": 4, "granularity": "per-head", "num_groups": 5},
}
RAW = {"INFINITY": '{"num_groups": Infinity}', "1E400": '{"weight_bits": 1e400}', "NAN": '{"weight_bits": NaN}'}


def _recipe_file(files, name: str) -> str:
    value = RECIPES[name]
    path = Path(files["dir"]) / f"recipe-{name}.json"
    path.write_text(RAW[value] if isinstance(value, str) else json.dumps(value), encoding="utf-8")
    return str(path)


# each case: (id, argv built from the files, a word the sentence must contain)
def _cases():
    m = lambda f: ["--model", f["model"], "--data", f["data"]]
    cases = [(f"recipe-{name}", (lambda f, n=name: ["evaluate", *m(f), "--recipe", _recipe_file(f, n)]), "")
             for name in RECIPES]
    cases += [
        ("quantize-num-groups-7", lambda f: ["quantize", *m(f), "--bits", "4", "--granularity", "groups",
                                             "--num-groups", "7"], "num_groups 7"),
        ("data-all-empty", lambda f: ["evaluate", "--model", f["model"], "--data", f["all_empty"]], "empty"),
        ("data-duplicate-columns", lambda f: ["evaluate", "--model", f["model"], "--data", f["dup_cols"]], "'text'"),
        ("data-duplicate-columns-tsv", lambda f: ["evaluate", "--model", f["model"], "--data", f["dup_tsv"]], "'text'"),
        ("data-jsonl-list-text", lambda f: ["evaluate", "--model", f["model"], "--data", f["list_jsonl"]], "list"),
        ("data-jsonl-object-text", lambda f: ["evaluate", "--model", f["model"], "--data", f["obj_jsonl"]], "object"),
        ("data-jsonl-list-pair", lambda f: ["evaluate", "--model", f["model"], "--data", f["pair_jsonl"],
                                            "--pair-column", "p"], "list"),
        ("data-header-only", lambda f: ["evaluate", "--model", f["model"], "--data", f["header_only"]], "no rows"),
        ("data-json-not-objects", lambda f: ["evaluate", "--model", f["model"], "--data", f["numbers_json"]], "object"),
        ("data-is-a-directory", lambda f: ["evaluate", "--model", f["model"], "--data", f["folder_csv"]], "folder.csv"),
        ("data-unknown-text-column", lambda f: [*["evaluate"], *m(f), "--text-column", "nope"], "nope"),
        ("data-empty-label", lambda f: ["evaluate", "--model", f["model"], "--data", f["empty_label"]], "label"),
        ("data-labels-unknown-to-model", lambda f: ["evaluate", "--model", f["model"], "--data", f["other_labels"]],
         "zzz"),
        ("predictions-is-the-data", lambda f: ["evaluate", *m(f), "--predictions", f["data"]], "input"),
        ("predictions-is-a-directory", lambda f: ["evaluate", *m(f), "--predictions", f["full_dir"]], "directory"),
        ("predictions-missing-folder", lambda f: ["evaluate", *m(f), "--predictions", f["missing_folder"]], "folder"),
        ("predictions-exists", lambda f: ["evaluate", *m(f), "--predictions", f["exists"]], "--overwrite"),
        ("materialize-over-source", lambda f: ["materialize", "--model", f["model"], "--out", f["model"]], "input"),
        ("materialize-non-empty", lambda f: ["materialize", "--model", f["model"], "--out", f["full_dir"]], "empty"),
        ("materialize-out-is-file", lambda f: ["materialize", "--model", f["model"], "--out", f["data"]], "file"),
        ("batch-size-0", lambda f: ["evaluate", *m(f), "--batch-size", "0"], "batch-size"),
        ("limit-0", lambda f: ["evaluate", *m(f), "--limit", "0"], "limit"),
        ("limit-float", lambda f: ["evaluate", *m(f), "--limit", "1e3"], "limit"),
        ("limit-word", lambda f: ["evaluate", *m(f), "--limit", "abc"], "limit"),
        ("max-length-1", lambda f: ["evaluate", *m(f), "--max-length", "1"], "max-length"),
        ("seed-negative", lambda f: ["evaluate", *m(f), "--seed", "-1"], "seed"),
        ("model-empty-dir", lambda f: ["info", "--model", f["empty_model"]], "config.json"),
        ("model-is-a-file", lambda f: ["info", "--model", f["data"]], "not a model directory"),
    ]
    t = lambda f, data, *more: ["train", "--base", f["model"], "--data", data, "--epochs", "1", "--device", "cpu",
                                *more]
    cases += [
        ("train-one-example", lambda f: t(f, f["one"]), "at least two"),
        ("train-one-class", lambda f: t(f, f["one_class"]), "two classes"),
        ("train-out-is-the-data", lambda f: t(f, f["data"], "--out", f["data"]), "not a directory"),
        ("train-out-non-empty", lambda f: t(f, f["data"], "--out", f["full_dir"]), "--overwrite"),
        ("train-out-is-the-base", lambda f: t(f, f["data"], "--out", f["model"]), "input"),
        ("train-eval-data-other-labels", lambda f: t(f, f["data"], "--eval-data", f["other_labels"]), "zzz"),
        ("train-eval-data-unlabelled", lambda f: t(f, f["data"], "--eval-data", f["unlabelled"]), "labels"),
        ("train-holdout-too-large", lambda f: t(f, f["data"], "--holdout", "24"), "holdout"),
        ("train-missing-file", lambda f: t(f, f["dir"] + "/nope.csv"), "does not exist"),
        ("train-max-length-1", lambda f: t(f, f["data"], "--max-length", "1"), "max-length"),
        ("train-all-empty", lambda f: t(f, f["all_empty"]), "empty"),
    ]
    return cases


CASES = _cases()


@pytest.mark.parametrize("build, word", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gives_one_sentence_and_exit_2(files, capsys, build, word):
    code = main(build(files))
    out, err = capsys.readouterr()
    lines = [l for l in err.splitlines() if l.strip() and not l.startswith("warning:")]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and "internal error" not in err
    assert out == ""  # nothing printed that looks like a result
    assert word in lines[0], lines[0]


def test_nothing_was_overwritten(files, capsys):
    """The refusals above left the user's files as they were."""
    for case in ("predictions-is-the-data", "predictions-exists", "materialize-non-empty"):
        main(dict((c[0], c[1]) for c in CASES)[case](files))
    capsys.readouterr()
    assert Path(files["exists"]).read_text() == "old\n"
    assert Path(files["data"]).read_text().startswith("text,label")
    assert sorted(p.name for p in Path(files["full_dir"]).iterdir()) == ["mine.txt"]


# ------------------------------------------------------------------------------ suspicious, still scored
def test_some_empty_texts_are_scored_with_a_warning_in_the_json(files, tmp_path, capsys):
    ds = tiny_dataset(12)
    rows = [["" if i in (2, 5) else t, ds.label_names[y]] for i, (t, y) in enumerate(zip(ds.texts, ds.labels))]
    data = _write_csv(tmp_path / "some_empty.csv", ["text", "label"], rows)
    assert main(["evaluate", "--model", files["model"], "--data", data]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result["num_examples"] == 12 if "num_examples" in result else True
    assert result["warnings"] == ["2 of 12 texts in some_empty.csv are empty (rows 3, 6); they are scored as "
                                  "empty inputs."]
    assert "warning: 2 of 12 texts" in err


def test_labels_matched_by_order_say_so(files, tmp_path, capsys):
    from transformers import AutoConfig

    model_dir = tmp_path / "unnamed"
    loaded = tiny_loaded()
    loaded.model.config.id2label = {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}
    loaded.model.config.label2id = {v: k for k, v in loaded.model.config.id2label.items()}
    loaded.model.save_pretrained(str(model_dir))
    loaded.tokenizer.save_pretrained(str(model_dir))
    assert AutoConfig.from_pretrained(str(model_dir)).id2label[0] == "LABEL_0"
    assert main(["evaluate", "--model", str(model_dir), "--data", files["data"]]) == 0
    result = json.loads(capsys.readouterr().out)
    names = sorted(tiny_dataset(3).label_names)
    assert len(result["warnings"]) == 1 and "sorted order" in result["warnings"][0]
    assert f"{names[0]} -> LABEL_0" in result["warnings"][0]


def test_clean_data_has_no_warnings_key(files, capsys):
    assert main(["evaluate", "--model", files["model"], "--data", files["data"]]) == 0
    assert "warnings" not in json.loads(capsys.readouterr().out)


# ------------------------------------------------------------------------------ training on a user's file
def test_train_on_a_user_file_scores_the_eval_file_and_saves_a_loadable_checkpoint(files, tmp_path, capsys):
    out_dir = tmp_path / "trained"
    argv = ["train", "--base", files["model"], "--data", files["data"], "--eval-data", files["eval"],
            "--epochs", "1", "--batch-size", "8", "--device", "cpu", "--out", str(out_dir)]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["eval_data"] == "eval.csv" and result["eval_split"] is None
    assert result["eval"]["num_examples"] == 9 and result["train_examples"] == 24
    assert {"config.json", "model.safetensors", "headroom.json", "MODEL_CARD.md"} <= {p.name for p in out_dir.iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary directory or lock left
    assert main(["evaluate", "--model", str(out_dir), "--data", files["eval"]]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["metric"] == pytest.approx(result["eval"]["accuracy"])  # the same model, loaded by path
    assert main(argv) == 2 and "--overwrite" in capsys.readouterr().err  # not replaced by surprise
    assert main(argv + ["--overwrite"]) == 0


def test_train_on_a_user_file_without_eval_data_is_not_scored_on_itself(files, capsys):
    assert main(["train", "--base", files["model"], "--data", files["data"], "--epochs", "1", "--device", "cpu",
                 "--holdout", "6"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["eval"] is None and result["holdout"]["num_examples"] == 6 and result["train_examples"] == 18


# ------------------------------------------------------------------------------ recipes in Python
@pytest.mark.parametrize("name", sorted(n for n, v in RECIPES.items() if isinstance(v, dict) and "num_groups" not in v
                                        and n not in ("layer-negative", "bits-list-too-short")))
def test_recipe_values_are_refused_not_coerced(name):
    from analysis.core.recipe import Recipe
    from analysis.errors import HeadroomError

    with pytest.raises(HeadroomError, match=r"^Recipe field \w+ must be "):
        Recipe.from_dict(RECIPES[name])


def test_numpy_integers_are_still_integers():
    import numpy as np

    from analysis.core.recipe import Recipe

    r = Recipe(masked_heads=[(np.int64(1), np.int32(2))], dropped_layers=(np.int64(0),), weight_bits=np.int64(4))
    assert r.masked_heads == [(1, 2)] and r.dropped_layers == [0] and r.weight_bits == 4
    assert type(r.weight_bits) is int and Recipe.from_json(r.to_json()) == r


def test_num_groups_that_divides_is_used_as_given():
    import torch

    from analysis.core.quantize import QuantScheme, quantize_weight

    w = torch.randn(64, 8)
    assert quantize_weight(w, QuantScheme(4, "groups", num_groups=8), "ffn_in", 8).num_ranges == 8
    from analysis.errors import HeadroomError

    with pytest.raises(HeadroomError, match=r"num_groups 7 does not divide the 64 rows.*1, 2, 4, 8, 16, 32, 64"):
        quantize_weight(w, QuantScheme(4, "groups", num_groups=7), "ffn_in", 8)


# ------------------------------------------------------------------------------ dashboard links
LINKS = [
    ({"n": "250000"}, "subset size", "limit"),
    ({"n": "-1"}, "subset size", "limit"),
    ({"n": "abc"}, "subset size", "limit"),
    ({"n": "1e3"}, "subset size", "limit"),
    ({"data": "FOLDER"}, "is a directory", "data"),
    ({"data": "/no/such/file.csv"}, "does not exist", "data"),
    ({"data": "imagenet"}, "no dataset", "data"),
    ({"model": "nope"}, "no model", "model"),
    ({"model": "FILE"}, "is a file", "model"),
    ({"device": "tpu"}, "device", "device"),
    ({"split": "holdout"}, "split", "split"),
    ({"r": "b99"}, "99-bit", None),
    ({"r": "n0"}, "num_groups", None),
    ({"r": "hzz"}, "malformed", None),
    ({"r": "q1"}, "malformed", None),  # no such field code ("x" is the embedding size)
    ({"r": "xabc"}, "malformed", None),
    ({"r": "h" + "f" * 200}, "malformed", None),
    ({"r": "a7"}, "activation_bits", None),
    ({"page": "nope"}, "no page", None),
]


@pytest.mark.parametrize("query, words, field", LINKS, ids=[f"link-{i}" for i in range(len(LINKS))])
def test_a_bad_link_value_gives_one_warning_and_the_default(files, query, words, field):
    from dashboard import state
    from analysis.core.recipe import Recipe

    query = {k: {"FOLDER": files["folder_csv"], "FILE": files["data"]}.get(v, v) for k, v in query.items()}
    link = state.parse_link(query)
    assert len(link.warnings) == 1 and words in link.warnings[0], link.warnings
    assert link.warnings[0].endswith(".")
    default = state.default_choice()
    assert link.choice == default and link.recipe == Recipe() and link.start_page == ""
    if field:
        assert getattr(link.choice, field) == getattr(default, field)


def test_good_link_values_are_kept(files):
    from dashboard import state

    link = state.parse_link({"model": files["model"], "data": files["data"], "n": "200000", "split": "train",
                             "device": "cuda", "r": "l1_b8", "page": "heads"})
    assert link.warnings == []
    assert (link.choice.model, link.choice.data, link.choice.limit) == (files["model"], files["data"], 200_000)
    assert link.recipe.dropped_layers == [1] and link.recipe.weight_bits == 8 and link.start_page == "heads"
