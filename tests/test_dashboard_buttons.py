"""Every button of every page, pressed under AppTest on the tiny model: no exception, no error box.

For each page, a fresh session presses every enabled button it has not pressed yet, waits for any
background job the press started, and repeats until no new button appears (so buttons that only
show after another one, such as the Profile sweep after Profile, are pressed too).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dashboard import pages

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
NOT_PRESSED = {"md_load"}  # Model & data's Load has its own tests (bad ids, uploads); pressing it reloads the same


@pytest.fixture(autouse=True)
def tiny_dashboard(monkeypatch, tmp_path):
    monkeypatch.setenv("HEADROOM_DASHBOARD_MODEL", "tiny")
    monkeypatch.setenv("HEADROOM_STORE", str(tmp_path / "results.sqlite"))  # each test its own history
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _wait_for_jobs(at, timeout_s: float = 120) -> None:
    jobs = at.session_state["jobs"] if "jobs" in at.session_state else {}
    deadline = time.monotonic() + timeout_s
    for job in jobs.values():
        while not job.done and time.monotonic() < deadline:
            time.sleep(0.1)
        assert job.done, f"{job.name} did not finish in {timeout_s} s"
        assert job.error is None, f"{job.name}: {job.error}"


def _button_id(button) -> str:
    return button.key or button.label


@pytest.mark.parametrize("page", pages.NAMES)
def test_every_button_of_every_page(page):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params["page"] = page
    at.run()
    pressed: list[str] = []
    for _ in range(6):  # rounds: a press may reveal new buttons
        todo = [b for b in at.button if not b.disabled and _button_id(b) not in pressed
                and _button_id(b) not in NOT_PRESSED and not (b.key or "").startswith("stop_")]
        if not todo:
            break
        for button in todo:
            current = next((b for b in at.button if _button_id(b) == _button_id(button)), None)
            if current is None or current.disabled:
                continue
            pressed.append(_button_id(button))
            current.click().run()
            _wait_for_jobs(at)
            at.run()
            assert not at.exception, f"{page}: pressing {button.label!r}: {at.exception}"
            assert [e.value for e in at.error] == [], f"{page}: pressing {button.label!r}"
            assert at.title[0].value == next(p.title for p in pages.PAGES if p.name == page)
    expected = {"profile": {"prof_run", "prof_sweep"}, "heads": {"heads_compute", "heads_mask_k", "curve_run"},
                "layers": {"layers_apply", "layers_sweep"}, "bits": {"bits_hessian", "bits_allocate", "bits_real_run"},
                "tradeoffs": {"to_presets", "to_build"}}
    assert expected.get(page, set()) <= set(pressed), pressed
