"""Materialized layer dropping: measured latency of the model with k layers really removed, vs
the full model, for k = 1..L-1 (top-k by default; every strategy costs the same FLOPs).

The ideal ratio is (L - k) / L of the encoder; embeddings and the classifier do not shrink, so
the measured ratio sits a little above it. Full and dropped models are timed interleaved on the
same (batch, seq) input, median of `--repeats`.

    python benchmarks/bench_layer_drop.py --model demo --threads 2 --out benchmarks/results/layer_drop_cpu_demo.json
    python benchmarks/bench_layer_drop.py --model demo --device cuda --batch-size 256 --out layer_drop_cuda.json
"""

from __future__ import annotations

import argparse
import json

import torch

from analysis.methods.layers import dropped_layers_for, materialized_latency
from analysis.io.models import load_model
from analysis.measure.record import write_json
from analysis.measure.timing import synthetic_batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="demo")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--strategy", default="top")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_model(args.model, device=args.device)
    model = loaded.model.float().eval()
    L = loaded.adapter.num_layers
    batch = synthetic_batch(model.config.vocab_size, args.batch_size, args.seq_len, loaded.device)
    rows = []
    for k in range(1, L):
        r = materialized_latency(model, dropped_layers_for(args.strategy, k, L), batch, repeats=args.repeats)
        r.update(k=k, ideal_encoder_ratio=round((L - k) / L, 4))
        rows.append(r)
        print(json.dumps({"k": k, "latency_ratio": r["latency_ratio"], "ideal": r["ideal_encoder_ratio"],
                          "full_ms": r["full_ms"], "dropped_ms": r["dropped_ms"]}), flush=True)
    out = {"what": "measured: materialized layer dropping, latency vs the full model (interleaved, median)",
           "model": loaded.name, "device": str(loaded.device), "threads": torch.get_num_threads(),
           "strategy": args.strategy, "num_layers": L, "batch_size": args.batch_size, "seq_len": args.seq_len,
           "repeats": args.repeats, "rows": rows}
    if args.out:
        write_json(args.out, out, device=loaded.device)


if __name__ == "__main__":
    main()
