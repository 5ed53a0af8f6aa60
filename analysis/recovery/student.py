"""The student of a Recipe: the model a recovery trains, and the straight-through fake-quantiser.

- Heads and layers: the student is `materialize(teacher, recipe)` without its bits, a real,
  smaller copy (heads sliced out of Q/K/V/O, layers removed) whose weights train freely.
- Bits: with `qat`, every forward fake-quantises the six matrices of each kept layer (and the
  word embeddings) under the recipe's `QuantScheme`, and the gradient passes through the rounding
  unchanged — the straight-through estimator (Bengio et al. 2013) as Q8BERT trains (Zafrir et al.
  2019). The float weights are the latent ones AdamW updates; `export()` rounds them once more and
  that is the model that ships. Activations, when the recipe quantises them, get the same
  treatment inside the forward (dynamic per-tensor ranges, as `simulate`). Without `qat`, the
  student trains in float and `export()` applies the bits once, after training.

Ranges are taken from the student's (sliced) matrices, both during training and at export, so
the quantised weights trained are exactly the ones saved. A per-tensor range can therefore differ
slightly from the one-shot `materialize`, which quantises the full matrix before slicing heads.

The teacher is never touched: `materialize` deep-copies it, and the loop reads the teacher only
through `simulate`'s read-only forward under `torch.no_grad()`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.func import functional_call

from analysis.core.adapters import EMBEDDING_ROLE, ROLES, Adapter, _get
from analysis.core.materialize import materialize
from analysis.core.quantize import FULL_BITS, QuantScheme, fake_quantize, fake_quantize_activations
from analysis.core.recipe import Recipe
from analysis.errors import HeadroomError
from analysis.recovery.pruning import Pruner, fixed_masks, slots


class _StraightThrough(torch.autograd.Function):
    """Forward: fake-quantise. Backward: the incoming gradient, unchanged (d Q(w) / d w := 1)."""

    @staticmethod
    def forward(ctx, weight, scheme, role, head_size):
        return fake_quantize(weight, scheme, role, head_size)

    @staticmethod
    def backward(ctx, grad):
        return grad, None, None, None


def ste_fake_quantize(weight: torch.Tensor, scheme: QuantScheme, role: str, head_size: int) -> torch.Tensor:
    """`fake_quantize(weight, ...)` in the forward, the identity in the backward (straight-through)."""
    if scheme.is_full_precision:
        return weight
    return _StraightThrough.apply(weight, scheme, role, head_size)


class _StraightThroughActivations(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, bits):
        return fake_quantize_activations(x, bits)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def structure_recipe(recipe: Recipe) -> Recipe:
    """The recipe's heads and layers only: what `materialize` builds for the student to train."""
    return recipe.replace(weight_bits=FULL_BITS, embedding_bits=FULL_BITS, activation_bits=FULL_BITS)


def bits_recipe(recipe: Recipe, kept_layers: list[int], num_layers: int) -> Recipe:
    """The recipe's bits re-indexed to the student's layers (layer j of the student = kept_layers[j])."""
    bits = recipe.layer_bits(num_layers)
    return Recipe(weight_bits=[bits[i] for i in kept_layers], embedding_bits=recipe.embedding_bits,
                  granularity=recipe.granularity, num_groups=recipe.num_groups, symmetric=recipe.symmetric)


@dataclass
class Student:
    """The trainable model of a Recipe, and what each of its layers was in the teacher."""

    model: nn.Module  # a HF sequence classifier (latent fp32 weights)
    recipe: Recipe  # the recipe, in the teacher's layer numbers
    kept_layers: list[int]  # student layer j was teacher layer kept_layers[j]
    kept_heads: list[list[int]]  # teacher head indices each student layer kept, in order
    teacher_layers: int  # layers of the teacher (the recipe's numbering)
    qat: bool = False
    #: parameter name -> (scheme, role) of each matrix fake-quantised in the forward (QAT only)
    quantized: dict[str, tuple[QuantScheme, str]] = field(default_factory=dict)
    #: the masks of the forward: the recipe's zeros kept, and the pruning schedule (pruning.py)
    pruner: Pruner | None = None
    _in_forward: bool = False

    @property
    def adapter(self) -> Adapter:
        return Adapter(self.model)

    def forward(self, batch, *, output_hidden_states: bool = False, output_attentions: bool = False):
        """The HF forward (train or eval mode as the model is), bits applied straight-through under QAT."""
        kwargs = dict(batch.model_inputs(), output_hidden_states=output_hidden_states,
                      output_attentions=output_attentions)
        pruning = self.pruner is not None and self.pruner.active
        if not self.quantized and not pruning:
            return self.model(**kwargs)
        hs = self.adapter.head_size
        params = dict(self.model.named_parameters())
        swapped = self.pruner.swapped(params) if pruning else {}  # W * mask: zeros first, then the bits
        swapped.update({name: ste_fake_quantize(swapped.get(name, params[name]), scheme, role, hs)
                        for name, (scheme, role) in self.quantized.items()})
        self._in_forward = True
        try:
            return functional_call(self.model, swapped, args=(), kwargs=kwargs, strict=False)
        finally:
            self._in_forward = False

    __call__ = forward

    @torch.no_grad()
    def export(self) -> nn.Module:
        """The model that ships: a copy with the recipe's bits applied to the weights, eval mode.

        Its config records the recipe in the teacher's numbering (`headroom_recipe`), as
        `materialize` does, so a card and a reloaded model say what was taken out.
        """
        bits = bits_recipe(self.recipe, self.kept_layers, self.teacher_layers)
        with self.pruner.applied() if self.pruner is not None else contextlib.nullcontext():  # masked weights zeroed in the copy
            out = materialize(self.model, bits)
        out.config.headroom_recipe = self.recipe.to_dict()  # materialize wrote the student-numbered one
        return out.eval()


def build_student(teacher: nn.Module, recipe: Recipe, *, qat: bool = False, config=None) -> Student:
    """The student of `recipe`: the materialized heads/layers, trainable, with QAT when asked.

    The matrices the recipe sparsified keep their zeros (a fixed mask in the forward and at export);
    `config` (a RecoveryConfig) with a `prune_method` adds gradual pruning of its `prune_roles`.
    """
    adapter = Adapter(teacher)
    adapter.validate(recipe)
    L = adapter.num_layers
    model = materialize(teacher, structure_recipe(recipe))  # deep copy: the teacher is not modified
    model.config.headroom_recipe = recipe.to_dict()
    # eager attention: the attention-map loss needs the probabilities, which SDPA does not return
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    for p in model.parameters():
        p.requires_grad_(True)
    kept = [i for i in range(L) if i not in set(recipe.dropped_layers)]
    kept_heads = [recipe.kept_heads(i, adapter.heads_in_layer(i)) for i in kept]
    student = Student(model, recipe, kept, kept_heads, L, qat=qat)
    method = getattr(config, "prune_method", "none")
    if method != "none" and recipe.has_sparsity():
        raise HeadroomError("The recipe already has one-shot sparsity; prune either with the recipe's sparsity or "
                            "during recovery (prune_method), not both.")
    fixed = fixed_masks(model, recipe, kept, L)
    if fixed or method != "none":
        targets = slots(model, config.prune_roles) if method != "none" else []
        student.pruner = Pruner(model, fixed=fixed, method=method, targets=targets,
                                final=getattr(config, "prune_sparsity", 0.0), start=getattr(config, "prune_warmup", 0.0),
                                end=getattr(config, "prune_end", 1.0), every=getattr(config, "prune_every", 1))
    if qat:
        _install_qat(student)
    return student


def _install_qat(student: Student) -> None:
    """Name the matrices the forward fake-quantises; hook the activations when the recipe quantises them."""
    model, recipe = student.model, student.recipe
    adapter = Adapter(model)
    if adapter.spec.fused_qkv:  # one parameter would need three roles' quantisation ranges
        raise HeadroomError("Quantisation-aware recovery is not supported for ModernBERT (its fused W_qkv holds "
                            "the query, key and value matrices in one parameter); recover without --qat.")
    names = {id(p): n for n, p in model.named_parameters()}
    bits = bits_recipe(recipe, student.kept_layers, student.teacher_layers)
    for j in range(adapter.num_layers):
        scheme = QuantScheme.for_layer(bits, j, adapter.num_layers)
        if scheme.is_full_precision:
            continue
        module = adapter.layer_module(j)
        for role in ROLES:
            weight = _get(module, getattr(adapter.spec, role)).weight
            student.quantized[names[id(weight)]] = (scheme, role)
    emb = QuantScheme.for_embeddings(recipe)
    if not emb.is_full_precision:
        student.quantized[names[id(adapter.word_embeddings.weight)]] = (emb, EMBEDDING_ROLE)
    if recipe.activation_bits < FULL_BITS:
        act_bits = recipe.activation_bits

        def quantize_input(module, args):
            if not student._in_forward:  # exported copies carry the hook; it is a no-op there
                return None
            return (_StraightThroughActivations.apply(args[0], act_bits),) + tuple(args[1:])

        for j in range(adapter.num_layers):
            module = adapter.layer_module(j)
            for role in ROLES:
                _get(module, getattr(adapter.spec, role)).register_forward_pre_hook(quantize_input)
