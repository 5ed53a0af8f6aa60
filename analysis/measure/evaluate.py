"""Evaluate Recipes on one (model, dataset): metrics, predictions, size and latency.

An `Evaluator` is built once per (loaded model, dataset, device, dtype). It tokenises the data
once into length-bucketed batches, runs the unmodified model once, and keeps what every later
what-if needs:
- the baseline's predictions (for "agreement with the baseline");
- the hidden states entering each layer, per batch (`trace`), so a Recipe whose first change is
  at layer k recomputes only layers k..L-1 — exact, and the reason toggling a head in the last
  layer costs a sixth of a full pass on a 6-layer model. The trace is kept only if it fits in
  `trace_budget_bytes`; otherwise every evaluation runs from the embeddings.
Everything runs under `torch.inference_mode`. `Evaluator.evaluate` is safe to call from several
threads at once: it reads shared state and writes only its own result; the few caches it fills
(kept traces, latency batches) are published under one lock.

An Evaluator is the `EvalContext` (analysis/methods/context.py) the analysis methods run on;
`targets(batch, label_free)` gives their loss targets. An `EvalResult` holds the `Recipe`, a
`SizeReport` and a `Latency` (analysis/measure/latency.py: the model that would run, timed
against the baseline in the same interleaved run); `to_dict()` turns it into the JSON the CLI prints.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from analysis.io.batching import Batch, make_batches
from analysis.io.subsets import align_labels
from analysis.io.text_dataset import TextDataset
from analysis.measure.metrics import compute_metrics
from analysis.errors import HeadroomError
from analysis.io.models import LoadedModel
from analysis.jobs import Progress, check_cancel, report
from analysis.core.recipe import Recipe
from analysis.core.simulate import SimulatedModel, SimulatorCache
from analysis.measure.size import SizeReport, size_report
from analysis.measure.latency import DEFAULT_ROUNDS, Latency, measure_recipe_latency
from analysis.runtime import DEFAULT_BATCH_SIZE, DTYPES



@dataclass
class EvalResult:
    """One Recipe evaluated on the Evaluator's dataset; `to_dict()` is the JSON the CLI prints."""

    recipe: Recipe
    description: str
    mode: str  # "simulated": fake-quantised weights / sliced heads inside Headroom's forward
    metric_name: str
    metric: float | None
    metrics: dict  # accuracy, macro_f1, ... as `compute_metrics` names them (empty without labels)
    loss: float | None
    agreement: float  # share of examples where the prediction equals the baseline's
    num_examples: int
    predictions: np.ndarray = field(repr=False)  # (N,) class ids in dataset order
    logits: np.ndarray = field(repr=False)  # (N, num_labels)
    size: SizeReport  # predicted from the bits (size.size_report)
    latency: Latency | None = None  # measured against the baseline (interleaved), only when asked for
    eval_seconds: float = 0.0
    started_at_layer: int = 0  # incremental evaluation started here (0 = full pass)
    device: str = "cpu"
    dtype: str = "fp32"

    def to_dict(self, with_predictions: bool = False) -> dict:
        nested = {"recipe": self.recipe.to_dict(), "size": self.size.to_dict(),
                  "latency": None if self.latency is None else self.latency.to_dict()}
        d = {f.name: nested.get(f.name, getattr(self, f.name)) for f in dataclasses.fields(self)
             if f.name not in ("predictions", "logits")}
        if with_predictions:
            d["predictions"] = self.predictions.tolist()
        return d


class Evaluator:
    """Fast, repeatable evaluation of Recipes on one model and one dataset."""

    def __init__(
        self,
        loaded: LoadedModel,
        dataset: TextDataset,
        *,
        max_length: int = 128,
        batch_size: int | None = None,
        dtype: str = "fp32",
        trace_budget_bytes: float = 1.5e9,
        incremental: bool = True,
    ):
        if len(dataset) == 0:
            raise HeadroomError("The dataset has no examples to evaluate.")
        if dtype not in DTYPES:
            raise HeadroomError(f"Unknown dtype '{dtype}'; choose fp32, bf16 or fp16.")
        if dtype == "fp16" and loaded.device.type == "cpu":
            raise HeadroomError("fp16 is for CUDA; use bf16 on a CPU.")
        from analysis.measure.limits import check

        check(loaded.device.type, examples=len(dataset), max_length=max_length,
              batch_size=batch_size or DEFAULT_BATCH_SIZE[loaded.device.type])
        self.loaded = loaded
        self.adapter = loaded.adapter
        self.device = loaded.device
        self.dtype_name = dtype
        self.dtype = DTYPES[dtype]
        self.max_length = min(max_length, loaded.max_length)
        self.dataset = align_labels(dataset, loaded.id2label) if dataset.labels is not None else dataset
        self.batch_size = batch_size or DEFAULT_BATCH_SIZE[self.device.type]
        batches = make_batches(self.dataset, loaded.tokenizer, max_length=self.max_length, batch_size=self.batch_size)
        self.num_truncated = batches.num_truncated  # read before the move: the moved list is a plain one
        self.batches = [b.to(self.device) for b in batches]
        self.labels = None if self.dataset.labels is None else np.asarray(self.dataset.labels)
        self.simulators = SimulatorCache(self.adapter)
        self.incremental = incremental
        self.trace_budget_bytes = trace_budget_bytes
        self._lock = threading.Lock()
        self.trace: list[list[torch.Tensor]] | None = None
        self._recipe_traces: OrderedDict[str, tuple] = OrderedDict()
        self._latency_batches: dict[tuple[int, int], Batch] = {}
        self._baseline_signature = Recipe().signature(self.adapter.num_layers)
        self.baseline: EvalResult  # set by _compute_baseline, before anyone can ask
        self._baseline_preds: np.ndarray | None = None
        self._compute_baseline()

    # ------------------------------------------------------------------------------- baseline
    @property
    def sim_dtype(self) -> torch.dtype | None:
        return None if self.dtype == torch.float32 else self.dtype

    def _trace_bytes(self) -> float:
        L, D = self.adapter.num_layers, self.adapter.hidden_size
        elem = torch.finfo(self.dtype).bits // 8
        return sum(b.input_ids.numel() * D * (L + 1) * elem for b in self.batches)

    def simulator(self, recipe: Recipe) -> SimulatedModel:
        """The shared simulated model of `recipe` at this Evaluator's dtype (built under inference
        mode, so not for gradients: a method that needs them builds its own)."""
        return self.simulators.get(recipe, self.sim_dtype)

    def targets(self, batch: Batch, label_free: bool) -> torch.Tensor:
        """(B,) class ids of a batch's examples: the gold labels, or (label-free) the unmodified
        model's predictions, the targets a method takes its loss against."""
        if not label_free and self.labels is None:
            raise HeadroomError("The data has no labels; use label-free mode (the model's own predictions as targets).")
        source = self.baseline.predictions if label_free else self.labels
        ids = batch.example_ids.cpu().numpy()
        return torch.as_tensor(np.asarray(source)[ids], dtype=torch.long, device=self.device)  # (B,)

    @torch.inference_mode()
    def _compute_baseline(self) -> None:
        keep_trace = self.incremental and self._trace_bytes() <= self.trace_budget_bytes
        sim = self.simulator(Recipe())
        logits = [None] * len(self.batches)
        trace = [] if keep_trace else None
        t0 = time.perf_counter()
        for bi, batch in enumerate(self.batches):
            out = sim.forward(batch, output_hidden_states=keep_trace)
            logits[bi] = out.logits
            if keep_trace:
                trace.append(out.hidden_states)
        self.trace = trace
        self._baseline_preds = None
        result = self._collect(Recipe(), logits, time.perf_counter() - t0, started_at=0)
        self._baseline_preds = result.predictions
        result.agreement = 1.0
        self.baseline = result

    @property
    def trace_mb(self) -> float:
        return self._trace_bytes() / 1e6 if self.trace is not None else 0.0

    # ------------------------------------------------------------------------------- evaluate
    @torch.inference_mode()
    def evaluate(
        self, recipe: Recipe, *, latency: bool = False, cancel: threading.Event | None = None, full: bool = False,
        progress: Progress = None,
    ) -> EvalResult:
        """Metrics of `recipe` on the dataset (simulated), optionally with a measured latency.

        `full=True` forces a pass from the embeddings (no cached baseline, no incremental start):
        the reference the incremental path is tested and benchmarked against. `progress(fraction,
        message)` hears every batch, with the layers it runs ("layers 2-5, batch 3 of 8").
        """
        self.adapter.validate(recipe)
        if recipe.is_baseline() and not full:
            result = dataclasses.replace(self.baseline, recipe=recipe)  # the cached full pass
            if latency:
                result.latency = self.measure_latency(recipe)
            return result
        sim = self.simulator(recipe)
        use_trace = self.trace is not None and not full
        signature = recipe.signature(self.adapter.num_layers)
        start, source = self._best_trace(signature) if use_trace else (0, None)
        keep = use_trace and self._can_keep_another_trace()
        t0 = time.perf_counter()
        logits, new_trace = [], []
        n_batches, last = len(self.batches), self.adapter.num_layers - 1
        span = f"layer {start}" if start == last else f"layers {start}-{last}"
        for bi, batch in enumerate(self.batches):
            check_cancel(cancel, "evaluation")
            report(progress, bi / n_batches, f"{span}, batch {bi + 1} of {n_batches}")
            if start > 0:
                out = sim.forward(batch, start_layer=start, hidden=source[bi][start], output_hidden_states=keep)
            else:
                out = sim.forward(batch, output_hidden_states=keep)
            logits.append(out.logits)
            if keep:  # layers before `start` are shared with the source trace, not copied
                new_trace.append((source[bi][:start] if start > 0 else []) + out.hidden_states)
        if keep:
            self._remember_trace(recipe.key(), signature, new_trace)
        report(progress, 1.0, f"{span}, {n_batches} batches done")
        result = self._collect(recipe, logits, time.perf_counter() - t0, started_at=start)
        if latency:
            result.latency = self.measure_latency(recipe)
        return result

    # ------------------------------------------------------------------------------- traces
    # Besides the baseline's, the traces (hidden states entering every layer) of the last few
    # recipes are kept. A new recipe starts from the trace that agrees with it on the most
    # leading layers: after masking heads in layer 0, toggling a head in layer 5 still only
    # recomputes layer 5, because the previous recipe already computed layers 0-4 its way.
    MAX_RECIPE_TRACES = 3

    def _best_trace(self, signature: tuple):
        """(layer to start at, trace to start from), the latest start over the kept traces."""
        with self._lock:
            candidates = [(self._baseline_signature, self.trace)] + [(sig, tr) for sig, tr in self._recipe_traces.values()]
        best = (0, None)
        for sig, trace in candidates:
            k = Recipe.first_difference(signature, sig)
            if k > best[0]:
                best = (k, trace)
        return best

    def _can_keep_another_trace(self) -> bool:
        return (len(self._recipe_traces) + 2) * self._trace_bytes() <= self.trace_budget_bytes

    def _remember_trace(self, key: str, signature: tuple, trace: list) -> None:
        with self._lock:
            self._recipe_traces[key] = (signature, trace)
            self._recipe_traces.move_to_end(key)
            while len(self._recipe_traces) > self.MAX_RECIPE_TRACES:
                self._recipe_traces.popitem(last=False)

    def _collect(self, recipe: Recipe, logits: list[torch.Tensor], seconds: float, started_at: int) -> EvalResult:
        n = len(self.dataset)
        num_labels = logits[0].shape[-1]
        all_logits = np.zeros((n, num_labels), dtype=np.float32)
        for batch, lg in zip(self.batches, logits):
            all_logits[batch.example_ids.cpu().numpy()] = lg.float().cpu().numpy()
        preds = all_logits.argmax(-1)
        metrics, metric, metric_name, loss = {}, None, "accuracy", None
        if self.labels is not None:
            metrics = compute_metrics(self.labels, preds, self.dataset.metric, num_labels)
            metric, metric_name = metrics["metric"], metrics["metric_name"]
            loss = float(F.cross_entropy(torch.from_numpy(all_logits), torch.from_numpy(self.labels).long()))
        agreement = 1.0 if self._baseline_preds is None else float((preds == self._baseline_preds).mean())
        return EvalResult(
            recipe=recipe,
            description=recipe.describe(),
            mode="simulated",
            metric_name=metric_name,
            metric=metric,
            metrics=metrics,
            loss=loss,
            agreement=agreement,
            num_examples=n,
            predictions=preds,
            logits=all_logits,
            size=size_report(self.adapter, recipe),
            eval_seconds=seconds,
            started_at_layer=started_at,
            device=str(self.device),
            dtype=self.dtype_name,
        )

    # ------------------------------------------------------------------------------- latency
    @functools.cached_property
    def typical_seq_len(self) -> int:
        """Median real length of the dataset's examples, rounded up to a multiple of 8."""
        lengths = torch.cat([b.attention_mask.sum(1).cpu() for b in self.batches])
        return int(min(self.max_length, -(-int(lengths.median()) // 8) * 8))

    def latency_batch(self, batch_size: int = 32, seq_len: int = 128) -> Batch:
        """A fixed-shape batch (B, T) of real tokens from the dataset, for timing (one per shape).

        Sessions share the Evaluator: the batch is built outside the lock and published under it,
        and the first one published is the one every caller gets.
        """
        key = (batch_size, seq_len)
        with self._lock:
            cached = self._latency_batches.get(key)
        if cached is not None:
            return cached
        batch = self._build_latency_batch(batch_size, seq_len)
        with self._lock:
            return self._latency_batches.setdefault(key, batch)

    def _build_latency_batch(self, batch_size: int, seq_len: int) -> Batch:
        rows = list(itertools.islice(
            ((b.input_ids[r], b.attention_mask[r]) for b in self.batches for r in range(b.input_ids.shape[0])),
            batch_size))
        pad = self.loaded.tokenizer.pad_token_id or 0
        input_ids = torch.full((batch_size, seq_len), pad, dtype=torch.long, device=self.device)  # (B, T)
        attention_mask = torch.zeros((batch_size, seq_len), dtype=torch.long, device=self.device)  # (B, T)
        for r in range(batch_size):
            src_ids, src_mask = rows[r % len(rows)]
            n = min(seq_len, src_ids.shape[0])
            input_ids[r, :n] = src_ids[:n]
            attention_mask[r, :n] = src_mask[:n]
        return Batch(input_ids=input_ids, attention_mask=attention_mask,
                     token_type_ids=torch.zeros_like(input_ids), example_ids=torch.arange(batch_size))

    def measure_latency(self, recipe: Recipe, *, batch_size: int = 32, seq_len: int | None = None,
                        rounds: int = DEFAULT_ROUNDS) -> Latency:
        """The recipe's latency as a ratio to the baseline timed in the same, interleaved run.

        Timed is the model that would run (analysis/measure/latency.py): the materialized model for
        masked heads and dropped layers, the real int8/bf16 model for 8/16-bit weights; a bits-only
        recipe with other bit-widths gets "fp32 kernels: no speed change" and no number.
        """
        batch = self.latency_batch(batch_size, seq_len or self.typical_seq_len)
        return measure_recipe_latency(self.loaded, recipe, batch, dtype=self.dtype_name, rounds=rounds)
