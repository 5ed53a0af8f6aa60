"""Find recipes: `headroom search` (analysis.search) on the session's model and data, as a stoppable job.

A multi-objective search (Optuna NSGA-II or TPE) over the fraction of heads pruned in importance
order, the layers dropped (a Sajjad strategy and k) and per-layer weight bits, for the metric and
one cost (size, or latency predicted from counted FLOPs). The recipes are chosen on the train split
(as many examples as the session's subset; the session's own examples only where there is no train
split, labelled so), never on the evaluation examples; every trial is evaluated by the fast incremental
evaluation (simulated) and written to the results store (source "search"). The front is then scored once
on the session's examples (those rows are what Trade-offs shows, filter "search"), and its recipes are
materialized and their latency measured against the unmodified model.

The study lives in the results store's SQLite file (analysis/search/study.py). A study stopped (the
Stop button, a closed tab, a server restart) keeps its finished trials: the page lists the stored
studies of this model and data (their identity's fingerprints, whoever ran them: this page or
`headroom search`), and Resume continues one (Optuna `load_study`) with more trials; the front it
shows is of every finished trial of the study, the earlier ones included.
"""

from __future__ import annotations

import datetime as dt
import tempfile

import pandas as pd
import streamlit as st

from dashboard import history, resources, state, widgets

JOB = "recipe search"


def _run(chooser, ev, config, store, storage_path, name: str):
    import optuna

    from analysis.search.run import search

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def fn(job):
        return search(chooser, config, store=store, storage_path=storage_path, study_name=name,
                      progress=job.report, cancel=job.cancel, score_on=None if chooser is ev else ev)
    return fn


def _train_choice(choice) -> state.DataChoice | None:
    """The session's data on its train split (same subset size), or None where there is none: an uploaded
    file, or a session already on train."""
    import dataclasses
    from pathlib import Path

    if choice.split == "train" or Path(choice.data).is_file():
        return None
    return dataclasses.replace(choice, split="train")


def _front(result: dict, metric_name: str) -> None:
    sel = result["selection"]
    chose = f"{metric_name} (%, {sel['chosen_on']}, chose)"
    rows = [{"recipe": r["description"], chose: round(100 * r["metric"], 2),
             **({f"{metric_name} (%, {sel['scored_on']}, scored once)": round(100 * r["eval_metric"], 2)}
                if "eval_metric" in r else {}),
             "drop (pts, chose)": round(r["drop_points"], 2), "size MB": round(r["size_mb"], 1),
             "speedup predicted (FLOPs)": r.get("predicted_speedup"),
             "speedup measured (materialized)": r.get("measured_speedup")} for r in result["front"]]
    st.markdown(f"**Pareto front: {len(rows)} recipes** of {result['trials']} trials "
                f"({result['trials_run_now']} run now; {result['minutes']:.1f} min, "
                f"{result['store_rows_written']} rows written to the results store)")
    st.caption(f"Study '{result['study']}': the front is of all its finished trials, earlier runs included.")
    if sel["scored_on"]:
        st.caption(f"Chosen on {sel['examples']} examples of {sel['chosen_on']}; each front recipe then scored once on "
                   f"this session's {sel['scored_examples']} examples of {sel['scored_on']} (baseline "
                   f"{100 * sel['baseline_eval_metric']:.2f}%), which chose nothing. Metrics simulated.")
    else:
        st.caption(f":material/warning: Chosen and scored on the same {sel['examples']} examples ({sel['chosen_on']}): "
                   "these figures are optimistic; score the recipes on held-out data before quoting them.")
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
               "layer. The recipes are chosen on the train split, never on the examples you evaluate on; the front is "
               "then scored once on this session's examples and its latency measured on materialized models. "
               "The front lands on Trade-offs (source: search).")
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
        train = _train_choice(choice)
        if train is None:
            st.caption(f":material/warning: {state.data_label(choice)} has no separate train split here: the search "
                       "chooses on this session's examples, and its figures are not held out.")
        else:
            st.caption(f"Chooses on {train.limit or 'all'} examples of {state.data_label(train)} / train; scores the "
                       f"front on this session's {len(ev.dataset)} examples ({choice.split}).")
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
            chooser = ev if train is None else resources.evaluator(train)  # cached: tokenised once per session
            widgets.start_job(JOB, _run(chooser, ev, config, store, path, name))
            st.rerun()
        if history.problem():
            st.caption(":material/warning: The results store cannot be used: the front is shown here only.")
        job = widgets.job_status(JOB)
        if job is not None and job.done and job.error == "Stopped.":
            st.caption("The study keeps the trials that finished: continue it below (Resume).")
        if job is not None and job.done and job.result is not None:
            _front(job.result, ev.baseline.metric_name)
        _stored_studies(choice, ev, train, running=job is not None and not job.done)


def _stored_studies(choice, ev, train, *, running: bool) -> None:
    """The studies of this model and data in the store's file (stopped ones too); Resume continues one."""
    from analysis.search.study import list_studies, resume_config

    store = history.search_store()
    if store is None:
        return
    model_fp = history.fingerprints(choice)[0]
    studies = list_studies(store.path, model_fingerprint=model_fp)
    if studies:  # the data a search chose on: the train split's examples (fingerprinted only when needed)
        chose_fp = history.fingerprints(train or choice)[1]
        studies = [s for s in studies if s["identity"].get("data_fingerprint") == chose_fp]
    if not studies:
        return
    st.subheader("Stored studies of this model and data")
    rows = [{"study": s["name"], "finished trials": s["finished"], "trials (any state)": s["trials"],
             "started": None if s["started"] is None else f"{s['started']:%Y-%m-%d %H:%M}",
             "cost": s["identity"].get("cost"), "sampler": s["settings"].get("sampler", "?"),
             "target": ", ".join(f"{k}={v}" for k, v in (s["identity"].get("target") or {}).items() if v is not None)
             or "none"} for s in studies]
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="search_studies")
    by_name = {s["name"]: s for s in studies}
    c1, c2, c3 = st.columns([3, 1, 1], vertical_alignment="bottom")
    name = c1.selectbox("Study to continue", list(by_name), key="search_resume_pick",
                        format_func=lambda n: f"{n} ({by_name[n]['finished']} finished trials)")
    more = c2.number_input("More trials", min_value=1, max_value=1000, value=8, step=4, key="search_more")
    if c3.button("Resume", key="search_resume", disabled=running,
                 help="Continues the same study (Optuna load_study) with its own space, cost, target and sampler; "
                      "the front shown then covers all its trials."):
        config = resume_config(by_name[name], int(more))
        chooser = ev if train is None else resources.evaluator(train)
        widgets.start_job(JOB, _run(chooser, ev, config, store, store.path, name))
        st.rerun()


if __name__ == "__main__":  # run by st.navigation as this page's script
    render()
