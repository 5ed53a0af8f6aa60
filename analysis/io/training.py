"""The pieces every fine-tuning loop shares: seeding, length-grouped batches, bf16, AdamW + schedule.

Two loops use them: `analysis.io.train` (how the demo models were fine-tuned) and
`analysis.recovery.loop` (re-fine-tuning / distilling a compressed model). One place, so both
train the same way: AdamW without weight decay on biases and LayerNorm gains, linear warm-up then
linear decay, gradient clipping at 1.0, length-grouped random batches, every random choice from
one seed.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Callable

import numpy as np
import torch

from analysis.io.batching import make_batches
from analysis.io.text_dataset import TextDataset
from analysis.measure.metrics import compute_metrics
from analysis.runtime import predict

#: the same held-out examples for every run, so runs with different seeds compare
HOLDOUT_SEED = 0
#: gradient norm clipping, as BERT's fine-tuning recipe
CLIP_NORM = 1.0


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def length_grouped_batches(lengths: list[int], batch_size: int, generator: torch.Generator,
                           group: int = 64) -> list[list[int]]:
    """One epoch's batches: shuffle, sort each window of `group` batches by length, shuffle the batches.

    Each batch then holds examples of similar length, so it pads little (as HF's group_by_length);
    which examples meet in a batch, and the batch order, stay random and fixed by `generator`.
    """
    perm = torch.randperm(len(lengths), generator=generator).tolist()
    window = batch_size * group
    batches = []
    for start in range(0, len(perm), window):
        chunk = sorted(perm[start:start + window], key=lambda i: lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def use_bf16(dev: torch.device) -> bool:
    """bf16 autocast where the hardware does bf16 matmuls natively (CUDA, or CPUs with AVX512-BF16/AMX)."""
    if dev.type == "cuda":
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def adamw(params: list[torch.nn.Parameter], lr: float, weight_decay: float, dev: torch.device) -> torch.optim.AdamW:
    """AdamW with no weight decay on biases and LayerNorm gains (the 1-d tensors), as in BERT and nanoGPT."""
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, fused=dev.type == "cuda")


def warmup_linear_factor(fraction: float, warmup_ratio: float) -> float:
    """The learning-rate factor at `fraction` of training: linear warm-up, then linear decay to 0."""
    if warmup_ratio > 0 and fraction < warmup_ratio:
        return max(fraction, 1e-3) / warmup_ratio
    return max(0.0, (1.0 - fraction) / max(1e-9, 1.0 - warmup_ratio))


def warmup_linear_schedule(optimizer, total_steps: int, warmup_ratio: float,
                           fraction: Callable[[int], float] | None = None):
    """LambdaLR of `warmup_linear_factor`; `fraction(step)` says how far along training is (default step/total).

    A time budget passes its own `fraction` (the larger of steps done and minutes used), so the
    learning rate still reaches 0 when the minutes run out.
    """
    warmup_steps = int(warmup_ratio * total_steps)
    if fraction is None:
        # the demo models' schedule, step for step: (s+1)/warmup up, then (total-s)/(total-warmup) down
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(
            (s + 1) / max(1, warmup_steps), max(0.0, (total_steps - s) / max(1, total_steps - warmup_steps))))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_linear_factor(fraction(s), warmup_ratio))


def select(ds: TextDataset, positions: list[int]) -> TextDataset:
    """The examples at `positions` (in that order), keeping their source indices."""
    return replace(ds, texts=[ds.texts[i] for i in positions],
                   text_pairs=[ds.text_pairs[i] for i in positions] if ds.text_pairs is not None else None,
                   labels=[ds.labels[i] for i in positions], indices=[ds.indices[i] for i in positions])


def split_holdout(full: TextDataset, holdout: int) -> tuple[TextDataset, TextDataset | None]:
    """(what to train on, a stratified `holdout` examples of it kept out for model selection or None)."""
    from analysis.io.subsets import stratified_subset

    if not holdout:
        return full, None
    held = stratified_subset(full, holdout, HOLDOUT_SEED)
    held_set = set(held.indices)
    return select(full, [i for i, j in enumerate(full.indices) if j not in held_set]), held


def evaluate(model, ds: TextDataset, tokenizer, max_length: int, dev: torch.device, batch_size: int = 256) -> dict:
    """Metrics of the model on `ds`, in fp32, with length-bucketed batches."""
    model.eval()
    batches = make_batches(ds, tokenizer, max_length=max_length, batch_size=batch_size)
    preds = predict(model, batches, len(ds), device=dev)
    return compute_metrics(ds.labels, preds, ds.metric, len(ds.label_names))
