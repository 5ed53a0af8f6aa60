"""Trade-offs: every recipe evaluated in this session, the Pareto front, two recipes compared.

Beside the session's own rows, the results store's rows of the same model and data (matched by
fingerprint; dashboard/history.py): earlier dashboard sessions, the CLI, sweeps, the search and
recovery, each with its source and store id, filtered by source, deletable from the store; a
stored recipe can be exported or made current again after a restart, and a stored row that kept its
per-example predictions on this session's very examples (same data fingerprint, same count) can be
compared with any other; Compare never sets two example sets side by side.

Accuracy vs size and accuracy vs latency, with the baseline and the Pareto front
(analysis.measure.pareto: no other recipe is both smaller/faster and at least as accurate; one
point per recipe key). Latency is the deployed model's time over the baseline's, timed
interleaved in one run (analysis/measure/latency.py), 1.00 where the change is within noise.
Real-kernel backends measured on the Bits page (ONNX Runtime fp32/int8, torch int8) are rows of
their own. Downloads: the table as CSV and as Parquet (the same rows), a recipe as
JSON, and the materialized model (analysis.core.materialize) as a zip plain transformers can load.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from analysis.core.recipe import Recipe
from analysis.measure.pareto import pareto_front
from analysis.measure.size import MB_DECIMALS
from dashboard import history as store_history
from dashboard import resources, state, widgets


#: the latency cost on the front: the deployed model's time / the baseline's, timed interleaved
#: in one run; 1.00 where the change is within noise (or bits run fp32 kernels), so two identical
#: recipes never show two speeds
LATENCY_COL = "latency x baseline (measured)"


@dataclass(frozen=True)
class StoredSize:
    mb: float | None
    fraction_of_baseline: float | None


@dataclass(frozen=True)
class StoredResult:
    """What Compare reads of an EvalResult, rebuilt from a stored row that kept its predictions."""

    metric_name: str | None
    metric: float | None
    size: StoredSize
    predictions: np.ndarray  # (N,) class ids in the dataset's order
    num_examples: int


#: why a stored row is not offered to Compare (the page says it in one sentence)
NO_PREDICTIONS = "stored without per-example predictions"
OTHER_EXAMPLES = "from another example set"
UNREADABLE = "written by another Headroom version"


def _is_baseline(record) -> bool:
    try:
        return Recipe.from_dict(record.recipe).is_baseline()
    except Exception:  # noqa: BLE001 - a row written by another version
        return False


def comparable(record, data_fp: str, num_examples: int) -> StoredResult | str:
    """The StoredResult Compare can use, or why not (one of the reasons above). A row counts only when it was
    evaluated on exactly this session's examples: the same data fingerprint and one prediction per example."""
    if record.predictions is None:
        return NO_PREDICTIONS
    if (record.data_fingerprint != data_fp or record.num_examples != num_examples
            or len(record.predictions) != num_examples):
        return OTHER_EXAMPLES
    size = record.size or {}
    return StoredResult(metric_name=record.metric_name, metric=record.metric,
                        size=StoredSize(mb=record.size_mb, fraction_of_baseline=size.get("fraction_of_baseline")),
                        predictions=record.predictions, num_examples=record.num_examples)


def session_table(choice) -> tuple[pd.DataFrame, dict]:
    """One row per recipe evaluated on the current model and data in this session, then one per
    real-kernel backend measured on the Bits page (ONNX Runtime, torch int8: rows of their own), and
    the recipes by `Recipe.key()` ({key: (recipe, result, label)}): two recipes with the same name stay two."""
    history = st.session_state.setdefault(state.HISTORY, {})
    history.setdefault((choice.key(), Recipe().key()), Recipe())
    rows, recipes = [], {}
    base = resources.evaluate(choice, Recipe())
    store_history.add(choice, Recipe())  # the baseline is a stored row too (the reference of every other)
    written = st.session_state.get(state.STORE_WRITTEN, {})
    entries = [recipe for (choice_key, _), recipe in list(history.items()) if choice_key == choice.key()]
    labels = [widgets.recipe_label(r) for r in entries]
    for recipe, label in zip(entries, labels):
        if labels.count(label) > 1:  # the same words for different recipes: the link's code tells them apart
            label = f"{label} [r={state.encode_recipe(recipe)}]"
        res = resources.evaluate(choice, recipe)
        recipes[recipe.key()] = (recipe, res, label)
        lat = resources.latency(choice, recipe)
        rows.append({
            "recipe": label,
            res.metric_name: res.metric,
            "change (pts)": None if res.metric is None else round(100 * (res.metric - base.metric), 2),
            "agreement": res.agreement,
            "size MB": res.size.mb,
            "% of baseline size": 100 * res.size.fraction_of_baseline,
            LATENCY_COL: lat.front_ratio,
            "latency (interleaved with baseline)": lat.label(),
            "latency predicted (FLOPs)": lat.predicted_ratio,
            "load": lat.load_average,
            "backend": "Headroom recipe (simulated metric)",
            "source": store_history.SOURCE,
            "stored id": written.get((choice.key(), recipe.key())),
            "examples": res.num_examples,
            "device": res.device,
            "url recipe": state.encode_recipe(recipe),
        })
    rows += backend_rows(choice)
    return pd.DataFrame(rows), recipes


def stored_table(choice, base, session_ids: set, recipes: dict, candidates: dict | None = None) -> pd.DataFrame:
    """The results store's rows for this model and data (every source) that are not this session's own:
    earlier dashboard sessions, the CLI, sweeps, the search, recovery. One row per (source, recipe,
    mode, dtype): the newest. Latency only where the row has a ratio timed against the baseline.
    Each stored recipe not in the session joins `recipes` as (recipe, None, label): it can be exported
    and made current (its result is computed then). `candidates` gets {stored id: (recipe, StoredResult,
    label)} for the rows Compare can use, or {stored id: reason} for those it cannot (`comparable`)."""
    rows, seen = [], set()
    candidates = {} if candidates is None else candidates
    data_fp = store_history.fingerprints(choice)[1] if store_history.problem() is None else None
    for r in store_history.stored_rows(choice):
        ident = (r.source, r.recipe_key, r.mode, r.dtype)
        if r.id in session_ids or ident in seen:
            continue
        if r.source == store_history.SOURCE and r.data_fingerprint == data_fp and _is_baseline(r):
            continue  # an earlier session's baseline on these examples: the session's own baseline row
        seen.add(ident)
        try:
            recipe = Recipe.from_dict(r.recipe)
            code = state.encode_recipe(recipe)
            label = widgets.recipe_label(recipe)
            recipes.setdefault(recipe.key(), (recipe, None, f"{label} [{r.source} #{r.id}]"))
            found = comparable(r, data_fp, base.num_examples)
            candidates[r.id] = found if isinstance(found, str) else (recipe, found, f"{label} [{r.source} #{r.id}]")
        except Exception:  # noqa: BLE001 - a row written by another version: shown by its description
            code, label = "?", r.description
            candidates[r.id] = UNREADABLE
        lat = r.latency or {}
        size = r.size or {}
        rows.append({
            "recipe": f"{label} [{r.source} #{r.id}]",
            base.metric_name: r.metric,
            "change (pts)": None if r.metric is None or base.metric is None else round(100 * (r.metric - base.metric), 2),
            "agreement": r.agreement,
            "size MB": r.size_mb,
            "% of baseline size": None if size.get("fraction_of_baseline") is None else 100 * size["fraction_of_baseline"],
            LATENCY_COL: lat.get("front_ratio"),
            "latency (interleaved with baseline)": None,
            "latency predicted (FLOPs)": lat.get("predicted_ratio"),
            "load": lat.get("load_average"),
            "backend": f"stored {r.mode} ({r.created_at})",
            "source": r.source,
            "stored id": r.id,
            "examples": r.num_examples,
            "device": r.device,
            "url recipe": f"{code}|{r.source}#{r.id}",  # one key per stored row
        })
    return pd.DataFrame(rows)


def _stored_controls(choice, df: pd.DataFrame) -> None:
    """Delete stored rows (the results store's, of every source); this session's in-memory rows stay."""
    ids = [int(i) for i in df["stored id"].dropna()] if "stored id" in df else []
    if not ids:
        return
    labels = dict(zip(df["stored id"], df["recipe"]))
    with st.expander(f"Delete stored rows ({len(ids)} shown here are in the results store)"):
        pick = st.multiselect("Rows to delete from the results store", ids, key="to_delete_pick",
                              format_func=lambda i: f"#{i} · {labels.get(i, '')}"[:120])
        if st.button("Delete from the store", key="to_delete", disabled=not pick, type="secondary",
                     help="Removes the rows from the results store file (every source); this session's own rows "
                          "stay in its memory until a restart."):
            n = store_history.delete(pick)
            st.toast(f"Deleted {n} row{'s' if n != 1 else ''} from the results store.")
            st.rerun()


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
            "source": store_history.SOURCE,  # measured in this session (not written to the store)
            "stored id": None,
            "examples": row["examples"],
            "device": row["device"],
            "url recipe": f"{row['url recipe']}|{row['backend']}",  # one key per (recipe, backend)
        })
    return out


def _source_filter(df: pd.DataFrame) -> pd.DataFrame:
    """Which sources the table and the charts show (the baseline row always: it is the reference)."""
    found = [s for s in df["source"].dropna().unique() if s not in store_history.SOURCES]
    options = list(store_history.SOURCES) + sorted(found)
    picked = st.pills("Sources", options, selection_mode="multi", default=options, key="to_sources",
                      help="dashboard: this session and earlier ones; cli: headroom evaluate; sweep, search, "
                           "recovery: their runs. Rows come from the results store of this model and data.")
    keep = df["source"].isin(picked or []) | df["source"].isna() | (df["url recipe"] == "")
    return df[keep].reset_index(drop=True)


def _scatter(df: pd.DataFrame, metric: str, xcol: str, title: str, key: str, from_zero: bool) -> None:
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
    is_base = (d["url recipe"] == "").to_numpy()
    if is_base.any():
        fig.add_scatter(x=x[is_base], y=y[is_base], mode="markers", name="baseline",
                        marker=dict(size=16, color="black", symbol="star"))
    if x.size and x.max() - x.min() < 0.01 * max(abs(x.max()), 1e-9):  # all at one x: a readable axis around it
        fig.update_xaxes(range=[x.min() - 0.05 * abs(x.max()) - 0.05, x.max() + 0.05 * abs(x.max()) + 0.05])
    if from_zero:
        fig.update_yaxes(range=[0, 100.5])
    else:  # zoom to the data: 91-93% must not be a flat line
        pad = max(0.5, 0.08 * (y.max() - y.min()))
        fig.update_yaxes(range=[max(0.0, y.min() - pad), min(100.5, y.max() + pad)])
    fig.update_layout(title=title, xaxis_title=xcol, yaxis_title=f"{metric} (%, simulated)", height=380,
                      margin=dict(t=40), legend=dict(orientation="h", y=-0.25))
    st.plotly_chart(fig, key=key)


def compare_choices(recipes: dict, candidates: dict, shown_ids: set) -> tuple[dict, str | None]:
    """What Compare offers: this session's recipes (their predictions are in memory) and the stored rows shown
    in the table that kept predictions on these examples (keyed "stored #id"); and one sentence saying which
    shown stored rows are left out, and why (None when none is)."""
    offered = {k: v for k, v in recipes.items() if v[1] is not None}
    left_out: dict[str, int] = {}
    for row_id, found in candidates.items():
        if row_id not in shown_ids:
            continue
        if isinstance(found, str):
            left_out[found] = left_out.get(found, 0) + 1
        else:
            offered[f"stored #{row_id}"] = found
    if not left_out:
        return offered, None
    parts = [f"{n} {reason}" for reason, n in left_out.items()]
    n = sum(left_out.values())
    note = (f"{n} stored row{'s are' if n != 1 else ' is'} not offered to compare ({'; '.join(parts)}): Compare "
            "needs each example's prediction on this session's very examples, and never mixes example sets.")
    return offered, note


def _size_text(size) -> str:
    if size.mb is None:
        return "n/a"
    share = "" if size.fraction_of_baseline is None else f" ({100 * size.fraction_of_baseline:.0f}% of baseline)"
    return f"{size.mb:.1f} MB{share}"


def _compare(choice, ev, recipes: dict, note: str | None = None) -> None:
    """Two recipes side by side, example by example. `recipes`: {key: (recipe, result, label)}, the result an
    EvalResult of this session or a StoredResult of a stored row (same examples: `compare_choices`)."""
    keys = [k for k, v in recipes.items() if v[1] is not None]
    if note:
        st.caption(note)
    if len(keys) < 2:
        st.info("Evaluate at least two recipes (toggle heads, drop layers, pick bits) to compare them.")
        return
    label = lambda k: recipes[k][2]  # noqa: E731
    c1, c2 = st.columns(2)
    a = c1.selectbox("Recipe A", keys, index=0, key="cmp_a", format_func=label)
    b = c2.selectbox("Recipe B", keys, index=len(keys) - 1, key="cmp_b", format_func=label)
    (ra, res_a, la), (rb, res_b, lb) = recipes[a], recipes[b]
    if res_a.num_examples != res_b.num_examples or len(res_a.predictions) != len(res_b.predictions):
        st.error("These two results are of different example sets; Compare needs the same examples.")
        return
    for col, recipe, res in ((c1, ra, res_a), (c2, rb, res_b)):
        col.metric(f"{res.metric_name} (simulated)", "n/a" if res.metric is None else f"{100 * res.metric:.1f}%")
        col.metric("size", _size_text(res.size))
        col.caption(recipe.describe())
    differ = np.flatnonzero(res_a.predictions != res_b.predictions)
    n = res_a.num_examples
    st.markdown(f"**{len(differ)} of {n} examples** get different predictions "
                f"(A and B agree on {100 * (n - len(differ)) / max(n, 1):.1f}%).")
    if len(differ):
        names_ = ev.dataset.label_names
        rows = [{"text": ev.dataset.texts[i][:160],
                 "true": names_[ev.labels[i]] if ev.labels is not None else "",
                 f"A: {la[:30]}": names_[res_a.predictions[i]], f"B: {lb[:30]}": names_[res_b.predictions[i]]}
                for i in differ[:200]]
        st.dataframe(pd.DataFrame(rows), hide_index=True, key="cmp_table")


def table_downloads(shown: pd.DataFrame) -> tuple[bytes, bytes]:
    """The table as CSV and as Parquet (pyarrow): the same rows and columns, values rounded to 4 places."""
    table = shown.round(4)
    buffer = io.BytesIO()
    # a column that mixes text and numbers (rows from several sources) is written as text, as the CSV has it
    mixed = [c for c in table.columns if table[c].dtype == object
             and len({type(v) for v in table[c].dropna()}) > 1]
    table.astype({c: "string" for c in mixed}).to_parquet(buffer, index=False)
    return table.to_csv(index=False).encode(), buffer.getvalue()


def _measured_rows() -> None:
    """The really quantised models measured on the Bits page (real kernels, not simulated)."""
    real = st.session_state.get(state.BITS_REAL)
    if not real:
        return
    st.subheader("Measured: really quantised models (Bits page)")
    rows = [{"model": d["mode"], "backend": d["backend"], d.get("metric_name") or "metric":
             None if d.get("metric") is None else round(100 * d["metric"], 2),
             "agreement with fp32 (%)": None if d.get("agreement_with_fp32") is None
             else round(100 * d["agreement_with_fp32"], 2),
             "size MB (serialized)": round(d["serialized_mb"], 2),
             "ms / batch (measured)": round(d["latency"].get("ms_per_batch", float("nan")), 1),
             "device": f"{d['latency'].get('device')}, {d['latency'].get('threads')} threads"} for d in real]
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="to_real")


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
    st.caption("Every recipe evaluated on the current model and data: this session's, and the results store's "
               "(earlier sessions, the CLI, sweeps, the search, recovery).")
    if store_history.problem():
        st.caption(":material/warning: The results store cannot be used: this session's history is in memory only.")
    ctx = widgets.context()
    if ctx is None:
        return
    choice, ev = ctx
    with widgets.guard():
        if st.button("Evaluate the four demo presets too", key="to_presets",
                     help="Sixteen Heads ranks heads by this session's importance (Michel's is computed if none)"):
            from analysis.methods.presets import PRESETS

            recipes = [widgets.preset_recipe(choice, ev, name) for name in PRESETS]
            with st.spinner("Evaluating the presets ..."):
                for recipe in recipes:
                    resources.evaluate(choice, recipe)
                    resources.latency(choice, recipe)
                    store_history.add(choice, recipe)
        df, recipes = session_table(choice)
        session_ids = {int(i) for i in df["stored id"].dropna()} if "stored id" in df else set()
        candidates: dict = {}
        stored = stored_table(choice, resources.evaluate(choice, Recipe()), session_ids, recipes, candidates)
        if not stored.empty:
            df = pd.concat([df, stored], ignore_index=True)
        if df.empty:
            st.info("No recipe evaluated yet: change something on the Heads, Layers or Bits page.")
            return
        df["stored id"] = df["stored id"].astype("Int64")
        # one precision for every row: stored sizes keep MB_DECIMALS (SizeReport.to_dict), and a live
        # 90.9714 beside a stored 90.971 of the same size would put the stored one on the front as "smaller"
        df["size MB"] = pd.to_numeric(df["size MB"], errors="coerce").round(MB_DECIMALS)
        df = _source_filter(df)
        metric = ev.baseline.metric_name
        from_zero = st.toggle("y axis from 0%", value=False, key="to_from_zero",
                              help="Off: the axis zooms to the recipes' range, so small differences show.")
        c1, c2 = st.columns(2)
        with c1:
            _scatter(df, metric, "size MB", "Accuracy vs size (predicted from bits)", "to_size", from_zero)
        with c2:
            _scatter(df, metric, LATENCY_COL, f"Accuracy vs time x baseline (measured, {ev.device})", "to_latency",
                     from_zero)
            st.caption("Timed interleaved with the baseline in one call; 1.00 = no measurable change.")
        shown = df.copy()
        for col in (metric, "agreement"):
            shown[col] = (100 * shown[col]).round(2)
        for col in ("size MB", "% of baseline size"):
            shown[col] = pd.to_numeric(shown[col]).round(1)
        shown = shown.rename(columns={metric: f"{metric} (%)", "agreement": "agreement (%)"})
        st.dataframe(shown.round(3), hide_index=True, key="to_table",
                     column_config={"recipe": st.column_config.TextColumn(width="large"),
                                    "size MB": st.column_config.NumberColumn(format="%.1f"),
                                    "% of baseline size": st.column_config.NumberColumn(format="%.1f")})
        _stored_controls(choice, df)
        _measured_rows()
        d1, d2, d3, d4 = st.columns(4)
        csv_bytes, parquet_bytes = table_downloads(shown)
        d1.download_button("Download the table (CSV)", csv_bytes, "headroom_recipes.csv", "text/csv", key="to_csv")
        d1.download_button("Download the table (Parquet)", parquet_bytes, "headroom_recipes.parquet",
                           "application/vnd.apache.parquet", key="to_parquet")
        pick = d2.selectbox("Recipe to export", list(recipes), key="to_pick", label_visibility="collapsed",
                            format_func=lambda k: recipes[k][2])
        d2.download_button("Download recipe (JSON)", recipes[pick][0].to_json().encode(), "recipe.json",
                           "application/json", key="to_json")
        if d3.button("Make it the current recipe", key="to_make_current",
                     disabled=pick == state.recipe().key(),
                     help="The Heads, Layers and Bits pages then show and edit it; Undo there brings the last one back."):
            if state.set_recipe(recipes[pick][0], ev.adapter):
                st.toast(f"Current recipe: {recipes[pick][2]}")
        if d4.button("Build the materialized model", key="to_build"):
            with st.spinner("Slicing heads, removing layers, saving safetensors ..."):
                st.session_state[state.MODEL_ZIP] = (pick, _materialized_zip(ev, recipes[pick][0]))
        built = st.session_state.get(state.MODEL_ZIP)
        if built and built[0] == pick:
            d4.download_button(f"Download model zip ({len(built[1]) / 1e6:.1f} MB)", built[1], "headroom-model.zip",
                               "application/zip", key="to_zip_dl")
        st.subheader("Compare two recipes")
        shown_ids = {int(i) for i in df["stored id"].dropna()}
        offered, note = compare_choices(recipes, candidates, shown_ids)
        _compare(choice, ev, offered, note)


if __name__ == "__main__":  # run by st.navigation as this page's script
    render()
