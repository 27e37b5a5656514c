"""extract_ngrams (TopKInputs use_unique_words): interpreto's n-gram definition."""

from __future__ import annotations

from collections import Counter

import pytest

from xaimesh.concepts.ngrams import extract_ngrams


def test_every_1_to_n_gram_in_first_seen_order_with_counts():
    texts = ["the cat sat.", "the cat ran"]
    assert extract_ngrams(texts, 1) == ["the", "cat", "sat", ".", "ran"]
    assert extract_ngrams(texts, 2) == ["the", "cat", "sat", ".", "the cat", "cat sat", "sat .", "ran", "cat ran"]
    assert extract_ngrams(texts, 2, return_counts=True) == Counter(
        {"the": 2, "cat": 2, "the cat": 2, "sat": 1, ".": 1, "cat sat": 1, "sat .": 1, "ran": 1, "cat ran": 1})


def test_threshold_ignored_words_and_apostrophes():
    texts = ["I don't like rain", "rain, rain"]
    assert extract_ngrams(texts, 1, count_min_threshold=2) == ["rain"]
    assert extract_ngrams(texts, 2, words_to_ignore=[","]) == [
        "I", "don't", "like", "rain", "I don't", "don't like", "like rain", "rain rain"]
    with pytest.raises(ValueError, match="positive"):
        extract_ngrams(texts, 0)
