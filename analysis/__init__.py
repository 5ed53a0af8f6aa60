"""Headroom's analysis package: load BERT-family classifiers, apply compression Recipes, measure.

No Streamlit import anywhere in here: the dashboard, the CLI, the tests and the benchmarks all
call this package. The layout (README.md has one line per module):

    core/      the Recipe, architecture adapters, quantisation scheme, simulate, materialize
    io/        models, datasets and batching, training the demo models, the papers' results
    methods/   the science: head importance, head studies and selections, layer dropping, Hessian
               sensitivity, the named presets
    measure/   evaluation, size, FLOPs, timing, profiling, real low-precision kernels, Pareto front
    recovery/  train a recipe's model back: fine-tuning, distillation (KD, TinyBERT, PKD), QAT
    cli/       `python -m analysis ...` / `headroom ...`

The names below are the public API; they are imported on first use, so `import analysis` stays
cheap (the CLI's `--help` does not wait for torch and transformers).

    from analysis import Evaluator, Recipe, load_dataset, load_model
    loaded = load_model("demo")
    ev = Evaluator(loaded, load_dataset("banking77", "test", limit=500))
    print(ev.evaluate(Recipe(dropped_layers=[5])).metric)

Importing this package changes no logging and no environment variable; `quiet()` does, and the
CLI and the dashboard call it.
"""

from __future__ import annotations

import importlib
import logging
import os

__version__ = "0.2.0"

#: public name -> module that defines it
_API = {
    "HeadroomError": "analysis.errors",
    # core
    "Recipe": "analysis.core.recipe",
    "Adapter": "analysis.core.adapters",
    "QuantScheme": "analysis.core.quantize",
    "fake_quantize": "analysis.core.quantize",
    "simulate": "analysis.core.simulate",
    "SimulatedModel": "analysis.core.simulate",
    "materialize": "analysis.core.materialize",
    "save_materialized": "analysis.core.materialize",
    "load_materialized": "analysis.core.materialize",
    # io
    "load_model": "analysis.io.models",
    "LoadedModel": "analysis.io.models",
    "load_dataset": "analysis.io.datasets",
    "TextDataset": "analysis.io.text_dataset",
    "load_papers": "analysis.io.papers",
    # recovery
    "recover": "analysis.recovery.loop",
    "RecoveryConfig": "analysis.recovery.config",
    # measure
    "Evaluator": "analysis.measure.evaluate",
    "EvalResult": "analysis.measure.evaluate",
    "size_report": "analysis.measure.size",
    "count_flops": "analysis.measure.flops",
    "count_parameters": "analysis.measure.flops",
    "profile_model": "analysis.measure.profile",
    "real_quantize": "analysis.measure.lowbit",
    # methods
    "EvalContext": "analysis.methods.context",
    "compute_importance": "analysis.methods.importance",
    "michel_importance": "analysis.methods.importance",
    "HeadImportance": "analysis.methods.importance",
    "prune_curve": "analysis.methods.heads",
    "head_stats": "analysis.methods.heads",
    "least_important_heads": "analysis.methods.selection",
    "all_but_best_head": "analysis.methods.selection",
    "random_heads": "analysis.methods.selection",
    "PRESETS": "analysis.methods.presets",
    "build_preset": "analysis.methods.presets",
    "preset_recipes": "analysis.methods.presets",
    "pareto_front": "analysis.measure.pareto",
    "dropped_layers_for": "analysis.methods.layers",
    "hessian_sensitivity": "analysis.methods.sensitivity",
    "allocate_bits": "analysis.methods.sensitivity",
}

__all__ = sorted(_API) + ["quiet", "__version__"]


def __getattr__(name: str):
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'analysis' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__():
    return __all__


def quiet() -> None:
    """Silence third-party noise a Headroom user cannot act on; called by the CLI and dashboard.

    torchao (imported by transformers when installed) logs missing CUDA-only kernels on a CPU
    machine and torch warns about its enums; transformers and the hub print progress bars, and
    the tokenizers library warns about forking after parallel use.
    """
    for name in ("torchao", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
