"""Real low precision vs fp32: latency of the HF forward at batch 32 x sequence 128, measured.

On CPU: fp32 against int8 from both backends (torchao `Int8DynamicActivationInt8WeightConfig`,
and the deprecated `torch.ao.quantization.quantize_dynamic`) and bf16, at 1 and 2 threads (the
PyTorch BERT dynamic-quantisation tutorial reports ~1.8x for int8 on one thread). On CUDA: fp32
against fp16 and bf16 (and torchao int8 where it runs). Models and timings are interleaved per
repeat so machine drift hits every variant alike; each figure is a median. Also: serialized size
of each model's state dict, and accuracy on `--limit` examples when `--accuracy` is given.

    python benchmarks/bench_int8.py --model demo --threads 1,2 --out benchmarks/results/int8_cpu_demo.json
    python benchmarks/bench_int8.py --model demo --device cuda --out benchmarks/results/lowp_cuda_demo.json
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

from analysis.io.datasets import report_split
from analysis.io.models import load_model
from analysis.measure.lowbit import _torch_ao_int8, _torchao_int8, build, serialized_bytes
from analysis.measure.record import write_json
from analysis.measure.timing import measure, synthetic_batch


def variants(model, device):
    """(name, builder) pairs to time on this device."""
    if device.type == "cpu":
        return [
            ("fp32", lambda: build(model, "fp32")[0]),
            ("int8 torchao Int8DynamicActivationInt8WeightConfig", lambda: _torchao_int8(model)),
            ("int8 torch.ao quantize_dynamic (deprecated)", lambda: _torch_ao_int8(model)),
            ("bf16", lambda: build(model, "bf16")[0]),
        ]
    return [
        ("fp32", lambda: build(model, "fp32", device=device)[0]),
        ("fp16", lambda: build(model, "fp16", device=device)[0]),
        ("bf16", lambda: build(model, "bf16", device=device)[0]),
        ("int8 torchao Int8DynamicActivationInt8WeightConfig", lambda: _torchao_int8(model.to(device))),
    ]


@torch.inference_mode()
def time_all(models: dict, batch, repeats: int, device) -> dict:
    """Median ms of each model's forward, the models interleaved run by run."""
    inputs = batch.model_inputs()
    for m in models.values():  # warm-up
        measure(lambda: m(**inputs), warmup=2, repeats=0, device=device)
    times = {k: [] for k in models}
    for _ in range(repeats):
        for name, m in models.items():
            times[name] += measure(lambda: m(**inputs), warmup=0, repeats=1, device=device)
    return {k: statistics.median(v) * 1000 for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="demo")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", default="1,2", help="CPU thread counts to measure (default 1,2)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--accuracy", action="store_true", help="also evaluate each model on the model's data")
    ap.add_argument("--limit", type=int, default=500)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    device = torch.device(args.device)
    loaded = load_model(args.model, device="cpu")
    model = loaded.model.float().eval()
    batch = synthetic_batch(model.config.vocab_size, args.batch_size, args.seq_len, device)
    models, notes = {}, {}
    for name, make in variants(model, device):
        try:
            models[name] = make()
        except Exception as e:  # a backend that does not run here is reported, not fatal
            notes[name] = f"failed: {type(e).__name__}: {str(e)[:200]}"
    sizes = {name: serialized_bytes(m) for name, m in models.items()}
    results = []
    thread_counts = [int(t) for t in args.threads.split(",")] if device.type == "cpu" else [torch.get_num_threads()]
    for threads in thread_counts:
        torch.set_num_threads(threads)
        ms = time_all(models, batch, args.repeats, device)
        row = {"threads": torch.get_num_threads(), "ms_per_batch": {k: round(v, 2) for k, v in ms.items()},
               "speedup_vs_fp32": {k: round(ms["fp32"] / v, 3) for k, v in ms.items()}}
        results.append(row)
        print(json.dumps(row), flush=True)
    out = {
        "what": "measured: HF forward latency of real low-precision models vs fp32, same batch, interleaved",
        "model": loaded.name, "device": str(device),
        "batch_size": args.batch_size, "seq_len": args.seq_len, "repeats": args.repeats,
        "input": "random vocabulary ids, every position attended (no padding)",
        "serialized_mb": {k: round(v / 1e6, 3) for k, v in sizes.items()},
        "results": results, "notes": notes,
    }
    if args.accuracy:
        from analysis.io.datasets import load_dataset
        from analysis.measure.evaluate import Evaluator
        from analysis.runtime import predict
        from analysis.measure.metrics import compute_metrics

        loaded_dev = load_model(args.model, device=str(device))
        ds = load_dataset(loaded_dev.default_data, report_split(loaded_dev), limit=args.limit)
        ev = Evaluator(loaded_dev, ds)
        acc = {}
        for name, m in models.items():
            preds = predict(m, ev.batches, len(ev.dataset))
            acc[name] = compute_metrics(ev.labels, preds, ev.dataset.metric, loaded.num_labels)["metric"]
        out["accuracy"] = acc
        out["accuracy_examples"] = len(ev.dataset)
    print(json.dumps(out, indent=2))
    if args.out:
        write_json(args.out, out, device=device)


if __name__ == "__main__":
    main()
