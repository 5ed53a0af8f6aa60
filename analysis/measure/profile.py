"""Profile a model under a Recipe: where parameters, bytes, FLOPs and time go, per component.

For each piece of the forward (`flops.COMPONENTS`: embeddings, Q/K/V, attention scores+softmax+
context, W_O, LayerNorms, FFN in, FFN out, classifier), per layer:
- parameters and bytes at the recipe's bits (the same accounting as `size.size_report`: quantised
  matrices pay for their scales; biases, LayerNorms and the head stay fp32; a test checks the sums);
- FLOPs, counted analytically (`flops.py`; a multiply-add is 2 FLOPs);
- MEASURED milliseconds.

How time is measured, and why this way. The profiled forward IS Headroom's forward
(`SimulatedModel.forward` / `simulate.encoder_layer`) with a `Stopwatch` passed as its `timer`:
each component's block runs inside `with watch(component, layer):` (a test checks the output is
the same as untimed). On CUDA each reading synchronises first, so a block's time is the wall
time it adds. We chose this over torch.profiler because (1) the pieces are exactly the components
above — the attention core is one fused `scaled_dot_product_attention` call, which
record_function ranges would attribute the same way but at a higher per-op cost; (2) it needs no
trace parsing and works the same on CPU and CUDA; (3) the sum of the blocks can be checked
against the whole forward timed *without* a timer: `coverage` = sum of components / whole forward.
On CPU (synchronous kernels) coverage is close to 1; on CUDA a synchronised block serialises
launch and execution, so at small shapes coverage exceeds 1 (that excess is the launch latency a
free-running GPU hides). Every time is a median over `repeats` runs after warm-up; whole and
profiled runs alternate, so drift hits both alike (`stopwatch.time_pair`).

The materialized model is profiled beside it (`profile_materialized.py`: hooks on a private
copy); the report is `profile_report.py`, sweeps over shapes `profile_sweeps.py`, and the
course's claims checked against a report `observations.py`.
"""

from __future__ import annotations

import torch
from torch import nn

from analysis.core.adapters import Adapter
from analysis.core.recipe import Recipe
from analysis.core.simulate import simulate
from analysis.errors import HeadroomError
from analysis.measure.profile_materialized import profile_materialized
from analysis.measure.profile_report import ProfileReport, component_rows
from analysis.measure.timing import synthetic_batch
from analysis.runtime import DTYPES
from analysis.measure.stopwatch import load_average, peak_memory_mb, time_pair


def as_adapter(model_like) -> tuple[Adapter, str]:
    """(adapter, name) of a LoadedModel, an Adapter or a HF model."""
    if isinstance(model_like, Adapter):
        return model_like, type(model_like.model).__name__
    if isinstance(model_like, nn.Module):
        return Adapter(model_like), type(model_like).__name__
    return model_like.adapter, getattr(model_like, "name", "model")  # a LoadedModel


def max_seq_len(adapter: Adapter) -> int:
    """The longest sequence the model's position embeddings take (RoBERTa reserves two)."""
    return getattr(adapter.model.config, "max_position_embeddings", 512) - (2 if adapter.family == "roberta" else 0)


def _check_shape(adapter: Adapter, batch_size: int, seq_len: int, repeats: int, device: torch.device) -> None:
    from analysis.measure.limits import limits_for

    limit, max_batch = max_seq_len(adapter), limits_for(device.type).max_batch_size
    if not 1 <= seq_len <= limit:
        raise HeadroomError(f"Sequence length must be between 1 and {limit} for this model (got {seq_len}).")
    if not 1 <= batch_size <= max_batch:
        raise HeadroomError(f"Batch size must be between 1 and {max_batch} on {device.type} (got {batch_size}).")
    if repeats < 1:
        raise HeadroomError("Repeats must be a positive number.")


def _device_of(adapter: Adapter, device) -> torch.device:
    own = next(adapter.model.parameters()).device
    if device is not None and torch.device(device).type != own.type:
        raise HeadroomError(f"The model is loaded on {own}, not {device}; load it on {device} to profile there.")
    return own


def profile_model(model_like, recipe: Recipe | None = None, batch_size: int = 32, seq_len: int = 128,
                  device=None, repeats: int = 5, *, warmup: int | None = None, dtype: str = "fp32",
                  materialized: bool = True) -> ProfileReport:
    """Parameters, bytes, FLOPs and measured ms per component for a LoadedModel / Adapter / HF model.

    Times Headroom's forward with the recipe applied (`simulate`) and, when `materialized`, the
    real materialized model side by side (`report.materialized`, `report.side_by_side()`).
    """
    recipe = recipe or Recipe()
    adapter, name = as_adapter(model_like)
    adapter.validate(recipe)
    if dtype not in DTYPES:
        raise HeadroomError(f"Unknown dtype '{dtype}'; choose fp32, bf16 or fp16.")
    dev = _device_of(adapter, device)
    _check_shape(adapter, batch_size, seq_len, repeats, dev)
    warmup = (3 if dev.type == "cuda" else 1) if warmup is None else warmup  # CUDA: cuBLAS/kernel selection first
    if dtype == "fp16" and dev.type == "cpu":
        raise HeadroomError("fp16 is for CUDA; use bf16 on a CPU.")
    sim = simulate(adapter, recipe, None if dtype == "fp32" else DTYPES[dtype])
    batch = synthetic_batch(adapter.word_embeddings.weight.shape[0], batch_size, seq_len, dev)
    # The same forward, untimed and timed: the stopwatch is the forward's `timer`.
    forward_ms, ms = time_pair(lambda: sim.forward(batch), lambda watch: sim.forward(batch, timer=watch),
                               dev, repeats, warmup)
    report = ProfileReport(
        model=name, mode="simulated", recipe=recipe.to_dict(), device=str(dev), threads=torch.get_num_threads(),
        dtype=dtype, batch_size=batch_size, seq_len=seq_len, repeats=repeats, forward_ms=forward_ms,
        rows=component_rows(adapter, recipe, batch_size, seq_len, ms),
        peak_memory_mb=peak_memory_mb(lambda: sim.forward(batch), dev), load_average=load_average(dev),
        how="Headroom's flat forward with the recipe applied, each component's block timed by a stopwatch "
            "(CUDA-synchronised), medians over repeats; random token ids, no padding",
        note="parameters/bytes/FLOPs are counted; ms are measured"
             + ("; fake-quantised weights run fp32 kernels, so bits change bytes here, not time"
                if set(recipe.layer_bits(adapter.num_layers)) != {32} or recipe.embedding_bits != 32 else ""),
    )
    if materialized:
        try:
            report.materialized = profile_materialized(adapter.model, recipe, batch, repeats=repeats,
                                                       warmup=warmup, dtype=dtype, name=name)
        except HeadroomError as e:  # e.g. an ALBERT recipe that differs per layer cannot be made real
            report.note += f"; materialized model not profiled: {e}"
    return report
