"""Why a shared-layer model times faster at batch 1: one weight set stays in the CPU caches.

Cross-layer sharing (ALBERT) keeps every layer's FLOPs, yet the Weights page timed `demo` with all
six layers sharing one set at ~0.91x at batch 1 x 16. This times, interleaved against the unmodified
model (`analysis.measure.timing.compare`, 30 rounds, median ratio and bootstrap 95% interval):
the shared model, **the same model with every layer given its own copy of the same values** (same
numbers, same FLOPs, 6x the distinct weight bytes), and a no-op `materialize` (the materialize path
itself). If the gain is the cache, the unshared copy times at 1.0x.

    OMP_NUM_THREADS=2 python benchmarks/bench_sharing_cache.py benchmarks/results/sharing_cache_cpu_demo.json
"""
import copy
import json
import os
import platform
import sys

import torch
from analysis.core.materialize import materialize
from analysis.core.recipe import Recipe
from analysis.io.models import load_model
from analysis.measure.timing import compare, synthetic_batch

torch.set_num_threads(2)
loaded = load_model("demo", device="cpu")
base = loaded.model.eval()
out = {}
for groups in ([[0, 1, 2, 3, 4, 5]], [[0, 1], [2, 3], [4, 5]]):
    shared = materialize(base, Recipe(shared_layers=groups)).eval()
    unshared = copy.deepcopy(shared)
    unshared.bert.encoder.layer = torch.nn.ModuleList([copy.deepcopy(l) for l in unshared.bert.encoder.layer])
    plain = materialize(base, Recipe()).eval()
    ids = lambda m: len({p.data_ptr() for p in m.bert.encoder.parameters()})
    for B, T in ((32, 128), (1, 16)):
        batch = synthetic_batch(base.config.vocab_size, B, T, "cpu")
        inp = batch.model_inputs()
        with torch.inference_mode():
            assert torch.allclose(shared(**inp).logits, unshared(**inp).logits, atol=1e-5)
            c = compare({"shared": lambda: shared(**inp), "unshared copy": lambda: unshared(**inp),
                         "materialized no-op": lambda: plain(**inp)},
                        lambda: base(**inp), rounds=30, warmup=3, device=torch.device("cpu"))
        key = f"{'all-one' if len(groups) == 1 else 'pairs'} {B}x{T}"
        out[key] = {k: {"ratio": round(v.ratio, 3), "ci95": [round(x, 3) for x in v.ratio_ci95], "ms": round(v.ms, 2),
                        "baseline_ms": round(v.baseline_ms, 2)} for k, v in c.items() if k != "baseline"}
        out[key]["distinct_encoder_tensors"] = {"shared": ids(shared), "unshared": ids(unshared), "baseline": ids(base), "no-op": ids(plain)}
        out[key]["loadavg"] = round(os.getloadavg()[0], 2)
        print(key, json.dumps(out[key]), flush=True)
out["device"] = f"cpu ({platform.processor() or platform.machine()})"
out["threads"] = torch.get_num_threads()
with open(sys.argv[1], "w") as f:
    json.dump(out, f, indent=1)
