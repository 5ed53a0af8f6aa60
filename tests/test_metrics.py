"""analysis.measure.metrics: accuracy, macro-F1, binary F1 and Matthews correlation, by hand and against sklearn."""

import numpy as np
import pytest

from analysis.measure.metrics import compute_metrics


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
