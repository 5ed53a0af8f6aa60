"""Sajjad et al.'s protocol: drop k layers, *then re-fine-tune*, for every strategy, in one run.

Headroom's live layer dropping is evaluated without re-fine-tuning, where dropping the top layers
is the worst choice (the classifier loses the layer it was trained on). "On the Effect of Dropping
Layers of Pre-trained Transformer Models" re-fine-tunes after dropping and finds top dropping
hurts least. This script does that: for each strategy, materialize the demo model with k layers
removed, fine-tune all of it (word embeddings frozen) on the training split for `--epochs`, and
evaluate on the same stratified test subset, with and without the re-fine-tuning.

    python benchmarks/layer_drop_refinetune.py --k 2 --epochs 1 --out benchmarks/results/layer_drop_refinetune_demo.json
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from analysis.io.batching import collate, tokenize
from analysis.io.datasets import load_dataset, report_split
from analysis.measure.evaluate import Evaluator
from analysis.methods.layers import dropped_layers_for, layer_contributions
from analysis.core.materialize import materialize
from analysis.io.models import load_model
from analysis.core.recipe import Recipe
from analysis.io.training import length_grouped_batches, seed_everything, use_bf16
from analysis.measure.record import write_json

STRATEGIES = ("top", "bottom", "symmetric", "alternate-odd", "alternate-even", "contribution")


def refinetune(model, tokenizer, train_ds, *, epochs: int, lr: float, seed: int, batch_size: int = 32):
    seed_everything(seed)
    model.train()
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    enc, _ = tokenize(train_ds, tokenizer, 128)
    ids, types = enc["input_ids"], enc.get("token_type_ids")
    labels = torch.tensor(train_ds.labels)
    gen = torch.Generator().manual_seed(seed)
    lengths = [len(x) for x in ids]
    total = epochs * -(-len(ids) // batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / total))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16(torch.device("cpu")))
    for _ in range(epochs):
        for members in length_grouped_batches(lengths, batch_size, gen):
            batch = collate(ids, types, members, tokenizer.pad_token_id)
            with autocast:
                logits = model(**batch.model_inputs()).logits
            loss = F.cross_entropy(logits.float(), labels[members])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
    return model.eval()


@torch.inference_mode()
def accuracy(model, ev: Evaluator) -> float:
    correct = 0
    for batch in ev.batches:
        pred = model(**batch.model_inputs()).logits.argmax(-1)
        correct += int((pred == torch.as_tensor(ev.labels)[batch.example_ids]).sum())
    return correct / len(ev.dataset)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="demo")
    p.add_argument("--k", type=int, default=2)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--limit", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    loaded = load_model(args.model)
    data = loaded.default_data
    ev = Evaluator(loaded, load_dataset(data, report_split(loaded), limit=args.limit))
    train_ds = load_dataset(data, "train")
    contribution = layer_contributions(ev)
    L = loaded.adapter.num_layers
    rows = [{"strategy": "none", "dropped": [], "without_refinetune": ev.baseline.metric, "with_refinetune": None}]
    print(f"{loaded.name}: baseline {ev.baseline.metric:.3f} on {len(ev.dataset)} examples; k={args.k}, "
          f"{args.epochs} epoch(s) of {len(train_ds)} training examples, CPU {torch.get_num_threads()} threads", flush=True)
    for strategy in args.strategies.split(","):
        dropped = dropped_layers_for(strategy, args.k, L, contribution=contribution)
        without = ev.evaluate(Recipe(dropped_layers=dropped)).metric
        t0 = time.perf_counter()
        model = refinetune(materialize(loaded.model, Recipe(dropped_layers=dropped)), loaded.tokenizer, train_ds,
                           epochs=args.epochs, lr=args.lr, seed=args.seed)
        seconds = time.perf_counter() - t0
        with_ft = accuracy(model, ev)
        rows.append({"strategy": strategy, "dropped": dropped, "without_refinetune": without,
                     "with_refinetune": with_ft, "refinetune_seconds": seconds})
        print(f"  {strategy:15s} drops {dropped}: {without:.3f} without, {with_ft:.3f} after re-fine-tuning "
              f"({seconds:.0f} s)", flush=True)
    result = {"model": args.model, "data": ev.dataset.name, "examples": len(ev.dataset), "k": args.k,
              "epochs": args.epochs, "lr": args.lr, "seed": args.seed, "threads": torch.get_num_threads(),
              "rows": rows}
    if args.out:
        write_json(args.out, result, device="cpu")


if __name__ == "__main__":
    main()
