"""Loading a model directory: an incomplete or corrupt one is refused with one sentence, never scored."""

import json
import shutil
from pathlib import Path

import pytest

from analysis.cli import main
from analysis.io.models import ASSETS


@pytest.fixture(scope="module")
def good_dir(model_dir):
    return Path(model_dir)


def broken(good_dir, tmp_path, how):
    d = tmp_path / how
    shutil.copytree(good_dir, d)
    weights = d / "model.safetensors"
    if how == "no-tokenizer":
        for f in d.iterdir():
            if f.name.startswith(("tokenizer", "vocab", "special_tokens")):
                f.unlink()
    elif how == "truncated":
        data = weights.read_bytes()
        weights.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        weights.write_bytes(b"")
    elif how == "garbage":
        weights.write_bytes(b"not a safetensors file " * 20)
    elif how in ("labels", "hidden"):
        config = json.loads((d / "config.json").read_text())
        if how == "labels":
            config["id2label"] = {str(i): f"L{i}" for i in range(5)}
            config["label2id"] = {f"L{i}": i for i in range(5)}
        else:
            config["hidden_size"] = 64
        (d / "config.json").write_text(json.dumps(config))
    return d


@pytest.mark.parametrize("how, says", [
    ("no-tokenizer", "no tokenizer files"),
    ("truncated", "not a readable safetensors file"),
    ("empty", "not a readable safetensors file"),
    ("garbage", "not a readable safetensors file"),
    ("labels", "do not match its config.json: classifier"),
    ("hidden", "do not match its config.json"),
])
def test_broken_directory_gets_one_sentence_and_status_2(capsys, good_dir, tmp_path, how, says):
    d = broken(good_dir, tmp_path, how)
    code = main(["info", "--model", str(d)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert says in err and err.count("\n") == 1, err


def test_the_demo_storage_directory_points_to_the_demo_name(capsys):
    code = main(["info", "--model", str(ASSETS / "demo-sst2")])
    out, err = capsys.readouterr()
    assert code == 2 and "--model demo-sst2" in err


def test_the_complete_directory_loads(capsys, good_dir):
    code = main(["info", "--model", str(good_dir)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["num_layers"] == 3
