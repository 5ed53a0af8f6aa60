"""Recovery: win back, by training, what a compression Recipe costs.

A recovery takes a *teacher* (the unmodified model, never changed) and a *student* (the Recipe's
model: heads sliced out and layers removed by `materialize`, or, for bit recipes, fake-quantised
weights trained with a straight-through estimator), trains the student on the train split with
one or more objectives, and saves a new model with its card. The result is a model again: load
it with `load_model(dir)` and give it new Recipes (iterative prune -> retrain).

    config.py      RecoveryConfig: objective weights, budget, optimiser, data (one dataclass)
    student.py     the student of a Recipe, and the straight-through fake-quantiser (QAT)
    objectives.py  the losses, each with its paper: CE, soft targets, TinyBERT's MSEs, PKD
    loop.py        the training loop: train split only, model selection on a held-out part of it
    checkpoint.py  the output directory: safetensors, tokenizer, recipe.json, MODEL_CARD.md, recovery.json
"""
