"""Published BERT-compression results, for the dashboard's Papers page.

The figures live in `analysis/data_files/papers.csv` (see PAPERS_SOURCE.md there): one row per
paper, following Gordon's 2019 survey "All The Ways You Can Compress BERT" and the papers
themselves. The CSV keeps each figure as the paper words it ("50-60%", "1.2x (up to 17.5%
faster)", "?"); `load_papers` adds numbers parsed from that text so they can be plotted,
and a citation to show next to them. These are published claims, not our measurements.
"""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path

import pandas as pd

from analysis.errors import HeadroomError

PAPERS_CSV = Path(__file__).parent / "data_files" / "papers.csv"
COLUMNS = ["paper", "authors", "year", "venue", "method", "applied_at", "reduced", "reduction",
           "speedup", "accuracy", "comment"]

# "50-60%" / "up to 97%" / "77% (4.3x smaller)": the first percentage or range of them
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*(?:-\s*(\d+(?:\.\d+)?))?\s*%")
# "1.2x (up to 17.5% faster)" / "2-4x" / "6-20x (training)": the first factor or range
_FACTOR = re.compile(r"(\d+(?:\.\d+)?)\s*(?:-\s*(\d+(?:\.\d+)?))?\s*x\b")


def _midpoint(match: re.Match | None) -> float:
    """Midpoint of a matched "a" or "a-b"; NaN when nothing matched."""
    if match is None:
        return math.nan
    low = float(match.group(1))
    high = float(match.group(2)) if match.group(2) else low
    return (low + high) / 2


def parse_reduction_pct(text: str) -> float:
    """Percent reduced from text like "30%", "50-60%" (midpoint 55), "up to 40%"; NaN for "?"."""
    text = str(text).strip()
    if text.startswith("?"):
        return math.nan
    return _midpoint(_PERCENT.search(text))


def parse_speedup_x(text: str) -> float:
    """Speed-up factor from text like "1.2x (up to 17.5% faster)" or "2-4x" (midpoint 3); NaN for "?"."""
    text = str(text).strip()
    if text.startswith("?"):
        return math.nan
    return _midpoint(_FACTOR.search(text))


def _citation(row: pd.Series) -> str:
    return f"{row['authors']} ({int(row['year'])}), {row['venue']}"


@functools.lru_cache(maxsize=4)
def _load(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise HeadroomError(f"No papers table at {path}; restore analysis/data_files/papers.csv from git.")
    # keep_default_na=False: "?" and "" stay text; only our parsers decide what is missing
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise HeadroomError(f"The papers table {path} lacks the columns {missing}; it needs {COLUMNS}.")
    table["year"] = table["year"].astype(int)
    table["reduction_pct"] = table["reduction"].map(parse_reduction_pct).astype(float)
    table["speedup_x"] = table["speedup"].map(parse_speedup_x).astype(float)
    # ALBERT's "6-20x (training)" is a training-time speed-up, not inference; say which it is
    table["speedup_of"] = ["training" if "training" in s else "inference" for s in table["speedup"]]
    table["citation"] = table.apply(_citation, axis=1)
    return table


def load_papers(path: str | Path | None = None) -> pd.DataFrame:
    """The papers table: the CSV's columns plus `reduction_pct`, `speedup_x`, `speedup_of`, `citation`.

    path: another CSV with the same columns; defaults to the copy shipped with the project.
    Returns a fresh copy each call, so callers may modify it.
    """
    return _load(Path(path) if path is not None else PAPERS_CSV).copy()


def _has(column: str, *words: str):
    return lambda table: table[column].str.contains("|".join(words), case=False, regex=True)


# What a user can ask for -> which rows: by what was reduced, or by the method used
METHOD_KINDS = {
    "heads": _has("reduced", "attention heads"),
    "layers": lambda t: _has("reduced", "layers")(t) | _has("method", r"\blayer")(t),
    "ffn": _has("reduced", "FFN"),
    "parameters": _has("reduced", "parameters"),
    "pruning": _has("method", "pruning", "dropping"),
    "quantization": _has("method", "quantisation", "quantization"),
    "distillation": _has("method", "distillation"),
    "sharing": _has("method", "sharing", "factorisation", "factorization"),
}
_ALIASES = {"quantisation": "quantization", "bits": "quantization", "head": "heads", "layer": "layers",
            "factorisation": "sharing", "factorization": "sharing", "distill": "distillation"}


def papers_for_method(kind: str, papers: pd.DataFrame | None = None) -> pd.DataFrame:
    """The rows of `papers` (default: load_papers()) about one kind of compression.

    kind: one of METHOD_KINDS ("heads", "layers", "ffn", "parameters", "pruning",
        "quantization", "distillation", "sharing"); British spellings are accepted.
    """
    key = _ALIASES.get(kind.strip().lower(), kind.strip().lower())
    if key not in METHOD_KINDS:
        raise HeadroomError(f"Unknown compression kind {kind!r}; choose one of {sorted(METHOD_KINDS)}.")
    table = load_papers() if papers is None else papers
    return table[METHOD_KINDS[key](table)].reset_index(drop=True)
