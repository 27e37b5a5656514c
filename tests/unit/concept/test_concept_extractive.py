"""Extractive labels (no LLM) on planted structure: a concept that fires on a
known set of words is named by words of that set."""

import numpy as np
import pytest

from tests.fixtures.planted_concepts import FAMILY, OTHER, planted_token_rows
from xaimesh_concept.common import Provenance
from xaimesh_concept.extractive import extract_labels, log_odds_z, token_terms
from xaimesh_concept.methods import build_method
from xaimesh_concept.store import Store
from xaimesh_runtime.errors import FailedPrecondition, InvalidArgument



def planted_token_set(tmp_path, n_samples=300):
    A, prov = planted_token_rows(n_samples)
    st = Store(tmp_path)
    reader = st.open_activation_set(st.put_activation_set(
        A, [Provenance(*p) for p in prov], granularity="TOKEN", chunk_bytes=64 * 2 * 4).id)
    return reader, build_method("NEURONS_AS_CONCEPTS", 0).fit(A)


def test_a_concept_firing_on_a_word_set_is_named_from_that_set(tmp_path):
    reader, model = planted_token_set(tmp_path)
    planted, dead = extract_labels(model, reader, k_examples=50, max_terms=3, max_ngram=2, chunk_rows=37)
    words = [t.text for t in planted.terms]
    assert set(words) == FAMILY, planted  # split words ("bro" + "ther") are found whole
    assert planted.label == ", ".join(words)
    assert all(t.score > 3 and t.concept_count >= 2 for t in planted.terms)
    assert planted.num_examples == 50 and planted.num_active_rows > 50
    assert dead.label is None and dead.num_active_rows == 0 and dead.terms == []
    # Chunking does not change the result.
    again = extract_labels(model, reader, [0], k_examples=50, max_ngram=2, chunk_rows=5000)[0]
    assert [(t.text, t.score) for t in again.terms] == [(t.text, t.score) for t in planted.terms]


def test_sentence_rows_are_named_by_their_words(tmp_path):
    rng = np.random.default_rng(1)
    texts, values = [], []
    for _ in range(400):
        words = list(rng.choice(OTHER, size=6))
        fires = rng.random() < 0.2
        if fires:
            words[2:4] = ["ice", "cream"]
        texts.append(" ".join(words).capitalize() + ".")
        values.append(rng.uniform(1, 2) if fires else 0.0)
    A = np.asarray(values, np.float32)[:, None]
    st = Store(tmp_path)
    reader = st.open_activation_set(st.put_activation_set(
        A, [Provenance(i, 0, 8, t) for i, t in enumerate(texts)], granularity="SENTENCE").id)
    (label,) = extract_labels(build_method("NEURONS_AS_CONCEPTS", 0).fit(A), reader, k_examples=40, max_terms=2)
    # The bigram wins over its words, which are then skipped (they share a word with it).
    assert label.terms[0].text == "ice cream" and label.label.startswith("ice cream")
    assert all("ice" not in t.text.split() or t is label.terms[0] for t in label.terms)


def test_token_terms_find_whole_words_and_ngrams():
    texts = ["My", " bro", "ther", ",", " Bob", "'s", " dog"]
    terms = token_terms(texts, 2)
    assert terms[1] == terms[2] == {"brother", "my brother"}
    assert terms[3] == set()  # punctuation alone
    assert terms[4] == terms[5] == {"bob's", "brother bob's"}
    assert terms[6] == {"dog", "bob's dog"}


def test_log_odds_z_is_the_haldane_corrected_odds_ratio():
    # 2x2 table [[8, 2], [10, 80]] + 0.5 per cell.
    expected = np.log(8.5 * 80.5 / (2.5 * 10.5)) / np.sqrt(1 / 8.5 + 1 / 2.5 + 1 / 10.5 + 1 / 80.5)
    assert log_odds_z(8, 10, 18, 100) == pytest.approx(expected)
    assert abs(log_odds_z(10, 100, 100, 1000)) < 0.2  # as frequent in the concept as in the rest


def test_bad_requests(tmp_path):
    reader, model = planted_token_set(tmp_path, n_samples=5)
    for kwargs, field in [({"k_examples": -1}, "k_examples"), ({"max_terms": 21}, "max_terms"),
                          ({"max_ngram": 4}, "max_ngram"), ({"k_examples": 5, "min_count": 6}, "min_count")]:
        with pytest.raises(InvalidArgument) as info:
            extract_labels(model, reader, **kwargs)
        assert info.value.field == field
    with pytest.raises(InvalidArgument, match="out of range") as info:
        extract_labels(model, reader, [2])
    assert info.value.field == "concept_indices"
    st = Store(tmp_path / "bare")
    bare = st.open_activation_set(st.put_activation_set(np.ones((4, 2), np.float32)).id)
    with pytest.raises(FailedPrecondition, match="no provenance"):
        extract_labels(model, bare)
