"""A process that writes rows into a results store: imports only the store (no torch), so a
spawned child starts in a second even on a loaded machine."""

import numpy as np

from analysis.store.store import ResultStore, RunRecord


def write_rows(path: str, offset: int, n: int = 30) -> None:
    store = ResultStore(path)
    for i in range(n):
        store.add(RunRecord(source="test", model_name="m", model_fingerprint="f" * 16, data_name="d",
                            data_fingerprint="e" * 16, num_examples=3, recipe={}, recipe_key=f"p{offset + i}",
                            description=f"row {offset + i}", mode="simulated", metric_name="accuracy", metric=0.5,
                            metrics={}, loss=None, agreement=None, size_mb=None, size=None, latency=None,
                            device="cpu", threads=1, dtype="fp32", predictions=np.array([1, 2, 3])))
