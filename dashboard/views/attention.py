"""Attention: what each head looks at in one sentence (or pair), under the current recipe.

bertviz's head and model views (Vig 2019), rendered offline from the vendored scripts in
dashboard/static/vendor; an L x H overview of every head's attention map in plotly, with
PNG/SVG export. Sentences can be typed or taken from the data, including misclassified ones.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from analysis.core.recipe import Recipe
from dashboard import resources, state, widgets


EXAMPLE_SENTENCES = {
    "banking77": "I still have not received my new card, can you check?",
    "sst2": "A gripping, beautifully acted film that never lets up.",
    "glue:sst2": "A gripping, beautifully acted film that never lets up.",
}


def _prediction(ev, text: str, pair: str | None, recipe: Recipe) -> None:
    """The model's answer for this one input: baseline and recipe, each with its confidence."""
    import torch

    from analysis.core.simulate import simulate
    from analysis.io.batching import Batch

    loaded = ev.loaded
    enc = loaded.tokenizer(text, pair, truncation=True, max_length=ev.max_length, return_tensors="pt")
    types = enc.get("token_type_ids")
    batch = Batch(enc["input_ids"].to(loaded.device), enc["attention_mask"].to(loaded.device),
                  None if types is None else types.to(loaded.device), torch.zeros(1, dtype=torch.long))
    names = ev.dataset.label_names
    cols = st.columns(2)
    for col, (what, r) in zip(cols, (("baseline", Recipe()), ("current recipe", recipe))):
        with torch.inference_mode():
            probs = torch.softmax(simulate(loaded.adapter, r).forward(batch).logits.float(), -1)[0]  # (num_labels,)
        k = int(probs.argmax())
        col.metric(f"prediction · {what}", names[k] if k < len(names) else str(k),
                   delta=f"{100 * float(probs[k]):.1f}% confidence", delta_color="off", delta_arrow="off")


def _example_picker(choice, ev) -> tuple[str, str | None]:
    ds = ev.dataset
    base = resources.evaluate(choice, Recipe())
    wrong = [] if ev.labels is None else np.flatnonzero(base.predictions != ev.labels).tolist()
    source = st.radio("Sentence", ["type one", "from the data", "misclassified by the model"], key="att_source",
                      horizontal=True)
    if source == "type one":
        ss = st.session_state
        if ss.get(state.ATTENTION_TEXT_FOR) != choice.data:  # a new data set: its own kind of sentence
            ss[state.ATTENTION_TEXT] = EXAMPLE_SENTENCES.get(choice.data, ds.texts[0] if len(ds) else "")
            ss[state.ATTENTION_TEXT_FOR] = choice.data
        text = st.text_input("Sentence", key=state.ATTENTION_TEXT)
        pair = st.text_input("Second sentence (optional, for pair tasks)", value="", key="att_pair") or None
        return text, pair
    pool = wrong if source.startswith("misclassified") else list(range(len(ds)))
    if not pool:
        st.info("The model gets every example of this subset right.")
        return "", None
    names = ds.label_names

    def label(i: int) -> str:
        text = ds.texts[i][:90]
        if ev.labels is None:
            return text
        return f"{text} — true: {names[ev.labels[i]]}, predicted: {names[base.predictions[i]]}"

    i = st.selectbox(f"{len(pool)} examples", pool[:500], format_func=label, key=f"att_pick_{source}")
    return ds.texts[i], (ds.text_pairs[i] if ds.text_pairs else None)


def render() -> None:
    st.title("Attention")
    st.caption("What every head attends to in one input, under the current recipe (masked heads are blank).")
    ctx = widgets.context()
    if ctx is None:
        return
    choice, ev = ctx
    from analysis.methods.heads import attention_maps

    from dashboard.attention_view import bertviz_html, figure_to_image, heads_overview_figure, render_bertviz

    with widgets.guard():
        text, pair = _example_picker(choice, ev)
        if not text:
            return
        recipe = state.recipe()
        maps = attention_maps(ev.loaded, text, pair, recipe, max_length=ev.max_length)
        n_tokens = len(maps.tokens)
        full = len(ev.loaded.tokenizer(text, pair)["input_ids"])
        if full > n_tokens:
            st.warning(f"The input has {full} tokens; it was cut to the model's first {n_tokens}.")
        sep = [i for i, t in enumerate(maps.tokens) if t in ("[SEP]", "</s>")]
        b_start = sep[0] + 1 if pair and sep and sep[0] + 1 < n_tokens else None
        st.caption(f"{n_tokens} tokens · recipe: {recipe.describe()} · {choice.model} on {ev.device}")
        _prediction(ev, text, pair, recipe)
        tab_head, tab_model, tab_overview = st.tabs(["Head view", "Model view", "All heads"])
        with tab_head:
            view, how = st.columns([3, 2], gap="large")
            with view:
                render_bertviz(bertviz_html("head", maps.attentions, maps.tokens, b_start))
            how.markdown("**Reading the head view**\n\n"
                         "- a line runs from a token (left) to a token it attends to (right); darker = more attention\n"
                         "- pick the layer above the picture; each colour is one head: click a colour to hide or "
                         "show that head, double-click it to show that head alone\n"
                         "- masked heads and dropped layers draw no lines\n"
                         "- **Model view** shows every head of every layer at once; **All heads** exports them")
        with tab_model:
            layer_filter = st.selectbox("Layers", ["all"] + list(range(len(maps.attentions))), key="att_model_layer")
            render_bertviz(bertviz_html("model", maps.attentions, maps.tokens, b_start,
                                        layer=None if layer_filter == "all" else int(layer_filter)))
        with tab_overview:
            L, H = len(maps.attentions), maps.attentions[0].shape[0]
            masked = np.zeros((L, H), dtype=bool)
            for l, h in recipe.masked_heads:
                masked[l, h] = True
            for l in recipe.dropped_layers:
                masked[l, :] = True
            fig = heads_overview_figure(maps.attentions, maps.tokens, masked=masked)
            st.plotly_chart(fig, width="content", key="att_overview")
            if st.button("Prepare PNG / SVG export", key="att_export"):
                try:
                    with st.spinner("Drawing the images with the local Chromium ..."):
                        st.session_state[state.ATTENTION_IMAGES] = (figure_to_image(fig, "png"),
                                                                    figure_to_image(fig, "svg"))
                except RuntimeError as exc:
                    widgets.show_error(exc)
            if state.ATTENTION_IMAGES in st.session_state:
                png, svg = st.session_state[state.ATTENTION_IMAGES]
                c1, c2 = st.columns(2)
                c1.download_button("Download PNG", png, "attention_heads.png", "image/png", key="att_png")
                c2.download_button("Download SVG", svg, "attention_heads.svg", "image/svg+xml", key="att_svg")


if __name__ == "__main__":  # run by st.navigation as this page's script
    render()
