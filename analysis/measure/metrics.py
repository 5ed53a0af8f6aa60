"""Scores of predictions against labels: accuracy, macro-F1, binary F1 and Matthews correlation.

Computed from one confusion matrix in numpy (no scikit-learn needed; a test checks against it).
"""

import numpy as np

from analysis.errors import HeadroomError


def compute_metrics(labels, preds, metric: str, num_labels: int) -> dict:
    """Accuracy and macro-F1 always; binary F1 of class 1 for "f1", Matthews correlation for "matthews"."""
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    p = np.asarray(preds, dtype=np.int64).reshape(-1)
    if len(y) != len(p) or len(y) == 0:
        raise ValueError(f"compute_metrics needs equally many labels and predictions (>0), got {len(y)} and {len(p)}")
    if metric not in ("accuracy", "f1", "matthews"):
        raise HeadroomError(f"Unknown metric '{metric}'; use accuracy, f1 or matthews.")
    k = max(int(num_labels), int(y.max()) + 1, int(p.max()) + 1)
    confusion = np.bincount(y * k + p, minlength=k * k).reshape(k, k).astype(np.float64)  # (true, pred)
    tp, true_count, pred_count = np.diag(confusion), confusion.sum(1), confusion.sum(0)
    f1 = _safe_div(2 * tp, true_count + pred_count)
    present = (true_count + pred_count) > 0  # classes absent from both labels and preds do not count
    out = {"accuracy": float(tp.sum() / len(y)), "macro_f1": float(f1[present].mean()), "num_examples": int(len(y))}
    if metric == "f1":
        out["f1"] = float(f1[1]) if k > 1 else 0.0
    if metric == "matthews":
        # Gorodkin's multi-class MCC (equals the usual binary MCC for two classes)
        s, c = float(len(y)), float(tp.sum())
        denom = np.sqrt((s * s - pred_count @ pred_count) * (s * s - true_count @ true_count))
        out["matthews"] = float((c * s - true_count @ pred_count) / denom) if denom > 0 else 0.0
    out["metric"], out["metric_name"] = out[metric], metric
    return out


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a), where=b > 0)
