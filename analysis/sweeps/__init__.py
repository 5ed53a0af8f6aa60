"""Sweeps: models x datasets x recipe generators, evaluated locally or on Ray, into the store.

`spec.py` reads a sweep description (YAML or JSON), `generators.py` turns each generator into
Recipes for one (model, data), `engines.py` runs the evaluations in-process or as Ray tasks —
where an evaluation runs never changes what it computes: the same Recipe on the same model and
data gives the same row either way.
"""
