"""The Recovery page (AppTest, tiny model): Start a recovery of the session's recipe, see it finish with
before/after numbers, and make the recovered model the session's current model."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")


@pytest.fixture(autouse=True)
def tiny_dashboard(monkeypatch, tmp_path):
    monkeypatch.setenv("HEADROOM_DASHBOARD_MODEL", "tiny")
    monkeypatch.setenv("HEADROOM_STORE", str(tmp_path / "results.sqlite"))  # each test its own history
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def finish(at, seconds: float = 240) -> None:
    """Wait for the page's recovery job, then rerun the page: it must show the result without an exception."""
    from dashboard import state

    job = at.session_state[state.JOBS]["recovery"]
    deadline = time.time() + seconds
    while not job.done and time.time() < deadline:
        time.sleep(1)
    assert job.done and job.error is None, job.error
    at.run()
    assert not at.exception, at.exception


def test_recovery_page_runs_a_recovery_and_makes_it_the_current_model():
    from streamlit.testing.v1 import AppTest

    from dashboard import state

    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params["page"] = "recovery"
    at.query_params["r"] = "l2"  # layer 2 dropped
    at.run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Recovery"
    assert [e.value for e in at.error] == []
    at.selectbox(key=state.RECOVERY_OBJECTIVE).set_value("kd").run()
    next(b for b in at.button if b.label == "Start").click().run()
    finish(at)
    runs = at.session_state[state.RECOVERY_RUNS]
    (key, run), = runs.items()
    assert key[2] == "kd" and run["result"]["status"] == "complete"
    assert set(run["result"]["eval"]) >= {"before", "after", "teacher"}
    assert len(at.session_state[state.RECOVERY_CURVE]) >= 2
    next(b for b in at.button if b.label == "Make it the current model").click().run()
    assert not at.exception, at.exception
    assert at.session_state[state.CHOICE].model == run["result"]["out_dir"]
    assert [e.value for e in at.error] == []


def test_recovery_page_prunes_while_training_to_the_chosen_sparsity():
    """The unmodified model + movement pruning to 50%: the recovered model has half of each encoder matrix at
    zero, the run is named after its pruning, and its size on the plot is the bitmask file's."""
    from streamlit.testing.v1 import AppTest

    from analysis.core.adapters import ROLES, Adapter
    from analysis.io.models import load_model
    from dashboard import state
    from dashboard.views.recovery import UNMODIFIED

    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params["page"] = "recovery"
    at.run()
    assert not at.exception, at.exception
    at.selectbox(key=state.RECOVERY_RECIPE).set_value(UNMODIFIED).run()
    start = next(b for b in at.button if b.label == "Start")
    assert start.disabled  # the unmodified model, no pruning: nothing to recover
    at.radio(key=state.RECOVERY_PRUNE).set_value("movement").run()
    at.slider(key=state.RECOVERY_PRUNE_SPARSITY).set_value(50).run()
    assert any("worse than random" in w.value for w in at.warning)  # the measured collapse, said before Start
    start = next(b for b in at.button if b.label == "Start")
    assert not start.disabled
    start.click().run()
    finish(at)
    (key, run), = at.session_state[state.RECOVERY_RUNS].items()
    assert key[2] == "ce + movement 50%"
    pruning = run["result"]["pruning"]
    assert pruning["method"] == "movement" and pruning["final_sparsity"] == 0.5
    model = load_model(run["result"]["out_dir"], device="cpu").model
    a = Adapter(model)
    for j in range(a.num_layers):
        for role in ROLES:
            w = getattr(a.layer(j), role).weight
            assert int((w == 0).sum()) == round(0.5 * w.numel())
    assert [e.value for e in at.error] == []
