"""Where and how a model runs: the device, the compute dtype, the default batch size, and predicting.

One rule for devices everywhere (loading, training, benchmarks): "auto" (or nothing) picks CUDA
when a GPU is visible and the CPU otherwise; "cpu" and "cuda[:index]" are taken as asked, and a
CUDA device this machine does not have is refused with one sentence instead of a torch traceback.
"""

from __future__ import annotations

import platform

import numpy as np
import torch

from analysis.errors import HeadroomError

#: compute dtype by the name users type (--dtype, the dashboard's precision choice)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
#: examples per evaluation batch by device type: a GPU wants wide batches, a CPU gains little past 64
DEFAULT_BATCH_SIZE = {"cpu": 64, "cuda": 512}


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The torch device for `device` ("auto", "cpu", "cuda", "cuda:1", a torch.device or None = auto)."""
    if device is None or str(device).strip().lower() in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(str(device).strip().lower())
    except (RuntimeError, ValueError):  # torch's own message lists a dozen device types
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise HeadroomError(f"Unknown device '{device}'; use cpu, cuda or auto.")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise HeadroomError(f"Device '{device}' was asked for but no CUDA GPU is visible on this machine; "
                            f"use cpu or auto.")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise HeadroomError(f"Device '{device}' was asked for but this machine has {torch.cuda.device_count()} "
                            f"CUDA GPU(s); use cuda:0 to cuda:{torch.cuda.device_count() - 1}.")
    return dev


def device_name(device: str | torch.device) -> str:
    """What the device is, for a result's label: the GPU's name, or the CPU and its thread count."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return f"{torch.cuda.get_device_name(dev)} (CUDA {torch.version.cuda}, torch {torch.__version__})"
    threads = torch.get_num_threads()
    cpu = platform.processor() or platform.machine() or "unknown"
    return f"CPU ({cpu}), {threads} thread{'s' if threads != 1 else ''} (torch {torch.__version__})"


# no_grad, not inference_mode: training scores its holdout between epochs and then trains the same
# model on, and a tensor a module cached under inference_mode could not take part in backward
@torch.no_grad()
def predict(model: torch.nn.Module, batches, num_examples: int, device: torch.device | None = None) -> np.ndarray:
    """Arg-max class of a HF classifier over `batches`, in dataset order (each Batch moved to `device` if given)."""
    preds = np.zeros(num_examples, dtype=np.int64)
    for batch in batches:
        if device is not None:
            batch = batch.to(device)
        logits = model(**batch.model_inputs()).logits  # (B, num_labels)
        preds[batch.example_ids.cpu().numpy()] = logits.float().argmax(-1).cpu().numpy()
    return preds
