"""Recovery: train a recipe of this session back (fine-tuning, distillation, QAT) and see what it wins.

Pick a recipe evaluated in this session, an objective (analysis.recovery.config.OBJECTIVES) and a
budget; Start runs `analysis.recovery.recover` in a background job: the live curve shows the
training loss and the metric on examples held out of the *train* split (never the evaluation
split), Stop keeps the best checkpoint so far. When it ends, the session's evaluation examples
are scored once: the recipe before recovery (simulated) and the recovered model (measured),
drawn as an arrow on accuracy vs size. "Make it the current model" loads the recovered directory
as this session's model, so every page (and new recipes) applies to it.

"Prune while training" adds gradual magnitude or movement pruning (Sanh et al. 2020) of the encoder's
linears to the run, to a final fraction of zeros per matrix; it starts from any recipe without weight
sparsity, the unmodified model included. The size of such a model is its bitmask file (measured, on
disk): zeros buy size, not speed on dense kernels.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import pandas as pd
import streamlit as st

from analysis.core.recipe import Recipe
from analysis.recovery.config import OBJECTIVES, RecoveryConfig
from dashboard import resources, state, widgets

JOB = "recovery"
UNMODIFIED = "the unmodified model (prune while training)"
PRUNE_LABELS = {"none": "no", "magnitude": "gradual magnitude", "movement": "movement (Sanh et al. 2020)"}
OUT_ROOT = Path(tempfile.gettempdir()) / "headroom-recovered"


def _train_data(choice):
    """The train split of the session's data (the tiny test data: a made-up set of its own)."""
    from analysis.errors import HeadroomError
    from analysis.io.datasets import load_dataset

    if choice.data == "tiny":
        from analysis.testing import tiny_dataset

        return tiny_dataset(n=48, seed=1)
    if Path(choice.data).is_file():
        raise HeadroomError("An uploaded file has no train split; recover from the command line with --data "
                            "TRAIN_FILE --eval-split EVAL_FILE.")
    return load_dataset(choice.data, "train")


def _session_recipes(choice) -> dict[str, Recipe]:
    history = st.session_state.get(state.HISTORY, {})
    recipes = {r.name or r.describe(): r for (key, _), r in history.items() if key == choice.key() and not r.is_baseline()}
    current = state.recipe()
    if not current.is_baseline():
        recipes.setdefault(current.name or current.describe(), current)
    recipes[UNMODIFIED] = Recipe()  # for pruning while training
    return recipes


def _start(choice, ev, recipe: Recipe, config: RecoveryConfig) -> None:
    from analysis.recovery.loop import recover

    train = _train_data(choice)
    OUT_ROOT.mkdir(parents=True, exist_ok=True)
    out_dir = tempfile.mkdtemp(prefix="run-", dir=OUT_ROOT)
    rows: list[dict] = []
    st.session_state[state.RECOVERY_CURVE] = rows
    key = (choice.key(), recipe.key(), _run_name(config))

    def run(job):
        result = recover(ev.loaded, recipe, config, train=train, test=ev.dataset, out_dir=out_dir, overwrite=True,
                         progress=job.report, cancel=job.cancel, log=rows.append)
        return {"key": key, "recipe": recipe, "result": result}

    widgets.start_job(JOB, run)


def _run_name(config: RecoveryConfig) -> str:
    """The objective, and the pruning while training if any: 'ce', 'ce + movement 90%'."""
    if config.prune_method == "none":
        return config.objective
    return f"{config.objective} + {config.prune_method} {100 * config.prune_sparsity:g}%"


def _size_mb(choice, run: dict) -> float:
    """A pruned-while-training model: its bitmask file (measured); otherwise the recipe's size."""
    sparse = run["result"].get("saved", {}).get("sparse_weights_bytes")
    if run["result"].get("pruning", {}).get("method", "none") != "none" and sparse:
        return sparse["bitmask"] / 1e6
    return resources.evaluate(choice, run["recipe"]).size.mb


def _curve(rows: list[dict], metric: str) -> None:
    from plotly.subplots import make_subplots

    if not rows:
        st.caption("Waiting for the first steps ...")
        return
    df = pd.DataFrame(rows)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    loss = df.dropna(subset=["loss"])
    fig.add_scatter(x=loss["step"], y=loss["loss"], mode="lines", name="training loss", line=dict(color="#4c78a8"))
    held = df.dropna(subset=["holdout_metric"])
    fig.add_scatter(x=held["step"], y=100 * held["holdout_metric"], mode="lines+markers", name=f"held-out {metric} (%)",
                    line=dict(color="#e45756"), secondary_y=True)
    fig.update_layout(height=320, margin=dict(t=30), legend=dict(orientation="h", y=-0.3),
                      title="Live: loss on the train split, metric on examples held out of it")
    fig.update_xaxes(title="step")
    st.plotly_chart(fig, key="rec_curve")


def _live(metric: str) -> None:
    job = widgets.get_job(JOB)

    @st.fragment(run_every=2.0 if job is not None and not job.done else None)
    def poll():
        _curve(st.session_state.get(state.RECOVERY_CURVE, []), metric)

    poll()


def _arrows(choice, runs: dict) -> None:
    """Accuracy vs size: each recovered model joined by an arrow to its recipe's one-shot point."""
    import plotly.graph_objects as go

    fig = go.Figure()
    base = resources.evaluate(choice, Recipe())
    fig.add_scatter(x=[base.size.mb], y=[100 * base.metric], mode="markers", name="baseline",
                    marker=dict(size=14, color="black", symbol="star"))
    for (key, _, objective), run in runs.items():
        if key != choice.key() or "eval" not in run["result"]:
            continue
        size = _size_mb(choice, run)
        e = run["result"]["eval"]
        label = f"{run['recipe'].name or run['recipe'].describe()} + {objective}"
        fig.add_scatter(x=[size, size], y=[100 * e["before"], 100 * e["after"]], mode="markers", name=label,
                        marker=dict(size=10, symbol=["circle-open", "diamond"]))
        fig.add_annotation(x=size, y=100 * e["after"], ax=size, ay=100 * e["before"], xref="x", yref="y",
                           axref="x", ayref="y", showarrow=True, arrowhead=3, arrowwidth=2)
    fig.update_layout(title="Before (open circle, simulated) -> after recovery (diamond, measured)",
                      xaxis_title="size MB (from bits; pruned while training: its bitmask file)", yaxis_title=f"{base.metric_name} (%)", height=360,
                      margin=dict(t=40), legend=dict(orientation="h", y=-0.3))
    st.plotly_chart(fig, key="rec_arrows")


def _results(choice, runs: dict) -> None:
    mine = {k: v for k, v in runs.items() if k[0] == choice.key()}
    if not mine:
        return
    rows = []
    for (_, _, objective), run in mine.items():  # objective: the run's name (objective + pruning)
        r, e = run["result"], run["result"].get("eval") or {}
        rows.append({"recipe": run["recipe"].name or run["recipe"].describe(), "objective": objective,
                     "status": r["status"], "before (simulated)": e.get("before"), "after (measured)": e.get("after"),
                     "teacher": e.get("teacher"), "held-out best": r["selection"]["holdout_metric"],
                     "minutes": r["train_minutes"], "device": r["device"], "directory": r.get("out_dir")})
    st.subheader("Recovered models")
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="rec_table")
    st.caption("Before/after are scored once, after training, on this session's evaluation examples; model "
               "selection used examples held out of the train split.")
    _arrows(choice, mine)
    labels = {f"{row['recipe']} + {row['objective']}": row["directory"] for row in rows if row["directory"]}
    pick = st.selectbox("Recovered model", list(labels), key=state.RECOVERY_PICK_MODEL)
    if pick and st.button("Make it the current model", key="rec_use",
                          help="Load the recovered directory as this session's model: every page and every new "
                               "recipe then applies to it (iterative prune -> retrain)."):
        state.set_choice(replace(choice, model=labels[pick]))
        st.rerun()


def render() -> None:
    st.title("Recovery")
    st.caption("Train a compressed recipe back: re-fine-tune, distil from the unmodified model, or "
               "quantisation-aware training. The teacher is never changed.")
    ctx = widgets.context()
    if ctx is None:
        return
    choice, ev = ctx
    runs = st.session_state.setdefault(state.RECOVERY_RUNS, {})
    with widgets.guard():
        recipes = _session_recipes(choice)
        if len(recipes) == 1:  # only the unmodified model
            st.caption("No compressed recipe in this session yet: mask heads, drop layers or pick bits on another "
                       "page — or prune the unmodified model while training, below.")
        c1, c2, c3 = st.columns([3, 2, 2])
        label = c1.selectbox("Recipe", list(recipes), key=state.RECOVERY_RECIPE)
        objective = c2.selectbox("Objective", list(OBJECTIVES), key=state.RECOVERY_OBJECTIVE,
                                 help="; ".join(f"{k}: {v[1]}" for k, v in OBJECTIVES.items()))
        budget = c3.radio("Budget", ["epochs", "minutes"], horizontal=True, key=state.RECOVERY_BUDGET)
        amount = c3.number_input(budget, min_value=1 if budget == "epochs" else 0.1, value=1 if budget == "epochs"
                                 else 2.0, key=f"{state.RECOVERY_AMOUNT}{budget}")
        st.caption(OBJECTIVES[objective][1])
        p1, p2 = st.columns([3, 4])
        method = p1.radio("Prune while training", list(PRUNE_LABELS), format_func=PRUNE_LABELS.get,
                          horizontal=True, key=state.RECOVERY_PRUNE,
                          help="Prune Q, K, V, O and the FFN of every layer while training, each matrix to the "
                               "same final fraction of zeros (cubic schedule: none until 10% of the steps, all by "
                               "70%). Gradual magnitude keeps the largest weights; movement learns a score per "
                               "weight and keeps those that training moves away from zero.")
        sparsity = 0.0
        if method != "none":
            sparsity = p2.slider("Final sparsity (%)", 10, 97, 50, key=state.RECOVERY_PRUNE_SPARSITY) / 100
            p2.caption("Zeros buy size (a bitmask file), not speed on dense kernels.")
            if method == "movement":
                p2.warning("Measured: movement collapses at the budgets this lab runs — on demo to chance from "
                           "30% (250 steps), on SST-2 at 30% even after 1,250 steps, and also when fine-tuning "
                           "the pretrained encoder — where gradual magnitude keeps 89.7% at 70% on demo. Its "
                           "first scores pick weights worse than random ones (4% of each matrix: SST-2 61.4% "
                           "vs 87.2% at random). Prefer gradual magnitude (benchmarks/RESULTS.md, \"Magnitude "
                           "vs movement\", \"Why movement collapses\").",
                           icon=":material/warning:")
        refused = method != "none" and recipes[label].has_sparsity()
        if refused:
            st.warning("This recipe already has weight sparsity; pick one without it to prune while training.")
        job = widgets.get_job(JOB)
        running = job is not None and not job.done
        nothing_to_recover = recipes[label].is_baseline() and method == "none"
        if nothing_to_recover:
            st.caption("The unmodified model with no pruning would only be fine-tuned again: pick a recipe or "
                       "prune while training.")
        if st.button("Start", key="rec_start", type="primary",
                     disabled=running or refused or nothing_to_recover):
            changes = {"device": choice.device, "holdout": 12 if choice.data == "tiny" else 500}
            if method != "none":
                changes.update(prune_method=method, prune_sparsity=sparsity)
            changes.update({"epochs": int(amount)} if budget == "epochs" else {"minutes": float(amount), "epochs": 1000})
            _start(choice, ev, recipes[label], RecoveryConfig.for_objective(objective, **changes))
            st.rerun()
        job = widgets.job_status(JOB)
        if job is not None:
            _live(ev.baseline.metric_name)
            if job.done and job.result is not None:
                runs[job.result["key"]] = {"recipe": job.result["recipe"], "result": job.result["result"]}
        _results(choice, runs)


if __name__ == "__main__":  # run by st.navigation as this page's script
    render()
