#!/usr/bin/env bash
# The recovered `demo` that serves >= 5x faster within 1 point (issue 16), step by step:
#   1. drop layers 1, 2, 3 (Sajjad's symmetric strategy, k = 3) and re-fine-tune 3 epochs on labels;
#   2. Michel importance of the recovered model on 500 stratified TRAIN examples, mask its 12 least
#      important heads, re-fine-tune 2 more epochs (Michel et al.'s prune -> retrain);
#   3. every deployment backend against the unmodified demo (torch fp32), interleaved, on the full
#      Banking77 test split.
# Model selection uses 500 examples held out of train; the test split is scored once per step.
# ~10 minutes on an idle 2-core CPU.  Usage: benchmarks/recovered_5x.sh [WORK_DIR]
set -euo pipefail
W=${1:-runs/recovered_5x}
mkdir -p "$W"
python -m analysis recover --model demo --drop-layers 1,2,3 --objective ce --epochs 3 \
    --out "$W/drop123-ce3" --json > "$W/step1.json"
python - "$W" <<'PY'
import sys
from analysis.core.recipe import Recipe
from analysis.io.datasets import load_dataset
from analysis.io.models import load_model
from analysis.io.subsets import align_labels
from analysis.measure.evaluate import Evaluator
from analysis.methods.importance import michel_importance

w = sys.argv[1]
m = load_model(f"{w}/drop123-ce3")
train = align_labels(load_dataset("banking77", "train", limit=500, seed=1), m.id2label)  # never the test split
order = michel_importance(Evaluator(m, train)).pruning_order()
recipe = Recipe(masked_heads=[tuple(h) for h in order[:12]])
open(f"{w}/heads12.json", "w").write(recipe.to_json())
print(recipe.describe())
PY
python -m analysis recover --model "$W/drop123-ce3" --recipe "$W/heads12.json" --objective ce --epochs 2 \
    --out "$W/drop123-ce3-h12-ce2" --json > "$W/step2.json"
python benchmarks/bench_backends.py --model "$W/drop123-ce3-h12-ce2" --reference demo --shapes 32x128,1x16 \
    --threads 1,2 --rounds 10 --out benchmarks/results/backends_cpu_recovered_5x.json
