"""Sweeps: spec validation, generators, the local and the Ray engine give the same rows, retries."""

import pytest

from analysis.errors import HeadroomError
from analysis.store.store import ResultStore
from analysis.sweeps.engines import run_sweep
from analysis.sweeps.spec import SweepSpec
from analysis.testing import tiny_dataset, tiny_loaded


@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("sweep")
    loaded = tiny_loaded()
    loaded.model.save_pretrained(str(d / "model"))
    loaded.tokenizer.save_pretrained(str(d / "model"))
    ds = tiny_dataset(24)
    (d / "data.csv").write_text("text,label\n" + "".join(f"{t},{ds.label_names[y]}\n" for t, y in zip(ds.texts, ds.labels)))
    return str(d / "model"), str(d / "data.csv")


def spec_for(model, data, generators=None):
    return SweepSpec.from_dict({"models": [model], "datasets": [{"data": data}], "generators": generators or [
        {"kind": "head-ablations"},
        {"kind": "layer-strategies", "strategies": ["top", "bottom"], "k": [1]},
        {"kind": "bit-grid", "bits": [8], "granularity": ["per-channel"]},
        {"kind": "recipes", "recipes": [{"dropped_layers": [2]}]},  # = top 1: counted once
    ]})


@pytest.mark.parametrize("bad, says", [
    ({"models": [], "datasets": ["x"], "generators": [{"kind": "bit-grid"}]}, "models"),
    ({"models": ["m"], "datasets": [], "generators": [{"kind": "bit-grid"}]}, "datasets"),
    ({"models": ["m"], "datasets": ["x"], "generators": [{"kind": "nope"}]}, "kind"),
    ({"models": ["m"], "datasets": [{"data": "x", "limit": 0}], "generators": [{"kind": "bit-grid"}]}, "limit"),
    ({"models": ["m"], "datasets": ["x"], "generators": [{"kind": "bit-grid"}], "workers": 3}, "Unknown sweep field"),
])
def test_bad_specs_are_one_sentence(bad, says):
    with pytest.raises(HeadroomError, match=says):
        SweepSpec.from_dict(bad)


def test_yaml_spec_loads(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("models: [demo]\ndatasets:\n  - {data: banking77, limit: 100}\ngenerators:\n  - {kind: head-ablations}\n")
    spec = SweepSpec.load(str(p))
    assert spec.models == ["demo"] and spec.datasets[0].limit == 100 and spec.name == "s"


def test_local_sweep_writes_each_recipe_once_and_a_rerun_skips(model_and_data, tmp_path):
    model, data = model_and_data
    store = ResultStore(tmp_path / "s.sqlite")
    first = run_sweep(spec_for(model, data), store)
    assert first.evaluated == 12 + 2 + 1 and first.skipped == 0  # 3x4 ablations, top/bottom k=1, 8-bit
    assert store.count() == 15
    again = run_sweep(spec_for(model, data), store)
    assert again.evaluated == 0 and again.skipped == 15 and store.count() == 15


def _rows(store):
    return {r.recipe_key: (r.metric, r.loss, r.agreement, r.size_mb)
            for r in (store.get(x["id"]) for x in store.list())}


def test_ray_engine_gives_the_local_rows_and_survives_a_killed_worker(model_and_data, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    from analysis.testing import crash_once_worker

    model, data = model_and_data
    local = ResultStore(tmp_path / "local.sqlite")
    run_sweep(spec_for(model, data), local)
    marker = tmp_path / "crash-now"
    marker.write_text("1")
    monkeypatch.setenv("HEADROOM_TEST_CRASH_MARKER", str(marker))  # inherited by the Ray workers
    remote = ResultStore(tmp_path / "ray.sqlite")
    result = run_sweep(spec_for(model, data), remote, engine="ray", num_cpus=2, worker_class=crash_once_worker())
    assert not marker.exists()  # a worker did die mid-task ...
    assert result.evaluated == 15  # ... and its task was retried: the sweep completed
    assert _rows(remote) == _rows(local)  # identical numbers, whichever engine
