"""Where a sweep's evaluations run: in this process (`local`) or as Ray tasks (`ray`).

Both engines drive the same `Worker`: one per (model, data), holding its Evaluator (the model
loaded and the data tokenised once), expanding the generators into Recipes there and evaluating
one Recipe per call. On Ray the Worker is an actor (one per (model, data)), each evaluation an
actor task; a worker process that dies is restarted (`max_restarts`) and its unfinished tasks are
retried (`max_task_retries`), so the sweep completes. The driver writes every row to the store
(one writer, whatever the cluster), and skips the evaluations the store already holds for the
same model and data fingerprints, recipe, mode and dtype — a rerun only does what is missing.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from analysis.core.recipe import Recipe
from analysis.errors import HeadroomError
from analysis.jobs import Progress, report
from analysis.sweeps.spec import DataSpec, SweepSpec

ENGINES = ("local", "ray")
MAX_RESTARTS = 3


class Worker:
    """One (model, data): builds its Evaluator once, then evaluates Recipes."""

    def __init__(self, model: str, data: dict, max_length: int = 128, dtype: str = "fp32", device: str = "cpu",
                 threads: int | None = None):
        import torch

        from analysis.io.datasets import load_dataset, report_split
        from analysis.io.models import load_model
        from analysis.measure.evaluate import Evaluator
        from analysis.store.fingerprint import data_fingerprint, model_fingerprint

        if threads:
            # CPU matmuls sum in an order that depends on the thread count: the same count in every
            # engine makes the rows agree to the last bit (Ray gives an actor 1 thread by default).
            torch.set_num_threads(threads)
        spec = DataSpec(**data)
        loaded = load_model(model, device=device)
        split = spec.split or report_split(loaded, spec.data)
        dataset = load_dataset(spec.data, split, limit=spec.limit, seed=spec.seed)
        self.ev = Evaluator(loaded, dataset, max_length=max_length, dtype=dtype)
        self.model_fingerprint = model_fingerprint(loaded.model)
        self.data_fingerprint = data_fingerprint(self.ev.dataset, self.ev.max_length)

    def info(self) -> dict:
        return {"model_fingerprint": self.model_fingerprint, "data_fingerprint": self.data_fingerprint,
                "model_name": self.ev.loaded.name, "data_name": self.ev.dataset.name,
                "num_examples": len(self.ev.dataset), "dtype": self.ev.dtype_name}

    def expand(self, generators: list[dict]) -> list[dict]:
        from analysis.sweeps.generators import expand

        return [r.to_dict() for r in expand(self.ev, generators)]

    def evaluate(self, recipe: dict, keep_predictions: bool = False) -> dict:
        """The store row of one Recipe, as a plain dict (it crosses process boundaries on Ray)."""
        from analysis.store.store import record_evaluation

        result = self.ev.evaluate(Recipe.from_dict(recipe))
        record = record_evaluation(self.ev, result, source="sweep", keep_predictions=keep_predictions)
        return asdict(record)


@dataclass
class SweepResult:
    engine: str
    evaluated: int = 0
    skipped: int = 0  # already in the store
    seconds: float = 0.0
    run_ids: list[int] = field(default_factory=list)
    pairs: list[dict] = field(default_factory=list)  # per (model, data): fingerprints, recipes, timings

    def to_dict(self) -> dict:
        return asdict(self)


def run_sweep(spec: SweepSpec, store, *, engine: str = "local", address: str | None = None,
              num_cpus: int | None = None, progress: Progress = None, worker_class=Worker) -> SweepResult:
    """Evaluate every (model, data, recipe) of `spec` not yet in `store`; write the rows there."""
    if engine not in ENGINES:
        raise HeadroomError(f"Unknown engine '{engine}'; choose local or ray.")
    t0 = time.perf_counter()
    out = SweepResult(engine=engine)
    pairs = [(m, d) for m in spec.models for d in spec.datasets]
    runner = _RayRunner(address, num_cpus, worker_class) if engine == "ray" else _LocalRunner(worker_class)
    try:
        workers = [runner.worker(m, asdict(d), spec) for m, d in pairs]  # on Ray: built in parallel
        for i, ((model, data), w) in enumerate(zip(pairs, workers)):
            t_pair = time.perf_counter()
            info = runner.call(w, "info")
            recipes = runner.call(w, "expand", spec.generators)
            todo = [r for r in recipes if store.find(
                model_fingerprint=info["model_fingerprint"], data_fingerprint=info["data_fingerprint"],
                recipe_key=Recipe.from_dict(r).key(), dtype=info["dtype"]) is None]
            out.skipped += len(recipes) - len(todo)
            for done, row in enumerate(runner.map(w, "evaluate", todo, spec.keep_predictions)):
                from analysis.store.store import RunRecord

                out.run_ids.append(store.add(RunRecord(**row)))
                out.evaluated += 1
                report(progress, (i + (done + 1) / max(len(todo), 1)) / len(pairs),
                       f"{info['model_name']} x {info['data_name']}: {done + 1}/{len(todo)}")
            out.pairs.append({**info, "recipes": len(recipes), "evaluated": len(todo),
                              "seconds": round(time.perf_counter() - t_pair, 2)})
    finally:
        runner.close()
    out.seconds = round(time.perf_counter() - t0, 2)
    return out


class _LocalRunner:
    def __init__(self, worker_class):
        self.worker_class = worker_class

    def worker(self, model, data, spec):
        return self.worker_class(model, data, spec.max_length, spec.dtype, threads=spec.threads)

    def call(self, w, method, *args):
        return getattr(w, method)(*args)

    def map(self, w, method, items, *args):
        for item in items:
            yield getattr(w, method)(item, *args)

    def close(self):
        pass


class _RayRunner:
    """Ray actors: a local Ray by default (`num_cpus`), or an existing cluster (`address`)."""

    def __init__(self, address, num_cpus, worker_class):
        try:
            import ray
        except ImportError:
            raise HeadroomError("The ray engine needs Ray; run pip install -r requirements.txt.") from None
        self.ray = ray
        self.started = False
        if not ray.is_initialized():
            try:
                ray.init(address=address, num_cpus=None if address else num_cpus, include_dashboard=False,
                         log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise HeadroomError(f"Could not start or reach Ray{f' at {address}' if address else ''}: "
                                    f"{str(e).splitlines()[0]}") from None
            self.started = True
        self.actor_class = ray.remote(max_restarts=MAX_RESTARTS, max_task_retries=MAX_RESTARTS)(worker_class)

    def worker(self, model, data, spec):
        return self.actor_class.remote(model, data, spec.max_length, spec.dtype, threads=spec.threads)

    def call(self, w, method, *args):
        return self._get(getattr(w, method).remote(*args))

    def map(self, w, method, items, *args):
        refs = [getattr(w, method).remote(item, *args) for item in items]  # queued on the actor, in order
        for ref in refs:
            yield self._get(ref)

    def _get(self, ref):
        from ray.exceptions import RayActorError, RayTaskError

        try:
            return self.ray.get(ref)
        except RayTaskError as e:  # an error inside our code on the worker: its own message
            cause = e.cause if isinstance(getattr(e, "cause", None), Exception) else None
            if isinstance(cause, HeadroomError):
                raise HeadroomError(str(cause)) from None
            raise
        except RayActorError as e:
            raise HeadroomError(f"A Ray worker died {MAX_RESTARTS + 1} times; the sweep stopped "
                                f"({str(e).splitlines()[0]}).") from None

    def close(self):
        if self.started:
            self.ray.shutdown()
