"""ONNX export of materialized recipes: ONNX Runtime gives the torch model's logits, for every family (DeBERTa-v3, ModernBERT and XLM-RoBERTa included)."""

import json

import numpy as np
import pytest
import torch

from analysis.cli import main
from analysis.core.export import FP32_FILE, INT8_FILE, check_batch, export_onnx, input_names, load_onnx_export
from analysis.core.materialize import materialize
from analysis.core.recipe import Recipe
from analysis.errors import HeadroomError
from analysis.testing import ALL_ARCHITECTURES, tiny_loaded, tiny_model

pytest.importorskip("onnxruntime")

# uneven heads per layer and a dropped layer: the shapes transformers 5 configs cannot describe
RECIPE = Recipe(masked_heads=[(0, 1), (0, 2), (2, 3)], dropped_layers=[1])


@pytest.mark.parametrize("arch", ALL_ARCHITECTURES)
def test_onnx_logits_equal_torch_for_a_pruned_model(arch, tmp_path):
    # ALBERT shares one layer's weights: the same heads must go in every layer
    recipe = Recipe(masked_heads=[(i, 1) for i in range(3)]) if arch == "albert" else RECIPE
    model = materialize(tiny_model(arch), recipe)
    result = export_onnx(model, None, tmp_path / "out", recipe=recipe)
    assert result.max_abs_diff_fp32 < 1e-4
    assert model.training is False  # the export leaves the model as it found it (dropout off)
    # a batch of another shape than the one exported: the axes are dynamic
    inputs = check_batch(model.config.vocab_size, batch_size=5, seq_len=23, seed=3)
    ort = load_onnx_export(tmp_path / "out").logits(inputs)
    with torch.no_grad():
        ref = model(**{n: inputs[n] for n in input_names(model)}).logits.numpy()
    assert np.abs(ort - ref).max() < 1e-4
    assert json.loads((tmp_path / "out" / "recipe.json").read_text())["masked_heads"] == \
        [list(p) for p in recipe.masked_heads]


def test_int8_export_is_smaller_and_close(tmp_path):
    loaded = tiny_loaded(hidden=64, heads=4)
    result = export_onnx(materialize(loaded.model, RECIPE), loaded.tokenizer, tmp_path / "q", int8=True,
                         per_channel=True)
    assert result.files[INT8_FILE] < result.files[FP32_FILE] / 2
    assert result.files["model.int8-per-channel.onnx"] < result.files[FP32_FILE] / 2
    assert 0 < result.max_abs_diff_int8_per_channel < 1.0
    pc = load_onnx_export(tmp_path / "q", per_channel=True, threads=1)
    assert pc(**check_batch(loaded.model.config.vocab_size)).logits.shape == (3, 3)
    assert result.max_abs_diff_int8 is not None and result.max_abs_diff_int8 < 1.0
    clf = load_onnx_export(tmp_path / "q", int8=True, threads=1)
    batch = check_batch(loaded.model.config.vocab_size)
    assert clf(**batch).logits.shape == (3, 3)
    assert (tmp_path / "q" / "tokenizer.json").exists()


@pytest.mark.parametrize("recipe", [Recipe(shared_layers=[[0, 1, 2]]), Recipe(shared_layers=[[0, 1]], share_mode="mean"),
                                    Recipe(ranks=[(0, "ffn_in", 8), (1, "query", 4)], embedding_size=16)],
                         ids=["shared-first", "shared-mean", "low-rank-factorised"])
def test_onnx_export_of_shared_and_low_rank_models_gives_the_torch_logits(recipe, tmp_path):
    """Tied modules are exported (once or per use, either way the same logits), and so are LowRankLinear and
    FactorizedEmbedding; the int8 model stays close."""
    loaded = tiny_loaded(hidden=64, heads=4)
    model = materialize(loaded.model, recipe)
    result = export_onnx(model, loaded.tokenizer, tmp_path / "out", recipe=recipe, int8=True)
    assert result.max_abs_diff_fp32 < 1e-4
    assert result.max_abs_diff_int8 is not None and result.max_abs_diff_int8 < 1.0
    inputs = check_batch(model.config.vocab_size, batch_size=4, seq_len=19, seed=5)
    with torch.no_grad():
        ref = model(**{n: inputs[n] for n in input_names(model)}).logits.numpy()
    assert np.abs(load_onnx_export(tmp_path / "out").logits(inputs) - ref).max() < 1e-4


def test_int8_export_of_a_shared_model_quantises_every_use_and_stores_the_shared_weights_once(tmp_path):
    """quantize_dynamic alone quantises a tied weight for one MatMul and leaves its other uses on fp32 (the int8
    file of a pairs-shared demo was 38.9 MB against 23.1 unshared); with a copy per use, folded back after, every
    MatMul is int8 and the shared weights are stored once."""
    import collections

    import onnx

    loaded = tiny_loaded(hidden=64, heads=4, layers=3)
    counts, sizes = {}, {}
    for name, recipe in (("plain", Recipe()), ("shared", Recipe(shared_layers=[[0, 1, 2]]))):
        result = export_onnx(materialize(loaded.model, recipe), None, tmp_path / name, recipe=recipe, int8=True)
        assert result.max_abs_diff_int8 < 1.0
        graph = onnx.load(str(tmp_path / name / INT8_FILE)).graph
        counts[name] = collections.Counter(n.op_type for n in graph.node)["MatMulInteger"]
        sizes[name] = sum(i.ByteSize() for i in graph.initializer if "quantized" in i.name and len(i.dims) == 2)
    assert counts["shared"] == counts["plain"] > 0
    assert sizes["shared"] < sizes["plain"]


def test_missing_int8_file_is_one_sentence(tmp_path):
    export_onnx(tiny_model("bert"), None, tmp_path / "e")
    with pytest.raises(HeadroomError, match="no model.int8.onnx"):
        load_onnx_export(tmp_path / "e", int8=True)
    with pytest.raises(HeadroomError, match="--per-channel"):
        load_onnx_export(tmp_path / "e", per_channel=True)


def test_cli_export_refuses_a_non_empty_directory(capsys, tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "notes.txt").write_text("keep")
    code = main(["export", "--model", "demo", "--format", "onnx", "--out", str(d)])
    out, err = capsys.readouterr()
    assert code == 2 and "not empty" in err and (d / "notes.txt").read_text() == "keep"


# ------------------------------------------------------------------------------ backends
def test_backends_compare_scores_sizes_and_times_every_backend_against_torch_fp32():
    from analysis.core.recipe import Recipe
    from analysis.measure.backends import BACKENDS, compare_backends, parse_shapes, table_rows
    from analysis.measure.evaluate import Evaluator
    from analysis.testing import tiny_dataset, tiny_loaded

    ev = Evaluator(tiny_loaded(), tiny_dataset(24), batch_size=8)
    recipe = Recipe(masked_heads=[(0, 1), (1, 0), (1, 2)])
    report = compare_backends(ev, recipe, shapes=[(4, 16), (1, 8)], threads=[1, 2], rounds=3, warmup=1)
    by = {r.backend: r for r in report.results}
    assert list(by) == list(BACKENDS)
    # ORT fp32 runs the same graph as torch fp32: the same predictions, example for example
    assert by["ORT fp32"].agreement_with_baseline == by["torch fp32"].agreement_with_baseline
    assert all(r.num_examples == 24 and r.metric is not None and r.size_bytes > 0 for r in by.values())
    assert by["ORT int8"].size_bytes < by["ORT fp32"].size_bytes  # int8 weights on disk
    assert by["ORT int8 per-channel"].size_bytes < by["ORT fp32"].size_bytes
    assert "per_channel" in by["ORT int8 per-channel"].built_with and "per matrix" in by["ORT int8"].built_with
    for r in by.values():
        assert [(l["shape"], l["threads"]) for l in r.latency] == [("4x16", 1), ("1x8", 1), ("4x16", 2), ("1x8", 2)]
        assert all(l["rounds"] == 3 and l["ratio_ci95"][0] <= l["ratio"] <= l["ratio_ci95"][1] for l in r.latency)
    assert report.export["max_abs_diff_fp32"] < 1e-3
    d = report.to_dict()
    assert d["shapes"] == ["4x16", "1x8"] and len(table_rows(report)) == 4 * len(BACKENDS)
    assert 0 < report.export["max_abs_diff_int8_per_channel"] < 1.0
    assert parse_shapes("32x128, 1x16") == [(32, 128), (1, 16)]
    for bad in ("32", "0x4", "axb", ""):
        with pytest.raises(HeadroomError):
            parse_shapes(bad)


def test_backends_compare_a_student_against_its_teacher():
    """`reference`: a smaller model (a recovered student) timed and compared against another one."""
    from analysis.measure.backends import compare_backends
    from analysis.measure.evaluate import Evaluator
    from analysis.testing import tiny_dataset, tiny_loaded

    data = tiny_dataset(16)
    teacher = Evaluator(tiny_loaded(layers=3, seed=0), data, batch_size=8)
    student = Evaluator(tiny_loaded(layers=1, seed=1), data, batch_size=8)
    report = compare_backends(student, shapes=[(4, 16)], threads=[1], rounds=3, warmup=1,
                              backends=("torch fp32",), reference=teacher)
    (res,) = report.results
    agreement = float((student.baseline.predictions == teacher.baseline.predictions).mean())
    assert res.agreement_with_baseline == agreement  # against the teacher's predictions, not its own (1.0)
    assert report.baseline_metric == teacher.baseline.metric
    assert report.baseline_model == teacher.loaded.name
    assert res.latency[0]["baseline_ms"] > 0
    with pytest.raises(HeadroomError, match="same examples"):
        compare_backends(student, backends=("torch fp32",), reference=Evaluator(tiny_loaded(), tiny_dataset(8)))


def test_a_sparse_recipe_also_gets_the_csr_backend_with_the_dense_models_predictions():
    from analysis.core.recipe import Recipe
    from analysis.measure.backends import SPARSE_BACKEND, compare_backends
    from analysis.measure.evaluate import Evaluator
    from analysis.testing import tiny_dataset, tiny_loaded

    ev = Evaluator(tiny_loaded(), tiny_dataset(24), batch_size=8)
    report = compare_backends(ev, Recipe(sparsity=0.9), shapes=[(4, 16)], threads=[1], rounds=3, warmup=1,
                              backends=None)
    by = {r.backend: r for r in report.results}
    assert SPARSE_BACKEND in by and "ORT fp32" in by
    csr, dense = by[SPARSE_BACKEND], by["torch fp32"]
    assert csr.agreement_with_baseline == dense.agreement_with_baseline and csr.metric == dense.metric
    assert csr.size_bytes < dense.size_bytes and "CSR" in csr.notes[0]
    plain = compare_backends(ev, Recipe(masked_heads=[(0, 1)]), shapes=[(4, 16)], threads=[1], rounds=3, warmup=1,
                             backends=("torch fp32",))
    assert [r.backend for r in plain.results] == ["torch fp32"]
