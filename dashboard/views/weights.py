"""Weights: take weights out inside the layers — FFN neurons, magnitude sparsity, low rank, factorised embeddings.

Four controls on the session Recipe, with the live metrics panel (simulated, one-shot: before recovery):

- FFN neurons: the least important fraction of the intermediate units (analysis.methods.neurons: gradient or
  Taylor scores of the unpruned model on a stratified subset of the *train* split, never the examples the
  panel evaluates; a stoppable job, kept per train data and method), the same share of every layer or in one
  global order (uneven widths); a chart of the units each layer keeps.
- Magnitude sparsity (analysis.core.sparsity): fraction, matrices, local/global threshold; the bytes of a dense,
  a bitmask and a CSR file counted from the masks (analysis.measure.sparse_files.counted_sparse_bytes, no file
  written per change) and the plain statement that dense kernels get no faster.
- Low rank (analysis.core.lowrank): chosen matrices of chosen layers cut to a rank (a fraction of full rank, or a
  rank per role), with the spectrum energy each keeps and the parameters saved.
- Embedding size E (ALBERT's factorisation): the word-embedding parameters before and after, and the energy kept.
- Cross-layer sharing (ALBERT): groups of layers that run one set of weights (the group's first layer's, or their
  mean), as pairs, one group of all layers, or typed groups; the encoder parameters left and what recovery
  brought back on demo (benchmarks/RESULTS.md, "Cross-layer sharing").
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import streamlit as st

from analysis.core.adapters import ROLES
from analysis.core.recipe import Recipe
from dashboard import resources, state, widgets

JOB = "FFN neuron importance"
FFN_FRACTIONS = [round(0.1 * i, 1) for i in range(10)]  # 0 ... 0.9
FFN_ORDERS = ("uniform per layer", "global order (uneven per layer)")
SPARSITY_CHOICES = [round(0.1 * i, 1) for i in range(10)] + [0.95, 0.99]
RANK_FRACTIONS = [0.05, 0.1, 0.25, 0.5, 0.75, 0.9]
RANK_MODES = ("fraction of full rank", "rank per role")
EMBEDDING_SIZES = (256, 128, 64, 32, 16)
DEFAULT_TRAIN_EXAMPLES = 256
ROLE_LABELS = {"query": "W_Q (query)", "key": "W_K (key)", "value": "W_V (value)", "attention_output": "W_O (attention output)",
               "ffn_in": "W_in (FFN in)", "ffn_out": "W_out (FFN out)"}
SHORT_ROLE = {"query": "Q", "key": "K", "value": "V", "attention_output": "O", "ffn_in": "in", "ffn_out": "out"}


def _nearest(value: float, options: list[float]) -> float:
    return min(options, key=lambda o: abs(o - value))


# ------------------------------------------------------------------------------ FFN neurons
def train_choice(choice: state.DataChoice, examples: int) -> state.DataChoice | None:
    """A stratified subset of the session data's train split, or None where there is none apart from the
    evaluation examples (an uploaded file, or a session already on train)."""
    if choice.split == "train" or Path(choice.data).is_file():
        return None
    return dataclasses.replace(choice, split="train", limit=int(examples))


def _total_units(adapter) -> int:
    return sum(adapter.intermediate_size(i) for i in range(adapter.num_layers))


def _on_ffn_changed(adapter, imp_key: str) -> None:
    ss = st.session_state
    imp = ss.get(imp_key)
    if imp is None:
        return
    from analysis.methods.neurons import prune_fraction

    fraction = float(ss.get(state.W_FFN_FRACTION, 0.0))
    per_layer = ss.get(state.W_FFN_ORDER, FFN_ORDERS[0]) == FFN_ORDERS[0]
    pruning = prune_fraction(imp, fraction, per_layer=per_layer)
    state.set_recipe(state.recipe().replace(masked_neurons=[[l, u] for l, u in pruning.masked_neurons], name=""),
                     adapter)


def _collect_neuron_importance() -> None:
    """A finished importance job's result is kept for its train data and method (before the controls draw)."""
    job = widgets.get_job(JOB)
    if job is not None and job.done and job.result is not None:
        key, imp = job.result
        st.session_state[key] = imp


def _neurons(choice, ev) -> None:
    from analysis.methods.neurons import NEURON_METHODS, neuron_importance

    adapter, recipe, ss = ev.adapter, state.recipe(), st.session_state
    st.markdown("**FFN neurons** · prune intermediate units by importance")
    c1, c2, c3 = st.columns([5, 4, 3], vertical_alignment="bottom")
    method = c1.selectbox("Importance", NEURON_METHODS, key=state.W_FFN_METHOD,

                          help="How a unit's importance is scored, on the unpruned model: gradient = mean over "
                               "examples of |dL/d gate| per unit; taylor = |sum of W_out x dL/dW_out| over the unit's "
                               "column. Both take one forward and backward pass per batch of train examples.")
    if state.W_FFN_EXAMPLES not in ss:
        ss[state.W_FFN_EXAMPLES] = min(DEFAULT_TRAIN_EXAMPLES, choice.limit or DEFAULT_TRAIN_EXAMPLES)
    examples = c2.number_input("Train examples", min_value=8, max_value=5000, step=64, key=state.W_FFN_EXAMPLES,
                               help="A stratified subset of the train split scores the units — never the examples "
                                    "the metrics panel evaluates, so the pruning is not fitted to them.")
    train = train_choice(choice, examples)
    imp_key = state.neuron_importance_key(train, method) if train is not None else ""
    imp = ss.get(imp_key) if train is not None else None
    job = widgets.get_job(JOB)
    running = job is not None and not job.done
    if c3.button("Compute", key="w_ffn_compute", disabled=running or train is None, width="stretch",
                 help="Score every FFN unit of every layer on the train subset (a stoppable job)."):
        with st.spinner(f"Tokenising {examples} train examples ..."):
            train_ev = resources.evaluator(train)  # cached: tokenised once per session and size
        widgets.start_job(JOB, lambda j: (imp_key, neuron_importance(train_ev, method, Recipe(), progress=j.report,
                                                                     cancel=j.cancel)))
        st.rerun()
    if train is None:
        st.caption(f":material/warning: {state.data_label(choice)} ({choice.split}) has no train split apart from the "
                   "evaluated examples here, so FFN neurons are not scored (the pruning would be fitted to them).")
    widgets.job_status(JOB)

    total = _total_units(adapter)
    ss[state.W_FFN_FRACTION] = _nearest(recipe.num_masked_neurons / total if total else 0.0, FFN_FRACTIONS)
    if state.W_FFN_ORDER not in ss:
        ss[state.W_FFN_ORDER] = FFN_ORDERS[0]
    changed = dict(on_change=_on_ffn_changed, args=(adapter, imp_key), disabled=imp is None)
    c1, c2 = st.columns([3, 2])
    c1.select_slider("Fraction of FFN neurons pruned", FFN_FRACTIONS, key=state.W_FFN_FRACTION,
                     format_func=lambda f: f"{f:.0%}", **changed,
                     help="The least important share of the intermediate units, by the importance above (compute "
                          "it first). Their W_in rows and W_out columns go when materialized.")
    c2.radio("Order", FFN_ORDERS, key=state.W_FFN_ORDER, **changed,
             help="Uniform: every layer loses the same share, its own least important units (even widths). Global: "
                  "one ranking over all layers after dividing each layer's scores by their L2 norm, so some layers "
                  "keep more than others (at least one unit each).")
    if imp is None and train is not None:
        st.caption("Press **Compute** to score the units; the fraction then prunes them.")
    elif imp is not None:
        st.caption(f"{imp.method} scores on {imp.num_examples} examples of {imp.details.get('data', 'train')} "
                   f"(not the evaluated ones) · {imp.seconds:.1f} s on {imp.device}, {imp.threads} threads")
    _kept_chart(adapter, recipe)


def _kept_chart(adapter, recipe: Recipe) -> None:
    import plotly.graph_objects as go

    L = adapter.num_layers
    sizes = [adapter.intermediate_size(i) for i in range(L)]
    kept = [0 if i in recipe.dropped_layers else len(recipe.kept_neurons(i, sizes[i])) for i in range(L)]
    names = [f"L{i}" for i in range(L)]
    fig = go.Figure()
    fig.add_bar(x=names, y=sizes, name="units", marker_color="rgba(150,150,150,0.35)", hoverinfo="skip")
    fig.add_bar(x=names, y=kept, name="kept", marker_color="#1f77b4", text=[str(k) for k in kept],
                textposition="inside", hovertemplate="%{x}: %{y} kept<extra></extra>")
    fig.update_layout(barmode="overlay", height=210, margin=dict(t=30, b=10, l=10, r=10), showlegend=False,
                      title=dict(text=f"FFN units kept per layer · {sum(kept):,} of {sum(sizes):,}", font=dict(size=13)),
                      yaxis=dict(range=[0, max(sizes) * 1.05]))
    st.plotly_chart(fig, key="w_ffn_kept_fig", config={"displayModeBar": False})


# ------------------------------------------------------------------------------ magnitude sparsity
def _on_sparsity_changed(adapter) -> None:
    ss = st.session_state
    pattern = ss.get(state.W_SPARSITY_PATTERN, "unstructured")
    fraction, scope = float(ss.get(state.W_SPARSITY, 0.0)), ss.get(state.W_SPARSITY_SCOPE, "local")
    if pattern == "2:4":  # the pattern is 50% of each chosen matrix by construction, chosen within groups: local
        fraction, scope = 0.5, "local"
    new = state.recipe().replace(sparsity=fraction, sparsity_roles=list(ss.get(state.W_SPARSITY_ROLES) or []),
                                 sparsity_scope=scope, sparsity_pattern=pattern, name="")
    state.set_recipe(new, adapter)


@st.cache_data(max_entries=64, show_spinner="Counting the bytes from the masks ...")
def _sparse_bytes(choice_key: tuple, sparsity_recipe: str) -> dict:
    from analysis.measure.sparse_files import counted_sparse_bytes

    ev = resources.evaluator(state.DataChoice(*choice_key))
    return counted_sparse_bytes(ev.adapter, Recipe.from_json(sparsity_recipe))


def _sparsity(choice, ev) -> None:
    adapter, recipe, ss = ev.adapter, state.recipe(), st.session_state
    st.markdown("**Magnitude sparsity** · zero the smallest weights")
    s = recipe.layer_sparsity(adapter.num_layers)
    ss[state.W_SPARSITY] = _nearest(sum(s) / len(s) if s else 0.0, SPARSITY_CHOICES)
    ss[state.W_SPARSITY_ROLES] = list(recipe.sparsity_roles)
    ss[state.W_SPARSITY_SCOPE] = recipe.sparsity_scope
    ss[state.W_SPARSITY_PATTERN] = recipe.sparsity_pattern
    two_four = recipe.sparsity_pattern == "2:4"
    changed = dict(on_change=_on_sparsity_changed, args=(adapter,))
    c0, c1 = st.columns([2, 3])
    c0.radio("Pattern", ["unstructured", "2:4"], key=state.W_SPARSITY_PATTERN, horizontal=True, **changed,
             help="unstructured: the smallest |w| anywhere; 2:4: in every group of 4 consecutive weights along the "
                  "input dimension the 2 smallest (NVIDIA's semi-structured pattern, which sparse tensor cores run on "
                  "Ampere+ GPUs): exactly 50% of each chosen matrix, so it sets 50% and a local threshold.")
    c1.select_slider("Fraction of weights zeroed", SPARSITY_CHOICES, key=state.W_SPARSITY,
                     format_func=lambda f: f"{f:.0%}", disabled=two_four, **changed,
                     help="Exactly this fraction of the chosen matrices' weights, those of smallest |w|, is set to 0 "
                          "(ties by position): unstructured magnitude pruning (Han et al. 2015). The 2:4 pattern fixes "
                          "it at 50%.")
    c1, c2 = st.columns([3, 1])
    c1.multiselect("Matrices", list(ROLES), key=state.W_SPARSITY_ROLES, format_func=ROLE_LABELS.get, **changed,
                   help="Which of each layer's six weight matrices lose weights (biases, LayerNorms and embeddings "
                        "stay dense).")
    c2.radio("Threshold", ["local", "global"], key=state.W_SPARSITY_SCOPE, disabled=two_four, **changed,
             help="local: every matrix loses exactly the fraction; global: one threshold over all chosen matrices, so "
                  "some lose more than others and the fraction holds overall (not with 2:4, chosen per group of 4).")
    if isinstance(recipe.sparsity, list) and len(set(recipe.sparsity)) > 1:
        st.caption("The recipe has a fraction per layer (" + " / ".join(f"{x:.0%}" for x in recipe.sparsity)
                   + "); the slider shows their mean and sets one value for all layers.")
    only = Recipe(sparsity=recipe.sparsity, sparsity_roles=recipe.sparsity_roles, sparsity_scope=recipe.sparsity_scope,
                  sparsity_pattern=recipe.sparsity_pattern)
    if only.has_sparsity():
        counted = _sparse_bytes(choice.key(), only.to_json(indent=None))
        b = counted["bytes"]
        c1, c2, c3 = st.columns(3)
        c1.metric("dense file", f"{b['dense'] / 1e6:.1f} MB",
                  help="What save_pretrained writes: the zeros are stored, every one in 4 bytes.")
        for col, fmt, label, what in ((c2, "bitmask", "bitmask file", "1 bit per weight + the nonzeros"),
                                      (c3, "csr", "CSR file", "int32 row pointers and column indices + the nonzeros "
                                       "(8 bytes per nonzero: it wins over the bitmask only above ~97% sparsity)")):
            col.metric(label, f"{b[fmt] / 1e6:.1f} MB", delta=f"{100 * b[fmt] / b['dense']:.0f}% of dense",
                       delta_color="off", delta_arrow="off",
                       help=f"{what}; a matrix stays dense where that is smaller.")
        if two_four:
            c1, c2 = st.columns(2)
            c1.metric("2:4 layout (counted)", f"{b['2:4'] / 1e6:.1f} MB", delta=f"{100 * b['2:4'] / b['dense']:.0f}% of dense",
                      delta_color="off", delta_arrow="off",
                      help="Counted, no file written: the kept half of the values + 2 bits of metadata per kept value, "
                           "as cuSPARSELt stores a 2:4 matrix (at 50% the bitmask's size).")
            c2.metric("2:4 in fp16 (counted)", f"{b['2:4_fp16'] / 1e6:.1f} MB",
                      delta=f"{100 * b['2:4_fp16'] / b['dense_fp16']:.0f}% of dense fp16", delta_color="off", delta_arrow="off",
                      help="The same layout with fp16 values, as the CUDA 2:4 kernels run it, against the fp16 dense model.")
        st.caption(f"Counted from the masks ({counted['zero_fraction_of_matrices']:.0%} of all matrix weights zero, "
                   f"{counted['sparsified_matrices']} matrices sparsified), fp32, the sparsity alone: the tensor bytes "
                   "of the files `materialize` writes (sparse/bitmask.safetensors, sparse/csr.safetensors).")
    st.info("**Size, not speed.** The zeros run through the same dense kernels, so latency (the panel, the Profile "
            "page) stays the same; only sparse kernels such as CSR could turn them into time — see "
            "`benchmarks/RESULTS.md` (\"Inside the weights\") for what has been measured.", icon=":material/info:")
    if two_four:
        st.caption("2:4 runs faster only on sparse tensor cores: a CUDA GPU of the Ampere generation or newer, fp16/bf16 "
                   "(the \"torch 2:4 (CUDA)\" backend of `python -m analysis backends`; not offered on a machine without "
                   "one). Slicing heads or FFN neurons out of a matrix's input dimension breaks its groups of 4.")


# ------------------------------------------------------------------------------ low rank
def _full_rank(adapter, role: str) -> int:
    return min(adapter.kept_shape(Recipe(), 0, role))


def _rank_for(adapter, role: str) -> int:
    ss = st.session_state
    if ss.get(state.W_RANK_MODE, RANK_MODES[0]) == RANK_MODES[0]:
        return max(1, round(float(ss.get(state.W_RANK_FRACTION, 0.25)) * _full_rank(adapter, role)))
    return int(ss.get(state.rank_of_key(role), _full_rank(adapter, role)))


def _on_rank_apply(adapter) -> None:
    ss = st.session_state
    layers, roles = ss.get(state.W_RANK_LAYERS) or [], ss.get(state.W_RANK_ROLES) or []
    ranks = [[int(l), role, _rank_for(adapter, role)] for l in layers for role in roles]
    state.set_recipe(state.recipe().replace(ranks=ranks, name=""), adapter)


def _on_rank_clear(adapter) -> None:
    state.set_recipe(state.recipe().replace(ranks=[], name=""), adapter)


@st.cache_data(max_entries=32, show_spinner="Singular values of the chosen matrices ...")
def _spectra(choice_key: tuple, base_recipe: str, matrices: tuple, embedding: bool) -> dict:
    from analysis.core.lowrank import spectra

    ev = resources.evaluator(state.DataChoice(*choice_key))
    return spectra(ev.adapter, Recipe.from_json(base_recipe), list(matrices), embedding)


def _base_for_spectra(recipe: Recipe) -> str:
    """What the matrices' spectra depend on: the recipe without its ranks, its embedding size and its name."""
    return recipe.replace(ranks=[], embedding_size=0, name="").to_json(indent=None)


def _params(adapter, recipe: Recipe) -> int:
    from analysis.measure.flops import count_parameters

    return sum(r.params for r in count_parameters(adapter, recipe))


def _low_rank(choice, ev) -> None:
    adapter, recipe, ss = ev.adapter, state.recipe(), st.session_state
    L = adapter.num_layers
    st.markdown("**Low rank** · truncated SVD of chosen matrices")
    if recipe.ranks:  # the recipe is the truth (links, Undo): the widgets show it
        ss[state.W_RANK_LAYERS] = sorted({l for l, _, _ in recipe.ranks})
        ss[state.W_RANK_ROLES] = [r for r in ROLES if any(ro == r for _, ro, _ in recipe.ranks)]
        for role in ss[state.W_RANK_ROLES]:
            ss[state.rank_of_key(role)] = next(r for _, ro, r in recipe.ranks if ro == role)
        # one fraction of full rank that gives every entry's rank: show it; otherwise show the ranks per role
        fraction = next((f for f in RANK_FRACTIONS if all(max(1, round(f * _full_rank(adapter, ro))) == r
                                                            for _, ro, r in recipe.ranks)), None)
        if fraction is not None:
            ss[state.W_RANK_FRACTION] = fraction
        else:
            ss[state.W_RANK_MODE] = RANK_MODES[1]
    ss[state.W_RANK_LAYERS] = [l for l in ss.get(state.W_RANK_LAYERS, range(L)) if l < L]  # another model: fewer layers
    ss.setdefault(state.W_RANK_ROLES, ["ffn_in", "ffn_out"])
    ss.setdefault(state.W_RANK_MODE, RANK_MODES[0])
    ss.setdefault(state.W_RANK_FRACTION, 0.25)
    for role in ROLES:
        ss.setdefault(state.rank_of_key(role), max(1, _full_rank(adapter, role) // 4))
    st.radio("Rank as", RANK_MODES, key=state.W_RANK_MODE, horizontal=True,
             help="One fraction of every chosen matrix's full rank, or a rank of its own per role.")
    with st.form("w_rank_form", border=False):
        st.multiselect("Layers", list(range(L)), key=state.W_RANK_LAYERS, format_func=lambda l: f"L{l}",
                       help="The encoder layers whose chosen matrices are cut.")
        st.multiselect("Matrices", list(ROLES), key=state.W_RANK_ROLES, format_func=ROLE_LABELS.get,
                       help="Each chosen matrix W (out x in) becomes two, in -> r -> out (its best rank-r approximation).")
        if ss[state.W_RANK_MODE] == RANK_MODES[0]:
            st.select_slider("Rank (fraction of full rank)", RANK_FRACTIONS, key=state.W_RANK_FRACTION,
                             format_func=lambda f: f"{f:.0%}",
                             help="r = this fraction of min(out, in), at least 1.")
        else:
            cols = st.columns(3)
            for i, role in enumerate(ROLES):
                full = _full_rank(adapter, role)
                cols[i % 3].number_input(f"{SHORT_ROLE[role]} rank (full {full})", min_value=1, max_value=full, step=8,
                                         key=state.rank_of_key(role), help=f"{ROLE_LABELS[role]}: the rank kept.")
        b1, b2 = st.columns(2)
        b1.form_submit_button("Apply low rank", type="primary", key="w_rank_apply", on_click=_on_rank_apply,
                              args=(adapter,), width="stretch",
                              help="Cut the chosen matrices of the chosen layers; replaces the recipe's low-rank part.")
        b2.form_submit_button("Clear low rank", key="w_rank_clear", on_click=_on_rank_clear, args=(adapter,),
                              width="stretch", disabled=not recipe.ranks, help="Every matrix whole again.")
    shape = {role: adapter.kept_shape(Recipe(), 0, role) for role in ROLES}
    st.caption("Saves parameters only below r = out x in / (out + in): " + ", ".join(
        f"{SHORT_ROLE[r]} {shape[r][0] * shape[r][1] // (shape[r][0] + shape[r][1])}" for r in ROLES) + ".")
    if not recipe.ranks:
        st.caption("Apply to see the spectrum energy each matrix keeps and the parameters saved.")
        return
    from analysis.core.lowrank import energy_kept

    matrices = tuple((l, ro) for l, ro, _ in recipe.ranks)
    spectra = _spectra(choice.key(), _base_for_spectra(recipe), matrices, False)
    rows = [(f"L{l} {SHORT_ROLE[ro]}", ro, r, energy_kept(spectra[(l, ro)], r), len(spectra[(l, ro)]))
            for l, ro, r in recipe.ranks if (l, ro) in spectra]
    saved = _params(adapter, recipe.replace(ranks=[])) - _params(adapter, recipe)
    total = _params(adapter, Recipe())
    st.metric("parameters saved by low rank", f"{saved / 1e6:+.2f} M" if abs(saved) >= 1e5 else f"{saved:+,}",
              delta=f"{100 * saved / total:.1f}% of the model" if saved >= 0 else "costs parameters: rank above break-even",
              delta_color="off", delta_arrow="off",
              help="Counted: each cut matrix pays r (in + out) weights instead of in x out.")
    if rows:
        import plotly.graph_objects as go

        fig = go.Figure()
        for role in ROLES:
            part = [r for r in rows if r[1] == role]
            if part:
                fig.add_bar(x=[r[0] for r in part], y=[100 * r[3] for r in part], name=SHORT_ROLE[role],
                            text=[f"{100 * r[3]:.0f}" for r in part], textposition="inside",
                            customdata=[[r[2], r[4]] for r in part],
                            hovertemplate="%{x}: rank %{customdata[0]} of %{customdata[1]}, %{y:.1f}% of the energy"
                                          "<extra></extra>")
        fig.update_layout(height=230, margin=dict(t=30, b=10, l=10, r=10), yaxis=dict(range=[0, 100], title="%"),
                          title=dict(text="Spectrum energy kept per matrix (sum of s_i² up to r / all)",
                                     font=dict(size=13)), legend=dict(orientation="h", y=-0.25))
        st.plotly_chart(fig, key="w_rank_energy_fig", config={"displayModeBar": False})


# ------------------------------------------------------------------------------ embedding size
def _on_embedding_changed(adapter) -> None:
    state.set_recipe(state.recipe().replace(embedding_size=int(st.session_state.get(state.W_EMBEDDING, 0)), name=""),
                     adapter)


def _embedding(choice, ev) -> None:
    adapter, recipe, ss = ev.adapter, state.recipe(), st.session_state
    V, H = adapter.word_embeddings.weight.shape
    st.markdown("**Embedding size E** · ALBERT's factorised embeddings")
    options = [0] + [e for e in EMBEDDING_SIZES if e < min(V, H)]
    if recipe.embedding_size and recipe.embedding_size not in options:
        options = sorted(options + [recipe.embedding_size], key=lambda e: -e if e else -10 ** 9)
    ss[state.W_EMBEDDING] = recipe.embedding_size
    c1, c2 = st.columns([1, 2], vertical_alignment="bottom")
    c1.selectbox("E", options, key=state.W_EMBEDDING, on_change=_on_embedding_changed, args=(adapter,),
                 format_func=lambda e: f"full ({H})" if e == 0 else str(e),
                 help=f"The {V:,} x {H} word-embedding table becomes {V:,} x E times E x {H}, from its SVD (Lan et al. "
                      "2020). Position and type embeddings stay as they are.")
    E = recipe.embedding_size
    after = E * (V + H) if E else V * H
    c2.metric("word-embedding parameters", f"{after / 1e6:.2f} M",
              delta=None if not E else f"{100 * after / (V * H):.0f}% of {V * H / 1e6:.2f} M",
              delta_color="off", delta_arrow="off", help=f"V x H = {V:,} x {H} before; E (V + H) after.")
    if E:
        from analysis.core.lowrank import energy_kept

        spectrum = _spectra(choice.key(), _base_for_spectra(recipe), (), True)[(None, "embedding")]
        st.caption(f"E = {E} keeps {100 * energy_kept(spectrum, E):.1f}% of the table's spectrum energy "
                   f"(rank {E} of {len(spectrum)}).")


# ------------------------------------------------------------------------------ cross-layer sharing
SHARE_PRESETS = ("none", "neighbouring pairs", "all layers one", "groups typed below")


def _pairs(n: int) -> list[list[int]]:
    return [[i, i + 1] for i in range(0, n - 1, 2)]


def parse_groups(text: str) -> list[list[int]]:
    """'0,1; 2,3' -> [[0, 1], [2, 3]] (a HeadroomError in one sentence for anything else)."""
    from analysis.errors import HeadroomError

    groups = []
    for part in (p for p in text.replace("|", ";").split(";") if p.strip()):
        try:
            groups.append([int(x) for x in part.replace(" ", ",").split(",") if x.strip()])
        except ValueError:
            raise HeadroomError(f"'{part.strip()}' is not a group of layer numbers; write groups like 0,1; 2,3.") from None
    return groups


def _preset_of(recipe: Recipe, n: int) -> str:
    if not recipe.shared_layers:
        return "none"
    if recipe.shared_layers == _pairs(n):
        return "neighbouring pairs"
    if recipe.shared_layers == [list(range(n))]:
        return "all layers one"
    return "groups typed below"


def _on_sharing_changed(adapter) -> None:
    from analysis.errors import HeadroomError

    ss, n = st.session_state, adapter.num_layers
    preset = ss.get(state.W_SHARE_PRESET, "none")
    try:
        groups = {"none": [], "neighbouring pairs": _pairs(n), "all layers one": [list(range(n))]}.get(preset)
        if groups is None:
            groups = parse_groups(ss.get(state.W_SHARE_GROUPS, ""))
    except HeadroomError as e:  # one sentence for the panel
        ss[state.RECIPE_ERROR] = str(e)
        return
    new = state.recipe().replace(shared_layers=groups, share_mode=ss.get(state.W_SHARE_MODE, "first"), name="")
    if state.set_recipe(new, adapter):
        ss[state.W_SHARE_SYNCED] = (tuple(map(tuple, new.shared_layers)), new.share_mode)


def _sharing(choice, ev) -> None:
    adapter, recipe, ss = ev.adapter, state.recipe(), st.session_state
    n = adapter.num_layers
    st.markdown("**Cross-layer sharing** · ALBERT's one set of weights for several layers")
    sharing = (tuple(map(tuple, recipe.shared_layers)), recipe.share_mode)
    if ss.get(state.W_SHARE_SYNCED) != sharing or state.W_SHARE_PRESET not in ss:
        # the recipe changed elsewhere (a link, undo, Trade-offs): the widgets follow it; otherwise they keep
        # what the user picked ("groups typed below" may still spell a preset's groups)
        ss[state.W_SHARE_PRESET] = _preset_of(recipe, n)
        ss[state.W_SHARE_MODE] = recipe.share_mode
        ss[state.W_SHARE_GROUPS] = "; ".join(",".join(map(str, g)) for g in recipe.shared_layers)
        ss[state.W_SHARE_SYNCED] = sharing
    changed = dict(on_change=_on_sharing_changed, args=(adapter,))
    c1, c2 = st.columns([3, 2])
    c1.radio("Layers shared", SHARE_PRESETS, key=state.W_SHARE_PRESET, horizontal=True, **changed,
             help=f"neighbouring pairs: {_pairs(n)}; all layers one: every layer runs one layer's weights (ALBERT).")
    c2.radio("Weights of a group", ["first", "mean"], key=state.W_SHARE_MODE, horizontal=True, **changed,
             format_func={"first": "first layer's", "mean": "mean of the group"}.get,
             help="first: the group runs its first layer's own copy; mean: the element-wise mean of its layers.")
    if ss[state.W_SHARE_PRESET] == "groups typed below":
        st.text_input("Groups", key=state.W_SHARE_GROUPS, placeholder="0,1; 2,3", **changed,
                      help=f"Layers 0-{n - 1}, a group's layers joined by commas, groups by semicolons; a layer in at "
                           "most one group.")
    if recipe.shared_layers:
        base = _params(adapter, Recipe())
        after = _params(adapter, recipe.replace(ranks=[], embedding_size=0, name=""))
        st.metric("parameters", f"{after / 1e6:.2f} M", delta=f"{100 * after / base:.0f}% of {base / 1e6:.2f} M",
                  delta_color="off", delta_arrow="off",
                  help="Counted once per shared set (the materialized model ties the modules: one storage, saved once).")
    st.caption("One-shot sharing costs much and recovery brings most of it back: on demo, pairs (first) 53.6% -> "
               "90.3% after one epoch of fine-tuning, all six layers 1.4% -> 79.3% (baseline 92.7%; "
               "benchmarks/RESULTS.md, \"Cross-layer sharing\"). Recover on the **Recovery** page.")


# ------------------------------------------------------------------------------ the page
def render() -> None:
    st.title("Weights")
    st.caption("Take weights out inside the layers: FFN neurons by importance, magnitude sparsity, low-rank matrices "
               "(truncated SVD), ALBERT's factorised embeddings and cross-layer sharing. Each control edits the session recipe, so the "
               "panel, Trade-offs and the link follow.")
    ctx = widgets.context()
    if ctx is None:
        return
    choice, ev = ctx
    _collect_neuron_importance()

    @st.fragment
    def live():
        st.caption(":material/science: Metrics **simulated; before recovery** — one-shot, without re-fine-tuning. "
                   "Recover on the **Recovery** page.")
        widgets.metrics_panel(choice)
        # two rows, so the boxes of a row start level: neurons | sparsity, then low rank | embedding size
        left, right = st.columns(2, gap="medium")
        with left, st.container(border=True, key="w_ffn_box"), widgets.guard():
            _neurons(choice, ev)
        with right, st.container(border=True, key="w_sparsity_box"), widgets.guard():
            _sparsity(choice, ev)
        left, right = st.columns([3, 2], gap="medium")
        with left, st.container(border=True, key="w_rank_box"), widgets.guard():
            _low_rank(choice, ev)
        with right, st.container(border=True, key="w_embedding_box"), widgets.guard():
            _embedding(choice, ev)
        with st.container(border=True, key="w_sharing_box"), widgets.guard():
            _sharing(choice, ev)
        state.sync_query_params()

    live()


if __name__ == "__main__":  # run by st.navigation as this page's script
    render()
