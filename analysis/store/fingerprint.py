"""Fingerprints: what identifies a model and a dataset in the results store.

A name is not enough ("demo" after re-training is another model; "my.csv" edited is other data),
so a row keeps a hash of what was evaluated:
- model: SHA-256 of the config (sorted JSON, without transformers' version field) and every
  tensor of the state dict, in key order, as raw bytes — two loads of the same weights agree,
  a single changed weight does not;
- data: SHA-256 of the dataset's name, texts, pairs, labels, label names and source indices, plus
  the tokenisation length — the same subset of the same file gives the same fingerprint.
Both are cut to 16 hex digits (64 bits) for display; collisions are not a practical concern here.
"""

from __future__ import annotations

import hashlib
import json

import torch

LENGTH = 16
_ATTR = "_headroom_fingerprint"


def model_fingerprint(model: torch.nn.Module) -> str:
    """Hash of config + weights; cached on the module (weights are never changed in place here)."""
    cached = getattr(model, _ATTR, None)
    if cached is not None:
        return cached
    h = hashlib.sha256()
    config = model.config.to_dict()
    config.pop("transformers_version", None)
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            h.update(name.encode())
            t = tensor.detach().cpu().contiguous()
            h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    value = h.hexdigest()[:LENGTH]
    object.__setattr__(model, _ATTR, value)  # nn.Module.__setattr__ would treat it as state
    return value


def data_fingerprint(dataset, max_length: int | None = None) -> str:
    h = hashlib.sha256()
    payload = {"name": dataset.name, "labels": dataset.labels, "label_names": list(dataset.label_names),
               "indices": list(dataset.indices), "metric": dataset.metric, "max_length": max_length}
    h.update(json.dumps(payload, sort_keys=True, default=int).encode())
    for text in dataset.texts:
        h.update(text.encode("utf-8", "surrogatepass") + b"\x00")
    for pair in dataset.text_pairs or []:
        h.update(pair.encode("utf-8", "surrogatepass") + b"\x01")
    return h.hexdigest()[:LENGTH]
