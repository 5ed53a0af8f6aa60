"""Widgets every what-if page shares: the live metrics panel, the head grid, errors, long jobs.

- `metrics_panel()`: the recipe's metric and its change from the baseline, agreement with the
  baseline's predictions, size, latency (the deployed model's time as a ratio to the baseline
  timed in the same interleaved run, with a verdict and a Re-measure button) and the number of
  examples, each saying whether it is simulated, predicted or measured. Pages call it inside their own `st.fragment` together with
  their controls, so a click re-runs only the controls and the panel, not the page's plots.
- `head_grid()`: one row of pills per layer, a pill per head, selected = kept. Clicking a pill
  masks or unmasks the head (works the same from AppTest and from a browser).
- `show_error(exc)` / `guard()`: any exception becomes one sentence in an error box; the state
  from before the failed action is kept, because state changes only after an action succeeds.
- `preset_picker()`: one button per named recipe of `analysis.methods.presets`, and a reset.
- `Job` / `start_job()` / `job_status()`: a long analysis (importance, curves, Hessian) in a background thread
  with a progress bar and a Stop button; the session stays usable while it runs.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field

import streamlit as st

from analysis.errors import HeadroomError
from analysis.core.recipe import Recipe
from analysis.measure.latency import FP32_KERNELS

from . import history, resources, state


# ------------------------------------------------------------------------------ errors
def one_sentence(exc: BaseException) -> str:
    """A HeadroomError as is; anything else as one line saying what failed (no traceback)."""
    if isinstance(exc, HeadroomError):
        return str(exc)
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    if isinstance(exc, MemoryError):
        return "Out of memory: choose a smaller subset or a smaller model."
    return f"Something went wrong ({type(exc).__name__}: {first}); the previous state was kept."


def show_error(exc: BaseException) -> None:
    st.error(one_sentence(exc), icon=":material/error:")


@contextlib.contextmanager
def guard():
    """Turn any exception inside the block into an error box (Streamlit's rerun/stop pass through)."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - the page must never show a traceback
        show_error(exc)


def context():
    """(choice, evaluator) for the current model and data, or None after showing why not."""
    choice = state.choice()
    try:
        return choice, resources.evaluator(choice)
    except Exception as exc:  # noqa: BLE001
        show_error(exc)
        st.info("Pick another model or data set on the **Model & data** page.")
        return None


# ------------------------------------------------------------------------------ metrics panel
def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def recipe_label(recipe: Recipe) -> str:
    """A recipe's name with what it changes ("Sixteen heads: mask 40% — 5 heads masked (L0: 2, L2: 3)")."""
    what = recipe.describe()
    return f"{recipe.name} — {what}" if recipe.name and not recipe.is_baseline() else what


def metrics_panel(choice=None) -> None:
    """The live metrics of the current recipe against the baseline: a first figure on a 100-example
    subset at once (labelled an estimate) when the exact one is not cached, then the exact one."""
    choice = choice or state.choice()
    recipe = state.recipe()
    refused = st.session_state.pop(state.RECIPE_ERROR, None)
    if refused:
        st.error(f"{refused} The previous recipe is kept.", icon=":material/error:")
    _undo_reset_buttons()
    panel = st.container(key="metrics_panel").empty()  # the key: tests and benchmarks find the panel by it
    t0 = time.perf_counter()
    try:
        ev = resources.evaluator(choice)
        base = resources.evaluate(choice, Recipe())
        quick_data = resources.quick_choice(choice)
        if quick_data is not None:  # built with the page, not on the first click (0.4 s on demo)
            resources.evaluate(quick_data, Recipe())
        if resources.cached_result(choice, recipe) is None:
            quick = resources.evaluate_quick(choice, recipe)
            if quick is not None:
                quick_base = resources.evaluate(resources.quick_choice(choice), Recipe())
                with panel.container():
                    _draw_panel(choice, ev, recipe, quick, quick_base, time.perf_counter() - t0, estimate=True)
        bar = st.empty()

        def progress(fraction: float, message: str) -> None:
            bar.progress(fraction, text=f"Evaluating all {len(ev.dataset)} examples: {message} "
                                        f"({time.perf_counter() - t0:.1f} s)")

        res = resources.evaluate(choice, recipe, progress=progress)
        bar.empty()
        seconds = time.perf_counter() - t0
    except Exception as exc:  # noqa: BLE001
        panel.empty()
        show_error(exc)
        return
    st.session_state[state.LAST_UPDATE_S] = seconds
    st.session_state.setdefault(state.HISTORY, {})[(choice.key(), recipe.key())] = recipe
    with panel.container():
        _draw_panel(choice, ev, recipe, res, base, seconds, estimate=False)
    history.add(choice, recipe)  # after the draw: the row carries the latency measured there


def _undo_reset_buttons() -> None:
    undo = st.session_state.get(state.UNDO) or []
    c1, c2, _ = st.columns([1, 1, 6])
    c1.button("Undo", key="panel_undo", disabled=not undo, on_click=state.undo_recipe, width="stretch",
              icon=":material/undo:", help="Back to the recipe before the last change" +
              (f" ({recipe_label(undo[-1])})" if undo else ""))
    c2.button("Reset", key="panel_reset", disabled=state.recipe().is_baseline(), width="stretch",
              on_click=state.set_recipe, args=(Recipe(),), help="Back to the baseline (no change)")


def _draw_panel(choice, ev, recipe: Recipe, res, base, seconds: float, estimate: bool) -> None:
    is_base = recipe.is_baseline()
    with st.container(border=True):
        title = f"**Live metrics** · {recipe_label(recipe)}"
        if estimate:
            title += f" · :orange[estimate on {res.num_examples} examples, every example is being evaluated ...]"
        st.markdown(title)
        c1, c2, c3, c4, c5 = st.columns(5)
        metric_name = res.metric_name.replace("_", " ")
        delta = None if res.metric is None or base.metric is None or is_base else 100 * (res.metric - base.metric)
        kind = "estimate" if estimate else "simulated"
        unchanged = delta is not None and abs(delta) < 0.05  # no green arrow on "+0.0 pts"
        c1.metric(f"{metric_name} · {kind}", _pct(res.metric),
                  delta=None if delta is None else f"{delta:+.1f} pts",
                  delta_color="off" if unchanged else "normal", delta_arrow="off" if unchanged else "auto",
                  help=f"Baseline {_pct(base.metric)} on the same {res.num_examples} examples. Simulated: the recipe "
                       "is applied inside Headroom's forward pass; the model is not changed."
                       + (" Estimate: a stratified subset; the exact figure replaces it." if estimate else ""))
        c2.metric("agreement with baseline", _pct(res.agreement),
                  help="Share of examples where the prediction equals the baseline's prediction.")
        size = res.size
        c3.metric("size · from bits", f"{size.mb:.1f} MB",
                  delta=None if is_base else f"{100 * size.fraction_of_baseline:.0f}% of baseline",
                  delta_color="off", delta_arrow="off",
                  help=f"Baseline {size.baseline_mb:.1f} MB; {size.parameters:,} parameters. "
                       "Predicted from the bits, scales included.")
        c5.metric("examples", f"{res.num_examples:,}", help=ev.dataset.name if not estimate else "a stratified subset")
        how = "baseline pass" if is_base else f"recomputed from layer {res.started_at_layer} in {res.eval_seconds:.2f} s"
        state_ = "estimate" if estimate else "exact"
        st.caption(f"{ev.dataset.name} · {choice.model} on {res.device} ({res.dtype}) · metrics simulated, {how} · "
                   f"{state_} after {seconds:.2f} s")
        note = None if estimate else one_shot_note(recipe, res, base)
        if note:
            st.caption(f":material/info: {note}")
        # Latency last: the metrics above are already on the page while it is measured.
        with c4:
            if estimate:
                st.metric("latency · measured", "…", help="Measured after the exact metrics.")
            else:
                _latency_metric(choice, recipe, is_base)


def _latency_metric(choice, recipe: Recipe, is_base: bool) -> None:
    """The recipe's time as a ratio to the baseline timed in the same interleaved run, with its
    interval and verdict; never a ratio of two timings taken at different times."""
    try:
        with st.spinner("Timing against the baseline ..."):
            if not is_base and st.session_state.pop(state.LATENCY_REMEASURE, False):
                resources.remeasure(choice, recipe)
            lat = resources.latency(choice, recipe)
    except Exception as exc:  # noqa: BLE001
        show_error(exc)
        return
    predicted = "" if lat.predicted_ratio is None else f" Predicted from counted FLOPs: {lat.predicted_ratio:.2f}x."
    if lat.kind == FP32_KERNELS:
        why = "; ".join(lat.notes) if lat.notes else "these bit-widths have no integer kernels here"
        st.metric("latency · fp32 kernels", "unchanged",
                  help=f"{why[0].upper()}{why[1:]}. Nothing is timed: the model runs the same fp32 kernels as the "
                       "baseline. Real int8/bf16 kernels: 8 or 16 bits in every layer.")
    elif is_base:
        st.metric("latency · measured", f"{lat.ms_per_example:.1f} ms",
                  help=f"Per example, on {lat.device}: median of {lat.repeats} runs of the unmodified model, batch {lat.batch_size} x "
                       f"{lat.seq_len} tokens, {lat.threads} threads, load {lat.load_average}.")
    else:
        lo, hi = lat.ratio_ci95
        st.metric(f"latency · measured vs baseline, {lat.device}", f"{lat.ratio:.2f}x",
                  delta=lat.verdict if lat.verdict != "no measurable change" else "no measurable change",
                  delta_color="off" if lat.verdict not in ("faster", "slower") else
                  ("normal" if lat.verdict == "faster" else "inverse"),
                  help=f"{lat.what}, timed interleaved with the baseline ({lat.repeats} rounds, batch "
                       f"{lat.batch_size} x {lat.seq_len}, {lat.threads} threads, load {lat.load_average}). "
                       f"Median of per-round time ratios; 95% interval {lo:.2f}-{hi:.2f}, IQR "
                       f"{lat.ratio_iqr[0]:.2f}-{lat.ratio_iqr[1]:.2f}; {lat.ms_per_example:.2f} ms/ex vs "
                       f"{lat.baseline_ms_per_batch / lat.batch_size:.2f}.{predicted}")
    if not is_base and lat.kind != FP32_KERNELS:
        st.button("Re-measure", key="latency_remeasure", help="Time this recipe against the baseline again",
                  on_click=_ask_remeasure)


def _ask_remeasure() -> None:
    st.session_state[state.LATENCY_REMEASURE] = True


# ------------------------------------------------------------------------------ head grid
def _on_heads_changed(num_layers: int, num_heads: int) -> None:
    masked = []
    for layer in range(num_layers):
        kept = set(st.session_state.get(state.head_grid_key(layer)) or [])
        masked += [(layer, h) for h in range(num_heads) if h not in kept]
    state.set_recipe(state.recipe().replace(masked_heads=masked, name=""))


def head_grid(num_layers: int, num_heads: int, dropped: list[int] | None = None) -> None:
    """L rows of H pills; a selected pill is a kept head. Mirrors (and edits) the recipe."""
    recipe = state.recipe()
    dropped = set(dropped or [])
    for layer in range(num_layers):  # the recipe is the truth: put it into the widgets first
        st.session_state[state.head_grid_key(layer)] = recipe.kept_heads(layer, num_heads)
    st.caption(f"**Heads** of {num_layers} layers x {num_heads}: click one to mask it (outlined) or to bring "
               f"it back (filled = kept) · {len(recipe.masked_heads)} masked"
               + (f" · struck through: layer{'s' if len(dropped) > 1 else ''} "
                  f"{', '.join(f'L{k}' for k in sorted(dropped))} dropped" if dropped else ""))
    for layer in range(num_layers):
        label_col, pills_col = st.columns([1, 14], vertical_alignment="center")
        label_col.markdown(f"~~**L{layer}**~~" if layer in dropped else f"**L{layer}**",
                           help="dropped (Layers page)" if layer in dropped else None)
        pills_col.pills(
            f"Layer {layer} heads", options=list(range(num_heads)), selection_mode="multi",
            key=state.head_grid_key(layer), format_func=str, label_visibility="collapsed",
            on_change=_on_heads_changed, args=(num_layers, num_heads),
        )


# ------------------------------------------------------------------------------ presets
def session_importance(choice, ev):
    """This session's head importance for the model and data; computed (Michel et al. 2019, of the
    unpruned model) and kept when there is none yet, so a preset never ranks heads nobody scored."""
    imp = state.importance(choice)
    if imp is None:
        from analysis.methods.importance import compute_importance

        with st.spinner("Computing Michel importance of every head (one backward pass per batch) ..."):
            imp = compute_importance(ev, "michel", Recipe())
        state.set_importance(choice, imp)
    return imp


def preset_recipe(choice, ev, name: str) -> Recipe:
    """The named preset (analysis.methods.presets) for the loaded model."""
    from analysis.methods.presets import get_preset

    preset = get_preset(name)
    importance = session_importance(choice, ev) if preset.needs_importance else None
    return preset.build(ev.adapter.num_layers, importance)


def preset_picker(choice, ev, key: str = "preset") -> None:
    """A button per preset, each citing its paper, and a reset; the panel's Undo takes a preset back."""
    from analysis.methods.presets import PRESETS

    with st.container(horizontal=True, key=f"{key}_row"):  # buttons as wide as their labels, wrapping
        for preset in PRESETS.values():
            needs = (" Ranks heads by this session's importance (Michel importance is computed first if there is "
                     "none).") if preset.needs_importance else ""
            if st.button(preset.name, key=f"{key}_{preset.name}",
                         help=f"{preset.what.capitalize()}. {preset.citation}.{needs} It replaces the current "
                              "recipe; Undo (above the metrics) brings that back."):
                before = state.recipe()
                if state.set_recipe(preset_recipe(choice, ev, preset.name), ev.adapter) and not before.is_baseline():
                    st.toast(f"{preset.name} replaced {recipe_label(before)}; **Undo** brings it back.")
        if st.button("Reset to baseline", key=f"{key}_reset"):
            state.set_recipe(Recipe())


def one_shot_note(recipe: Recipe, res, base) -> str | None:
    """Why a big drop after dropping layers or masking heads is expected here (no re-fine-tuning)."""
    if res.metric is None or base.metric is None or base.metric - res.metric < 0.05:
        return None
    if recipe.dropped_layers:
        return ("One-shot: the layers are dropped without re-fine-tuning. Sajjad et al. re-fine-tune the model "
                "after dropping, which is how their accuracy stays close to the baseline.")
    if recipe.masked_heads:
        return ("One-shot: heads are masked without re-fine-tuning (as in Michel et al.'s pruning curves); "
                "accuracy falls fast past a model-dependent share of heads.")
    if recipe.masked_neurons or recipe.has_sparsity() or recipe.ranks or recipe.embedding_size:
        return ("One-shot: the weights are taken out without re-fine-tuning; the Recovery page trains the recipe "
                "back (demo's 50% FFN neurons: 91.1% one-shot -> 92.5% after one epoch, benchmarks/RESULTS.md).")
    return None


# ------------------------------------------------------------------------------ long jobs
ABANDONED_S = 90.0  # a job whose session has shown no page for this long stops itself (the tab was closed)


@dataclass
class Job:
    """A long analysis running in a background thread; the page polls it."""

    name: str
    cancel: threading.Event = field(default_factory=threading.Event)
    progress: float = 0.0
    message: str = "starting ..."
    result: object = None
    error: str | None = None
    done: bool = False
    thread: threading.Thread | None = None
    started: float = field(default_factory=time.monotonic)  # when it started (monotonic seconds)
    finished: float | None = None
    last_seen: float = field(default_factory=time.monotonic)  # the last time a page of its session ran

    def report(self, fraction: float, message: str = "") -> None:
        self.progress = min(1.0, max(0.0, float(fraction)))
        if message:
            self.message = message
        if time.monotonic() - self.last_seen > ABANDONED_S:  # nobody is watching: free the core
            self.cancel.set()

    def elapsed_s(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    def timing(self) -> str:
        """'12 s elapsed, about 30 s left' (no guess before 3% or 3 s of progress)."""
        elapsed = self.elapsed_s()
        text = f"{elapsed:.0f} s elapsed"
        if not self.done and self.progress >= 0.03 and elapsed >= 3:
            text += f", about {elapsed * (1 - self.progress) / self.progress:.0f} s left"
        return text


def start_job(name: str, fn) -> Job:
    """Run fn(job) in a thread. fn reports with job.report(...) and checks job.cancel."""
    job = Job(name)

    def target():
        try:
            job.result = fn(job)
        except Exception as exc:  # noqa: BLE001
            job.error = "Stopped." if job.cancel.is_set() else one_sentence(exc)
        finally:
            job.finished = time.monotonic()
            job.done = True

    job.thread = threading.Thread(target=target, name=f"headroom-{name}", daemon=True)
    st.session_state.setdefault(state.JOBS, {})[name] = job
    job.thread.start()
    return job


def running_jobs() -> list[Job]:
    return [j for j in st.session_state.get(state.JOBS, {}).values() if not j.done]


def jobs_in_sidebar() -> None:
    """On every page: the session's running jobs, polled every 2 s (which also tells each job that its
    session is still open; once the tab is closed the polls stop and the job stops itself)."""
    if not running_jobs():
        return

    @st.fragment(run_every=2.0)
    def poll():
        now = time.monotonic()
        for job in running_jobs():
            job.last_seen = now
            st.progress(job.progress, text=f"{job.name}: {100 * job.progress:.0f}% · {job.timing()}")

    poll()


def get_job(name: str) -> Job | None:
    return st.session_state.get(state.JOBS, {}).get(name)


def job_status(name: str) -> Job | None:
    """Show a running job's progress and Stop button (polled every second); return the job."""
    job = get_job(name)
    if job is None:
        return None

    @st.fragment(run_every=1.0 if not job.done else None)
    def poll():
        job.last_seen = time.monotonic()
        if not job.done:
            st.progress(job.progress, text=f"{job.name}: {job.message} · {job.timing()}")
            if st.button("Stop", key=f"stop_{name}"):
                job.cancel.set()
        elif job.error:
            st.warning(f"{job.name}: {job.error}")
        else:
            st.caption(f"{job.name}: done in {job.elapsed_s():.1f} s")
        if job.done and not st.session_state.get(state.job_seen_key(name, job)):
            st.session_state[state.job_seen_key(name, job)] = True
            st.rerun()  # the whole page redraws once with the result

    poll()
    return job
