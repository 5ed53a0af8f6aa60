"""The dashboard's history in the results store (dashboard/history.py), driven by AppTest on the tiny model:
a row made in one session is on Trade-offs in a fresh one (a restart), Delete removes it from the store,
rows of other sources show with their source and can be filtered, and a store that cannot be used gives
one warning and the dashboard keeps working in memory."""

from __future__ import annotations


import pytest

from analysis.core.recipe import Recipe
from analysis.store.store import ResultStore
from tests.apptest import app



@pytest.fixture
def store_path(monkeypatch, tmp_path) -> Path:
    path = tmp_path / "results.sqlite"
    monkeypatch.setenv("HEADROOM_DASHBOARD_MODEL", "tiny")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HEADROOM_STORE", str(path))
    return path




def table(at):
    return next(d.value for d in at.dataframe if "url recipe" in d.value.columns)


def test_a_row_made_in_one_session_is_on_trade_offs_after_a_restart(store_path):
    first = app("heads", r="h1")  # layer 0 head 0 masked: the panel's exact figure is a history row
    assert not first.exception and not first.warning
    rows = ResultStore(store_path).list(source="dashboard")
    assert [r["description"] for r in rows] == ["1 head masked (L0 H0)"]
    assert len(rows[0]["model_fingerprint"]) == 16 and len(rows[0]["data_fingerprint"]) == 16
    first.run()  # a rerun of the same recipe writes nothing new
    assert ResultStore(store_path).count() == 1

    fresh = app("tradeoffs")  # a new session: its own history is only the baseline
    assert not fresh.exception and [e.value for e in fresh.error] == []
    t = table(fresh)
    assert "source" in t.columns and "stored id" in t.columns
    stored = t[t["recipe"].str.startswith("1 head masked (L0 H0)")]
    assert len(stored) == 1 and stored["source"].iloc[0] == "dashboard"
    assert int(stored["stored id"].iloc[0]) == rows[0]["id"]
    assert t["url recipe"].is_unique
    assert set(t["source"]) == {"dashboard"}
    csv = fresh.get("download_button")
    assert any(b.proto.label == "Download the table (CSV)" for b in csv)
    wanted = Recipe(masked_heads=[(0, 0)]).key()  # the stored recipe, back as the current one after the restart
    options = fresh.selectbox(key="to_pick").options  # the labels: the stored row says its source and id
    index = options.index(f"1 head masked (L0 H0) [dashboard #{rows[0]['id']}]")
    fresh.selectbox(key="to_pick").select_index(index).run()
    fresh.button(key="to_make_current").click().run()
    assert not fresh.exception and fresh.session_state["recipe"].key() == wanted


def test_delete_removes_the_stored_row(store_path):
    app("heads", r="h1")
    at = app("tradeoffs")
    row_id = ResultStore(store_path).list(source="dashboard", limit=None)
    target = next(r["id"] for r in row_id if r["description"] == "1 head masked (L0 H0)")
    at.multiselect(key="to_delete_pick").select(target).run()
    at.button(key="to_delete").click().run()
    assert not at.exception
    left = ResultStore(store_path).list()
    assert target not in [r["id"] for r in left]
    assert not any(r.startswith("1 head masked (L0 H0)") for r in table(at)["recipe"])
    assert [r["description"] for r in left] == [Recipe().describe()]  # the baseline the Trade-offs session wrote


def test_rows_of_other_sources_show_with_their_source_and_filter(store_path):
    from analysis.store.store import record_evaluation
    from dashboard import resources
    from dashboard.state import default_choice

    at = app("tradeoffs")  # the store is made, the baseline written
    ev = resources.evaluator(default_choice())
    res = ev.evaluate(Recipe(weight_bits=8))
    ResultStore(store_path).add(record_evaluation(ev, res, source="cli"))
    at = app("tradeoffs")
    t = table(at)
    assert set(t["source"]) == {"dashboard", "cli"}
    cli = t[t["source"] == "cli"]
    assert len(cli) == 1 and abs(cli["size MB"].iloc[0] - round(res.size.mb, 1)) < 1e-9
    at.button_group(key="to_sources").set_value(["cli"]).run()
    t = table(at)
    assert set(t["source"]) == {"cli", "dashboard"} and len(t) == 2  # the cli row and the baseline (the reference)


@pytest.mark.parametrize("how", ["corrupt", "read-only", "folder is a file"])
def test_a_store_that_cannot_be_used_warns_once_and_the_dashboard_works(store_path, how, tmp_path, monkeypatch):
    import os

    if how == "corrupt":
        store_path.write_bytes(b"this is not a SQLite file" * 100)
    elif how == "folder is a file":  # what root cannot be kept from writing into
        (tmp_path / "plain").write_text("a file")
        monkeypatch.setenv("HEADROOM_STORE", str(tmp_path / "plain" / "results.sqlite"))
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into a read-only directory")
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        monkeypatch.setenv("HEADROOM_STORE", str(ro / "results.sqlite"))
    at = app("heads", r="h1")
    assert not at.exception and [e.value for e in at.error] == []
    warnings = [w.value for w in at.warning if "results store" in w.value]
    assert len(warnings) == 1 and "kept in memory only" in warnings[0]
    assert any(m.label.startswith("accuracy") for m in at.metric)  # the panel still shows its figures
    at.switch_page("views/tradeoffs.py").run()
    assert not at.exception and [w.value for w in at.warning if "results store" in w.value] == []  # once
    assert any(r.startswith("1 head masked (L0 H0)") for r in table(at)["recipe"])  # the session's row, in memory
    if how == "corrupt":
        assert store_path.read_bytes().startswith(b"this is not a SQLite file")  # never overwritten


def test_find_recipes_runs_a_search_job_and_its_front_reaches_trade_offs(store_path):
    import time

    at = app("search")
    assert not at.exception and at.title[0].value == "Find recipes"
    at.number_input(key="search_trials").set_value(8).run()
    at.button(key="search_run").click().run()
    job = at.session_state["jobs"]["recipe search"]
    deadline = time.monotonic() + 120
    while not job.done and time.monotonic() < deadline:
        time.sleep(0.2)
    assert job.done and job.error is None, job.error
    at.run()
    assert not at.exception and [e.value for e in at.error] == []
    front = next(d.value for d in at.dataframe if "speedup measured (materialized)" in d.value.columns)
    assert any("scored once" in c for c in front.columns)  # the held-out score beside the one that chose
    assert any("Chosen on" in c.value and "train" in c.value for c in at.caption)  # the page says where it chose
    assert len(front) == len(job.result["front"]) >= 1
    rows = ResultStore(store_path).list(source="search")
    assert len(rows) == job.result["store_rows_written"] >= 8
    at.switch_page("views/tradeoffs.py").run()
    t = table(at)
    assert "search" in set(t["source"])
    front_keys = {Recipe.from_dict(r["recipe"]).key() for r in job.result["front"]}
    stored = {ResultStore(store_path).get(int(i)).recipe_key for i in t.loc[t["source"] == "search", "stored id"]}
    assert front_keys <= stored  # every front recipe is a row on Trade-offs
    # chosen on the train split, scored once on the session's examples: only those scores are this data's rows
    sel = job.result["selection"]
    assert sel["scored_on"] is not None and sel["scored_examples"] >= 1
    assert all("eval_metric" in r for r in job.result["front"])
    assert (t["source"] == "search").sum() == len(front_keys)  # the trials (train data) are not this data's rows


def test_find_recipes_stop_ends_the_job(store_path):
    import time

    at = app("search")
    at.number_input(key="search_trials").set_value(400).run()
    at.button(key="search_run").click().run()
    job = at.session_state["jobs"]["recipe search"]
    time.sleep(1.0)
    at.button(key="stop_recipe search").click().run()
    deadline = time.monotonic() + 60
    while not job.done and time.monotonic() < deadline:
        time.sleep(0.2)
    assert job.done and job.error == "Stopped." and job.result is None


def test_an_earlier_sessions_baseline_is_not_listed_beside_the_sessions_own(store_path):
    app("tradeoffs")  # writes the baseline of these examples
    assert [r["description"] for r in ResultStore(store_path).list(source="dashboard")] == [Recipe().describe()]
    t = table(app("tradeoffs"))  # a restart: the same baseline, once
    assert sum(r.startswith(Recipe().describe()) for r in t["recipe"]) == 1


def test_a_stored_row_of_the_baseline_size_is_not_smaller_than_the_live_baseline(store_path):
    """Stored sizes keep 3 decimals; the live rows are rounded alike, so a sparsity row (the dense file's size)
    is plotted at the baseline's size, never beside it as smaller (and put on the Pareto front for it)."""
    import base64
    import json

    import numpy as np

    first = app("weights", r="p5000")  # 50% magnitude sparsity: the size of the dense file, unchanged
    assert not first.exception
    fresh = app("tradeoffs")
    assert not fresh.exception
    t = table(fresh)
    assert len(t[t["recipe"].str.startswith("50% sparse")]) == 1  # the stored row is there
    size_chart = json.loads(fresh.get("plotly_chart")[0].proto.spec)  # accuracy vs size
    points = next(d for d in size_chart["data"] if d["name"] == "recipes")["x"]
    x = np.frombuffer(base64.b64decode(points["bdata"]), dtype=points["dtype"]) if isinstance(points, dict) \
        else np.asarray(points, dtype=float)
    assert len(x) == 2 and x[0] == x[1]  # the baseline and the stored sparsity row: one size
