"""analysis.measure.record: every benchmark's JSON carries the same machine facts, written the same way."""

import json

import numpy as np
import pytest
import torch

from analysis.measure.record import machine_facts, write_json


def test_write_json_adds_machine_facts_and_makes_folders(tmp_path):
    path = tmp_path / "new" / "folder" / "result.json"
    payload = {"ms": np.float32(1.5), "count": np.int64(3), "rows": np.arange(3), "device": torch.device("cpu")}
    written = write_json(path, payload, device="cpu")
    on_disk = json.loads(path.read_text())
    assert on_disk["machine"] == written["machine"] and "machine" not in payload  # the caller's dict is left alone
    assert on_disk["ms"] == 1.5 and on_disk["count"] == 3 and isinstance(on_disk["count"], int)
    assert on_disk["rows"] == [0, 1, 2] and on_disk["device"] == "cpu"
    machine = on_disk["machine"]
    assert machine["device"] == "cpu" and machine["torch"] == torch.__version__
    assert machine["torch_threads"] == torch.get_num_threads() and machine["cpu_count"] >= 1
    assert len(machine["load_average_1_5_15min"]) == 3 and "thread" in machine["device_name"]


def test_write_json_refuses_to_overwrite_a_machine_key_and_unknown_values(tmp_path):
    with pytest.raises(ValueError, match="machine"):
        write_json(tmp_path / "a.json", {"machine": "mine"})
    with pytest.raises(TypeError, match="object is not JSON serialisable"):
        write_json(tmp_path / "b.json", {"x": object()})


def test_machine_facts_default_to_the_cpu():
    assert machine_facts()["device"] == "cpu" and machine_facts(torch.device("cpu"))["device"] == "cpu"
