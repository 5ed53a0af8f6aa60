"""analysis.io.subsets: stratified subsets and aligning data labels to the model's."""

import numpy as np
import pytest

from analysis.errors import HeadroomError
from analysis.io.subsets import align_labels, stratified_subset
from analysis.io.text_dataset import TextDataset


def toy(labels: list[int], names=("a", "b", "c")) -> TextDataset:
    return TextDataset(name="toy", texts=[f"text {i}" for i in range(len(labels))], text_pairs=None,
                       labels=list(labels), label_names=list(names), metric="accuracy",
                       indices=list(range(100, 100 + len(labels))))


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
