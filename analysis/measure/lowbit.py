"""Real low-precision models: int8 kernels on CPU, bf16 on CPU, fp16/bf16 on CUDA.

Where `quantize.fake_quantize` only *simulates* integer weights in fp32 maths, this module builds a
model that really runs in lower precision, then measures it: latency of the HF forward on a fixed
(batch 32, sequence 128) batch, the size of its serialized state dict in bytes, and accuracy on
an Evaluator's batches. Numbers from here are "measured" and name their device and threads.

int8 on CPU, two backends (Zafrir et al.'s Q8BERT scheme: int8 weights, dynamic int8 activations,
as in the PyTorch BERT dynamic-quantisation tutorial):
- "torchao": `torchao.quantization.quantize_(model, Int8DynamicActivationInt8WeightConfig())`,
  the maintained path. On torch 2.13 CPU it runs, but (measured on a 2-core x86 CPU, MiniLM-L6,
  batch 32 x 128) it was only ~1.2x faster than fp32 on one thread and *slower* on two;
- "torch.ao": `torch.ao.quantization.quantize_dynamic` (fbgemm int8 GEMMs). Deprecated by PyTorch
  in favour of torchao, but ~2x faster here.
"auto" chooses by a fixed rule, never by timing: torch.ao on a CPU (the faster kernels measured
here), torchao on CUDA (torch.ao's dynamic int8 is CPU-only). The same machine and device always
build the same model, so its accuracy does not depend on machine noise; the result names the
backend it used and why. (It used to time torchao against fp32 with 3 repeats and keep the
winner, so the model built, and its accuracy, changed with the load.)
Only nn.Linear layers are quantised (embeddings, LayerNorms stay fp32), as in both references.
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from analysis.errors import HeadroomError
from analysis.measure.timing import synthetic_batch, time_forward
from analysis.runtime import predict

MODES = ("fp32", "int8", "bf16", "fp16")
BACKENDS = ("auto", "torchao", "torch.ao")
TORCH_AO_DEPRECATION = ("torch.ao.quantization.quantize_dynamic is deprecated by PyTorch (migrating to torchao); "
                        "it is used on CPU because torchao's int8 path gave no CPU speed-up here")
AUTO_RULE = "auto: torch.ao on CPU (faster fbgemm int8 kernels here), torchao on CUDA (torch.ao is CPU-only)"


def auto_backend(device: torch.device | str) -> str:
    """The int8 backend "auto" means on `device`: a rule, so the model built is deterministic."""
    return "torch.ao" if torch.device(device).type == "cpu" else "torchao"


@dataclass
class RealQuantResult:
    """A really quantised model and what was measured on it."""

    mode: str  # fp32 | int8 | bf16 | fp16
    backend: str  # what built it: "torchao Int8DynamicActivationInt8WeightConfig", ...
    latency: dict  # ms_per_batch, batch_size, seq_len, device, threads, repeats
    serialized_bytes: int
    metric_name: str | None = None
    metric: float | None = None
    agreement_with_fp32: float | None = None  # share of examples with the fp32 model's argmax
    num_examples: int = 0
    notes: list[str] = field(default_factory=list)
    model: nn.Module | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("model")
        d["serialized_mb"] = round(self.serialized_bytes / 1e6, 3)
        d["what"] = "measured: real low-precision kernels (not simulated)"
        return d


# ----------------------------------------------------------------------------------- building
def _torchao_int8(model: nn.Module) -> nn.Module:
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    q = copy.deepcopy(model).float().eval()
    quantize_(q, Int8DynamicActivationInt8WeightConfig())
    return q


def _torch_ao_int8(model: nn.Module) -> nn.Module:
    q = copy.deepcopy(model).float().eval().cpu()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deprecation is reported in the result's notes instead
        return torch.ao.quantization.quantize_dynamic(q, {nn.Linear}, dtype=torch.qint8)


def build(model: nn.Module, mode: str, *, backend: str = "auto",
          device: torch.device | str = "cpu") -> tuple[nn.Module, str, list[str]]:
    """Return (new model, backend description, notes). `model` itself is never modified.

    `backend="auto"` is resolved by `auto_backend(device)`: a rule, no timing decides it.
    """
    device = torch.device(device)
    if mode not in MODES:
        raise HeadroomError(f"Unknown real precision '{mode}'; choose from {', '.join(MODES)}.")
    if backend not in BACKENDS:
        raise HeadroomError(f"Unknown int8 backend '{backend}'; choose from {', '.join(BACKENDS)}.")
    notes: list[str] = []
    if mode == "fp32":
        return copy.deepcopy(model).float().to(device).eval(), "fp32 (reference)", notes
    if mode in ("bf16", "fp16"):
        if mode == "fp16" and device.type == "cpu":
            raise HeadroomError("fp16 kernels are for CUDA; use --real bf16 on a CPU.")
        dtype = torch.bfloat16 if mode == "bf16" else torch.float16
        return copy.deepcopy(model).to(device=device, dtype=dtype).eval(), f"{mode} weights and activations", notes
    # int8
    if backend == "auto":
        backend = auto_backend(device)
        notes.append(AUTO_RULE)
    if device.type != "cpu" and backend == "torch.ao":
        raise HeadroomError("torch.ao dynamic int8 runs on CPU only; use --device cpu or --int8-backend torchao.")
    if backend == "torchao":
        try:
            q = _torchao_int8(model.to(device) if device.type != "cpu" else model)
        except Exception as e:  # torchao kernels missing for this device/build
            raise HeadroomError(f"torchao int8 quantisation failed here ({type(e).__name__}: {e}).") from None
        return q, "torchao Int8DynamicActivationInt8WeightConfig", notes
    notes.append(TORCH_AO_DEPRECATION)
    return _torch_ao_int8(model), "torch.ao.quantization.quantize_dynamic (qint8, fbgemm; deprecated)", notes


# ----------------------------------------------------------------------------------- measuring
def serialized_bytes(model: nn.Module) -> int:
    """Bytes of the model's state dict on disk: safetensors for plain tensors, torch.save otherwise.

    Quantised tensor subclasses (torchao) and packed params (torch.ao) are not plain tensors, so
    those go through torch.save, which stores them as they are.
    """
    state = model.state_dict()
    with tempfile.TemporaryDirectory() as d:
        plain = all(type(v) is torch.Tensor and v.layout == torch.strided for v in state.values())  # CSR: torch.save
        path = os.path.join(d, "weights.safetensors" if plain else "weights.pt")
        if plain:
            from safetensors.torch import save_file

            # Tied/shared storage is not allowed in safetensors: clone each tensor.
            save_file({k: v.detach().contiguous().clone() for k, v in state.items()}, path)
        else:
            torch.save(state, path)
        return os.path.getsize(path)


def real_quantize(
    model: nn.Module,
    mode: str,
    *,
    evaluator=None,
    backend: str = "auto",
    device: str | torch.device = "cpu",
    batch_size: int = 32,
    seq_len: int = 128,
    repeats: int = 5,
    vocab_size: int | None = None,
) -> RealQuantResult:
    """Build the real `mode` model, then measure latency, serialized size and (with an evaluator) accuracy.

    The latency batch is (batch_size, seq_len) of the evaluator's real tokens (padded to seq_len,
    so the shape is fixed) or random ids without one.
    """
    device = torch.device(device)
    if evaluator is not None:
        batch = evaluator.latency_batch(batch_size, seq_len).to(device)
    else:
        vocab = vocab_size or getattr(model.config, "vocab_size", 30522)
        batch = synthetic_batch(vocab, batch_size, seq_len, device)
    t0 = time.perf_counter()
    q, backend_used, notes = build(model, mode, backend=backend, device=device)
    build_s = time.perf_counter() - t0
    ms = time_forward(q, batch, repeats=repeats) * 1000
    result = RealQuantResult(
        mode=mode, backend=backend_used, serialized_bytes=serialized_bytes(q), notes=notes, model=q,
        latency={"ms_per_batch": round(ms, 2), "batch_size": batch_size, "seq_len": seq_len,
                 "device": str(device), "threads": torch.get_num_threads(), "repeats": repeats,
                 "build_seconds": round(build_s, 2)},
    )
    if evaluator is not None:
        from analysis.measure.metrics import compute_metrics

        batches = [b.to(device) for b in evaluator.batches]
        n = len(evaluator.dataset)
        preds = predict(q, batches, n)
        result.num_examples = n
        result.agreement_with_fp32 = float((preds == evaluator.baseline.predictions).mean())
        if evaluator.labels is not None:
            m = compute_metrics(evaluator.labels, preds, evaluator.dataset.metric, evaluator.loaded.num_labels)
            result.metric_name, result.metric = m["metric_name"], m["metric"]
    return result
