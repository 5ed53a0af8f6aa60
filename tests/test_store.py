"""The results store: round trip, concurrent writers lose nothing, the CLI records and reads back."""

import json
import multiprocessing
import sqlite3
import threading

import numpy as np
import pytest

from analysis.cli import main
from analysis.core.recipe import Recipe
from analysis.errors import HeadroomError
from analysis.measure.evaluate import Evaluator
from analysis.store.fingerprint import data_fingerprint, model_fingerprint
from analysis.store.schema import SCHEMA_VERSION
from analysis.store.store import ResultStore, RunRecord, record_evaluation
from analysis.testing import tiny_dataset, tiny_loaded, tiny_model


def record(i: int = 0, **changes) -> RunRecord:
    r = RunRecord(source="test", model_name="m", model_fingerprint="f" * 16, data_name="d", data_fingerprint="e" * 16,
                  num_examples=3, recipe=Recipe(dropped_layers=[i % 3]).to_dict(), recipe_key=f"k{i}",
                  description=f"row {i}", mode="simulated", metric_name="accuracy", metric=0.5 + i / 1000,
                  metrics={"accuracy": 0.5}, loss=1.0, agreement=0.9, size_mb=1.5, size={"mb": 1.5},
                  latency={"ms_per_batch": 3.0, "threads": 2}, device="cpu", threads=2, dtype="fp32",
                  predictions=np.array([0, 2, 1]), extra={"i": i})
    for k, v in changes.items():
        setattr(r, k, v)
    return r


def test_round_trip(tmp_path):
    store = ResultStore(tmp_path / "s.sqlite")
    rid = store.add(record(7))
    back = store.get(rid)
    assert back.recipe == Recipe(dropped_layers=[1]).to_dict() and back.metric == pytest.approx(0.507)
    assert back.latency == {"ms_per_batch": 3.0, "threads": 2} and back.extra == {"i": 7}
    assert back.predictions.tolist() == [0, 2, 1] and back.headroom_version and back.created_at
    assert store.find(model_fingerprint="f" * 16, data_fingerprint="e" * 16, recipe_key="k7").id == rid
    assert store.find(model_fingerprint="f" * 16, data_fingerprint="e" * 16, recipe_key="nope") is None
    assert store.delete([rid]) == 1 and store.count() == 0
    with pytest.raises(HeadroomError, match="no run"):
        store.get(rid)


def test_history_survives_a_new_store_object(tmp_path):
    ResultStore(tmp_path / "s.sqlite").add(record(1))
    assert [r["description"] for r in ResultStore(tmp_path / "s.sqlite").list()] == ["row 1"]


def test_four_threads_lose_no_row(tmp_path):
    store = ResultStore(tmp_path / "s.sqlite")

    def write(t):
        for i in range(25):
            store.add(record(t * 100 + i))

    threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.count() == 100
    assert len({r["recipe_key"] for r in store.list()}) == 100


def test_two_processes_lose_no_row(tmp_path):
    path = str(tmp_path / "s.sqlite")
    ctx = multiprocessing.get_context("spawn")
    from tests.store_writer import write_rows

    procs = [ctx.Process(target=write_rows, args=(path, k * 1000)) for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(600)  # generous: on a loaded 2-core machine a child takes long to start
    assert [p.exitcode for p in procs] == [0, 0]
    assert ResultStore(path).count() == 60


def test_a_newer_schema_and_a_corrupt_file_are_refused(tmp_path):
    newer = tmp_path / "newer.sqlite"
    conn = sqlite3.connect(newer)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(HeadroomError, match="newer Headroom"):
        ResultStore(newer)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(HeadroomError, match="not a Headroom results store"):
        ResultStore(junk)


def test_fingerprints_follow_the_weights_and_the_data():
    a, b = tiny_model("bert"), tiny_model("bert")
    assert model_fingerprint(a) == model_fingerprint(b)
    c = tiny_model("bert")
    with __import__("torch").no_grad():
        c.classifier.bias[0] += 1e-3
    assert model_fingerprint(c) != model_fingerprint(a)
    assert data_fingerprint(tiny_dataset(20)) == data_fingerprint(tiny_dataset(20))
    assert data_fingerprint(tiny_dataset(20)) != data_fingerprint(tiny_dataset(21))
    assert data_fingerprint(tiny_dataset(20), 128) != data_fingerprint(tiny_dataset(20), 64)


def test_an_evaluation_becomes_a_row(tmp_path):
    ev = Evaluator(tiny_loaded(), tiny_dataset(30))
    result = ev.evaluate(Recipe(masked_heads=[(0, 1)]))
    store = ResultStore(tmp_path / "s.sqlite")
    back = store.get(store.add(record_evaluation(ev, result, source="test", keep_predictions=True)))
    assert back.metric == result.metric and back.num_examples == 30
    assert back.recipe_key == Recipe(masked_heads=[(0, 1)]).key()
    assert np.array_equal(back.predictions, result.predictions)


def test_cli_evaluate_records_and_runs_reads_back(capsys, tmp_path):
    model_dir = tmp_path / "model"
    loaded = tiny_loaded()
    loaded.model.save_pretrained(str(model_dir))
    loaded.tokenizer.save_pretrained(str(model_dir))
    data = tmp_path / "d.csv"
    ds = tiny_dataset(20)
    data.write_text("text,label\n" + "".join(f"{t},{ds.label_names[y]}\n" for t, y in zip(ds.texts, ds.labels)))
    store = str(tmp_path / "s.sqlite")
    base = ["evaluate", "--model", str(model_dir), "--data", str(data), "--no-latency", "--store", store]
    assert main(base) == 0 and main(base + ["--drop-layers", "1"]) == 0
    outs = [json.loads(o) for o in capsys.readouterr().out.replace("}\n{", "}\x00{").split("\x00")]
    assert [o["run_id"] for o in outs] == [1, 2]
    assert main(["runs", "list", "--store", store]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["total"] == 2 and listed["runs"][0]["description"] == "layer 1 dropped"
    assert listed["runs"][1]["metric"] == outs[0]["metric"]
    assert main(["runs", "export", "--store", store, "--out", str(tmp_path / "r.csv")]) == 0
    assert len((tmp_path / "r.csv").read_text().splitlines()) == 3
    assert main(["runs", "export", "--store", store, "--out", str(tmp_path / "r.parquet")]) == 0  # by the suffix
    import pandas as pd

    parquet, csv = pd.read_parquet(tmp_path / "r.parquet"), pd.read_csv(tmp_path / "r.csv")
    assert list(parquet.columns) == list(csv.columns) and list(parquet["id"]) == list(csv["id"]) == [2, 1]
    assert list(parquet["description"]) == ["layer 1 dropped", outs[0]["description"]]
    assert main(["runs", "export", "--store", store, "--out", str(tmp_path / "r.parquet")]) == 2  # never overwritten
    capsys.readouterr()
    assert main(["runs", "rm", "--store", store, "1", "99"]) == 0
    assert json.loads(capsys.readouterr().out) == {"store": store, "deleted": 1, "not_found": [99]}
    assert main(["runs", "show", "--store", store, "1"]) == 2


def test_records_reads_whole_rows_in_one_query_with_the_filters(tmp_path):
    store = ResultStore(tmp_path / "s.sqlite")
    ids = [store.add(record(i)) for i in range(3)]
    got = store.records()
    assert [r.id for r in got] == ids[::-1]  # newest first, like list()
    assert [r.description for r in got] == [store.get(i).description for i in ids[::-1]]
    assert [r.id for r in store.records(limit=2)] == ids[:0:-1]
    assert store.records(source="nobody") == []
