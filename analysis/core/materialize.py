"""Materialize a Recipe: build the real, smaller model.

Where `simulate` only reads the loaded model, `materialize` makes a new one:
- masked heads are sliced out of W_Q/W_K/W_V (rows) and W_O (columns) — layers may keep
  different numbers of heads;
- dropped layers are removed from the layer list and the config;
- weights with fewer than 32 bits hold their fake-quantised values (still stored as floats: the
  size on disk does not shrink — `quantize_real` makes int8 kernels).
Its size is bytes on disk and its latency is measured, not estimated.

Saving and loading. transformers 5 removed `prune_heads` and the `pruned_heads` config field, and
its BERT-family configs can only express the same number of heads in every layer with head size
hidden/heads. So:
- a recipe that only drops layers (or quantises) saves a model that plain
  `AutoModelForSequenceClassification.from_pretrained(dir)` loads, with no Headroom code;
- masked FFN neurons are sliced out of W_in (rows; both halves of a gated W_i) and W_out
  (columns); equal widths in every layer go into the config's own `intermediate_size`;
- low-rank matrices become two Linears (`lowrank.LowRankLinear`) and factorised embeddings a
  V x E table plus an E x H projection (`lowrank.FactorizedEmbedding`), recorded in
  `headroom_ranks` / `headroom_embedding_size`;
- shared layers (`Recipe.shared_layers`, `sharing.py`) hold their group's first layer's modules (tied,
  one storage), saved once with `headroom_shared_layers` in config.json, re-tied on load;
- a recipe that prunes heads (or leaves layers with different FFN widths) saves the real smaller
  tensors plus `headroom_heads_per_layer` (`headroom_intermediate_per_layer`) in config.json; `load_materialized(dir)` (or the 10-line snippet in the README) rebuilds it. The
  HF forward itself runs the smaller tensors unchanged, because it infers the number of heads from
  the projection's width.
"""

from __future__ import annotations

import copy
import json
import os

import torch
from safetensors.torch import load_file
from torch import nn

from analysis.core.adapters import EMBEDDING_ROLE, ROLES, Adapter, _get
from analysis.core.quantize import QuantScheme, fake_quantize
from analysis.core.lowrank import FactorizedEmbedding, LowRankLinear
from analysis.core.recipe import Recipe
from analysis.core.sharing import SHARED_KEY, save_pretrained, share_groups, tie_group, tied_groups, write_mean
from analysis.core.sparsity import magnitude_masks
from analysis.errors import HeadroomError

HEADS_KEY = "headroom_heads_per_layer"
#: config.json key of the FFN intermediate units per layer, written when layers keep different numbers
INTERMEDIATE_KEY = "headroom_intermediate_per_layer"
#: config.json keys of the low-rank matrices ([[layer, role, rank]], layers as saved) and of the factorised embedding size
RANKS_KEY = "headroom_ranks"
EMBEDDING_SIZE_KEY = "headroom_embedding_size"
#: config.json keys only `load_materialized` understands (plain transformers would load something else)
HEADROOM_KEYS = (HEADS_KEY, INTERMEDIATE_KEY, RANKS_KEY, EMBEDDING_SIZE_KEY, SHARED_KEY)
#: the config attribute of the FFN width per family (DistilBERT calls it hidden_dim)
INTERMEDIATE_ATTR = {"distilbert": "hidden_dim"}


def intermediate_attr(adapter: Adapter) -> str:
    return INTERMEDIATE_ATTR.get(adapter.family, "intermediate_size")


def _set(module: nn.Module, path: str, value: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = _get(module, parent_path) if parent_path else module
    setattr(parent, name, value)


def _linear_like(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    out_features, in_features = weight.shape
    lin = nn.Linear(in_features, out_features, bias=bias is not None, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        lin.weight.copy_(weight)
        if bias is not None:
            lin.bias.copy_(bias)
    return lin


QKV = ("query", "key", "value")


def _set_head_count(adapter: Adapter, layer_module: nn.Module, n: int) -> None:
    """HF's DeBERTa attention reshapes by its stored head count; the other families infer it from the width."""
    if adapter.family == "deberta-v2":
        attention = layer_module.attention.self
        attention.num_attention_heads, attention.all_head_size = n, n * adapter.head_size


def _install_qkv(adapter: Adapter, layer_module: nn.Module, sliced: dict) -> None:
    """Put new W_Q/W_K/W_V ((weight, bias) per role) into the layer: three Linears, or one fused (Q; K; V)."""
    spec = adapter.spec
    if spec.fused_qkv:
        w = torch.cat([sliced[r][0] for r in QKV])  # (3 * nh*hs, D)
        b = None if sliced["query"][1] is None else torch.cat([sliced[r][1] for r in QKV])
        _set(layer_module, spec.fused_qkv, _linear_like(w, b))
    else:
        for role in QKV:
            _set(layer_module, getattr(spec, role), _linear_like(*sliced[role]))


@torch.no_grad()
def _prune_layer_heads(adapter: Adapter, index: int, heads: list[int]) -> int:
    """Slice layer `index`'s Q/K/V rows and O columns down to `heads`; return heads kept (>= 1).

    DeBERTa's relative-position projections are W_K and W_Q themselves (share_att_key), so they
    are sliced with them.
    """
    module, parts, hs = adapter.layer_module(index), adapter.layer(index), adapter.head_size
    device = parts.query.weight.device
    keep = heads
    zero_values = False
    if not keep:
        # HF infers the head count from the projection width and cannot run 0 heads: keep one
        # head whose value projection is zero, so its context (and contribution) is exactly 0.
        keep, zero_values = [0], True
    rows = torch.cat([torch.arange(h * hs, (h + 1) * hs, device=device) for h in keep])
    sliced = {}
    for role in QKV:
        lin = getattr(parts, role)
        w = lin.weight.index_select(0, rows)
        b = None if lin.bias is None else lin.bias.index_select(0, rows)
        if zero_values and role == "value":
            w, b = torch.zeros_like(w), (None if b is None else torch.zeros_like(b))
        sliced[role] = (w, b)
    o = parts.attention_output
    _install_qkv(adapter, module, sliced)
    _set(module, adapter.spec.attention_output, _linear_like(o.weight.index_select(1, rows), o.bias))
    _set_head_count(adapter, module, len(keep))
    return len(keep)


@torch.no_grad()
def _prune_layer_neurons(adapter: Adapter, index: int, units: list[int]) -> int:
    """Slice layer `index`'s FFN down to the intermediate `units`: rows of W_in (both halves of a
    gated W_i), columns of W_out. Returns the units kept (>= 1)."""
    module, parts = adapter.layer_module(index), adapter.layer(index)
    device = parts.ffn_out.weight.device
    zero_out = not units
    if zero_out:  # a Linear of width 0 is not worth the risk: keep one unit whose W_out column is 0
        units = [0]
    keep = torch.as_tensor(units, dtype=torch.long, device=device)
    rows = adapter.ffn_in_rows(index, keep)
    w_in, w_out = parts.ffn_in, parts.ffn_out
    new_in = _linear_like(w_in.weight.index_select(0, rows), None if w_in.bias is None else w_in.bias.index_select(0, rows))
    out_weight = w_out.weight.index_select(1, keep)
    new_out = _linear_like(torch.zeros_like(out_weight) if zero_out else out_weight, w_out.bias)
    _set(module, adapter.spec.ffn_in, new_in)
    _set(module, adapter.spec.ffn_out, new_out)
    return len(units)


def _set_intermediate_sizes(new, adapter: Adapter, sizes: list[int]) -> None:
    """Equal FFN widths go into the config itself (plain transformers loads them); uneven ones into
    `INTERMEDIATE_KEY`, which `load_materialized` reads."""
    config, attr = new.config, intermediate_attr(adapter)
    if len(set(sizes)) == 1:
        setattr(config, attr, sizes[0])
        if hasattr(config, INTERMEDIATE_KEY):
            delattr(config, INTERMEDIATE_KEY)
    else:
        setattr(config, INTERMEDIATE_KEY, sizes)


@torch.no_grad()
def _factorise_layer(adapter: Adapter, index: int, ranks: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Replace layer `index`'s `role` Linears by their truncated SVD (two Linears); return (role, rank) kept."""
    module, done = adapter.layer_module(index), []
    for role, rank in ranks:
        path = getattr(adapter.spec, role)
        low = LowRankLinear.from_linear(_get(module, path), rank)
        _set(module, path, low)
        done.append((role, low.rank))
    return done


def _check_ranks(adapter: Adapter, recipe: Recipe) -> None:
    if adapter.spec.fused_qkv and any(role in QKV for _, role, _ in recipe.ranks):
        raise HeadroomError("ModernBERT's query, key and value are one fused W_qkv matrix, so a low-rank query/key/value "
                            "cannot be materialized as two Linears; simulate it, or cut attention_output or the FFN.")
    if recipe.embedding_size and recipe.embedding_bits != 32:
        raise HeadroomError("Factorised embeddings are materialized in fp32: drop embedding_bits (or the factorisation) "
                            "to materialize, or simulate the combination.")


@torch.no_grad()
def _sparsify_layer(adapter: Adapter, index: int, zeroed: dict) -> None:
    """Write the recipe's magnitude zeros into layer `index`'s matrices (ModernBERT's Q/K/V: fused row blocks)."""
    parts = adapter.layer(index)
    for role in ROLES:
        mask = zeroed.get((index, role))
        if mask is not None:
            _refuse_factorised(getattr(parts, role), f"layer {index}'s {role}")
            getattr(parts, role).weight.masked_fill_(mask, 0.0)


def _refuse_factorised(module, what: str) -> None:
    """A low-rank matrix's `weight` is a product: writing bits or zeros into it would be lost, so say so."""
    if isinstance(module, (LowRankLinear, FactorizedEmbedding)):
        raise HeadroomError(f"{what} is already factorised (low rank); bits and sparsity apply to whole matrices, "
                            "so apply them to the model before its low-rank recipe.")


@torch.no_grad()
def _quantize_layer(adapter: Adapter, index: int, scheme: QuantScheme) -> None:
    """Fake-quantise layer `index`'s six matrices in place (ModernBERT's Q/K/V: row blocks of the fused W_qkv)."""
    if scheme.is_full_precision:
        return
    parts = adapter.layer(index)
    for role in ROLES:
        _refuse_factorised(getattr(parts, role), f"layer {index}'s {role}")
        weight = getattr(parts, role).weight  # a view into the fused matrix where Q/K/V are fused
        weight.copy_(fake_quantize(weight, scheme, role, adapter.head_size))


@torch.no_grad()
def materialize(model: nn.Module, recipe: Recipe) -> nn.Module:
    """Return a new model with the recipe applied for real. `model` is not modified."""
    Adapter(model).validate(recipe)
    new = copy.deepcopy(model).eval()
    adapter = Adapter(new)
    L, H = adapter.num_layers, adapter.num_heads
    kept_layers = [i for i in range(L) if i not in set(recipe.dropped_layers)]

    _check_ranks(adapter, recipe)
    if adapter.shares_layers():
        return _materialize_albert(new, adapter, recipe, kept_layers)
    if adapter.family == "modernbert" and 0 in recipe.dropped_layers:
        raise HeadroomError(
            "ModernBERT's layer 0 has no attention LayerNorm (the next layer has one), so a model without it "
            "cannot be saved in a form transformers reloads correctly; keep layer 0, or simulate the recipe."
        )

    # Sharing first: the group's first layer takes the group's weights (its own, or the mean) and
    # the others run its modules. Every later step then works on each distinct layer once.
    for group in share_groups(recipe):
        if recipe.share_mode == "mean":
            write_mean(adapter, group)
        tie_group(adapter, group)
    groups = [[i for i in g if i in set(kept_layers)] for g in tied_groups(adapter)]  # the recipe's + the model's own
    first_of = {i: g[0] for g in groups if g for i in g}
    owners = [i for i in kept_layers if first_of.get(i, i) == i]

    # Zero the sparse weights and quantise first (so ranges match simulation, which quantises the
    # full matrix), then slice heads and FFN neurons out, then drop layers.
    zeroed = magnitude_masks(adapter, recipe.replace(shared_layers=[]))  # of the shared weights, as simulate computes them
    heads, units = {}, {}
    for i in owners:
        _sparsify_layer(adapter, i, zeroed)
        _quantize_layer(adapter, i, QuantScheme.for_layer(recipe, i, L))
        present = adapter.heads_in_layer(i)  # < H when the model was pruned before
        kept_heads = recipe.kept_heads(i, present)
        heads[i] = _prune_layer_heads(adapter, i, kept_heads) if len(kept_heads) < present else present
        width = adapter.intermediate_size(i)  # < the config's when the model was pruned before
        kept_units = recipe.kept_neurons(i, width)
        units[i] = _prune_layer_neurons(adapter, i, kept_units) if len(kept_units) < width else width
    factorised = {i: _factorise_layer(adapter, i, [(ro, r) for l, ro, r in recipe.ranks if l == i]) for i in owners}
    for group in groups:  # slicing and factorising made new modules in each group's first layer: tie again
        if len(group) > 1:
            tie_group(adapter, group)
    heads_per_layer = [heads[first_of.get(i, i)] for i in kept_layers]
    intermediate_per_layer = [units[first_of.get(i, i)] for i in kept_layers]
    ranks = []  # last: the SVD of each matrix as it will run (sparse, quantised, sliced), as simulate does
    for j, i in enumerate(kept_layers):
        ranks += [[j, role, r] for role, r in factorised[first_of.get(i, i)]]
    _set_ranks(new, ranks)
    layers = _get(new, adapter.spec.layers)
    _set(new, adapter.spec.layers, nn.ModuleList([layers[i] for i in kept_layers]))
    setattr(new.config, adapter.spec.num_layers_attr, len(kept_layers))
    if adapter.family == "modernbert":  # each kept layer keeps its global/local attention
        new.config.layer_types = [new.config.layer_types[i] for i in kept_layers]
    _set_intermediate_sizes(new, adapter, intermediate_per_layer)
    _finish(new, adapter, recipe, heads_per_layer, H)
    _set_shared(new)
    return new


def _set_shared(new) -> None:
    """Record the tied groups, in the saved model's layer numbers, for `load_materialized` to tie again."""
    groups = tied_groups(Adapter(new))
    if groups:
        setattr(new.config, SHARED_KEY, groups)
    elif hasattr(new.config, SHARED_KEY):
        delattr(new.config, SHARED_KEY)


def _materialize_albert(new, adapter: Adapter, recipe: Recipe, kept_layers: list[int]):
    """ALBERT shares one layer's weights across depth: only uniform recipes can be made real."""
    config = new.config
    if config.num_hidden_groups != 1:
        raise HeadroomError("Materializing ALBERT is supported only with num_hidden_groups = 1.")
    head_sets = {tuple(recipe.kept_heads(i, adapter.num_heads)) for i in kept_layers}
    schemes = {QuantScheme.for_layer(recipe, i, adapter.num_layers) for i in kept_layers}
    units = adapter.intermediate_size(0)
    neuron_sets = {tuple(recipe.kept_neurons(i, units)) for i in kept_layers}
    sparsity = {recipe.layer_sparsity(adapter.num_layers)[i] for i in kept_layers}
    rank_sets = {tuple((ro, r) for l, ro, r in recipe.ranks if l == i) for i in kept_layers}
    if len(head_sets) > 1 or len(schemes) > 1 or len(neuron_sets) > 1 or len(sparsity) > 1 or len(rank_sets) > 1:
        raise HeadroomError(
            "ALBERT shares its weights across layers, so a materialized recipe must mask the same heads and FFN "
            "neurons and use the same bits, sparsity and ranks in every kept layer; simulate it instead."
        )
    zeroed = magnitude_masks(adapter, recipe)
    _sparsify_layer(adapter, 0, {(0, role): m for (i, role), m in zeroed.items() if i == kept_layers[0]})
    _quantize_layer(adapter, 0, schemes.pop())
    heads = list(head_sets.pop())
    kept = adapter.num_heads if len(heads) == adapter.num_heads else _prune_layer_heads(adapter, 0, heads)
    kept_units = list(neuron_sets.pop())
    if len(kept_units) < units:
        _set_intermediate_sizes(new, adapter, [_prune_layer_neurons(adapter, 0, kept_units)])
    _set_ranks(new, [[0, role, r] for role, r in _factorise_layer(adapter, 0, list(rank_sets.pop()))])
    # With one shared layer, dropping any k layers equals running the layer L - k times.
    config.num_hidden_layers = len(kept_layers)
    _finish(new, adapter, recipe, [kept] * len(kept_layers), adapter.num_heads)
    return new


def _set_ranks(new, ranks: list[list]) -> None:
    if ranks:
        setattr(new.config, RANKS_KEY, ranks)
    elif hasattr(new.config, RANKS_KEY):
        delattr(new.config, RANKS_KEY)


def _word_embedding_name(adapter: Adapter) -> str:
    return "tok_embeddings" if adapter.family == "modernbert" else "word_embeddings"


def _finish(new, adapter: Adapter, recipe: Recipe, heads_per_layer: list[int], num_heads: int) -> None:
    scheme = QuantScheme.for_embeddings(recipe)
    if not scheme.is_full_precision:
        emb = adapter.word_embeddings
        _refuse_factorised(emb, "the word-embedding matrix")
        emb.weight.copy_(fake_quantize(emb.weight, scheme, EMBEDDING_ROLE, adapter.head_size))
    config = new.config
    if recipe.embedding_size:  # ALBERT's V x E table and E x H projection, from the SVD of the word embeddings
        factorised = FactorizedEmbedding.from_embedding(adapter.word_embeddings, recipe.embedding_size)
        setattr(adapter.embeddings, _word_embedding_name(adapter), factorised)
        setattr(config, EMBEDDING_SIZE_KEY, factorised.table.weight.shape[1])
    if any(h != num_heads for h in heads_per_layer):
        setattr(config, HEADS_KEY, heads_per_layer)
    elif hasattr(config, HEADS_KEY):
        delattr(config, HEADS_KEY)
    config.headroom_recipe = recipe.to_dict()


def save_materialized(model: nn.Module, tokenizer, out_dir: str, recipe: Recipe, *, overwrite: bool = False,
                      inputs: tuple = (), sparse_files: bool | None = None) -> dict:
    """Save with `save_pretrained` (safetensors) + tokenizer + recipe.json; return file sizes.

    `sparse_files` (default: when the recipe has magnitude sparsity) also writes the weights in the
    compressed formats of `analysis.measure.sparse_files` under `sparse/` (bitmask.safetensors,
    csr.safetensors; the model itself stays the dense safetensors transformers loads) and reports
    their bytes next to the dense file's.

    The directory is written whole or not at all (`analysis.io.outputs.atomic_directory`): a
    non-empty `out_dir` is refused unless `overwrite`, and `out_dir` may not be one of `inputs`
    (e.g. the source model's directory).
    """
    from analysis.io.outputs import atomic_directory

    with atomic_directory(out_dir, overwrite=overwrite, inputs=inputs, what="model directory") as tmp:
        save_pretrained(model, tmp)  # tied (shared) layers' tensors once
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        (tmp / "recipe.json").write_text(recipe.to_json(), encoding="utf-8")
        weights = [f for f in os.listdir(tmp) if f.endswith(".safetensors")]
        weights_bytes = sum(os.path.getsize(tmp / f) for f in weights)
        sparse = counted = None
        if sparse_files or (sparse_files is None and recipe.has_sparsity()):
            from analysis.measure.sparse_files import FORMATS, write_sparse_state

            state = model.state_dict()
            os.makedirs(tmp / "sparse")
            sparse = {fmt: write_sparse_state(state, str(tmp / "sparse" / f"{fmt}.safetensors"), fmt) for fmt in FORMATS}
            if recipe.sparsity_pattern == "2:4":  # counted from the tensors, no file: labelled so
                from analysis.measure.sparse_files import TWO_FOUR_WHAT, two_four_bytes

                counted = {"2:4": sum(two_four_bytes(t) if t.ndim == 2 and t.is_floating_point()
                                      else t.numel() * t.element_size() for t in state.values()), "what": TWO_FOUR_WHAT}
    saved = {
        "dir": str(out_dir),
        "weights_bytes": weights_bytes,
        "plain_transformers_loadable": plain_loadable(model.config),
    }
    if sparse is not None:
        saved["sparse_weights_bytes"] = {"dense_with_zeros": weights_bytes, **sparse,
                                         "files": {fmt: f"sparse/{fmt}.safetensors" for fmt in FORMATS}}
        if counted is not None:
            saved["sparse_weights_bytes"]["counted"] = counted
    return saved


def plain_loadable(config) -> bool:
    """True when plain `from_pretrained` rebuilds the model (no uneven heads or FFN widths)."""
    return not any(hasattr(config, k) for k in HEADROOM_KEYS)


def is_materialized_with_pruned_heads(path: str) -> bool:
    """True when the directory needs `load_materialized`: uneven heads or FFN widths per layer."""
    try:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
        return any(k in config for k in HEADROOM_KEYS)
    except (OSError, ValueError):
        return False


@torch.no_grad()
def load_materialized(path: str, dtype: torch.dtype = torch.float32) -> nn.Module:
    """Load a directory written by `save_materialized`, pruned heads and uneven FFN widths included."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(path)
    heads_per_layer = getattr(config, HEADS_KEY, None)
    intermediate_per_layer = getattr(config, INTERMEDIATE_KEY, None)
    if plain_loadable(config):
        return AutoModelForSequenceClassification.from_pretrained(path, dtype=dtype).eval()
    model = AutoModelForSequenceClassification.from_config(config, dtype=dtype)
    adapter = Adapter(model)
    hs = adapter.head_size
    modules = [adapter.layer_module(0)] if adapter.shares_layers() else [adapter.layer_module(i) for i in range(adapter.num_layers)]
    spec = adapter.spec
    halves = 2 if adapter.ffn_gated else 1
    for module, n in zip(modules, intermediate_per_layer or []):
        w_in, w_out = _get(module, spec.ffn_in), _get(module, spec.ffn_out)
        _set(module, spec.ffn_in, nn.Linear(w_in.in_features, halves * n, bias=w_in.bias is not None, dtype=dtype))
        _set(module, spec.ffn_out, nn.Linear(n, w_out.out_features, bias=w_out.bias is not None, dtype=dtype))
    for module, n in zip(modules, heads_per_layer or []):
        # Q/K/V are three Linears, or one fused (Q; K; V) Linear 3x as wide (ModernBERT)
        paths, widths = ([spec.fused_qkv], [3 * n * hs]) if spec.fused_qkv else ([spec.query, spec.key, spec.value], [n * hs] * 3)
        for attr, width in zip(paths, widths):
            lin = _get(module, attr)
            _set(module, attr, nn.Linear(lin.in_features, width, bias=lin.bias is not None, dtype=dtype))
        o = _get(module, spec.attention_output)
        _set(module, spec.attention_output, nn.Linear(n * hs, o.out_features, bias=o.bias is not None, dtype=dtype))
        _set_head_count(adapter, module, n)
    for layer, role, rank in getattr(config, RANKS_KEY, None) or []:
        module = modules[layer]
        lin = _get(module, getattr(spec, role))
        _set(module, getattr(spec, role), LowRankLinear(lin.in_features, lin.out_features, rank,
                                                        bias=lin.bias is not None, dtype=dtype))
    embedding_size = getattr(config, EMBEDDING_SIZE_KEY, None)
    if embedding_size:
        V, H = adapter.word_embeddings.weight.shape
        setattr(adapter.embeddings, _word_embedding_name(adapter),
                FactorizedEmbedding(V, embedding_size, H, padding_idx=adapter.word_embeddings.padding_idx, dtype=dtype))
    for group in getattr(config, SHARED_KEY, None) or []:  # saved once: the later layers run the first's modules
        from analysis.core.sharing import tie_group

        tie_group(adapter, group)
    state = {}
    for f in sorted(os.listdir(path)):
        if f.endswith(".safetensors"):
            state.update(load_file(os.path.join(path, f)))
    missing, unexpected = model.load_state_dict(state, strict=False)
    current = model.state_dict()
    loaded_storage = {current[k].data_ptr() for k in state if k in current and current[k].numel()}
    # a tied layer's names are missing from the file by design: their tensors are the loaded first layer's
    missing = [k for k in missing if not k.endswith("position_ids") and current[k].data_ptr() not in loaded_storage]
    # Tied weights (none in BERT classifiers by default) would show up here.
    if missing or unexpected:
        raise HeadroomError(f"{path} does not match its config: missing {missing[:3]}, unexpected {unexpected[:3]}.")
    return model.eval()
