"""What an analysis method may use of the model and data it runs on: `EvalContext`.

The methods (importance, heads, layers, sensitivity) never build their own model or batches:
they run on an evaluation context, and `analysis.measure.evaluate.Evaluator` is the one the
CLI and the dashboard pass. The Protocol lists exactly the members the methods read
(tests/test_context.py checks both ways: every method stays inside it, and every member is used),
so a new method that needs more of the Evaluator says so here first.

Targets: a method trained against "the labels" uses `ctx.targets(batch, label_free)`, the gold
labels of the batch's examples, or, label-free, the unmodified model's predictions (for data
without labels). `resolve_label_free` picks that mode when the caller leaves it open.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import torch

from analysis.errors import HeadroomError

if TYPE_CHECKING:
    from analysis.core.adapters import Adapter
    from analysis.core.recipe import Recipe
    from analysis.core.simulate import SimulatedModel
    from analysis.io.batching import Batch
    from analysis.io.text_dataset import TextDataset
    from analysis.io.models import LoadedModel
    from analysis.measure.evaluate import EvalResult


@runtime_checkable
class EvalContext(Protocol):
    """One (model, dataset, device, dtype), tokenised and with its baseline evaluated."""

    @property
    def adapter(self) -> Adapter:
        """The model's layers, heads and matrices, architecture-independent."""

    @property
    def loaded(self) -> LoadedModel:
        """The loaded model: its name and tokenizer (attention statistics need the special tokens)."""

    @property
    def dataset(self) -> TextDataset:
        """The examples, labels aligned to the model's label ids; `len()` and `.name` are reported."""

    @property
    def batches(self) -> list[Batch]:
        """The dataset tokenised once, length-bucketed, on `device`; `example_ids` map rows back."""

    @property
    def labels(self) -> np.ndarray | None:
        """(N,) gold label ids in dataset order, or None for data without labels."""

    @property
    def baseline(self) -> EvalResult:
        """The unmodified model's result: metric, metric name, and predictions (label-free targets)."""

    @property
    def device(self) -> torch.device:
        """Where the batches live and the methods' own tensors (gates, targets) go."""

    @property
    def sim_dtype(self) -> torch.dtype | None:
        """Compute dtype of a simulated forward (None = the model's fp32)."""

    @property
    def trace(self) -> list[list[torch.Tensor]] | None:
        """Per batch, the baseline's hidden states entering each layer and leaving the last (or None)."""

    def simulator(self, recipe: Recipe) -> SimulatedModel:
        """The shared, inference-mode simulated model of `recipe` (not for gradients)."""

    def evaluate(self, recipe: Recipe, *, cancel: threading.Event | None = None) -> EvalResult:
        """Metrics of `recipe` on the dataset (simulated, incremental from the first changed layer)."""

    def targets(self, batch: Batch, label_free: bool) -> torch.Tensor:
        """(B,) class ids the loss is taken against: gold labels, or the baseline's predictions."""


def resolve_label_free(ctx: EvalContext, label_free: bool | None) -> bool:
    """None = automatic: label-free exactly when the data has no labels."""
    if label_free is None:
        return ctx.labels is None
    if not label_free and ctx.labels is None:
        raise HeadroomError("The data has no labels; use label-free mode (the model's own predictions as targets).")
    return bool(label_free)
