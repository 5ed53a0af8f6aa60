"""The recovery losses, each where its paper defines it, and their weighted sum.

Shapes: logits (B, C); hidden states (B, T, D), one per layer boundary (index 0 = the embeddings'
output, index i = the output of layer i - 1, as HF's `hidden_states`); attention probabilities
(B, nh, T, T) per layer; mask (B, T) with 1 on real tokens.

The teacher's tensors come from `simulate`'s read-only forward of the unmodified model (so the
teacher never changes); the student's from its HF forward. A `LayerMap` says which teacher
layer each student layer imitates.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from analysis.errors import HeadroomError


def cross_entropy(student_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Task cross-entropy on the labels: plain (re-)fine-tuning (Devlin et al. 2019; Sajjad et al. 2023)."""
    return F.cross_entropy(student_logits.float(), labels)


def soft_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(t / T) || softmax(s / T)) * T^2, averaged over the batch.

    Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network": the T^2 keeps the
    gradient's scale independent of T. DistilBERT's distillation loss (Sanh et al. 2019) is this
    term (their L_ce over the teacher's soft targets); TinyBERT's prediction-layer loss is it at T = 1
    up to a constant (the teacher's entropy).
    """
    T = temperature
    log_p_student = F.log_softmax(student_logits.float() / T, dim=-1)  # (B, C)
    p_teacher = F.softmax(teacher_logits.float() / T, dim=-1)  # (B, C)
    return F.kl_div(log_p_student, p_teacher, reduction="batchmean") * T * T


def hidden_state_mse(student_hidden: list[torch.Tensor], teacher_hidden: list[torch.Tensor],
                     pairs: list[tuple[int, int]], mask: torch.Tensor) -> torch.Tensor:
    """Mean over `pairs` of MSE(H_student[s], H_teacher[t]) on real tokens (TinyBERT, Jiao et al. 2020, eq. 7-8).

    `pairs` are (student index, teacher index) into the hidden-state lists (0 = embeddings). The
    widths are equal (Headroom's students keep the hidden size), so TinyBERT's projection W_h is the
    identity here. Padding positions are left out of the mean.
    """
    m = mask.unsqueeze(-1).float()  # (B, T, 1)
    count = m.sum() * student_hidden[0].shape[-1]
    losses = [((student_hidden[s].float() - teacher_hidden[t].float()) ** 2 * m).sum() / count for s, t in pairs]
    return torch.stack(losses).mean()


def attention_mse(student_attentions: list[torch.Tensor], teacher_attentions: list[torch.Tensor | None],
                  pairs: list[tuple[int, int]], kept_heads: list[list[int]], mask: torch.Tensor) -> torch.Tensor:
    """Mean over layer pairs of MSE between attention maps, over the student's kept heads only (TinyBERT, eq. 6).

    Student layer s kept the teacher's heads `kept_heads[s]` (in that order), so it is compared with
    exactly those heads of teacher layer t. TinyBERT compares the unnormalised scores; this compares
    the softmax probabilities (what HF returns, and bounded in [0, 1]), on real query and key
    positions only. A layer that kept no head is skipped.
    """
    pair_mask = (mask[:, None, :, None] * mask[:, None, None, :]).float()  # (B, 1, T, T)
    losses = []
    for s, t in pairs:
        heads = kept_heads[s]
        if not heads:
            continue
        a_t = teacher_attentions[t].index_select(1, torch.tensor(heads, device=mask.device))  # (B, nh_s, T, T)
        a_s = student_attentions[s]  # (B, nh_s, T, T)
        diff = (a_s.float() - a_t.float()) ** 2 * pair_mask
        losses.append(diff.sum() / (pair_mask.sum() * len(heads)))
    if not losses:
        return mask.new_zeros((), dtype=torch.float32)
    return torch.stack(losses).mean()


def patient_cls_loss(student_hidden: list[torch.Tensor], teacher_hidden: list[torch.Tensor],
                     pairs: list[tuple[int, int]]) -> torch.Tensor:
    """PKD's loss: squared distance of the L2-normalised [CLS] vectors of mapped layers (Sun et al. 2019, eq. 4).

    "Patient Knowledge Distillation for BERT Model Compression": the student learns from the
    teacher's intermediate layers, not only its output; normalising the [CLS] vector (position 0)
    makes the loss scale-free. Summed over the hidden size, averaged over batch and layer pairs.
    """
    losses = []
    for s, t in pairs:
        h_s = F.normalize(student_hidden[s][:, 0].float(), dim=-1)  # (B, D)
        h_t = F.normalize(teacher_hidden[t][:, 0].float(), dim=-1)  # (B, D)
        losses.append(((h_s - h_t) ** 2).sum(-1).mean())
    return torch.stack(losses).mean()


@dataclass(frozen=True)
class LayerMap:
    """Which teacher layer each student layer imitates (layer indices, 0-based)."""

    teacher_layer: tuple[int, ...]  # teacher_layer[j] for student layer j

    @classmethod
    def build(cls, kind: str, kept_layers: list[int], teacher_layers: int) -> "LayerMap":
        """'original': the position each kept layer had; 'uniform': TinyBERT's g(m) = m * N / M."""
        if kind == "original":
            return cls(tuple(kept_layers))
        if kind == "uniform":
            M, N = len(kept_layers), teacher_layers
            return cls(tuple((j + 1) * N // M - 1 for j in range(M)))
        raise HeadroomError(f"Unknown layer map '{kind}'; choose original or uniform.")

    def hidden_pairs(self) -> list[tuple[int, int]]:
        """(student, teacher) indices into hidden-state lists: embeddings, then each layer's output."""
        return [(0, 0)] + [(j + 1, t + 1) for j, t in enumerate(self.teacher_layer)]

    def attention_pairs(self) -> list[tuple[int, int]]:
        """(student layer, teacher layer) pairs."""
        return list(enumerate(self.teacher_layer))

    def intermediate_pairs(self) -> list[tuple[int, int]]:
        """PKD's pairs: every student layer's output but the last (its output is the logits' business)."""
        pairs = [(j + 1, t + 1) for j, t in enumerate(self.teacher_layer)][:-1]
        return pairs or [(len(self.teacher_layer), self.teacher_layer[-1] + 1)]


def combined_loss(config, student_out, teacher_out, labels: torch.Tensor, mask: torch.Tensor,
                  layer_map: LayerMap, kept_heads: list[list[int]]) -> tuple[torch.Tensor, dict[str, float]]:
    """The weighted sum of the objectives `config` (a RecoveryConfig) switches on, and each part's value.

    `student_out` is a HF output (logits, hidden_states, attentions); `teacher_out` a
    `simulate.ForwardOutput` of the unmodified model (None when only the CE weight is set).
    """
    parts: dict[str, torch.Tensor] = {}
    if config.ce_weight:
        parts["ce"] = config.ce_weight * cross_entropy(student_out.logits, labels)
    if config.kd_weight:
        parts["kd"] = config.kd_weight * soft_target_loss(student_out.logits, teacher_out.logits, config.temperature)
    if config.hidden_weight:
        parts["hidden"] = config.hidden_weight * hidden_state_mse(
            student_out.hidden_states, teacher_out.hidden_states, layer_map.hidden_pairs(), mask)
    if config.attention_weight:
        parts["attention"] = config.attention_weight * attention_mse(
            student_out.attentions, teacher_out.attentions, layer_map.attention_pairs(), kept_heads, mask)
    if config.pkd_weight:
        parts["pkd"] = config.pkd_weight * patient_cls_loss(
            student_out.hidden_states, teacher_out.hidden_states, layer_map.intermediate_pairs())
    total = torch.stack(list(parts.values())).sum()
    return total, {k: float(v.detach()) for k, v in parts.items()}
