"""The dashboard's pages, declared once: `app.py` builds the navigation from this list and
`state.py` checks a link's `?page=` against it.

Each page is one small module in `dashboard/views/` with a `render()` (not `pages/`: Streamlit
would treat that folder as an old-style multipage app). A page's name is its `?page=` value and
its URL path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

VIEWS = Path(__file__).resolve().parent / "views"


@dataclass(frozen=True)
class Page:
    name: str  # the ?page= value and the URL path, e.g. "heads"
    title: str  # the navigation label; the page's st.title says the same
    file: str  # its module in dashboard/views/

    @property
    def path(self) -> Path:
        return VIEWS / self.file


PAGES: tuple[Page, ...] = (
    Page("model", "Model & data", "model_data.py"),
    Page("attention", "Attention", "attention.py"),
    Page("heads", "Heads", "heads.py"),
    Page("layers", "Layers", "layers.py"),
    Page("bits", "Bits", "bits.py"),
    Page("weights", "Weights", "weights.py"),
    Page("profile", "Profile", "profile.py"),
    Page("search", "Find recipes", "search.py"),
    Page("tradeoffs", "Trade-offs", "tradeoffs.py"),
    Page("recovery", "Recovery", "recovery.py"),
    Page("papers", "Papers", "papers.py"),
)
DEFAULT = "model"  # the page at "/" when the link names none
NAMES: tuple[str, ...] = tuple(p.name for p in PAGES)
