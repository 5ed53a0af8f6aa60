"""AppTest helpers shared by the dashboard test files: open a page of the dashboard, read a metric."""

from __future__ import annotations

from pathlib import Path

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")


def app(page: str = "model", *, timeout: float = 120, **params):
    """The dashboard run once on `page` with these query parameters (a fresh session)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=timeout)
    at.query_params["page"] = page
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def metric(at, prefix: str) -> str:
    """The value of the first st.metric whose label starts with `prefix`."""
    return next(m.value for m in at.metric if m.label.startswith(prefix))
