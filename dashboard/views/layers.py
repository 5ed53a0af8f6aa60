"""Layers: drop whole encoder layers (Sajjad et al. 2023, "Poor Man's BERT").

Pick a strategy and k (top, bottom, alternate, symmetric, contribution) or tick layers by hand;
the live metrics panel follows. The sweep of every strategy at every k runs as a stoppable job.
"""

from __future__ import annotations

import streamlit as st

from dashboard import state, widgets


def _on_ticked(num_layers: int, adapter) -> None:
    dropped = [l for l in range(num_layers) if not st.session_state.get(state.layers_keep_key(l), True)]
    state.set_recipe(state.recipe().replace(dropped_layers=dropped, name=""), adapter)


def _by_hand(num_layers: int, adapter) -> None:
    recipe = state.recipe()
    for l in range(num_layers):
        st.session_state[state.layers_keep_key(l)] = l not in recipe.dropped_layers
    cols = st.columns(num_layers)
    for l, col in enumerate(cols):
        col.checkbox(f"L{l}", key=state.layers_keep_key(l), on_change=_on_ticked, args=(num_layers, adapter),
                     help=f"Untick to drop layer {l} (it becomes the identity)")


def _strategy(ev, num_layers: int) -> None:
    from analysis.methods.layers import STRATEGIES, dropped_layers_for, layer_contributions, max_k

    strategies = [s for s in STRATEGIES if s != "custom"]
    c1, c2, c3 = st.columns([2, 2, 1])
    strategy = c1.selectbox("Strategy", strategies, key="layers_strategy")
    k = c2.slider("k layers", 1, max(1, max_k(strategy, num_layers)), 1 if num_layers > 1 else 1, key="layers_k",
                  disabled=num_layers < 2)
    if c3.button("Apply", key="layers_apply", width="stretch"):
        contribution = None
        if strategy == "contribution":
            with st.spinner("Measuring each layer's [CLS] change ..."):
                contribution = layer_contributions(ev, 128)
        dropped = dropped_layers_for(strategy, int(k), num_layers, contribution=contribution)
        state.set_recipe(state.recipe().replace(dropped_layers=dropped, name=f"{strategy} k={k}"))


def _sweep(ev) -> None:
    from analysis.methods.layers import sweep

    job = widgets.get_job("layer sweep")
    if st.button("Run the sweep (every strategy, every k)", key="layers_sweep",
                 disabled=job is not None and not job.done):
        widgets.start_job("layer sweep", lambda j: sweep(ev, progress=j.report, cancel=j.cancel))
    job = widgets.job_status("layer sweep")
    if job is not None and job.done and job.result is not None:
        import plotly.graph_objects as go

        result = job.result
        fig = go.Figure()
        for strategy, by_k in result.table().items():
            ks = sorted(by_k)
            fig.add_scatter(x=ks, y=[100 * (by_k[k] or 0) for k in ks], mode="lines+markers", name=strategy)
        if result.baseline_metric is not None:
            fig.add_hline(y=100 * result.baseline_metric, line_dash="dot", annotation_text="baseline")
        fig.update_xaxes(dtick=1, tick0=0)  # whole k only
        fig.update_layout(xaxis_title="layers dropped (k)", yaxis_title=f"{result.metric_name} (%, simulated)",
                          height=380, margin=dict(t=30),
                          title=f"Layer dropping, {result.num_examples} examples of {result.data}")
        st.plotly_chart(fig, key="layers_sweep_fig")


def render() -> None:
    st.title("Layers")
    st.caption("Drop whole encoder layers (Sajjad et al. 2023): a dropped layer becomes the identity. "
               "Exact in simulation: the same logits as the materialized, smaller model. The figures here are "
               "one-shot: Sajjad et al. re-fine-tune after dropping — do that on the **Recovery** page (one "
               "epoch brings demo's top 2 layers dropped from 1.6% to 89%; see the README).")
    ctx = widgets.context()
    if ctx is None:
        return
    choice, ev = ctx
    L = ev.adapter.num_layers
    with widgets.guard():
        _strategy(ev, L)

    @st.fragment
    def live():
        st.markdown("**Layers kept** (untick to drop)")
        _by_hand(L, ev.adapter)
        widgets.metrics_panel(choice)
        state.sync_query_params()

    live()
    with st.expander("Sweep: every strategy at every k", expanded=False):
        with widgets.guard():
            _sweep(ev)


if __name__ == "__main__":  # run by st.navigation as this page's script
    render()
