"""Quantisation: fake-quant maths, per-head ranges, exact size accounting, Hessian power iteration
against an explicit Hessian, bit allocation, real int8, and the CLI."""

import dataclasses
import json

import pytest
import torch

from analysis.core.adapters import ROLES, Adapter
from analysis.errors import HeadroomError
from analysis.measure.evaluate import Evaluator
from analysis.core.quantize import QuantScheme, fake_quantize, quantization_error, quantize_weight, quantized_bytes
from analysis.core.recipe import Recipe
from analysis.methods.sensitivity import (allocate_bits, hessian_sensitivity, layer_loss_fn, top_eigenvalue,
                                          uniform_bits_at_size)
from analysis.core.simulate import simulate
from analysis.measure.size import size_report
from analysis.testing import tiny_batch, tiny_dataset, tiny_loaded, tiny_model


@pytest.mark.parametrize("granularity", ["per-tensor", "per-channel", "per-head", "groups"])
@pytest.mark.parametrize("symmetric", [True, False])
def test_error_decreases_with_bits(granularity, symmetric):
    w = torch.randn(64, 48, generator=torch.Generator().manual_seed(0))
    scheme = QuantScheme(granularity=granularity, symmetric=symmetric, num_groups=4)
    errs = [quantization_error(w, scheme.with_bits(b), "query", 16) for b in (2, 3, 4, 5, 6, 8, 16, 32)]
    assert all(a > b for a, b in zip(errs, errs[1:-1])), errs
    assert errs[-1] == 0.0 and errs[0] > 100 * errs[5]


def test_finer_granularity_is_more_accurate_at_4_bits():
    w = torch.randn(64, 48, generator=torch.Generator().manual_seed(1)) * torch.linspace(0.1, 3, 64)[:, None]
    e = {g: quantization_error(w, QuantScheme(4, g), "query", 16) for g in ("per-tensor", "per-head", "per-channel")}
    assert e["per-channel"] < e["per-head"] < e["per-tensor"]


@pytest.mark.parametrize("role", ["query", "attention_output"])
def test_per_head_ranges_are_really_per_head(role):
    hs, heads, d = 8, 4, 32
    w = torch.randn(heads * hs, d, generator=torch.Generator().manual_seed(2))
    spiked = w.clone()
    # a large outlier in head 0: rows 0..hs-1 of W_Q, or columns 0..hs-1 of W_O
    if role == "query":
        spiked[0, 0] = 100.0
        head1 = (slice(hs, 2 * hs), slice(None))
    else:
        w, spiked = w.t().contiguous(), w.t().contiguous()  # W_O is (D, heads*hs)
        spiked[0, 0] = 100.0
        head1 = (slice(None), slice(hs, 2 * hs))
    per_head, per_tensor3 = QuantScheme(3, "per-head"), QuantScheme(3, "per-tensor")
    q = fake_quantize(w, per_head, role, hs)
    qs = fake_quantize(spiked, per_head, role, hs)
    assert torch.equal(q[head1], qs[head1])  # head 1 does not see head 0's outlier
    per_tensor = fake_quantize(spiked, per_tensor3, role, hs)
    assert not torch.equal(fake_quantize(w, per_tensor3, role, hs)[head1], per_tensor[head1])
    assert quantize_weight(w, per_head, role, hs).num_ranges == heads


def test_symmetric_8bit_error_is_at_most_half_a_step():
    w = torch.randn(20, 30, generator=torch.Generator().manual_seed(3))
    for g in ("per-tensor", "per-channel", "groups"):
        qw = quantize_weight(w, QuantScheme(8, g, num_groups=5), "ffn_in", 64)
        err = (qw.dequantize() - w).abs()
        # each element's bound is its own range's scale / 2
        scale = qw.restore(qw.scale.expand_as(qw.q)).reshape(w.shape)
        assert (err <= scale / 2 + 1e-7).all()
        assert qw.q.abs().max() <= 127 and torch.equal(qw.q, qw.q.round())


def test_asymmetric_keeps_zero_exact_and_uses_all_levels():
    w = torch.rand(6, 10, generator=torch.Generator().manual_seed(4)) + 0.5  # all positive
    w[0, 0] = 0.0
    qw = quantize_weight(w, QuantScheme(4, "per-channel", symmetric=False), "ffn_in", 64)
    assert qw.dequantize()[0, 0] == 0.0
    assert qw.q.min() >= 0 and qw.q.max() == 15


def test_size_accounting_by_hand():
    # 4 x 8 matrix at 4 bits per output channel: 32 weights * 0.5 byte + 4 scales * 4 bytes
    assert quantized_bytes((4, 8), QuantScheme(4, "per-channel", True, num_groups=1), "ffn_in", 4) == 16 + 16
    # asymmetric adds a 4-byte zero-point per range
    assert quantized_bytes((4, 8), QuantScheme(4, "per-channel", False, num_groups=1), "ffn_in", 4) == 16 + 32
    # per head: W_Q (8 x 8) with head size 4 has 2 ranges; W_O (8 x 8) too (column blocks)
    assert quantized_bytes((8, 8), QuantScheme(2, "per-head", True, num_groups=1), "query", 4) == 16 + 8
    assert quantized_bytes((8, 8), QuantScheme(3, "per-head", True, num_groups=1), "attention_output", 2) == 24 + 16

    # A whole tiny BERT (hidden 32, FFN 64, 3 layers) at 8 bits per tensor. Per layer:
    # weights 4*32*32 + 2*32*64 = 8192 -> 8192 bytes + 6 scales * 4 = 8216 instead of 32768;
    # biases (4*32 + 64 + 32) and LayerNorms stay fp32. So each layer saves 32768 - 8216 = 24552.
    adapter = Adapter(tiny_model("bert"))
    base, q8 = size_report(adapter, Recipe()), size_report(adapter, Recipe(weight_bits=8))
    assert base.bytes == base.baseline_bytes
    assert base.bytes - q8.bytes == 3 * 24552
    # dropping a layer removes all of it: 8192 + 224 weights/biases + 128 LayerNorm values, fp32
    assert base.bytes - size_report(adapter, Recipe(dropped_layers=[1])).bytes == (8192 + 224 + 128) * 4


def test_quant_scheme_from_a_per_layer_recipe():
    recipe = Recipe(weight_bits=[8, 4, 32], embedding_bits=6, granularity="groups", num_groups=3, symmetric=False)
    schemes = [QuantScheme.for_layer(recipe, i, 3) for i in range(3)]
    assert [s.bits for s in schemes] == [8, 4, 32]
    assert all((s.granularity, s.symmetric, s.num_groups) == ("groups", False, 3) for s in schemes)
    assert schemes[2].is_full_precision and not schemes[1].is_full_precision
    assert QuantScheme.for_embeddings(recipe) == QuantScheme(6, "groups", False, 3)
    # a uniform recipe gives every layer the same scheme; defaults are the Recipe's defaults
    assert QuantScheme.for_layer(Recipe(weight_bits=4), 0, 6) == QuantScheme.for_layer(Recipe(weight_bits=4), 5, 6)
    assert QuantScheme.for_layer(Recipe(), 0, 6) == QuantScheme() and QuantScheme().num_groups == Recipe().num_groups == 12
    with pytest.raises(dataclasses.FrozenInstanceError):
        schemes[0].bits = 2
    assert schemes[0].with_bits(2).bits == 2 and schemes[0].bits == 8  # a new scheme, the old one untouched
    assert len({QuantScheme(4, "per-head"), QuantScheme(4, "per-head"), QuantScheme(4, "per-channel")}) == 2  # hashable


def test_equal_schemes_give_equal_fake_quantisation():
    w = torch.randn(12, 10, generator=torch.Generator().manual_seed(5))
    a = QuantScheme.for_layer(Recipe(weight_bits=[4, 3], granularity="groups", num_groups=4), 0, 2)
    b = QuantScheme(4, "groups", True, 4)
    assert a == b and torch.equal(fake_quantize(w, a, "ffn_in", 4), fake_quantize(w, b, "ffn_in", 4))
    # ... and each field of the scheme changes the result
    for other in (b.with_bits(3), QuantScheme(4, "groups", False, 4), QuantScheme(4, "groups", True, 3),
                  QuantScheme(4, "per-tensor", True, 4)):
        assert not torch.equal(fake_quantize(w, other, "ffn_in", 4), fake_quantize(w, b, "ffn_in", 4)), other
    assert fake_quantize(w, QuantScheme(32), "ffn_in", 4) is w  # full precision: nothing to do
    # the simulated model quantises with exactly the scheme built from its recipe
    adapter = Adapter(tiny_model("bert"))
    recipe = Recipe(weight_bits=[8, 4, 2], granularity="per-head", num_groups=4)  # 4 divides the tiny FFN's 64 rows
    sim = simulate(adapter, recipe)
    for i in range(3):
        scheme = QuantScheme.for_layer(recipe, i, 3)
        for role in ROLES:
            want = fake_quantize(getattr(adapter.layer(i), role).weight, scheme, role, adapter.head_size)
            assert torch.equal(sim.layers[i].weight(role), want), (i, role)


@pytest.mark.parametrize("kwargs, message", [
    (dict(bits=9), "9-bit weights are not supported; choose from 2, 3, 4, 5, 6, 7, 8, 16, 32."),
    (dict(bits=1), "1-bit weights are not supported"),
    (dict(bits=4, granularity="per-row"), "Unknown granularity 'per-row'; choose from per-tensor, per-channel"),
    (dict(bits=4, num_groups=0), "num_groups must be between 1 and 4096"),
])
def test_invalid_schemes_are_refused_in_one_sentence(kwargs, message):
    with pytest.raises(HeadroomError) as e:
        QuantScheme(**kwargs)
    assert str(e.value).startswith(message) and str(e.value).count(". ") == 0 and str(e.value).endswith(".")
    with pytest.raises(HeadroomError, match="Integer codes need 2 to 8 bits"):
        quantize_weight(torch.ones(2, 2), QuantScheme(16), "ffn_in", 1)


def test_quant_scheme_is_public():
    import analysis

    assert analysis.QuantScheme is QuantScheme and analysis.fake_quantize is fake_quantize
    assert "QuantScheme" in dir(analysis)


def _tiny_layer_setup(layer=1):
    model = tiny_model("bert", layers=2, heads=2, hidden=4)
    adapter = Adapter(model)
    batch = tiny_batch(batch_size=4, seq_len=6)
    labels = torch.tensor([0, 1, 2, 1])
    with torch.no_grad():
        sim = simulate(adapter, Recipe())
        hidden = sim.forward(batch, output_hidden_states=True).hidden_states[layer]
    prepared = sim.layers
    params = [prepared[layer].weight(r).detach().clone().requires_grad_(True) for r in ROLES]
    return adapter, batch, labels, hidden, prepared, params


def test_power_iteration_matches_explicit_hessian():
    adapter, batch, labels, hidden, prepared, params = _tiny_layer_setup()
    fn = layer_loss_fn(adapter, 1, batch, labels, hidden, prepared)
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]
    assert sum(sizes) == 4 * 16 + 2 * 32  # Q, K, V, O (4x4) and FFN (8x4, 4x8)

    def flat_loss(flat):
        return fn([c.view(s) for c, s in zip(flat.split(sizes), shapes)])

    flat = torch.cat([p.detach().flatten() for p in params])
    H = torch.autograd.functional.hessian(flat_loss, flat, vectorize=True)  # (128, 128), built explicitly
    eig = torch.linalg.eigvalsh((H + H.t()) / 2)
    top = eig[eig.abs().argmax()].item()
    est, iters = top_eigenvalue(fn, params, iters=200, tol=1e-6)
    assert est == pytest.approx(top, rel=0.02), (est, top, eig[-3:], eig[:3])


@pytest.fixture(scope="module")
def ev():
    return Evaluator(tiny_loaded(layers=3), tiny_dataset(40), batch_size=20)


def test_hessian_sensitivity_over_batches(ev):
    s = hessian_sensitivity(ev, iters=5, batches=2, batch_size=10)
    assert len(s.mean) == 3 and len(s.per_batch[0]) == 2 and s.num_examples == 20
    assert all(m != 0 for m in s.mean) and all(sd >= 0 for sd in s.std)
    assert s.seconds > 0 and all(t > 0 for t in s.seconds_per_layer)


def test_allocate_bits_meets_budget_and_follows_sensitivity(ev):
    adapter = ev.adapter
    sens = [5.0, 50.0, 0.5]
    base = Recipe(embedding_bits=8)
    lo = size_report(adapter, base.replace(weight_bits=2, granularity="per-channel")).mb
    hi = size_report(adapter, base.replace(weight_bits=8, granularity="per-channel")).mb
    for budget in (lo + 0.3 * (hi - lo), lo + 0.7 * (hi - lo)):
        alloc = allocate_bits(sens, budget, adapter, (2, 3, 4, 8), "per-channel", base=base)
        assert alloc.size_mb <= budget
        assert size_report(adapter, Recipe.from_dict(alloc.recipe)).mb <= budget
        assert alloc.bits[1] >= alloc.bits[0] >= alloc.bits[2]
        assert alloc.bits != [2, 2, 2]
    assert allocate_bits(sens, hi + 1, adapter, (2, 3, 4, 8), base=base).bits == [8, 8, 8]
    with pytest.raises(HeadroomError):
        allocate_bits(sens, lo * 0.9, adapter, (2, 3, 4, 8), base=base)
    uni = uniform_bits_at_size(adapter, alloc.size_mb, base=base.replace(granularity="per-channel"))
    assert uni["size_mb"] <= alloc.size_mb and uni["at_or_below_size"]


def test_real_int8_keeps_most_argmaxes():
    from analysis.measure.lowbit import real_quantize

    model = tiny_model("bert", layers=2, heads=4, hidden=64)
    batch = tiny_batch(batch_size=32, seq_len=12)
    inputs = dict(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
    with torch.no_grad():
        want = model(**inputs).logits.argmax(-1)
    fp32 = real_quantize(model, "fp32", batch_size=4, seq_len=12, repeats=1)
    for backend in ("torch.ao", "torchao"):
        r = real_quantize(model, "int8", backend=backend, batch_size=4, seq_len=12, repeats=1)
        with torch.no_grad():
            got = r.model(**inputs).logits.argmax(-1)
        assert (got == want).float().mean() >= 0.8, backend
        assert r.latency["ms_per_batch"] > 0 and r.latency["threads"] >= 1
        assert r.serialized_bytes < 0.6 * fp32.serialized_bytes, (backend, r.serialized_bytes, fp32.serialized_bytes)
    assert "deprecated" in " ".join(real_quantize(model, "int8", backend="torch.ao", batch_size=2, seq_len=8, repeats=1).notes)
    with pytest.raises(HeadroomError):
        real_quantize(model, "fp16", batch_size=2, seq_len=8)


def test_real_quantize_with_evaluator_reports_accuracy(ev):
    from analysis.measure.lowbit import real_quantize

    r = real_quantize(ev.loaded.model, "bf16", evaluator=ev, batch_size=4, seq_len=16, repeats=1)
    assert r.num_examples == 40 and 0.0 <= r.metric <= 1.0 and r.agreement_with_fp32 >= 0.5
    d = r.to_dict()
    assert "measured" in d["what"] and d["serialized_mb"] > 0


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    import csv

    d = tmp_path_factory.mktemp("tiny_q")
    loaded = tiny_loaded()
    loaded.model.save_pretrained(str(d / "model"))
    loaded.tokenizer.save_pretrained(str(d / "model"))
    ds = tiny_dataset(30)
    path = d / "tiny.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for t, y in zip(ds.texts, ds.labels):
            w.writerow([t, ds.label_names[y]])
    return str(d / "model"), str(path), d


def test_cli_quantize_sensitivity_allocate(capsys, cli_files):
    from analysis.cli import main

    model, data, d = cli_files
    base = ["--model", model, "--data", data]
    assert main(["quantize", *base, "--bits", "4", "--granularity", "per-head", "--num-groups", "4"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["recipe"]["weight_bits"] == 4 and "simulated" in out["mode"] and out["size"]["mb"] < out["size"]["baseline_mb"]
    assert main(["quantize", *base, "--real", "int8", "--int8-backend", "torch.ao", "--latency-batch-size", "4",
                 "--latency-seq-len", "16"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["real"]["mode"] == "int8" and out["real"]["num_examples"] == 30 and out["latency_ratio_fp32_over_real"] > 0
    sens = d / "sens.json"
    assert main(["sensitivity", *base, "--iters", "3", "--batches", "2", "--hessian-batch-size", "8", "--out", str(sens)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["mean"]) == 3 and sorted(out["order_most_sensitive_first"]) == [0, 1, 2]
    assert main(["allocate-bits", *base, "--budget-mb", "1000", "--sensitivity", str(sens)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["allocation"]["bits"] == [8, 8, 8] and out["uniform"][0]["size_mb"] <= out["allocation"]["size_mb"] + 1e-3  # size_mb of an EvalResult is rounded to 1 kB
    assert main(["allocate-bits", *base, "--budget-mb", "0.01", "--sensitivity", str(sens)]) == 2
    assert "too small" in capsys.readouterr().err
    assert main(["quantize", *base, "--bits", "7"]) == 0  # the Recipe accepts 7 too
    capsys.readouterr()
    assert main(["quantize", *base, "--bits", "9"]) == 2
    assert "not supported" in capsys.readouterr().err


def test_int8_auto_backend_is_a_rule_not_a_timing():
    from analysis.measure import lowbit
    from analysis.testing import tiny_model

    assert lowbit.auto_backend("cpu") == "torch.ao" and lowbit.auto_backend("cuda") == "torchao"
    model = tiny_model("bert")
    builds = [lowbit.build(model, "int8")[1:] for _ in range(2)]
    assert builds[0] == builds[1]  # the same backend and notes every time
    backend, notes = builds[0]
    assert backend.startswith("torch.ao") and lowbit.AUTO_RULE in notes
