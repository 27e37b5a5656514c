"""Extractive concept labels: a concept named by the words that set its top rows apart.

No LLM: the label is the words (and word n-grams) whose presence in a
concept's most activating rows is least explained by their frequency in the
whole activation set. The one definition (docs/concept-labels.md):

* **Terms of a row.** Words are maximal runs of letters / digits (apostrophes
  inside kept: "don't"), lower-cased. TOKEN / ALL_TOKENS rows: the word that
  contains the token (the sample's token texts concatenate to its text, so a
  word split into several tokens is found whole) and the n-grams of 2 ..
  max_ngram words that end with it; a token without letters or digits has
  no term. Other granularities (WORD, SENTENCE, SAMPLE...): the words of the
  row's text and its n-grams of consecutive words. A row counts a term once.
* **Foreground.** The concept's top ``k_examples`` rows by activation among
  those where it is > 0 (the direction in which it fires; for signed methods
  such as PCA the negative side is not named).
* **Score.** For each term t, the 2x2 table of rows (foreground / rest of
  the set) x (contains t / not): the log odds ratio with the
  Haldane-Anscombe correction (0.5 added to each cell) divided by its
  standard error, a z-score. Terms in fewer than ``min_count`` foreground
  rows are not candidates.
* **Label.** The ``max_terms`` candidates of highest positive z, best first
  (ties to the longer n-gram), skipping a term that shares a word with one
  already chosen; joined by ", ". A concept that is never > 0 has no label
  (None); one whose top rows share no term has the empty label.

One streaming pass over the set encodes it chunk by chunk (keeping each
concept's top rows) and collects every row's terms.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from xaimesh_runtime.errors import Cancelled, FailedPrecondition, InvalidArgument

from .common import Progress
from .data import rows_per_chunk
from .examples import CONTEXT_GRANULARITIES, MAX_K, _TopKeeper

DEFAULT_K_EXAMPLES = 50
DEFAULT_MAX_TERMS = 3
MAX_TERMS = 20
DEFAULT_MAX_NGRAM = 2
MAX_NGRAM = 3
DEFAULT_MIN_COUNT = 2

_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")


@dataclass
class LabelTerm:
    text: str
    score: float  # z-score of the log odds ratio
    concept_count: int  # foreground rows containing it
    corpus_count: int  # rows of the whole set containing it


@dataclass
class ExtractiveLabel:
    concept_index: int
    label: str | None  # None: the concept is never > 0 on the set
    terms: list[LabelTerm] = field(default_factory=list)
    num_active_rows: int = 0
    num_examples: int = 0


def _ngrams(words: list[str], end: int, max_ngram: int) -> list[str]:
    """The word at `end` and the n-grams (n <= max_ngram) of consecutive words ending with it."""
    return [" ".join(words[end - n + 1 : end + 1]) for n in range(1, max_ngram + 1) if end - n + 1 >= 0]


def text_terms(text: str, max_ngram: int) -> set[str]:
    """Terms of a row of a WORD / SENTENCE / SAMPLE set: its words and their n-grams."""
    words = [w.lower() for w in _WORD.findall(text)]
    return {t for i in range(len(words)) for t in _ngrams(words, i, max_ngram)}


def token_terms(texts: list[str], max_ngram: int) -> list[set[str]]:
    """Terms of each token row of one sample (rows in order): the word holding
    the token and the n-grams ending with that word."""
    starts, pos = [], 0
    for t in texts:
        starts.append(pos)
        pos += len(t)
    joined = "".join(texts)
    matches = list(_WORD.finditer(joined))
    words = [m.group(0).lower() for m in matches]
    ends = [m.end() for m in matches]
    out: list[set[str]] = []
    w = 0
    for start, t in zip(starts, texts):
        end = start + len(t)
        while w < len(matches) and ends[w] <= start:
            w += 1
        if w < len(matches) and matches[w].start() < end:
            out.append(set(_ngrams(words, w, max_ngram)))
        else:
            out.append(set())
    return out


def log_odds_z(in_fg: int, n_fg: int, in_all: int, n_all: int) -> float:
    """z-score of the log odds ratio of containing a term, foreground vs the rest (Haldane-Anscombe)."""
    a, b = in_fg + 0.5, n_fg - in_fg + 0.5
    c, d = in_all - in_fg + 0.5, (n_all - n_fg) - (in_all - in_fg) + 0.5
    return math.log((a * d) / (b * c)) / math.sqrt(1 / a + 1 / b + 1 / c + 1 / d)


def choose_terms(fg_counts: Counter, corpus_counts: Counter, n_fg: int, n_all: int, max_terms: int,
                 min_count: int) -> list[LabelTerm]:
    scored = [LabelTerm(t, log_odds_z(k, n_fg, corpus_counts[t], n_all), k, corpus_counts[t])
              for t, k in fg_counts.items() if k >= min(min_count, n_fg)]
    # Ties (to rounding) go to the longer n-gram: words that always occur together read better whole.
    scored.sort(key=lambda x: (-round(x.score, 9), -x.text.count(" "), -x.concept_count, x.text))
    chosen: list[LabelTerm] = []
    used: set[str] = set()
    for term in scored:
        if len(chosen) == max_terms or term.score <= 0:
            break
        words = set(term.text.split())
        if words & used:
            continue
        chosen.append(term)
        used |= words
    return chosen


def _check(k_examples: int, max_terms: int, max_ngram: int, min_count: int) -> tuple[int, int, int, int]:
    k_examples = int(k_examples or 0) or DEFAULT_K_EXAMPLES
    if not 1 <= k_examples <= MAX_K:
        raise InvalidArgument(f"k_examples must be 1..{MAX_K} (0 = {DEFAULT_K_EXAMPLES}), got {k_examples}",
                              field="k_examples")
    max_terms = int(max_terms or 0) or DEFAULT_MAX_TERMS
    if not 1 <= max_terms <= MAX_TERMS:
        raise InvalidArgument(f"max_terms must be 1..{MAX_TERMS} (0 = {DEFAULT_MAX_TERMS}), got {max_terms}",
                              field="max_terms")
    max_ngram = int(max_ngram or 0) or DEFAULT_MAX_NGRAM
    if not 1 <= max_ngram <= MAX_NGRAM:
        raise InvalidArgument(f"max_ngram must be 1..{MAX_NGRAM} (0 = {DEFAULT_MAX_NGRAM}), got {max_ngram}",
                              field="max_ngram")
    min_count = int(min_count or 0) or DEFAULT_MIN_COUNT
    if not 1 <= min_count <= k_examples:
        raise InvalidArgument(f"min_count must be 1..k_examples ({k_examples}) (0 = {DEFAULT_MIN_COUNT}), "
                              f"got {min_count}", field="min_count")
    return k_examples, max_terms, max_ngram, min_count


def extract_labels(model, reader, concept_indices=None, *, k_examples: int = 0, max_terms: int = 0,
                   max_ngram: int = 0, min_count: int = 0, chunk_rows: int | None = None, progress=None,
                   should_stop=None) -> list[ExtractiveLabel]:
    """One ExtractiveLabel per requested concept (default: all) of ``model``
    over the stored set ``reader`` (which needs provenance: the texts)."""
    k_examples, max_terms, max_ngram, min_count = _check(k_examples, max_terms, max_ngram, min_count)
    if not getattr(reader, "has_provenance", False):
        raise FailedPrecondition("the activation set has no provenance (texts of its rows): extractive labels "
                                 "name concepts by the words of their rows; create the set from texts",
                                 field="activation_set")
    nbc = model.nb_concepts
    concepts = list(range(nbc)) if not concept_indices else list(dict.fromkeys(int(c) for c in concept_indices))
    for c in concepts:
        if not 0 <= c < nbc:
            raise InvalidArgument(f"concept index {c} is out of range: the model has {nbc} concepts (0..{nbc - 1})",
                                  field="concept_indices")
    cidx = np.array(concepts, np.int64)
    per_token = reader.granularity in CONTEXT_GRANULARITIES
    n = reader.n_rows
    keeper = _TopKeeper(k_examples, len(concepts))
    num_active = np.zeros(len(concepts), np.int64)
    # Each row's terms as ids into `vocabulary` (a set of millions of rows keeps small tuples, not strings).
    vocabulary: dict[str, int] = {}
    row_terms: list[tuple[int, ...]] = []

    def add(terms: set[str]) -> None:
        row_terms.append(tuple(vocabulary.setdefault(t, len(vocabulary)) for t in terms))

    pending_texts: list[str] = []  # token rows of the current sample, whose words may continue in the next chunk
    pending_sample = None

    def flush() -> None:
        for terms in token_terms(pending_texts, max_ngram):
            add(terms)
        pending_texts.clear()

    for start, rows in reader.iter_chunks(chunk_rows or rows_per_chunk(max(reader.n_features, nbc), 16 << 20)):
        if should_stop is not None and should_stop():
            raise Cancelled("the extractive labelling was cancelled")
        codes = model.encode(rows)[:, cidx].astype(np.float64)
        active = codes > 0
        num_active += active.sum(0)
        keeper.update(np.where(active, codes, -np.inf), codes.astype(np.float32), start)
        end = start + rows.shape[0]
        texts = reader.texts(start, end)
        if per_token:
            samples = reader.provenance_arrays(start, end)["sample_index"].tolist()
            for sample, text in zip(samples, texts):
                if sample != pending_sample:
                    flush()
                    pending_sample = sample
                pending_texts.append(text)
        else:
            for t in texts:
                add(text_terms(t, max_ngram))
        if progress is not None:
            progress(Progress("encoding", end, n))
    flush()

    texts_of = list(vocabulary)
    ids = Counter(t for terms in row_terms for t in terms)
    corpus = Counter({texts_of[t]: count for t, count in ids.items()})
    out = []
    for j, c in enumerate(concepts):
        top = keeper.result(j)
        if not top:
            out.append(ExtractiveLabel(c, None, num_active_rows=int(num_active[j])))
            continue
        fg = Counter(texts_of[t] for _, r in top for t in row_terms[r])
        terms = choose_terms(fg, corpus, len(top), n, max_terms, min_count)
        out.append(ExtractiveLabel(c, ", ".join(t.text for t in terms), terms, int(num_active[j]), len(top)))
    return out
