"""Deployment backends side by side: torch fp32, torch int8, ONNX Runtime fp32, ONNX Runtime int8 (one
range per weight matrix, and per channel).

The question an engineer asks of a compressed model is "how small and fast does it serve, and
what does it cost in accuracy?", answered on the backend that would serve it. For one Recipe:
- the recipe's model is materialized (heads sliced out, layers removed) and built four ways:
  torch fp32; torch int8 (`lowbit.build`, its deterministic backend rule); ONNX Runtime fp32 and
  ONNX Runtime dynamic int8 (`core.export.export_onnx`, logits checked against torch there);
- accuracy: each backend predicts the Evaluator's batches (`analysis.runtime.predict`: an
  `OnnxClassifier` is called like a HF model), with agreement with the unmodified model;
- size on disk: the serialized state dict (torch) or the .onnx file (ORT);
- latency: at each (batch, sequence) shape and thread count, every backend is timed interleaved
  against the *unmodified* torch fp32 model in one `timing.compare` call, so each figure is a
  ratio to the same baseline with its 95% interval and verdict (ORT sessions are built per
  thread count: their thread pool is fixed when the session is made).
A recipe with magnitude sparsity also gets "torch CSR": every encoder Linear of at least 50% zeros as a
CSR sparse matrix (`core.sparse_kernels`), the one backend on the CPU whose kernels skip the zeros.
A 2:4 recipe (`sparsity_pattern` "2:4") also gets "torch 2:4 (CUDA)" where a CUDA GPU of the Ampere
generation or newer is present (`available_backends`): the materialized model in fp16 on the GPU, each
encoder Linear converted with `torch.sparse.to_sparse_semi_structured` (sparse tensor cores). It is
timed on the GPU against the unmodified model in fp16 there (not against CPU fp32: its notes say so),
and it is not listed at all without CUDA (`semi_structured_unavailable` says why in one sentence).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from analysis.core.recipe import Recipe
from analysis.errors import HeadroomError

BACKENDS = ("torch fp32", "torch int8", "ORT fp32", "ORT int8", "ORT int8 per-channel")
#: sparse kernels (`core.sparse_kernels`): added by default when the recipe has magnitude sparsity
SPARSE_BACKEND = "torch CSR"
#: 2:4 semi-structured kernels on sparse tensor cores: added for a 2:4 recipe, only where CUDA (Ampere+) is present
SEMI_STRUCTURED_BACKEND = "torch 2:4 (CUDA)"
SEMI_STRUCTURED_BASELINE = "unmodified model, torch fp16 on CUDA"
ALL_BACKENDS = BACKENDS + (SPARSE_BACKEND, SEMI_STRUCTURED_BACKEND)
_ORT_FILES = {"ORT fp32": {}, "ORT int8": {"int8": True}, "ORT int8 per-channel": {"per_channel": True}}
BASELINE = "torch fp32 (unmodified)"


@dataclass
class BackendResult:
    """One backend of the recipe's model: accuracy, size on disk and latency ratios."""

    backend: str  # one of BACKENDS
    built_with: str  # e.g. "torch.ao.quantization.quantize_dynamic ...", "onnxruntime quantize_dynamic"
    size_bytes: int  # on disk: serialized state dict (torch) or the .onnx graph (ORT)
    metric_name: str | None = None
    metric: float | None = None
    agreement_with_baseline: float | None = None  # share of examples with the unmodified model's prediction
    num_examples: int = 0
    eval_seconds: float = 0.0  # time to predict every example (one pass, all threads)
    latency: list[dict] = field(default_factory=list)  # one Comparison.to_dict() per (shape, threads), + shape
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["size_mb"] = round(self.size_bytes / 1e6, 3)
        return d


@dataclass
class BackendReport:
    """Every backend of one recipe, measured in one run."""

    recipe: dict
    model: str
    data: str
    baseline_metric: float | None
    baseline_size_bytes: int
    shapes: list[tuple[int, int]]
    threads: list[int]
    rounds: int
    results: list[BackendResult]
    export: dict  # what export_onnx wrote and checked (max |logit| differences)
    seconds: float = 0.0
    baseline_model: str | None = None  # the model whose torch fp32 time is the baseline (the teacher, for a student)
    what: str = ("measured: real kernels; latency = backend time / unmodified torch fp32 time, timed interleaved "
                 "in one call per (shape, threads)")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["results"] = [r.to_dict() for r in self.results]
        d["shapes"] = [f"{b}x{t}" for b, t in self.shapes]
        return d


def parse_shapes(text: str) -> list[tuple[int, int]]:
    """'32x128,1x16' -> [(32, 128), (1, 16)]."""
    shapes = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        try:
            b, t = (int(x) for x in part.lower().split("x"))
        except ValueError:
            raise HeadroomError(f"'{part}' is not a shape; write batch x sequence, e.g. 32x128,1x16.") from None
        if b < 1 or t < 2:
            raise HeadroomError(f"Shape '{part}' needs a batch of at least 1 and a sequence of at least 2 tokens.")
        shapes.append((b, t))
    if not shapes:
        raise HeadroomError("No shapes given; write e.g. 32x128,1x16.")
    return shapes


def semi_structured_unavailable() -> str | None:
    """Why "torch 2:4 (CUDA)" is not offered on this machine (one sentence), or None where it is."""
    from analysis.core.sparse_kernels import semi_structured_problem

    return semi_structured_problem()


def available_backends(recipe: Recipe | None = None) -> tuple[str, ...]:
    """The backends compared by default for `recipe`: CSR for a sparse one, 2:4 for a 2:4 one where CUDA has the kernels."""
    recipe = recipe or Recipe()
    out = BACKENDS
    if recipe.has_sparsity():
        out += (SPARSE_BACKEND,)
        if recipe.sparsity_pattern == "2:4" and semi_structured_unavailable() is None:
            out += (SEMI_STRUCTURED_BACKEND,)
    return out


def _predict(model, evaluator, device=None) -> tuple[np.ndarray, float]:
    from analysis.runtime import predict

    t0 = time.perf_counter()
    preds = predict(model, evaluator.batches, len(evaluator.dataset), device=device)
    return preds, time.perf_counter() - t0


@torch.inference_mode()
def compare_backends(evaluator, recipe: Recipe | None = None, *, shapes=((32, 128), (1, 16)), threads=(1, 2),
                     rounds: int = 10, warmup: int = 2, backends=None, progress=None,
                     reference=None) -> BackendReport:
    """Build, score and time every backend of `recipe`'s model (see the module docstring).

    `reference`: an Evaluator of another model on the same examples (the teacher of a recovered
    model): its unmodified torch fp32 model becomes the latency baseline, and its predictions the
    agreement reference, so a recovered student is timed against the model it replaces.
    """
    from analysis.core.export import FP32_FILE, INT8_FILE, INT8_PER_CHANNEL_FILE, export_onnx, load_onnx_export
    from analysis.core.materialize import materialize
    from analysis.measure import lowbit
    from analysis.measure.metrics import compute_metrics
    from analysis.measure.timing import compare

    recipe = recipe or Recipe()
    if backends is None:
        backends = available_backends(recipe)
    unknown = [b for b in backends if b not in ALL_BACKENDS]
    if unknown:
        raise HeadroomError(f"Unknown backend(s) {', '.join(unknown)}; choose from {', '.join(ALL_BACKENDS)}.")
    if SEMI_STRUCTURED_BACKEND in backends and semi_structured_unavailable():
        raise HeadroomError(semi_structured_unavailable())
    if evaluator.device.type != "cpu":
        raise HeadroomError("The backends comparison runs on CPU (ONNX Runtime's CPU provider, torch int8).")
    say = progress or (lambda msg: None)
    t_start = time.perf_counter()
    loaded = evaluator.loaded
    evaluator.adapter.validate(recipe)
    if reference is not None and len(reference.dataset) != len(evaluator.dataset):
        raise HeadroomError("The reference model must be scored on the same examples as the compared one.")
    ref = reference or evaluator
    own_model = loaded.model.float().eval()
    base_model = ref.loaded.model.float().eval()
    model = own_model if recipe.is_baseline() else materialize(own_model, recipe).float().eval()
    base_preds = ref.baseline.predictions
    torch_threads = torch.get_num_threads()
    results: dict[str, BackendResult] = {}
    runners: dict[str, object] = {}  # backend -> model called like HF (ORT ones rebuilt per thread count)

    say("building torch backends ...")
    if "torch fp32" in backends:
        runners["torch fp32"] = model
        results["torch fp32"] = BackendResult("torch fp32", "fp32 (the materialized model)", lowbit.serialized_bytes(model))
    if "torch int8" in backends:
        q, how, notes = lowbit.build(model, "int8")
        runners["torch int8"] = q
        results["torch int8"] = BackendResult("torch int8", how, lowbit.serialized_bytes(q), notes=notes)
    if SPARSE_BACKEND in backends:
        from analysis.core.sparse_kernels import csr_kernels

        sparse, how = csr_kernels(model, min_sparsity=0.5)
        runners[SPARSE_BACKEND] = sparse
        notes = [f"{len(how['converted'])} encoder Linears as CSR (>= 50% zeros), {how['dense_linears']} left dense"]
        results[SPARSE_BACKEND] = BackendResult(SPARSE_BACKEND, how["kernel"], lowbit.serialized_bytes(sparse), notes=notes)
    gpu = None  # the 2:4 backend and its own baseline, on the GPU
    if SEMI_STRUCTURED_BACKEND in backends:
        import copy

        from analysis.core.sparse_kernels import semi_structured_kernels
        from analysis.measure.sparse_files import two_four_bytes

        say("converting to 2:4 semi-structured kernels on CUDA ...")
        cuda = torch.device("cuda")
        sparse, how = semi_structured_kernels(copy.deepcopy(model).half().to(cuda))
        gpu = (sparse, copy.deepcopy(base_model).half().to(cuda).eval(), cuda)
        runners[SEMI_STRUCTURED_BACKEND] = sparse
        state = model.state_dict()  # bytes as the kernels hold them: fp16, 2:4 matrices half + 2 bits per kept value
        counted = sum(two_four_bytes(t, 2) if t.ndim == 2 and t.is_floating_point()
                      else t.numel() * (2 if t.is_floating_point() else t.element_size()) for t in state.values())
        notes = [f"{len(how['converted'])} encoder Linears as 2:4 semi-structured, dense: "
                 + ", ".join(f"{n} ({why})" for why, n in how["dense_linears"].items()),
                 f"size counted (fp16 values + 2-bit metadata), not a file; latency relative to the "
                 f"{SEMI_STRUCTURED_BASELINE}, not to CPU fp32"]
        results[SEMI_STRUCTURED_BACKEND] = BackendResult(SEMI_STRUCTURED_BACKEND, how["kernel"], counted, notes=notes)
    with tempfile.TemporaryDirectory() as tmp:
        export = {}
        if any(b.startswith("ORT") for b in backends):
            say("exporting to ONNX ...")
            out = f"{tmp}/onnx"
            ex = export_onnx(model, None, out, int8="ORT int8" in backends, recipe=recipe,
                             per_channel="ORT int8 per-channel" in backends)
            export = ex.to_dict()
            built = {  # backend -> (how it is built, its file, the prefix of its export notes)
                "ORT fp32": ("torch.onnx.export (TorchScript), ORT CPU", FP32_FILE, None),
                "ORT int8": ("onnxruntime quantize_dynamic (QInt8, one range per matrix)", INT8_FILE, "int8:"),
                "ORT int8 per-channel": ("onnxruntime quantize_dynamic (QInt8, per_channel: one range per column)",
                                         INT8_PER_CHANNEL_FILE, "int8 per-channel")}
            for name, (how, file, prefix) in built.items():
                if name in backends:
                    notes = [n for n in ex.notes if prefix and n.startswith(prefix)]
                    results[name] = BackendResult(name, how, ex.files[file], notes=notes)
                    runners[name] = load_onnx_export(out, **_ORT_FILES[name])
        # accuracy: one pass over every example per backend, all threads
        for name, res in results.items():
            say(f"scoring {name} on {len(evaluator.dataset)} examples ...")
            preds, seconds = _predict(runners[name], evaluator, gpu[2] if name == SEMI_STRUCTURED_BACKEND else None)
            res.num_examples, res.eval_seconds = len(preds), round(seconds, 2)
            res.agreement_with_baseline = float((preds == base_preds).mean())
            if evaluator.labels is not None:
                m = compute_metrics(evaluator.labels, preds, evaluator.dataset.metric, loaded.num_labels)
                res.metric_name, res.metric = m["metric_name"], m["metric"]
        # latency: per thread count, every backend against the unmodified torch fp32, interleaved
        try:
            for t in threads:
                torch.set_num_threads(t)
                timed = {name: runners[name] for name in results
                         if not name.startswith("ORT") and name != SEMI_STRUCTURED_BACKEND}
                for name in results:
                    if name.startswith("ORT"):
                        timed[name] = load_onnx_export(f"{tmp}/onnx", threads=t, **_ORT_FILES[name])
                for b, s in shapes:
                    say(f"timing {b}x{s} at {t} thread(s) ...")
                    inputs = evaluator.latency_batch(b, s).model_inputs()
                    fns = {name: (lambda m=m: m(**inputs)) for name, m in timed.items()}
                    out = compare(fns, lambda: base_model(**inputs), rounds=rounds, warmup=warmup)
                    for name in timed:
                        results[name].latency.append({"shape": f"{b}x{s}", **out[name].to_dict()})
            if gpu is not None:  # on the GPU, against the unmodified model in fp16 there; threads do not apply
                sparse, base_gpu, cuda = gpu
                for b, s in shapes:
                    say(f"timing {b}x{s} on CUDA ...")
                    inputs = {k: v.to(cuda) for k, v in evaluator.latency_batch(b, s).model_inputs().items()}
                    out = compare({SEMI_STRUCTURED_BACKEND: lambda: sparse(**inputs)}, lambda: base_gpu(**inputs),
                                  rounds=rounds, warmup=warmup, device=cuda)
                    results[SEMI_STRUCTURED_BACKEND].latency.append(
                        {"shape": f"{b}x{s}", **out[SEMI_STRUCTURED_BACKEND].to_dict(), "baseline": SEMI_STRUCTURED_BASELINE})
        finally:
            torch.set_num_threads(torch_threads)
    return BackendReport(
        recipe=recipe.to_dict(), model=loaded.name, data=evaluator.dataset.name,
        baseline_metric=ref.baseline.metric, baseline_size_bytes=lowbit.serialized_bytes(base_model),
        shapes=list(shapes), threads=list(threads), rounds=rounds, results=list(results.values()), export=export,
        seconds=round(time.perf_counter() - t_start, 1), baseline_model=ref.loaded.name)


def table_rows(report: BackendReport) -> list[dict]:
    """Flat rows (backend x shape x threads) for a table or a Trade-offs plot."""
    rows = []
    for r in report.results:
        for lat in r.latency:
            rows.append({"backend": r.backend, "shape": lat["shape"], "threads": lat["threads"],
                         "time x torch fp32": round(lat["ratio"], 3),
                         "95% interval": f"{lat['ratio_ci95'][0]:.2f}-{lat['ratio_ci95'][1]:.2f}",
                         "verdict": lat["verdict"], "ms": round(lat["ms"], 2),
                         "size MB": round(r.size_bytes / 1e6, 1), r.metric_name or "metric": r.metric,
                         "agreement": r.agreement_with_baseline, "load": lat["load_average"]})
    return rows
