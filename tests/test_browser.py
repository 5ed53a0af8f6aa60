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


def _open_fresh(server, url: str, width: int = 1400):
    """A new browser (fresh context: no cookies, no session) on `url`; returns (OfflinePage, its context)."""
    ctx = offline_page(width, 1000)
    browser = ctx.__enter__()
    browser.page.goto(url)
    wait_for_streamlit(browser.page, 120_000)
    browser.page.wait_for_selector(ACCURACY, timeout=60_000)
    wait_for_streamlit(browser.page, 60_000)
    return browser, ctx


def _panel(page) -> list[str]:
    return page.locator(".st-key-metrics_panel [data-testid='stMetricValue']").all_inner_texts()


@requires_browser
def test_a_copied_link_opens_the_same_view_without_page_not_found(tmp_path):
    env = {"HEADROOM_DASHBOARD_MODEL": "tiny", "HF_HUB_OFFLINE": "1"}
    with streamlit_app(APP, env=env, timeout_s=90) as server:
        first, ctx = _open_fresh(server, server.url + "heads")
        try:
            page = first.page
            before = page.locator(ACCURACY).first.inner_text()
            page.locator(".st-key-head_grid_L0 button").first.click()  # head 0 of layer 0 off
            page.wait_for_function("() => location.search.includes('r=h1')", timeout=30_000)
            wait_for_streamlit(page, 60_000)
            page.wait_for_function(
                "([sel, old]) => { const e = document.querySelector(sel); return e && e.innerText !== old; }",
                arg=[ACCURACY, before], timeout=30_000)
            copied, shown = page.url, _panel(page)
        finally:
            ctx.__exit__(None, None, None)
        assert "/heads?" in copied and "r=h1" in copied

        for url, title in ((copied, "Heads"), (server.url + "bits?r=b4&page=bits", "Bits"),
                           (server.url + "?page=layers&r=l0", "Layers")):
            second, ctx = _open_fresh(server, url)
            try:
                page = second.page
                body = page.locator("body").inner_text()
                assert "Page not found" not in body, url
                assert page.locator("h1").first.inner_text().strip() == title, url
                if url == copied:
                    assert _panel(page) == shown  # the same numbers as where the link was copied
                    assert page.url == copied
                if title == "Bits":
                    assert "r=b4" in page.url and "/bits" in page.url
                if title == "Layers":
                    assert "/layers" in page.url and "r=l0" in page.url
                assert second.blocked == [] and second.page_errors == []
            finally:
                ctx.__exit__(None, None, None)
