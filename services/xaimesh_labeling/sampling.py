"""Non-activating examples: rows of the set where a concept is quiet.

Scoring a label needs excerpts where the concept does *not* fire. A concept
is *quiet* on a row when its code is at most ``QUIET_FRACTION`` of its top
activation (exactly 0 for sparse concepts; the weakest rows of dense ones
such as SemiNMF or PCA codes, which are rarely exactly 0).

The rows are searched in a few seeded random windows of
``NEGATIVE_WINDOW_ROWS`` contiguous rows of the set (every window is read
once, ``read_window(lo, hi)`` -> (codes ``[rows, concepts]``, provenance per
row), and shared by every concept); a window's own neighbouring rows give
its examples their context, cut short before any token where the concept is
not quiet. Plain Python and numpy: the adapter gives ``read_window`` (an
``Encode`` and a ``ReadActivationSet`` of the concept-service).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from xaimesh_runtime.errors import check_cancelled

from .examples import ConceptExample, ContextToken, RowProvenance

__all__ = ["NEGATIVE_MAX_WINDOWS", "NEGATIVE_MIN_ROWS", "NEGATIVE_ROWS_PER_EXAMPLE", "NEGATIVE_WINDOW_ROWS",
           "QUIET_FRACTION", "ReadWindow", "negative_example", "negative_windows", "non_activating_examples",
           "quiet_thresholds"]

QUIET_FRACTION = 0.1
NEGATIVE_WINDOW_ROWS = 64
NEGATIVE_MAX_WINDOWS = 8
NEGATIVE_MIN_ROWS = 256
NEGATIVE_ROWS_PER_EXAMPLE = 40

ReadWindow = Callable[[int, int], "tuple[np.ndarray, Sequence[RowProvenance]]"]


def quiet_thresholds(concepts: Iterable[int], activating: Mapping[int, Sequence[ConceptExample]]
                     ) -> dict[int, float]:
    """Per concept, the code at or below which it is quiet: ``QUIET_FRACTION``
    of its top activating example (0 for a concept without examples)."""
    return {c: QUIET_FRACTION * max([e.activation for e in activating.get(c, [])] + [0.0]) for c in concepts}


def negative_windows(n_rows: int, n_examples: int, seed: int) -> list[tuple[int, int]]:
    """The row ranges searched: the whole set when it is small, else a seeded
    sample of aligned windows of ``NEGATIVE_WINDOW_ROWS`` rows, about
    ``NEGATIVE_ROWS_PER_EXAMPLE * n_examples`` rows in all (at least
    ``NEGATIVE_MIN_ROWS``, at most ``NEGATIVE_MAX_WINDOWS`` windows), in row order."""
    target = min(n_rows, max(NEGATIVE_MIN_ROWS, NEGATIVE_ROWS_PER_EXAMPLE * n_examples))
    if n_rows <= target:
        return [(0, n_rows)] if n_rows else []
    segments = n_rows // NEGATIVE_WINDOW_ROWS
    count = min(segments, NEGATIVE_MAX_WINDOWS, math.ceil(target / NEGATIVE_WINDOW_ROWS))
    picked = sorted(random.Random(f"xaimesh-negatives:{seed}").sample(range(segments), count))
    return [(s * NEGATIVE_WINDOW_ROWS, (s + 1) * NEGATIVE_WINDOW_ROWS) for s in picked]


def non_activating_examples(read_window: ReadWindow, n_rows: int, quiet: Mapping[int, float], n_examples: int,
                            k_context: int, seed: int, *, token_level: bool,
                            should_stop: Callable[[], bool] | None = None) -> dict[int, list[ConceptExample]]:
    """Per concept of ``quiet`` (concept -> the code at or below which it is
    quiet), up to ``2 * n_examples`` distinct rows where it is quiet (on the
    row and on every context token shown with it), from
    :func:`negative_windows` of a set of ``n_rows`` rows. ``token_level``:
    the set's rows are tokens (context = neighbouring rows of the sample)."""
    concepts = sorted(quiet)
    want = 2 * n_examples
    out: dict[int, list[ConceptExample]] = {c: [] for c in concepts}
    seen: dict[int, set[str]] = {c: set() for c in concepts}
    rng = random.Random(f"xaimesh-negatives-order:{seed}")
    for lo, hi in negative_windows(n_rows, n_examples, seed):
        check_cancelled(should_stop, "the call")
        if all(len(out[c]) >= want for c in concepts):
            break
        codes, prov = read_window(lo, hi)
        for c in concepts:
            if len(out[c]) >= want or c >= codes.shape[1]:
                continue
            rows = [int(i) for i in np.flatnonzero(codes[:, c] <= quiet[c])]
            rng.shuffle(rows)
            for r in rows:
                ex = negative_example(prov, codes[:, c], r, k_context, token_level, quiet[c])
                if any(t.activation > quiet[c] for t in ex.context):
                    continue  # the concept fires next to it: not a clean negative
                key = "".join(t.text for t in ex.context) if ex.context else ex.text
                if not key.strip() or key in seen[c]:
                    continue
                seen[c].add(key)
                out[c].append(ex)
                if len(out[c]) >= want:
                    break
    return out


def negative_example(prov: Sequence[RowProvenance], codes: np.ndarray, r: int, k_context: int,
                     token_level: bool, threshold: float) -> ConceptExample:
    """Row ``r`` of a window as an example, with up to ``k_context``
    neighbouring rows of the same sample on each side (inside the window) as
    context, as the concept-service builds them, except that the context
    stops before any token where the concept's code is above ``threshold``: a
    non-activating excerpt must not contain the concept."""
    p = prov[r]
    context: tuple[ContextToken, ...] = ()
    if k_context > 0:
        if token_level:
            def quiet(j: int) -> bool:
                return prov[j].sample_index == p.sample_index and codes[j] <= threshold

            lo = r
            while lo > 0 and r - lo < k_context and quiet(lo - 1):
                lo -= 1
            hi = r
            while hi + 1 < len(prov) and hi - r < k_context and quiet(hi + 1):
                hi += 1
            context = tuple(ContextToken(prov[j].text, j == r, float(codes[j])) for j in range(lo, hi + 1))
        else:
            context = (ContextToken(p.text, True, float(codes[r])),)
    return ConceptExample(text=p.text, activation=float(codes[r]), normalized_activation=0.0, context=context,
                          sample_index=int(p.sample_index), token_start=int(p.token_start),
                          token_end=int(p.token_end))
