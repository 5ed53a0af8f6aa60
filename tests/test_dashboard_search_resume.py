"""Resume on Find recipes (dashboard/views/search.py, analysis/search/study.py), by AppTest on the tiny model:
a search stopped with its Stop button is listed, after a restart, among the stored studies of this model and
data; Resume continues the same study (more finished trials in it, no second study) and the front shown is
of all its trials."""

from __future__ import annotations

import time

import optuna

from analysis.search.front import select_front
from analysis.search.study import list_studies, resume_config, storage_url, study_outcomes
from tests.test_dashboard_store import app, store_path  # noqa: F401  (the fixture: a fresh store per test)

JOB = "recipe search"


def wait(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_stopped_study_is_listed_after_a_restart_and_resume_adds_trials_to_it(store_path):
    at = app("search")
    at.number_input(key="search_trials").set_value(400).run()
    at.button(key="search_run").click().run()
    job = at.session_state["jobs"][JOB]
    wait(lambda: job.done or ((s := list_studies(store_path)) and s[0]["finished"] >= 3), 120, "three finished trials")
    assert not job.done, job.error
    at.button(key="stop_recipe search").click().run()
    wait(lambda: job.done, 60, "the job to stop")
    assert job.error == "Stopped." and job.result is None
    (stopped,) = list_studies(store_path)
    finished = stopped["finished"]
    assert 3 <= finished < 400 and stopped["settings"]["sampler"] == "nsga2"

    fresh = app("search")  # a restart: a new session, the study only in the store's file
    assert not fresh.exception and [e.value for e in fresh.error] == []
    listed = next(d.value for d in fresh.dataframe if "finished trials" in d.value.columns)
    assert list(listed["study"]) == [stopped["name"]] and list(listed["finished trials"]) == [finished]
    assert fresh.selectbox(key="search_resume_pick").value == stopped["name"]
    fresh.number_input(key="search_more").set_value(4).run()
    fresh.button(key="search_resume").click().run()
    job = fresh.session_state["jobs"][JOB]
    wait(lambda: job.done, 180, "the resumed search")
    assert job.error is None, job.error
    result = job.result
    (after,) = list_studies(store_path)  # the same study, not a second one
    assert after["name"] == stopped["name"] == result["study"]
    assert after["finished"] == finished + 4 == result["trials"] and result["trials_run_now"] == 4

    # the front is of every finished trial, the ones before the stop included
    study = optuna.load_study(study_name=after["name"], storage=storage_url(store_path))
    outcomes = study_outcomes(study)
    assert len(outcomes) == finished + 4
    config = resume_config(stopped, 4)
    expected = {o.recipe.key() for o in select_front(outcomes, config.target, config.cost)}
    from analysis.core.recipe import Recipe

    assert {Recipe.from_dict(r["recipe"]).key() for r in result["front"]} == expected
    fresh.run()
    assert not fresh.exception
    assert any(f"of {finished + 4} trials" in m.value and "4 run now" in m.value for m in fresh.markdown)
    listed = next(d.value for d in fresh.dataframe if "finished trials" in d.value.columns)
    assert list(listed["finished trials"]) == [finished + 4]


def test_studies_of_other_data_are_not_listed(store_path, tmp_path):
    """Only the studies whose identity holds this model's and this (train) data's fingerprints are offered."""
    import json

    at = app("search")  # the store is made; no study yet: no list on the page
    assert not any("finished trials" in d.value.columns for d in at.dataframe)
    rdb = optuna.storages.RDBStorage(storage_url(store_path))
    for name, data_fp in (("other-data", "0" * 16), ("not-headroom", None)):
        study = optuna.create_study(study_name=name, storage=rdb, directions=["maximize", "minimize"])
        if data_fp:
            from dashboard import history
            from dashboard.state import default_choice

            identity = {"model_fingerprint": history.fingerprints(default_choice())[0], "data_fingerprint": data_fp,
                        "cost": "size", "target": {}, "space": {}, "importance": "michel"}
            study.set_user_attr("identity", json.loads(json.dumps(identity)))
    assert [s["name"] for s in list_studies(store_path)] == ["other-data"]
    at = app("search")
    assert not at.exception
    assert not any("finished trials" in d.value.columns for d in at.dataframe)
