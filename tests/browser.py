"""Real-browser test helpers: run a Streamlit app on localhost and drive Debian's Chromium.

Used by the few tests that must see what a user sees (bertviz drawing its SVG, the dashboard
answering a click) with the network cut off. Playwright drives the system `chromium`
(`apt-get install chromium`); Playwright's own browser download (`playwright install`) is
never used. Every request that is not to 127.0.0.1/localhost (or a file:/data: URL) is aborted
and recorded in `OfflinePage.blocked`, so a test can assert the page asked the internet for
nothing; DNS is also mapped to nowhere, so anything that slips past the route fails too.

    with streamlit_app("dashboard/app.py") as app, offline_page() as browser:
        browser.page.goto(app.url)
        wait_for_streamlit(browser.page)
        assert browser.blocked == []
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import pytest

CHROMIUM_PATH = os.environ.get("HEADROOM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI containers run as root
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--no-first-run",
    "--metrics-recording-only",
    # Belt and braces: no host but localhost resolves, whatever the route handler misses.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
LOCAL_SCHEMES = {"file", "data", "blob", "about"}


def browser_unavailable_reason() -> str | None:
    """Why no real-browser test can run here, or None when Chromium and Playwright are present."""
    if not Path(CHROMIUM_PATH).is_file():
        return f"Chromium not found at {CHROMIUM_PATH} (Debian: apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install playwright==1.65.2; no `playwright install`)"
    return None


def chromium_unavailable_reason() -> str | None:
    """Why Chromium itself (without Playwright) can't run here, or None."""
    if not Path(CHROMIUM_PATH).is_file():
        return f"Chromium not found at {CHROMIUM_PATH} (Debian: apt-get install chromium)"
    return None


def skip_if_no_browser() -> None:
    """pytest.skip the calling test when Chromium or Playwright is missing."""
    reason = browser_unavailable_reason()
    if reason:
        pytest.skip(reason)


requires_browser = pytest.mark.skipif(browser_unavailable_reason() is not None,
                                      reason=browser_unavailable_reason() or "")


def is_local_url(url: str) -> bool:
    """True for URLs that stay on this machine (localhost, file:, data:, blob:, about:)."""
    parts = urlsplit(url)
    if parts.scheme in LOCAL_SCHEMES:
        return True
    return (parts.hostname or "") in LOCAL_HOSTS


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class StreamlitServer:
    """A `streamlit run` subprocess serving one app on localhost."""

    script: Path
    port: int
    process: subprocess.Popen
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def log(self) -> str:
        """Everything the server printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _wait_until_healthy(server: StreamlitServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    health = f"http://127.0.0.1:{server.port}/_stcore/health"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {server.process.returncode}:\n{server.log()[-3000:]}")
        try:
            with urllib.request.urlopen(health, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    raise RuntimeError(f"streamlit did not answer on port {server.port} within {timeout_s:.0f} s:\n"
                       f"{server.log()[-3000:]}")


@contextlib.contextmanager
def streamlit_app(script: str | os.PathLike, timeout_s: float = 60.0, env: dict[str, str] | None = None,
                  cwd: str | os.PathLike | None = None) -> Iterator[StreamlitServer]:
    """Start `streamlit run script` on a free port, wait for it to answer, stop it on exit."""
    script = Path(script).resolve()
    if not script.is_file():
        raise FileNotFoundError(f"No Streamlit script at {script}.")
    port = free_port()
    log_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"streamlit-{port}.log"
    command = [
        sys.executable, "-m", "streamlit", "run", str(script),
        "--server.headless", "true",
        "--server.port", str(port),
        "--server.address", "127.0.0.1",
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
    ]
    with open(log_file, "wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, cwd=cwd or script.parent,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # its own process group, so stopping it takes its children too
        )
    server = StreamlitServer(script=script, port=port, process=process, log_path=log_file)
    try:
        _wait_until_healthy(server, timeout_s)
        yield server
    finally:
        _stop(process)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)  # the group this helper created, nothing else
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@dataclass
class OfflinePage:
    """A Playwright page in system Chromium with every non-local request aborted."""

    page: object  # playwright.sync_api.Page
    blocked: list[str] = field(default_factory=list)  # URLs the page tried to reach off this machine
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)  # uncaught JS exceptions


@contextlib.contextmanager
def offline_page(width: int = 1200, height: int = 900) -> Iterator[OfflinePage]:
    """Launch headless system Chromium; yield a page whose non-local requests are aborted."""
    skip_if_no_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM_PATH, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": width, "height": height}, service_workers="block")
            page = context.new_page()
            result = OfflinePage(page=page)

            def guard(route) -> None:
                url = route.request.url
                if is_local_url(url):
                    route.continue_()
                else:
                    result.blocked.append(url)
                    route.abort("internetdisconnected")

            context.route("**/*", guard)
            page.on("websocket", lambda ws: None if is_local_url(ws.url) else result.blocked.append(ws.url))
            page.on("console", lambda msg: result.console_errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda err: result.page_errors.append(str(err)))
            yield result
        finally:
            browser.close()


def wait_for_streamlit(page, timeout_ms: float = 30_000) -> None:
    """Wait until the Streamlit app in `page` is connected and its script has finished running."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout_ms)
    page.wait_for_function(
        """() => {
            const app = document.querySelector('[data-testid="stApp"]');
            return app && app.getAttribute('data-test-script-state') === 'notRunning'
                && app.getAttribute('data-test-connection-state') === 'CONNECTED';
        }""",
        timeout=timeout_ms,
    )
