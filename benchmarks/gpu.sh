#!/usr/bin/env bash
# Every GPU measurement of Headroom in one script: a CUDA check, then the existing `--device cuda`
# benchmarks, each writing JSON into OUT_DIR. Budget: under 9 minutes on one GPU (step timeouts sum to 8 min; each step has its
# own timeout; a step that fails or times out is recorded in OUT_DIR/summary.json and the script
# goes on, so one broken step never hides the others).
#
#   bash benchmarks/gpu.sh OUT_DIR            # on a GPU machine (DEVICE=cuda, the default)
#   DEVICE=cpu bash benchmarks/gpu.sh /tmp/out --quick   # the same steps on the CPU, small sizes:
#                                             # checks the script itself where no GPU is at hand
#   ONLY=cuda_check,importance_demo bash benchmarks/gpu.sh OUT_DIR   # a subset of the steps
#
# Steps (full sizes):
#   cuda_check          torch/CUDA versions, the GPU's name and memory, a matmul checked on the GPU
#   profile_bert_base   per-component profile of a BERT-base-shaped model, with the sequence sweep
#   live_sst2_bert_base the what-if loop (baseline, incremental recipes) on the full SST-2 dev, BERT-base shape
#   pruned_latency_demo pruned (materialized) vs unpruned latency of demo over batch x sequence shapes
#   lowp_demo           fp32 vs fp16 / bf16 (and torchao int8) latency of demo
#   importance_demo     Michel (per-example, the default) / Taylor / entropy importance time on 2,000 examples
#   layer_drop_demo     materialized layer-drop latency of demo at batch 256
#   semi_structured_demo 2:4 sparsity (all six matrices) on demo, fp16: dense vs torch 2:4 sparse kernels at 32x128 and
#                       256x128, interleaved (skipped, with the reason in its JSON, on the CPU or a pre-Ampere GPU)
set -u
OUT="${1:?usage: [DEVICE=cpu] bash benchmarks/gpu.sh OUT_DIR [--quick]}"
QUICK=0
[ "${2:-}" = "--quick" ] && QUICK=1
DEVICE="${DEVICE:-cuda}"
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
STATUS="$OUT/status.tsv"
: > "$STATUS"
START=$SECONDS

step() {  # step NAME TIMEOUT_S COMMAND...: run it, log it, record its exit status and seconds
  local name="$1" limit="$2"; shift 2
  if [ -n "${ONLY:-}" ] && [[ ",$ONLY," != *",$name,"* ]]; then return 0; fi
  local t0=$SECONDS
  echo "== $name (limit ${limit}s): $*"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo -e "$name\t$rc\t$((SECONDS - t0))" >> "$STATUS"
  echo "   exit $rc after $((SECONDS - t0)) s (log: $OUT/$name.log)"
}

CHECK_LIMIT=30
[ "$QUICK" = 1 ] && CHECK_LIMIT=300  # a loaded CPU takes longer than that to import torch
step cuda_check "$CHECK_LIMIT" python - "$DEVICE" "$OUT/cuda_check.json" <<'EOF'
import sys
import torch
from analysis.measure.record import write_json

device, out = sys.argv[1], sys.argv[2]
facts = {"cuda_available": torch.cuda.is_available(), "torch": torch.__version__, "cuda": torch.version.cuda,
         "asked_device": device}
if device.startswith("cuda"):
    if not torch.cuda.is_available():
        write_json(out, {**facts, "ok": False, "why": "no CUDA GPU visible"})
        sys.exit("no CUDA GPU visible: run with DEVICE=cpu to check the script on the CPU")
    p = torch.cuda.get_device_properties(0)
    facts.update(name=p.name, memory_gib=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}")
a = torch.randn(512, 512, device=device)
facts["matmul_ok"] = bool(torch.allclose((a @ a).cpu(), a.cpu() @ a.cpu(), atol=1e-2))
write_json(out, {**facts, "ok": facts["matmul_ok"]}, device=device)
print(facts)
EOF

if [ "$QUICK" = 1 ]; then
  step profile_bert_base 300 python benchmarks/profile_report.py --model demo --device "$DEVICE" --batch 4 --seq-len 32 \
       --repeats 2 --sweep --sweep-seq-lens 16,32 --sweep-repeats 1 --out "$OUT/profile.json"
  step live_sst2_bert_base 300 python benchmarks/bench_live.py --model demo --limit 64 --device "$DEVICE" --repeats 1 \
       --out "$OUT/live.json"
  step pruned_latency_demo 300 python benchmarks/bench_pruned_latency.py --model demo --limit 64 --device "$DEVICE" \
       --batch-sizes 2 --seq-lens 16 --rounds 1 --repeats 2 --out "$OUT/pruned_latency.json"
  step lowp_demo 300 python benchmarks/bench_int8.py --model demo --device "$DEVICE" --threads 1 --batch-size 2 \
       --seq-len 16 --repeats 2 --out "$OUT/lowp.json"
  step importance_demo 300 python benchmarks/bench_importance.py --model tiny --limit 64 --device "$DEVICE" \
       --repeats 1 --methods michel,taylor --out "$OUT/importance.json"
  step layer_drop_demo 300 python benchmarks/bench_layer_drop.py --model demo --device "$DEVICE" --batch-size 2 \
       --seq-len 16 --repeats 2 --out "$OUT/layer_drop.json"
  step semi_structured_demo 300 python benchmarks/bench_semi_structured.py --model demo --device "$DEVICE" --limit 32 \
       --shapes 2x16 --rounds 2 --out "$OUT/semi_structured.json"
else
  step profile_bert_base 90 python benchmarks/profile_report.py --shape bert-base --device "$DEVICE" --sweep \
       --out "$OUT/profile_cuda_bert_base.json"
  step live_sst2_bert_base 90 python benchmarks/bench_live.py --shape bert-base --data sst2 --limit 0 \
       --device "$DEVICE" --out "$OUT/live_cuda_bert_base.json"
  step pruned_latency_demo 60 python benchmarks/bench_pruned_latency.py --model demo --limit 500 --device "$DEVICE" \
       --out "$OUT/pruned_latency_cuda_demo.json"
  step lowp_demo 50 python benchmarks/bench_int8.py --model demo --device "$DEVICE" --out "$OUT/lowp_cuda_demo.json"
  step importance_demo 60 python benchmarks/bench_importance.py --model demo --limit 2000 --device "$DEVICE" \
       --methods michel,taylor,entropy --out "$OUT/importance_cuda_demo.json"
  step layer_drop_demo 40 python benchmarks/bench_layer_drop.py --model demo --device "$DEVICE" --batch-size 256 \
       --out "$OUT/layer_drop_cuda_demo.json"
  step semi_structured_demo 60 python benchmarks/bench_semi_structured.py --model demo --device "$DEVICE" --limit 500 \
       --shapes 32x128,256x128 --rounds 30 --out "$OUT/semi_structured_cuda_demo.json"
fi

python - "$STATUS" "$OUT/summary.json" "$DEVICE" "$QUICK" "$((SECONDS - START))" <<'EOF'
import json
import sys

status, out, device, quick, seconds = sys.argv[1:]
steps = [dict(zip(("step", "exit", "seconds"), line.rstrip("\n").split("\t"))) for line in open(status) if line.strip()]
for s in steps:
    s["exit"], s["seconds"] = int(s["exit"]), int(s["seconds"])
    s["ok"] = s["exit"] == 0
summary = {"device": device, "quick": quick == "1", "seconds": int(seconds), "steps": steps,
           "all_ok": all(s["ok"] for s in steps)}
json.dump(summary, open(out, "w"), indent=2)
print(json.dumps(summary, indent=2))
sys.exit(0 if summary["all_ok"] else 1)
EOF
