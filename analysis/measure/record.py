"""Writing a measurement to JSON with the facts of the machine it ran on, the same way for every benchmark.

A measured number means little without its conditions: which device, how many torch threads,
how busy the machine was (other processes on a shared machine slow every variant), which torch.
`write_json(path, payload, device=...)` adds them once, under "machine", to whatever the
benchmark measured, creates the folder, and writes plain JSON (numpy numbers become numbers).
"""

from __future__ import annotations

import datetime
import json
import os
import platform

import numpy as np
import torch

from analysis.runtime import device_name


def machine_facts(device: str | torch.device | None = None) -> dict:
    """Device, its name, torch threads and version, CPU count and load average, now."""
    dev = torch.device(device if device is not None else "cpu")
    load = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return {
        "device": str(dev),
        "device_name": device_name(dev),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15min": load,
        "python": platform.python_version(),
        "written_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _plain(value):
    """json.dump's fallback for the non-JSON values benchmarks hold: numpy scalars and arrays, devices."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, torch.device):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_json(path: str | os.PathLike, payload: dict, *, device: str | torch.device | None = None) -> dict:
    """Write `payload` plus {"machine": machine_facts(device)} to `path` (folders created); return what was written."""
    if "machine" in payload:
        raise ValueError("the payload already has a 'machine' key; write_json adds it")
    written = {**payload, "machine": machine_facts(device)}
    path = os.path.abspath(os.fspath(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(written, f, indent=2, default=_plain)
        f.write("\n")
    return written
