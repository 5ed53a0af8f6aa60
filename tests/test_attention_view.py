"""Tests for dashboard/attention_view.py: offline bertviz HTML and the plotly head grids.

The important ones open the HTML in a real headless Chromium with the network cut off and
check that bertviz drew its SVG; they skip when Chromium (or Playwright) is not installed.
"""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest

from dashboard.attention_view import (
    bertviz_html,
    figure_to_image,
    head_stats_heatmap,
    heads_overview_figure,
)
from tests.browser import CHROMIUM_PATH, chromium_unavailable_reason, offline_page, requires_browser

TOKENS = ["[CLS]", "the", "movie", "was", "</script>", "great", "!", "[SEP]"]
MASKED_LAYER, MASKED_HEAD = 1, 2


def random_attentions(num_layers: int, num_heads: int, n_tokens: int, seed: int = 0) -> list[np.ndarray]:
    """Row-stochastic (H, T, T) maps per layer, one head zeroed as a masked head would be."""
    rng = np.random.default_rng(seed)
    attentions = [rng.dirichlet(np.ones(n_tokens), size=(num_heads, n_tokens)).astype(np.float32)
                  for _ in range(num_layers)]
    attentions[MASKED_LAYER][MASKED_HEAD] = 0.0
    return attentions


@pytest.fixture(scope="module")
def attentions() -> list[np.ndarray]:
    return random_attentions(num_layers=3, num_heads=4, n_tokens=len(TOKENS))


def dump_dom(html: str, tmp_path) -> str:
    """The DOM after headless Chromium ran the page's scripts, with no network."""
    page = tmp_path / "view.html"
    page.write_text(html, encoding="utf-8")
    command = [
        CHROMIUM_PATH, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000", "--dump-dom", page.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.parametrize("kind", ["head", "model"])
def test_html_is_self_contained(kind, attentions):
    html = bertviz_html(kind, attentions, TOKENS)
    assert not re.search(r"<script[^>]*src=", html, re.I), "no script may be loaded from anywhere"
    assert "cdnjs" not in html and "ajax/libs" not in html  # bertviz's require.config paths are gone
    assert "d3js.org v5.7.0" in html  # d3, the version bertviz's JS was written for
    assert "jQuery v3.7.1" in html
    assert "RequireJS 2.3.8" in html
    assert html.lstrip().startswith("<!DOCTYPE html>")


def test_token_cannot_close_the_script(attentions):
    html = bertviz_html("head", attentions, TOKENS)
    # one "</script>" per inlined script: 3 libraries, the AMD shim, bertviz's own
    assert html.lower().count("</script>") == 5


def test_bad_input_gets_a_clear_error(attentions):
    with pytest.raises(ValueError, match="tokens were given"):
        bertviz_html("head", attentions, TOKENS[:-1])
    with pytest.raises(ValueError, match="out of range"):
        bertviz_html("head", attentions, TOKENS, layer=3)
    with pytest.raises(ValueError, match="out of range"):
        bertviz_html("model", attentions, TOKENS, heads=[4])
    with pytest.raises(ValueError, match="kind"):
        bertviz_html("neuron", attentions, TOKENS)
    with pytest.raises(ValueError, match="heads"):
        bertviz_html("head", [attentions[0], attentions[1][:2]], TOKENS)


@pytest.mark.skipif(chromium_unavailable_reason() is not None, reason=chromium_unavailable_reason() or "")
def test_chromium_draws_head_view_offline(attentions, tmp_path):
    dom = dump_dom(bertviz_html("head", attentions, TOKENS, layer=MASKED_LAYER), tmp_path)
    assert "<svg" in dom
    drawn = re.findall(r"<text[^>]*>([^<]*)</text>", dom)
    # each token on the left and on the right; "</script>" comes back escaped as text
    for token in ["[CLS]", "the", "movie", "was", "&lt;/script&gt;", "great", "!", "[SEP]"]:
        assert drawn.count(token) == 2, (token, drawn)
    # one line per (head, query, key) of the shown layer, the zeroed head's included
    assert dom.count("<line") == 4 * len(TOKENS) ** 2


@pytest.mark.skipif(chromium_unavailable_reason() is not None, reason=chromium_unavailable_reason() or "")
def test_chromium_draws_model_view_offline(attentions, tmp_path):
    dom = dump_dom(bertviz_html("model", attentions, TOKENS, sentence_b_start=4), tmp_path)
    assert "<svg" in dom
    assert dom.count("<line") == 3 * 4 * len(TOKENS) ** 2  # every head of every layer drawn
    assert "Sentence A -&gt; Sentence B" in dom  # the sentence-pair filter is there


@requires_browser
def test_playwright_sees_no_network_request_and_no_error(attentions, tmp_path):
    page_file = tmp_path / "view.html"
    page_file.write_text(bertviz_html("head", attentions, TOKENS, layer=MASKED_LAYER, heads=[MASKED_HEAD]), encoding="utf-8")
    with offline_page() as browser:
        browser.page.goto(page_file.as_uri())
        browser.page.locator("svg text", has_text="movie").first.wait_for(timeout=15_000)
        assert browser.page.locator("svg text").count() == 2 * len(TOKENS)
        # only the all-zero head is ticked: nothing visible may be drawn
        opacities = browser.page.eval_on_selector_all(
            "svg line", "lines => lines.map(l => Number(l.getAttribute('stroke-opacity') ?? 0))")
        assert opacities and max(opacities) == 0
        browser.page.screenshot(path=str(tmp_path / "head_view.png"))
    assert browser.blocked == []
    assert browser.page_errors == []


def test_heads_overview_grid_6x12():
    attentions = random_attentions(num_layers=6, num_heads=12, n_tokens=5)
    masked = np.zeros((6, 12), dtype=bool)
    masked[MASKED_LAYER, MASKED_HEAD] = True
    stats = {"importance": np.arange(72.0).reshape(6, 12)}
    fig = heads_overview_figure(attentions, ["[CLS]", "a", "good", "film", "[SEP]"], stats=stats, masked=masked)
    assert len(fig.data) == 72
    titles = [a.text for a in fig.layout.annotations]
    assert titles[:2] == ["L0 H0", "L0 H1"] and "L5 H11" in titles
    assert titles.count("masked") == 1
    masked_trace = fig.data[MASKED_LAYER * 12 + MASKED_HEAD]
    assert masked_trace.showscale is False and masked_trace.coloraxis is None
    assert "(masked)" in masked_trace.hovertemplate
    assert "importance: 71" in fig.data[-1].hovertemplate
    np.testing.assert_allclose(fig.data[0].z, attentions[0][0])
    assert 900 <= fig.layout.width <= 1300  # 12 columns of readable ~78 px cells


def test_heads_overview_grid_12x12_and_shape_errors():
    attentions = random_attentions(num_layers=12, num_heads=12, n_tokens=4)
    fig = heads_overview_figure(attentions, ["a", "b", "c", "d"])
    assert len(fig.data) == 144 and fig.layout.height > fig.layout.width * 0.9
    with pytest.raises(ValueError, match="masked has shape"):
        heads_overview_figure(attentions, ["a", "b", "c", "d"], masked=np.zeros((6, 12), bool))
    with pytest.raises(ValueError, match="stats"):
        heads_overview_figure(attentions, ["a", "b", "c", "d"], stats={"entropy": np.zeros(12)})


def test_head_stats_heatmap_labels():
    values = np.arange(24.0).reshape(2, 12)
    values[1, 3] = np.nan  # a pruned head has no score
    fig = head_stats_heatmap(values, "Head importance", "importance")
    trace = fig.data[0]
    assert list(trace.y) == ["L0", "L1"] and list(trace.x)[-1] == "H11"
    assert fig.layout.xaxis.title.text == "head" and fig.layout.yaxis.title.text == "layer"
    assert fig.layout.title.text == "Head importance"
    assert trace.colorbar.title.text == "importance"
    with pytest.raises(ValueError, match="layers, heads"):
        head_stats_heatmap(np.zeros(12), "x", "y")


@pytest.mark.skipif(chromium_unavailable_reason() is not None, reason=chromium_unavailable_reason() or "")
def test_figure_to_image_png_and_svg():
    pytest.importorskip("kaleido")
    fig = head_stats_heatmap(np.eye(3), "Entropy", "entropy (nats)")
    assert figure_to_image(fig, "png").startswith(b"\x89PNG\r\n\x1a\n")
    svg = figure_to_image(fig, "svg")
    assert svg.lstrip().startswith(b"<svg") and b"Entropy" in svg
    with pytest.raises(ValueError, match="fmt"):
        figure_to_image(fig, "jpg")
