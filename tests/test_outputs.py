"""Nothing lost: outputs never overwrite a user's file unasked, never an input, and are atomic."""

import csv
import json
import os
import threading

import pytest

from analysis.cli import main
from analysis.errors import HeadroomError
from analysis.io.outputs import atomic_directory, atomic_write_text, check_output_dir, check_output_file
from analysis.testing import tiny_dataset


@pytest.fixture()
def data_csv(tmp_path):
    ds = tiny_dataset(20)
    path = tmp_path / "tiny.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for t, y in zip(ds.texts, ds.labels):
            w.writerow([t, ds.label_names[y]])
    return path


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(d):
    return {p: open(os.path.join(d, p), "rb").read() for p in sorted(os.listdir(d))}


# ------------------------------------------------------------------------------ the guard
def test_existing_file_is_refused_and_kept(tmp_path):
    f = tmp_path / "mine.txt"
    f.write_text("precious")
    with pytest.raises(HeadroomError, match="already exists.*--overwrite"):
        atomic_write_text(f, "new")
    assert f.read_text() == "precious"
    atomic_write_text(f, "new", overwrite=True)
    assert f.read_text() == "new"


def test_output_equal_to_an_input_is_refused_even_with_overwrite(tmp_path):
    f = tmp_path / "data.csv"
    f.write_text("text,label\n")
    with pytest.raises(HeadroomError, match="would overwrite the input"):
        check_output_file(f, inputs=[str(f)], overwrite=True)
    with pytest.raises(HeadroomError, match="would overwrite the input"):
        check_output_dir(tmp_path / "sub", inputs=[str(tmp_path)], overwrite=True)  # inside the source model dir


@pytest.mark.parametrize("case", ["missing-folder", "is-directory", "parent-is-file"])
def test_bad_output_paths_get_one_sentence(tmp_path, case):
    (tmp_path / "afile").write_text("x")
    path = {"missing-folder": tmp_path / "nowhere" / "p.jsonl", "is-directory": tmp_path,
            "parent-is-file": tmp_path / "afile" / "p.jsonl"}[case]
    with pytest.raises(HeadroomError) as e:
        check_output_file(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_interrupted_file_write_keeps_the_old_file(tmp_path):
    from analysis.io.outputs import atomic_file

    f = tmp_path / "report.json"
    f.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_file(f) as out:
            out.write("half")
            raise KeyboardInterrupt
    assert f.read_text() == "old" and os.listdir(tmp_path) == ["report.json"]


def test_interrupted_directory_write_keeps_the_old_directory(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text("old config")
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(d, overwrite=True) as tmp:
            (tmp / "config.json").write_text("new config")
            raise KeyboardInterrupt  # e.g. Ctrl-C before the weights
    assert snapshot(d) == {"config.json": b"old config"}
    assert sorted(os.listdir(tmp_path)) == ["model"]  # no temporary directory or lock left


def test_a_second_writer_is_told_the_directory_is_being_written(tmp_path):
    d = tmp_path / "out"
    entered, release = threading.Event(), threading.Event()

    def first():
        with atomic_directory(d) as tmp:
            (tmp / "a").write_text("1")
            entered.set()
            release.wait(5)

    t = threading.Thread(target=first)
    t.start()
    assert entered.wait(5)
    with pytest.raises(HeadroomError, match="already being written"):
        with atomic_directory(d):
            pass
    release.set()
    t.join()
    assert snapshot(d) == {"a": b"1"}


# ------------------------------------------------------------------------------ the CLI
def test_predictions_never_replace_the_data_file(capsys, model_dir, data_csv):
    before = data_csv.read_bytes()
    for extra in ([], ["--overwrite"]):
        code, out, err = run(capsys, "evaluate", "--model", model_dir, "--data", str(data_csv), "--no-latency",
                             "--predictions", str(data_csv), *extra)
        assert code == 2 and "would overwrite the input" in err and out == ""
    assert data_csv.read_bytes() == before


def test_predictions_refuse_an_existing_file_unless_overwrite(capsys, model_dir, data_csv, tmp_path):
    preds = tmp_path / "preds.jsonl"
    preds.write_text("mine\n")
    base = ["evaluate", "--model", model_dir, "--data", str(data_csv), "--no-latency", "--predictions", str(preds)]
    code, out, err = run(capsys, *base)
    assert code == 2 and "already exists" in err and preds.read_text() == "mine\n"
    code, out, err = run(capsys, *base, "--overwrite")
    assert code == 0, err
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    assert len(rows) == 20 and set(rows[0]) == {"index", "label", "prediction", "logits"}


def test_materialize_refuses_a_non_empty_directory_and_the_source(capsys, model_dir, tmp_path):
    user = tmp_path / "user_dir"
    user.mkdir()
    (user / "config.json").write_text("the user's own")
    (user / "other.safetensors").write_bytes(b"not ours")
    before = snapshot(user)
    code, out, err = run(capsys, "materialize", "--model", model_dir, "--drop-layers", "1", "--out", str(user))
    assert code == 2 and "not empty" in err
    assert snapshot(user) == before
    code, out, err = run(capsys, "materialize", "--model", model_dir, "--drop-layers", "1", "--out", model_dir,
                         "--overwrite")
    assert code == 2 and "would overwrite the input" in err
    # --overwrite replaces the directory whole: no stale file of the old one is counted or kept
    code, out, err = run(capsys, "materialize", "--model", model_dir, "--drop-layers", "1", "--out", str(user),
                         "--overwrite")
    assert code == 0, err
    saved = json.loads(out)
    files = os.listdir(user)
    assert "other.safetensors" not in files and "recipe.json" in files
    assert saved["weights_bytes"] == os.path.getsize(user / "model.safetensors")
    assert json.loads((user / "recipe.json").read_text())["dropped_layers"] == [1]
