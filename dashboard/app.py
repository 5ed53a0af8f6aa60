"""Headroom's dashboard: see, live, what compression does to a BERT-family classifier.

    streamlit run dashboard/app.py

Opens on the offline `demo` model (MiniLM-L6 fine-tuned on Banking77) and 500 stratified test
examples. One small module per page in `dashboard/views/`, listed once in `dashboard/pages.py`; the
state (model, data, recipe, page; `dashboard/state.py`) lives in the URL, so a copied link
opens the same view. The dashboard holds no science: every number comes from `analysis`.
"""

from __future__ import annotations

from pathlib import Path

import analysis

analysis.quiet()

import streamlit as st  # noqa: E402

from dashboard import pages, state  # noqa: E402

DASHBOARD = Path(__file__).resolve().parent

# a local favicon, and no :material: page icons: the browser would fetch those from Google
st.set_page_config(page_title="Headroom", page_icon=str(DASHBOARD / "static" / "favicon.png"),
                   layout="wide")

state.init()
# Every page keeps its own URL path (/heads, /bits); the default page is served at "/". A page that
# became the default would lose its path, and a copied /bits link would open "Page not found".
PAGES = {p.name: st.Page(p.path, title=p.title, url_path=p.name, default=(p.name == pages.DEFAULT))
         for p in pages.PAGES}
page = st.navigation(list(PAGES.values()))
# A link to "/" that names its page in ?page=heads (older links, scripts) opens that page, once.
start = st.session_state.pop(state.START_PAGE, "")
if start and start != pages.DEFAULT and page.url_path == PAGES[pages.DEFAULT].url_path:
    st.switch_page(PAGES[start], query_params=dict(st.query_params))

with st.sidebar:
    c = state.choice()
    st.caption(f"**{c.model}** on {c.device} · {state.data_label(c)} ({c.split}, "
               f"{'all' if not c.limit else c.limit} examples)")
    st.caption("The link in the address bar opens this exact view.")
    from dashboard.widgets import jobs_in_sidebar

    jobs_in_sidebar()
for warning in st.session_state.pop(state.URL_WARNINGS, []):
    st.warning(warning)

st.session_state[state.PAGE] = next((k for k, p in PAGES.items() if p.url_path == page.url_path), pages.DEFAULT)
try:
    page.run()
except Exception as exc:  # noqa: BLE001 - last line of defence: no traceback on the page
    from dashboard.widgets import show_error

    show_error(exc)
state.sync_query_params()
