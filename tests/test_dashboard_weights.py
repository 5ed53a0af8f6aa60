"""The Weights page under AppTest on the tiny model: each control writes the session Recipe and moves the
metrics panel; the new fields travel in the link; FFN neurons are scored on the train split, not on the
evaluated examples; the Profile page recounts parameters and FLOPs under the recipe.
"""

from __future__ import annotations

import time

import pytest

from analysis.core.recipe import Recipe
from dashboard import state
from dashboard.state import decode_recipe, encode_recipe
from tests.apptest import app as _app
from tests.apptest import metric



def app(page: str = "weights", **params):
    return _app(page, timeout=180, **params)


@pytest.fixture(autouse=True)
def tiny_dashboard(monkeypatch, tmp_path):
    monkeypatch.setenv("HEADROOM_DASHBOARD_MODEL", "tiny")
    monkeypatch.setenv("HEADROOM_STORE", str(tmp_path / "results.sqlite"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")






def ok(at) -> None:
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == []


def panel_title(at) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("**Live metrics**"))


def url_code(at) -> str:
    r = at.query_params["r"]
    return r[0] if isinstance(r, list) else r


def test_the_page_renders_with_the_panel_and_says_what_its_figures_are():
    at = app()
    ok(at)
    assert at.title[0].value == "Weights"
    assert metric(at, "agreement") == "100.0%"  # the metrics panel, on the baseline
    assert any("simulated; before recovery" in c.value and "Recovery" in c.value for c in at.caption)
    # every control says what it does
    for widget in (at.selectbox(key=state.W_FFN_METHOD), at.select_slider(key=state.W_FFN_FRACTION),
                   at.radio(key=state.W_FFN_ORDER), at.select_slider(key=state.W_SPARSITY),
                   at.multiselect(key=state.W_SPARSITY_ROLES), at.radio(key=state.W_SPARSITY_SCOPE),
                   at.radio(key=state.W_RANK_MODE), at.multiselect(key=state.W_RANK_LAYERS),
                   at.selectbox(key=state.W_EMBEDDING)):
        assert widget.help, widget.key
    assert at.select_slider(key=state.W_FFN_FRACTION).disabled  # nothing scored yet


def _compute_importance(at):
    at.button(key="w_ffn_compute").click().run()
    job = at.session_state[state.JOBS]["FFN neuron importance"]
    deadline = time.monotonic() + 120
    while not job.done and time.monotonic() < deadline:
        time.sleep(0.1)
    assert job.done and job.error is None, job.error
    at.run()
    ok(at)
    return job


def test_ffn_neurons_are_scored_on_train_and_the_fraction_prunes_them():
    at = app()
    job = _compute_importance(at)
    key, imp = job.result
    assert imp.details["data"] == "tiny:train"  # a train subset, never the evaluated tiny:test examples
    assert imp.num_examples == at.number_input(key=state.W_FFN_EXAMPLES).value
    evaluated = at.session_state[state.CHOICE]
    assert key == state.neuron_importance_key(state.DataChoice(**{**evaluated.__dict__, "split": "train",
                                                                  "limit": imp.num_examples}), "gradient")
    assert any("not the evaluated ones" in c.value for c in at.caption)
    before = metric(at, "agreement")
    at.select_slider(key=state.W_FFN_FRACTION).set_value(0.5).run()
    ok(at)
    recipe = at.session_state[state.RECIPE]
    sizes = [96, 96, 96]  # the tiny dashboard model's FFN width
    kept = [sizes[l] - len(recipe.masked_neurons_in(l)) for l in range(3)]
    assert kept == [48, 48, 48]  # uniform: every layer its own least important half
    assert "FFN neurons masked" in panel_title(at)
    assert metric(at, "agreement") != before or metric(at, "size") != "6.2 MB"
    assert decode_recipe(url_code(at)).key() == recipe.key()  # the link carries the neurons
    at.radio(key=state.W_FFN_ORDER).set_value("global order (uneven per layer)").run()
    ok(at)
    recipe = at.session_state[state.RECIPE]
    kept = [sizes[l] - len(recipe.masked_neurons_in(l)) for l in range(3)]
    assert sum(kept) == 144 and recipe.num_masked_neurons == 144  # half of all, ranked globally
    assert any("144 of 288" in c.proto.spec for c in at.get("plotly_chart"))  # the kept-per-layer chart
    assert kept != [48, 48, 48]  # global order: uneven per layer
    at.select_slider(key=state.W_FFN_FRACTION).set_value(0.0).run()
    assert at.session_state[state.RECIPE].is_baseline()


def test_no_train_split_means_no_scores():
    at = app(split="train")  # a session evaluating train itself: nothing apart from the evaluated examples
    ok(at)
    assert at.button(key="w_ffn_compute").disabled
    assert any("no train split apart from the evaluated examples" in c.value for c in at.caption)


def test_sparsity_controls_write_the_recipe_and_count_the_bytes():
    at = app()
    size0 = metric(at, "size")
    at.select_slider(key=state.W_SPARSITY).set_value(0.9).run()
    ok(at)
    recipe = at.session_state[state.RECIPE]
    assert recipe.sparsity == 0.9 and recipe.has_sparsity()
    assert "90% sparse" in panel_title(at)
    dense, bitmask, csr = (float(metric(at, label).split()[0]) for label in ("dense file", "bitmask file", "CSR file"))
    assert bitmask < dense and csr < dense
    assert metric(at, "latency · fp32 kernels") == "unchanged"  # zeros on dense kernels are not timed
    assert any("Size, not speed" in i.value and "RESULTS.md" in i.value for i in at.info)
    at.multiselect(key=state.W_SPARSITY_ROLES).set_value(["ffn_in", "ffn_out"]).run()
    at.radio(key=state.W_SPARSITY_SCOPE).set_value("global").run()
    ok(at)
    recipe = at.session_state[state.RECIPE]
    assert recipe.sparsity_roles == ["ffn_in", "ffn_out"] and recipe.sparsity_scope == "global"
    assert float(metric(at, "bitmask file").split()[0]) > bitmask  # fewer matrices sparsified: a bigger file
    assert url_code(at) == "p9000_riu_cg"
    assert metric(at, "size") == size0  # bits unchanged: the counted size is the dense one


def test_low_rank_applies_a_fraction_or_a_rank_per_role_and_shows_the_energy():
    at = app()
    at.multiselect(key=state.W_RANK_LAYERS).set_value([0, 2])
    at.multiselect(key=state.W_RANK_ROLES).set_value(["query", "ffn_in"])
    at.select_slider(key=state.W_RANK_FRACTION).set_value(0.25)
    at.button(key="w_rank_apply").click().run()
    ok(at)
    recipe = at.session_state[state.RECIPE]
    assert recipe.ranks == [(0, "query", 12), (0, "ffn_in", 12), (2, "query", 12), (2, "ffn_in", 12)]  # 25% of 48
    assert "4 low-rank matrices" in panel_title(at)
    saved = metric(at, "parameters saved by low rank")
    # query 48 x 48 -> 12 x 96, ffn_in 96 x 48 -> 12 x 144, in two layers
    assert saved == f"{2 * (48 * 48 - 12 * 96) + 2 * (96 * 48 - 12 * 144):+,}"
    assert at.session_state[state.W_RANK_LAYERS] == [0, 2]  # the widgets show the recipe
    at.radio(key=state.W_RANK_MODE).set_value("rank per role").run()
    at.number_input(key=state.rank_of_key("query")).set_value(40)
    at.number_input(key=state.rank_of_key("ffn_in")).set_value(40)
    at.button(key="w_rank_apply").click().run()
    ok(at)
    assert at.session_state[state.RECIPE].rank_of(0, "query") == 40
    # 40 is above both break-even ranks (query 24, ffn_in 32): the factors cost more than the matrices
    assert metric(at, "parameters saved by low rank") == f"{2 * (48 * 48 - 40 * 96) + 2 * (96 * 48 - 40 * 144):+,}"
    assert any("above break-even" in m.delta for m in at.metric if m.label.startswith("parameters saved") and m.delta)
    at.button(key="w_rank_clear").click().run()
    assert at.session_state[state.RECIPE].ranks == []


def test_embedding_size_writes_the_recipe_and_counts_parameters():
    at = app()
    V = 30522  # the MiniLM tokenizer's vocabulary, hidden 48
    assert metric(at, "word-embedding parameters") == f"{V * 48 / 1e6:.2f} M"
    assert at.selectbox(key=state.W_EMBEDDING).options == ["full (48)", "32", "16"]
    at.selectbox(key=state.W_EMBEDDING).set_value(16).run()
    ok(at)
    assert at.session_state[state.RECIPE].embedding_size == 16
    assert metric(at, "word-embedding parameters") == f"{16 * (V + 48) / 1e6:.2f} M"
    assert any("keeps" in c.value and "spectrum energy" in c.value for c in at.caption)
    assert "embeddings factorised (E = 16)" in panel_title(at)
    assert url_code(at) == "x16"


def test_sharing_presets_and_typed_groups_write_the_recipe_and_count_parameters():
    at = app()  # the tiny model: 3 layers
    full = metric(at, "parameters") if any(m.label == "parameters" for m in at.metric) else None
    assert full is None  # no sharing, no count
    at.radio(key=state.W_SHARE_PRESET).set_value("neighbouring pairs").run()
    ok(at)
    assert at.session_state[state.RECIPE].shared_layers == [[0, 1]]
    pairs = metric(at, "parameters")
    at.radio(key=state.W_SHARE_PRESET).set_value("all layers one").run()
    ok(at)
    assert at.session_state[state.RECIPE].shared_layers == [[0, 1, 2]]
    assert float(metric(at, "parameters").split()[0]) < float(pairs.split()[0])
    at.radio(key=state.W_SHARE_MODE).set_value("mean").run()
    ok(at)
    assert at.session_state[state.RECIPE].share_mode == "mean"
    assert url_code(at) == "km0-1-2"
    at.radio(key=state.W_SHARE_PRESET).set_value("groups typed below").run()
    at.text_input(key=state.W_SHARE_GROUPS).input("1, 2").run()
    ok(at)
    assert at.session_state[state.RECIPE].shared_layers == [[1, 2]]
    at.text_input(key=state.W_SHARE_GROUPS).input("1, x").run()  # refused in one sentence, the recipe stays
    assert not at.exception
    assert at.session_state[state.RECIPE].shared_layers == [[1, 2]]
    assert any("not a group of layer numbers" in str(w.value) for w in list(at.warning) + list(at.error))
    at.radio(key=state.W_SHARE_PRESET).set_value("none").run()
    ok(at)
    assert at.session_state[state.RECIPE].shared_layers == []


def test_the_new_fields_travel_in_the_link_and_set_the_widgets():
    r = Recipe(masked_neurons=[(0, [1, 5, 95]), (2, list(range(40)))], sparsity=0.5, sparsity_roles=["ffn_in"],
               sparsity_scope="global", ranks=[(1, "ffn_out", 8), (2, "ffn_out", 8)], embedding_size=32)
    code = encode_recipe(r)
    assert decode_recipe(code).key() == r.key()
    at = app(r=code)
    ok(at)
    assert at.session_state[state.RECIPE].key() == r.key()
    assert at.select_slider(key=state.W_SPARSITY).value == 0.5
    assert at.multiselect(key=state.W_SPARSITY_ROLES).value == ["ffn_in"]
    assert at.radio(key=state.W_SPARSITY_SCOPE).value == "global"
    assert at.multiselect(key=state.W_RANK_LAYERS).value == [1, 2]
    assert at.multiselect(key=state.W_RANK_ROLES).value == ["ffn_out"]
    assert at.radio(key=state.W_RANK_MODE).value == "rank per role"  # rank 8 of 48 is no listed fraction
    assert at.number_input(key=state.rank_of_key("ffn_out")).value == 8
    assert at.selectbox(key=state.W_EMBEDDING).value == 32
    assert url_code(at) == code  # written back unchanged
    at = app(r=encode_recipe(Recipe(ranks=[(0, "query", 24), (0, "ffn_in", 24)])))  # 50% of full rank 48
    assert at.radio(key=state.W_RANK_MODE).value == "fraction of full rank"
    assert at.select_slider(key=state.W_RANK_FRACTION).value == 0.5


def test_profile_recounts_parameters_and_flops_under_the_recipe():
    at = app("profile")
    ok(at)
    base_params, base_flops = metric(at, "parameters · counted"), metric(at, "GFLOPs · counted")
    at = app("profile", r=encode_recipe(Recipe(masked_neurons=[(l, list(range(48))) for l in range(3)],
                                               ranks=[(0, "query", 4)], embedding_size=16)))
    ok(at)
    assert float(metric(at, "parameters · counted").split()[0]) < float(base_params.split()[0])
    assert float(metric(at, "GFLOPs · counted")) < float(base_flops)
    assert any("Counted under the session recipe" in c.value and "embeddings factorised (E = 16)" in c.value
               for c in at.caption)
    table = next(d.value for d in at.dataframe if "parameters (M), recipe" in d.value.columns)
    ffn = table[table["component"] == "ffn_in"].iloc[0]
    assert ffn["GFLOPs, recipe"] == pytest.approx(ffn["GFLOPs, baseline"] / 2, rel=0.02)  # half the units


def test_weights_recipes_reach_trade_offs_with_readable_names():
    at = app()
    at.select_slider(key=state.W_SPARSITY).set_value(0.5).run()
    at.selectbox(key=state.W_EMBEDDING).set_value(32).run()
    at.switch_page("views/tradeoffs.py").run()
    ok(at)
    labels = list(at.dataframe[0].value["recipe"])
    assert "50% sparse (magnitude, local)" in labels
    assert "50% sparse (magnitude, local); embeddings factorised (E = 32)" in labels


def test_the_2_4_pattern_sets_half_locks_the_fraction_and_counts_its_layout():
    at = app()
    at.radio(key=state.W_SPARSITY_PATTERN).set_value("2:4").run()
    ok(at)
    recipe = at.session_state[state.RECIPE]
    assert recipe.sparsity == 0.5 and recipe.sparsity_pattern == "2:4" and recipe.sparsity_scope == "local"
    assert "2:4 magnitude" in panel_title(at) and url_code(at) == "p5000_t24"
    assert at.select_slider(key=state.W_SPARSITY).disabled and at.radio(key=state.W_SPARSITY_SCOPE).disabled
    dense, two_four = (float(metric(at, label).split()[0]) for label in ("dense file", "2:4 layout (counted)"))
    assert two_four < dense
    assert any("sparse tensor cores" in c.value for c in at.caption)
    at.radio(key=state.W_SPARSITY_PATTERN).set_value("unstructured").run()
    ok(at)
    assert at.session_state[state.RECIPE].sparsity_pattern == "unstructured" and url_code(at) == "p5000"
    assert not at.select_slider(key=state.W_SPARSITY).disabled
