"""Trade-offs: every recipe evaluated in this session, the Pareto front, two recipes compared.

Accuracy vs size and accuracy vs latency, with the baseline and the Pareto front
(analysis.measure.pareto: no other recipe is both smaller/faster and at least as accurate; one
point per recipe key). Latency is the deployed model's time over the baseline's, timed
interleaved in one run (analysis/measure/latency.py), 1.00 where the change is within noise.
Real-kernel backends measured on the Bits page (ONNX Runtime fp32/int8, torch int8) are rows of
their own. Downloads: the table as CSV, a recipe as
JSON, and the materialized model (analysis.core.materialize) as a zip plain transformers can load.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from analysis.core.recipe import Recipe
from analysis.measure.pareto import pareto_front
from dashboard import resources, state, widgets


#: the latency cost on the front: the deployed model's time / the baseline's, timed interleaved
#: in one run; 1.00 where the change is within noise (or bits run fp32 kernels), so two identical
#: recipes never show two speeds
LATENCY_COL = "latency x baseline (measured)"


def session_table(choice) -> tuple[pd.DataFrame, dict]:
    """One row per recipe evaluated on the current model and data in this session, then one per
    real-kernel backend measured on the Bits page (ONNX Runtime, torch int8: rows of their own)."""
    history = st.session_state.setdefault(state.HISTORY, {})
    history.setdefault((choice.key(), Recipe().key()), Recipe())
    rows, recipes = [], {}
    base = resources.evaluate(choice, Recipe())
    for (choice_key, _), recipe in list(history.items()):
        if choice_key != choice.key():
            continue
        res = resources.evaluate(choice, recipe)
        label = recipe.name or recipe.describe()
        recipes[label] = (recipe, res)
        lat = resources.latency(choice, recipe)
        rows.append({
            "recipe": label,
            res.metric_name: res.metric,
            "change (pts)": None if res.metric is None else 100 * (res.metric - base.metric),
            "agreement": res.agreement,
            "size MB": res.size.mb,
            "% of baseline size": 100 * res.size.fraction_of_baseline,
            LATENCY_COL: lat.front_ratio,
            "latency (interleaved with baseline)": lat.label(),
            "latency predicted (FLOPs)": lat.predicted_ratio,
            "load": lat.load_average,
            "backend": "Headroom recipe (simulated metric)",
            "examples": res.num_examples,
            "device": res.device,
            "url recipe": state.encode_recipe(recipe),
        })
    rows += backend_rows(choice)
    return pd.DataFrame(rows), recipes


def backend_rows(choice) -> list[dict]:
    """The Bits page's real-backend measurements (analysis.measure.backends) as Trade-offs rows."""
    out = []
    for row in st.session_state.get(state.BACKENDS, {}).get(choice.key(), []):
        out.append({
            "recipe": f"{row['recipe']} · {row['backend']}",
            row["metric_name"]: row["metric"],
            "change (pts)": row["change_pts"],
            "agreement": row["agreement"],
            "size MB": row["size_mb"],
            "% of baseline size": row["pct_of_baseline_size"],
            LATENCY_COL: row["front_ratio"],
            "latency (interleaved with baseline)": row["latency_label"],
            "latency predicted (FLOPs)": None,
            "load": row["load_average"],
            "backend": f"{row['backend']} (measured metric, size on disk)",
            "examples": row["examples"],
            "device": row["device"],
            "url recipe": f"{row['url recipe']}|{row['backend']}",  # one key per (recipe, backend)
        })
    return out


def _scatter(df: pd.DataFrame, metric: str, xcol: str, title: str, key: str) -> None:
    import plotly.graph_objects as go

    d = df.dropna(subset=[xcol, metric])
    if d.empty:
        return
    x, y = d[xcol].to_numpy(float), 100 * d[metric].to_numpy(float)
    front = pareto_front(metric=y, cost=x, keys=list(d["url recipe"]))
    fig = go.Figure()
    fig.add_scatter(x=x, y=y, mode="markers", name="recipes", text=d["recipe"],
                    marker=dict(size=10, color="#4c78a8"), hovertemplate="%{text}<br>%{x:.2f}, %{y:.1f}%<extra></extra>")
    fig.add_scatter(x=x[front], y=y[front], mode="lines+markers", name="Pareto front",
                    line=dict(color="#e45756", dash="dash"), marker=dict(size=12, color="#e45756", symbol="diamond"))
    is_base = d["recipe"] == Recipe().describe()
    if is_base.any():
        fig.add_scatter(x=x[is_base.to_numpy()], y=y[is_base.to_numpy()], mode="markers", name="baseline",
                        marker=dict(size=16, color="black", symbol="star"))
    fig.update_layout(title=title, xaxis_title=xcol, yaxis_title=f"{metric} (%, simulated)", height=380,
                      margin=dict(t=40), legend=dict(orientation="h", y=-0.25))
    st.plotly_chart(fig, key=key)


def _compare(choice, ev, recipes: dict) -> None:
    names = list(recipes)
    if len(names) < 2:
        st.info("Evaluate at least two recipes (toggle heads, drop layers, pick bits) to compare them.")
        return
    c1, c2 = st.columns(2)
    a = c1.selectbox("Recipe A", names, index=0, key="cmp_a")
    b = c2.selectbox("Recipe B", names, index=len(names) - 1, key="cmp_b")
    (ra, res_a), (rb, res_b) = recipes[a], recipes[b]
    for col, recipe, res in ((c1, ra, res_a), (c2, rb, res_b)):
        col.metric(f"{res.metric_name} (simulated)", "n/a" if res.metric is None else f"{100 * res.metric:.1f}%")
        col.metric("size", f"{res.size.mb:.1f} MB ({100 * res.size.fraction_of_baseline:.0f}%)")
        col.caption(recipe.describe())
    differ = np.flatnonzero(res_a.predictions != res_b.predictions)
    st.markdown(f"**{len(differ)} of {res_a.num_examples} examples** get different predictions.")
    if len(differ):
        names_ = ev.dataset.label_names
        rows = [{"text": ev.dataset.texts[i][:160],
                 "true": names_[ev.labels[i]] if ev.labels is not None else "",
                 f"A: {a[:30]}": names_[res_a.predictions[i]], f"B: {b[:30]}": names_[res_b.predictions[i]]}
                for i in differ[:200]]
        st.dataframe(pd.DataFrame(rows), hide_index=True, key="cmp_table")


def _materialized_zip(ev, recipe: Recipe) -> bytes:
    from analysis.core.materialize import materialize, save_materialized

    model = materialize(ev.loaded.model, recipe)
    with tempfile.TemporaryDirectory() as tmp:
        save_materialized(model, ev.loaded.tokenizer, tmp, recipe)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
            for f in sorted(Path(tmp).iterdir()):
                z.write(f, f"headroom-model/{f.name}")
    return buffer.getvalue()


def render() -> None:
    st.title("Trade-offs")
    st.caption("Every recipe evaluated in this session on the current model and data.")
    ctx = widgets.context()
    if ctx is None:
        return
    choice, ev = ctx
    with widgets.guard():
        if st.button("Evaluate the four demo presets too", key="to_presets",
                     help="Sixteen Heads ranks heads by this session's importance (Michel's is computed if none)"):
            from analysis.methods.presets import PRESETS

            history = st.session_state.setdefault(state.HISTORY, {})
            recipes = [widgets.preset_recipe(choice, ev, name) for name in PRESETS]
            with st.spinner("Evaluating the presets ..."):
                for recipe in recipes:
                    resources.evaluate(choice, recipe)
                    resources.latency(choice, recipe)
                    history[(choice.key(), recipe.key())] = recipe
        df, recipes = session_table(choice)
        if df.empty:
            st.info("No recipe evaluated yet: change something on the Heads, Layers or Bits page.")
            return
        metric = ev.baseline.metric_name
        c1, c2 = st.columns(2)
        with c1:
            _scatter(df, metric, "size MB", "Accuracy vs size (predicted from bits)", "to_size")
        with c2:
            _scatter(df, metric, LATENCY_COL, f"Accuracy vs time x baseline (measured interleaved on {ev.device}; "
                     "1.00 = no measurable change)", "to_latency")
        st.dataframe(df.round(3), hide_index=True, key="to_table")
        d1, d2, d3 = st.columns(3)
        d1.download_button("Download the table (CSV)", df.to_csv(index=False).encode(), "headroom_recipes.csv",
                           "text/csv", key="to_csv")
        pick = d2.selectbox("Recipe to export", list(recipes), key="to_pick", label_visibility="collapsed")
        d2.download_button("Download recipe (JSON)", recipes[pick][0].to_json().encode(), "recipe.json",
                           "application/json", key="to_json")
        if d3.button("Build the materialized model", key="to_build"):
            with st.spinner("Slicing heads, removing layers, saving safetensors ..."):
                st.session_state[state.MODEL_ZIP] = (pick, _materialized_zip(ev, recipes[pick][0]))
        built = st.session_state.get(state.MODEL_ZIP)
        if built and built[0] == pick:
            d3.download_button(f"Download model zip ({len(built[1]) / 1e6:.1f} MB)", built[1], "headroom-model.zip",
                               "application/zip", key="to_zip_dl")
        st.subheader("Compare two recipes")
        _compare(choice, ev, recipes)


if __name__ == "__main__":  # run by st.navigation as this page's script
    render()
