"""Attention heads: what they look at, and the Sixteen-Heads experiments.

- `head_stats` — per-head attention statistics over a subset, after Clark, Khandelwal, Levy &
  Manning 2019, "What Does BERT Look At?": mean entropy, and the share of attention that goes to
  [CLS], to [SEP], to punctuation, to the previous / next token and to the token itself. Averaged
  over every real (non-padding) query token of the subset; padding keys get exactly 0 attention.
- `attention_maps` — one sentence (or pair) through a Recipe: a list per layer of (H, T, T) numpy
  maps, masked heads and dropped layers as all-zero maps, plus the tokens (the bertviz view).
- `keep_one_head` — Michel et al. 2019, section 3.2: for each layer, the metric with only one head
  of that layer kept (every head tried; the best reported), and with all its heads masked.
- `prune_curve` — Michel et al. 2019, section 4: mask heads in steps (10% of all heads by
  default) in order of importance (least important first), optionally recomputing importance on
  the pruned model after each step; against a random order (mean ± std over seeds) and the
  reverse order. Reports metric vs fraction pruned, the largest fraction within 1 point of the
  baseline, and the area under the curve.

Every long loop takes `progress(fraction, message)` and a `cancel` threading.Event (analysis/jobs.py)
and runs on an `EvalContext` (the Evaluator). Everything is simulated on the loaded model (heads
sliced out inside Headroom's forward), never written to it.
"""

from __future__ import annotations

import string
import threading
import time
import unicodedata
from dataclasses import asdict, dataclass

import numpy as np
import torch

from analysis.io.batching import Batch
from analysis.errors import HeadroomError
from analysis.jobs import Progress, check_cancel, report
from analysis.methods.context import EvalContext, resolve_label_free
from analysis.methods.importance import HeadImportance, _nested, attention_entropy, compute_importance, score_of
from analysis.core.recipe import Recipe
from analysis.core.simulate import simulate
from analysis.methods.selection import least_important_fraction, random_order

STATS = ("entropy", "cls", "sep", "punctuation", "previous", "next", "self")
ORDERS = ("importance", "random", "reverse")


# ============================================================================ attention statistics
@dataclass
class HeadStats:
    """Per-head attention statistics (L, H) each; NaN for masked heads and dropped layers."""

    values: dict  # name in STATS -> (L, H) array
    num_examples: int
    num_tokens: int  # real query tokens averaged over
    device: str
    threads: int
    what: str = ("Clark et al. 2019: mean entropy (nats) and mean share of attention to [CLS], [SEP], punctuation, "
                 "the previous / next token and itself, over real query tokens (simulated)")

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "values"}
        d["stats"] = {k: _nested(v) for k, v in self.values.items()}
        return d


def punctuation_ids(tokenizer) -> torch.Tensor:
    """(vocab,) bool: tokens made only of punctuation (word-piece / BPE markers stripped)."""
    vocab = len(tokenizer)
    tokens = tokenizer.convert_ids_to_tokens(list(range(vocab)))
    special = set(tokenizer.all_special_ids)

    def is_punct(i: int, tok: str | None) -> bool:
        if tok is None or i in special:
            return False
        t = tok.replace("##", "").lstrip("\u0120\u2581")  # BERT '##', RoBERTa 'Ġ', SentencePiece '▁'
        return bool(t) and all(c in string.punctuation or unicodedata.category(c).startswith("P") for c in t)

    return torch.tensor([is_punct(i, t) for i, t in enumerate(tokens)], dtype=torch.bool)


def batch_head_stats(probs: torch.Tensor, batch, cls_id: int | None, sep_id: int | None,
                     punct: torch.Tensor) -> dict:
    """Sums over one batch's real query tokens of each statistic, per head, plus the counts.

    probs: (B, nh, T, T), rows = query tokens, columns = keys. Returns name -> (nh,) sum and
    'count' / 'count_previous' / 'count_next' (how many query positions each average is over).
    """
    p = probs.float()
    ids, real = batch.input_ids, batch.attention_mask.bool()  # (B, T)
    q = real[:, None, :].float()  # (B, 1, T) weight of each query row

    def share_to(key_mask: torch.Tensor) -> torch.Tensor:  # (B, T) keys -> (nh,) summed share
        return ((p * key_mask[:, None, None, :].float()).sum(-1) * q).sum(dim=(0, 2))

    none = torch.zeros_like(real)
    out = {
        "entropy": attention_entropy(p, batch.attention_mask)[0],
        "cls": share_to(ids == cls_id if cls_id is not None else none),
        "sep": share_to(ids == sep_id if sep_id is not None else none),
        "punctuation": share_to(punct.to(ids.device)[ids] & real),
        "self": (p.diagonal(dim1=-2, dim2=-1) * q).sum(dim=(0, 2)),
    }
    # previous token: element [i, i-1] for query i >= 1 (its key i-1 is real whenever i is)
    prev_ok = real[:, 1:].float()[:, None, :]  # (B, 1, T-1)
    out["previous"] = (p.diagonal(offset=-1, dim1=-2, dim2=-1) * prev_ok).sum(dim=(0, 2))
    # next token: element [i, i+1] for query i whose next token is real
    next_ok = real[:, 1:].float()[:, None, :]
    out["next"] = (p.diagonal(offset=1, dim1=-2, dim2=-1) * next_ok).sum(dim=(0, 2))
    out["count"] = float(real.sum())
    out["count_previous"] = out["count_next"] = float(real[:, 1:].sum())
    return out


@torch.inference_mode()
def head_stats(ctx: EvalContext, recipe: Recipe | None = None, *, progress: Progress = None,
               cancel: threading.Event | None = None) -> HeadStats:
    """Clark et al.'s per-head statistics over the context's subset."""
    recipe = recipe or Recipe()
    sim = ctx.simulator(recipe)
    tok = ctx.loaded.tokenizer
    punct = punctuation_ids(tok)
    live = [i for i, lw in sim.layers.items() if lw.num_heads > 0]
    sums = {i: {} for i in live}
    counts = {"count": 0.0, "count_previous": 0.0, "count_next": 0.0}
    for bi, batch in enumerate(ctx.batches):
        check_cancel(cancel, "attention statistics")
        out = sim.forward(batch, output_attentions=True)
        for i in live:
            s = batch_head_stats(out.attentions[i], batch, tok.cls_token_id, tok.sep_token_id, punct)
            for name in STATS:
                sums[i][name] = sums[i].get(name, 0.0) + s[name]
        counts["count"] += float(batch.attention_mask.sum())
        counts["count_previous"] = counts["count_next"] = counts["count_previous"] + float(batch.attention_mask[:, 1:].sum())
        report(progress, (bi + 1) / len(ctx.batches), f"attention statistics: batch {bi + 1}/{len(ctx.batches)}")
    L, H = ctx.adapter.num_layers, ctx.adapter.num_heads
    values = {name: np.full((L, H), np.nan) for name in STATS}
    for i in live:
        for name in STATS:
            denom = counts["count_previous"] if name == "previous" else counts["count_next"] if name == "next" \
                else counts["count"]
            values[name][i, sim.layers[i].heads] = (sums[i][name] / max(denom, 1.0)).cpu().numpy()
    return HeadStats(values, len(ctx.dataset), int(counts["count"]), str(ctx.device), torch.get_num_threads())


# ============================================================================ one sentence's maps
@dataclass
class AttentionMaps:
    tokens: list[str]
    attentions: list[np.ndarray]  # per layer (H, T, T); masked heads / dropped layers all zero
    masked_heads: list[tuple[int, int]]
    dropped_layers: list[int]


@torch.inference_mode()
def attention_maps(loaded, text: str, text_pair: str | None = None, recipe: Recipe | None = None, *,
                   max_length: int = 128, simulator=None) -> AttentionMaps:
    """Attention of one sentence (or pair) under a Recipe, for the bertviz view."""
    if not text or not text.strip():
        raise HeadroomError("Type a sentence to see its attention.")
    recipe = recipe or Recipe()
    sim = simulator or simulate(loaded.adapter, recipe)
    enc = loaded.tokenizer(text, text_pair, truncation=True, max_length=min(max_length, loaded.max_length),
                           return_tensors="pt")
    ids = enc["input_ids"].to(loaded.device)
    types = enc.get("token_type_ids")
    batch = Batch(ids, enc["attention_mask"].to(loaded.device), None if types is None else types.to(loaded.device),
                  torch.zeros(1, dtype=torch.long))
    out = sim.forward(batch, output_attentions=True)
    T = ids.shape[1]
    maps = []
    for l in range(loaded.adapter.num_layers):
        full = np.zeros((loaded.adapter.heads_in_layer(l), T, T), dtype=np.float32)  # (H, T, T)
        probs, lw = out.attentions[l], sim.layers.get(l)
        if probs is not None and lw is not None and lw.num_heads > 0:
            full[lw.heads] = probs[0].float().cpu().numpy()
        maps.append(full)
    return AttentionMaps(loaded.tokenizer.convert_ids_to_tokens(ids[0].tolist()), maps,
                         list(recipe.masked_heads), list(recipe.dropped_layers))


# ============================================================================ keep one head
@dataclass
class KeepOneHead:
    metric_name: str
    baseline: float
    only_head: np.ndarray  # (L, H): metric with only head h of layer l kept (other layers intact)
    best_head: list[int]  # per layer
    best_metric: list[float]  # per layer
    all_masked: list[float]  # per layer: metric with every head of that layer masked
    num_examples: int
    seconds: float
    device: str
    threads: int
    what: str = "Michel et al. 2019 sec. 3.2: per layer, only one head kept (each tried) / all heads masked (simulated)"

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "only_head"}
        d["only_head"] = _nested(self.only_head)
        return d


def keep_one_head(ctx: EvalContext, *, label_free: bool | None = None, progress: Progress = None,
                  cancel: threading.Event | None = None) -> KeepOneHead:
    """For each layer: every head tried as the only one kept, and all heads masked."""
    label_free = resolve_label_free(ctx, label_free)
    t0 = time.perf_counter()
    L = ctx.adapter.num_layers
    H = ctx.adapter.num_heads
    only = np.full((L, H), np.nan)
    best_head, best_metric, all_masked = [], [], []
    total, done = sum(ctx.adapter.heads_in_layer(l) + 1 for l in range(L)), 0
    for l in range(L):
        n = ctx.adapter.heads_in_layer(l)
        for keep in range(n):
            check_cancel(cancel, "keep-one-head experiment")
            recipe = Recipe(masked_heads=[(l, h) for h in range(n) if h != keep])
            only[l, keep] = score_of(ctx.evaluate(recipe, cancel=cancel), label_free)
            done += 1
            report(progress, done / total, f"keep one head: layer {l}, head {keep}")
        none = Recipe(masked_heads=[(l, h) for h in range(n)])
        all_masked.append(score_of(ctx.evaluate(none, cancel=cancel), label_free))
        done += 1
        b = int(np.nanargmax(only[l, :n]))
        best_head.append(b)
        best_metric.append(float(only[l, b]))
    name = "agreement" if label_free else ctx.baseline.metric_name
    return KeepOneHead(name, score_of(ctx.baseline, label_free), only, best_head, best_metric, all_masked,
                       len(ctx.dataset), time.perf_counter() - t0, str(ctx.device), torch.get_num_threads())


# ============================================================================ pruning curve
@dataclass
class PruneCurve:
    order: str
    method: str | None  # importance method (None for random)
    recompute: bool
    metric_name: str
    baseline: float
    fractions: list[float]  # fraction of all heads masked at each step
    num_pruned: list[int]
    metric: list[float]  # mean over seeds for "random"
    metric_std: list[float]  # 0 for deterministic orders
    runs: list[list[float]]  # one curve per seed
    max_fraction_within_1pt: float  # largest f with every step up to f within 1 point of baseline
    area_under_curve: float  # mean metric over [0, max fraction] (trapezoid)
    pruned_order: list[list[int]]  # heads in the order masked (first seed for random)
    num_examples: int
    seconds: float
    device: str
    threads: int
    what: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def fraction_steps(step: float) -> list[float]:
    if not 0 < step <= 1:
        raise HeadroomError(f"The pruning step must be a fraction between 0 and 1 (got {step}).")
    n = int(np.ceil(1 / step - 1e-9))
    return [round(min(1.0, k * step), 6) for k in range(n + 1)]


def within_one_point(fractions: list[float], metric: list[float], baseline: float, point: float = 0.01) -> float:
    """Largest fraction f such that the metric stays >= baseline - 1 point at every step up to f."""
    best = 0.0
    for f, m in zip(fractions, metric):
        if m < baseline - point - 1e-12:
            break
        best = f
    return best


def area_under_curve(fractions: list[float], metric: list[float]) -> float:
    """Trapezoid area, divided by the fraction range: the curve's mean metric."""
    width = fractions[-1] - fractions[0]
    return float(np.trapezoid(metric, fractions) / width) if width > 0 else float(metric[0])


def _pick(importance: HeadImportance, masked: set, k: int, reverse: bool) -> list[tuple[int, int]]:
    order = [lh for lh in importance.pruning_order() if lh not in masked]
    return (order[::-1] if reverse else order)[:k]


def prune_curve(ctx: EvalContext, *, order: str = "importance", step: float = 0.1, method: str = "michel",
                recompute: bool = False, seeds: int = 3, normalize_layer: bool = True,
                label_free: bool | None = None, importance: HeadImportance | None = None,
                progress: Progress = None, cancel: threading.Event | None = None) -> PruneCurve:
    """Iterative head pruning (masking) curve in one order; see the module docstring.

    `normalize_layer` (default True, as the authors' pruning code) only applies to gradient
    methods. `importance` may be passed in to reuse a score already computed on this context.
    """
    if order not in ORDERS:
        raise HeadroomError(f"Unknown pruning order '{order}'; choose from {', '.join(ORDERS)}.")
    if seeds < 1:
        raise HeadroomError("--seeds must be at least 1.")
    label_free = resolve_label_free(ctx, label_free)
    t0 = time.perf_counter()
    L = ctx.adapter.num_layers
    all_heads = [(l, h) for l in range(L) for h in range(ctx.adapter.heads_in_layer(l))]
    fractions = fraction_steps(step)
    counts = [int(round(f * len(all_heads))) for f in fractions]
    baseline = score_of(ctx.baseline, label_free)
    kwargs = dict(label_free=label_free, cancel=cancel)
    if method in ("michel", "taylor"):
        kwargs["normalize_layer"] = normalize_layer
    runs, first_order = [], []
    n_runs = seeds if order == "random" else 1
    total_steps = n_runs * (len(fractions) - 1)
    if order != "random" and importance is None:
        importance = compute_importance(ctx, method, **kwargs)
    for run in range(n_runs):
        shuffled = random_order(all_heads, seed=run)
        masked: list[tuple[int, int]] = []
        scores = [baseline]
        current = importance
        for si in range(1, len(fractions)):
            check_cancel(cancel, "pruning curve")
            need = counts[si] - len(masked)
            if order == "random":
                new = shuffled[len(masked):len(masked) + need]
            else:
                if recompute and si > 1 and masked:
                    current = compute_importance(ctx, method, Recipe(masked_heads=masked), **kwargs)
                new = _pick(current, set(masked), need, reverse=(order == "reverse"))
            masked += new
            result = ctx.evaluate(Recipe(masked_heads=masked), cancel=cancel)
            scores.append(score_of(result, label_free))
            done = run * (len(fractions) - 1) + si
            report(progress, done / total_steps, f"{order} pruning: {counts[si]}/{len(all_heads)} heads masked")
        runs.append(scores)
        if run == 0:
            first_order = [list(lh) for lh in masked]
    mean = np.mean(runs, axis=0).tolist()
    std = (np.std(runs, axis=0) if n_runs > 1 else np.zeros(len(fractions))).tolist()
    name = "agreement" if label_free else ctx.baseline.metric_name
    what = (f"{name} (simulated) after masking the given fraction of all {len(all_heads)} heads, "
            + ("in random order, mean ± std over seeds 0..%d" % (n_runs - 1) if order == "random" else
               f"{'most' if order == 'reverse' else 'least'} important first by {method}"
               + (", importance recomputed after each step" if recompute else "")))
    return PruneCurve(order, None if order == "random" else method, recompute and order != "random", name, baseline,
                      fractions, counts, mean, std, runs, within_one_point(fractions, mean, baseline),
                      area_under_curve(fractions, mean), first_order, len(ctx.dataset), time.perf_counter() - t0,
                      str(ctx.device), torch.get_num_threads(), what)


def prune_half_recipe(importance: HeadImportance, fraction: float = 0.5) -> Recipe:
    """A Recipe masking the given fraction of heads, least important first (global ranking)."""
    heads = least_important_fraction(importance, fraction)
    return Recipe(masked_heads=heads, name=f"{importance.method}: {len(heads)} least important heads pruned")
