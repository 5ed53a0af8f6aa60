"""The Optuna study behind `headroom search`: trials -> Recipes -> (metric, cost), resumable.

`run_study` is the loop, on any `evaluate(recipe) -> Outcome` (the tests give it a made-up one
whose optimum is known); `search` (search/run.py) gives it the Evaluator's. The study lives in an
SQLite file through Optuna's RDB storage — by default the results store's own file: Optuna's
tables (`studies`, `trials`, ...; `alembic_version` for its migrations) sit beside Headroom's
`runs` table without touching it, and `ResultStore` reads and migrates that file as before
(tests/test_search.py checks both ways round).

- Samplers: NSGA-II (default; `population_size` trials per generation, so a short search still
  evolves) or multi-objective TPE; both seeded, both honour the target through the trial's
  constraints (`Trial.set_constraint`, Optuna 5's replacement of `constraints_func`: <= 0 met;
  also kept as the user attribute "constraint").
- A study is named (`--study`); running the same name again loads it and runs trials until it
  holds `trials` finished ones. Its identity (space, cost, target, model and data fingerprints)
  is kept in the study's user attributes; a different one under the same name is refused.
- The sampler's settings (sampler, seed, NSGA-II population) are kept too ("settings"), so a study
  can be listed (`list_studies`: the studies of one model and data in a file) and continued with
  more trials from its stored identity alone (`resume_config`; the dashboard's Resume).
- The first trial of a new study is the unmodified model (enqueued), so the front always holds
  the baseline's end.
- Each trial's Outcome is kept in its user attributes, so a resumed study's front needs no
  re-evaluation.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from analysis.core.recipe import Recipe
from analysis.errors import HeadroomError
from analysis.jobs import Progress, check_cancel, report
from analysis.search.objectives import Outcome, Target
from analysis.search.space import SearchSpace, baseline_params, recipe_from_params, suggest

SAMPLERS = ("nsga2", "tpe")


@dataclass
class StudyConfig:
    """How a search runs (what it searches over is the SearchSpace)."""

    cost: str = "size"  # "size" (MB) or "latency" (predicted ms per batch)
    trials: int = 40  # finished trials the study should hold (a resumed study runs the missing ones)
    sampler: str = "nsga2"
    seed: int = 0
    population_size: int = 10  # NSGA-II trials per generation (Optuna's default 50 would not evolve in 40)
    target: Target = field(default_factory=Target)
    space: SearchSpace = field(default_factory=SearchSpace)


def storage_url(path) -> str:
    return f"sqlite:///{path}"


def make_sampler(config: StudyConfig):
    import optuna  # noqa: F401  (only checks it is installed)

    if config.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=config.seed, population_size=config.population_size)
    if config.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=config.seed, multivariate=True,
                                          n_startup_trials=min(10, max(2, config.trials // 4)))
    raise HeadroomError(f"Unknown sampler '{config.sampler}'; choose from {', '.join(SAMPLERS)}.")


def open_study(storage: str | None, name: str, config: StudyConfig, identity: dict, num_layers: int):
    """Create the study `name`, or load it if it exists with the same identity (storage None: in memory)."""
    import optuna  # noqa: F401  (only checks it is installed)

    if storage is None:
        rdb = optuna.storages.InMemoryStorage()
    else:
        rdb = optuna.storages.RDBStorage(storage, engine_kwargs={"connect_args": {"timeout": 30}})
    known = {s.study_name: s for s in optuna.get_all_study_summaries(rdb)}
    if name in known:
        stored = known[name].user_attrs.get("identity")
        if stored != json.loads(json.dumps(identity)):
            diff = sorted(k for k in set(identity) | set(stored or {}) if (stored or {}).get(k) != identity.get(k))
            raise HeadroomError(f"Study '{name}' was made for another search ({', '.join(diff)} differ); "
                                "resume it with the same options or give a new --study name.")
        return optuna.load_study(study_name=name, storage=rdb, sampler=make_sampler(config))
    study = optuna.create_study(study_name=name, storage=rdb, sampler=make_sampler(config),
                                directions=["maximize", "minimize"])
    study.set_user_attr("identity", identity)
    study.set_user_attr("settings", {"sampler": config.sampler, "seed": config.seed,
                                     "population_size": config.population_size})
    with warnings.catch_warnings():  # experimental in Optuna, harmless: names the two values in its tables
        warnings.simplefilter("ignore")
        study.set_metric_names(["metric", config.cost])
    study.enqueue_trial(baseline_params(config.space, num_layers))
    return study


def finished_trials(study) -> list:
    import optuna  # noqa: F401  (only checks it is installed)

    return [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]


def run_study(study, evaluate: Callable[[Recipe], Outcome], config: StudyConfig, *, pruning_order: list,
              num_layers: int, num_heads: int, on_outcome: Callable[[int, Outcome], None] | None = None,
              progress: Progress = None, cancel: threading.Event | None = None) -> int:
    """Run trials until the study holds `config.trials` finished ones; returns how many ran now.

    The same recipe met twice (two params that map to one recipe, or a resumed study) is
    evaluated once: its Outcome is reused, and `on_outcome` (which writes the store row) is called
    only for evaluations that ran.
    """
    import optuna  # noqa: F401  (only checks it is installed)

    cache: dict[str, Outcome] = {}
    for t in finished_trials(study):
        if "outcome" in t.user_attrs:
            cache[Recipe.from_dict(t.user_attrs["outcome"]["recipe"]).key()] = outcome_from_attrs(t.user_attrs["outcome"])
    missing = config.trials - len(finished_trials(study))
    done = [0]

    def objective(trial):
        check_cancel(cancel, "search")
        params = suggest(trial, config.space, num_layers)
        recipe = recipe_from_params(params, config.space, pruning_order, num_layers, num_heads)
        key = recipe.key()
        outcome = cache.get(key)
        if outcome is None:
            outcome = evaluate(recipe)
            cache[key] = outcome
            if on_outcome is not None:
                on_outcome(trial.number, outcome)
        outcome = Outcome(**{**outcome.__dict__, "recipe": recipe})  # this trial's name on the recipe
        trial.set_user_attr("outcome", outcome.to_dict())
        violations = config.target.violations(outcome)
        trial.set_user_attr("constraint", violations)
        for i, v in enumerate(violations):  # Optuna 5's constraints: the samplers read them from the trial
            trial.set_constraint(f"limit_{i}", float(v))
        done[0] += 1
        report(progress, done[0] / max(missing, 1), f"trial {trial.number + 1}: {recipe.describe()}")
        return outcome.metric, outcome.cost(config.cost)

    if missing > 0:
        study.optimize(objective, n_trials=missing, catch=(), gc_after_trial=False)
    return max(missing, 0)


def outcome_from_attrs(d: dict) -> Outcome:
    fields = {k: d.get(k) for k in ("metric", "drop_points", "size_mb", "predicted_ms", "predicted_speedup",
                                    "gflops", "agreement")}
    return Outcome(recipe=Recipe.from_dict(d["recipe"]), **fields)


def study_outcomes(study) -> list[Outcome]:
    """The Outcome of every finished trial, in trial order."""
    return [outcome_from_attrs(t.user_attrs["outcome"]) for t in finished_trials(study) if "outcome" in t.user_attrs]


def list_studies(path, *, model_fingerprint: str | None = None, data_fingerprint: str | None = None) -> list[dict]:
    """The search studies kept in the SQLite file `path` (a results store), newest first, optionally only those
    of one model and data (the fingerprints in their identity). Each: name, started (UTC), finished trials,
    trials (every state: a stopped study also holds the one it was stopped in), identity, settings. A file
    without Optuna's tables (or with them half made) lists nothing, and is not given them."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        conn = sqlite3.connect(path, timeout=30)
        try:  # Optuna's tables complete (its version stamped): opening the storage then writes nothing, so a
            # listing never races a search that is creating them in the same file
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            has = {"studies", "alembic_version"} <= tables and conn.execute(
                "SELECT COUNT(*) FROM alembic_version").fetchone()[0] > 0
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return []
    if not has:
        return []
    import optuna

    rdb = optuna.storages.RDBStorage(storage_url(path), engine_kwargs={"connect_args": {"timeout": 30}})
    out = []
    for summary in optuna.get_all_study_summaries(rdb, include_best_trial=False):
        identity = summary.user_attrs.get("identity")
        if not isinstance(identity, dict):
            continue  # not a Headroom search
        if model_fingerprint is not None and identity.get("model_fingerprint") != model_fingerprint:
            continue
        if data_fingerprint is not None and identity.get("data_fingerprint") != data_fingerprint:
            continue
        study = optuna.load_study(study_name=summary.study_name, storage=rdb)
        finished = len(finished_trials(study))
        out.append({"name": summary.study_name, "started": summary.datetime_start, "finished": finished,
                    "trials": summary.n_trials, "identity": identity,
                    "settings": summary.user_attrs.get("settings") or {}})
    out.sort(key=lambda s: (s["started"] is not None, s["started"]), reverse=True)
    return out


def resume_config(study: dict, more_trials: int) -> StudyConfig:
    """The StudyConfig that continues `study` (a `list_studies` entry) with `more_trials` finished trials more:
    its own space, cost and target (so `open_study` loads it), its sampler settings, and the seed moved on by
    the trials it holds, so the continued sampler does not draw the first trials' parameters again."""
    identity, settings = study["identity"], study["settings"]
    default = StudyConfig()
    return StudyConfig(cost=identity["cost"], trials=study["finished"] + int(more_trials),
                       sampler=settings.get("sampler", default.sampler),
                       seed=int(settings.get("seed", default.seed)) + int(study["trials"]),
                       population_size=int(settings.get("population_size", default.population_size)),
                       target=Target(**identity.get("target", {})), space=SearchSpace.from_dict(identity["space"]))
