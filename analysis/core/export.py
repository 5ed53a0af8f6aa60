"""Export a (materialized) classifier to ONNX, optionally ONNX Runtime dynamic int8, and run it.

ONNX Runtime is where many engineers serve a BERT classifier on CPU, so it is Headroom's
deployment backend: `export_onnx` writes the real model a Recipe produced (heads sliced out —
uneven heads per layer included, layers removed) as `model.onnx`, and with `int8=True` also
`model.int8.onnx`, ONNX Runtime's dynamic quantisation (int8 weights, activations quantised per
batch at run time; the embedding Gather is quantised too, which torch's dynamic int8 leaves fp32).
Before the directory is published, the exported graph is run on a padded check batch and its
logits compared with the torch model's (`max_abs_diff`); a graph that disagrees is not written.

Exporter: torch's TorchScript-based `torch.onnx.export(dynamo=False)`. The dynamo exporter
gives the same graph (max |logit| difference 5e-7 on a tiny pruned BERT, checked) but took 27 s
against 2 s for the same tiny model on this 2-core CPU, and exports are interactive here.

`OnnxClassifier` wraps an `onnxruntime.InferenceSession` so it is called like a HF model on a
`Batch`'s inputs and returns logits: the Evaluator's predictions and the latency comparisons
treat it like any other backend.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from analysis.core.adapters import Adapter
from analysis.errors import HeadroomError

OPSET = 17
#: families whose embeddings take token_type_ids (segment A/B); the others ignore them
TOKEN_TYPE_FAMILIES = ("bert", "electra", "albert")
FP32_FILE, INT8_FILE = "model.onnx", "model.int8.onnx"
INT8_PER_CHANNEL_FILE = "model.int8-per-channel.onnx"  # one int8 range per weight column
#: logits of the fp32 graph must match torch's to this (float rounding only)
FP32_TOLERANCE = 1e-3


def _require_onnxruntime():
    try:
        import onnxruntime  # noqa: F401  (only checks it is installed)
    except ImportError:
        raise HeadroomError("ONNX export needs onnx and onnxruntime; run pip install -r requirements.txt.") from None


def input_names(model: nn.Module) -> list[str]:
    names = ["input_ids", "attention_mask"]
    if Adapter(model).model_type in TOKEN_TYPE_FAMILIES:
        names.append("token_type_ids")
    return names


class _LogitsOnly(nn.Module):
    """The HF classifier with positional inputs and one output, as ONNX wants it."""

    def __init__(self, model: nn.Module, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *inputs):
        return self.model(**dict(zip(self.names, inputs))).logits


def check_batch(vocab_size: int, batch_size: int = 3, seq_len: int = 19, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random real-vocabulary ids with padding in every row but the first: exercises the mask."""
    g = torch.Generator().manual_seed(seed)
    low = 1000 if vocab_size > 2000 else 5
    ids = torch.randint(low, vocab_size, (batch_size, seq_len), generator=g)  # (B, T)
    mask = torch.ones_like(ids)
    for b in range(1, batch_size):
        mask[b, seq_len - 3 * b:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


@dataclass
class OnnxExport:
    """What `export_onnx` wrote and checked."""

    dir: str
    files: dict[str, int]  # file name -> bytes on disk
    max_abs_diff_fp32: float  # ORT fp32 logits vs torch on `check_batch` (3 padded random sequences)
    max_abs_diff_int8: float | None = None  # ORT int8 vs torch fp32 there: quantisation error, not a bug;
    #                                         accuracy on real data is measured by the caller, not here
    max_abs_diff_int8_per_channel: float | None = None
    opset: int = OPSET
    exporter: str = "torch.onnx.export (TorchScript)"
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def export_onnx(model: nn.Module, tokenizer, out_dir: str | os.PathLike, *, int8: bool = False, recipe=None,
                overwrite: bool = False, inputs: tuple = (), per_channel: bool = False) -> OnnxExport:
    """Write `model` (eval mode, fp32, CPU) as ONNX into a new directory, checked against torch.

    `int8`: also ONNX Runtime's dynamic int8 model (one range per weight matrix); `per_channel`: also
    the same with one range per weight column (`model.int8-per-channel.onnx`): more accurate, and
    its speed differs by kernel — measure it (`headroom backends`)."""
    from analysis.io.outputs import atomic_directory

    _require_onnxruntime()
    t0 = time.perf_counter()
    model = model.float().cpu().eval()
    names = input_names(model)
    sample = check_batch(model.config.vocab_size)
    args = tuple(sample[n] for n in names)
    dynamic = {n: {0: "batch", 1: "sequence"} for n in names} | {"logits": {0: "batch"}}
    reference = model(**{n: sample[n] for n in names}).logits.numpy()  # (B, num_labels)
    with atomic_directory(out_dir, overwrite=overwrite, inputs=inputs, what="ONNX export directory") as tmp:
        fp32_path = tmp / FP32_FILE
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript tracer's notes about Python control flow
            # .eval() on the wrapper too: export restores the wrapper's training flag afterwards, and a
            # fresh nn.Module is in training mode, which would switch the model's dropout back on.
            torch.onnx.export(_LogitsOnly(model, names).eval(), args, str(fp32_path), input_names=names,
                              output_names=["logits"], dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)
        diff = float(np.abs(OnnxClassifier(fp32_path).logits(sample) - reference).max())
        if not diff <= FP32_TOLERANCE:
            raise HeadroomError(f"The exported ONNX graph disagrees with the torch model (max |logit| difference "
                                f"{diff:.2g}); nothing was written.")
        result = OnnxExport(dir=str(out_dir), files={}, max_abs_diff_fp32=diff)
        if int8:
            result.max_abs_diff_int8 = _quantize_int8(fp32_path, tmp / INT8_FILE, sample, reference, per_channel=False)
            result.notes.append("int8: onnxruntime.quantization.quantize_dynamic (QInt8 weights, dynamic "
                                "activations; MatMul and Gather quantised)")
        if per_channel:
            result.max_abs_diff_int8_per_channel = _quantize_int8(fp32_path, tmp / INT8_PER_CHANNEL_FILE, sample,
                                                                  reference, per_channel=True)
            result.notes.append("int8 per-channel: quantize_dynamic(per_channel=True), one range per weight column")
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        model.config.save_pretrained(tmp)  # labels, sizes: what a server needs beside the graph
        if recipe is not None:
            (tmp / "recipe.json").write_text(recipe.to_json(), encoding="utf-8")
        result.seconds = round(time.perf_counter() - t0, 2)
        result.files = {f.name: f.stat().st_size for f in sorted(tmp.iterdir()) if f.suffix == ".onnx"}
        (tmp / "headroom_export.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    return result


def _quantize_int8(fp32_path: Path, out: Path, sample: dict, reference: np.ndarray, *, per_channel: bool) -> float:
    """ONNX Runtime's dynamic int8 of `fp32_path` into `out`; its max |logit| difference from torch on `sample`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(dir=out.parent) as scratch:
        source = fp32_path
        copies = _unshared(fp32_path, Path(scratch) / "unshared.onnx")
        if copies:
            source = Path(scratch) / "unshared.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(str(source), str(out), weight_type=QuantType.QInt8, per_channel=per_channel)
    if copies:
        _share_identical(out)
    return float(np.abs(OnnxClassifier(out).logits(sample) - reference).max())


def _unshared(path: Path, out: Path) -> int:
    """Give every extra consumer of a shared weight initializer (cross-layer sharing, ALBERT) its own copy.

    ONNX Runtime's quantize_dynamic quantises a weight for one of its MatMuls and leaves the others on
    the fp32 original, so a shared model's int8 file would run half its layers in fp32 and be larger
    than the unshared one. With a copy per use every MatMul is quantised; `_share_identical` then folds
    the identical int8 copies back into one. Returns the copies made (0: nothing shared, `out` unwritten)."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    outputs = {o.name for o in graph.output}
    # the torch exporter hands a tied weight to its other users through Identity nodes: read through them
    alias = {n.output[0]: n.input[0] for n in graph.node
             if n.op_type == "Identity" and n.input[0] in inits and n.output[0] not in outputs}
    if alias:
        for node in graph.node:
            for k, name in enumerate(node.input):
                if name in alias:
                    node.input[k] = alias[name]
        kept = [n for n in graph.node if not (n.op_type == "Identity" and n.output[0] in alias)]
        del graph.node[:]
        graph.node.extend(kept)
    seen: dict[str, int] = {}
    copies = 0
    for node in graph.node:
        if node.op_type not in ("MatMul", "Gemm"):
            continue
        for k, name in enumerate(node.input):
            if name not in inits or len(inits[name].dims) != 2:
                continue
            seen[name] = seen.get(name, 0) + 1
            if seen[name] == 1:
                continue
            twin = onnx.TensorProto()
            twin.CopyFrom(inits[name])
            twin.name = f"{name}__use{seen[name]}"
            graph.initializer.append(twin)
            node.input[k] = twin.name
            copies += 1
    if copies or alias:
        onnx.save(model, str(out))
    return copies or len(alias)


def _share_identical(path: Path) -> int:
    """Fold initializers with the same type, shape and bytes into one (rewriting their uses); returns how many went."""
    import hashlib

    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    first: dict[tuple, str] = {}
    rename: dict[str, str] = {}
    keep = []
    for init in graph.initializer:
        raw = init.raw_data if init.raw_data else onnx.numpy_helper.to_array(init).tobytes()
        key = (init.data_type, tuple(init.dims), hashlib.blake2b(raw, digest_size=16).digest())
        if key in first and init.dims and len(raw) >= 4096:
            rename[init.name] = first[key]
        else:
            first.setdefault(key, init.name)
            keep.append(init)
    if rename:
        del graph.initializer[:]
        graph.initializer.extend(keep)
        for node in graph.node:
            for k, name in enumerate(node.input):
                if name in rename:
                    node.input[k] = rename[name]
        onnx.save(model, str(path))
    return len(rename)


class OnnxClassifier:
    """An ONNX Runtime session called like a HF classifier: `clf(input_ids=..., ...)` -> logits tensor."""

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None):
        _require_onnxruntime()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for unreadable graphs
            raise HeadroomError(f"'{path}' is not an ONNX model ONNX Runtime can load ({str(e).splitlines()[0]}).") from None
        self.path = str(path)
        self.input_names = [i.name for i in self.session.get_inputs()]

    def logits(self, inputs: dict) -> np.ndarray:
        feed = {n: np.ascontiguousarray(torch.as_tensor(inputs[n]).cpu().numpy().astype(np.int64))
                for n in self.input_names}
        return self.session.run(["logits"], feed)[0]

    def __call__(self, **inputs):
        """HF-style call on a Batch's `model_inputs()`: returns an object with `.logits` (a tensor)."""
        from types import SimpleNamespace

        if "token_type_ids" in self.input_names and inputs.get("token_type_ids") is None:
            inputs["token_type_ids"] = torch.zeros_like(torch.as_tensor(inputs["input_ids"]))
        return SimpleNamespace(logits=torch.from_numpy(self.logits(inputs)))


def load_onnx_export(path: str | os.PathLike, *, int8: bool = False, threads: int | None = None,
                     per_channel: bool = False) -> OnnxClassifier:
    """The ONNX Runtime model of a directory written by `export_onnx` (`per_channel`: its per-column int8)."""
    file = Path(path) / (INT8_PER_CHANNEL_FILE if per_channel else INT8_FILE if int8 else FP32_FILE)
    if not file.exists():
        flag = " --int8 --per-channel" if per_channel else " --int8" if int8 else ""
        raise HeadroomError(f"'{path}' has no {file.name}; export it with `headroom export --format onnx{flag}`.")
    return OnnxClassifier(file, threads=threads)
