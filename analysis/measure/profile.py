"""Profile a model under a Recipe: where parameters, bytes, FLOPs and time go, per component.

For each piece of the forward (`flops.COMPONENTS`: embeddings, Q/K/V, attention scores+softmax+
context, W_O, LayerNorms, FFN up, FFN down, classifier), per layer:
- parameters and bytes at the recipe's bits (the same accounting as `size.size_report`: quantised
  matrices pay for their scales; biases, LayerNorms and the head stay fp32; a test checks the sums);
- FLOPs, counted analytically (`flops.py`; a multiply-add is 2 FLOPs);
- MEASURED milliseconds.

How time is measured, and why this way. `profiled_encoder_layer` is `simulate.encoder_layer`
with a lap of a stopwatch after each piece (a test checks that both give the same output). On
CUDA each lap synchronises first, so a lap is the wall time the piece adds. We chose this over
torch.profiler because (1) the pieces are exactly the components above — the attention core is
one fused `scaled_dot_product_attention` call, which record_function ranges would attribute the
same way but at a higher per-op cost; (2) it needs no trace parsing and works the same on CPU and
CUDA; (3) the sum of the laps can be checked against the whole forward timed *without* laps:
`coverage` = sum of components / whole forward. On CPU (synchronous kernels) coverage is close to
1; on CUDA a lap serialises launch and execution, so at small shapes coverage exceeds 1 (that
excess is the launch latency a free-running GPU hides). Every time is a median over `repeats`
runs after warm-up; whole and profiled runs alternate, so drift hits both alike.

The materialized model (`materialize(model, recipe)`: a private copy) is timed whole, and per
module with forward hooks on its Linears, LayerNorms and embeddings — hooks only ever go on that
copy, never on a shared loaded model. What the hooks do not see (attention matmuls + softmax,
the activation, residual adds) is reported as `attention_scores`, inferred as whole − hooked (and
`coverage` of that report counts only the hooked modules).
"""

from __future__ import annotations

import os
import statistics
import time
from collections import defaultdict
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from analysis.core.adapters import Adapter
from analysis.errors import HeadroomError
from analysis.measure.flops import COMPONENTS, count_flops, count_parameters
from analysis.core.quantize import fake_quantize_activations
from analysis.core.recipe import Recipe
from analysis.core.simulate import LayerWeights, additive_mask, simulate
from analysis.measure.timing import synthetic_batch
from analysis.runtime import DTYPES

LINEAR_COMPONENTS = ("attention_qkv", "attention_output", "ffn_up", "ffn_down")


# ------------------------------------------------------------------------------- timing
class Stopwatch:
    """Laps of wall time per (component, layer); synchronises CUDA before every reading."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.laps: dict[tuple, float] = defaultdict(float)
        self.t = 0.0

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def start(self) -> None:
        self.t = self._now()

    def lap(self, component: str, layer: int | None) -> None:
        now = self._now()
        self.laps[(component, layer)] += now - self.t
        self.t = now


def profiled_encoder_layer(x: torch.Tensor, mask: torch.Tensor, lw: LayerWeights, watch: Stopwatch) -> torch.Tensor:
    """`simulate.encoder_layer` with a stopwatch lap after each component (same arithmetic)."""
    B, T, D = x.shape
    nh, hs, i = lw.num_heads, lw.head_size, lw.index
    if nh == 0:
        attn_out = lw.bo.expand(B, T, D)
        watch.lap("attention_output", i)
    else:
        xin = fake_quantize_activations(x, lw.activation_bits)
        q = F.linear(xin, lw.wq, lw.bq).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = F.linear(xin, lw.wk, lw.bk).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = F.linear(xin, lw.wv, lw.bv).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        watch.lap("attention_qkv", i)
        ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype), scale=hs**-0.5)
        ctx = ctx.transpose(1, 2).reshape(B, T, nh * hs)  # (B, T, nh*hs)
        watch.lap("attention_scores", i)
        attn_out = F.linear(fake_quantize_activations(ctx, lw.activation_bits), lw.wo, lw.bo)
        watch.lap("attention_output", i)
    a = F.layer_norm(x + attn_out, (D,), *lw.ln1)
    watch.lap("layernorm", i)
    h = lw.activation(F.linear(fake_quantize_activations(a, lw.activation_bits), lw.w1, lw.b1))  # (B, T, I)
    watch.lap("ffn_up", i)
    f = F.linear(fake_quantize_activations(h, lw.activation_bits), lw.w2, lw.b2)
    watch.lap("ffn_down", i)
    out = F.layer_norm(a + f, (D,), *lw.ln2)
    watch.lap("layernorm", i)
    return out


def profiled_forward(sim, batch, watch: Stopwatch) -> torch.Tensor:
    """`SimulatedModel.forward` from the embeddings, with laps; returns the logits."""
    watch.start()
    hidden = sim.embed(batch)
    mask = additive_mask(batch.attention_mask, hidden.dtype)
    watch.lap("embeddings", None)
    for i in range(sim.adapter.num_layers):
        if i in sim.layers:
            hidden = profiled_encoder_layer(hidden, mask, sim.layers[i], watch)
    logits = sim.adapter.classify(hidden.to(sim.adapter.model.dtype))
    watch.lap("classifier", None)
    return logits


def _hook_targets(adapter: Adapter) -> list[tuple[nn.Module, str, int | None]]:
    targets = [(adapter.embeddings, "embeddings", None)]
    if adapter.embedding_projection() is not None:
        targets.append((adapter.embedding_projection(), "embeddings", None))
    for i in range(1 if adapter.shares_layers() else adapter.num_layers):
        p = adapter.layer(i)
        targets += [(p.query, "attention_qkv", i), (p.key, "attention_qkv", i), (p.value, "attention_qkv", i),
                    (p.attention_output, "attention_output", i), (p.attention_layernorm, "layernorm", i),
                    (p.ffn_in, "ffn_up", i), (p.ffn_out, "ffn_down", i), (p.ffn_layernorm, "layernorm", i)]
    targets += [(m, "classifier", None) for m in adapter.classifier_modules().values()]
    return targets


# ------------------------------------------------------------------------------- the report
@dataclass
class ComponentRow:
    component: str
    layer: int | None
    params: int
    bytes: float
    flops: int
    ms: float  # measured, median over repeats


@dataclass
class ProfileReport:
    model: str
    mode: str  # "simulated" (Headroom's forward, the recipe applied) or "materialized" (the HF model)
    recipe: dict
    device: str
    threads: int
    dtype: str
    batch_size: int
    seq_len: int
    repeats: int
    forward_ms: float  # the whole forward, timed without laps or hooks (median)
    rows: list[ComponentRow]
    peak_memory_mb: float | None = None  # CUDA only: peak allocated during the forward
    load_average: float | None = None  # CPU only: 1-minute load average when measured (others' jobs slow us)
    inferred_ms: float = 0.0  # time assigned by subtraction (whole − measured pieces), not measured per piece
    materialized: "ProfileReport | None" = None
    note: str = ""
    how: str = ""

    @property
    def components_ms(self) -> float:
        return sum(r.ms for r in self.rows)

    @property
    def coverage(self) -> float:
        """Sum of the separately measured per-component times over the whole forward's time."""
        return (self.components_ms - self.inferred_ms) / self.forward_ms if self.forward_ms else float("nan")

    def to_frame(self):
        import pandas as pd

        df = pd.DataFrame([asdict(r) for r in self.rows])
        df["layer"] = df["layer"].astype("Int64")
        df["share_of_time"] = df["ms"] / max(df["ms"].sum(), 1e-12)
        df["share_of_flops"] = df["flops"] / max(df["flops"].sum(), 1)
        return df

    def by_component(self):
        """One row per component, summed over layers, in data-flow order."""
        df = self.to_frame().groupby("component", sort=False)[["params", "bytes", "flops", "ms"]].sum()
        df = df.reindex([c for c in COMPONENTS if c in df.index])
        df["share_of_params"] = df["params"] / max(df["params"].sum(), 1)
        df["share_of_flops"] = df["flops"] / max(df["flops"].sum(), 1)
        df["share_of_time"] = df["ms"] / max(df["ms"].sum(), 1e-12)
        df["gflops_per_s"] = df["flops"] / (df["ms"].clip(lower=1e-9) * 1e6)
        return df.reset_index()

    def side_by_side(self):
        """Per component: simulated recipe vs the materialized model (FLOPs and measured ms)."""
        a = self.by_component().set_index("component")[["flops", "ms"]].add_suffix("_simulated")
        if self.materialized is None:
            return a.reset_index()
        b = self.materialized.by_component().set_index("component")[["flops", "ms"]].add_suffix("_materialized")
        return a.join(b, how="outer").reindex([c for c in COMPONENTS if c in a.index or c in b.index]).reset_index()

    def header(self) -> dict:
        return {"model": self.model, "mode": self.mode, "device": self.device, "threads": self.threads,
                "dtype": self.dtype, "batch_size": self.batch_size, "seq_len": self.seq_len,
                "repeats": self.repeats, "forward_ms": round(self.forward_ms, 3),
                "components_ms": round(self.components_ms, 3), "coverage": round(self.coverage, 3),
                "peak_memory_mb": self.peak_memory_mb, "load_average": self.load_average, "how": self.how, "note": self.note}

    def to_dict(self) -> dict:
        d = self.header()
        d["recipe"] = self.recipe
        d["by_component"] = self.by_component().round(6).to_dict(orient="records")
        d["rows"] = [asdict(r) for r in self.rows]
        if self.materialized is not None:
            d["materialized"] = self.materialized.to_dict()
            d["side_by_side"] = self.side_by_side().round(4).to_dict(orient="records")
        return d


def _as_adapter(model_like) -> tuple[Adapter, str]:
    if isinstance(model_like, Adapter):
        return model_like, type(model_like.model).__name__
    if isinstance(model_like, nn.Module):
        return Adapter(model_like), type(model_like).__name__
    return model_like.adapter, getattr(model_like, "name", "model")  # a LoadedModel


def _max_seq_len(adapter: Adapter) -> int:
    return getattr(adapter.model.config, "max_position_embeddings", 512) - (2 if adapter.model_type == "roberta" else 0)


def _check_shape(adapter: Adapter, batch_size: int, seq_len: int, repeats: int, device: torch.device) -> None:
    from analysis.measure.limits import limits_for

    limit, max_batch = _max_seq_len(adapter), limits_for(device.type).max_batch_size
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


@torch.inference_mode()
def _time_pair(whole, profiled, device, repeats: int, warmup: int) -> tuple[float, dict]:
    """Median ms of `whole()` and per-lap median ms of `profiled(watch)`, alternating runs."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        whole()
        profiled(Stopwatch(device))
    sync()
    wholes, laps = [], defaultdict(list)
    for _ in range(repeats):
        t0 = time.perf_counter()
        whole()
        sync()
        wholes.append(time.perf_counter() - t0)
        watch = Stopwatch(device)
        profiled(watch)
        for key, s in watch.laps.items():
            laps[key].append(s)
    return statistics.median(wholes) * 1e3, {k: statistics.median(v) * 1e3 for k, v in laps.items()}


def _rows(adapter: Adapter, recipe: Recipe, batch_size: int, seq_len: int, ms: dict) -> list[ComponentRow]:
    params = {(p.component, p.layer): p for p in count_parameters(adapter, recipe)}
    out = []
    for f in count_flops(adapter, recipe, batch_size, seq_len):
        p = params.get((f.component, f.layer))
        out.append(ComponentRow(f.component, f.layer, p.params if p else 0, p.bytes if p else 0.0,
                                f.total, ms.get((f.component, f.layer), 0.0)))
    return out


def _load_average(device) -> float | None:
    return round(os.getloadavg()[0], 2) if device.type == "cpu" and hasattr(os, "getloadavg") else None


def _peak_memory_mb(fn, device) -> float | None:
    if device.type != "cuda":
        return None
    torch.cuda.reset_peak_memory_stats(device)
    with torch.inference_mode():
        fn()
    torch.cuda.synchronize()
    return round(torch.cuda.max_memory_allocated(device) / 1e6, 1)


def profile_materialized(model: nn.Module, recipe: Recipe, batch, *, repeats: int = 5, warmup: int = 1,
                         dtype: str = "fp32", name: str = "model") -> ProfileReport:
    """Time the real smaller model (a private copy) whole, and per module through forward hooks."""
    from analysis.core.materialize import materialize

    new = materialize(model, recipe).to(DTYPES[dtype])  # a deep copy: hooks on it touch no shared model
    adapter = Adapter(new)
    device = next(new.parameters()).device
    inputs = batch.model_inputs()
    state = {"watch": None, "t0": {}}

    def pre(module, args):
        if state["watch"] is not None:
            state["t0"][id(module)] = state["watch"]._now()

    def post_for(component, layer):
        def post(module, args, output):
            w = state["watch"]
            if w is not None:
                w.laps[(component, layer)] += w._now() - state["t0"].pop(id(module))
        return post

    handles = []
    try:
        for module, component, layer in _hook_targets(adapter):
            handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post_for(component, layer))]

        def profiled(watch):
            state["watch"] = watch
            try:
                new(**inputs)
            finally:
                state["watch"] = None

        forward_ms, ms = _time_pair(lambda: new(**inputs), profiled, device, repeats, warmup)
    finally:
        for h in handles:
            h.remove()
    rows = _rows(adapter, Recipe(), batch.input_ids.shape[0], batch.input_ids.shape[1], ms)
    unhooked = max(forward_ms - sum(ms.values()), 0.0)  # < 0 only when syncs cost more than the gaps
    scores = [r for r in rows if r.component == "attention_scores"]
    for r in scores:  # not hookable per layer: spread whole − hooked over layers by FLOPs
        r.ms = unhooked * r.flops / max(sum(s.flops for s in scores), 1)
    return ProfileReport(
        model=name, mode="materialized", recipe=recipe.to_dict(), device=str(device),
        threads=torch.get_num_threads(), dtype=dtype, batch_size=batch.input_ids.shape[0],
        seq_len=batch.input_ids.shape[1], repeats=repeats, forward_ms=forward_ms, rows=rows, inferred_ms=unhooked,
        peak_memory_mb=_peak_memory_mb(lambda: new(**inputs), device), load_average=_load_average(device),
        how="HF forward of materialize(model, recipe); forward hooks on its Linears, LayerNorms and embeddings",
        note="attention_scores here = whole forward − hooked modules (attention matmuls + softmax, activation, "
             "residual adds), spread over layers by FLOPs; FLOPs counted on the materialized shapes",
    )


def profile_model(model_like, recipe: Recipe | None = None, batch_size: int = 32, seq_len: int = 128,
                  device=None, repeats: int = 5, *, warmup: int | None = None, dtype: str = "fp32",
                  materialized: bool = True) -> ProfileReport:
    """Parameters, bytes, FLOPs and measured ms per component for a LoadedModel / Adapter / HF model.

    Times Headroom's forward with the recipe applied (`simulate`) and, when `materialized`, the
    real materialized model side by side (`report.materialized`, `report.side_by_side()`).
    """
    recipe = recipe or Recipe()
    adapter, name = _as_adapter(model_like)
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
    forward_ms, ms = _time_pair(lambda: sim.forward(batch), lambda w: profiled_forward(sim, batch, w), dev, repeats, warmup)
    report = ProfileReport(
        model=name, mode="simulated", recipe=recipe.to_dict(), device=str(dev), threads=torch.get_num_threads(),
        dtype=dtype, batch_size=batch_size, seq_len=seq_len, repeats=repeats, forward_ms=forward_ms,
        rows=_rows(adapter, recipe, batch_size, seq_len, ms),
        peak_memory_mb=_peak_memory_mb(lambda: sim.forward(batch), dev), load_average=_load_average(dev),
        how="Headroom's flat forward with the recipe applied; a stopwatch lap after each component "
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


def _sweep(model_like, recipe, points: list[tuple[int, int]], device, repeats, dtype):
    import pandas as pd

    frames = []
    for batch_size, seq_len in points:
        r = profile_model(model_like, recipe, batch_size, seq_len, device, repeats, dtype=dtype, materialized=False)
        df = r.by_component()
        df.insert(0, "seq_len", seq_len)
        df.insert(0, "batch_size", batch_size)
        df["forward_ms"], df["coverage"], df["device"], df["threads"] = r.forward_ms, r.coverage, r.device, r.threads
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def sweep_seq_len(model_like, recipe: Recipe | None = None, seq_lens=(16, 32, 64, 128, 256, 512), batch_size: int = 8,
                  device=None, repeats: int = 3, dtype: str = "fp32"):
    """Measured ms vs counted FLOPs per component for each sequence length (longer than the model takes: skipped)."""
    limit = _max_seq_len(_as_adapter(model_like)[0])
    kept = [t for t in seq_lens if t <= limit]
    if not kept:
        raise HeadroomError(f"No sequence length in the sweep fits this model (at most {limit} tokens).")
    df = _sweep(model_like, recipe, [(batch_size, t) for t in kept], device, repeats, dtype)
    df.attrs["skipped_seq_lens"] = [t for t in seq_lens if t > limit]
    return df


def sweep_batch_size(model_like, recipe: Recipe | None = None, batch_sizes=(1, 4, 16, 64), seq_len: int = 128,
                     device=None, repeats: int = 3, dtype: str = "fp32"):
    """Measured ms vs counted FLOPs per component for each batch size."""
    return _sweep(model_like, recipe, [(b, seq_len) for b in batch_sizes], device, repeats, dtype)


def course_observations(report: ProfileReport) -> list[dict]:
    """What a compression course says about BERT, checked against this report's numbers."""
    df = report.by_component().set_index("component")
    value = lambda c, col: float(df[col].get(c, 0.0))  # noqa: E731
    ms_per_gflop = {c: value(c, "ms") / max(value(c, "flops") / 1e9, 1e-12) for c in LINEAR_COMPONENTS if c in df.index}
    linear_rate = sum(value(c, "ms") for c in ms_per_gflop) / max(sum(value(c, "flops") for c in ms_per_gflop) / 1e9, 1e-12)
    params = df["params"].sum()
    encoder_params = sum(value(c, "params") for c in ("attention_qkv", "attention_output", "layernorm", "ffn_up", "ffn_down"))
    ffn_params, ffn_flops = value("ffn_up", "params") + value("ffn_down", "params"), value("ffn_up", "flops") + value("ffn_down", "flops")
    qkv_o_flops = value("attention_qkv", "flops") / max(value("attention_output", "flops"), 1)
    qkv_o_ms = value("attention_qkv", "ms") / max(value("attention_output", "ms"), 1e-12)
    att_rate = value("attention_scores", "ms") / max(value("attention_scores", "flops") / 1e9, 1e-12)
    spread = max(ms_per_gflop.values()) / max(min(ms_per_gflop.values()), 1e-12) if ms_per_gflop else float("nan")
    where = f"{report.device}, {report.threads} threads, batch {report.batch_size} x seq {report.seq_len}, measured"
    return [
        {"claim": "the embedding is a lookup with no FLOPs but many parameters",
         "holds": bool(value("embeddings", "share_of_flops") < 0.01 and value("embeddings", "share_of_params") > 0.1),
         "evidence": f"embeddings: {value('embeddings', 'share_of_flops'):.3%} of FLOPs (row sums + LayerNorm), "
                     f"{value('embeddings', 'share_of_params'):.1%} of parameters"},
        {"claim": "Q/K/V cost three times the output projection",
         "holds": bool(abs(qkv_o_flops - 3) < 0.05 and 2.0 <= qkv_o_ms <= 4.0),
         "evidence": f"FLOPs ratio {qkv_o_flops:.2f}; measured time ratio {qkv_o_ms:.2f} ({where})"},
        {"claim": "attention matmuls + softmax have no parameters but run slower than their FLOPs suggest",
         "holds": bool(value("attention_scores", "params") == 0 and att_rate > 1.2 * linear_rate),
         "evidence": f"{value('attention_scores', 'share_of_flops'):.1%} of FLOPs but {value('attention_scores', 'share_of_time'):.1%} "
                     f"of time: {att_rate:.2f} ms/GFLOP vs {linear_rate:.2f} ms/GFLOP for the linear layers ({where})"},
        {"claim": "the FFN holds most parameters and FLOPs",
         "holds": bool(ffn_params > 0.5 * encoder_params and ffn_flops > 0.5 * df["flops"].sum()),
         "evidence": f"FFN: {ffn_params / max(encoder_params, 1):.1%} of encoder-layer parameters "
                     f"({ffn_params / max(params, 1):.1%} of all, embeddings {value('embeddings', 'share_of_params'):.1%}), "
                     f"{ffn_flops / max(df['flops'].sum(), 1):.1%} of FLOPs"},
        {"claim": "linear layers take time in proportion to their FLOPs (on a CPU; a GPU hides it)",
         "holds": bool(spread <= 1.5),
         "evidence": "ms per GFLOP: " + ", ".join(f"{c} {v:.2f}" for c, v in ms_per_gflop.items())
                     + f" (max/min {spread:.2f}; {where})"},
    ]
