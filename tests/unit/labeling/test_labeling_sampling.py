"""Non-activating examples (xaimesh_labeling.sampling), in-process, no gRPC."""

from __future__ import annotations

import numpy as np
import pytest

from xaimesh_labeling.examples import ConceptExample, RowProvenance
from xaimesh_labeling.sampling import (NEGATIVE_WINDOW_ROWS, negative_example, negative_windows,
                                       non_activating_examples, quiet_thresholds)
from xaimesh_runtime.errors import Cancelled

# 4 samples of 5 tokens; concept 0 fires on "cat" (3.0) and faintly on "mat" (0.2, quiet: <= 0.3)
WORDS = [["the", "cat", "sat", "on", "mat"], ["a", "dog", "ran", "far", "off"],
         ["my", "cat", "is", "very", "old"], ["we", "read", "a", "long", "book"]]
PROV = [RowProvenance(s, t, t + 1, w) for s, ws in enumerate(WORDS) for t, w in enumerate(ws)]
CODES = np.array([[{"cat": 3.0, "mat": 0.2}.get(p.text, 0.0), 1.0] for p in PROV], np.float32)


class Window:
    def __init__(self):
        self.calls = []

    def __call__(self, lo, hi):
        self.calls.append((lo, hi))
        return CODES[lo:hi], PROV[lo:hi]


def test_windows_are_the_whole_small_set_or_seeded_aligned_windows():
    assert negative_windows(0, 5, 1) == [] and negative_windows(100, 5, 1) == [(0, 100)]
    # pinned: the same seed must keep picking the same rows
    assert negative_windows(1000, 5, 5) == [(256, 320), (448, 512), (768, 832), (832, 896)]
    assert negative_windows(1000, 5, 6) == [(256, 320), (704, 768), (768, 832), (832, 896)]
    many = negative_windows(5000, 20, 1)
    assert len(many) == 8 and all(hi - lo == NEGATIVE_WINDOW_ROWS and lo % NEGATIVE_WINDOW_ROWS == 0
                                  for lo, hi in many)
    assert many == sorted(many)


def test_quiet_thresholds():
    top = {0: [ConceptExample("cat", 3.0), ConceptExample("cat", 2.0)]}
    assert quiet_thresholds([0, 1], top) == {0: pytest.approx(0.3), 1: 0.0}


def test_quiet_rows_with_context_cut_before_the_concept():
    window = Window()
    out = non_activating_examples(window, len(PROV), {0: 0.3}, n_examples=20, k_context=2, seed=3,
                                  token_level=True)
    assert window.calls == [(0, len(PROV))]
    texts = [e.text for e in out[0]]
    assert "cat" not in texts and any("mat" in [t.text for t in e.context] for e in out[0])  # 0.2 is quiet
    for e in out[0]:
        assert e.activation <= 0.3 and all(t.activation <= 0.3 for t in e.context)
        assert [t.text for t in e.context if t.highlighted] == [e.text]
        assert "cat" not in [t.text for t in e.context]
    sat = negative_example(PROV, CODES[:, 0], 2, 2, True, 0.3)  # stops before "cat" on the left
    assert [t.text for t in sat.context] == ["sat", "on", "mat"]
    contexts = ["".join(t.text for t in e.context) for e in out[0]]
    assert len(contexts) == len(set(contexts))  # distinct excerpts
    assert non_activating_examples(Window(), len(PROV), {0: 0.3}, 20, 2, 3, token_level=True) == out  # seeded


def test_at_most_twice_n_examples_and_no_context_for_sentences():
    out = non_activating_examples(Window(), len(PROV), {0: 0.3, 1: 0.0}, n_examples=2, k_context=3, seed=1,
                                  token_level=False)
    assert len(out[0]) == 4 and out[1] == []  # concept 1 is never quiet
    assert all(len(e.context) == 1 and e.context[0].text == e.text for e in out[0])


def test_cancelled_between_windows():
    with pytest.raises(Cancelled):
        non_activating_examples(Window(), len(PROV), {0: 0.3}, 2, 2, 1, token_level=True, should_stop=lambda: True)


def test_negative_example_without_context():
    e = negative_example(PROV, CODES[:, 0], 2, 0, True, 0.3)
    assert (e.text, e.context, e.sample_index, e.token_start, e.token_end) == ("sat", (), 0, 2, 3)
