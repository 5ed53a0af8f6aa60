"""`search(ev, config)`: a whole search on one Evaluator, as `headroom search` runs it.

1. Michel head importance, once, on the unmodified model: the order heads are pruned in (kept in
   the study, so a resumed study prunes in the same order without recomputing it).
2. The latency model (objectives.py): the materialized baseline and two smaller recipes timed
   interleaved, ms per GFLOP fitted; kept in the study per (device, threads), so a resumed study
   predicts with the same factor.
3. The study (study.py): each trial's recipe evaluated by the fast incremental evaluation
   (simulated), one row in the results store per evaluation (source "search").
4. The front: trials meeting the target, Pareto-optimal on (metric, cost), each materialized and
   MEASURED against the baseline (front.py); the uniform recipes evaluated and compared with it.
"""

from __future__ import annotations

import itertools
import threading
import time

import torch

from analysis.core.recipe import Recipe
from analysis.jobs import Progress, report
from analysis.search.front import dominance, measure_front, select_front, uniform_recipes
from analysis.search.objectives import LatencyModel, Outcome, calibrate, calibration_recipes, outcome_of
from analysis.search.study import StudyConfig, open_study, run_study, storage_url, study_outcomes


def default_study_name(ev, config: StudyConfig) -> str:
    return f"{ev.loaded.name}-{ev.dataset.name}-{len(ev.dataset)}-{config.cost}"


def search(ev, config: StudyConfig, *, store=None, storage_path=None, study_name: str | None = None,
           latency_batch_size: int = 32, repeats: int = 5, progress: Progress = None,
           cancel: threading.Event | None = None, score_on=None) -> dict:
    """Run (or resume) the study on `ev`; return the front, measured, and the uniform recipes.

    `score_on`: an Evaluator of the same model on the evaluation split; each front recipe is scored on
    it once, after the search has chosen (`eval_metric`), so the numbers a user quotes never chose."""
    from analysis.methods.importance import compute_importance
    from analysis.store.fingerprint import data_fingerprint, model_fingerprint
    from analysis.store.store import default_store_path, record_evaluation

    t0 = time.perf_counter()
    adapter, model = ev.adapter, ev.loaded.model
    L, H = adapter.num_layers, adapter.num_heads
    path = storage_path or (store.path if store is not None else default_store_path())
    name = study_name or default_study_name(ev, config)
    identity = {"space": config.space.to_dict(), "cost": config.cost, "target": config.target.to_dict(),
                "model_fingerprint": model_fingerprint(model), "data_fingerprint": data_fingerprint(ev.dataset, ev.max_length),
                "importance": "michel"}
    study = open_study(storage_url(path), name, config, identity, L)

    if "pruning_order" in study.user_attrs:  # computed by the run that created the study (same model, same data)
        order = [tuple(p) for p in study.user_attrs["pruning_order"]]
    else:
        report(progress, 0.0, "head importance (Michel et al.)")
        order = compute_importance(ev, "michel").pruning_order()
        study.set_user_attr("pruning_order", [list(p) for p in order])

    batch = ev.latency_batch(latency_batch_size, ev.typical_seq_len)
    latency_key = f"latency_model:{ev.device}:{torch.get_num_threads()}:{tuple(batch.input_ids.shape)}"
    if latency_key in study.user_attrs:
        latency = LatencyModel.from_dict(study.user_attrs[latency_key])
    else:
        report(progress, 0.0, "calibrating predicted latency (timing 3 materialized models)")
        latency = calibrate(model, adapter, calibration_recipes(L, order), batch, repeats=repeats)
        study.set_user_attr(latency_key, latency.to_dict())
    baseline_ms = latency.predict_ms(adapter, Recipe())
    baseline_metric = float(ev.baseline.metric if ev.baseline.metric is not None else 1.0)
    rows_written = [0]

    def evaluate(recipe: Recipe, extra: dict | None = None) -> Outcome:
        result = ev.evaluate(recipe, cancel=cancel)
        outcome = outcome_of(result, baseline_metric, adapter, latency, baseline_ms)
        if store is not None:
            store.add(record_evaluation(ev, result, source="search", extra={
                "study": name, "storage": str(path), "predicted_ms": outcome.predicted_ms,
                "predicted_speedup": outcome.predicted_speedup, "gflops": outcome.gflops, **(extra or {})}))
            rows_written[0] += 1
        return outcome

    ran = run_study(study, lambda r: evaluate(r), config, pruning_order=order, num_layers=L, num_heads=H,
                    progress=progress, cancel=cancel)
    outcomes = study_outcomes(study)
    front = select_front(outcomes, config.target, config.cost)

    report(progress, 1.0, f"measuring the {len(front)} front recipes (materialized)")
    measured = measure_front(model, front, batch, repeats=repeats)
    granularity = config.space.granularities[0]
    uniform = [evaluate(r, {"role": "uniform baseline"}) for r in uniform_recipes(L, H, order, granularity)]
    compared = dominance(front, uniform, config.cost)
    scored = []
    if score_on is not None:
        report(progress, 1.0, f"scoring the {len(front)} front recipes once on {score_on.dataset.name}")
        for o in front:
            result = score_on.evaluate(o.recipe, cancel=cancel)
            scored.append(result.metric)
            if store is not None:  # the front as a row of the evaluation data (Trade-offs shows it, Compare reads
                # its predictions: a handful of rows, unlike the trials, which keep none)
                store.add(record_evaluation(score_on, result, source="search", keep_predictions=True, extra={
                    "study": name, "storage": str(path), "role": "front, scored once after the search",
                    "chosen_on": ev.dataset.name, "chosen_examples": len(ev.dataset),
                    "predicted_speedup": o.predicted_speedup}))
                rows_written[0] += 1

    labels = {
        "metric": f"{ev.baseline.metric_name}, simulated (Headroom forward: fake-quantised weights, masked heads, "
                  f"identity layers) on {len(ev.dataset)} examples",
        "size_mb": "counted: bytes of the weights at the recipe's bits (size_report)",
        "predicted_ms": latency.what + f"; batch {latency.batch_size} x {latency.seq_len} tokens",
        "measured_ms": "measured: HF forward of the materialized recipe, interleaved with the unmodified model, "
                       f"median of {repeats}; bits stay fp32 kernels (fake-quantised values)",
    }
    return {
        "model": ev.loaded.name, "data": ev.dataset.name, "num_examples": len(ev.dataset),
        "num_layers": L, "num_heads": H, "device": str(ev.device), "threads": torch.get_num_threads(),
        "study": name, "storage": storage_url(path), "sampler": config.sampler, "seed": config.seed,
        "population_size": config.population_size if config.sampler == "nsga2" else None,
        "objectives": ["metric (max)", f"{config.cost} (min)"], "target": config.target.to_dict(),
        "space": config.space.to_dict(), "trials": len(outcomes), "trials_run_now": ran,
        "store_rows_written": rows_written[0], "minutes": round((time.perf_counter() - t0) / 60, 2),
        "labels": labels, "latency_model": latency.to_dict(),
        "baseline": {"metric": baseline_metric, "size_mb": round(float(ev.baseline.size.mb), 3),
                     "predicted_ms": round(baseline_ms, 3)},
        "front": [{**_front_row(o, m), **({"eval_metric": round(float(e), 4)} if e is not None else {})}
                  for o, m, e in itertools.zip_longest(front, measured, scored)],
        "selection": {"chosen_on": ev.dataset.name, "examples": len(ev.dataset),
                      "scored_on": score_on.dataset.name if score_on is not None else None,
                      "scored_examples": len(score_on.dataset) if score_on is not None else 0,
                      "baseline_eval_metric": None if score_on is None else score_on.baseline.metric,
                      "note": "recipes chosen on the search data; eval_metric: each front recipe scored once "
                              "on the evaluation split after the search, never used to choose"
                      if score_on is not None else "no evaluation split scored: metric is the search data's"},
        "uniform": compared,
        "front_dominates_all_uniform": all(r["front_dominates"] for r in compared),
        "front_at_least_matches_all_uniform": all(r["front_at_least_as_good"] for r in compared),
    }


def _front_row(o: Outcome, measured: dict) -> dict:
    return {"recipe": o.recipe.to_dict(), "description": o.recipe.describe(), "metric": round(o.metric, 4),
            "drop_points": round(o.drop_points, 3), "size_mb": round(o.size_mb, 3),
            "predicted_ms": None if o.predicted_ms is None else round(o.predicted_ms, 3),
            "predicted_speedup": None if o.predicted_speedup is None else round(o.predicted_speedup, 4), **measured}
