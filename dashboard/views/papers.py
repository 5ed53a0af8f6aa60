"""Papers: the published results the field compares against, next to the user's best recipes.

The figures are the papers' own claims (analysis.io.papers, after Gordon's 2019 survey), each with
its citation; the user's rows are this session's recipes (simulated metric; speed-up = 1 / the deployed
model's time ratio to the baseline, timed interleaved, 1.00x when within noise or on fp32 kernels).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import widgets


def short_name(row) -> str:
    """A point's label: the method's own name when the title starts with one ("DistilBERT"), else
    first author and year ("Michel 2019"), so five distillation papers read as five."""
    head = str(row["paper"]).split(":")[0].split(",")[0].strip()
    if len(head) <= 18 and " " not in head.strip():
        return head
    first = str(row["authors"]).split(",")[0].replace(" et al.", "").split()[0]
    return f"{first} {row['year']}"


def _user_rows(choice) -> pd.DataFrame:
    """This session's Pareto-best recipes (size vs metric), with numbers for the plot."""
    from analysis.measure.pareto import pareto_front
    from dashboard.views.tradeoffs import LATENCY_COL, session_table

    df, _ = session_table(choice)
    if len(df) < 2:
        return pd.DataFrame()
    metric = df.columns[1]
    best = df.iloc[pareto_front(metric=df[metric].to_numpy(float), cost=df["size MB"].to_numpy(float),
                                keys=list(df["url recipe"]))]
    return pd.DataFrame({
        "recipe (yours)": best["recipe"].to_numpy(),
        "reduction_pct": (100 - best["% of baseline size"]).to_numpy(),
        # the measured, interleaved ratio (1.00 when within noise or on fp32 kernels), never a
        # timing divided by a baseline timed at another moment
        "speedup_x": (1.0 / best[LATENCY_COL].to_numpy(float)),
        metric: best[metric].to_numpy(),
        "change (pts)": best["change (pts)"].to_numpy(),
        "latency": best["latency (interleaved with baseline)"].to_numpy(),
    })


def render() -> None:
    st.title("Papers")
    st.caption("What published BERT compression achieved (the papers' own figures), next to your best recipes.")
    ctx, mine = None, pd.DataFrame()
    with widgets.guard():
        from analysis.io.papers import load_papers

        papers = load_papers()
        kinds = sorted(papers["method"].unique())
        chosen = st.multiselect("Method", kinds, default=[], key="papers_methods", placeholder="all methods")
        shown = papers[papers["method"].isin(chosen)] if chosen else papers
        st.dataframe(
            shown[["method", "reduced", "reduction", "speedup", "accuracy", "citation", "paper"]],
            hide_index=True, key="papers_table",  # the title last: it is long, the hover shows it whole
            column_config={"method": st.column_config.TextColumn(width="medium"),
                           "reduced": st.column_config.TextColumn(width="medium"),
                           "reduction": st.column_config.TextColumn(width="small"),
                           "speedup": st.column_config.TextColumn(width="medium"),
                           "accuracy": st.column_config.TextColumn(width="medium"),
                           "citation": st.column_config.TextColumn(width="large"),
                           "paper": st.column_config.TextColumn(width="large")},
        )
        import plotly.graph_objects as go

        plotted = shown.dropna(subset=["reduction_pct", "speedup_x"])
        plotted = plotted[plotted["speedup_of"] == "inference"].reset_index(drop=True)
        fig = go.Figure()
        positions = ["top center", "bottom center", "middle right", "middle left"]
        for i, (what, part) in enumerate(plotted.groupby("reduced", sort=True)):
            fig.add_scatter(
                x=part["reduction_pct"], y=part["speedup_x"], mode="markers+text", text=[short_name(r) for _, r in part.iterrows()],
                textposition=[positions[j % len(positions)] for j in part.index], name=f"published: {what} reduced",
                marker=dict(size=11, symbol=["circle", "square", "diamond", "triangle-up", "cross"][i % 5]),
                customdata=part["citation"] + "<br>" + part["method"],
                hovertemplate="%{customdata}<br>%{x:.0f}% of the " + what + " removed, %{y:.1f}x<extra></extra>")
        ctx = widgets.context()
        if ctx is not None:
            mine = _user_rows(ctx[0])
        if not mine.empty:
            fig.add_scatter(x=mine["reduction_pct"], y=mine["speedup_x"], mode="markers+text", name="yours (measured vs baseline, interleaved)",
                            text=mine["recipe (yours)"], textposition="bottom center",
                            marker=dict(size=15, symbol="star", color="#e45756"),
                            hovertemplate="%{text}<br>size -%{x:.0f}%, %{y:.2f}x (measured vs baseline; 1.00 = no measurable change)<extra></extra>")
        fig.update_layout(title="Reduction vs inference speed-up: papers' claims (range midpoints) and your recipes",
                          xaxis_title="reduced (% of what each paper reduced: parameters, heads or layers; yours: size)",
                          yaxis_title="speed-up (x)", height=460, margin=dict(t=40),
                          legend=dict(orientation="h", y=-0.2))
        st.plotly_chart(fig, key="papers_fig")

    st.subheader("Your best recipes (Pareto front of this session)")
    if ctx is None:
        return
    if mine.empty:
        st.info("Evaluate a few recipes on the Heads, Layers or Bits pages (or the presets on Trade-offs) to see "
                "them here.")
        return
    metric = mine.columns[3]
    shown = pd.DataFrame({
        "recipe (yours)": mine["recipe (yours)"],
        "size reduced (from bits)": [f"{p:.0f}%" for p in mine["reduction_pct"]],
        "speed-up (measured, interleaved)": [f"{x:.2f}x" for x in mine["speedup_x"]],
        "time vs baseline [95% interval]": mine["latency"],
        f"{metric} (simulated)": [f"{100 * m:.1f}% ({c:+.1f} pts)" for m, c in zip(mine[metric], mine["change (pts)"])],
    })
    st.dataframe(shown, hide_index=True, key="papers_mine")
    st.caption(f"Metric simulated on {ctx[1].dataset.name} ({len(ctx[1].dataset)} examples); latency measured on "
               f"{ctx[1].device}, the deployed model against the baseline in the same run. Size reduced counts the whole model, embeddings included.")


if __name__ == "__main__":  # run by st.navigation as this page's script
    render()
