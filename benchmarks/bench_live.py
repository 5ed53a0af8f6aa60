"""Live speed: Headroom's evaluation paths against a naive HuggingFace loop, measured in one run.

The naive baseline is what a first script does: for every what-if, tokenise the texts again, pad
every batch to 128 tokens, run the HF model in fp32 with batch 32, nothing cached. Against it:
- a full evaluation through Headroom's Evaluator (pre-tokenised, length-bucketed batches);
- the same in bf16 on CPU (fp16 on CUDA), with the check that predictions/metric are unchanged;
- a one-head what-if for every layer l (mask head 0 of layer l): incremental re-evaluation
  starts from the cached hidden states entering layer l;
- building the Evaluator (tokenise + baseline pass + trace), paid once per (model, data).
Every figure is a median over `--repeats` runs on the same machine, in the same process.

    python benchmarks/bench_live.py --model demo --limit 500 --out benchmarks/results/live_cpu.json
    python benchmarks/bench_live.py --model demo-sst2 --data sst2 --device cuda --out live_cuda.json
    python benchmarks/bench_live.py --shape bert-base --data sst2 --limit 0 --device cuda --out live_cuda_bert_base.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from analysis.io.datasets import load_dataset, report_split
from analysis.measure.evaluate import Evaluator
from analysis.io.models import load_model
from analysis.core.recipe import Recipe
from analysis.measure.record import write_json
from analysis.measure.timing import median_seconds


@torch.inference_mode()
def naive_pass(loaded, dataset, batch_size: int = 32, max_length: int = 128):
    """The HF-style loop: re-tokenise, pad to max_length, fp32, batch 32, no cache."""
    model, tok = loaded.model, loaded.tokenizer
    preds = []
    for i in range(0, len(dataset), batch_size):
        texts = dataset.texts[i:i + batch_size]
        pairs = dataset.text_pairs[i:i + batch_size] if dataset.text_pairs else None
        enc = tok(texts, pairs, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
        enc = {k: v.to(loaded.device) for k, v in enc.items()}
        preds.append(model(**enc).logits.argmax(-1).cpu())
    return torch.cat(preds)


def random_model(shape: str, device: str):
    """A BERT-base-shaped classifier (12 x 12, hidden 768) with random weights and MiniLM's tokenizer.

    Its accuracy means nothing; its speed is that of any BERT-base. The data defaults to SST-2 dev.
    """
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from analysis.core.adapters import Adapter
    from analysis.io.models import LoadedModel, _minilm_dir
    from analysis.runtime import resolve_device

    torch.manual_seed(0)
    config = BertConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                        num_labels=2, id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})
    model = BertForSequenceClassification(config).eval()
    dev = resolve_device(device)
    model.to(dev)
    return LoadedModel(f"random {shape}", "config", "directory", model, AutoTokenizer.from_pretrained(str(_minilm_dir())),
                       Adapter(model), dev, {"data": "sst2", "eval_split": "dev"})


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="demo")
    p.add_argument("--shape", default=None, choices=["bert-base"],
                   help="time a randomly initialised model of this shape instead of --model (timing depends only on shapes)")
    p.add_argument("--data", default=None)
    p.add_argument("--split", default=None)
    p.add_argument("--limit", type=int, default=500, help="stratified subset size; 0 = all")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    loaded = random_model(args.shape, args.device) if args.shape else load_model(args.model, device=args.device)
    data = args.data or loaded.default_data
    split = args.split or report_split(loaded, args.data)
    dataset = load_dataset(data, split, limit=args.limit or None)  # 0 = every example
    dev = loaded.device
    half = "fp16" if dev.type == "cuda" else "bf16"
    print(f"{loaded.name} on {dataset.name}: {len(dataset)} examples, device {dev}, "
          f"threads {torch.get_num_threads()}, repeats {args.repeats}", flush=True)

    naive_s = median_seconds(lambda: naive_pass(loaded, dataset), warmup=0, repeats=args.repeats, device=dev)
    naive_preds = naive_pass(loaded, dataset).numpy()

    t0 = time.perf_counter()
    ev = Evaluator(loaded, dataset)
    setup_s = time.perf_counter() - t0
    full_s = median_seconds(lambda: ev.evaluate(Recipe(), full=True), warmup=0, repeats=args.repeats, device=dev)
    assert (ev.baseline.predictions == naive_preds).mean() > 0.99, "fast path disagrees with the naive loop"

    t0 = time.perf_counter()
    ev_half = Evaluator(loaded, dataset, dtype=half)
    half_setup_s = time.perf_counter() - t0
    half_s = median_seconds(lambda: ev_half.evaluate(Recipe(), full=True), warmup=0, repeats=args.repeats, device=dev)
    half_agreement = float((ev_half.baseline.predictions == ev.baseline.predictions).mean())

    per_layer = []
    for layer in range(ev.adapter.num_layers):
        recipe = Recipe(masked_heads=[(layer, 0)])
        ev.simulators.get(recipe)  # weights prepared once, as the dashboard's cache does
        def whatif():
            ev._recipe_traces.clear()  # a fresh what-if from the baseline, not a replay of a kept trace
            return ev.evaluate(recipe)

        s = median_seconds(whatif, warmup=0, repeats=args.repeats, device=dev)
        full = ev.evaluate(recipe, full=True)
        inc = ev.evaluate(recipe)
        same = bool((full.predictions == inc.predictions).all())
        per_layer.append({"layer": layer, "seconds": s, "speedup_vs_naive": naive_s / s, "same_predictions_as_full": same})
        print(f"  one-head what-if, layer {layer}: {s * 1000:.0f} ms  ({naive_s / s:.1f}x naive)  same predictions as full: {same}", flush=True)

    mean_whatif = statistics.mean(r["seconds"] for r in per_layer)
    result = {
        "model": loaded.name, "data": dataset.name, "examples": len(dataset), "device": str(dev),
        "threads": torch.get_num_threads(), "repeats": args.repeats,
        "naive_hf_loop_seconds": naive_s,
        "evaluator_setup_seconds": setup_s,
        "full_eval_fp32_seconds": full_s, "full_eval_fp32_speedup": naive_s / full_s,
        f"full_eval_{half}_seconds": half_s, f"full_eval_{half}_speedup": naive_s / half_s,
        f"{half}_setup_seconds": half_setup_s,
        f"{half}_agreement_with_fp32": half_agreement,
        f"{half}_metric": ev_half.baseline.metric, "fp32_metric": ev.baseline.metric,
        "one_head_whatif": per_layer,
        "one_head_whatif_mean_seconds": mean_whatif,
        "one_head_whatif_mean_speedup": naive_s / mean_whatif,
        "trace_mb": ev.trace_mb,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "one_head_whatif"}, indent=1))
    if args.out:
        write_json(args.out, result, device=dev)


if __name__ == "__main__":
    main()
