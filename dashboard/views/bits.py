"""Bits: weight bits per layer and for the embeddings, and how ranges are shared.

Simulated (fake-quantised weights in fp32 maths; Q-BERT, Shen et al. 2020, for per-head groups)
in the live panel; Hessian sensitivity bars and "allocate for a budget" from analysis.methods.sensitivity;
a really quantised model (int8 kernels / bf16) measured on this machine, clearly marked "measured";
and the deployment backends (torch fp32/int8, ONNX Runtime fp32/int8, analysis.measure.backends),
whose rows also go to Trade-offs as rows of their own.
"""

from __future__ import annotations

import streamlit as st

from analysis.core.recipe import GRANULARITIES, SUPPORTED_BITS, Recipe
from dashboard import state, widgets

BIT_CHOICES = [b for b in SUPPORTED_BITS if b != 16][::-1]  # 32, 8, 7, ... 2
# The dashboard's Hessian: a few minutes at most on a 2-core CPU (Q-BERT's ranking of the layers is
# stable well before 20 iterations; the top eigenvalue converges within 1e-3 in a handful).
HESSIAN_ITERS = 8
HESSIAN_BATCHES = 2


def _on_bits_changed(num_layers: int, adapter) -> None:
    """Widgets -> recipe (runs before the script, so the widgets below show the result)."""
    ss = st.session_state
    if ss.get(state.BITS_MODE) == "per layer":
        bits: int | list[int] = [int(ss.get(state.bits_layer_key(l), 32)) for l in range(num_layers)]
    else:
        bits = int(ss.get(state.BITS_ALL, 32))
    new = state.recipe().replace(weight_bits=bits, embedding_bits=int(ss.get(state.BITS_EMB, 32)),
                                 granularity=ss.get(state.BITS_GRAN, "per-tensor"),
                                 symmetric=bool(ss.get(state.BITS_SYM, True)), name="")
    state.set_recipe(new, adapter)


def _controls(num_layers: int, adapter) -> None:
    recipe = state.recipe()
    bits = recipe.layer_bits(num_layers)
    ss = st.session_state
    # recipe -> widgets: presets and links change the recipe; the widgets follow it
    if state.BITS_MODE not in ss or (isinstance(recipe.weight_bits, list) and len(set(bits)) > 1):
        ss[state.BITS_MODE] = "per layer" if len(set(bits)) > 1 else "same for every layer"
    ss[state.BITS_ALL] = bits[0] if bits[0] in BIT_CHOICES else 32
    for l in range(num_layers):
        ss[state.bits_layer_key(l)] = bits[l] if bits[l] in BIT_CHOICES else 32
    ss[state.BITS_EMB] = recipe.embedding_bits if recipe.embedding_bits in BIT_CHOICES else 32
    ss[state.BITS_GRAN], ss[state.BITS_SYM] = recipe.granularity, recipe.symmetric
    changed = dict(on_change=_on_bits_changed, args=(num_layers, adapter))
    st.radio("Weight bits", ["same for every layer", "per layer"], key=state.BITS_MODE, horizontal=True, **changed)
    if ss[state.BITS_MODE] == "same for every layer":
        st.select_slider("Bits of every encoder layer (32 = full precision)", BIT_CHOICES, key=state.BITS_ALL,
                         **changed)
    else:  # one evaluation for all the layers changed, not one per change
        with st.form("bits_layers_form", border=False):
            for l, col in enumerate(st.columns(num_layers)):
                col.selectbox(f"L{l}", BIT_CHOICES, key=state.bits_layer_key(l))
            st.form_submit_button("Apply the bits per layer", type="primary", key="bits_layers_apply",
                                  help="Change several layers, then evaluate them together once.",
                                  on_click=_on_bits_changed, args=(num_layers, adapter))
    c1, c2, c3 = st.columns(3)
    c1.select_slider("Word-embedding bits", BIT_CHOICES, key=state.BITS_EMB, **changed)
    c2.selectbox("Granularity (ranges shared per ...)", GRANULARITIES, key=state.BITS_GRAN, **changed)
    c3.toggle("Symmetric ranges", key=state.BITS_SYM, **changed)


def _sensitivity(choice, ev, num_layers: int) -> None:
    from analysis.methods import sensitivity

    job = widgets.get_job("hessian")
    if st.button("Compute Hessian sensitivity (Q-BERT)", key="bits_hessian",
                 disabled=job is not None and not job.done):
        widgets.start_job("hessian", lambda j: sensitivity.hessian_sensitivity(
            ev, iters=HESSIAN_ITERS, batches=HESSIAN_BATCHES, batch_size=16, progress=j.report, cancel=j.cancel))
    st.caption(f"Power iteration, at most {HESSIAN_ITERS} steps per layer on {HESSIAN_BATCHES} batches of 16 examples "
               "(the command line's `headroom sensitivity` defaults to 20 steps on 4 batches of 32).")
    job = widgets.job_status("hessian")
    if job is not None and job.done and job.result is not None:
        st.session_state[state.hessian_key(choice)] = job.result
    sens = st.session_state.get(state.hessian_key(choice))
    if sens is None:
        return
    import plotly.graph_objects as go

    fig = go.Figure(go.Bar(x=[f"L{l}" for l in range(len(sens.mean))], y=sens.mean,
                           error_y=dict(array=sens.std, visible=True)))
    fig.update_layout(title=f"Hessian sensitivity per layer (Q-BERT top eigenvalue, {sens.num_examples} examples, "
                            f"{sens.device}; higher = keep more bits)", yaxis_title="top eigenvalue", height=320,
                      margin=dict(t=40))
    st.plotly_chart(fig, key="bits_hessian_fig")
    budget = st.number_input("Budget (MB, whole model)", min_value=0.5,
                             value=float(round(ev.baseline.size.mb / 2, 1)), step=0.5, key="bits_budget")
    if st.button("Allocate bits for this budget", key="bits_allocate"):
        allocation = sensitivity.allocate_bits(sens.mean, float(budget), ev.adapter, base=state.recipe())
        from analysis.core.recipe import Recipe

        recipe = Recipe.from_dict(allocation.recipe).replace(name=f"Hessian allocation, {budget:g} MB")
        if state.set_recipe(recipe, ev.adapter):
            st.success(f"Bits per layer {allocation.bits}: {allocation.size_mb:.1f} MB (budget {budget:g} MB).")


def _real(ev) -> None:
    from analysis.measure.lowbit import real_quantize

    mode = st.radio("Really quantised model", ["int8", "bf16"], key="bits_real_mode", horizontal=True,
                    help="int8: int8 weights + dynamic int8 activations (Q8BERT), CPU kernels")
    if ev.device.type != "cpu" and mode == "int8":
        st.info("int8 kernels run on the CPU only.")
        return
    if st.button("Build and measure", key="bits_real_run"):
        with st.spinner(f"Building the {mode} model and timing it ..."):
            fp32 = real_quantize(ev.loaded.model, "fp32", evaluator=ev, device=ev.device, repeats=3)
            result = real_quantize(ev.loaded.model, mode, evaluator=ev, device=ev.device, repeats=3)
        st.session_state[state.BITS_REAL] = (fp32.to_dict(), result.to_dict())
    if state.BITS_REAL in st.session_state:
        import pandas as pd

        rows = [{"model": d["mode"], "backend": d["backend"], d.get("metric_name") or "metric": d.get("metric"),
                 "agreement with fp32": d.get("agreement_with_fp32"), "size (MB, serialized)": d["serialized_mb"],
                 "ms / batch": round(d["latency"].get("ms_per_batch", float("nan")), 1),
                 "batch": f"{d['latency'].get('batch_size')} x {d['latency'].get('seq_len')}",
                 "device": f"{d['latency'].get('device')}, {d['latency'].get('threads')} threads"}
                for d in st.session_state[state.BITS_REAL]]
        st.dataframe(pd.DataFrame(rows), hide_index=True)
        st.caption("Measured: real low-precision kernels, not simulated. Size is the serialized state dict.")


def backend_rows(choice, ev, report) -> list[dict]:
    """A `BackendReport` as Trade-offs rows: one per backend, latency at the first shape timed."""
    from analysis.measure.timing import NO_CHANGE

    recipe = report.recipe
    label = "baseline" if not recipe["masked_heads"] and not recipe["dropped_layers"] else \
        f"{len(recipe['masked_heads'])} heads masked, layers {recipe['dropped_layers']} dropped"
    base = ev.baseline.metric
    rows = []
    for r in report.results:
        lat = r.latency[0]
        lo, hi = lat["ratio_ci95"]
        rows.append({
            "recipe": label, "backend": r.backend, "metric_name": r.metric_name or ev.baseline.metric_name,
            "metric": r.metric, "change_pts": None if r.metric is None or base is None else 100 * (r.metric - base),
            "agreement": r.agreement_with_baseline, "size_mb": r.size_bytes / 1e6,
            "pct_of_baseline_size": 100 * r.size_bytes / report.baseline_size_bytes,
            "front_ratio": 1.0 if lat["verdict"] == NO_CHANGE else lat["ratio"],
            "latency_label": f"{lat['ratio']:.2f}x [{lo:.2f}-{hi:.2f}] {lat['verdict']} ({lat['shape']}, "
                             f"{lat['threads']} threads)",
            "load_average": lat["load_average"], "examples": r.num_examples, "device": "cpu",
            "url recipe": state.encode_recipe(Recipe.from_dict(recipe)),
        })
    return rows


def _backends(choice, ev) -> None:
    """ONNX Runtime as a real backend: the current recipe's structure on four backends, measured."""
    import pandas as pd

    from analysis.measure.backends import compare_backends, table_rows
    from analysis.measure.latency import structural_part

    if ev.device.type != "cpu":
        st.info("The backends comparison runs on the CPU (ONNX Runtime's CPU provider, torch int8).")
        return
    recipe = structural_part(state.recipe())
    st.caption(f"The current recipe's heads and layers ({recipe.describe()}) built as torch fp32, torch int8, "
               "ONNX Runtime fp32 and ONNX Runtime int8; each timed against the unmodified torch fp32 model, "
               "interleaved. Bits of the recipe are replaced by each backend's own.")
    if st.button("Compare backends", key="bits_backends_run"):
        import torch

        shape = (32, ev.typical_seq_len)
        with st.spinner("Exporting to ONNX, scoring and timing four backends ..."):
            report = compare_backends(ev, recipe, shapes=[shape], threads=[torch.get_num_threads()], rounds=8)
        st.session_state[state.BITS_BACKENDS] = table_rows(report)
        rows = st.session_state.setdefault(state.BACKENDS, {}).setdefault(choice.key(), [])
        new = backend_rows(choice, ev, report)
        keys = {(r["url recipe"], r["backend"]) for r in new}
        rows[:] = [r for r in rows if (r["url recipe"], r["backend"]) not in keys] + new  # re-measured: replaced
    if state.BITS_BACKENDS in st.session_state:
        st.dataframe(pd.DataFrame(st.session_state[state.BITS_BACKENDS]), hide_index=True, key="bits_backends_table")
        st.caption("Measured: real kernels on this CPU; time x torch fp32 is the median of per-round ratios with its "
                   "95% interval. These rows also appear on Trade-offs, one per backend.")


def render() -> None:
    st.title("Bits")
    st.caption("Fewer bits per weight. The live panel is **simulated** (fake-quantised weights in fp32 maths: "
               "the metric is faithful, the latency is not); the last section builds a **real** model and measures it.")
    ctx = widgets.context()
    if ctx is None:
        return
    choice, ev = ctx
    L = ev.adapter.num_layers

    @st.fragment
    def live():
        _controls(L, ev.adapter)
        widgets.metrics_panel(choice)
        state.sync_query_params()

    with widgets.guard():
        widgets.preset_picker(choice, ev, key="bits_preset")
    live()
    with st.expander("Hessian sensitivity and allocation for a size budget", expanded=False):
        with widgets.guard():
            _sensitivity(choice, ev, L)
    with st.expander("Measured: a really quantised model on this machine", expanded=False):
        with widgets.guard():
            _real(ev)
    with st.expander("Measured: deployment backends (torch, ONNX Runtime)", expanded=False):
        with widgets.guard():
            _backends(choice, ev)


if __name__ == "__main__":  # run by st.navigation as this page's script
    render()
