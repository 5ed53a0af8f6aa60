"""Tests for analysis/io/papers.py: the shipped papers table parses, row by row."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from analysis.errors import HeadroomError
from analysis.io.papers import (
    COLUMNS,
    METHOD_KINDS,
    load_papers,
    papers_for_method,
    parse_reduction_pct,
    parse_speedup_x,
)

SHARED_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "papers.csv"

# (authors, reduction_pct, speedup_x) for every row, NaN where the paper gives no figure
EXPECTED = [
    ("Gordon, Duh, Andrews", 30.0, math.nan),
    ("Michel, Levy, Neubig", 55.0, 1.2),
    ("McCarley", 50.0, 2.0),
    ("Fan, Grave, Joulin", 62.5, math.nan),
    ("Sajjad, Dalvi, Durrani, Nakov", 40.0, math.nan),
    ("Guo, Liu, Wu, Lin, Wang", 60.0, math.nan),
    ("Wang, Wohlwend, Lei", 35.0, math.nan),
    ("Sanh, Wolf, Rush", 97.0, math.nan),
    ("Lan et al.", 92.5, 13.0),
    ("Zhao et al.", 89.0, math.nan),
    ("Sanh, Debut, Chaumond, Wolf", 40.0, 1.6),
    ("Tang et al.", 99.0, 15.0),
    ("Mukherjee, Awadallah", 96.0, math.nan),
    ("Liu et al.", 90.0, 14.0),
    ("Sun, Cheng, Gan, Liu", 62.5, 3.0),
    ("Jiao et al.", 87.0, 9.4),
    ("Sun et al.", 77.0, 5.5),
    ("Zafrir, Boudoukh, Izsak, Wasserblat", 75.0, math.nan),
    ("Shen et al.", 93.0, math.nan),
]


def test_every_row_parses():
    papers = load_papers()
    assert len(papers) == len(EXPECTED) == 19
    got = list(zip(papers["authors"], papers["reduction_pct"], papers["speedup_x"]))
    for (authors, reduction, speedup), (want_authors, want_reduction, want_speedup) in zip(got, EXPECTED):
        assert authors == want_authors
        assert reduction == pytest.approx(want_reduction, nan_ok=True), authors
        assert speedup == pytest.approx(want_speedup, nan_ok=True), authors
    assert papers["reduction_pct"].notna().all()  # every paper reports how much it removed
    assert papers["speedup_x"].notna().sum() == 9
    assert papers["reduction_pct"].dtype == float and papers["speedup_x"].dtype == float


def test_columns_and_citations():
    papers = load_papers()
    assert list(papers.columns[: len(COLUMNS)]) == COLUMNS
    assert papers["citation"].notna().all() and (papers["citation"].str.len() > 0).all()
    michel = papers[papers["authors"] == "Michel, Levy, Neubig"].iloc[0]
    assert michel["citation"] == "Michel, Levy, Neubig (2019), NeurIPS 2019"
    assert set(papers.loc[papers["speedup_of"] == "training", "authors"]) == {"Lan et al."}
    assert papers["year"].between(2019, 2023).all()


def test_load_papers_returns_a_copy():
    papers = load_papers()
    papers.loc[0, "authors"] = "changed"
    assert load_papers().loc[0, "authors"] == "Gordon, Duh, Andrews"


@pytest.mark.skipif(not SHARED_CSV.is_file(), reason=f"shared data not at {SHARED_CSV}")
def test_project_copy_matches_shared_figures():
    shared = pd.read_csv(SHARED_CSV, dtype=str, keep_default_na=False)
    ours = load_papers()[COLUMNS].astype({"year": str})
    pd.testing.assert_frame_equal(ours, shared[COLUMNS])


@pytest.mark.parametrize("kind, count, includes", [
    ("heads", 2, "Michel, Levy, Neubig"),
    ("layers", 3, "Sajjad, Dalvi, Durrani, Nakov"),
    ("quantization", 2, "Zafrir, Boudoukh, Izsak, Wasserblat"),
    ("quantisation", 2, "Shen et al."),
    ("distillation", 8, "Sanh, Debut, Chaumond, Wolf"),
    ("pruning", 8, "Sanh, Wolf, Rush"),
    ("ffn", 1, "McCarley"),
    ("sharing", 3, "Lan et al."),
    ("parameters", 12, "Jiao et al."),
])
def test_papers_for_method(kind, count, includes):
    rows = papers_for_method(kind)
    assert len(rows) == count
    assert includes in set(rows["authors"])


def test_every_kind_finds_something_and_unknown_kind_is_clear():
    for kind in METHOD_KINDS:
        assert len(papers_for_method(kind)) > 0, kind
    with pytest.raises(HeadroomError, match="Unknown compression kind 'mixing'"):
        papers_for_method("mixing")


@pytest.mark.parametrize("text, want", [
    ("?", math.nan), ("up to 40%", 40.0), ("50-60%", 55.0), ("77% (4.3x smaller)", 77.0), ("12.5 %", 12.5),
])
def test_parse_reduction(text, want):
    assert parse_reduction_pct(text) == pytest.approx(want, nan_ok=True)


@pytest.mark.parametrize("text, want", [
    ("?", math.nan), ("? (needs int8 hardware)", math.nan), ("1.2x (up to 17.5% faster)", 1.2),
    ("2-4x", 3.0), ("1.6x (60% faster); the survey table lists 2.5x", 1.6), ("faster", math.nan),
])
def test_parse_speedup(text, want):
    assert parse_speedup_x(text) == pytest.approx(want, nan_ok=True)


def test_bad_file_gets_a_clear_error(tmp_path):
    with pytest.raises(HeadroomError, match="No papers table"):
        load_papers(tmp_path / "none.csv")
    broken = tmp_path / "broken.csv"
    broken.write_text("paper,year\nX,2020\n")
    with pytest.raises(HeadroomError, match="lacks the columns"):
        load_papers(broken)
