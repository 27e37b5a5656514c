"""xaimesh.datasets: the loaders for each kind of source, their errors, and the shipped corpus."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from xaimesh import datasets
from xaimesh.datasets import EMOTION_LABELS, load_labels, load_texts, sample_dataset, sample_labels, sample_texts

ROOT = Path(__file__).resolve().parents[3]
ROWS = [
    {"text": "i feel great today", "label": "joy"},
    {"text": "i miss my old friends", "label": "sadness"},
    {"text": "the bus never came", "label": "anger"},
]
TEXTS = [r["text"] for r in ROWS]
LABELS = [r["label"] for r in ROWS]


# ---------------------------------------------------------------- fakes


class FakeDataset:
    """The part of datasets.Dataset that the loaders use."""

    def __init__(self, columns: dict[str, list], features: dict | None = None):
        self._columns = columns
        self.features = features or {}

    @property
    def column_names(self) -> list[str]:
        return list(self._columns)

    def __getitem__(self, key):
        return self._columns[key]


class FakeDatasetDict(dict):
    @property
    def column_names(self) -> dict[str, list[str]]:
        return {split: ds.column_names for split, ds in self.items()}


class FakeClassLabel:
    names = list(EMOTION_LABELS)


# ---------------------------------------------------------------- in-memory sources


def test_list_and_tuple_of_strings():
    assert load_texts(TEXTS) == TEXTS
    assert load_texts(tuple(TEXTS)) == TEXTS
    assert load_texts(TEXTS, limit=2) == TEXTS[:2]
    assert load_texts(TEXTS, limit=10) == TEXTS


def test_list_of_mappings():
    assert load_texts(ROWS) == TEXTS
    assert load_labels(ROWS) == LABELS
    renamed = [{"sentence": r["text"], "y": r["label"]} for r in ROWS]
    assert load_texts(renamed, text_field="sentence") == TEXTS
    assert load_labels(renamed, label_field="y", limit=1) == LABELS[:1]


def test_result_is_a_fresh_list():
    source = list(TEXTS)
    out = load_texts(source)
    out.append("x")
    assert source == TEXTS


def test_hf_dataset_duck_typed():
    ds = FakeDataset({"text": TEXTS, "label": LABELS})
    assert load_texts(ds) == TEXTS
    assert load_texts(ds, limit=2) == TEXTS[:2]
    assert load_labels(ds) == LABELS


def test_hf_class_label_ints_become_names():
    ds = FakeDataset({"text": TEXTS, "label": [1, 0, 3]}, features={"label": FakeClassLabel()})
    assert load_labels(ds) == ["joy", "sadness", "anger"]
    assert load_labels(ds, as_names=False) == [1, 0, 3]
    bad = FakeDataset({"label": [9]}, features={"label": FakeClassLabel()})
    with pytest.raises(ValueError, match="outside the 6 class names"):
        load_labels(bad)


def test_hf_dataset_dict_asks_for_a_split():
    dd = FakeDatasetDict(train=FakeDataset({"text": TEXTS}), test=FakeDataset({"text": TEXTS}))
    with pytest.raises(ValueError, match=r"pick one.*splits: train, test"):
        load_texts(dd)
    assert load_texts(dd["train"]) == TEXTS


def test_hf_dataset_missing_column_lists_columns():
    ds = FakeDataset({"sentence": TEXTS, "label": LABELS})
    with pytest.raises(ValueError, match=r"no column 'text'.*'sentence', 'label'"):
        load_texts(ds)


def test_real_hf_dataset():
    import datasets

    ds = datasets.Dataset.from_dict({"text": TEXTS, "label": LABELS})
    assert load_texts(ds) == TEXTS
    assert load_texts(ds, limit=1) == TEXTS[:1]
    assert load_labels(ds) == LABELS


def test_dataframe():
    import pandas as pd

    df = pd.DataFrame(ROWS)
    assert load_texts(df) == TEXTS
    assert load_labels(df, limit=2) == LABELS[:2]


# ---------------------------------------------------------------- files


def test_txt(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("i feel great today\n\n  i miss my old friends  \nthe bus never came\n", encoding="utf-8")
    assert load_texts(path) == TEXTS
    assert load_texts(str(path), limit=1) == TEXTS[:1]
    with pytest.raises(ValueError, match="no labels"):
        load_labels(path)


def test_csv_and_tsv(tmp_path):
    csv_path = tmp_path / "data.csv"
    csv_path.write_text('id,text,label\n1,i feel great today,joy\n2,"i miss my old friends",sadness\n'
                        '3,"the bus never came",anger\n', encoding="utf-8")
    assert load_texts(csv_path) == TEXTS
    assert load_labels(csv_path) == LABELS
    assert load_texts(csv_path, text_field="id", limit=2) == ["1", "2"]
    tsv_path = tmp_path / "data.tsv"
    tsv_path.write_text("text\tlabel\n" + "".join(f"{r['text']}\t{r['label']}\n" for r in ROWS), encoding="utf-8")
    assert load_texts(tsv_path) == TEXTS


def test_csv_with_commas_quotes_and_bom(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text('\ufefftext\n"well, i said ""no"" and left"\n', encoding="utf-8")
    assert load_texts(path) == ['well, i said "no" and left']


def test_jsonl(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS) + "\n", encoding="utf-8")
    assert load_texts(path) == TEXTS
    assert load_labels(path, limit=2) == LABELS[:2]
    strings = tmp_path / "strings.jsonl"
    strings.write_text("".join(json.dumps(t) + "\n" for t in TEXTS), encoding="utf-8")
    assert load_texts(strings) == TEXTS


def test_json_list_and_columns(tmp_path):
    records = tmp_path / "records.json"
    records.write_text(json.dumps(ROWS), encoding="utf-8")
    assert load_texts(records) == TEXTS
    assert load_labels(records) == LABELS
    strings = tmp_path / "strings.json"
    strings.write_text(json.dumps(TEXTS), encoding="utf-8")
    assert load_texts(strings, limit=2) == TEXTS[:2]
    columns = tmp_path / "columns.json"
    columns.write_text(json.dumps({"text": TEXTS, "label": LABELS}), encoding="utf-8")
    assert load_texts(columns) == TEXTS
    assert load_labels(columns) == LABELS


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("suffix", [".txt", ".csv", ".jsonl", ".json"])
def test_empty_file(tmp_path, suffix):
    path = tmp_path / f"empty{suffix}"
    path.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(ValueError, match="is empty"):
        load_texts(path)


def test_empty_sources():
    with pytest.raises(ValueError, match="is empty"):
        load_texts([])
    with pytest.raises(ValueError, match="is empty"):
        load_texts(FakeDataset({"text": []}))


def test_csv_header_only_and_missing_column(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("text,label\n", encoding="utf-8")
    with pytest.raises(ValueError, match="header but no rows"):
        load_texts(path)
    path.write_text("sentence,label\nhello there,joy\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"no column 'text'; its columns: 'sentence', 'label'"):
        load_texts(path)


def test_csv_short_row(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("id,text\n1,fine\n2\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 3 has no value in column 'text'"):
        load_texts(path)


def test_missing_field_in_records(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "ok", "label": "joy"}\n{"sentence": "oops", "label": "joy"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"entry 1 has no field 'text'; its fields: 'sentence', 'label'"):
        load_texts(path)
    with pytest.raises(ValueError, match=r"no field 'label'"):
        load_labels([{"text": "no label here"}])


def test_json_object_without_the_key(tmp_path):
    path = tmp_path / "data.json"
    path.write_text(json.dumps({"sentences": TEXTS}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"no key 'text'; its keys: 'sentences'"):
        load_texts(path)
    path.write_text(json.dumps(42), encoding="utf-8")
    with pytest.raises(ValueError, match="expected a JSON list or object"):
        load_texts(path)


def test_non_string_entries(tmp_path):
    with pytest.raises(ValueError, match=r"the list: text 1 is an int, not a string: 42"):
        load_texts(["fine", 42])
    with pytest.raises(ValueError, match=r"text 0 is None"):
        load_texts([{"text": None}])
    path = tmp_path / "data.jsonl"
    path.write_text('"fine"\n["a", "list"]\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"data.jsonl'?: text 1 is a list"):
        load_texts(path)
    with pytest.raises(ValueError, match=r"label 0 is a float"):
        load_labels([{"label": 0.5}])
    with pytest.raises(ValueError, match=r"label 0 is a bool"):
        load_labels([True])


def test_invalid_json(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "ok"}\n{"text": oops}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        load_texts(path)
    bad = tmp_path / "data.json"
    bad.write_text("[1, 2", encoding="utf-8")
    with pytest.raises(ValueError, match="is not valid JSON"):
        load_texts(bad)


def test_path_problems(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        load_texts(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="no such file"):
        load_texts("missing.txt")  # a string that names a file must be one
    with pytest.raises(ValueError, match="is a folder"):
        load_texts(tmp_path)
    other = tmp_path / "data.parquet"
    other.write_bytes(b"PAR1")
    with pytest.raises(ValueError, match="unsupported file type '.parquet'"):
        load_texts(other)


@pytest.mark.parametrize("limit", [0, -1, 1.5, True, "3"])
def test_bad_limit(limit):
    with pytest.raises(ValueError, match="limit must be a positive integer"):
        load_texts(TEXTS, limit=limit)


def test_one_text_a_column_mapping_and_a_generator_are_texts_too():
    # the one loader of the SDK: what get_activations and the explainers accept
    assert load_texts("i feel great today") == ["i feel great today"]
    assert load_texts("two lines\nof one text.txt") == ["two lines\nof one text.txt"]
    assert load_texts({"text": TEXTS, "label": [0] * len(TEXTS)}) == TEXTS
    assert load_texts(t for t in TEXTS) == TEXTS
    assert load_texts(sample_dataset(small=True)) == sample_texts(small=True)


def test_unsupported_source_types():
    with pytest.raises(ValueError, match="cannot read texts from int"):
        load_texts(42)
    with pytest.raises(ValueError, match="splits: train"):
        load_texts({"train": TEXTS})


# ---------------------------------------------------------------- shipped corpus


WORD = re.compile(r"\S+")


def test_sample_corpus_size_labels_and_balance():
    rows = sample_dataset()
    texts = [r["text"] for r in rows]
    assert 950 <= len(rows) <= 1100
    assert len(set(texts)) == len(texts), "duplicate texts"
    assert all(set(r) == {"text", "label"} for r in rows)
    counts = Counter(r["label"] for r in rows)
    assert set(counts) == set(EMOTION_LABELS)
    assert all(140 <= n <= 200 for n in counts.values()), counts
    for text in texts:
        assert 5 <= len(WORD.findall(text)) <= 30, text
        assert text == text.lower() and text == text.strip(), text


def test_sample_small_subset_is_balanced_and_drawn_from_the_full_corpus():
    small = sample_dataset(small=True)
    assert len(small) == 120
    assert Counter(r["label"] for r in small) == {label: 20 for label in EMOTION_LABELS}
    full = {r["text"]: r["label"] for r in sample_dataset()}
    assert all(full.get(r["text"]) == r["label"] for r in small)
    assert len({r["text"] for r in small}) == 120


def test_sample_helpers_align():
    assert sample_texts() == [r["text"] for r in sample_dataset()]
    assert sample_labels(small=True) == [r["label"] for r in sample_dataset(small=True)]
    assert load_texts(sample_dataset(small=True)) == sample_texts(small=True)
    # each call returns its own copy
    rows = sample_dataset(small=True)
    rows[0]["text"] = "changed"
    assert sample_dataset(small=True)[0]["text"] != "changed"


def test_unknown_sample_name():
    with pytest.raises(ValueError, match="available: emotions"):
        sample_dataset("imdb")


def test_sample_files_live_in_the_package():
    data_dir = Path(datasets.__file__).resolve().parent / "data"
    assert (data_dir / "emotions.jsonl").is_file()
    assert (data_dir / "emotions_small.jsonl").is_file()


def test_generator_reproduces_the_shipped_files():
    script = ROOT / "data" / "make_emotions.py"
    result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
