"""Profile the materialized model: the real smaller HF model, timed whole and per module by hooks.

`materialize(model, recipe)` makes a private copy, so forward hooks only ever go on that copy,
never on a shared loaded model (a test checks no hook is left anywhere). A pre-hook reads the
stopwatch as a module starts and a hook adds the time when it ends, for the Linears, LayerNorms
and embeddings of every layer. What hooks cannot see (attention matmuls + softmax, the
activation, residual adds) is reported as `attention_scores`, inferred as whole − hooked and
spread over the layers by FLOPs; `coverage` of this report counts only the hooked modules.
"""

from __future__ import annotations

import torch
from torch import nn

from analysis.core.adapters import ROLES, Adapter
from analysis.core.recipe import Recipe
from analysis.runtime import DTYPES
from analysis.measure.flops import COMPONENT_OF_ROLE
from analysis.measure.profile_report import ProfileReport, component_rows
from analysis.measure.stopwatch import load_average, peak_memory_mb, time_pair


def _hook_targets(adapter: Adapter) -> list[tuple[nn.Module, str, int | None]]:
    """(module, component, layer) for every module a hook times; ALBERT's shared layer once."""
    targets = [(adapter.embeddings, "embeddings", None)]
    if adapter.embedding_projection() is not None:
        targets.append((adapter.embedding_projection(), "embeddings", None))
    for i in range(1 if adapter.shares_layers() else adapter.num_layers):
        p = adapter.layer(i)
        seen = set()
        for role in ROLES:
            module = getattr(p, role)
            module = getattr(module, "module", module)  # ModernBERT: Q/K/V are one fused Linear, hooked once
            if id(module) not in seen:
                seen.add(id(module))
                targets.append((module, COMPONENT_OF_ROLE[role], i))
        targets += [(m, "layernorm", i) for m in (p.attention_layernorm, p.ffn_layernorm) if isinstance(m, nn.LayerNorm)]
    targets += [(m, "classifier", None) for m in adapter.classifier_modules().values()]
    return targets


def profile_materialized(model: nn.Module, recipe: Recipe, batch, *, repeats: int = 5, warmup: int = 1,
                         dtype: str = "fp32", name: str = "model") -> ProfileReport:
    """Time the real smaller model (a private copy) whole, and per module through forward hooks."""
    from analysis.core.materialize import materialize

    new = materialize(model, recipe).to(DTYPES[dtype])  # a deep copy: hooks on it touch no shared model
    adapter = Adapter(new)
    device = next(new.parameters()).device
    inputs = batch.model_inputs()
    state = {"watch": None, "t0": {}}  # the stopwatch of the run in progress (None: an untimed run)

    def pre(module, args):
        if state["watch"] is not None:
            state["t0"][id(module)] = state["watch"].now()

    def post_for(component, layer):
        def post(module, args, output):
            w = state["watch"]
            if w is not None:
                w.add(component, layer, w.now() - state["t0"].pop(id(module)))
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

        forward_ms, ms = time_pair(lambda: new(**inputs), profiled, device, repeats, warmup)
    finally:
        for h in handles:
            h.remove()
    rows = component_rows(adapter, Recipe(), batch.input_ids.shape[0], batch.input_ids.shape[1], ms)
    unhooked = max(forward_ms - sum(ms.values()), 0.0)  # < 0 only when syncs cost more than the gaps
    scores = [r for r in rows if r.component == "attention_scores"]
    for r in scores:  # not hookable per layer: spread whole − hooked over layers by FLOPs
        r.ms = unhooked * r.flops / max(sum(s.flops for s in scores), 1)
    return ProfileReport(
        model=name, mode="materialized", recipe=recipe.to_dict(), device=str(device),
        threads=torch.get_num_threads(), dtype=dtype, batch_size=batch.input_ids.shape[0],
        seq_len=batch.input_ids.shape[1], repeats=repeats, forward_ms=forward_ms, rows=rows, inferred_ms=unhooked,
        peak_memory_mb=peak_memory_mb(lambda: new(**inputs), device), load_average=load_average(device),
        how="HF forward of materialize(model, recipe); forward hooks on its Linears, LayerNorms and embeddings",
        note="attention_scores here = whole forward − hooked modules (attention matmuls + softmax, activation, "
             "residual adds), spread over layers by FLOPs; FLOPs counted on the materialized shapes",
    )
