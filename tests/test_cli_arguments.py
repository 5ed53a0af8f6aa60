"""Every numeric option is validated at the boundary: one sentence, status 2, before any work."""

import pytest

from analysis.cli import main

BAD = [
    ("evaluate", "--batch-size", "0"), ("evaluate", "--limit", "-5"), ("evaluate", "--seed", "-1"),
    ("evaluate", "--max-length", "1"), ("evaluate", "--max-length", "12x"),
    ("quantize", "--threads", "0"), ("quantize", "--threads", "-3"), ("quantize", "--latency-seq-len", "0"),
    ("allocate-bits", "--budget-mb", "nan"), ("allocate-bits", "--budget-mb", "inf"),
    ("allocate-bits", "--budget-mb", "1e400"), ("allocate-bits", "--budget-mb", "-2"),
    ("layers", "--contribution-examples", "0"), ("layers", "--k", "0"), ("layers", "--latency-seq-len", "0"),
    ("prune-curve", "--step", "0"), ("prune-curve", "--step", "1.5"), ("prune-curve", "--seeds", "0"),
    ("profile", "--repeats", "0"), ("profile", "--batch", "0"),
    ("train", "--epochs", "0"), ("train", "--lr", "0"), ("train", "--lr", "nan"), ("train", "--warmup-ratio", "1"),
    ("train", "--max-length", "1"), ("train", "--holdout", "-1"),
    ("search", "--trials", "0"), ("search", "--max-head-fraction", "1"), ("search", "--max-head-fraction", "nan"),
    ("search", "--population", "1"), ("search", "--repeats", "0"),
]


@pytest.mark.parametrize("command, option, value", BAD)
def test_bad_value_is_one_sentence_and_status_2(capsys, command, option, value):
    argv = [command, option, value] + (["--data", "banking77"] if command == "train" else []) \
        + (["--budget-mb", "10"] if command == "allocate-bits" and option != "--budget-mb" else [])
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith(f"error: argument {option}: ") and err.count("\n") == 1, err
