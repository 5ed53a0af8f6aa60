"""Attention views for the dashboard: bertviz that works offline, and plotly head grids.

bertviz (Vig 2019) draws its head and model views with require.js, d3 and jQuery loaded from
cdnjs, so with no network the view is blank. `bertviz_html` asks bertviz for its HTML
(`html_action="return"`), drops the CDN `<script src>` and the `require.config` that points
at cdnjs, and inlines the copies vendored in `dashboard/static/vendor/` (see LICENSES.md there).
The result is one self-contained HTML document for `st.iframe` or a file.

The plotly builders (`heads_overview_figure`, `head_stats_heatmap`) draw the L x H picture:
every head's attention map at a glance, and one number per head (importance, entropy).

Everything here but `render_bertviz` imports without Streamlit. Attention comes in the format
the analysis code produces: `attentions[l]` is a (num_heads, T, T) float array for layer l,
rows are the attending (query) token, columns the attended-to (key) token. A masked or pruned
head may be an all-zero map; it then draws nothing.
"""

from __future__ import annotations

import functools
import math
import re
import warnings
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

VENDOR_DIR = Path(__file__).parent / "static" / "vendor"
# Load order matters: d3 and jQuery go in *before* require.js, so they see no AMD `define` and
# set the globals `d3` / `jQuery`; after require.js we register those globals as AMD modules.
_VENDOR_FILES = ("d3-5.7.0.min.js", "jquery-3.7.1.slim.min.js", "require-2.3.8.js")
_AMD_SHIM = (
    "define('d3', [], function () { return window.d3; });\n"
    "define('jquery', [], function () { return window.jQuery; });"
)
_CDN_SCRIPT_TAG = re.compile(r"<script[^>]*\bsrc=[\"']https?://[^\"']*[\"'][^>]*>\s*</script>", re.I)
_REQUIRE_CONFIG = re.compile(r"require\.config\(\{.*?\}\);", re.S)

MASKED_GREY = "#d0d0d0"


@functools.lru_cache(maxsize=None)
def _vendor_js(name: str) -> str:
    """Text of one vendored JS file (read once per process)."""
    path = VENDOR_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"Vendored file {path} is missing; restore dashboard/static/vendor/ from git.")
    return path.read_text(encoding="utf-8")


def _check_attentions(attentions: Sequence[np.ndarray], tokens: Sequence[str]) -> list[np.ndarray]:
    """Validate `attentions` against `tokens`; return float32 (H, T, T) arrays with NaN -> 0."""
    if len(attentions) == 0:
        raise ValueError("attentions is empty; pass one (num_heads, T, T) array per layer.")
    n_tokens = len(tokens)
    checked = []
    for l, a in enumerate(attentions):
        a = np.asarray(a, dtype=np.float32)
        if a.ndim != 3 or a.shape[1] != a.shape[2]:
            raise ValueError(f"attentions[{l}] has shape {a.shape}; expected (num_heads, T, T).")
        if a.shape[1] != n_tokens:
            raise ValueError(f"attentions[{l}] covers {a.shape[1]} tokens but {n_tokens} tokens were given.")
        if checked and a.shape[0] != checked[0].shape[0]:
            raise ValueError(
                f"attentions[{l}] has {a.shape[0]} heads but layer 0 has {checked[0].shape[0]}; "
                "pass masked heads as all-zero maps instead of leaving them out."
            )
        # A fully masked row can come out of a softmax as NaN; NaN is not valid JSON for bertviz.
        checked.append(np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0))
    return checked


def _inline_scripts(bertviz_markup: str) -> str:
    """Swap bertviz's CDN loading for the vendored libraries, inlined."""
    markup = _CDN_SCRIPT_TAG.sub("", bertviz_markup)
    markup, n_configs = _REQUIRE_CONFIG.subn("", markup)
    if n_configs != 1:
        raise RuntimeError("bertviz's JS no longer has the require.config block this module removes; "
                           "check the pinned bertviz version.")
    # Token text travels as JSON inside <script>; "</script>" in a token must not end the script.
    head, sep, script = markup.partition('<script type="text/javascript">')
    script = script.replace("</", "<\\/")
    script = re.sub(r"<\\/script>\s*$", "</script>", script.rstrip()) + "\n"
    libraries = "".join(f"<script>\n{_vendor_js(name)}\n</script>\n" for name in _VENDOR_FILES)
    return libraries + f"<script>\n{_AMD_SHIM}\n</script>\n" + head + sep + script


def bertviz_html(
    kind: Literal["head", "model"],
    attentions: list[np.ndarray],
    tokens: list[str],
    sentence_b_start: int | None = None,
    layer: int | None = None,
    heads: list[int] | None = None,
    *,
    display_mode: Literal["light", "dark"] = "light",
) -> str:
    """Self-contained HTML (no network needed) of bertviz's head or model view.

    kind: "head" (one layer, lines between tokens per head) or "model" (grid of all heads).
    layer: head view: the layer shown first (default 0); model view: show only that layer.
    heads: head view: the heads ticked at first (default all); model view: show only these.
    display_mode: model view background (bertviz's default is "dark"); the head view ignores it.
    """
    if kind not in ("head", "model"):
        raise ValueError(f"kind must be 'head' or 'model', not {kind!r}.")
    arrays = _check_attentions(attentions, tokens)
    num_layers, num_heads = len(arrays), arrays[0].shape[0]
    if layer is not None and not 0 <= layer < num_layers:
        raise ValueError(f"layer {layer} is out of range; the model has layers 0..{num_layers - 1}.")
    if heads is not None:
        bad = [h for h in heads if not 0 <= h < num_heads]
        if bad:
            raise ValueError(f"heads {bad} are out of range; the model has heads 0..{num_heads - 1}.")
        if kind == "model" and not heads:
            raise ValueError("heads is empty; the model view needs at least one head to show.")
    if sentence_b_start is not None and not 0 < sentence_b_start < len(tokens):
        raise ValueError(f"sentence_b_start {sentence_b_start} must fall inside the {len(tokens)} tokens.")

    # Heavy imports (torch, IPython via bertviz) only when a view is actually built.
    import torch
    from bertviz import head_view, model_view

    attention = tuple(torch.from_numpy(a).unsqueeze(0) for a in arrays)  # each (1, H, T, T)
    tokens = [str(t) for t in tokens]
    with warnings.catch_warnings():
        # bertviz reads its .js with open(...).read() and never closes the file
        warnings.simplefilter("ignore", ResourceWarning)
        if kind == "head":
            markup = head_view(attention, tokens, sentence_b_start=sentence_b_start, layer=layer,
                               heads=heads, html_action="return").data
        else:
            markup = model_view(attention, tokens, sentence_b_start=sentence_b_start,
                                display_mode=display_mode,
                                include_layers=None if layer is None else [layer],
                                include_heads=None if heads is None else list(heads),
                                html_action="return").data
    background = "black" if kind == "model" and display_mode == "dark" else "white"
    return (
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>bertviz {kind} view</title>\n</head>\n"
        f"<body style=\"background:{background}\">\n{_inline_scripts(markup)}</body>\n</html>\n"
    )


def render_bertviz(html: str, height: int | str = "content") -> None:
    """Show `bertviz_html(...)` output in the current Streamlit page.

    `st.iframe` (Streamlit >= 1.52), not the deprecated `st.components.v1.html` (removal announced
    after 2026-06-01): an HTML string runs in an iframe that executes its scripts, which bertviz
    needs (`st.html` ignores JavaScript unless told otherwise, and then runs it in the app's own page).
    `height="content"` sizes the frame to what bertviz drew, so no head or layer row is clipped.
    """
    import streamlit as st

    st.iframe(html, height=height, alt="bertviz attention view")


def _pixel_spacing(n: int, cell_px: float, gap_px: float) -> tuple[float, float]:
    """Total figure pixels and the gap as the fraction make_subplots wants."""
    total = n * cell_px + (n - 1) * gap_px
    return total, (gap_px / total if n > 1 else 0.0)


def heads_overview_figure(
    attentions: list[np.ndarray],
    tokens: list[str],
    stats: dict[str, np.ndarray] | None = None,
    masked: np.ndarray | None = None,
) -> go.Figure:
    """An L x H grid of small attention heatmaps: rows are layers, columns heads.

    stats: optional per-head numbers, name -> (L, H) array (e.g. "importance", "entropy"),
        shown in each head's hover text.
    masked: optional (L, H) bool array; those heads are drawn grey and labelled "masked".
    All maps share one 0..1 colour scale, so heads can be compared by eye.
    """
    arrays = _check_attentions(attentions, tokens)
    num_layers, num_heads, n_tokens = len(arrays), arrays[0].shape[0], len(tokens)
    if masked is None:
        masked = np.zeros((num_layers, num_heads), dtype=bool)
    masked = np.asarray(masked, dtype=bool)
    if masked.shape != (num_layers, num_heads):
        raise ValueError(f"masked has shape {masked.shape}; expected (layers, heads) = {(num_layers, num_heads)}.")
    stats = dict(stats or {})
    for name, values in stats.items():
        if np.shape(values) != (num_layers, num_heads):
            raise ValueError(f"stats[{name!r}] has shape {np.shape(values)}; expected {(num_layers, num_heads)}.")

    cell_px, gap_x_px, gap_y_px = 78.0, 8.0, 26.0  # 26 px between rows leaves room for a title
    width_px, h_space = _pixel_spacing(num_heads, cell_px, gap_x_px)
    height_px, v_space = _pixel_spacing(num_layers, cell_px, gap_y_px)
    fig = make_subplots(
        rows=num_layers, cols=num_heads, horizontal_spacing=h_space, vertical_spacing=v_space,
        subplot_titles=[f"L{l} H{h}" for l in range(num_layers) for h in range(num_heads)],
    )
    # hover text: "query -> key" per cell, shared by every head (tokens repeat, so no category axes)
    pair_text = np.array([[f"{tokens[i]} → {tokens[j]}" for j in range(n_tokens)] for i in range(n_tokens)])
    grey = [[0.0, MASKED_GREY], [1.0, MASKED_GREY]]
    for l in range(num_layers):
        for h in range(num_heads):
            stat_lines = "".join(f"<br>{name}: {float(np.asarray(v)[l, h]):.3g}" for name, v in stats.items())
            if masked[l, h]:
                trace = go.Heatmap(z=np.zeros((n_tokens, n_tokens)), colorscale=grey, showscale=False,
                                   hovertemplate=f"L{l} H{h} (masked){stat_lines}<extra></extra>")
            else:
                trace = go.Heatmap(z=arrays[l][h], text=pair_text, coloraxis="coloraxis",
                                   hovertemplate=f"L{l} H{h}<br>%{{text}}<br>attention %{{z:.3f}}"
                                                 f"{stat_lines}<extra></extra>")
            fig.add_trace(trace, row=l + 1, col=h + 1)
            if masked[l, h]:
                axis_n = l * num_heads + h + 1
                suffix = "" if axis_n == 1 else str(axis_n)
                fig.add_annotation(text="masked", showarrow=False, font=dict(size=11, color="#555"),
                                   x=0.5, y=0.5, xref=f"x{suffix} domain", yref=f"y{suffix} domain")
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    # query token 0 at the top, as attention matrices are usually read
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, autorange="reversed")
    fig.update_annotations(font_size=10)  # subplot titles; readable at 12 x 12
    margin = dict(l=20, r=90, t=60, b=20)
    fig.update_layout(
        title=dict(text=f"Attention of every head ({num_layers} layers x {num_heads} heads, {n_tokens} tokens)"),
        coloraxis=dict(colorscale="Viridis", cmin=0.0, cmax=1.0,
                       colorbar=dict(title=dict(text="attention"), thickness=12)),
        width=math.ceil(width_px + margin["l"] + margin["r"]),
        height=math.ceil(height_px + margin["t"] + margin["b"]),
        margin=margin,
        plot_bgcolor="white",
    )
    return fig


def head_stats_heatmap(values: np.ndarray, title: str, colorbar_title: str) -> go.Figure:
    """One number per head as an L x H heatmap (importance, entropy, ...); NaN cells stay blank."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"values has shape {values.shape}; expected (layers, heads).")
    num_layers, num_heads = values.shape
    show_numbers = num_layers * num_heads <= 12 * 16  # beyond that the digits are unreadable
    fig = go.Figure(go.Heatmap(
        z=values,
        x=[f"H{h}" for h in range(num_heads)],
        y=[f"L{l}" for l in range(num_layers)],
        colorscale="Viridis",
        colorbar=dict(title=dict(text=colorbar_title)),
        texttemplate="%{z:.2f}" if show_numbers else None,
        hovertemplate="layer %{y}, head %{x}<br>" + colorbar_title + ": %{z:.4g}<extra></extra>",
        xgap=1, ygap=1,
    ))
    fig.update_layout(
        title=dict(text=title),
        xaxis=dict(title=dict(text="head"), side="top", constrain="domain"),
        yaxis=dict(title=dict(text="layer"), autorange="reversed", scaleanchor="x"),
        width=max(420, 48 * num_heads + 200), height=max(300, 48 * num_layers + 160),
        margin=dict(t=110),  # room for the title above the "head" axis on top
        plot_bgcolor="white",
    )
    return fig


def figure_to_image(fig: go.Figure, fmt: Literal["png", "svg"] = "png", scale: float = 2.0) -> bytes:
    """A static PNG or SVG of `fig`, drawn by kaleido with the local Chrome/Chromium (no network).

    kaleido >= 1 finds a browser on PATH (Debian's `chromium`); set BROWSER_PATH to pick another.
    """
    if fmt not in ("png", "svg"):
        raise ValueError(f"fmt must be 'png' or 'svg', not {fmt!r}.")
    try:
        return fig.to_image(format=fmt, scale=scale if fmt == "png" else 1.0)
    except (ImportError, ValueError, RuntimeError) as err:
        # kaleido missing, or no Chrome/Chromium it can start
        raise RuntimeError(
            f"Could not export the figure as {fmt.upper()} ({err}); install kaleido and Chromium "
            "(Debian: apt-get install chromium), or set BROWSER_PATH to a Chrome binary."
        ) from err
