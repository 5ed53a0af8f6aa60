"""analysis.runtime: one device rule for loading, training and benchmarks; predict in dataset order."""

import pytest
import torch

from analysis.errors import HeadroomError
from analysis.io.batching import collate
from analysis.runtime import DEFAULT_BATCH_SIZE, DTYPES, device_name, predict, resolve_device
from analysis.testing import VOCAB, tiny_model


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.fixture
def one_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


@pytest.mark.parametrize("asked", [None, "", "auto", "AUTO", " auto "])
def test_auto_picks_cuda_only_when_available(asked, no_gpu):
    assert resolve_device(asked) == torch.device("cpu")


@pytest.mark.parametrize("asked", [None, "auto"])
def test_auto_picks_cuda_when_a_gpu_is_visible(asked, one_gpu):
    assert resolve_device(asked) == torch.device("cuda")


def test_explicit_devices_are_taken_as_asked(one_gpu):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("CUDA:0") == torch.device("cuda", 0)


@pytest.mark.parametrize("asked", ["cuda", "cuda:0", torch.device("cuda")])
def test_cuda_without_a_gpu_is_one_sentence(asked, no_gpu):
    with pytest.raises(HeadroomError, match="no CUDA GPU is visible") as err:
        resolve_device(asked)
    message = str(err.value)
    assert "\n" not in message and message.endswith(".") and message.count(". ") == 0


def test_a_gpu_index_this_machine_lacks_is_refused(one_gpu):
    with pytest.raises(HeadroomError, match="has 1 CUDA GPU"):
        resolve_device("cuda:3")


@pytest.mark.parametrize("asked", ["gpu", "mps", "meta", "cuda:x", "tpu"])
def test_unknown_devices_are_named(asked, no_gpu):
    with pytest.raises(HeadroomError, match=f"Unknown device '{asked}'; use cpu, cuda or auto"):
        resolve_device(asked)


def test_loading_and_training_follow_the_same_rule(no_gpu):
    # both resolve the device before reading any model or data, so these fail fast and alike
    from analysis.io.models import load_model
    from analysis.io.train import train

    for call in (lambda d: load_model("demo", device=d), lambda d: train("minilm", "banking77", None, device=d)):
        with pytest.raises(HeadroomError, match="no CUDA GPU is visible"):
            call("cuda")
        with pytest.raises(HeadroomError, match="Unknown device 'mps'"):
            call("mps")


def test_device_name_says_threads_and_torch():
    torch_threads = torch.get_num_threads()
    name = device_name("cpu")
    assert name.startswith("CPU") and f"{torch_threads} thread" in name and torch.__version__ in name


def test_dtypes_and_batch_sizes():
    assert DTYPES == {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    assert DEFAULT_BATCH_SIZE["cpu"] < DEFAULT_BATCH_SIZE["cuda"]


def test_predict_puts_each_prediction_at_its_example():
    model = tiny_model("bert")
    g = torch.Generator().manual_seed(0)
    ids = [torch.randint(5, VOCAB, (n,), generator=g).tolist() for n in (4, 9, 6, 3, 8, 5, 7)]
    batches = [collate(ids, None, members, pad_id=0) for members in ([3, 0, 5], [1, 6], [2, 4])]
    with torch.no_grad():
        alone = [model(input_ids=torch.tensor([x])).logits.argmax(-1).item() for x in ids]
    assert len(set(alone)) > 1  # otherwise the order could be wrong unseen
    assert predict(model, batches, len(ids)).tolist() == alone
    assert predict(model, batches, len(ids), device=torch.device("cpu")).tolist() == alone
