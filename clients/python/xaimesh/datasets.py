"""Load texts (and labels) from the places they usually live, and the sample corpus.

    from xaimesh.datasets import load_texts, load_labels, sample_texts

    texts = load_texts("reviews.csv", text_field="review", limit=200)
    texts = load_texts(["i feel great", "i feel awful"])
    texts = load_texts(hf_dataset["train"])          # a Hugging Face split
    labels = load_labels("data.jsonl")               # the "label" field

    texts = sample_texts(small=True)                 # 120 short texts, 6 emotions

Accepted sources:

* a list or tuple of strings, or of mappings (``{"text": ..., "label": ...}``);
* a path (``str`` or ``pathlib.Path``) to a file:

  - ``.txt``: one text per line; blank lines are skipped;
  - ``.csv`` / ``.tsv``: a header row, the column named by the field;
  - ``.jsonl``: one JSON object (or, for texts, one JSON string) per line;
  - ``.json``: a list of objects or strings, or an object of columns
    (``{"text": [...], "label": [...]}``);

* a Hugging Face ``datasets.Dataset`` (one split, e.g. ``dsdict["train"]``), or
  anything shaped like it: ``column_names`` and ``obj[column]``; a pandas
  ``DataFrame`` works too (``columns`` and ``obj[column]``).

``datasets`` and ``pandas`` are never imported here: objects are duck-typed.
Every problem raises ``ValueError`` with a message that names it (the missing
column with the available ones, the empty file, the first entry that is not a
string and where it is).
"""

from __future__ import annotations

import csv
import itertools
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "EMOTION_LABELS",
    "load_labels",
    "load_texts",
    "sample_dataset",
    "sample_labels",
    "sample_texts",
]

#: The labels of the shipped ``emotions`` sample corpus.
EMOTION_LABELS = ("sadness", "joy", "love", "anger", "fear", "surprise")

_SAMPLES = {"emotions": "emotions"}
_TEXT_SUFFIXES = (".txt", ".csv", ".tsv", ".jsonl", ".json")


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------


def load_texts(source: Any, *, text_field: str = "text", limit: int | None = None) -> list[str]:
    """Return the texts of `source` as a list of strings.

    `text_field` names the column (CSV, Hugging Face dataset, DataFrame) or key
    (JSON objects, mappings) that holds the text; plain strings (a list of
    strings, a ``.txt`` file, JSON strings) need no field. `limit` keeps the
    first `limit` texts.
    """
    values, where = _column(source, text_field, limit)
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise ValueError(
                f"{where}: text {i} is {_type_name(value)}, not a string: {_short(value)}")
    return values


def load_labels(source: Any, *, label_field: str = "label", limit: int | None = None,
                as_names: bool = True) -> list[str | int]:
    """Return the labels of `source`, in the same order as `load_texts` returns texts.

    Labels are strings or integers. With `as_names` (the default), the integer
    labels of a Hugging Face ``ClassLabel`` column are turned into their names
    (``0`` -> ``"sadness"``). A ``.txt`` file has no labels.
    """
    if isinstance(source, (str, os.PathLike)) and Path(source).suffix.lower() == ".txt":
        raise ValueError(f"'{source}': a .txt file holds texts only, no labels; "
                         f"use .csv, .tsv, .jsonl or .json for labelled data")
    values, where = _column(source, label_field, limit)
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValueError(
                f"{where}: label {i} is {_type_name(value)}, not a string or an integer: "
                f"{_short(value)}")
    if as_names:
        names = _class_label_names(source, label_field)
        if names is not None:
            out: list[str | int] = []
            for i, value in enumerate(values):
                if isinstance(value, int) and not 0 <= value < len(names):
                    raise ValueError(f"{where}: label {i} is {value}, outside the {len(names)} class names")
                out.append(names[value] if isinstance(value, int) else value)
            return out
    return values


def sample_dataset(name: str = "emotions", small: bool = False) -> list[dict]:
    """Return a copy of a sample corpus shipped with xaimesh, as ``{"text", "label"}`` dicts.

    ``emotions``: about 1,000 short first-person English texts, each labelled
    with one of `EMOTION_LABELS`; ``small=True`` gives a balanced 120-text
    subset (20 per label) for quick experiments and tests.
    """
    if name not in _SAMPLES:
        raise ValueError(f"no sample dataset named {name!r}; available: {', '.join(sorted(_SAMPLES))}")
    filename = f"{_SAMPLES[name]}{'_small' if small else ''}.jsonl"
    resource = resources.files("xaimesh").joinpath("data", filename)
    try:
        body = resource.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(
            f"sample dataset file {filename!r} is missing from the xaimesh package "
            f"(expected in xaimesh/data/); reinstall xaimesh or regenerate it with "
            f"`python data/make_emotions.py`") from None
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def sample_texts(small: bool = False) -> list[str]:
    """The texts of the ``emotions`` sample corpus (see `sample_dataset`)."""
    return [row["text"] for row in sample_dataset("emotions", small=small)]


def sample_labels(small: bool = False) -> list[str]:
    """The labels of the ``emotions`` sample corpus, aligned with `sample_texts`."""
    return [row["label"] for row in sample_dataset("emotions", small=small)]


# --------------------------------------------------------------------------
# Reading one column out of any source
# --------------------------------------------------------------------------


def _column(source: Any, field: str, limit: int | None) -> tuple[list, str]:
    """The values of `field` in `source` (at most `limit`), and a name for `source`."""
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    if isinstance(source, str) and not _looks_like_path(source):
        return [source], "the text"  # one text, as ``get_activations("i feel great")``
    if isinstance(source, (str, os.PathLike)):
        return _from_path(Path(source), field, limit)
    if _is_dataset_like(source):
        return _from_table(source, field, limit)
    if isinstance(source, Mapping) and isinstance(source.get(field), (list, tuple)):
        return _from_records(source[field], field, limit, f"the {field!r} column"), f"the {field!r} column"
    if isinstance(source, Mapping):
        raise ValueError(
            f"cannot read texts from a {type(source).__name__}; pass a list of strings or of "
            f"mappings, a path, or one split of a dataset"
            + (f" (splits: {', '.join(map(str, source))})" if source else ""))
    if isinstance(source, (list, tuple)):
        return _from_records(source, field, limit, "the list"), "the list"
    if isinstance(source, Iterable) and not isinstance(source, (bytes, bytearray)):  # a generator...
        return _from_records(list(source), field, limit, "the inputs"), "the inputs"
    raise ValueError(
        f"cannot read texts from {type(source).__name__}: expected a list or tuple, a path "
        f"(.txt, .csv, .tsv, .jsonl, .json), or a Hugging Face Dataset")


def _looks_like_path(text: str) -> bool:
    """A string names a file when it is one short line ending in a text-file
    suffix, or an existing file; anything else is a text."""
    if "\n" in text or len(text) > 4096:
        return False
    return Path(text).suffix.lower() in _TEXT_SUFFIXES or Path(text).is_file()


def _from_records(items: Sequence, field: str, limit: int | None, where: str) -> list:
    """Values from a sequence of plain values or of mappings (each mapping gives items[field])."""
    items = list(items if limit is None else itertools.islice(items, limit))
    if not items:
        raise ValueError(f"{where} is empty")
    out = []
    for i, item in enumerate(items):
        if isinstance(item, Mapping):
            if field not in item:
                raise ValueError(
                    f"{where}: entry {i} has no field {field!r}; its fields: {_names(item)}")
            out.append(item[field])
        else:
            out.append(item)
    return out


def _from_path(path: Path, field: str, limit: int | None) -> tuple[list, str]:
    where = f"'{path}'"
    if not path.exists():
        hint = "" if path.suffix.lower() in _TEXT_SUFFIXES else " (to pass texts directly, give a list of strings)"
        raise ValueError(f"no such file: {where}{hint}")
    if path.is_dir():
        raise ValueError(f"{where} is a folder; give a file (.txt, .csv, .tsv, .jsonl, .json)")
    suffix = path.suffix.lower()
    if suffix not in _TEXT_SUFFIXES:
        raise ValueError(
            f"{where}: unsupported file type {suffix or '(none)'!r}; "
            f"expected one of {', '.join(_TEXT_SUFFIXES)}")
    body = path.read_text(encoding="utf-8-sig")  # tolerate a BOM, common in CSVs saved by Excel
    if not body.strip():
        raise ValueError(f"{where} is empty")
    if suffix == ".txt":
        lines = [line.strip() for line in body.splitlines()]
        values = [line for line in lines if line]
        return values[:limit], where
    if suffix in (".csv", ".tsv"):
        return _from_csv(body, "\t" if suffix == ".tsv" else ",", field, limit, where), where
    if suffix == ".jsonl":
        return _from_jsonl(body, field, limit, where), where
    return _from_json(body, field, limit, where), where


def _from_csv(body: str, delimiter: str, field: str, limit: int | None, where: str) -> list:
    reader = csv.DictReader(body.splitlines(), delimiter=delimiter)
    columns = reader.fieldnames or []
    if field not in columns:
        raise ValueError(f"{where} has no column {field!r}; its columns: {_names(columns)}")
    values = []
    for row in itertools.islice(reader, limit):
        value = row.get(field)
        if value is None:  # a short row: csv fills the missing cells with None
            raise ValueError(f"{where}: line {reader.line_num} has no value in column {field!r}")
        values.append(value)
    if not values:
        raise ValueError(f"{where} has a header but no rows")
    return values


def _from_jsonl(body: str, field: str, limit: int | None, where: str) -> list:
    items = []
    for lineno, line in enumerate(body.splitlines(), start=1):
        if limit is not None and len(items) >= limit:
            break
        if not line.strip():
            continue
        try:
            items.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: line {lineno} is not valid JSON: {exc.msg}") from None
    return _from_records(items, field, None, where)


def _from_json(body: str, field: str, limit: int | None, where: str) -> list:
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
    if isinstance(data, list):
        return _from_records(data, field, limit, where)
    if isinstance(data, dict):
        if field not in data:
            raise ValueError(f"{where}: the JSON object has no key {field!r}; its keys: {_names(data)}")
        column = data[field]
        if not isinstance(column, list):
            raise ValueError(f"{where}: {field!r} holds {_type_name(column)}, not a list")
        return _from_records(column, field, limit, where)
    raise ValueError(f"{where}: expected a JSON list or object, found {_type_name(data)}")


# --------------------------------------------------------------------------
# Hugging Face datasets and DataFrames (duck-typed)
# --------------------------------------------------------------------------


def _is_dataset_like(obj: Any) -> bool:
    return hasattr(obj, "__getitem__") and (hasattr(obj, "column_names") or _is_dataframe_like(obj))


def _is_dataframe_like(obj: Any) -> bool:
    return hasattr(obj, "columns") and hasattr(obj, "iloc")


def _from_table(source: Any, field: str, limit: int | None) -> tuple[list, str]:
    kind = type(source).__name__
    if _is_dataframe_like(source) and not hasattr(source, "column_names"):
        columns = [str(c) for c in source.columns]
    else:
        columns = source.column_names
    if isinstance(columns, Mapping):  # a DatasetDict: {split: [columns]}
        raise ValueError(
            f"this {kind} holds one dataset per split; pick one, e.g. ds[{next(iter(columns), 'train')!r}] "
            f"(splits: {', '.join(map(str, columns))})")
    if columns is None:
        raise ValueError(f"this {kind} does not know its columns (a streaming dataset?); "
                         f"convert it to a list first")
    columns = list(columns)
    where = f"the {kind}"
    if field not in columns:
        raise ValueError(f"{where} has no column {field!r}; its columns: {_names(columns)}")
    column = source[field]
    if hasattr(column, "tolist"):  # pandas Series, numpy array
        column = column.tolist()
    values = list(column if limit is None else itertools.islice(column, limit))
    if not values:
        raise ValueError(f"{where} is empty")
    return values, where


def _class_label_names(source: Any, field: str) -> list[str] | None:
    """The names of a Hugging Face ClassLabel column, or None."""
    features = getattr(source, "features", None)
    if not isinstance(features, Mapping) or field not in features:
        return None
    names = getattr(features[field], "names", None)
    return list(names) if isinstance(names, (list, tuple)) and names else None


# --------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------


def _names(items: Iterable) -> str:
    names = [repr(str(n)) for n in items]
    return ", ".join(names) if names else "(none)"


def _type_name(value: Any) -> str:
    if value is None:
        return "None"
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _short(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."
