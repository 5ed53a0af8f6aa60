"""Profile: where the parameters, the FLOPs and the time go, per component, under the recipe.

Parameters and FLOPs are counted; milliseconds are measured on this machine (analysis.measure.profile:
Headroom's forward with a stopwatch timing each component's block). Lines: time and FLOPs vs sequence length.
"""

from __future__ import annotations

import streamlit as st
import torch

from dashboard import state, widgets


def component_table(df):
    """The per-component report in units a reader takes in at a glance (M params, GFLOPs, ms, %)."""
    import pandas as pd

    return pd.DataFrame({
        "component": df["component"],
        "parameters (M)": (df["params"] / 1e6).round(2),
        "GFLOPs (counted)": (df["flops"] / 1e9).round(2),
        "time (ms, measured)": df["ms"].round(1),
        "% of parameters": (100 * df["share_of_params"]).round(1),
        "% of FLOPs": (100 * df["share_of_flops"]).round(1),
        "% of time": (100 * df["share_of_time"]).round(1),
        "GFLOP/s": df["gflops_per_s"].round(1),
    })


def counted_table(adapter, recipe, batch_size: int, seq_len: int):
    """Parameters and FLOPs per component, counted (nothing runs), for the baseline and under `recipe`."""
    import pandas as pd

    from analysis.core.recipe import Recipe
    from analysis.measure.flops import COMPONENTS, count_flops, count_parameters, flops_by_component

    def params(r):
        by = dict.fromkeys(COMPONENTS, 0)
        for row in count_parameters(adapter, r):
            by[row.component] += row.params
        return by

    base_p, rec_p = params(Recipe()), params(recipe)
    base_f = flops_by_component(count_flops(adapter, Recipe(), batch_size, seq_len))
    rec_f = flops_by_component(count_flops(adapter, recipe, batch_size, seq_len))
    rows = [{"component": c, "parameters (M), baseline": base_p[c] / 1e6, "parameters (M), recipe": rec_p[c] / 1e6,
             "GFLOPs, baseline": base_f.get(c, 0) / 1e9, "GFLOPs, recipe": rec_f.get(c, 0) / 1e9} for c in COMPONENTS]
    df = pd.DataFrame(rows)
    total = {"component": "total", **{k: df[k].sum() for k in df.columns if k != "component"}}
    return pd.concat([df, pd.DataFrame([total])], ignore_index=True).round(3)


def _counted(adapter, recipe, batch_size: int, seq_len: int) -> None:
    """Counted at once under the current recipe (no timing): parameters and FLOPs against the baseline."""
    from dashboard.widgets import recipe_label

    df = counted_table(adapter, recipe, batch_size, seq_len)
    total = df.iloc[-1]
    c1, c2 = st.columns(2)
    is_base = recipe.is_baseline()
    c1.metric("parameters · counted", f"{total['parameters (M), recipe']:.2f} M",
              delta=None if is_base else f"{100 * total['parameters (M), recipe'] / total['parameters (M), baseline']:.0f}% of baseline",
              delta_color="off", delta_arrow="off", help="Counted from the shapes the recipe keeps (heads, FFN neurons, "
              "layers, low-rank factors, factorised embeddings); zeros of magnitude sparsity still count.")
    c2.metric(f"GFLOPs · counted, batch {batch_size} x {seq_len}", f"{total['GFLOPs, recipe']:.2f}",
              delta=None if is_base else f"{100 * total['GFLOPs, recipe'] / total['GFLOPs, baseline']:.0f}% of baseline",
              delta_color="off", delta_arrow="off", help="One forward pass, 2 FLOPs per multiply-add "
              "(analysis/measure/flops.py); dense kernels multiply sparse zeros too.")
    st.caption(f"Counted under the session recipe: **{recipe_label(recipe)}** (edit it on Heads, Layers, Bits or "
               "Weights; the link carries it).")
    with st.expander("Parameters and FLOPs per component: baseline vs recipe", expanded=False):
        st.dataframe(df, hide_index=True, key="prof_counted")


def render() -> None:
    st.title("Profile")
    st.caption("Where the parameters, FLOPs and time go, under the current recipe: counted at once, timed on "
               "**Profile**.")
    ctx = widgets.context()
    if ctx is None:
        return
    choice, ev = ctx
    from analysis.measure.profile import profile_model
    from analysis.measure.profile_sweeps import sweep_seq_len

    recipe = state.recipe()
    c1, c2, c3 = st.columns(3)
    batch_size = c1.select_slider("Batch size", [1, 8, 32, 64], value=32, key="prof_batch")
    seq_len = c2.select_slider("Sequence length", [16, 32, 64, 128, 256], value=min(128, ev.max_length), key="prof_seq")
    run = c3.button("Profile", type="primary", key="prof_run", width="stretch")
    with widgets.guard():
        _counted(ev.adapter, recipe, batch_size, seq_len)
    key = (choice.key(), recipe.key(), batch_size, seq_len)
    reports = st.session_state.setdefault(state.PROFILES, {})
    with widgets.guard():
        if run:
            with st.spinner(f"Timing every component ({batch_size} x {seq_len}) ..."):
                reports[key] = profile_model(ev.loaded, recipe, batch_size, seq_len, device=ev.device, repeats=3,
                                             materialized=False)
        report = reports.get(key)
        if report is None:
            st.info("Press **Profile** to count parameters and FLOPs and to time each component on this machine.")
            return
        df = report.by_component()
        st.caption(f"Recipe: {recipe.describe()} · {report.mode} forward on **{report.device}**, {report.threads} threads, "
                   f"{report.dtype}, batch {report.batch_size} x {report.seq_len} tokens · whole forward "
                   f"{report.forward_ms:.1f} ms (median of {report.repeats}), components sum to "
                   f"{100 * report.coverage:.0f}% of it")
        import plotly.graph_objects as go

        fig = go.Figure()
        for _, row in df.iterrows():
            fig.add_bar(name=row["component"], x=["parameters", "FLOPs (counted)", "time (measured)"],
                        y=[row["share_of_params"] * 100, row["share_of_flops"] * 100, row["share_of_time"] * 100],
                        customdata=[[f"{row['params'] / 1e6:.2f} M"], [f"{row['flops'] / 1e9:.2f} GFLOPs"],
                                    [f"{row['ms']:.1f} ms"]],
                        hovertemplate="%{x}: %{y:.1f}% (%{customdata[0]})<extra>" + row["component"] + "</extra>")
        fig.update_layout(barmode="stack", yaxis_title="share (%)", height=440, margin=dict(t=40),
                          title=f"Where it goes ({report.device}, batch {report.batch_size} x {report.seq_len})",
                          legend=dict(traceorder="normal"))
        st.plotly_chart(fig, key="prof_bars")
        st.dataframe(component_table(df), hide_index=True, key="prof_table")

        st.subheader("Against sequence length")
        sweeps = st.session_state.setdefault(state.PROFILE_SWEEP, {})
        sweep_key = (choice.key(), recipe.key())
        if st.button("Sweep sequence lengths (16 ... 256)", key="prof_sweep"):
            with st.spinner("Timing each sequence length ..."):
                sweeps[sweep_key] = sweep_seq_len(
                    ev.loaded, recipe, seq_lens=(16, 32, 64, 128, 256), batch_size=8, device=ev.device, repeats=2)
        sweep = sweeps.get(sweep_key)
        if sweep is None:
            st.caption("Press the sweep to time every component at 16, 32, 64, 128 and 256 tokens (batch 8).")
        else:
            from plotly.subplots import make_subplots

            fig = make_subplots(rows=1, cols=2, subplot_titles=("measured ms", "counted GFLOPs"))
            for i, (component, part) in enumerate(sweep.groupby("component", sort=False)):
                color = f"hsl({(i * 47) % 360},60%,45%)"
                fig.add_scatter(x=part["seq_len"], y=part["ms"], name=component, legendgroup=component,
                                line=dict(color=color), row=1, col=1)
                fig.add_scatter(x=part["seq_len"], y=part["flops"] / 1e9, name=component, legendgroup=component,
                                line=dict(color=color), showlegend=False, row=1, col=2)
            seq_lens = sorted(sweep["seq_len"].unique())
            fig.update_xaxes(title_text="sequence length (tokens)", type="log", tickvals=seq_lens,
                             ticktext=[str(n) for n in seq_lens])
            fig.update_layout(height=420, margin=dict(t=40),
                              title=f"batch 8 on {sweep['device'].iloc[0]}, {sweep['threads'].iloc[0]} threads "
                                    f"(torch {torch.__version__})")
            st.plotly_chart(fig, key="prof_lines")


if __name__ == "__main__":  # run by st.navigation as this page's script
    render()
