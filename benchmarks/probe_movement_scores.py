"""Why hard movement pruning collapses at this lab's budgets: the weights its scores choose, one-shot.

`bench_movement.py` found movement pruning at chance at every sparsity when fine-tuning a converged
model for 250 steps. This probe takes the training loop out of the question. It fine-tunes the model
for `--steps` batches exactly as recovery's movement run does before its first mask (AdamW, weights
at `--lr`, Sanh et al.'s scores S at `--prune-lr` without weight decay, the same linear warm-up, gradients clipped at 1.0
together, straight-through W * TopK(S) with nothing pruned yet), and accumulates beside them the raw
first-order movement  -sum_t dL/dW * W.  Then, on the weights as trained, it prunes the same fraction
of every encoder linear (Q/K/V/O, FFN in/out; local, per matrix) by each criterion and scores the
model once on the evaluation split, with nothing retrained:

- magnitude: the smallest |W|;              - random: a uniform random choice (seed 0);
- movement: the smallest learned scores S (what recovery's first mask prunes);
- first-order movement: the smallest -sum dL/dW * W (the score's definition without Adam);
- Taylor sensitivity: the smallest |sum dL/dW * W| (first-order importance, as for heads).

Two tests of the explanation: each role alone (10% of that role in every layer, the rest dense), and
bias correction (the mean input of each pruned linear, over 256 train examples, times the pruned
weights added to its bias: if movement hurt by shifting activation means, this would repair it).
Per criterion: the mean |W| of the pruned weights over the matrices' mean |W| (`magnitude_ratio`).

    OMP_NUM_THREADS=2 nice python benchmarks/probe_movement_scores.py --model demo-sst2 \
        --out benchmarks/results/movement_scores_probe_sst2.json
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch.func import functional_call

from analysis.io.datasets import own_splits
from analysis.io.models import load_model
from analysis.io.training import CLIP_NORM
from analysis.measure.record import write_json
from analysis.recovery.pruning import pruned_mask, slots, topk_keep

ROLES = ("query", "key", "value", "attention_output", "ffn_in", "ffn_out")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="demo-sst2")
    p.add_argument("--steps", type=int, default=25, help="training steps before the masks (recovery's first mask "
                                                         "at 10%% of 250 steps)")
    p.add_argument("--total-steps", type=int, default=250, help="the recovery run's length, for its 10%% warm-up")
    p.add_argument("--fractions", default="0.04,0.1,0.3")
    p.add_argument("--train-limit", type=int, default=4000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--prune-lr", type=float, default=1e-2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t0 = time.perf_counter()

    loaded = load_model(args.model, device="cpu")
    test, train = own_splits(loaded, train_limit=args.train_limit)
    model, tok = loaded.model, loaded.tokenizer
    params = dict(model.named_parameters())
    targets = slots(model, ROLES)
    names = [s.name for s in targets]
    role_of = {s.name: s.role for s in targets}
    scores = {n: torch.zeros_like(params[n], requires_grad=True) for n in names}
    first_order = {n: torch.zeros_like(params[n]) for n in names}
    optimizer = torch.optim.AdamW([{"params": list(model.parameters()), "lr": args.lr, "weight_decay": 0.01},
                                   {"params": list(scores.values()), "lr": args.prune_lr, "weight_decay": 0.0}])
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0)).tolist()
    loss_fn = torch.nn.CrossEntropyLoss()

    def encode(texts):
        return tok(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")

    none_pruned = {n: torch.zeros_like(params[n], dtype=torch.bool) for n in names}
    warmup = max(1, round(0.1 * args.total_steps))  # recovery's linear warm-up, 10% of its steps
    model.train()
    losses = []
    for step in range(args.steps):
        for group, lr in zip(optimizer.param_groups, (args.lr, args.prune_lr)):
            group["lr"] = lr * min(1.0, (step + 1) / warmup)
        idx = order[(step * args.batch_size) % len(order):][:args.batch_size]
        enc = encode([train.texts[i] for i in idx])
        weights = {n: params[n] * topk_keep(scores[n], 0.0) for n in names}  # TopK(S) at 0%: nothing pruned yet
        loss = loss_fn(functional_call(model, weights, kwargs=dict(enc)).logits,
                       torch.tensor([train.labels[i] for i in idx]))
        loss.backward()
        with torch.no_grad():
            for n in names:
                first_order[n] -= params[n].grad * params[n]
        torch.nn.utils.clip_grad_norm_(list(model.parameters()) + list(scores.values()), CLIP_NORM)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(round(float(loss.detach()), 4))

    model.eval()
    mods = dict(model.named_modules())
    sums, hooks, real = {}, [], {}
    for n in names:
        def hook(_mod, inp, n=n):  # the mean over real tokens (padding left out)
            x = inp[0].detach()[real["mask"]]
            s, c = sums.get(n, (0.0, 0))
            sums[n] = (s + x.sum(0), c + x.shape[0])
        hooks.append(mods[n[:-len(".weight")]].register_forward_pre_hook(hook))
    with torch.no_grad():
        for j in range(0, 256, 64):
            enc = encode([train.texts[i] for i in order[j:j + 64]])
            real["mask"] = enc["attention_mask"].bool()
            model(**enc)
    for h in hooks:
        h.remove()
    means = {n: s / c for n, (s, c) in sums.items()}
    batches = [(encode(test.texts[j:j + 64]), torch.tensor(test.labels[j:j + 64])) for j in range(0, len(test), 64)]

    @torch.no_grad()
    def score(masks, *, bias_correct=False):
        weights = {}
        for n in names:
            weights[n] = params[n] * (~masks[n]).to(params[n].dtype)
            if bias_correct:
                b = n[:-len("weight")] + "bias"
                weights[b] = params[b] + (params[n] * masks[n].to(params[n].dtype)) @ means[n]
        loss_sum, right = 0.0, 0
        for enc, y in batches:
            logits = functional_call(model, weights, kwargs=dict(enc)).logits
            loss_sum += float(loss_fn(logits, y)) * len(y)
            right += int((logits.argmax(-1) == y).sum())
        return {"accuracy": round(right / len(test), 4), "loss": round(loss_sum / len(test), 4)}

    gen = torch.Generator().manual_seed(0)
    criteria = {
        "magnitude": lambda n: params[n].detach().abs(),
        "random": lambda n: torch.rand(params[n].shape, generator=gen),
        "movement": lambda n: scores[n].detach(),
        "first_order_movement": lambda n: first_order[n],
        "taylor_sensitivity": lambda n: first_order[n].abs(),
    }

    def masks_of(criterion, fraction, roles=ROLES):
        return {n: pruned_mask(criterion(n), fraction) if role_of[n] in roles else none_pruned[n] for n in names}

    def magnitude_ratio(masks):
        return round(sum(float(params[n].detach().abs()[masks[n]].mean() / params[n].detach().abs().mean())
                         for n in names) / len(names), 3)

    rows, by_role = [], []
    unpruned = score(none_pruned)
    for fraction in [float(f) for f in args.fractions.split(",")]:
        for name, criterion in criteria.items():
            masks = masks_of(criterion, fraction)
            rows.append({"criterion": name, "fraction": fraction, **score(masks),
                         "bias_corrected": score(masks, bias_correct=True), "magnitude_ratio": magnitude_ratio(masks)})
            print(rows[-1], flush=True)
    for role in ROLES:
        for name in ("movement", "random"):
            by_role.append({"role": role, "criterion": name, "fraction": 0.1,
                            **score(masks_of(criteria[name], 0.1, roles=(role,)))})
            print(by_role[-1], flush=True)
    write_json(args.out, {
        "model": args.model, "eval_split": test.name, "eval_examples": len(test), "train": train.name,
        "device": "cpu", "threads": args.threads, "steps": args.steps, "batch_size": args.batch_size,
        "lr": args.lr, "prune_lr": args.prune_lr, "warmup_steps": warmup, "train_losses": losses, "unpruned_after_steps": unpruned,
        "note": "one-shot masks on the weights after the steps, nothing retrained; pruned fraction of every "
                "encoder linear (local)", "rows": rows, "one_role_at_a_time": by_role,
        "seconds": round(time.perf_counter() - t0, 1), "loadavg": [round(x, 2) for x in os.getloadavg()]},
        device="cpu")


if __name__ == "__main__":
    main()
