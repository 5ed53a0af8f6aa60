"""Pruning during recovery (analysis/recovery/pruning.py): a recipe's zeros survive fine-tuning, gradual
magnitude and movement pruning end at exactly the final fraction of zeros per matrix, the cubic schedule,
the straight-through gradient of movement's scores, config validation and the CLI flags."""

from __future__ import annotations

import json

import pytest
import torch

from analysis.core.adapters import ROLES, Adapter
from analysis.core.recipe import Recipe
from analysis.core.sparsity import magnitude_masks
from analysis.errors import HeadroomError
from analysis.recovery.config import RecoveryConfig
from analysis.recovery.loop import recover
from analysis.recovery.pruning import Pruner, cubic_sparsity, pruned_mask, slots, topk_keep
from analysis.recovery.student import build_student
from analysis.testing import tiny_dataset, tiny_loaded, tiny_model


@pytest.fixture(scope="module")
def loaded():
    return tiny_loaded(layers=3, heads=4, hidden=32)


def quick(**changes) -> RecoveryConfig:
    base = dict(holdout=0, epochs=2, batch_size=16, lr=1e-3, warmup_ratio=0.0, device="cpu", eval_split="none")
    return RecoveryConfig.for_objective("ce", **{**base, **changes})


def zeros_per_matrix(model, roles=ROLES) -> list[tuple[int, int]]:
    """(zeros, weights) of each role matrix of each layer."""
    a = Adapter(model)
    out = []
    for j in range(a.num_layers):
        parts = a.layer(j)
        for role in roles:
            w = getattr(parts, role).weight
            out.append((int((w == 0).sum()), w.numel()))
    return out


# ------------------------------------------------------------------------------------- schedule
def test_cubic_schedule_values():
    assert cubic_sparsity(0.0, 0.9, start=0.1, end=0.7) == 0.0
    assert cubic_sparsity(0.1, 0.9, start=0.1, end=0.7) == 0.0
    assert cubic_sparsity(0.7, 0.9, start=0.1, end=0.7) == 0.9
    assert cubic_sparsity(1.0, 0.9, start=0.1, end=0.7) == 0.9
    # halfway through: s_f (1 - 0.5^3) = 0.9 * 0.875
    assert cubic_sparsity(0.4, 0.9, start=0.1, end=0.7) == pytest.approx(0.9 * 0.875)
    values = [cubic_sparsity(t / 100, 0.9, start=0.1, end=0.7) for t in range(101)]
    assert all(a <= b for a, b in zip(values, values[1:]))  # never un-prunes
    # degenerate: start = end = 0 prunes to the final fraction from the first step on
    assert cubic_sparsity(0.0, 0.5, start=0.0, end=0.0) == 0.5


def test_pruned_mask_is_exact_and_breaks_ties_by_position():
    v = torch.tensor([[0.0, 0.0, 0.0], [0.0, 2.0, 1.0]])
    m = pruned_mask(v, 0.5)
    assert int(m.sum()) == 3 and m.flatten().tolist() == [True, True, True, False, False, False]


def test_fast_pruned_mask_equals_smallest_k():
    from analysis.core.sparsity import smallest_k

    torch.manual_seed(1)
    for values in (torch.randn(48, 20), torch.randint(0, 3, (48, 20)).float(), torch.zeros(7, 9)):
        for s in (0.0, 0.1, 0.5, 0.51, 0.97, 1.0):
            assert torch.equal(pruned_mask(values, s).flatten(), smallest_k(values.flatten(), round(s * values.numel())))


# ------------------------------------------------------------------------------------- the recipe's zeros kept
def test_recovery_keeps_the_recipes_zeros_exactly(loaded, tmp_path):
    recipe = Recipe(sparsity=0.5, sparsity_roles=["query", "ffn_in"], masked_heads=[(0, 1)])
    before = build_student(loaded.model, recipe).model
    expected = zeros_per_matrix(before, ["query", "ffn_in"])
    out = tmp_path / "kept"
    res = recover(loaded, recipe, quick(epochs=3, lr=3e-3), train=tiny_dataset(n=32, seed=3), out_dir=str(out))
    assert res["pruning"]["recipe_zeros_kept"] == sum(z for z, _ in expected) > 0
    from analysis.io.models import load_model

    after = load_model(str(out), device="cpu").model
    assert zeros_per_matrix(after, ["query", "ffn_in"]) == expected  # exact zero count per matrix
    a, b = Adapter(before), Adapter(after)
    for j in range(a.num_layers):
        for role in ("query", "ffn_in"):  # the same positions
            assert torch.equal(getattr(a.layer(j), role).weight == 0, getattr(b.layer(j), role).weight == 0)
        assert not torch.equal(a.layer(j).ffn_in.weight, b.layer(j).ffn_in.weight)  # and it did train
    assert sum(z for z, _ in zeros_per_matrix(after, ["key", "value"])) == 0
    assert res["saved"]["sparse_weights_bytes"]["bitmask"] < res["saved"]["sparse_weights_bytes"]["dense_with_zeros"]


def test_without_the_mask_fine_tuning_would_fill_the_zeros(loaded):
    """The property above can fail: the same SGD steps on an unmasked student make the matrices dense again."""
    recipe = Recipe(sparsity=0.5, sparsity_roles=["query"])
    student = build_student(loaded.model, recipe)
    student.pruner = None  # no masked forward
    opt = torch.optim.SGD(student.model.parameters(), lr=0.5)
    loss = student(_batch(loaded)).logits.square().sum()
    loss.backward()
    opt.step()
    assert sum(z for z, _ in zeros_per_matrix(student.export(), ["query"])) < \
        sum(z for z, _ in zeros_per_matrix(build_student(loaded.model, recipe).model, ["query"]))


def _batch(loaded):
    from analysis.io.batching import collate, tokenize

    ds = tiny_dataset(n=8, seed=1)
    enc, _ = tokenize(ds, loaded.tokenizer, 32)
    return collate(enc["input_ids"], enc.get("token_type_ids"), list(range(8)), loaded.tokenizer.pad_token_id or 0)


# ------------------------------------------------------------------------------------- gradual pruning
@pytest.mark.parametrize("method", ["magnitude", "movement"])
@pytest.mark.parametrize("sparsity", [0.3, 0.9])
def test_gradual_pruning_ends_at_exactly_the_final_fraction_per_matrix(loaded, tmp_path, method, sparsity):
    roles = ["query", "value", "ffn_out"]
    config = quick(prune_method=method, prune_sparsity=sparsity, prune_roles=roles, prune_warmup=0.2,
                   prune_end=0.6, holdout=8, eval_every=1)
    out = tmp_path / "pruned"
    res = recover(loaded, Recipe(), config, train=tiny_dataset(n=40, seed=5), out_dir=str(out))
    from analysis.io.models import load_model

    reloaded = load_model(str(out), device="cpu").model
    for zeros, n in zeros_per_matrix(reloaded, roles):
        assert zeros == round(sparsity * n)
    untouched = [z for z, _ in zeros_per_matrix(reloaded, ["key", "attention_output", "ffn_in"])]
    assert sum(untouched) == 0  # only the chosen roles lose weights
    emb = Adapter(reloaded).word_embeddings.weight
    assert int((emb == 0).sum()) == int((Adapter(loaded.model).word_embeddings.weight == 0).sum())  # dense
    card = json.loads((out / "recovery.json").read_text())
    assert card["pruning"]["method"] == method and card["pruning"]["zeros"] == sum(
        round(sparsity * n) for _, n in zeros_per_matrix(reloaded, roles))
    assert "not speed" in card["pruning"]["note"] and "not speed" in (out / "MODEL_CARD.md").read_text()
    # the chosen checkpoint is one at the final sparsity (the schedule ends at 60% of 6 steps)
    assert res["selection"]["chosen_step"] >= 4
    sizes = res["saved"]["sparse_weights_bytes"]
    assert sizes["bitmask"] < sizes["dense_with_zeros"]


def test_gradual_magnitude_with_a_degenerate_schedule_is_one_shot_magnitude(loaded):
    """prune_warmup = prune_end = 0: the first step's masks are the recipe sparsity's local magnitude masks."""
    config = quick(prune_method="magnitude", prune_sparsity=0.6, prune_warmup=0.0, prune_end=0.0)
    student = build_student(loaded.model, Recipe(), config=config)
    student.pruner.update(0, 0.0)
    oneshot = magnitude_masks(Adapter(loaded.model), Recipe(sparsity=0.6))
    a = student.adapter
    names = {id(p): n for n, p in student.model.named_parameters()}
    keep = student.pruner.keep_masks()
    for (i, role), mask in oneshot.items():
        assert torch.equal(~keep[names[id(getattr(a.layer(i), role).weight)]], mask)
    assert len(oneshot) == len(keep) == 18


def test_movement_scores_get_the_straight_through_gradient(loaded):
    """dL/dS = dL/dW' * W with W' = W * TopK(S): checked against autograd of the unmasked product."""
    torch.manual_seed(0)
    w = torch.randn(4, 5, requires_grad=True)
    s = torch.randn(4, 5, requires_grad=True)
    x = torch.randn(3, 5)
    (x @ (w * topk_keep(s, 0.5)).T).square().sum().backward()
    keep = (~pruned_mask(s, 0.5)).float()
    wp = (w * keep).detach().requires_grad_(True)
    (x @ wp.T).square().sum().backward()
    assert torch.allclose(s.grad, wp.grad * w.detach())
    assert torch.allclose(w.grad, wp.grad * keep)  # pruned weights get no gradient
    # in the student: after one backward, every pruned matrix's scores have a gradient
    config = quick(prune_method="movement", prune_sparsity=0.5, prune_warmup=0.0, prune_end=0.5)
    student = build_student(loaded.model, Recipe(), config=config)
    student.pruner.update(0, 0.25)
    student(_batch(loaded)).logits.square().sum().backward()
    grads = [p.grad for p in student.pruner.score_parameters()]
    assert len(grads) == 18 and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_movement_keeps_the_weights_that_move_away_from_zero_where_magnitude_keeps_the_large_ones():
    """Sanh et al.'s case for movement: large weights that training shrinks (noise features) and small ones
    it grows (the signal). After the same steps, movement's TopK(S) keeps the signal, magnitude the noise."""
    from torch.func import functional_call

    from analysis.recovery.pruning import Slot

    torch.manual_seed(0)
    signal, noise = 8, 8
    x = torch.randn(512, signal + noise)
    y = x[:, :signal] @ torch.ones(signal, 1)  # only the first 8 features matter, weight 1 each
    kept = {}
    for method in ("movement", "magnitude"):
        model = torch.nn.Sequential(torch.nn.Linear(signal + noise, 1, bias=False))
        with torch.no_grad():  # small weights on the signal, large ones on the noise
            model[0].weight.copy_(torch.cat([torch.full((1, signal), 0.1), torch.full((1, noise), 0.5)], 1))
        pruner = Pruner(model, method=method, targets=[Slot("0.weight", 0, 1, 0, "ffn_in")], final=0.5,
                        start=0.5, end=0.5)
        groups = [{"params": list(model.parameters()), "lr": 1e-2}]
        if method == "movement":
            groups.append({"params": pruner.score_parameters(), "lr": 1e-2})
        optimizer = torch.optim.Adam(groups)
        for step in range(20):  # fraction < 0.5: scores accumulate, nothing pruned yet
            pruner.update(step, step / 40)
            params = dict(model.named_parameters())
            out = functional_call(model, {**params, **pruner.swapped(params)}, (x,))
            torch.nn.functional.mse_loss(out, y).backward()
            optimizer.step()
            optimizer.zero_grad()
        assert pruner.mask_sparsity == 0.0
        pruner.update(20, 0.5)  # the final sparsity: half the weights go
        kept[method] = pruner.keep_masks()["0.weight"][0]
    assert kept["movement"].tolist() == [True] * signal + [False] * noise
    assert kept["magnitude"].tolist() == [False] * signal + [True] * noise


def test_fused_qkv_is_pruned_per_row_block():
    model = tiny_model("modernbert")
    config = quick(prune_method="magnitude", prune_sparsity=0.5, prune_roles=["query", "key"], prune_warmup=0.0,
                   prune_end=0.0)
    student = build_student(model, Recipe(), config=config)
    student.pruner.update(0, 0.0)
    out = student.export()
    a = Adapter(out)
    for j in range(a.num_layers):
        q, k, v = (a.layer(j).query.weight, a.layer(j).key.weight, a.layer(j).value.weight)
        assert int((q == 0).sum()) == round(0.5 * q.numel()) == int((k == 0).sum())
        assert int((v == 0).sum()) == 0


# ------------------------------------------------------------------------------------- config and CLI
@pytest.mark.parametrize("changes, words", [
    ({"prune_method": "magnitude", "prune_sparsity": 1.0}, "below 1"),
    ({"prune_method": "magnitude", "prune_sparsity": -0.1}, "at least 0"),
    ({"prune_method": "magnitude"}, "needs a prune_sparsity"),
    ({"prune_sparsity": 0.5}, "needs a prune_method"),
    ({"prune_method": "movement", "prune_sparsity": 0.5, "prune_end": 0.0, "prune_warmup": 0.0}, "learns its scores"),
    ({"prune_method": "magnitude", "prune_sparsity": 0.5, "prune_warmup": 0.8, "prune_end": 0.5}, "comes before"),
    ({"prune_method": "magnitude", "prune_sparsity": 0.5, "prune_end": 1.5}, "at most 1"),
    ({"prune_method": "magnitude", "prune_sparsity": 0.5, "prune_roles": ["word_embeddings"]}, "prune_roles"),
    ({"prune_method": "magnitude", "prune_sparsity": 0.5, "prune_roles": []}, "prune_roles"),
    ({"prune_method": "l0"}, "must be one of"),
])
def test_impossible_pruning_settings_are_refused_in_one_sentence(changes, words):
    with pytest.raises(HeadroomError, match=words) as e:
        quick(**changes)
    assert "\n" not in str(e.value)


def test_recipe_sparsity_and_pruning_together_are_refused(loaded):
    with pytest.raises(HeadroomError, match="not both"):
        build_student(loaded.model, Recipe(sparsity=0.5), config=quick(prune_method="magnitude", prune_sparsity=0.5))


def test_config_with_pruning_round_trips():
    c = quick(prune_method="movement", prune_sparsity=0.9, prune_roles=["ffn_in"], prune_lr=0.05)
    assert RecoveryConfig.from_json(c.to_json()) == c


def test_cli_prune_flags_round_trip(loaded, tmp_path, capsys):
    from analysis.cli import build_parser
    from analysis.cli.recover import config_from_args

    args = build_parser().parse_args(["recover", "--prune", "movement", "--prune-sparsity", "0.9",
                                      "--prune-roles", "query,ffn_in", "--prune-end", "0.5", "--prune-lr", "0.02"])
    c = config_from_args(args)
    assert (c.prune_method, c.prune_sparsity, c.prune_roles, c.prune_end, c.prune_lr) == \
        ("movement", 0.9, ["query", "ffn_in"], 0.5, 0.02)
    assert config_from_args(build_parser().parse_args(["recover"])).prune_method == "none"
    from analysis.cli import main

    assert main(["recover", "--prune", "magnitude", "--prune-sparsity", "1"]) == 2
    err = capsys.readouterr().err
    assert "below 1" in err and "Traceback" not in err
