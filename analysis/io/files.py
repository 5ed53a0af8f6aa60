"""A user's own data file (.csv, .tsv, .jsonl, .json) as a TextDataset, with named columns and labels.

Columns: the text column is `text_column`, else "text" or "sentence"; `pair_column` (optional)
holds the second sentence of pair tasks; the label column is `label_column`, else "label" if
present, else the data is unlabelled. A .tsv is read GLUE-style (quotes are plain text); a .json
file is either one array of objects or one object per line.

Label encoding: integer labels keep their value as the index ("0".."k", names "0".."k"); any
other labels are numbered in sorted order. Every problem a user can cause (missing file, not
UTF-8, bad JSON, unknown column, empty label, too many rows) raises one sentence.
"""

import csv
import io
import json
from pathlib import Path

from analysis.errors import HeadroomError
from analysis.io.text_dataset import TextDataset

FILE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")


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
        # pandas renames a repeated header ('text', 'text.1'), so the repeat is read from the header itself
        header = next(csv.reader(io.StringIO(text), delimiter="\t" if suffix == ".tsv" else ",", quoting=quoting), [])
        duplicated = sorted({c for c in header if header.count(c) > 1})
        if duplicated:
            raise HeadroomError(f"{path.name} has more than one column named {', '.join(repr(c) for c in duplicated)}; "
                                f"rename them so each column has one name.")
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


def load_file(spec: str, *, text_column: str | None = None, pair_column: str | None = None,
              label_column: str | None = None, max_examples: int = 200_000) -> TextDataset:
    """A user's .csv/.tsv/.jsonl/.json file as a TextDataset; each bad input gets one sentence."""
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
    nested = next((n for n, r in enumerate(rows, start=1) for c in (text_column, pair_column)
                   if c and isinstance(r.get(c), (list, dict))), None)
    if nested is not None:
        raise HeadroomError(f"{path.name} row {nested} has a JSON list or object as its text; each text must be "
                            f"a string.")
    texts = [_cell(r.get(text_column)) for r in rows]
    pairs = [_cell(r.get(pair_column)) for r in rows] if pair_column else None
    warnings = []
    empty = [n for n, t in enumerate(texts, start=1) if not t]
    if len(empty) == len(texts):
        raise HeadroomError(f"Every text in column '{text_column}' of {path.name} is empty; name the column that "
                            f"holds the texts with --text-column.")
    if empty:
        warnings.append(f"{len(empty)} of {len(texts)} texts in {path.name} are empty (row{'s' if len(empty) > 1 else ''} "
                        f"{', '.join(map(str, empty[:5]))}{' ...' if len(empty) > 5 else ''}); they are scored as "
                        f"empty inputs.")
    labels, label_names = None, []
    if label_column:
        labels, label_names = _encode_labels([_cell(r.get(label_column)) for r in rows], path.name)
    return TextDataset(name=path.name, texts=texts, text_pairs=pairs, labels=labels, label_names=label_names,
                       metric="accuracy", indices=list(range(len(texts))), warnings=warnings)


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
