"""Profiling: FLOPs against a hand count for BERT-base, parameter sums, recipes, measured times."""

import json

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from analysis.core.adapters import Adapter
from analysis.errors import HeadroomError
from analysis.measure.flops import COMPONENTS, count_flops, count_parameters, flops_by_component, total_flops
from analysis.measure.observations import course_observations
from analysis.measure.profile import profile_model
from analysis.measure.profile_sweeps import sweep_seq_len
from analysis.measure.stopwatch import Stopwatch
from analysis.measure.timing import synthetic_batch
from analysis.core.recipe import Recipe
from analysis.core.simulate import additive_mask, encoder_layer, simulate
from analysis.measure.size import size_report
from analysis.testing import ALL_ARCHITECTURES, tiny_model

# BERT-base by hand, batch 1, seq 128 (D=768, I=3072, 12 heads of 64), 2 FLOPs per multiply-add:
T, D, I, H, HS = 128, 768, 3072, 12, 64
HAND = {  # per layer: (matmul, elementwise)
    "attention_qkv": (3 * 2 * T * D * D, 3 * T * D),  # 452,984,832 + biases
    "attention_scores": (2 * 2 * H * T * T * HS, H * T * T * 7),  # QK^T and probs@V; scale, mask, softmax(5)
    "attention_output": (2 * T * D * D, T * D),
    "layernorm": (0, 2 * T * D * 8),  # residual add + 7 per element, twice
    "ffn_in": (2 * T * D * I, T * I + 5 * T * I),  # bias + GELU
    "ffn_out": (2 * T * I * D, T * D),
}


@pytest.fixture(scope="module")
def bert_base():
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(num_labels=2)).eval()  # 12x12, 768, 3072: random weights


@pytest.fixture(autouse=True)
def one_thread():
    # Timings on a shared 2-core machine: one thread avoids OpenMP spin-waits against other jobs.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_bert_base_flops_match_hand_count(bert_base):
    counts = count_flops(Adapter(bert_base), Recipe(), batch_size=1, seq_len=T)
    layer = {c.component: (c.matmul, c.elementwise) for c in counts if c.layer == 4}
    assert layer == HAND
    encoder_matmul = sum(c.matmul for c in counts if c.layer is not None)
    assert encoder_matmul == 22_347_251_712  # 12 x 1,862,270,976: the textbook ~11.2 GMACs at seq 128
    emb = counts[0]
    assert emb.component == "embeddings" and emb.matmul == 0 and emb.elementwise == T * D * (2 + 7)
    head = counts[-1]  # pooler (768x768, tanh) + classifier (768x2), on the [CLS] vector only
    assert head.component == "classifier"
    assert head.matmul == 2 * D * D + 2 * D * 2 and head.elementwise == D + D + 2
    per_layer = sum(m + e for m, e in HAND.values())
    assert total_flops(counts) == 12 * per_layer + emb.total + head.total
    # every term is linear in the batch size
    assert total_flops(count_flops(Adapter(bert_base), Recipe(), batch_size=32, seq_len=T)) == 32 * total_flops(counts)


def test_bert_base_parameters_sum_to_the_model(bert_base):
    rows = count_parameters(Adapter(bert_base))
    assert sum(r.params for r in rows) == sum(p.numel() for p in bert_base.parameters()) == 109_483_778
    by = {}
    for r in rows:
        by[r.component] = by.get(r.component, 0) + r.params
    assert by["embeddings"] == 30522 * 768 + 512 * 768 + 2 * 768 + 2 * 768
    assert by["attention_qkv"] == 3 * by["attention_output"] == 12 * 3 * (768 * 768 + 768)
    assert by["ffn_in"] + by["ffn_out"] == 12 * (2 * 768 * 3072 + 3072 + 768)
    assert by.get("attention_scores", 0) == 0


@pytest.mark.parametrize("arch", ALL_ARCHITECTURES)
def test_parameter_rows_agree_with_size_report(arch):
    model = tiny_model(arch)
    adapter = Adapter(model)
    for recipe in (Recipe(), Recipe(masked_heads=[(0, 1), (1, 0), (1, 1), (1, 2), (1, 3)], dropped_layers=[2],
                                    weight_bits=4, embedding_bits=8, granularity="per-head")):
        rows = count_parameters(adapter, recipe)
        size = size_report(adapter, recipe)
        assert sum(r.params for r in rows) == size.parameters
        assert sum(r.bytes for r in rows) == pytest.approx(size.bytes, rel=1e-12)
    assert sum(r.params for r in count_parameters(adapter)) == sum(p.numel() for p in model.parameters())


def test_recipe_reduces_flops_exactly(bert_base):
    adapter = Adapter(bert_base)
    base = {(c.component, c.layer): c for c in count_flops(adapter, Recipe(), 2, 64)}
    recipe = Recipe(masked_heads=[(0, 0), (0, 5), (0, 11)], dropped_layers=[11])
    cut = {(c.component, c.layer): c for c in count_flops(adapter, recipe, 2, 64)}
    assert not any(layer == 11 for _, layer in cut)
    for comp in ("attention_qkv", "attention_scores"):  # 9 of 12 heads: exactly 3/4 of everything
        assert cut[(comp, 0)].total * 4 == base[(comp, 0)].total * 3
    o, o0 = cut[("attention_output", 0)], base[("attention_output", 0)]
    assert o.matmul * 4 == o0.matmul * 3 and o.elementwise == o0.elementwise  # W_O's bias is per hidden unit
    for comp in ("layernorm", "ffn_in", "ffn_out"):
        assert cut[(comp, 0)].total == base[(comp, 0)].total
    for key in base:
        if key[1] not in (0, 11):
            assert cut[key].total == base[key].total
    removed = sum(c.total for k, c in base.items() if k[1] == 11)
    saved_heads = sum(base[(c, 0)].total - cut[(c, 0)].total for c in ("attention_qkv", "attention_scores", "attention_output"))
    assert total_flops(list(cut.values())) == total_flops(list(base.values())) - removed - saved_heads


def test_flops_scale_with_sequence_length():
    adapter = Adapter(tiny_model("bert"))
    short, long = flops_by_component(count_flops(adapter, None, 3, 8)), flops_by_component(count_flops(adapter, None, 3, 16))
    assert long["attention_scores"] == 4 * short["attention_scores"]  # quadratic in T
    for comp in ("attention_qkv", "attention_output", "ffn_in", "ffn_out", "layernorm", "embeddings"):
        assert long[comp] == 2 * short[comp]  # linear in T
    assert long["classifier"] == short["classifier"]  # one [CLS] vector per example


@pytest.mark.parametrize("recipe", [Recipe(), Recipe(masked_heads=[(1, 0), (1, 2)], weight_bits=8, activation_bits=8),
                                    Recipe(masked_heads=[(0, h) for h in range(4)])])
def test_profiled_layer_is_the_simulated_layer(recipe):
    # One forward: the profiler passes a stopwatch as `timer`; the arithmetic must not change.
    adapter = Adapter(tiny_model("bert"))
    sim = simulate(adapter, recipe)
    batch = synthetic_batch(adapter.word_embeddings.weight.shape[0], 3, 12, torch.device("cpu"))
    x = sim.embed(batch)
    mask = additive_mask(batch.attention_mask, x.dtype)
    watch = Stopwatch(torch.device("cpu"))
    with torch.inference_mode():
        for i in (0, 1):
            expected, _ = encoder_layer(x, mask, sim.layers[i], None)
            timed, _ = encoder_layer(x, mask, sim.layers[i], None, timer=watch)
            torch.testing.assert_close(timed, expected, rtol=0, atol=0)
        whole = sim.forward(batch).logits
        profiled = Stopwatch(torch.device("cpu"))
        torch.testing.assert_close(sim.forward(batch, timer=profiled).logits, whole, rtol=0, atol=0)
    laps = {c for c, _ in watch.laps}
    assert "layernorm" in laps and "ffn_in" in laps and "ffn_out" in laps and all(s >= 0 for s in watch.laps.values())
    # layer 0 of the all-masked recipe has no heads: only W_O's bias is timed there
    heads_in_0 = sim.layers[0].num_heads
    assert (("attention_qkv", 0) in watch.laps) == (heads_in_0 > 0) and ("attention_output", 0) in watch.laps
    # the whole forward is timed per component, from embeddings to classifier, in every layer
    assert {c for c, _ in profiled.laps} == set(COMPONENTS) and {l for _, l in profiled.laps} == {None, 0, 1, 2}
    layer0 = {c for c, l in profiled.laps if l == 0}
    assert layer0 == set(COMPONENTS) - {"embeddings", "classifier"} - (set() if heads_in_0 else {"attention_qkv", "attention_scores"})


def _hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_profile_times_are_positive_and_cover_the_forward():
    model = tiny_model("bert", layers=2, heads=4, hidden=64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = profile_model(model, Recipe(masked_heads=[(0, 1)]), batch_size=4, seq_len=32, repeats=7)
    df = report.to_frame()
    assert list(df.columns) == ["component", "layer", "params", "bytes", "flops", "ms", "share_of_time", "share_of_flops"]
    assert (df["ms"] > 0).all() and report.forward_ms > 0
    # coverage (laps / untimed forward) is a ratio of two timings: on a loaded machine it swings, so
    # only its sanity is tested here; its value on an idle machine is in benchmarks/profile_report.py
    assert 0 < report.coverage < 10, report.header()
    assert df["share_of_time"].sum() == pytest.approx(1) and df["share_of_flops"].sum() == pytest.approx(1)
    # head 0:1 (16 wide) sliced out: 16 rows + biases of W_Q, W_K, W_V and 16 columns of W_O
    assert df["params"].sum() == sum(p.numel() for p in model.parameters()) - 3 * (16 * 64 + 16) - 64 * 16
    mat = report.materialized
    assert mat is not None and mat.forward_ms > 0 and 0 < mat.coverage < 10, mat.header()
    assert mat.to_frame()["flops"].sum() == df["flops"].sum()  # the real smaller model does the same work
    side = report.side_by_side()
    assert list(side["component"])[0] == "embeddings" and side["ms_materialized"].notna().all()
    assert _hooks(model) == 0  # hooks only ever went on the materialized copy
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    json.dumps(report.to_dict())
    claims = course_observations(report)
    assert len(claims) == 5 and all(isinstance(c["holds"], bool) for c in claims)
    assert claims[1]["evidence"].startswith("FLOPs ratio 3.00")


def test_sweep_skips_lengths_the_model_cannot_take():
    model = tiny_model("bert")  # max_position_embeddings 64
    df = sweep_seq_len(model, seq_lens=(8, 16, 128), batch_size=2, repeats=1)
    assert sorted(df["seq_len"].unique()) == [8, 16] and df.attrs["skipped_seq_lens"] == [128]
    scores = df[df["component"] == "attention_scores"].set_index("seq_len")["flops"]
    assert scores[16] == 4 * scores[8]
    assert (df["ms"] > 0).all()


def test_bad_requests_are_one_sentence():
    model = tiny_model("bert")
    with pytest.raises(HeadroomError, match="between 1 and 64"):
        profile_model(model, seq_len=100)
    with pytest.raises(HeadroomError, match="Batch size must be between 1 and 512"):
        profile_model(model, batch_size=0, seq_len=16)
    with pytest.raises(HeadroomError, match="loaded on cpu"):
        profile_model(model, seq_len=16, device="cuda")
    with pytest.raises(HeadroomError):
        profile_model(model, Recipe(dropped_layers=[7]))


def test_cli_profile(capsys, tmp_path):
    from analysis.cli import main
    from analysis.testing import tiny_loaded

    loaded = tiny_loaded()
    loaded.model.save_pretrained(str(tmp_path))
    loaded.tokenizer.save_pretrained(str(tmp_path))
    code = main(["profile", "--model", str(tmp_path), "--batch", "2", "--seq-len", "16", "--repeats", "2",
                 "--drop-layers", "2", "--sweep", "--sweep-seq-lens", "8,16", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    comps = [r["component"] for r in result["by_component"]]
    assert comps[0] == "embeddings" and comps[-1] == "classifier" and result["threads"] == 1
    assert result["materialized"]["forward_ms"] > 0 and len(result["observations"]) == 5
    assert {r["seq_len"] for r in result["sweep_seq_len"]["rows"]} == {8, 16}
    code = main(["profile", "--model", str(tmp_path), "--seq-len", "4096"])
    assert code == 2 and "Sequence length" in capsys.readouterr().err
