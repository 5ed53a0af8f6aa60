"""One real browser: the dashboard in headless Chromium, a head clicked off, the accuracy changes.

Runs `streamlit run dashboard/app.py` on a free localhost port (tiny random BERT, so it is quick),
drives Debian's Chromium through Playwright with every non-local request aborted, clicks head 0
of layer 0 in the head grid and waits for the live metrics panel to show a new accuracy. Saves a
screenshot (HEADROOM_SCREENSHOT_DIR, default the pytest tmp dir) and asserts that nothing left
localhost.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.browser import offline_page, requires_browser, streamlit_app, wait_for_streamlit

APP = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
ACCURACY = ".st-key-metrics_panel [data-testid='stMetricValue']"


@requires_browser
def test_click_a_head_off_in_a_real_browser(tmp_path):
    env = {"HEADROOM_DASHBOARD_MODEL": "tiny", "HF_HUB_OFFLINE": "1"}
    shots = Path(os.environ.get("HEADROOM_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    with streamlit_app(APP, env=env, timeout_s=90) as server, offline_page(1400, 1000) as browser:
        page = browser.page
        page.goto(server.url + "heads")
        wait_for_streamlit(page, 120_000)
        page.wait_for_selector(ACCURACY, timeout=60_000)
        before = page.locator(ACCURACY).first.inner_text()
        assert before.endswith("%")

        t0 = time.perf_counter()
        page.locator(".st-key-head_grid_L0 button").first.click()  # head 0 of layer 0: kept -> masked
        page.wait_for_function(
            "([sel, old]) => { const e = document.querySelector(sel); return e && e.innerText !== old; }",
            arg=[ACCURACY, before], timeout=30_000)
        seconds = time.perf_counter() - t0
        wait_for_streamlit(page)
        after = page.locator(ACCURACY).first.inner_text()
        page.screenshot(path=str(shots / "browser_head_toggled.png"))

        assert after != before and after.endswith("%")
        assert "r=h1" in page.url  # the state went into the link
        assert seconds < 30
        assert browser.blocked == [], f"requests left localhost: {browser.blocked}"
        assert browser.page_errors == []
