"""The recovery loop: train a Recipe's student on the train split, choose it on a held-out part.

    result = recover(load_model("demo"), Recipe(dropped_layers=[4, 5]),
                     RecoveryConfig.for_objective("kd"), out_dir="demo-drop2-kd")

What it does, in order:
1. Data: the train split (never the evaluation split) minus a stratified `holdout` of it; the
   held-out part scores the student during training (the live curve) and picks the checkpoint
   kept (the best held-out metric; the last one without a holdout).
2. Student (`student.py`) and teacher: the teacher is the loaded model, read only through
   `simulate`'s forward under no_grad, so its weights stay bit-identical.
3. Training as the demo models were fine-tuned (`analysis.io.training`): AdamW, linear warm-up
   and decay (over the epochs, or over the minutes when a time budget is set), clipping at 1.0,
   length-grouped batches, seeded; bf16 autocast on CUDA (and CPUs with native bf16).
4. Only after training, the evaluation split is scored once, for the card: the recipe before
   recovery (simulated, as every page shows it) and the recovered model after.

`progress(fraction, message)` hears the loss and the held-out metric; `log(row)` gets every
logged row (the dashboard's curve). Setting `cancel` stops at the next step: the best checkpoint
so far is saved with the state to resume from (`resume=out_dir`), which continues the same run.
"""

from __future__ import annotations

import copy
import os
import time
from typing import Callable

import torch

from analysis.core.adapters import Adapter
from analysis.core.recipe import Recipe
from analysis.core.simulate import SimulatedModel
from analysis.errors import HeadroomError
from analysis.io.batching import collate, tokenize
from analysis.io.subsets import align_labels
from analysis.io.text_dataset import TextDataset
from analysis.io.training import (CLIP_NORM, adamw, evaluate, length_grouped_batches, seed_everything,
                                  split_holdout, use_bf16, warmup_linear_schedule)
from analysis.jobs import Progress, report
from analysis.recovery.checkpoint import (load_training_state, reference_logits, save_recovered,
                                          training_state)
from analysis.recovery.config import RecoveryConfig
from analysis.recovery.objectives import LayerMap, combined_loss
from analysis.recovery.student import build_student
from analysis.runtime import device_name, resolve_device

LOG_EVERY = 10  # steps between two logged rows (loss averaged over them)
SELECTION_NOTE = ("model selection and the live curve use {n} examples held out of the {split} split; "
                  "the evaluation split was scored once, after training, for this card only")


def _train_data(loaded, config: RecoveryConfig, train: TextDataset | None) -> TextDataset:
    from analysis.io.datasets import load_dataset

    if train is None:
        data = config.data or loaded.default_data
        if data is None:
            raise HeadroomError("This model does not say which data it was trained for; set the recovery's data.")
        train = load_dataset(data, config.train_split)
    if train.labels is None:
        raise HeadroomError(f"{train.name} has no labels, so it cannot be trained on; add a label column.")
    return align_labels(train, loaded.id2label)


def _eval_data(loaded, config: RecoveryConfig, test: TextDataset | None) -> TextDataset | None:
    """The evaluation split for the card: the model's own split of a bundled set, or a file named by eval_split.

    Training data from a file has no splits: its evaluation file must be named (eval_split = its
    path), or nothing is scored, never the training file itself.
    """
    from analysis.io.datasets import load_dataset, report_split

    split = config.eval_split
    if test is not None or (split or "").lower() == "none":
        return test
    data = config.data or loaded.default_data
    if split and os.path.isfile(split):
        return load_dataset(split)
    if not data or os.path.isfile(data):
        return None
    split = split or report_split(loaded, data)
    return load_dataset(data, split)


def _data_card(loaded, config: RecoveryConfig) -> dict:
    """What a reload of the recovered model reads as its own data (`LoadedModel.card`): the teacher's
    data and evaluation split, or the bundled set it was trained on; nothing for a user's file."""
    data = config.data or loaded.default_data
    if not data or os.path.isfile(data):
        return {}
    split = config.eval_split
    if not split or split.lower() == "none" or os.path.isfile(split):
        split = loaded.card.get("eval_split") if not config.data else None
    card = {"data": data, "eval_split": split, "metric": loaded.card.get("metric") if not config.data else None}
    return {k: v for k, v in card.items() if v}


def recover(loaded, recipe: Recipe, config: RecoveryConfig, *, train: TextDataset | None = None,
            test: TextDataset | None = None, out_dir: str | None = None, overwrite: bool = False,
            resume: str | None = None, progress: Progress = None, cancel=None,
            log: Callable[[dict], None] | None = None) -> dict:
    """Train the student of `recipe` on `loaded`'s train data; save it to `out_dir`; return the card's facts."""
    from analysis.io.outputs import check_output_dir

    config.validate()
    loaded.adapter.validate(recipe)
    dev = resolve_device(config.device)
    if out_dir:  # checked before the work: a bad path fails now, not after the training
        check_output_dir(out_dir, inputs=(loaded.source,), overwrite=overwrite or resume == out_dir,
                         what="recovered model directory")
    full = _train_data(loaded, config, train)
    if config.holdout >= len(full):
        raise HeadroomError(f"A holdout of {config.holdout} leaves nothing to train on ({len(full)} examples).")
    train_ds, held = split_holdout(full, config.holdout)

    seed_everything(config.seed)
    teacher = loaded.model
    teacher_dev = teacher if next(teacher.parameters()).device == dev else copy.deepcopy(teacher).to(dev)
    teacher_sim = SimulatedModel(Adapter(teacher_dev), Recipe()) if config.needs_teacher else None
    student = build_student(teacher, recipe, qat=config.qat, config=config)
    student.model.to(dev)
    pruner = student.pruner.to(dev) if student.pruner is not None else None
    if config.freeze_word_embeddings:
        words = student.adapter.word_embeddings
        # factorised embeddings (ALBERT's E): the V x E table is frozen, its E x H projection trains
        (words.table.weight if hasattr(words, "table") else words.weight).requires_grad_(False)
    layer_map = LayerMap.build(config.layer_map, student.kept_layers, student.teacher_layers)
    need_hidden = bool(config.hidden_weight or config.pkd_weight)
    need_attention = bool(config.attention_weight)

    tokenizer = loaded.tokenizer
    max_length = min(config.max_length, loaded.max_length)
    enc, _ = tokenize(train_ds, tokenizer, max_length)
    ids, types = enc["input_ids"], enc.get("token_type_ids")
    labels = torch.tensor(train_ds.labels, dtype=torch.long)
    lengths = [len(x) for x in ids]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    params = [p for p in student.model.parameters() if p.requires_grad]
    optimizer = adamw(params, config.lr, config.weight_decay, dev)
    scores = pruner.score_parameters() if pruner is not None else []
    if scores:  # movement pruning's scores: their own learning rate, no weight decay (Sanh et al. 2020)
        optimizer.add_param_group({"params": scores, "lr": config.prune_lr, "weight_decay": 0.0})
    clipped = params + scores
    steps_per_epoch = -(-len(train_ds) // config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    budget_s = config.minutes * 60 if config.minutes else None
    clock = {"start": time.perf_counter(), "before": 0.0}  # seconds trained in earlier (stopped) sessions

    def trained_seconds() -> float:
        return clock["before"] + time.perf_counter() - clock["start"]

    def fraction(step: int) -> float:
        done = step / total_steps
        return max(done, trained_seconds() / budget_s) if budget_s else done

    schedule = warmup_linear_schedule(optimizer, total_steps, config.warmup_ratio, fraction)
    order_rng = torch.Generator().manual_seed(config.seed)
    eval_every = config.eval_every or max(1, steps_per_epoch // 4)
    bf16 = use_bf16(dev)

    run = {"step": 0, "epoch": 0, "batch": 0, "epoch_rng": order_rng.get_state(), "history": [],
           "best": None, "best_metric": None, "best_step": None, "pruner": None, "best_pruner": None}
    if resume:
        state = load_training_state(resume)
        if state["recipe"] != recipe.key():
            raise HeadroomError(f"The run in '{resume}' recovered another recipe; resume it with its own recipe.json.")
        student.model.load_state_dict(state["student"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["torch_rng"])
        run.update({k: state[k] for k in ("step", "epoch", "batch", "epoch_rng", "history", "best",
                                          "best_metric", "best_step", "pruner", "best_pruner") if k in state})
        if pruner is not None and run["pruner"] is not None:
            pruner.load_state_dict(run["pruner"])
        clock["before"] = state["seconds"]

    def score_holdout() -> float | None:
        if held is None:
            return None
        return evaluate(student.export(), held, tokenizer, max_length, dev)[held.metric]

    def keep_if_best(metric: float | None) -> None:
        if pruner is not None and not pruner.at_final:  # only a model at the final sparsity may be chosen
            return
        if metric is None or run["best_metric"] is None or metric > run["best_metric"]:
            run["best"] = {k: v.detach().to("cpu", copy=True) for k, v in student.model.state_dict().items()}
            run["best_metric"], run["best_step"] = metric, run["step"]
            run["best_pruner"] = pruner.state_dict() if pruner is not None else None

    if not resume:
        before = score_holdout()
        keep_if_best(before)
        row = {"step": 0, "epoch": 0.0, "seconds": 0.0, "loss": None, "holdout_metric": before}
        run["history"].append(row)
        if log:
            log(row)

    stopped, out_of_time, window = False, False, []
    for epoch in range(run["epoch"], config.epochs):
        if run["batch"] == 0:
            run["epoch_rng"] = order_rng.get_state()
        else:  # resuming mid-epoch: the same batch order as before the stop
            order_rng.set_state(run["epoch_rng"])
        batches = length_grouped_batches(lengths, config.batch_size, order_rng)
        for b in range(run["batch"], len(batches)):
            if cancel is not None and cancel.is_set():
                stopped = True
                break
            if budget_s and trained_seconds() >= budget_s:
                out_of_time = True
                break
            if pruner is not None:
                pruner.update(run["step"], fraction(run["step"]))
            members = batches[b]
            batch = collate(ids, types, members, pad_id).to(dev)
            student.model.train()
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                out = student(batch, output_hidden_states=need_hidden, output_attentions=need_attention)
                teacher_out = None
                if teacher_sim is not None:
                    with torch.no_grad():
                        teacher_out = teacher_sim(batch, output_hidden_states=need_hidden,
                                                  output_attentions=need_attention)
            loss, parts = combined_loss(config, out, teacher_out, labels[members].to(dev), batch.attention_mask,
                                        layer_map, student.kept_heads)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(clipped, CLIP_NORM)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            run["step"] += 1
            run["batch"] = b + 1
            window.append((float(loss.detach()), parts))
            last = run["step"] == total_steps
            if run["step"] % LOG_EVERY == 0 or run["step"] % eval_every == 0 or last:
                metric = None
                if run["step"] % eval_every == 0 or last:
                    metric = score_holdout()
                    keep_if_best(metric)
                row = {"step": run["step"], "epoch": round(run["step"] / steps_per_epoch, 3),
                       "seconds": round(trained_seconds(), 1),
                       "loss": round(sum(l for l, _ in window) / len(window), 5),
                       "parts": {k: round(sum(p[k] for _, p in window) / len(window), 5) for k in window[-1][1]},
                       "holdout_metric": metric}
                window = []
                run["history"].append(row)
                if log:
                    log(row)
                held_text = f", held-out {held.metric} {100 * run['best_metric']:.1f}% (best)" \
                    if run["best_metric"] is not None else ""
                report(progress, fraction(run["step"]), f"step {run['step']}/{total_steps}, loss {row['loss']:.3f}"
                       + held_text)
        if stopped or out_of_time:
            break
        run["epoch"], run["batch"] = epoch + 1, 0

    seconds = trained_seconds()
    if not stopped and held is not None and run["history"][-1]["holdout_metric"] is None:
        keep_if_best(score_holdout())  # the time budget ended between two scorings
    resume_state = None
    if stopped:
        run["pruner"] = pruner.state_dict() if pruner is not None else None
        resume_state = training_state(student, optimizer, schedule, run, recipe, seconds)
    if held is None or run["best"] is None:
        run["best"], run["best_step"] = None, run["step"]  # no holdout: the last weights
    else:
        student.model.load_state_dict(run["best"])
        if pruner is not None and run["best_pruner"] is not None:
            pruner.load_state_dict(run["best_pruner"])
    if pruner is not None and not stopped:
        pruner.finish()  # a run cut short by its time budget still ships the final sparsity
    final = student.export()

    result = {
        "teacher": loaded.name, "teacher_source": loaded.source, "recipe": recipe.to_dict(),
        "recipe_description": recipe.describe(), "config": config.to_dict(),
        "status": "stopped" if stopped else ("time budget reached" if out_of_time else "complete"),
        "steps": run["step"], "planned_steps": total_steps, "epochs_done": round(run["step"] / steps_per_epoch, 3),
        "train_seconds": round(seconds, 1), "train_minutes": round(seconds / 60, 2),
        "device": device_name(dev), "bf16_autocast": bf16, "threads": torch.get_num_threads(),
        "data": {"train": full.name, "train_examples": len(train_ds), "holdout_examples": len(held) if held else 0,
                 "eval": None},
        # what a reload of this model reads as its own data (LoadedModel.card), as the teacher's card says it
        "card": _data_card(loaded, config),
        "selection": {"chosen_step": run["best_step"], "holdout_metric": run["best_metric"],
                      "metric": held.metric if held else None,
                      "note": SELECTION_NOTE.format(n=len(held) if held else 0, split=config.train_split)
                      if held else "no holdout: the weights after the last step are kept; the evaluation split "
                                   "was scored once, after training, for this card only"},
        "history": run["history"],
        "student": {"layers": len(student.kept_layers), "kept_layers": student.kept_layers,
                    "heads_per_layer": [len(h) for h in student.kept_heads],
                    "parameters": sum(p.numel() for p in final.parameters()),
                    "teacher_parameters": sum(p.numel() for p in teacher.parameters())},
    }
    if pruner is not None:
        result["pruning"] = _pruning_card(config, pruner)
    result["check"] = reference_logits(final, tokenizer, (held or train_ds).texts[:4], max_length, dev)
    test = None if stopped else _eval_data(loaded, config, test)  # the evaluation split, only now
    if test is not None:
        result["data"]["eval"] = test.name
        result["eval"] = _before_after(loaded, final, recipe, test, max_length, dev)
    if out_dir:
        result["out_dir"] = str(out_dir)
        result["saved"] = save_recovered(final, tokenizer, out_dir, recipe, result, overwrite=overwrite or bool(resume),
                                         inputs=(loaded.source,), training_state=resume_state)
    return result


def _pruning_card(config: RecoveryConfig, pruner) -> dict:
    """What the card says about the zeros: the method, its schedule, the zeros per matrix, and what they buy."""
    from analysis.recovery.pruning import SPEED_NOTE

    facts = pruner.describe()
    card = {"method": config.prune_method, "note": SPEED_NOTE,
            "recipe_zeros_kept": facts["recipe_zeros_kept"], "recipe_matrices_kept_sparse": facts["recipe_matrices_kept_sparse"]}
    if config.prune_method != "none":
        weights = sum(m["weights"] for m in facts["per_matrix"])
        zeros = sum(m["zeros"] for m in facts["per_matrix"])
        card.update({
            "final_sparsity": config.prune_sparsity, "reached_sparsity": pruner.mask_sparsity,
            "roles": list(config.prune_roles), "scope": "local (each matrix its own top-k)",
            "schedule": {"kind": "cubic (Zhu & Gupta 2017, as Sanh et al. 2020)", "initial": 0.0,
                         "start_fraction": config.prune_warmup, "end_fraction": config.prune_end,
                         "mask_every_steps": config.prune_every,
                         "formula": "s_t = s_f + (s_i - s_f) (1 - (t - t_i) / (t_f - t_i))^3"},
            "pruned_matrices": len(facts["per_matrix"]), "pruned_weights": weights, "zeros": zeros,
            "zero_fraction": zeros / weights if weights else 0.0, "per_matrix": facts["per_matrix"]})
        if config.prune_method == "movement":
            card["scores"] = {"init": 0.0, "lr": config.prune_lr, "weight_decay": 0.0,
                              "gradient": "straight-through top-k: dL/dS = dL/dW' * W (Sanh et al. 2020)"}
    return card


def _before_after(loaded, final, recipe: Recipe, test: TextDataset, max_length: int, dev) -> dict:
    """The test metric of the teacher, of the recipe before recovery (simulated) and of the recovered model."""
    from analysis.io.models import LoadedModel
    from analysis.measure.evaluate import Evaluator

    ev = Evaluator(loaded, test, max_length=max_length)
    before = ev.evaluate(recipe)
    recovered = LoadedModel(f"{loaded.name} (recovered)", "memory", "recovered", final.to(loaded.device),
                            loaded.tokenizer, Adapter(final), loaded.device, {})
    after = Evaluator(recovered, test, max_length=max_length).baseline
    final.to(dev)
    return {"split": test.name, "examples": len(test), "metric": ev.baseline.metric_name,
            "teacher": ev.baseline.metric, "before": before.metric, "after": after.metric,
            "before_metrics": before.metrics, "after_metrics": after.metrics,
            "note": "before: the recipe applied one-shot (simulated, exact for heads and layers); after: the "
                    "recovered model itself, measured"}
