"""Compare of stored rows and the Parquet download on Trade-offs (dashboard/views/tradeoffs.py), by AppTest on
the tiny model: two rows stored by one session compare, after a restart, exactly as they did live; a stored
row of another example set (or without predictions) is never offered, and the page says why; the Parquet
download holds the CSV's rows."""

from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd
import pytest

from analysis.core.recipe import Recipe
from analysis.store.store import ResultStore
from tests.test_dashboard_store import app, store_path  # noqa: F401  (the fixture: a fresh store per test)

CMP = re.compile(r"\*\*(\d+) of (\d+) examples\*\* get different predictions \(A and B agree on ([\d.]+)%\)")


def compare_figures(at) -> tuple[int, int, float]:
    found = [m for md in at.markdown if (m := CMP.search(md.value))]
    assert len(found) == 1, [md.value for md in at.markdown]
    m = found[0]
    return int(m.group(1)), int(m.group(2)), float(m.group(3))


def pick(at, key: str, label_start: str):
    box = at.selectbox(key=key)
    index = next(i for i, o in enumerate(box.options) if o.startswith(label_start))
    return box.select_index(index)


def test_compare_of_two_stored_rows_after_a_restart_matches_the_live_compare(store_path):
    a, b = Recipe(masked_heads=[(0, 0)]), Recipe(dropped_layers=[1])
    live = app("heads", r="h1")  # recipe a: the panel's exact figure, one stored row
    live.session_state["recipe"] = b
    live.run()  # recipe b in the same session: a second row
    assert not live.exception
    rows = {r.recipe_key: r for r in ResultStore(store_path).records(source="dashboard")}
    assert {a.key(), b.key()} <= set(rows)
    assert all(len(rows[k].predictions) == rows[k].num_examples for k in (a.key(), b.key()))  # kept predictions
    ids = {k: rows[k].id for k in (a.key(), b.key())}

    # live: the session that evaluated both compares them from memory
    live.switch_page("views/tradeoffs.py").run()
    assert not live.exception
    pick(live, "cmp_a", "1 head masked (L0 H0)").run()
    pick(live, "cmp_b", "layer 1 dropped").run()
    assert (live.session_state["cmp_a"], live.session_state["cmp_b"]) == (a.key(), b.key())  # session recipes
    n, total, agree = compare_figures(live)
    assert 0 < n < total, "the two recipes must disagree somewhere for this test to say anything"

    # after a restart: a fresh session, whose only own row is the baseline, compares the two stored rows
    fresh = app("tradeoffs")
    assert not fresh.exception and [e.value for e in fresh.error] == []
    labels = fresh.selectbox(key="cmp_a").options
    assert f"1 head masked (L0 H0) [dashboard #{ids[a.key()]}]" in labels
    assert f"layer 1 dropped [dashboard #{ids[b.key()]}]" in labels
    pick(fresh, "cmp_a", "1 head masked (L0 H0) [dashboard").run()
    pick(fresh, "cmp_b", "layer 1 dropped [dashboard").run()
    assert not fresh.exception
    assert (fresh.session_state["cmp_a"], fresh.session_state["cmp_b"]) == (f"stored #{ids[a.key()]}",
                                                                            f"stored #{ids[b.key()]}")
    assert compare_figures(fresh) == (n, total, agree)
    assert agree == pytest.approx(round(100 * (total - n) / total, 1))
    table = next(d.value for d in fresh.dataframe if any(c.startswith("A: ") for c in d.value.columns))
    assert len(table) == min(n, 200)  # one line per example that changed (the first 200)
    assert [c.value for c in fresh.caption if "not offered to compare" in c.value] == []  # every stored row kept them


def test_a_stored_row_of_another_example_set_or_without_predictions_is_not_offered(store_path):
    from analysis.store.store import record_evaluation
    from dashboard import history, resources
    from dashboard.state import default_choice

    at = app("tradeoffs")  # the store is made, the baseline written
    choice = default_choice()
    ev = resources.evaluator(choice)
    mfp, dfp = history.fingerprints(choice)
    store = ResultStore(store_path)
    kept = store.add(record_evaluation(ev, ev.evaluate(Recipe(weight_bits=8)), source="cli", keep_predictions=True,
                                       model_fp=mfp, data_fp=dfp))
    bare = store.add(record_evaluation(ev, ev.evaluate(Recipe(weight_bits=4)), source="cli", model_fp=mfp, data_fp=dfp))
    # the same fingerprint but the predictions of fewer examples (a row an older Headroom wrote, say)
    short = record_evaluation(ev, ev.evaluate(Recipe(dropped_layers=[2])), source="sweep", keep_predictions=True,
                              model_fp=mfp, data_fp=dfp)
    short.predictions = short.predictions[:-5]
    short.num_examples -= 5
    short_id = store.add(short)
    # another subset of the same data (another data fingerprint): not this data's row at all
    other_choice = default_choice()
    other_choice.limit = 40
    other_ev = resources.evaluator(other_choice)
    other = store.add(record_evaluation(other_ev, other_ev.evaluate(Recipe(dropped_layers=[1])), source="cli",
                                        keep_predictions=True, model_fp=mfp))
    at = app("tradeoffs")
    assert not at.exception
    t = next(d.value for d in at.dataframe if "url recipe" in d.value.columns)
    shown = {int(i) for i in t["stored id"].dropna()}
    assert {kept, bare, short_id} <= shown and other not in shown
    options = at.selectbox(key="cmp_a").options
    assert any(o.endswith(f"[cli #{kept}]") for o in options)
    assert not any(o.endswith(f"#{bare}]") or o.endswith(f"#{short_id}]") or o.endswith(f"#{other}]")
                   for o in options)
    note = [c.value for c in at.caption if "not offered to compare" in c.value]
    assert len(note) == 1
    assert "1 stored without per-example predictions" in note[0] and "1 from another example set" in note[0]


def test_the_parquet_download_holds_the_csv_rows(store_path, monkeypatch):
    from streamlit.delta_generator import DeltaGenerator

    from analysis.store.store import record_evaluation
    from dashboard import history, resources
    from dashboard.state import default_choice

    app("heads", r="h1")
    choice = default_choice()
    ev = resources.evaluator(choice)
    mfp, dfp = history.fingerprints(choice)
    ResultStore(store_path).add(record_evaluation(ev, ev.evaluate(Recipe(weight_bits=8)), source="cli",
                                                  model_fp=mfp, data_fp=dfp))
    downloads = {}
    original = DeltaGenerator.download_button

    def recording(self, label, data, *args, **kwargs):
        downloads[label] = data
        return original(self, label, data, *args, **kwargs)

    monkeypatch.setattr(DeltaGenerator, "download_button", recording)
    at = app("tradeoffs")
    assert not at.exception
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels.index("Download the table (Parquet)") == labels.index("Download the table (CSV)") + 1
    csv = pd.read_csv(io.BytesIO(downloads["Download the table (CSV)"]))
    parquet = pd.read_parquet(io.BytesIO(downloads["Download the table (Parquet)"]))
    assert list(parquet.columns) == list(csv.columns)
    assert len(parquet) == len(csv) >= 3  # the baseline, the stored h1 row, the cli row
    assert set(parquet["source"]) == {"dashboard", "cli"}
    for col in csv.columns:
        a, b = csv[col], parquet[col]
        if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
            assert np.allclose(a.to_numpy(float), b.to_numpy(float), equal_nan=True), col
        else:
            assert list(a.fillna("").astype(str)) == list(b.fillna("").astype(str)), col
