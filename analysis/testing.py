"""Tiny randomly initialised sequence classifiers, one per supported architecture.

Built from a config (no download), small enough that every test runs in milliseconds on a CPU.
"""

from __future__ import annotations

import torch
from transformers import (
    AlbertConfig,
    AlbertForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    DebertaV2Config,
    DebertaV2ForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    ElectraConfig,
    ElectraForSequenceClassification,
    ModernBertConfig,
    ModernBertForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
)

#: the five post-LN families with nn.Linear Q/K/V (the original adapters)
ARCHITECTURES = ("bert", "roberta", "electra", "distilbert", "albert")
#: families with their own layer forward: DeBERTa-v2/v3 (disentangled attention), ModernBERT (pre-LN)
FAMILIES = ("deberta-v2", "modernbert")
#: every model_type Headroom has an adapter for (XLM-RoBERTa runs through RoBERTa's)
ALL_ARCHITECTURES = ARCHITECTURES + ("xlm-roberta",) + FAMILIES
TINY_LABELS = ("card", "transfer", "refund", "top_up", "fees", "pin")
NUM_LABELS = 3
VOCAB = 99


def tiny_model(arch: str, *, layers: int = 3, heads: int = 4, hidden: int = 32, seed: int = 0, **overrides):
    """A tiny random `arch` classifier; `overrides` are extra config fields (e.g. classifier_pooling).

    DeBERTa is DeBERTa-v3-style (relative attention with log position buckets shorter than the
    test sequences, shared attention keys, p2c|c2p, LayerNorm'd relative embeddings, no absolute
    positions, no token types). ModernBERT alternates global and local layers (global every 2nd,
    so [global, local, global] for 3 layers) with a sliding window (2 each side) shorter than the
    test sequences, and mean pooling. Both run eager attention, so HF returns attention maps.
    """
    torch.manual_seed(seed)
    # a large init range so that every head and layer visibly moves the logits
    common = dict(vocab_size=VOCAB, num_labels=NUM_LABELS, max_position_embeddings=64, initializer_range=0.2)
    common.update({k: overrides.pop(k) for k in list(overrides) if k in common})
    if arch == "bert":
        cfg = BertConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                         intermediate_size=hidden * 2, **common)
        model = BertForSequenceClassification(cfg)
    elif arch == "roberta":
        cfg = RobertaConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                            intermediate_size=hidden * 2, pad_token_id=1, **common)
        model = RobertaForSequenceClassification(cfg)
    elif arch == "electra":
        cfg = ElectraConfig(hidden_size=hidden, embedding_size=hidden // 2, num_hidden_layers=layers,
                            num_attention_heads=heads, intermediate_size=hidden * 2, **common)
        model = ElectraForSequenceClassification(cfg)
    elif arch == "distilbert":
        cfg = DistilBertConfig(dim=hidden, n_layers=layers, n_heads=heads, hidden_dim=hidden * 2, **common)
        model = DistilBertForSequenceClassification(cfg)
    elif arch == "albert":
        cfg = AlbertConfig(hidden_size=hidden, embedding_size=hidden // 2, num_hidden_layers=layers,
                           num_attention_heads=heads, intermediate_size=hidden * 2, **common)
        model = AlbertForSequenceClassification(cfg)
    elif arch == "xlm-roberta":
        cfg = XLMRobertaConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                               intermediate_size=hidden * 2, pad_token_id=1, **common, **overrides)
        model = XLMRobertaForSequenceClassification(cfg)
    elif arch == "deberta-v2":
        v3 = dict(relative_attention=True, position_buckets=4, max_relative_positions=16, share_att_key=True,
                  pos_att_type="p2c|c2p", norm_rel_ebd="layer_norm", position_biased_input=False,
                  type_vocab_size=0, pooler_hidden_size=hidden, pooler_hidden_act="gelu", layer_norm_eps=1e-7)
        cfg = DebertaV2Config(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                              intermediate_size=hidden * 2, pad_token_id=0, **common, **{**v3, **overrides})
        model = DebertaV2ForSequenceClassification(cfg)
    elif arch == "modernbert":
        modern = dict(global_attn_every_n_layers=2, local_attention=4, classifier_pooling="mean",
                      pad_token_id=0, bos_token_id=2, eos_token_id=3, cls_token_id=2, sep_token_id=3)
        cfg = ModernBertConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                               intermediate_size=hidden * 3 // 2, **common, **{**modern, **overrides})
        model = ModernBertForSequenceClassification(cfg)
    else:
        raise ValueError(arch)
    if arch in FAMILIES:
        model.set_attn_implementation("eager")
    # Random init leaves LayerNorms at 1/0 and biases at 0: perturb them so the tests can see them.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name or "norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def tiny_batch(batch_size: int = 4, seq_len: int = 10, seed: int = 1, pad_id: int = 0):
    """A padded batch: example b has seq_len - b real tokens."""
    from types import SimpleNamespace

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (batch_size, seq_len), generator=g)
    mask = torch.ones(batch_size, seq_len, dtype=torch.long)
    for b in range(batch_size):
        n = seq_len - b
        mask[b, n:] = 0
        ids[b, n:] = pad_id
    return SimpleNamespace(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids),
                           example_ids=torch.arange(batch_size))


def batch_for(arch: str, **kw):
    """`tiny_batch` padded with the architecture's pad id (RoBERTa's is 1)."""
    return tiny_batch(pad_id=1 if arch in ("roberta", "xlm-roberta") else 0, **kw)


def hf_logits(model, batch) -> torch.Tensor:
    """The transformers model's own logits on `batch` (the reference of every equivalence test)."""
    with torch.no_grad():
        return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits


def sim_logits(model, recipe, batch, **kw) -> torch.Tensor:
    """Headroom's flat forward of `model` under `recipe` on `batch`."""
    from analysis.core.adapters import Adapter
    from analysis.core.simulate import simulate

    with torch.no_grad():
        return simulate(Adapter(model), recipe)(batch, **kw).logits


def tiny_loaded(arch: str = "bert", *, layers: int = 3, heads: int = 4, hidden: int = 32, num_labels: int = 3, seed: int = 0):
    """A LoadedModel around a tiny random BERT with the real MiniLM tokenizer (vocab 30522).

    For tests of code that needs a tokenizer and an Evaluator without the demo checkpoints.
    Another `arch` (e.g. "deberta-v2", "modernbert") puts `tiny_model`'s config of that family,
    with the tokenizer's vocabulary, behind the same tokenizer: token ids are only indices.
    """
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from analysis.core.adapters import Adapter
    from analysis.io.models import LoadedModel, _minilm_dir

    if arch != "bert":
        labels = dict(id2label=dict(enumerate(TINY_LABELS[:num_labels])),
                      label2id={n: i for i, n in enumerate(TINY_LABELS[:num_labels])})
        model = tiny_model(arch, layers=layers, heads=heads, hidden=hidden, seed=seed, vocab_size=30522,
                           num_labels=num_labels, max_position_embeddings=512, **labels)
        tokenizer = AutoTokenizer.from_pretrained(str(_minilm_dir()))
        return LoadedModel(f"tiny-{arch}", "config", "directory", model, tokenizer, Adapter(model), torch.device("cpu"))
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=hidden * 2, num_labels=num_labels, initializer_range=0.2,
                     id2label=dict(enumerate(TINY_LABELS[:num_labels])),
                     label2id={n: i for i, n in enumerate(TINY_LABELS[:num_labels])})
    model = BertForSequenceClassification(cfg).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(_minilm_dir()))
    return LoadedModel("tiny-bert", "config", "directory", model, tokenizer, Adapter(model), torch.device("cpu"))


def tiny_dataset(n: int = 60, num_labels: int = 3, seed: int = 0):
    """A labelled TextDataset of short made-up sentences."""
    import random

    from analysis.io.text_dataset import TextDataset

    rng = random.Random(seed)
    words = "the card payment was declined again my transfer is pending please help refund top up fee".split()
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 14))) for _ in range(n)]
    labels = [i % num_labels for i in range(n)]
    return TextDataset(name="tiny", texts=texts, text_pairs=None, labels=labels,
                       label_names=list(TINY_LABELS[:num_labels]), metric="accuracy", indices=list(range(n)))


def crash_once_worker():
    """A sweep Worker whose process dies (os._exit) on its first evaluation after `arm(path)`.

    For the test that a Ray worker that dies has its tasks retried: the marker file says "crash
    now" across the process restart, and is removed before dying so the retry succeeds.
    """
    import os

    from analysis.sweeps.engines import Worker

    class CrashOnceWorker(Worker):
        def evaluate(self, recipe: dict, keep_predictions: bool = False) -> dict:
            marker = os.environ.get("HEADROOM_TEST_CRASH_MARKER")
            if marker and os.path.exists(marker):
                os.unlink(marker)
                os._exit(1)  # the worker process dies mid-task
            return super().evaluate(recipe, keep_predictions)

    return CrashOnceWorker
