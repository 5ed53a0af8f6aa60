"""Find recipes: `headroom search` (analysis.search) on the session's model and data, as a stoppable job.

A multi-objective search (Optuna NSGA-II or TPE) over the fraction of heads pruned in importance
order, the layers dropped (a Sajjad strategy and k) and per-layer weight bits, for the metric and
one cost (size, or latency predicted from counted FLOPs). Every trial is evaluated by the fast
incremental evaluation (simulated) on the session's examples, and written to the results store
(source "search"), so the front is on Trade-offs (filter "search"); the front's recipes are then
materialized and their latency measured against the unmodified model.
"""

from __future__ import annotations

import datetime as dt
import tempfile

import pandas as pd
import streamlit as st

from dashboard import history, widgets

JOB = "recipe search"


def _run(ev, config, store, storage_path, name: str):
    import optuna

    from analysis.search.run import search

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def fn(job):
        return search(ev, config, store=store, storage_path=storage_path, study_name=name,
                      progress=job.report, cancel=job.cancel)
    return fn


def _front(result: dict, metric_name: str) -> None:
    rows = [{"recipe": r["description"], f"{metric_name} (%, simulated)": round(100 * r["metric"], 2),
             "drop (pts)": round(r["drop_points"], 2), "size MB": round(r["size_mb"], 1),
             "speedup predicted (FLOPs)": r.get("predicted_speedup"),
             "speedup measured (materialized)": r.get("measured_speedup")} for r in result["front"]]
    st.markdown(f"**Pareto front: {len(rows)} recipes** of {result['trials']} trials "
                f"({result['minutes']:.1f} min, {result['store_rows_written']} rows written to the results store)")
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, key="search_front",
                     column_config={"recipe": st.column_config.TextColumn(width="large"),
                                    "size MB": st.column_config.NumberColumn(format="%.1f")})
    uniform = [{"uniform recipe": u["recipe"], "size MB": round(u["size_mb"], 1), "drop (pts)": round(u["drop_points"], 2),
                "a front recipe dominates it": u["front_dominates"], "one is at least as good": u["front_at_least_as_good"]}
               for u in result["uniform"]]
    if uniform:
        st.caption("The uniform recipes (one bit-width everywhere, the k least important heads, the top k layers), "
                   "each against the front at no more cost:")
        st.dataframe(pd.DataFrame(uniform), hide_index=True, key="search_uniform")


def render() -> None:
    st.title("Find recipes")
    st.caption("A multi-objective search (Optuna) over heads pruned in importance order, layers dropped and bits per "
               "layer. Metrics are simulated on this session's examples, which choose the recipes; the front's "
               "latency is then measured on materialized models. The front lands on Trade-offs (source: search).")
    ctx = widgets.context()
    if ctx is None:
        return
    choice, ev = ctx
    with widgets.guard():
        c1, c2, c3, c4 = st.columns([1, 1, 1, 2])
        cost = c1.radio("Cost", ["size", "latency"], horizontal=True, key="search_cost",
                        help="size: counted bytes at the recipe's bits; latency: predicted from counted FLOPs")
        trials = c2.number_input("Trials", min_value=4, max_value=1000, value=20, step=4, key="search_trials")
        sampler = c3.selectbox("Sampler", ["nsga2", "tpe"], key="search_sampler")
        target_text = c4.text_input("Target (optional)", key="search_target", placeholder="drop<=1,speedup>=1.5,size<=40",
                                    help="Limits a recipe must meet: drop<=points, speedup>=x, size<=MB")
        job = widgets.get_job(JOB)
        running = job is not None and not job.done
        if st.button("Find recipes", key="search_run", type="primary", disabled=running):
            from analysis.search.objectives import Target
            from analysis.search.study import StudyConfig

            if ev.baseline.metric is None:
                st.warning("The search needs labelled data (the metric is one objective).")
                return
            config = StudyConfig(cost=cost, trials=int(trials), sampler=sampler, target=Target.parse(target_text))
            name = f"dashboard-{ev.loaded.name}-{ev.dataset.name}-{dt.datetime.now():%Y%m%d-%H%M%S}"
            store = history.search_store()
            path = store.path if store is not None else f"{tempfile.mkdtemp(prefix='headroom-study-')}/study.sqlite"
            widgets.start_job(JOB, _run(ev, config, store, path, name))
            st.rerun()
        if history.problem():
            st.caption(":material/warning: The results store cannot be used: the front is shown here only.")
        job = widgets.job_status(JOB)
        if job is not None and job.done and job.result is not None:
            _front(job.result, ev.baseline.metric_name)


if __name__ == "__main__":  # run by st.navigation as this page's script
    render()
