"""Heads: which attention heads matter, and what masking them does (Michel et al. 2019).

Importance heatmap (method selector), an L x H grid to click heads off and on, presets (mask
the k least important, keep the best head per layer, random k, reset: the selections of
analysis.methods.selection), the pruning curve, and the live metrics panel. Importance and
curves run as stoppable background jobs.
"""

from __future__ import annotations

import streamlit as st

from analysis.core.recipe import Recipe
from dashboard import state, widgets

METHOD_HELP = {
    "michel": "Michel et al. 2019: mean over examples of |dL/d gate| per head, one backward per batch (fast)",
    "taylor": "TextPruner's |W_O * dL/dW_O| per head (a cross-check of michel)",
    "entropy": "mean attention entropy; diffuse heads count as less important (no labels needed)",
    "ablation": "metric drop when each head alone is masked (L x H evaluations, slowest)",
}


def _importance_controls(choice, ev) -> None:
    from analysis.methods.importance import METHODS, compute_importance

    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    method = c1.selectbox("Importance method", METHODS, key=state.HEADS_METHOD,
                          format_func=lambda m: f"{m} — {METHOD_HELP.get(m, '')}")
    job = widgets.get_job("importance")
    running = job is not None and not job.done
    if c2.button("Compute importance", key="heads_compute", disabled=running, width="stretch"):
        widgets.start_job("importance", lambda j: compute_importance(
            ev, method, Recipe(), progress=j.report, cancel=j.cancel))  # of the unpruned model
    widgets.job_status("importance")


def _collect_importance(choice) -> None:
    """A finished importance job's result becomes this model's importance (before the presets draw)."""
    job = widgets.get_job("importance")
    if job is not None and job.done and job.result is not None:
        state.set_importance(choice, job.result)


def _importance_heatmap(choice) -> None:
    imp = state.importance(choice)
    if imp is None:
        st.info("No importance yet: pick a method and press **Compute importance** to rank the heads "
                "and to use the importance presets.")
        return
    from dashboard.attention_view import head_stats_heatmap

    fig = head_stats_heatmap(imp.scores, f"Importance: {imp.method}",
                             imp.method + ("" if imp.higher_is_important else "<br>(high = less important)"))
    masked = state.recipe().masked_heads
    if masked:  # mark masked heads on the heatmap
        fig.add_scatter(x=[f"H{h}" for _, h in masked], y=[f"L{l}" for l, _ in masked], mode="markers",
                        marker=dict(symbol="x", size=14, color="white", line=dict(width=1, color="black")),
                        name="masked", hoverinfo="skip", showlegend=False)
    # fit the column: no digits in the cells (unreadable at this size), the hover has them
    fig.update_traces(texttemplate=None, colorbar=dict(thickness=12), selector=dict(type="heatmap"))
    fig.update_yaxes(scaleanchor=None)  # square cells would leave a sliver in this narrow column
    fig.update_layout(width=None, height=150 + 44 * len(imp.scores), margin=dict(t=60, l=50, r=10, b=10),
                      title=dict(font=dict(size=14)))
    st.plotly_chart(fig, width="stretch", key="heads_importance_fig")
    st.caption(f"{imp.what} · {imp.num_examples} examples · {imp.seconds:.1f} s on {imp.device}, "
               f"{imp.threads} threads · x = masked now")


def _presets(ev, L: int, H: int, choice) -> None:
    from analysis.methods.selection import all_but_best_head, all_heads, least_important_heads, random_heads

    imp = state.importance(choice)
    st.markdown("**Presets**")
    widgets.preset_picker(choice, ev, key="heads_preset")
    c1, c2, c3, c4 = st.columns(4)
    k = c1.number_input("k heads", min_value=1, max_value=L * H - 1, value=min(L * H // 4 or 1, L * H - 1),
                        key="heads_k")
    need = None if imp is not None else "Compute importance first."
    if c2.button("Mask k least important", key="heads_mask_k", disabled=imp is None, width="stretch", help=need):
        state.set_recipe(state.recipe().replace(masked_heads=least_important_heads(imp, int(k)),
                                                name=f"{imp.method}: {k} least important masked"), ev.adapter)
    if c3.button("Keep best head per layer", key="heads_best", disabled=imp is None, width="stretch", help=need):
        state.set_recipe(state.recipe().replace(masked_heads=all_but_best_head(imp),
                                                name=f"{imp.method}: best head per layer"), ev.adapter)
    if c4.button("Random k", key="heads_random", width="stretch"):
        seed = st.session_state.get(state.HEADS_SEED, 0)
        st.session_state[state.HEADS_SEED] = seed + 1
        state.set_recipe(state.recipe().replace(masked_heads=random_heads(all_heads(L, H), int(k), seed),
                                                name=f"random {k} heads (seed {seed})"), ev.adapter)


def _curve_job(job, ev, order: str, step: float, method: str, imp):
    """(PruneCurve, the importance it ranked by): importance first, reported, when none matches."""
    from analysis.methods.heads import prune_curve
    from analysis.methods.importance import compute_importance

    share = 0.0
    if order != "random" and (imp is None or imp.method != method):
        share = 0.25  # of the progress bar
        imp = compute_importance(ev, method, Recipe(), cancel=job.cancel,
                                 progress=lambda f, m="": job.report(share * f, f"importance ({method}): {m}"))
    curve = prune_curve(ev, order=order, step=step, method=method, seeds=2,
                        importance=imp if imp is not None and imp.method == method else None,
                        progress=lambda f, m="": job.report(share + (1 - share) * f, m), cancel=job.cancel)
    return curve, imp


def _curve_section(choice, ev) -> None:
    c1, c2, c3 = st.columns([2, 1, 1])
    order = c1.selectbox("Order", ["importance", "random", "reverse"], key="curve_order")
    step = c2.selectbox("Step", [0.1, 0.2, 0.05], key="curve_step", format_func=lambda s: f"{s:.0%} of heads")
    job = widgets.get_job("prune curve")
    if c3.button("Run pruning curve", key="curve_run", disabled=job is not None and not job.done,
                 width="stretch"):
        imp = state.importance(choice)
        method = st.session_state.get(state.HEADS_METHOD, "michel")
        widgets.start_job("prune curve", lambda j: _curve_job(j, ev, order, step, method, imp))
    job = widgets.job_status("prune curve")
    if job is not None and job.done and job.result is not None:
        curve, importance = job.result
        st.session_state.setdefault(state.CURVES, {})[(choice.key(), curve.order, curve.method)] = curve
        if importance is not None and state.importance(choice) is None:
            state.set_importance(choice, importance)  # the heatmap and the presets use it too
    curves = [c for (key, *_), c in st.session_state.get(state.CURVES, {}).items() if key == choice.key()]
    if curves:
        import plotly.graph_objects as go

        fig = go.Figure()
        for c in curves:
            label = c.order if c.order == "random" else f"{c.order} ({c.method})"
            fig.add_scatter(x=[100 * f for f in c.fractions], y=[100 * m for m in c.metric], mode="lines+markers",
                            name=label, error_y=dict(array=[100 * s for s in c.metric_std], visible=c.order == "random"))
        fig.add_hline(y=100 * curves[0].baseline, line_dash="dot", annotation_text="baseline")
        fig.update_layout(xaxis_title="heads masked (%)", yaxis_title=f"{curves[0].metric_name} (%, simulated)",
                          height=380, margin=dict(t=30), title=f"Pruning curve ({curves[0].num_examples} examples)")
        st.plotly_chart(fig, key="curve_fig")


def render() -> None:
    st.title("Heads")
    st.caption("Mask attention heads and watch the metrics (Michel, Levy & Neubig 2019, "
               "\"Are Sixteen Heads Really Better than One?\").")
    ctx = widgets.context()
    if ctx is None:
        return
    choice, ev = ctx
    L, H = ev.adapter.num_layers, ev.adapter.num_heads

    @st.fragment
    def live():
        widgets.metrics_panel(choice)
        grid, heat = st.columns([5, 3], gap="medium")
        with grid:
            widgets.head_grid(L, H, state.recipe().dropped_layers)
        with heat:
            with widgets.guard():
                _importance_heatmap(choice)
        state.sync_query_params()

    _collect_importance(choice)
    with widgets.guard():
        _presets(ev, L, H, choice)
        _importance_controls(choice, ev)
    live()
    with st.expander("Pruning curve: mask heads step by step", expanded=False):
        with widgets.guard():
            _curve_section(choice, ev)


if __name__ == "__main__":  # run by st.navigation as this page's script
    render()
