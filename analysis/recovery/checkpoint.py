"""A recovered model's directory: weights, tokenizer, recipe, card, and (after a Stop) the state to resume.

    config.json, model.safetensors   save_pretrained (fp32); `load_materialized(dir)` always loads
                                     it, plain `from_pretrained(dir)` too when no heads were pruned
    tokenizer files                  the teacher's tokenizer
    recipe.json                      the Recipe, in the teacher's layer and head numbers
    recovery.json                    everything `recover` returned: recipe, objective and
                                     hyper-parameters, data, time, device, held-out selection,
                                     test metric before/after, and logits of 4 texts to check
    MODEL_CARD.md                    the same, for people
    training_state.pt                only after a Stop: latent weights, optimiser, schedule, data
                                     order and RNG, so `recover(..., resume=dir)` continues

Written through `analysis.io.outputs.atomic_directory`: complete or absent, never over an
existing directory unless asked. `load_model(dir)` loads it as any model, so new Recipes apply.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from analysis.core.materialize import plain_loadable
from analysis.core.sharing import save_pretrained
from analysis.core.recipe import Recipe
from analysis.errors import HeadroomError

STATE_FILE = "training_state.pt"
CARD_FILE = "recovery.json"
FORMAT = "headroom-recovered-v1"


@torch.no_grad()
def reference_logits(model, tokenizer, texts: list[str], max_length: int, dev) -> dict:
    """Logits of `model` (eval, fp32) on a few texts: the card claims them and a reload must reproduce them."""
    model.eval()
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    logits = model(**{k: v.to(dev) for k, v in enc.items()}).logits.float().cpu()  # (n, C)
    return {"texts": list(texts), "logits": [[round(float(x), 6) for x in row] for row in logits]}


def training_state(student, optimizer, schedule, run: dict, recipe: Recipe, seconds: float) -> dict:
    """What a stopped run needs to continue exactly: plain tensors and numbers (loadable with weights_only)."""
    return {"format": FORMAT, "recipe": recipe.key(), "seconds": seconds,
            "student": {k: v.detach().cpu() for k, v in student.model.state_dict().items()},
            "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
            "torch_rng": torch.get_rng_state(), **{k: run[k] for k in (
                "step", "epoch", "batch", "epoch_rng", "history", "best", "best_metric", "best_step",
                "pruner", "best_pruner") if k in run}}


def load_training_state(path: str) -> dict:
    file = Path(path) / STATE_FILE
    if not file.exists():
        raise HeadroomError(f"'{path}' holds no stopped run to resume (no {STATE_FILE}); start a new recovery.")
    state = torch.load(file, map_location="cpu", weights_only=True)
    if state.get("format") != FORMAT:
        raise HeadroomError(f"'{file}' was written by another version of Headroom; start a new recovery.")
    return state


def read_card(path: str) -> dict:
    """recovery.json of a recovered model directory."""
    try:
        return json.loads((Path(path) / CARD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise HeadroomError(f"'{path}' is not a recovered model directory (no readable {CARD_FILE}).") from None


def save_recovered(model, tokenizer, out_dir: str, recipe: Recipe, result: dict, *, overwrite: bool = False,
                   inputs: tuple = (), training_state: dict | None = None) -> dict:
    """Write the directory whole (atomic); return its files and whether plain transformers can load it."""
    from analysis.io.outputs import atomic_directory

    model.config.architectures = [type(model).__name__]
    with atomic_directory(out_dir, overwrite=overwrite, inputs=inputs, what="recovered model directory") as tmp:
        save_pretrained(model, tmp)  # a shared (tied) layer's tensors once
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        (tmp / "recipe.json").write_text(recipe.to_json(), encoding="utf-8")
        card = {"format": FORMAT, **result}
        (tmp / CARD_FILE).write_text(json.dumps(card, indent=2, default=_plain) + "\n", encoding="utf-8")
        (tmp / "MODEL_CARD.md").write_text(model_card(card), encoding="utf-8")
        if training_state is not None:
            torch.save(training_state, tmp / STATE_FILE)
        weights = sum(os.path.getsize(tmp / f) for f in os.listdir(tmp) if f.endswith(".safetensors"))
        sparse = None
        if "pruning" in result or recipe.has_sparsity():  # the zeros' honest size: bitmask and CSR files
            from analysis.measure.sparse_files import FORMATS, write_sparse_state

            state = model.state_dict()
            os.makedirs(tmp / "sparse")
            sparse = {fmt: write_sparse_state(state, str(tmp / "sparse" / f"{fmt}.safetensors"), fmt) for fmt in FORMATS}
    saved = {"weights_bytes": weights, "plain_transformers_loadable": plain_loadable(model.config),
             "resumable": training_state is not None}
    if sparse is not None:
        saved["sparse_weights_bytes"] = {"dense_with_zeros": weights, **sparse,
                                         "files": {fmt: f"sparse/{fmt}.safetensors" for fmt in sparse}}
    return saved


def _plain(o):
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(type(o).__name__)


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def model_card(c: dict) -> str:
    """MODEL_CARD.md of a recovered model, from its recovery.json."""
    cfg, ev, sel, data = c["config"], c.get("eval"), c["selection"], c["data"]
    weights = ", ".join(f"{k.replace('_weight', '')} {cfg[k]:g}" for k in
                        ("ce_weight", "kd_weight", "hidden_weight", "attention_weight", "pkd_weight") if cfg[k])
    budget = f"{cfg['epochs']} epoch(s)" + (f", at most {cfg['minutes']:g} minutes" if cfg.get("minutes") else "")
    lines = [f"# Recovered model: {c['teacher']}, {c['recipe_description']}, objective {cfg['objective']}", "",
             f"- Teacher: `{c['teacher']}` ({c['teacher_source']}), unmodified.",
             f"- Recipe: {c['recipe_description']} (recipe.json). Student: {c['student']['layers']} layers, heads per "
             f"layer {c['student']['heads_per_layer']}, {c['student']['parameters']:,} parameters "
             f"(teacher {c['student']['teacher_parameters']:,}).",
             f"- Objective `{cfg['objective']}`: {weights}; temperature {cfg['temperature']:g}; layer map "
             f"{cfg['layer_map']}; {'quantisation-aware (straight-through)' if cfg['qat'] else 'bits applied after training'}.",
             f"- Training: {budget}, AdamW lr {cfg['lr']:g} (warm-up {cfg['warmup_ratio']:.0%}, linear decay), weight "
             f"decay {cfg['weight_decay']:g}, batch {cfg['batch_size']}, max length {cfg['max_length']}, seed "
             f"{cfg['seed']}, word embeddings {'frozen' if cfg['freeze_word_embeddings'] else 'trained'}; "
             f"{c['steps']} of {c['planned_steps']} steps ({c['status']}).",
             f"- Data: {data['train_examples']:,} examples of {data['train']}; {data['holdout_examples']:,} held out.",
             f"- Model selection: {sel['note']}; kept step {sel['chosen_step']}"
             + (f" (held-out {sel['metric']} {_pct(sel['holdout_metric'])})." if sel["metric"] else "."),
             f"- Device: {c['device']}{', bf16 autocast' if c['bf16_autocast'] else ', fp32'}; trained for "
             f"{c['train_minutes']:.2f} minutes.", ""]
    pr = c.get("pruning")
    if pr and pr["method"] != "none":
        sch = pr["schedule"]
        lines[-1:-1] = [f"- Pruning: {pr['method']} pruning during fine-tuning of {', '.join(pr['roles'])} "
                        f"(embeddings and classifier dense), {pr['scope']}, to {pr['final_sparsity']:.0%} zeros per "
                        f"matrix ({pr['zeros']:,} of {pr['pruned_weights']:,} weights); {sch['kind']} from "
                        f"{sch['start_fraction']:.0%} to {sch['end_fraction']:.0%} of training, mask every "
                        f"{sch['mask_every_steps']} step(s)"
                        + (f"; scores init 0, lr {pr['scores']['lr']:g}, straight-through top-k" if "scores" in pr else "")
                        + f". Note: {pr['note']}."]
    elif pr and pr["recipe_zeros_kept"]:
        lines[-1:-1] = [f"- The recipe's {pr['recipe_zeros_kept']:,} zeros were kept during training (masked forward). "
                        f"Note: {pr['note']}."]
    if ev:
        lines += [f"## Test metric ({ev['split']}, {ev['examples']:,} examples, scored after training)", "",
                  f"| model | {ev['metric']} |", "| --- | --- |",
                  f"| teacher (unmodified) | {_pct(ev['teacher'])} |",
                  f"| recipe, before recovery (simulated) | {_pct(ev['before'])} |",
                  f"| recovered (this model, measured) | {_pct(ev['after'])} |", ""]
    lines += ["## Load it", "", "```python", "from analysis import load_model",
              "loaded = load_model(\"<this directory>\")  # then give it new Recipes", "```", ""]
    return "\n".join(lines)
