"""`train`: fine-tune a classifier the way the demo models were made (analysis/io/train.py)."""

from __future__ import annotations

import shlex
import sys

from .arguments import MAX_LENGTH, count, number


def register(sub) -> None:
    p = sub.add_parser("train", help="fine-tune a demo model (MiniLM or a BERT directory) on a dataset")
    p.add_argument("--base", default="minilm", help="'minilm' (the pip package) or a BERT model path")
    p.add_argument("--data", required=True, help="banking77, sst2, glue:<task>, bolt:<name> or a file")
    p.add_argument("--out", default=None, help="folder for the demo checkpoint (left out: save nothing)")
    p.add_argument("--epochs", type=count(1), default=10)
    p.add_argument("--lr", type=number(0, above=True), default=1e-4, help="peak AdamW learning rate (default 1e-4)")
    p.add_argument("--batch-size", type=count(1), default=32)
    p.add_argument("--max-length", type=MAX_LENGTH, default=128)
    p.add_argument("--seed", type=count(0), default=0)
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--eval-split", default="test", help="split of a bundled dataset scored at the end ('none' to skip)")
    p.add_argument("--eval-data", default=None, help="a labelled file scored at the end (for --data FILE, which has "
                   "no test split of its own)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out directory (whole)")
    p.add_argument("--train-split", default="train")
    p.add_argument("--holdout", type=count(0), default=0, help="stratified train examples kept out and scored")
    p.add_argument("--warmup-ratio", type=number(0, 1, below=True), default=0.1)
    p.add_argument("--weight-decay", type=number(0), default=0.01)
    p.add_argument("--train-word-embeddings", action="store_true", help="train (and save) the word embeddings")
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> dict:
    from analysis.io.train import train

    command = "python -m analysis " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["train"] else None
    return train(args.base, args.data, args.out, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                 max_length=args.max_length, seed=args.seed, device=args.device,
                 freeze_word_embeddings=not args.train_word_embeddings,
                 eval_split=None if args.eval_split.lower() == "none" else args.eval_split,
                 warmup_ratio=args.warmup_ratio, weight_decay=args.weight_decay,
                 train_split=args.train_split, holdout=args.holdout, command=command, eval_data=args.eval_data,
                 overwrite=args.overwrite)
