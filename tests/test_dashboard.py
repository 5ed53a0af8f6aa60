"""The dashboard, driven by Streamlit's AppTest: every page renders, clicks change the numbers,
bad input gives one sentence in an error box (never an exception), and the URL restores state.

Most tests run on the tiny random BERT (HEADROOM_DASHBOARD_MODEL=tiny); one runs on the real
demo model when assets/demo exists.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from analysis.errors import HeadroomError
from analysis.core.recipe import Recipe
from dashboard.state import decode_recipe, encode_recipe
from tests.apptest import app, metric

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
PAGES = {"model": "Model & data", "attention": "Attention", "heads": "Heads", "layers": "Layers", "bits": "Bits",
         "weights": "Weights", "profile": "Profile", "search": "Find recipes", "tradeoffs": "Trade-offs", "recovery": "Recovery", "papers": "Papers"}


@pytest.fixture(autouse=True)
def tiny_dashboard(monkeypatch, tmp_path):
    monkeypatch.setenv("HEADROOM_DASHBOARD_MODEL", "tiny")
    monkeypatch.setenv("HEADROOM_STORE", str(tmp_path / "results.sqlite"))  # each test its own history
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a bad hub id fails at once, without network






def errors(at) -> list[str]:
    return [e.value for e in at.error]


# ------------------------------------------------------------------------------ recipe in the URL
def test_recipe_url_round_trip():
    r = Recipe(masked_heads=[(0, 3), (5, 11), (2, 0)], dropped_layers=[4, 5], weight_bits=[8, 8, 4, 4, 8, 8],
               embedding_bits=8, granularity="per-head", num_groups=16, activation_bits=8, symmetric=False)
    code = encode_recipe(r)
    assert code == "h8.0.1.0.0.800_l4.5_b8.8.4.4.8.8_e8_gph_n16_a8_s0"
    assert decode_recipe(code).key() == r.key()
    assert encode_recipe(Recipe()) == "" and decode_recipe("").is_baseline()
    assert decode_recipe(encode_recipe(Recipe(weight_bits=4))).weight_bits == 4
    for bad in ("hzz", "q1", "b", "gxx"):
        with pytest.raises(HeadroomError):
            decode_recipe(bad)


# ------------------------------------------------------------------------------ every page
@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_renders_without_error(page):
    at = app(page)
    assert not at.exception, at.exception
    assert errors(at) == []
    assert at.title[0].value == PAGES[page]
    assert at.query_params["page"] == [page] or at.query_params["page"] == page


def test_the_page_registry_is_the_navigation():
    from dashboard import pages

    assert {p.name: p.title for p in pages.PAGES} == PAGES
    assert all(p.path.is_file() for p in pages.PAGES)
    at = app("nope")
    assert any("There is no page 'nope'" in w.value for w in at.warning)
    assert at.title[0].value == "Model & data"


def test_model_page_shows_the_baseline_card():
    at = app("model")
    assert metric(at, "layers x heads") == "3 x 4"
    assert metric(at, "accuracy").endswith("%")
    assert "ms" in metric(at, "latency")


# ------------------------------------------------------------------------------ live what-ifs
def test_masking_a_head_changes_the_metrics_and_the_url():
    at = app("heads")
    before = metric(at, "accuracy")
    assert metric(at, "agreement") == "100.0%"
    at.pills(key="head_grid_L0").set_value([1, 2, 3]).run()  # head 0 of layer 0 off
    assert not at.exception
    assert at.session_state["recipe"].masked_heads == [(0, 0)]
    assert metric(at, "agreement") != "100.0%" or metric(at, "accuracy") != before
    assert at.query_params["r"] in (["h1"], "h1")


def test_latency_panel_states_a_ratio_to_the_baseline_or_fp32_kernels():
    at = app("bits", r="b4")  # fake 4-bit: fp32 kernels, so no number at all
    assert not at.exception and errors(at) == []
    assert metric(at, "latency · fp32 kernels") == "unchanged"
    assert not any(b.label == "Re-measure" for b in at.button)
    at = app("heads", r="h1")  # one head masked: the materialized model against the baseline
    assert not at.exception and errors(at) == []
    lat = next(m for m in at.metric if m.label.startswith("latency · measured vs baseline"))
    assert lat.value.endswith("x") and "95% interval" in lat.help
    first = at.session_state["latency_remeasure_asked"] if "latency_remeasure_asked" in at.session_state else None
    assert first is None
    next(b for b in at.button if b.label == "Re-measure").click().run()  # times again, no error
    assert not at.exception and errors(at) == []
    assert "latency_remeasure_asked" not in at.session_state  # consumed by the new measurement


def test_url_restores_the_recipe_and_the_page():
    at = app("heads", r="h1.0.6")  # 0:0, 2:1, 2:2 masked
    assert not at.exception
    assert at.session_state["recipe"].masked_heads == [(0, 0), (2, 1), (2, 2)]
    assert at.pills(key="head_grid_L2").value == [0, 3]
    assert "3 heads masked" in at.markdown[0].value or any("3 heads masked" in m.value for m in at.markdown)


def test_bad_recipe_in_url_warns_and_shows_the_baseline():
    at = app("heads", r="zz9")
    assert not at.exception
    assert any("malformed" in w.value for w in at.warning)
    assert at.session_state["recipe"].is_baseline()


def test_recipe_for_another_model_in_url_is_one_sentence():
    at = app("heads", r="h0.0.0.0.0.800")  # head 5:11 does not exist in the 3 x 4 tiny model
    assert not at.exception
    assert any("does not exist" in e for e in errors(at))


def test_presets_apply_named_recipes():
    at = app("heads")
    next(b for b in at.button if b.label == "Poor man's BERT: drop top 2").click().run()
    assert at.session_state["recipe"].dropped_layers == [1, 2]
    next(b for b in at.button if b.label == "Random k").click().run()
    assert len(at.session_state["recipe"].masked_heads) == at.number_input(key="heads_k").value
    next(b for b in at.button if b.label == "Reset to baseline").click().run()
    assert at.session_state["recipe"].is_baseline()
    assert metric(at, "agreement") == "100.0%"


def test_sixteen_heads_preset_and_the_k_least_important_button_mask_the_same_heads():
    at = app("heads")
    assert next(b for b in at.button if b.label == "Mask k least important").disabled  # no importance yet
    next(b for b in at.button if b.label == "Sixteen heads: mask 40%").click().run()
    assert not at.exception and errors(at) == []
    preset = at.session_state["recipe"]
    assert len(preset.masked_heads) == round(0.4 * 3 * 4) and "michel" in preset.name  # importance computed
    at.number_input(key="heads_k").set_value(len(preset.masked_heads)).run()
    next(b for b in at.button if b.label == "Mask k least important").click().run()
    assert not at.exception
    assert at.session_state["recipe"].masked_heads == preset.masked_heads
    next(b for b in at.button if b.label == "Keep best head per layer").click().run()
    kept = [at.pills(key=f"head_grid_L{l}").value for l in range(3)]
    assert [len(k) for k in kept] == [1, 1, 1], kept


def test_dropping_every_layer_is_refused_with_one_sentence():
    at = app("layers")
    at.checkbox(key="layers_keep_0").uncheck().run()
    assert at.session_state["recipe"].dropped_layers == [0]
    at.checkbox(key="layers_keep_1").uncheck().run()
    at.checkbox(key="layers_keep_2").uncheck().run()
    assert not at.exception
    assert any("drops every layer" in e for e in errors(at))
    assert at.session_state["recipe"].dropped_layers == [0, 1]  # the previous recipe is kept
    assert at.checkbox(key="layers_keep_2").value is True


def test_bits_change_the_size():
    at = app("bits")
    assert metric(at, "size").startswith("6.2")  # the tiny dashboard model (hidden 48), fp32
    at.select_slider(key="bits_all").set_value(4).run()
    assert not at.exception
    assert at.session_state["recipe"].weight_bits == 4
    assert float(metric(at, "size").split()[0]) < 6.1


def test_attention_page_picks_misclassified_examples_and_truncates_long_input():
    at = app("attention")
    at.radio(key="att_source").set_value("misclassified by the model").run()
    assert not at.exception and errors(at) == []
    wrong = at.selectbox(key="att_pick_misclassified by the model")
    assert wrong.value is not None and "predicted:" in wrong.options[0]
    at.radio(key="att_source").set_value("type one").run()
    at.text_input(key="att_text").input("card " * 300).run()
    assert not at.exception and errors(at) == []
    assert any("cut to the model's first 128" in w.value for w in at.warning)


# ------------------------------------------------------------------------------ bad input
def test_bad_model_id_is_one_sentence_and_keeps_the_loaded_model():
    at = app("model")
    at.radio(key="md_model_kind").set_value("other").run()
    at.text_input(key="md_model_name").input("no-such-org/no-such-model").run()
    at.button(key="md_load").click().run()
    assert not at.exception
    assert len(errors(at)) == 1 and "no-such-org/no-such-model" in errors(at)[0]
    assert at.session_state["choice"].model == "tiny"
    assert metric(at, "layers x heads") == "3 x 4"  # the baseline card of the model still loaded


@pytest.mark.parametrize("content, expected", [
    (b"", "empty"),
    (b"\xff\xfe\x00bad", "UTF-8"),
])
def test_bad_upload_is_one_sentence(content, expected):
    at = app("model")
    at.radio(key="md_data_kind").set_value("upload a file").run()
    at.file_uploader(key="md_upload").set_value(("bad.csv", content, "text/csv")).run()
    assert not at.exception
    assert any(expected in e for e in errors(at)), errors(at)
    assert at.session_state["choice"].data == "tiny"


def test_upload_with_unknown_labels_is_refused_and_a_good_one_loads(tmp_path):
    at = app("model")
    at.radio(key="md_data_kind").set_value("upload a file").run()
    good = "text,label\n" + "".join(f"my card payment {i},{['card', 'transfer', 'refund'][i % 3]}\n" for i in range(30))
    bad = "text,label\n" + "".join(f"hello {i},weather\n" for i in range(5))
    at.file_uploader(key="md_upload").set_value(("bad.csv", bad.encode(), "text/csv")).run()
    at.button(key="md_load").click().run()
    assert not at.exception
    assert any("does not know the data's labels" in e for e in errors(at)), errors(at)
    assert at.session_state["choice"].data == "tiny"
    at.file_uploader(key="md_upload").set_value(("good.csv", good.encode(), "text/csv")).run()
    at.button(key="md_load").click().run()
    assert not at.exception and errors(at) == []
    assert at.session_state["choice"].data.endswith(".csv")
    assert metric(at, "accuracy (30 examples)")


# ------------------------------------------------------------------------------ trade-offs
def test_tradeoffs_lists_session_recipes_and_compares_two():
    at = app("tradeoffs")
    next(b for b in at.button if b.label.startswith("Evaluate the four demo presets")).click().run()
    assert not at.exception
    table = at.dataframe[0].value
    assert len(table) == 5  # baseline + four presets
    assert {"size MB", "agreement (%)", "latency x baseline (measured)", "latency (interleaved with baseline)"} <= set(table.columns)
    assert table["url recipe"].is_unique  # one row per recipe: a front never counts one twice
    assert any("get different predictions" in m.value for m in at.markdown)
    at.switch_page("views/papers.py").run()  # the same session: the best recipes sit beside the papers
    assert not at.exception and errors(at) == []
    assert at.title[0].value == "Papers"
    assert len(at.dataframe) == 2 and "recipe (yours)" in at.dataframe[1].value.columns


def test_bits_backends_measure_onnx_runtime_and_reach_tradeoffs_as_rows():
    pytest.importorskip("onnxruntime")
    at = app("bits", r="h1")
    next(b for b in at.button if b.label == "Compare backends").click().run()
    assert not at.exception and errors(at) == []
    table = next(d.value for d in at.dataframe if "time x torch fp32" in d.value.columns)
    assert list(table["backend"]) == ["torch fp32", "torch int8", "ORT fp32", "ORT int8", "ORT int8 per-channel"]
    at.switch_page("views/tradeoffs.py").run()
    assert not at.exception and errors(at) == []
    rows = at.dataframe[0].value
    assert sum("ORT int8 per-channel" in r for r in rows["recipe"]) == 1 and rows["url recipe"].is_unique
    assert sum("ORT int8" in r for r in rows["recipe"]) == 2  # per matrix and per channel, a row each


# ------------------------------------------------------------------------------ shared results
def test_result_table_computes_each_key_once_across_threads():
    from dashboard.resources import ResultTable

    table, calls = ResultTable(), []

    def slow():
        calls.append(1)
        time.sleep(0.2)
        return object()

    results = []
    threads = [threading.Thread(target=lambda: results.append(table.compute(("k",), slow))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len({id(r) for r in results}) == 1


# ------------------------------------------------------------------------------ the real demo model
@pytest.mark.skipif(not (Path(APP).parents[1] / "assets" / "demo" / "model.safetensors").exists(),
                    reason="assets/demo not present")
def test_demo_model_head_toggle(monkeypatch):
    monkeypatch.setenv("HEADROOM_DASHBOARD_MODEL", "demo")
    monkeypatch.setenv("HEADROOM_DASHBOARD_DATA", "banking77")
    at = app("heads", n="200")
    assert not at.exception and errors(at) == []
    assert metric(at, "examples") == "200"
    base = metric(at, "agreement")
    t0 = time.perf_counter()
    at.pills(key="head_grid_L5").set_value(list(range(1, 12))).run()
    seconds = time.perf_counter() - t0
    assert at.session_state["recipe"].masked_heads == [(5, 0)]
    assert base == "100.0%" and not at.exception
    print(f"demo head toggle (200 examples, AppTest, torch threads {os.cpu_count()}): {seconds:.2f} s")


# ------------------------------------------------------------------------------ newcomer fixes (issue 13)
def test_picking_the_sst2_demo_model_picks_its_data():
    at = app("model")
    at.radio(key="md_model_kind").set_value("demo-sst2").run()
    assert not at.exception and [w.value for w in at.warning] == []
    assert at.selectbox(key="md_bundled").value == "sst2" and at.selectbox(key="md_split_bundled").value == "dev"


def test_undo_and_reset_on_a_page_with_the_panel():
    at = app("layers")
    assert at.button(key="panel_undo").disabled and at.button(key="panel_reset").disabled
    at.checkbox(key="layers_keep_0").uncheck().run()
    at.checkbox(key="layers_keep_1").uncheck().run()
    assert at.session_state["recipe"].dropped_layers == [0, 1]
    at.button(key="panel_undo").click().run()
    assert at.session_state["recipe"].dropped_layers == [0]
    assert at.checkbox(key="layers_keep_1").value is True
    at.button(key="panel_reset").click().run()
    assert at.session_state["recipe"].is_baseline() and not at.exception


def test_the_panel_shows_an_estimate_first_then_the_exact_figure():
    from dashboard import resources
    from dashboard.state import DataChoice

    assert resources.quick_choice(DataChoice(limit=500)).limit == resources.QUICK_EXAMPLES
    assert resources.quick_choice(DataChoice(limit=150)) is None  # small data: the exact figure is quick
    at = app("heads")
    at.pills(key="head_grid_L0").set_value([1, 2, 3]).run()
    assert metric(at, "examples") == "500"  # what stays on the page is the exact figure
    assert any("exact after" in c.value for c in at.caption)


def test_two_recipes_with_the_same_name_stay_two_in_trade_offs():
    at = app("heads")
    at.session_state["recipe"] = Recipe(masked_heads=[(0, 3)], name="mine")
    at.run()
    at.session_state["recipe"] = Recipe(masked_heads=[(1, 2)], name="mine")
    at.run()
    at.switch_page("views/tradeoffs.py").run()
    assert not at.exception and errors(at) == []
    labels = list(at.dataframe[0].value["recipe"])
    assert "mine — 1 head masked (L0 H3)" in labels and "mine — 1 head masked (L1 H2)" in labels
    pick = at.selectbox(key="to_pick")
    assert len(pick.options) == 3  # baseline and the two
    pick.select_index(1).run()
    key = at.selectbox(key="to_pick").value
    at.button(key="to_make_current").click().run()
    assert at.session_state["recipe"].key() == key and not at.exception


def test_profile_table_has_units():
    at = app("profile")
    at.button(key="prof_run").click().run()
    table = next(d.value for d in at.dataframe if "% of time" in d.value.columns)
    assert {"parameters (M)", "GFLOPs (counted)", "% of parameters", "% of time"} <= set(table.columns)
    assert abs(table["% of parameters"].sum() - 100) < 0.5
