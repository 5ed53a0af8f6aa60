"""Model & data: pick the model, the examples and the device; see the baseline card.

Nothing changes until "Load" succeeds: a bad model id or file shows one sentence and the model
and data already loaded stay in place.
"""

from __future__ import annotations

import streamlit as st

from analysis.io.datasets import GLUE_TASKS
from analysis.core.recipe import Recipe
from dashboard import resources, state, widgets
from dashboard.state import DataChoice

MODELS = {"demo": "demo — MiniLM-L6 on Banking77 (offline)", "demo-sst2": "demo-sst2 — MiniLM-L6 on SST-2 (offline)",
          "other": "a local directory or a HuggingFace hub id"}
BUNDLED = {"banking77": "Banking77 (bundled)", "sst2": "SST-2 (bundled)"}
DATA_KINDS = ("bundled", "GLUE task", "upload a file")


MODEL_DATA = {"demo": "banking77", "demo-sst2": "sst2"}  # each demo model's own data


def _model_kind_changed() -> None:
    """Picking a demo model picks the data it was fine-tuned for (the user can still change it)."""
    data = MODEL_DATA.get(st.session_state.get(state.MODEL_KIND))
    if data:
        st.session_state[state.DATA_KIND] = "bundled"
        st.session_state[state.BUNDLED_DATA] = data


def _model_picker(current: DataChoice) -> str:
    options = list(MODELS) + (["tiny"] if current.model == "tiny" else [])
    first = current.model if current.model in options else "other"
    kind = st.radio("Model", options, index=options.index(first), key=state.MODEL_KIND,
                    format_func=lambda k: MODELS.get(k, "tiny random BERT (tests)"), horizontal=True,
                    on_change=_model_kind_changed)
    if kind != "other":
        return kind
    return st.text_input("Directory or hub id", value="" if current.model in MODELS else current.model,
                         key="md_model_name", placeholder="/path/to/model or textattack/bert-base-uncased-SST-2").strip()


def _data_picker(current: DataChoice, model: str) -> dict:
    """The data fields of a DataChoice, from the widgets."""
    kind_now = "GLUE task" if current.data.startswith("glue:") else \
        "upload a file" if current.data.endswith((".csv", ".tsv", ".jsonl", ".json")) else "bundled"
    # once the session holds a widget's value (a demo model picked its data), no default index as well
    ss = st.session_state
    kind = st.radio("Data", DATA_KINDS, index=0 if state.DATA_KIND in ss else DATA_KINDS.index(kind_now),
                    key=state.DATA_KIND, horizontal=True)
    out = {"text_column": "", "pair_column": "", "label_column": ""}
    if kind == "bundled":
        options = list(BUNDLED) + (["tiny"] if current.data == "tiny" else [])
        default = "sst2" if model == "demo-sst2" else "banking77"
        pick = current.data if current.data in options else default
        if ss.get(state.BUNDLED_DATA) not in (None, *options):
            del ss[state.BUNDLED_DATA]
        out["data"] = st.selectbox("Dataset", options, index=0 if state.BUNDLED_DATA in ss else options.index(pick),
                                   key=state.BUNDLED_DATA,
                                   format_func=lambda k: BUNDLED.get(k, "tiny made-up sentences (tests)"))
        split_options = ["dev", "train"] if out["data"] == "sst2" else ["test", "train"]
    elif kind == "GLUE task":
        tasks = list(GLUE_TASKS)
        now = current.data.split(":", 1)[1] if current.data.startswith("glue:") else "sst2"
        out["data"] = "glue:" + st.selectbox("GLUE task", tasks, index=tasks.index(now) if now in tasks else 0,
                                             key="md_glue")
        split_options = ["validation", "train"] if out["data"] != "glue:sst2" else ["dev", "train"]
    else:
        upload = st.file_uploader("CSV, TSV or JSONL with a text column and (optionally) a label column",
                                  type=["csv", "tsv", "jsonl", "json"], key="md_upload")
        if upload is None and not kind_now == "upload a file":
            st.info("Upload a file to choose its columns.")
            return {}
        path = resources.upload_path(upload.name, upload.getvalue()) if upload is not None else current.data
        columns = resources.file_columns(path)
        c1, c2, c3 = st.columns(3)
        guess = next((c for c in ("text", "sentence") if c in columns), columns[0])
        out["text_column"] = c1.selectbox("Text column", columns, index=columns.index(guess), key="md_text_col")
        out["pair_column"] = c2.selectbox("Second text (pairs)", [""] + columns, key="md_pair_col",
                                          format_func=lambda c: c or "(none)")
        label_guess = "label" if "label" in columns else ""
        out["label_column"] = c3.selectbox("Label column", [""] + columns, key="md_label_col",
                                           index=([""] + columns).index(label_guess),
                                           format_func=lambda c: c or "(no labels)")
        out["data"] = path
        split_options = ["test"]
    out["split"] = st.selectbox("Split", split_options, key=f"md_split_{kind}",
                                index=split_options.index(current.split) if current.split in split_options else 0)
    return out


def _baseline_card(choice: DataChoice) -> None:
    ctx = widgets.context()
    if ctx is None:
        return
    _, ev = ctx
    base = resources.evaluate(choice, Recipe())
    d = ev.loaded.describe()
    with st.container(border=True, key="baseline_card"):
        st.subheader(f"Baseline: {d['name']}")
        c1, c2, c3, c4, c5 = st.columns(5)
        c1.metric(f"{base.metric_name} ({base.num_examples} examples)",
                  "n/a (no labels)" if base.metric is None else f"{100 * base.metric:.1f}%")
        c2.metric("size (fp32, from bits)", f"{base.size.mb:.1f} MB")
        lat = resources.latency(choice, Recipe())
        c3.metric("latency · measured", f"{lat.ms_per_example:.2f} ms",
                  help=f"Per example, on {lat.device}: batch {lat.batch_size} x {lat.seq_len} tokens, {lat.threads} threads")
        c4.metric("layers x heads", f"{d['num_layers']} x {d['num_heads']}")
        c5.metric("parameters", f"{d['parameters'] / 1e6:.1f} M")
        st.caption(f"{d['architecture']} ({d['model_type']}), hidden {d['hidden_size']}, {d['num_labels']} labels, "
                   f"max length {d['max_length']} · data {state.data_label(choice)}, {len(ev.dataset)} examples"
                   + (f", {ev.num_truncated} truncated at {ev.max_length} tokens" if ev.num_truncated else "")
                   + f" · source {d['source']}")
        for warning in ev.dataset.warnings:  # suspicious but usable data (empty texts, labels matched by order)
            st.warning(warning)


def render() -> None:
    st.title("Model & data")
    st.markdown("**Headroom** shows, live, what compressing a BERT-family text classifier does: mask attention "
                "heads, drop layers, lower the bits, and watch accuracy, size and latency against the baseline. "
                "Every figure says whether it is simulated, predicted or measured.")
    st.caption("Load a classifier and the examples to judge it on (the offline demo is loaded); then open "
               "**Heads**, **Layers** or **Bits** in the sidebar. Everything else works on this pair.")
    current = state.choice()
    with widgets.guard():
        model = _model_picker(current)
        data = _data_picker(current, model)
        c1, c2 = st.columns(2)
        limit = c1.number_input("Subset size (stratified; 0 = all)", min_value=0, max_value=200_000, step=100,
                                value=current.limit, key="md_limit",
                                help="A few hundred examples keep every what-if under two seconds on a CPU.")
        import torch

        devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
        device = c2.selectbox("Device", devices, index=devices.index(current.device) if current.device in devices else 0,
                              key="md_device", help=None if len(devices) > 1 else "No CUDA GPU is visible on this machine.")
        if st.button("Load", type="primary", key="md_load", disabled=not data or not model):
            new = DataChoice(model=model, device=device, limit=int(limit), **data)
            with st.spinner(f"Loading {model} and {new.data} ..."):
                resources.evaluator(new)  # raises before the state changes: the old choice stays
            state.set_choice(new)
            st.success(f"Loaded {model} with {state.data_label(new)}.")
    _baseline_card(state.choice())


if __name__ == "__main__":  # run by st.navigation as this page's script
    render()
