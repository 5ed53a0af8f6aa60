"""`headroom search`: the space -> Recipes, a known optimum found, targets kept, studies resumed, rows stored."""

import itertools
import json
import sqlite3

import optuna
import pytest

from analysis.core.recipe import Recipe
from analysis.errors import HeadroomError
from analysis.search.front import dominance, select_front
from analysis.search.objectives import Outcome, Target, parse_objectives
from analysis.search.space import SearchSpace, head_fractions, recipe_from_params, suggest
from analysis.search.study import StudyConfig, finished_trials, open_study, run_study, storage_url, study_outcomes
from analysis.store.store import ResultStore

optuna.logging.set_verbosity(optuna.logging.WARNING)

L, H = 3, 4
ORDER = [(l, h) for h in range(H) for l in range(L)]  # a made-up importance order: head 0 of every layer first
SMALL = SearchSpace(max_head_fraction=0.5, head_fraction_step=0.25, layer_strategies=("top",), max_dropped_layers=1,
                    granularities=("per-channel",))


def fake(recipe: Recipe) -> Outcome:
    """A made-up evaluation: 4 bits cost 0.05 of metric, 8 bits 0.01, a dropped layer 0.2, heads 0.1 for all;
    size = sum over kept layers of bits/32. Under size <= 1.5 the best is one 32-bit and two 8-bit layers: 0.98."""
    bits = recipe.layer_bits(L)
    kept = [i for i in range(L) if i not in recipe.dropped_layers]
    metric = (1.0 - sum(0.05 if bits[i] == 4 else 0.01 if bits[i] == 8 else 0.0 for i in kept)
              - 0.2 * len(recipe.dropped_layers) - 0.1 * len(recipe.masked_heads) / (L * H))
    return Outcome(recipe, metric, (1 - metric) * 100, sum(bits[i] / 32 for i in kept), None, None, None)


def all_params(space: SearchSpace):
    for frac, k, *bits in itertools.product(head_fractions(space), range(space.most_dropped(L) + 1),
                                            *[space.bit_choices] * L):
        yield {"head_fraction": frac, "layer_strategy": "top", "dropped_layers": k, "granularity": "per-channel",
               "embedding_bits": 32, **{f"bits_{i}": b for i, b in enumerate(bits)}}


# ------------------------------------------------------------------------------------------- space
def test_params_map_to_the_recipe_they_describe():
    params = {"head_fraction": 0.25, "layer_strategy": "top", "dropped_layers": 1, "bits_0": 8, "bits_1": 4,
              "bits_2": 4, "granularity": "per-channel", "embedding_bits": 32}
    r = recipe_from_params(params, SMALL, ORDER, L, H)
    assert r.dropped_layers == [2]
    # 25% of the kept layers' 8 heads = 2, taken in importance order, skipping the dropped layer's
    assert r.masked_heads == [(0, 0), (1, 0)]
    assert r.weight_bits == [8, 4, 32]  # the dropped layer's bits are canonical (32)
    assert r.granularity == "per-channel"
    base = recipe_from_params({**params, "head_fraction": 0.0, "dropped_layers": 0, "bits_0": 32, "bits_1": 32,
                               "bits_2": 32}, SMALL, ORDER, L, H)
    assert base.is_baseline()


def test_every_point_of_the_space_is_a_valid_recipe():
    space = SearchSpace(layer_strategies=("top", "bottom", "alternate-odd", "alternate-even", "symmetric"),
                        max_dropped_layers=2, head_fraction_step=0.1, max_head_fraction=0.9)
    sampler = optuna.samplers.RandomSampler(seed=0)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    keys = set()
    for _ in range(200):
        trial = study.ask()
        params = suggest(trial, space, L)
        r = recipe_from_params(params, space, ORDER, L, H)
        r.validate(L, H)
        assert len(r.dropped_layers) <= 2 and len(r.masked_heads) <= round(0.9 * (L - len(r.dropped_layers)) * H)
        assert not set(r.dropped_layers) & {l for l, _ in r.masked_heads}
        keys.add(r.key())
        study.tell(trial, [0.0, 0.0])
    assert len(keys) > 150  # the space really varies every dimension


def test_space_rejects_what_cannot_be_searched():
    with pytest.raises(HeadroomError, match="layer strategy"):
        SearchSpace(layer_strategies=("custom",))
    with pytest.raises(HeadroomError, match="not supported"):
        SearchSpace(bit_choices=(32, 1))
    with pytest.raises(HeadroomError, match="below 1"):
        SearchSpace(max_head_fraction=1.0)


def test_objectives_and_targets_parse():
    assert parse_objectives("accuracy,latency") == "latency" and parse_objectives("accuracy, size") == "size"
    with pytest.raises(HeadroomError, match="--objectives"):
        parse_objectives("accuracy,speed")
    t = Target.parse("speedup>=2, drop<=1,size<=40")
    assert (t.min_speedup, t.max_drop, t.max_size_mb) == (2.0, 1.0, 40.0)
    with pytest.raises(HeadroomError, match="speedup>="):
        Target.parse("speedup<=2")
    with pytest.raises(HeadroomError, match="not a limit"):
        Target.parse("accuracy>=0.9")
    o = Outcome(Recipe(), 0.9, 1.5, 30.0, 10.0, 2.5, 1.0)
    assert t.violations(o) == [-0.5, 0.5, -10.0] and not t.met_by(o)
    assert Target.parse("drop<=2").met_by(o)


# ------------------------------------------------------------------------------------------- study
def _study(tmp_path, config, name="s", identity=None):
    """A study in an SQLite file under tmp_path (tmp_path None: in memory, for the many-trial cases)."""
    url = None if tmp_path is None else storage_url(tmp_path / "store.sqlite")
    return open_study(url, name, config, identity or {"case": "fake"}, L)


@pytest.mark.parametrize("sampler,seed", [("nsga2", 1), ("tpe", 0)])
def test_search_finds_the_known_optimum_under_a_size_budget(tmp_path, sampler, seed):
    target = Target(max_size_mb=1.5)
    feasible = [fake(recipe_from_params(p, SMALL, ORDER, L, H)) for p in all_params(SMALL)]
    best_possible = max(o.metric for o in feasible if target.met_by(o))
    assert best_possible == pytest.approx(0.98)  # the optimum the docstring computes by hand
    config = StudyConfig(cost="size", trials=60, sampler=sampler, seed=seed, target=target, space=SMALL)
    study = _study(None, config)
    run_study(study, fake, config, pruning_order=ORDER, num_layers=L, num_heads=H)
    front = select_front(study_outcomes(study), target, "size")
    assert max(o.metric for o in front) == pytest.approx(best_possible)  # 60 of the 162 points of the space
    assert all(target.met_by(o) for o in front)  # the target is a filter on the front
    # the front is a front: no two of its points dominate one another
    for a, b in itertools.permutations(front, 2):
        assert not (a.metric >= b.metric and a.size_mb <= b.size_mb and (a.metric > b.metric or a.size_mb < b.size_mb))


def test_constraints_steer_the_sampler(tmp_path):
    """With the target as NSGA-II constraints, most trials of the later generations meet it."""
    target = Target(max_size_mb=1.0)
    config = StudyConfig(cost="size", trials=40, sampler="nsga2", seed=0, target=target, space=SMALL)
    study = _study(None, config)
    run_study(study, fake, config, pruning_order=ORDER, num_layers=L, num_heads=H)
    trials = finished_trials(study)
    assert all(t.user_attrs["constraint"] == target.violations(fake(Recipe.from_dict(t.user_attrs["outcome"]["recipe"])))
               for t in trials)
    late = [t for t in trials[20:] if max(t.user_attrs["constraint"]) <= 0]
    early = [t for t in trials[1:11] if max(t.user_attrs["constraint"]) <= 0]
    assert len(late) > len(early)


def test_a_study_resumes_by_name_and_refuses_another_search(tmp_path):
    config = StudyConfig(cost="size", trials=5, seed=0, population_size=4, space=SMALL)
    evaluated = []

    def counting(recipe):
        evaluated.append(recipe.key())
        return fake(recipe)

    study = _study(tmp_path, config)
    assert run_study(study, counting, config, pruning_order=ORDER, num_layers=L, num_heads=H) == 5
    first = [t.params for t in finished_trials(study)]
    assert first[0]["dropped_layers"] == 0 and first[0]["bits_0"] == 32  # the baseline is trial 0
    config.trials = 9
    again = _study(tmp_path, config)
    assert run_study(again, counting, config, pruning_order=ORDER, num_layers=L, num_heads=H) == 4
    trials = finished_trials(again)
    assert len(trials) == 9 and [t.params for t in trials[:5]] == first
    assert len(evaluated) == len(set(evaluated))  # a recipe met again (a resumed study) is not re-evaluated
    assert run_study(_study(tmp_path, config), counting, config, pruning_order=ORDER, num_layers=L, num_heads=H) == 0
    with pytest.raises(HeadroomError, match="another search"):
        _study(tmp_path, config, identity={"case": "other"})


def test_optuna_tables_live_beside_the_results_store(tmp_path):
    path = tmp_path / "store.sqlite"
    ResultStore(path)  # the store first, then the study
    config = StudyConfig(cost="size", trials=3, population_size=2, space=SMALL)
    run_study(_study(tmp_path, config), fake, config, pruning_order=ORDER, num_layers=L, num_heads=H)
    store = ResultStore(path)  # reopened: migrates nothing, reads as before
    assert store.count() == 0
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"runs", "studies", "trials", "alembic_version"} <= tables
        assert conn.execute("PRAGMA user_version").fetchone()[0] >= 1
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    other = tmp_path / "optuna_first.sqlite"  # the study first, then the store
    open_study(storage_url(other), "s", config, {"case": "fake"}, L)
    assert ResultStore(other).count() == 0


def test_dominance_against_uniform_recipes():
    front = [Outcome(Recipe(name="a"), 0.9, 0, 10.0, None, None, None), Outcome(Recipe(name="b"), 0.8, 0, 5.0, None, None, None)]
    uniform = [Outcome(Recipe(name="u1"), 0.85, 0, 10.0, None, None, None),
               Outcome(Recipe(name="u2"), 0.8, 0, 5.0, None, None, None),
               Outcome(Recipe(name="u3"), 0.95, 0, 8.0, None, None, None)]
    rows = {r["recipe"]: r for r in dominance(front, uniform, "size")}
    assert rows["u1"]["front_dominates"] and rows["u1"]["best_front_metric_at_no_more_cost"] == 0.9
    assert not rows["u2"]["front_dominates"] and rows["u2"]["front_at_least_as_good"]  # a tie
    assert not rows["u3"]["front_at_least_as_good"] and rows["u3"]["best_front_metric_at_no_more_cost"] == 0.8


# ------------------------------------------------------------------------------------------- real, tiny
@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    """A tiny random BERT saved as a directory and its labelled CSV (what the CLI takes)."""
    import csv

    from analysis.testing import tiny_dataset, tiny_loaded

    d = tmp_path_factory.mktemp("tiny")
    loaded = tiny_loaded()
    loaded.model.save_pretrained(str(d / "model"))
    loaded.tokenizer.save_pretrained(str(d / "model"))
    ds = tiny_dataset(40)
    with open(d / "tiny.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["utterance", "intent"])
        w.writerows([t, ds.label_names[y]] for t, y in zip(ds.texts, ds.labels))
    return str(d / "model"), str(d / "tiny.csv")


def test_search_command_stores_rows_keeps_the_target_and_measures_the_front(tmp_path, tiny_files, capsys):
    from analysis.cli import main

    model, data = tiny_files
    store_path = tmp_path / "store.sqlite"
    argv = ["search", "--model", model, "--data", data, "--text-column", "utterance", "--label-column", "intent",
            "--max-length", "16", "--objectives", "accuracy,latency", "--target", "size<=4.07", "--trials", "5",
            "--population", "2", "--repeats", "1", "--store", str(store_path), "--study", "tiny"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["trials"] == 5 and out["trials_run_now"] == 5 and out["objectives"] == ["metric (max)", "latency (min)"]
    rows = ResultStore(store_path).list(source="search")
    assert len(rows) == out["store_rows_written"] >= len(out["uniform"]) + 1  # the baseline trial + uniform recipes
    assert {r["mode"] for r in rows} == {"simulated"}
    assert out["front"] and all(f["size_mb"] <= 4.07 for f in out["front"])
    for f in out["front"]:
        assert f["predicted_ms"] > 0 and (f["measured_ms"] is None or f["measured_speedup"] > 0)
    assert len(out["latency_model"]["points"]) == 3 and out["latency_model"]["ms_per_gflop"] > 0
    assert "predicted" in out["labels"]["predicted_ms"] and "measured" in out["labels"]["measured_ms"]
    assert main(argv) == 0  # resumed by name: the study already holds 5 trials
    again = json.loads(capsys.readouterr().out)
    assert again["trials_run_now"] == 0 and again["latency_model"] == out["latency_model"]
    assert len(again["front"]) == len(out["front"]) and again["front"] == [{**f, **{k: g[k] for k in ("measured_ms", "baseline_measured_ms", "measured_speedup")}}
                              for f, g in zip(out["front"], again["front"])]  # same trials, same front (re-timed)
    assert main(argv[:-1] + ["tiny"] + ["--objectives", "accuracy,size"]) == 2  # same name, another search
    assert "another search" in capsys.readouterr().err
    assert main(argv + ["--objectives", "accuracy,speed"]) == 2
    assert "--objectives" in capsys.readouterr().err


def test_front_is_scored_once_on_the_evaluation_split_it_never_chose_with(tmp_path):
    from analysis.measure.evaluate import Evaluator
    from analysis.search.run import search
    from analysis.testing import tiny_dataset, tiny_loaded

    loaded = tiny_loaded()
    chooser, held = Evaluator(loaded, tiny_dataset(24, seed=1)), Evaluator(loaded, tiny_dataset(20, seed=2))
    config = StudyConfig(cost="size", trials=4, sampler="nsga2", seed=0, population_size=2,
                         target=Target.parse(None), space=SearchSpace())
    out = search(chooser, config, storage_path=tmp_path / "s.sqlite", repeats=1, score_on=held)
    assert out["selection"]["chosen_on"] == chooser.dataset.name and out["selection"]["scored_examples"] == 20
    assert out["selection"]["baseline_eval_metric"] == held.baseline.metric
    for row in out["front"]:
        assert row["eval_metric"] == round(float(held.evaluate(Recipe.from_dict(row["recipe"])).metric), 4)
    plain = search(chooser, config, storage_path=tmp_path / "s.sqlite", repeats=1)  # resumed, nothing scored
    assert plain["selection"]["scored_on"] is None and all("eval_metric" not in r for r in plain["front"])
