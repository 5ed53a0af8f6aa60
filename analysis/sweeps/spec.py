"""A sweep specification: what to evaluate, declared in a YAML or JSON file.

    models: [demo]                       # names, directories or hub ids
    datasets:
      - {data: banking77, split: test, limit: 500}
    generators:
      - {kind: recipes, recipes: [{dropped_layers: [5]}, {weight_bits: 8}]}
      - {kind: head-ablations}           # every single head masked, one recipe each (L x H)
      - {kind: prune-curve, order: importance, step: 0.1}   # or order: random, seeds: 3
      - {kind: layer-strategies, strategies: [top, bottom], k: [1, 2]}
      - {kind: bit-grid, bits: [8, 4], granularity: [per-channel, per-head]}
    max_length: 128
    dtype: fp32
    keep_predictions: false
    threads: 2                           # torch threads per evaluation (default: this process's)

Every field is checked here, with one sentence for what is wrong, before anything is loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from analysis.errors import HeadroomError

GENERATOR_KINDS = ("recipes", "head-ablations", "prune-curve", "layer-strategies", "bit-grid")


@dataclass(frozen=True)
class DataSpec:
    data: str
    split: str | None = None  # default: the dataset's evaluation split
    limit: int | None = None  # stratified subset size (None = all)
    seed: int = 0


@dataclass
class SweepSpec:
    models: list[str]
    datasets: list[DataSpec]
    generators: list[dict]
    max_length: int = 128
    dtype: str = "fp32"
    keep_predictions: bool = False  # per-example predictions in the store (for Compare)
    name: str = ""
    # torch threads per evaluation, the same in every engine so the rows agree to the bit;
    # None = this process's torch thread count
    threads: int | None = None

    def __post_init__(self):
        if self.threads is None:
            import torch

            self.threads = torch.get_num_threads()

    @classmethod
    def from_dict(cls, d: dict, name: str = "") -> "SweepSpec":
        if not isinstance(d, dict):
            raise HeadroomError("A sweep spec must be a mapping with models, datasets and generators.")
        unknown = sorted(set(d) - {"models", "datasets", "generators", "max_length", "dtype", "keep_predictions", "name", "threads"})
        if unknown:
            raise HeadroomError(f"Unknown sweep field(s) {', '.join(unknown)}; known: models, datasets, generators, "
                                "max_length, dtype, keep_predictions.")
        models = d.get("models")
        if not isinstance(models, list) or not models or not all(isinstance(m, str) and m for m in models):
            raise HeadroomError("The sweep needs `models`: a non-empty list of model names or paths.")
        datasets = []
        for item in d.get("datasets") or []:
            item = {"data": item} if isinstance(item, str) else item
            if not isinstance(item, dict) or not isinstance(item.get("data"), str):
                raise HeadroomError("Each dataset of a sweep is a name or a mapping with `data` (and split, limit, seed).")
            extra = sorted(set(item) - {"data", "split", "limit", "seed"})
            if extra:
                raise HeadroomError(f"Unknown dataset field(s) {', '.join(extra)} in the sweep.")
            limit = item.get("limit")
            if limit is not None and (type(limit) is not int or limit < 1):
                raise HeadroomError(f"Dataset limit must be a positive whole number (got {limit!r}).")
            datasets.append(DataSpec(item["data"], item.get("split"), limit, int(item.get("seed", 0))))
        if not datasets:
            raise HeadroomError("The sweep needs `datasets`: at least one.")
        generators = d.get("generators")
        if not isinstance(generators, list) or not generators:
            raise HeadroomError("The sweep needs `generators`: a non-empty list.")
        for g in generators:
            if not isinstance(g, dict) or g.get("kind") not in GENERATOR_KINDS:
                raise HeadroomError(f"Each generator needs a kind among {', '.join(GENERATOR_KINDS)} (got {g!r}).")
        max_length = d.get("max_length", 128)
        if type(max_length) is not int or not 3 <= max_length <= 8192:
            raise HeadroomError("max_length must be a whole number between 3 and 8192.")
        dtype = d.get("dtype", "fp32")
        if dtype not in ("fp32", "bf16", "fp16"):
            raise HeadroomError("dtype must be fp32, bf16 or fp16.")
        keep = d.get("keep_predictions", False)
        if not isinstance(keep, bool):
            raise HeadroomError("keep_predictions must be true or false.")
        threads = d.get("threads")
        if threads is not None and (type(threads) is not int or threads < 1):
            raise HeadroomError(f"threads must be a positive whole number (got {threads!r}).")
        return cls(models, datasets, generators, max_length, dtype, keep, d.get("name") or name, threads)

    @classmethod
    def load(cls, path: str) -> "SweepSpec":
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise HeadroomError(f"Sweep spec '{path}' does not exist.") from None
        except (IsADirectoryError, UnicodeDecodeError):
            raise HeadroomError(f"Sweep spec '{path}' is not a UTF-8 YAML or JSON file.") from None
        if p.suffix.lower() in (".yaml", ".yml"):
            import yaml

            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as e:
                raise HeadroomError(f"Sweep spec '{path}' is not valid YAML ({str(e).splitlines()[0]}).") from None
        else:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                raise HeadroomError(f"Sweep spec '{path}' is not valid JSON ({e.msg} at line {e.lineno}).") from None
        return cls.from_dict(data, name=p.stem)
