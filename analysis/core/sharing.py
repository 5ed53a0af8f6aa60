"""Cross-layer sharing (ALBERT, Lan et al. 2020): chosen encoder layers run one set of weights.

`Recipe.shared_layers = [[0, 1], [2, 3]]` groups layers; `share_mode` says which weights the
group runs: "first" — the group's first layer's own weights, "mean" — the element-wise mean of
the group's weights. What is shared is everything an encoder layer owns: W_Q/W_K/W_V, W_O and
the two FFN matrices (with their biases) and both LayerNorms. Embeddings and the classifier are
untouched (DeBERTa's relative embeddings are already one table for all layers). Per-layer
behaviour that is not a weight stays per layer (ModernBERT's local/global attention).

Order: sharing applies first; every other field of the recipe (heads, FFN neurons, sparsity,
bits, ranks) then applies to the one shared layer, so within a group those must be the same —
`sharing_problem` refuses a recipe that treats two layers of a group differently (a group
cannot hold a dropped layer either). That is what lets `materialize` hold a group in one set
of modules: the layers after the first point to the first's Linears and LayerNorms (tied, one
storage), so `model.parameters()` lists them once, an optimizer trains one tensor whose gradient
is the sum over the group's layers, and `deduplicated_state_dict` saves each tensor once;
`materialize.load_materialized` re-ties them from the config's `headroom_shared_layers`.

`simulate` reads the shared weights (`shared_parts`): the first layer's modules themselves, or
one mean tensor per weight, computed once per group (so a global sparsity threshold sees a
shared matrix once, as it sees ALBERT's). The loaded model is never written.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from analysis.core.adapters import ROLES, Adapter, LayerParts, _get

SHARE_MODES = ("first", "mean")
#: config.json key of the tied groups ([[layer, ...], ...], layers as saved), read by `load_materialized`
SHARED_KEY = "headroom_shared_layers"


def share_groups(recipe) -> list[list[int]]:
    """The recipe's groups of two or more layers (a group of one layer shares nothing)."""
    return [list(g) for g in recipe.shared_layers if len(g) > 1]


def group_treatment(recipe, layer: int, num_layers: int) -> dict:
    """What the recipe's other fields do to `layer`: a group's layers must all get the same."""
    return {
        "heads": tuple(h for l, h in recipe.masked_heads if l == layer),
        "neurons": tuple(recipe.masked_neurons_in(layer)),
        "bits": recipe.layer_bits(num_layers)[layer] if layer < len(recipe.layer_bits(num_layers)) else None,
        "sparsity": recipe.layer_sparsity(num_layers)[layer] if layer < len(recipe.layer_sparsity(num_layers)) else None,
        "ranks": tuple((ro, r) for l, ro, r in recipe.ranks if l == layer),
    }


_TREATMENT_WORDS = {"heads": "mask different heads", "neurons": "mask different FFN neurons",
                    "bits": "use different weight bits", "sparsity": "use different sparsity",
                    "ranks": "cut different low ranks"}


def sharing_problem(recipe, group: list[int], num_layers: int, why: str = "share weights") -> str | None:
    """One sentence when the recipe treats two layers of `group` differently; None when alike."""
    first = group_treatment(recipe, group[0], num_layers)
    for layer in group[1:]:
        other = group_treatment(recipe, layer, num_layers)
        for key, words in _TREATMENT_WORDS.items():
            if first[key] != other[key]:
                return (f"Layers {group[0]} and {layer} {why}, so the recipe must treat them alike, but they {words}; "
                        "sharing applies first and every other field to the one shared layer.")
    return None


def tied_groups(adapter: Adapter) -> list[list[int]]:
    """Groups of layers of the loaded model that already run the same modules (a materialized shared model)."""
    if adapter.shares_layers():  # ALBERT: one layer module for all, handled as ALBERT
        return []
    by_module: dict[tuple, list[int]] = {}
    for i in range(adapter.num_layers):
        module = adapter.layer_module(i)
        key = (id(_get(module, adapter.spec.attention_output)), id(_get(module, adapter.spec.ffn_in)))
        by_module.setdefault(key, []).append(i)
    return [g for g in by_module.values() if len(g) > 1]


def all_groups(adapter: Adapter, recipe) -> list[list[int]]:
    """The recipe's groups and the model's own ties (they never overlap: `Adapter.validate`)."""
    return sorted(share_groups(recipe) + tied_groups(adapter))


def counted_elsewhere(adapter: Adapter, recipe) -> set[int]:
    """Kept layers whose weights are another kept layer's (counted once, on the group's first kept layer)."""
    dropped = set(recipe.dropped_layers)
    out: set[int] = set()
    for group in all_groups(adapter, recipe):
        kept = [i for i in group if i not in dropped]
        out.update(kept[1:])
    return out


# ------------------------------------------------------------------------------ simulate
class _Weights(NamedTuple):
    """A Linear's (weight, bias) as `prepare_layer` reads them (the group's mean)."""

    weight: torch.Tensor  # (out, in)
    bias: torch.Tensor | None  # (out,)


class _Norm(NamedTuple):
    weight: torch.Tensor | None
    bias: torch.Tensor | None
    eps: float


def _mean(tensors: list) -> torch.Tensor | None:
    if tensors[0] is None:
        return None
    return torch.stack(tensors).mean(dim=0)


def _mean_norm(modules: list[nn.Module]):
    if isinstance(modules[0], nn.Identity):  # ModernBERT's layer 0 (never grouped with another: validate)
        return modules[0]
    return _Norm(_mean([m.weight for m in modules]), _mean([m.bias for m in modules]), modules[0].eps)


@torch.no_grad()
def shared_parts(adapter: Adapter, recipe) -> dict[int, LayerParts]:
    """The weights each layer of a group reads: its first layer's modules, or one mean per weight of the group."""
    out: dict[int, LayerParts] = {}
    for group in share_groups(recipe):
        parts = [adapter.layer(i) for i in group]
        if recipe.share_mode == "first":
            shared = parts[0]
        else:
            shared = LayerParts(
                **{role: _Weights(_mean([getattr(p, role).weight for p in parts]),
                                  _mean([getattr(p, role).bias for p in parts])) for role in ROLES},
                attention_layernorm=_mean_norm([p.attention_layernorm for p in parts]),
                ffn_layernorm=_mean_norm([p.ffn_layernorm for p in parts]),
            )
        out.update({i: shared for i in group})
    return out


# ------------------------------------------------------------------------------ materialize
def _paths(adapter: Adapter) -> list[str]:
    """The submodules of a layer that hold its weights (ModernBERT's fused W_qkv once)."""
    spec = adapter.spec
    roles = [spec.fused_qkv] if spec.fused_qkv else [spec.query, spec.key, spec.value]
    return list(dict.fromkeys(roles + [spec.attention_output, spec.ffn_in, spec.ffn_out,
                                       spec.attention_layernorm, spec.ffn_layernorm]))


def _set(module: nn.Module, path: str, value: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    setattr(_get(module, parent_path) if parent_path else module, name, value)


@torch.no_grad()
def write_mean(adapter: Adapter, group: list[int]) -> None:
    """Write the element-wise mean of the group's weights into its first layer (a materialized copy only)."""
    modules = [adapter.layer_module(i) for i in group]
    for path in _paths(adapter):
        first = _get(modules[0], path)
        for name, p in first.named_parameters():
            p.copy_(torch.stack([_get(m, path).get_parameter(name) for m in modules]).mean(dim=0))


def tie_group(adapter: Adapter, group: list[int]) -> None:
    """Make the group's later layers run its first layer's Linears and LayerNorms (the same objects)."""
    first = adapter.layer_module(group[0])
    for i in group[1:]:
        module = adapter.layer_module(i)
        for path in _paths(adapter):
            _set(module, path, _get(first, path))
        if adapter.family == "deberta-v2":  # HF's DeBERTa reshapes by its stored head count
            mine, theirs = module.attention.self, first.attention.self
            mine.num_attention_heads, mine.all_head_size = theirs.num_attention_heads, theirs.all_head_size


def deduplicated_state_dict(model: nn.Module) -> dict:
    """The state dict with each tied tensor once (under its first name): safetensors refuses shared storage."""
    seen: set[tuple] = set()
    out = {}
    for name, t in model.state_dict().items():
        key = (t.data_ptr(), tuple(t.shape), t.stride()) if t.numel() else None
        if key is not None and key in seen:
            continue
        if key is not None:
            seen.add(key)
        out[name] = t
    return out


def save_pretrained(model: nn.Module, path) -> None:
    """`model.save_pretrained` in safetensors, tied tensors once (transformers refuses undeclared sharing)."""
    if tied_groups(Adapter(model)):
        model.save_pretrained(path, safe_serialization=True, state_dict=deduplicated_state_dict(model))
    else:
        model.save_pretrained(path, safe_serialization=True)
