"""Where parameters, FLOPs and measured time go: the per-component breakdown of one model, as JSON + markdown.

For a named model (`--model demo`, a directory or hub id) or a randomly initialised model of a
known shape (`--shape bert-base`: 12 layers x 12 heads, hidden 768, FFN 3072, vocab 30522;
`--shape minilm`: 6 x 12, hidden 384, FFN 1536), built from a config — the shapes, not the
weights, set the cost. Reports, at one batch size and sequence length:
- per component: parameters, bytes, counted FLOPs (2 per multiply-add), measured ms (median of
  `--repeats`), and how much of the whole forward the per-component times cover;
- the same for the materialized model of `--recipe` (HF forward, hooks on a private copy);
- the course's five observations, checked against the numbers;
- with `--sweep`: measured ms vs FLOPs per component for sequence lengths 16..512 (the
  attention-vs-FFN crossover), and with `--batch-sweep` the same over batch sizes.

    python benchmarks/profile_report.py --model demo --threads 2 --sweep --out benchmarks/results/profile_cpu_demo.json
    python benchmarks/profile_report.py --shape bert-base --device cuda --sweep --out profile_cuda_bert_base.json
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from analysis.measure.observations import course_observations
from analysis.measure.profile import profile_model
from analysis.measure.profile_sweeps import sweep_batch_size, sweep_seq_len
from analysis.core.recipe import Recipe
from analysis.measure.record import write_json
from analysis.runtime import device_name

SHAPES = {
    "bert-base": dict(num_hidden_layers=12, num_attention_heads=12, hidden_size=768, intermediate_size=3072),
    "minilm": dict(num_hidden_layers=6, num_attention_heads=12, hidden_size=384, intermediate_size=1536),
}


def random_model(shape: str, device: str):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, num_labels=77, max_position_embeddings=512, **SHAPES[shape])
    return BertForSequenceClassification(config).eval().to(device)


def fmt(x: float, digits: int = 2) -> str:
    return f"{x:,.{digits}f}"


def markdown(result: dict) -> str:
    h = result["header"]
    lines = [f"# Profile: {result['model']} — {h['device_name']}", "",
             f"Measured on {h['device']} ({h['device_name']}), {h['threads']} threads, {h['dtype']}, batch {h['batch_size']} x "
             f"seq {h['seq_len']}, median of {h['repeats']} runs, load average {h['load_average']}; torch {result['torch']}. "
             f"Whole forward {fmt(h['forward_ms'])} ms; per-component times sum to {fmt(h['components_ms'])} ms "
             f"(coverage {h['coverage']:.1%}). FLOPs are counted (2 per multiply-add); ms are measured.", "",
             "| component | params (M) | params % | MB at recipe bits | GFLOPs | FLOPs % | ms | time % | GFLOP/s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["by_component"]:
        lines.append(f"| {r['component']} | {r['params'] / 1e6:.3f} | {r['share_of_params']:.1%} | {r['bytes'] / 1e6:.2f} | "
                     f"{r['flops'] / 1e9:.3f} | {r['share_of_flops']:.1%} | {fmt(r['ms'])} | {r['share_of_time']:.1%} | "
                     f"{fmt(r['gflops_per_s'], 1)} |")
    if result.get("side_by_side"):
        m = result["materialized_header"]
        lines += ["", f"Materialized model (HF forward, hooks on a copy): whole {fmt(m['forward_ms'])} ms, hooked modules "
                  f"cover {m['coverage']:.1%}; its attention_scores row = whole − hooked (attention matmuls + softmax, "
                  "activation, residual adds).", "",
                  "| component | GFLOPs simulated | ms simulated | GFLOPs materialized | ms materialized |", "|---|---:|---:|---:|---:|"]
        for r in result["side_by_side"]:
            lines.append(f"| {r['component']} | {r['flops_simulated'] / 1e9:.3f} | {fmt(r['ms_simulated'])} | "
                         f"{r['flops_materialized'] / 1e9:.3f} | {fmt(r['ms_materialized'])} |")
    lines += ["", "## The course's observations", "", "| claim | holds | evidence |", "|---|---|---|"]
    lines += [f"| {o['claim']} | {'yes' if o['holds'] else 'no'} | {o['evidence']} |" for o in result["observations"]]
    for key, label in (("sweep_seq_len", "seq_len"), ("sweep_batch_size", "batch_size")):
        sweep = result.get(key)
        if not sweep:
            continue
        lines += ["", f"## Sweep over {label} ({sweep['fixed']}); time % / FLOPs % per component", "",
                  f"| {label} | forward ms | " + " | ".join(sweep["components"]) + " |",
                  "|---:|---:|" + "---:|" * len(sweep["components"])]
        for point in sweep["points"]:
            cells = [f"{point['share_of_time'][c]:.0%} / {point['share_of_flops'][c]:.0%}" for c in sweep["components"]]
            lines.append(f"| {point[label]} | {fmt(point['forward_ms'])} | " + " | ".join(cells) + " |")
        lines += ["", f"Attention scores+softmax+context vs FFN (up+down): {sweep['crossover']}"]
    return "\n".join(lines) + "\n"


def summarise_sweep(df, key: str, fixed: str) -> dict:
    comps = list(dict.fromkeys(df["component"]))
    points = []
    for value, g in df.groupby(key, sort=True):
        g = g.set_index("component")
        ffn_ms, ffn_flops = g.loc[["ffn_in", "ffn_out"], "ms"].sum(), g.loc[["ffn_in", "ffn_out"], "flops"].sum()
        points.append({key: int(value), "forward_ms": float(g["forward_ms"].iloc[0]), "coverage": float(g["coverage"].iloc[0]),
                       "ms": g["ms"].to_dict(), "flops": g["flops"].astype(float).to_dict(),
                       "share_of_time": g["share_of_time"].to_dict(), "share_of_flops": g["share_of_flops"].to_dict(),
                       "attention_over_ffn_time": float(g.loc["attention_scores", "ms"] / ffn_ms),
                       "attention_over_ffn_flops": float(g.loc["attention_scores", "flops"] / ffn_flops)})
    return {"fixed": fixed, "components": comps, "points": points, "crossover": crossover_text(points, key),
            "skipped": df.attrs.get("skipped_seq_lens", [])}


def crossover_text(points: list[dict], key: str) -> str:
    first_time = next((p[key] for p in points if p["attention_over_ffn_time"] > 1), None)
    first_flops = next((p[key] for p in points if p["attention_over_ffn_flops"] > 1), None)
    ratios = ", ".join(f"{p[key]}: {p['attention_over_ffn_time']:.2f}x time / {p['attention_over_ffn_flops']:.2f}x FLOPs" for p in points)
    text = (f"attention/FFN ratio per {key} — {ratios}. Time crossover at {key} = {first_time or 'none in range'}; "
            f"FLOPs crossover at {key} = {first_flops or 'none in range'}.")
    if key == "seq_len" and points:
        # Scores FLOPs are exactly quadratic in T and FFN FLOPs linear, so their ratio is linear in T: extrapolate.
        last = points[-1]
        t_flops = last[key] / max(last["attention_over_ffn_flops"], 1e-12)
        t_time = last[key] / max(last["attention_over_ffn_time"], 1e-12)
        text += (f" Extrapolated (ratio linear in T): FLOPs cross at T ≈ {t_flops:,.0f}, measured time at "
                 f"T ≈ {t_time:,.0f} (from the longest point).")
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", default=None, help="demo, demo-sst2, a directory or a hub id")
    src.add_argument("--shape", choices=sorted(SHAPES), default=None, help="a random model of this shape (from a config)")
    p.add_argument("--recipe", default=None, help="a recipe JSON file (default: the unmodified model)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=None, help="untimed runs first (default: 1 on CPU, 3 on CUDA)")
    p.add_argument("--no-materialized", action="store_true")
    p.add_argument("--sweep", action="store_true", help="sweep the sequence length")
    p.add_argument("--sweep-seq-lens", default="16,32,64,128,256,512")
    p.add_argument("--sweep-batch", type=int, default=None, help="batch size of the sweep (default: --batch)")
    p.add_argument("--batch-sweep", action="store_true", help="sweep the batch size at --seq-len")
    p.add_argument("--batch-sizes", default="1,4,16,64")
    p.add_argument("--sweep-repeats", type=int, default=3)
    p.add_argument("--out", default=None, help="JSON path; the markdown table goes beside it (.md)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    if args.shape or not args.model:
        shape = args.shape or "minilm"
        model_like, name = random_model(shape, args.device), f"random {shape}-shaped BERT (from a config)"
    else:
        from analysis.io.models import load_model

        model_like = load_model(args.model, device=args.device)
        name = args.model
    recipe = Recipe.load(args.recipe) if args.recipe else Recipe()
    report = profile_model(model_like, recipe, args.batch, args.seq_len, args.device, args.repeats, warmup=args.warmup,
                           dtype=args.dtype, materialized=not args.no_materialized)
    d = report.to_dict()
    header = report.header()
    header["device_name"] = device_name(args.device)
    result = {"model": name, "torch": torch.__version__, "header": header, "recipe": recipe.to_dict(),
              "by_component": d["by_component"], "rows": d["rows"], "observations": course_observations(report)}
    if report.materialized is not None:
        result["materialized_header"] = report.materialized.header()
        result["materialized_by_component"] = d["materialized"]["by_component"]
        result["side_by_side"] = d["side_by_side"]
    if args.sweep:
        seq_lens = [int(t) for t in args.sweep_seq_lens.split(",")]
        b = args.sweep_batch or args.batch
        df = sweep_seq_len(model_like, recipe, seq_lens, b, args.device, args.sweep_repeats, dtype=args.dtype)
        result["sweep_seq_len"] = summarise_sweep(df, "seq_len", f"batch {b}")
    if args.batch_sweep:
        sizes = [int(b) for b in args.batch_sizes.split(",")]
        df = sweep_batch_size(model_like, recipe, sizes, args.seq_len, args.device, args.sweep_repeats, dtype=args.dtype)
        result["sweep_batch_size"] = summarise_sweep(df, "batch_size", f"seq {args.seq_len}")
    result["seconds"] = round(time.perf_counter() - t0, 1)
    md = markdown(result)
    print(md)
    if args.out:
        write_json(args.out, result, device=args.device)
        with open(os.path.splitext(args.out)[0] + ".md", "w", encoding="utf-8") as f:
            f.write(md)


if __name__ == "__main__":
    main()
