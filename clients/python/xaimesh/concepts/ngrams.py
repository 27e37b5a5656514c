"""Unique words and n-grams of texts, for TopKInputs(use_unique_words=n).

interpreto's definition (`interpretations.extract_ngrams`): every n-gram of
1 to n consecutive words of each text (words joined by one space), kept
when it occurs at least `count_min_threshold` times in all the texts;
`words_to_ignore` are dropped before n-grams are formed. interpreto splits
words with nltk's `word_tokenize`; here a word is a run of letters / digits
(an apostrophe inside one kept: "don't") or one punctuation character, so
"don't" stays one word where nltk gives "do" + "n't". interpreto's
`lemmatize` needs nltk's WordNet and is not provided.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable

WORD = re.compile(r"\w+(?:'\w+)*|[^\w\s]")


def extract_ngrams(inputs: Iterable[str], n: int = 1, count_min_threshold: int = 1, return_counts: bool = False,
                   words_to_ignore: Iterable[str] | None = None) -> list[str] | Counter:
    """The distinct n-grams (1 to n words) of `inputs`, in first-seen order, or their counts."""
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    ignore = set(words_to_ignore or ())
    counts: Counter = Counter()
    for text in inputs:
        words = [w for w in WORD.findall(text) if w not in ignore]
        for size in range(1, int(n) + 1):
            for i in range(len(words) - size + 1):
                counts[" ".join(words[i: i + size])] += 1
    kept = Counter({gram: c for gram, c in counts.items() if c >= count_min_threshold})
    return kept if return_counts else list(kept)
