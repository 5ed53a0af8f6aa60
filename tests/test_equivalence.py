"""The core promises, for every architecture adapter (DeBERTa-v3 and ModernBERT included), on tiny random models.

- Headroom's flat forward with an empty recipe reproduces the HF model's logits;
- a masked head (simulated) and the same head pruned (materialized) give the same logits;
- dropping layer k equals replacing layer k by the identity in the HF model itself;
- a gate of 0 on a head equals masking it.
"""

import copy

import pytest
import torch
from torch import nn

from analysis.core.adapters import Adapter
from analysis.errors import HeadroomError
from analysis.core.materialize import load_materialized, materialize, save_materialized
from analysis.core.recipe import Recipe
from analysis.core.simulate import simulate
from analysis.testing import ALL_ARCHITECTURES, batch_for, hf_logits, sim_logits, tiny_model

TOL = 1e-4



@pytest.mark.parametrize("arch", ALL_ARCHITECTURES)
def test_flat_forward_matches_hf(arch):
    model = tiny_model(arch)
    b = batch_for(arch)
    torch.testing.assert_close(sim_logits(model, Recipe(), b), hf_logits(model, b), atol=TOL, rtol=0)


def _uneven_recipe(arch):
    if arch == "albert":  # shared weights: the same heads in every layer
        return Recipe(masked_heads=[(l, h) for l in range(3) for h in (1, 3)])
    # layer 0 keeps 3 heads, layer 1 keeps 4, layer 2 keeps none
    return Recipe(masked_heads=[(0, 2), (2, 0), (2, 1), (2, 2), (2, 3)])


@pytest.mark.parametrize("arch", ALL_ARCHITECTURES)
def test_masked_equals_pruned(arch, tmp_path):
    model = tiny_model(arch)
    b = batch_for(arch)
    recipe = _uneven_recipe(arch)
    masked = sim_logits(model, recipe, b)
    pruned_model = materialize(model, recipe)
    pruned = hf_logits(pruned_model, b)
    torch.testing.assert_close(masked, pruned, atol=TOL, rtol=0)
    # the recipe really changes the output, so the comparison above is not vacuous
    assert (masked - hf_logits(model, b)).abs().max() > 1e-3
    # pruned really is smaller, and the saved directory loads back to the same logits
    assert sum(p.numel() for p in pruned_model.parameters()) < sum(p.numel() for p in model.parameters())
    save_materialized(pruned_model, None, str(tmp_path), recipe)
    torch.testing.assert_close(hf_logits(load_materialized(str(tmp_path)), b), pruned, atol=TOL, rtol=0)


@pytest.mark.parametrize("arch", [a for a in ALL_ARCHITECTURES if a != "albert"])
def test_drop_layer_equals_identity(arch):
    model = tiny_model(arch)
    b = batch_for(arch)
    k = 1

    class Identity(nn.Module):
        attention_type = "full_attention"  # ModernBERT's model reads it to pick the layer's mask

        def forward(self, hidden_states, *args, **kwargs):
            # DeBERTa's encoder unpacks (hidden, attention) from each layer; the others take the tensor
            return (hidden_states, None) if arch == "deberta-v2" else hidden_states

    reference = copy.deepcopy(model)
    adapter = Adapter(reference)
    parent_path = adapter.spec.layers
    layers = reference
    for part in parent_path.split("."):
        layers = getattr(layers, part)
    layers[k] = Identity()
    expected = hf_logits(reference, b)
    recipe = Recipe(dropped_layers=[k])
    torch.testing.assert_close(sim_logits(model, recipe, b), expected, atol=TOL, rtol=0)
    torch.testing.assert_close(hf_logits(materialize(model, recipe), b), expected, atol=TOL, rtol=0)
    assert (expected - hf_logits(model, b)).abs().max() > 1e-3


def test_drop_layer_albert_equals_fewer_repeats():
    model = tiny_model("albert")
    b = batch_for("albert")
    fewer = copy.deepcopy(model)
    fewer.config.num_hidden_layers = 2
    expected = hf_logits(fewer, b)
    torch.testing.assert_close(sim_logits(model, Recipe(dropped_layers=[0]), b), expected, atol=TOL, rtol=0)
    torch.testing.assert_close(hf_logits(materialize(model, Recipe(dropped_layers=[2])), b), expected, atol=TOL, rtol=0)


def test_albert_uneven_materialize_is_refused():
    with pytest.raises(HeadroomError, match="shares its weights"):
        materialize(tiny_model("albert"), Recipe(masked_heads=[(0, 1)]))


@pytest.mark.parametrize("arch", ALL_ARCHITECTURES)
def test_zero_gate_equals_mask(arch):
    model = tiny_model(arch)
    b = batch_for(arch)
    gates = {1: torch.tensor([1.0, 0.0, 1.0, 1.0])}
    torch.testing.assert_close(
        sim_logits(model, Recipe(), b, gates=gates),
        sim_logits(model, Recipe(masked_heads=[(1, 1)]), b),
        atol=TOL, rtol=0,
    )


def test_simulation_leaves_model_untouched():
    model = tiny_model("bert")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sim_logits(model, Recipe(masked_heads=[(0, 1)], dropped_layers=[2], weight_bits=4, embedding_bits=8), batch_for("bert"))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("arch", ["bert", "distilbert", "deberta-v2", "modernbert"])
def test_quantized_materialize_matches_simulation(arch):
    model = tiny_model(arch)
    b = batch_for(arch)
    recipe = Recipe(weight_bits=[8, 4, 3], embedding_bits=8, granularity="per-head", num_groups=4,
                    masked_heads=[(1, 2)])  # 4 divides the tiny FFN (64 rows)
    torch.testing.assert_close(sim_logits(model, recipe, b), hf_logits(materialize(model, recipe), b), atol=TOL, rtol=0)


def test_incremental_start_equals_full_pass():
    model = tiny_model("bert")
    adapter = Adapter(model)
    b = batch_for("bert")
    with torch.no_grad():
        trace = simulate(adapter, Recipe())(b, output_hidden_states=True).hidden_states
        recipe = Recipe(masked_heads=[(2, 1)])
        k = recipe.first_changed_layer(adapter.num_layers)
        assert k == 2
        sim = simulate(adapter, recipe)
        torch.testing.assert_close(sim(b, start_layer=k, hidden=trace[k]).logits, sim(b).logits, atol=1e-6, rtol=0)


@pytest.mark.parametrize("arch", ALL_ARCHITECTURES)
def test_every_role_names_the_same_matrix_everywhere(arch):
    # One name per weight matrix: the adapter's LayerParts, the simulated LayerWeights and the
    # profile's components all speak ROLES; the (weight, bias) a role holds is that Linear's.
    from dataclasses import fields

    from analysis.core.adapters import ROLES, ArchitectureSpec, FusedRows, LayerParts
    from analysis.measure.flops import COMPONENT_OF_ROLE, COMPONENTS

    assert set(ROLES) <= {f.name for f in fields(LayerParts)} and set(ROLES) <= {f.name for f in fields(ArchitectureSpec)}
    assert set(COMPONENT_OF_ROLE) == set(ROLES) and set(COMPONENT_OF_ROLE.values()) <= set(COMPONENTS)
    adapter = Adapter(tiny_model(arch))
    lw = simulate(adapter, Recipe()).layers[1]
    parts = adapter.layer(1)
    for role in ROLES:
        linear = getattr(parts, role)
        # ModernBERT's Q/K/V are row blocks of its fused W_qkv; everything else is an nn.Linear
        assert isinstance(linear, FusedRows if adapter.spec.fused_qkv and role in ("query", "key", "value") else nn.Linear)
        assert torch.equal(getattr(lw, role).weight, linear.weight)
        bias = getattr(lw, role).bias
        assert (bias is None and linear.bias is None) or torch.equal(bias, linear.bias)
    if adapter.spec.fused_qkv:  # the three blocks tile the fused matrix in Q, K, V order
        fused = torch.cat([getattr(parts, r).weight for r in ("query", "key", "value")])
        assert torch.equal(fused, parts.query.module.weight)
    # ffn_in maps hidden -> intermediate (input and gate halves when gated) and ffn_out back
    assert lw.ffn_in.weight.shape[1] == lw.ffn_out.weight.shape[0] == adapter.hidden_size
    halves = 2 if adapter.ffn_gated else 1
    assert lw.ffn_in.weight.shape[0] == halves * lw.ffn_out.weight.shape[1] and lw.ffn_out.weight.shape[1] > adapter.hidden_size
