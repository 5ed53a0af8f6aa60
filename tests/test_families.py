"""DeBERTa-v2/v3 and ModernBERT: what is particular to them, on tiny random models (no download).

The promises every adapter keeps (flat forward == HF logits, masked == materialized with uneven
heads, dropping a layer == the identity, zero gate == mask, counted parameters == the model's,
ONNX export, Michel == finite differences of the gate) are parametrised over these families in
test_equivalence.py, test_profile.py, test_export.py and test_importance.py. Here:
- the attention probabilities equal HF's output_attentions (eager), kept heads included;
- config variants (biases, pooling, buckets, c2p only, no relative attention, RoPE scaling);
- the configs Headroom cannot run are refused in one sentence;
- the gated FFN's rows (`Adapter.ffn_in_rows`), ModernBERT's layer 0, real int8, loading.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from analysis.core.adapters import Adapter
from analysis.core.families import relative_positions
from analysis.core.materialize import load_materialized, materialize, save_materialized
from analysis.core.recipe import Recipe
from analysis.core.simulate import simulate
from analysis.errors import HeadroomError
from analysis.measure.flops import count_parameters
from analysis.testing import FAMILIES, tiny_batch, tiny_loaded, tiny_model

TOL = 1e-4
# layer 0 keeps 3 heads, layer 1 keeps 4, layer 2 keeps none
UNEVEN = Recipe(masked_heads=[(0, 2), (2, 0), (2, 1), (2, 2), (2, 3)])


def hf(model, batch, **kw):
    with torch.no_grad():
        return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, **kw)


def sim(model, recipe, batch, **kw):
    with torch.no_grad():
        return simulate(Adapter(model), recipe)(batch, **kw)


def assert_simulates_and_prunes(model, batch=None):
    """simulate == HF logits, and masked (UNEVEN) == materialized, which really differs from the original."""
    b = batch or tiny_batch()
    torch.testing.assert_close(sim(model, Recipe(), b).logits, hf(model, b).logits, atol=TOL, rtol=0)
    masked = sim(model, UNEVEN, b).logits
    torch.testing.assert_close(masked, hf(materialize(model, UNEVEN), b).logits, atol=TOL, rtol=0)
    assert (masked - hf(model, b).logits).abs().max() > 1e-3


# ----------------------------------------------------------------------------- attention maps
@pytest.mark.parametrize("arch", FAMILIES)
def test_attention_probabilities_equal_hf_output_attentions(arch):
    model = tiny_model(arch)
    b = tiny_batch()  # padded rows: DeBERTa masks pads on both sides, ModernBERT's local layers a window
    want = hf(model, b, output_attentions=True).attentions
    got = sim(model, Recipe(), b, output_attentions=True).attentions
    assert len(want) == len(got) == 3
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=0)
    # a masked head of the last layer: the other heads' maps are HF's own (earlier layers untouched)
    kept = sim(model, Recipe(masked_heads=[(2, 1)]), b, output_attentions=True).attentions[2]
    torch.testing.assert_close(kept, want[2][:, [0, 2, 3]], atol=1e-5, rtol=0)


def test_the_tiny_configs_exercise_buckets_and_windows():
    # DeBERTa's log buckets start inside the test sequence (|i - j| >= 2 of 10 is bucketed) ...
    config = tiny_model("deberta-v2").config
    T = tiny_batch().input_ids.shape[1]
    raw = torch.arange(T)[:, None] - torch.arange(T)[None, :]
    assert (relative_positions(T, config.position_buckets, config.max_relative_positions, "cpu") != raw).any()
    # ... and ModernBERT has global and local layers, with a window shorter than the sequence
    config = tiny_model("modernbert").config
    assert set(config.layer_types) == {"full_attention", "sliding_attention"} and config.sliding_window < T - 1


def test_log_buckets_equal_hf_at_deberta_v3_sizes():
    from transformers.models.deberta_v2.modeling_deberta_v2 import build_relative_position

    T = 600  # beyond max_relative_positions, so the clamped far buckets are compared too
    x = torch.zeros(1, T, 1)
    want = build_relative_position(x, x, bucket_size=256, max_position=512)[0]  # (T, T)
    assert torch.equal(relative_positions(T, 256, 512, "cpu"), want)


# ----------------------------------------------------------------------------- config variants
@pytest.mark.parametrize("overrides", [
    dict(pos_att_type="c2p"),  # one relative term: scale sqrt(2 hs)
    dict(position_buckets=-1),  # no buckets: span = max_relative_positions
    dict(norm_rel_ebd="none", position_biased_input=True, type_vocab_size=2),  # DeBERTa-v2-style embeddings
    dict(relative_attention=False),  # plain content attention (scale still counts pos_att_type)
])
def test_deberta_variants(overrides):
    assert_simulates_and_prunes(tiny_model("deberta-v2", **overrides))


@pytest.mark.parametrize("overrides", [
    dict(attention_bias=True, mlp_bias=True, norm_bias=True),  # biases everywhere (zero heads keep W_O's)
    dict(classifier_pooling="cls"),
    dict(global_attn_every_n_layers=3, local_attention=2),  # [global, local, local], window 1
    dict(rope_parameters={"full_attention": {"rope_type": "linear", "rope_theta": 160000.0, "factor": 2.0},
                          "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}),
])
def test_modernbert_variants(overrides):
    assert_simulates_and_prunes(tiny_model("modernbert", **overrides))


@pytest.mark.parametrize("arch, overrides, words", [
    ("deberta-v2", dict(share_att_key=False), "share_att_key"),
    ("deberta-v2", dict(conv_kernel_size=3), "convolution"),
    ("deberta-v2", dict(pooler_hidden_size=16), "pooler_hidden_size"),
    ("modernbert", dict(rope_parameters={"full_attention": {"rope_type": "dynamic", "rope_theta": 160000.0, "factor": 2.0},
                                         "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}),
     "rope_type 'dynamic'"),
])
def test_unsupported_configs_are_refused_in_one_sentence(arch, overrides, words):
    model = tiny_model(arch, **overrides)  # transformers builds these; Headroom's forward does not follow them
    with pytest.raises(HeadroomError, match=words) as e:
        Adapter(model)
    assert "\n" not in str(e.value) and str(e.value).endswith(".")


# ----------------------------------------------------------------------------- ModernBERT structure
def test_ffn_in_rows_slice_both_halves_of_the_gated_ffn():
    model = tiny_model("modernbert")
    adapter = Adapter(model)
    assert adapter.ffn_gated and not Adapter(tiny_model("bert")).ffn_gated
    I = adapter.intermediate_size(1)
    keep = torch.tensor([0, 3, 4, 10, I - 1])
    assert adapter.ffn_in_rows(1, keep).tolist() == keep.tolist() + (keep + I).tolist()
    # keeping units via their rows of W_i (input and gate) and columns of W_o == zeroing the others in W_o
    sliced, zeroed = copy.deepcopy(model), copy.deepcopy(model)
    mlp = sliced.model.layers[1].mlp
    rows = adapter.ffn_in_rows(1, keep)
    with torch.no_grad():
        wi, wo = nn.Linear(32, 2 * len(keep), bias=False), nn.Linear(len(keep), 32, bias=False)
        wi.weight.copy_(mlp.Wi.weight[rows])
        wo.weight.copy_(mlp.Wo.weight[:, keep])
        mlp.Wi, mlp.Wo = wi, wo
        others = torch.ones(I, dtype=torch.bool)
        others[keep] = False
        zeroed.model.layers[1].mlp.Wo.weight[:, others] = 0
    b = tiny_batch()
    torch.testing.assert_close(hf(sliced, b).logits, hf(zeroed, b).logits, atol=TOL, rtol=0)
    assert (hf(sliced, b).logits - hf(model, b).logits).abs().max() > 1e-3


def test_modernbert_layer_0_drops_in_simulation_and_is_refused_when_materialized():
    model = tiny_model("modernbert")
    b = tiny_batch()

    class Identity(nn.Module):
        attention_type = "full_attention"

        def forward(self, hidden_states, *args, **kwargs):
            return hidden_states

    reference = copy.deepcopy(model)
    reference.model.layers[0] = Identity()  # layer 1 keeps its own attention norm
    torch.testing.assert_close(sim(model, Recipe(dropped_layers=[0]), b).logits, hf(reference, b).logits,
                               atol=TOL, rtol=0)
    with pytest.raises(HeadroomError, match="layer 0"):
        materialize(model, Recipe(dropped_layers=[0]))


def test_counted_parameters_place_the_shared_pieces():
    # DeBERTa's relative embeddings (+ LayerNorm) count as embeddings; ModernBERT's final norm with the head
    adapter = Adapter(tiny_model("deberta-v2"))
    rows = {r.component: r.params for r in count_parameters(adapter) if r.layer is None}
    enc, emb = adapter.base.encoder, adapter.embeddings
    assert rows["embeddings"] == sum(p.numel() for m in (emb, enc.rel_embeddings, enc.LayerNorm) for p in m.parameters())
    adapter = Adapter(tiny_model("modernbert"))
    rows = {r.component: r.params for r in count_parameters(adapter) if r.layer is None}
    m = adapter.model
    assert rows["classifier"] == sum(p.numel() for mod in (m.model.final_norm, m.head, m.classifier) for p in mod.parameters())
    layer0 = {r.component: r.params for r in count_parameters(adapter) if r.layer == 0}
    assert layer0["layernorm"] == 32  # pre-LN, no bias; layer 0 has no attention norm
    assert layer0["attention_qkv"] == 3 * 32 * 32  # the fused W_qkv, no bias


# ----------------------------------------------------------------------------- runtimes, loading
@pytest.mark.parametrize("arch", FAMILIES)
def test_real_int8_runs_and_stays_close(arch):
    from analysis.measure.lowbit import build

    model = tiny_model(arch)
    q, backend, _ = build(model, "int8", backend="torch.ao")
    assert not any(type(m) is nn.Linear for m in q.modules())  # every Linear (W_qkv included) is int8
    b = tiny_batch()
    diff = (hf(q, b).logits - hf(model, b).logits).abs().max()
    assert 0 < diff < 0.3


@pytest.mark.parametrize("arch", FAMILIES + ("xlm-roberta",))
def test_directories_load_plain_and_pruned(arch, tmp_path):
    from analysis.io.models import load_model

    loaded = tiny_loaded(arch)
    loaded.model.save_pretrained(str(tmp_path / "plain"))
    loaded.tokenizer.save_pretrained(str(tmp_path / "plain"))
    plain = load_model(str(tmp_path / "plain"))
    assert plain.adapter.model_type == arch and plain.kind == "directory"
    pruned = materialize(loaded.model, UNEVEN)
    save_materialized(pruned, loaded.tokenizer, str(tmp_path / "pruned"), UNEVEN)
    again = load_model(str(tmp_path / "pruned"))
    assert again.kind == "materialized" and again.adapter.heads_per_layer == [3, 4, 1]
    b = tiny_batch()
    torch.testing.assert_close(hf(again.model, b).logits, hf(pruned, b).logits, atol=TOL, rtol=0)
    torch.testing.assert_close(hf(load_materialized(str(tmp_path / "pruned")), b).logits, hf(pruned, b).logits,
                               atol=TOL, rtol=0)


@pytest.mark.parametrize("hub_id", ["microsoft/deberta-v3-base", "answerdotai/ModernBERT-base",
                                    "FacebookAI/xlm-roberta-base"])
def test_hub_ids_fail_offline_in_one_sentence(hub_id):
    from analysis.io.models import load_model

    with pytest.raises(HeadroomError, match="not reachable") as e:
        load_model(hub_id)
    assert "\n" not in str(e.value)
