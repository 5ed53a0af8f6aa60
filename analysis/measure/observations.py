"""The course's claims about BERT's costs, checked against a measured `ProfileReport`.

Five statements a compression course makes (the embedding is a lookup with many parameters, Q/K/V
cost three times W_O, attention's matmuls run slower than their FLOPs suggest, the FFN holds most
parameters and FLOPs, linear layers take time in proportion to FLOPs on a CPU), each returned
with whether it holds here and the numbers that say so, on which device and shape.
"""

from __future__ import annotations

from analysis.measure.profile_report import ProfileReport

#: the components that are matrix products with weights (the rate "ms per GFLOP" compares them).
LINEAR_COMPONENTS = ("attention_qkv", "attention_output", "ffn_in", "ffn_out")


def course_observations(report: ProfileReport) -> list[dict]:
    """What a compression course says about BERT, checked against this report's numbers."""
    df = report.by_component().set_index("component")
    value = lambda c, col: float(df[col].get(c, 0.0))  # noqa: E731
    ms_per_gflop = {c: value(c, "ms") / max(value(c, "flops") / 1e9, 1e-12) for c in LINEAR_COMPONENTS if c in df.index}
    linear_rate = sum(value(c, "ms") for c in ms_per_gflop) / max(sum(value(c, "flops") for c in ms_per_gflop) / 1e9, 1e-12)
    params = df["params"].sum()
    encoder_params = sum(value(c, "params") for c in ("attention_qkv", "attention_output", "layernorm", "ffn_in", "ffn_out"))
    ffn_params, ffn_flops = value("ffn_in", "params") + value("ffn_out", "params"), value("ffn_in", "flops") + value("ffn_out", "flops")
    qkv_o_flops = value("attention_qkv", "flops") / max(value("attention_output", "flops"), 1)
    qkv_o_ms = value("attention_qkv", "ms") / max(value("attention_output", "ms"), 1e-12)
    att_rate = value("attention_scores", "ms") / max(value("attention_scores", "flops") / 1e9, 1e-12)
    spread = max(ms_per_gflop.values()) / max(min(ms_per_gflop.values()), 1e-12) if ms_per_gflop else float("nan")
    where = f"{report.device}, {report.threads} threads, batch {report.batch_size} x seq {report.seq_len}, measured"
    return [
        {"claim": "the embedding is a lookup with no FLOPs but many parameters",
         "holds": bool(value("embeddings", "share_of_flops") < 0.01 and value("embeddings", "share_of_params") > 0.1),
         "evidence": f"embeddings: {value('embeddings', 'share_of_flops'):.3%} of FLOPs (row sums + LayerNorm), "
                     f"{value('embeddings', 'share_of_params'):.1%} of parameters"},
        {"claim": "Q/K/V cost three times the output projection",
         "holds": bool(abs(qkv_o_flops - 3) < 0.05 and 2.0 <= qkv_o_ms <= 4.0),
         "evidence": f"FLOPs ratio {qkv_o_flops:.2f}; measured time ratio {qkv_o_ms:.2f} ({where})"},
        {"claim": "attention matmuls + softmax have no parameters but run slower than their FLOPs suggest",
         "holds": bool(value("attention_scores", "params") == 0 and att_rate > 1.2 * linear_rate),
         "evidence": f"{value('attention_scores', 'share_of_flops'):.1%} of FLOPs but {value('attention_scores', 'share_of_time'):.1%} "
                     f"of time: {att_rate:.2f} ms/GFLOP vs {linear_rate:.2f} ms/GFLOP for the linear layers ({where})"},
        {"claim": "the FFN holds most parameters and FLOPs",
         "holds": bool(ffn_params > 0.5 * encoder_params and ffn_flops > 0.5 * df["flops"].sum()),
         "evidence": f"FFN: {ffn_params / max(encoder_params, 1):.1%} of encoder-layer parameters "
                     f"({ffn_params / max(params, 1):.1%} of all, embeddings {value('embeddings', 'share_of_params'):.1%}), "
                     f"{ffn_flops / max(df['flops'].sum(), 1):.1%} of FLOPs"},
        {"claim": "linear layers take time in proportion to their FLOPs (on a CPU; a GPU hides it)",
         "holds": bool(spread <= 1.5),
         "evidence": "ms per GFLOP: " + ", ".join(f"{c} {v:.2f}" for c, v in ms_per_gflop.items())
                     + f" (max/min {spread:.2f}; {where})"},
    ]
