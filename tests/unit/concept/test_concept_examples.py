import numpy as np
import pytest

from xaimesh_concept.common import Provenance
from xaimesh_runtime.errors import Cancelled, InvalidArgument
from xaimesh_concept.examples import top_examples
from xaimesh_concept.methods import build_method
from xaimesh_concept.store import Store

# 20 samples x 5 tokens = 100 rows; NEURONS_AS_CONCEPTS makes codes = activations,
# so the activations below ARE the concept activations.
N_SAMPLES, LEN = 20, 5
N = N_SAMPLES * LEN


def make_set(tmp_path, granularity="TOKEN"):
    A = np.zeros((N, 3), np.float32)
    # concept 0: active on every other row, value = row index + 1
    A[::2, 0] = np.arange(0, N, 2) + 1
    # concept 1: active on rows 10..19 only, value 0.5 .. 5.0
    A[10:20, 1] = np.arange(1, 11) / 2
    # concept 2: never active
    texts = [f"w{r % 7}" for r in range(N)]  # 7 distinct texts, repeated
    prov = [Provenance(r // LEN, r % LEN, r % LEN + 1, texts[r]) for r in range(N)]
    st = Store(tmp_path)
    info = st.put_activation_set(A, prov, granularity=granularity, chunk_bytes=12 * 3 * 4)
    model = build_method("NEURONS_AS_CONCEPTS", 0).fit(A)
    return A, texts, model, st.open_activation_set(info.id)


def test_top_with_dedup_keeps_highest_row_per_text(tmp_path):
    A, texts, model, reader = make_set(tmp_path)
    res = top_examples(model, reader, [0, 1, 2], k=4, chunk_rows=9)
    c0, c1, c2 = res
    assert c0.num_active_rows == 50 and c0.max_activation == 99.0
    # highest rows overall: 98 (w0), 96 (w5), 94 (w3), 92 (w1), 90 (w6) ...
    assert [e.row for e in c0.examples] == [98, 96, 94, 92]
    assert len({e.provenance.text for e in c0.examples}) == 4
    assert c0.examples[0].normalized_activation == pytest.approx(1.0)
    assert c0.examples[1].normalized_activation == pytest.approx(97 / 99)
    assert c0.examples[1].provenance == Provenance(19, 1, 2, texts[96])
    # concept 1: rows 10..19, texts w3 w4 w5 w6 w0 w1 w2 w3 w4 w5 -> dedup keeps 19 (w5), 18 (w4),
    # 17 (w3), 16 (w2)
    assert [e.row for e in c1.examples] == [19, 18, 17, 16]
    assert c1.num_active_rows == 10
    assert c2.num_active_rows == 0 and c2.examples == [] and c2.max_activation == 0.0


def test_dedup_is_exact_when_a_text_comes_back_higher(tmp_path):
    st = Store(tmp_path)
    vals = np.array([5, 4, 3, 2, 1, 10, 9], np.float32)[:, None]
    tx = ["a", "b", "c", "d", "e", "c", "a"]
    r = st.open_activation_set(st.put_activation_set(
        vals, [Provenance(i, 0, 1, t) for i, t in enumerate(tx)]).id)
    m = build_method("NEURONS_AS_CONCEPTS", 0).fit(vals)
    ex = top_examples(m, r, k=3, chunk_rows=2)[0].examples
    assert [(e.provenance.text, e.activation) for e in ex] == [("c", 10), ("a", 9), ("b", 4)]


def test_keep_duplicates(tmp_path):
    A, texts, model, reader = make_set(tmp_path)
    res = top_examples(model, reader, [0], k=10, keep_duplicates=True, chunk_rows=7)[0]
    assert [e.row for e in res.examples] == list(range(98, 78, -2))
    assert len({e.provenance.text for e in res.examples}) < 10


def test_chunking_does_not_change_results(tmp_path):
    A, texts, model, reader = make_set(tmp_path)
    for sampling in ("TOP", "QUANTILE"):
        a = top_examples(model, reader, None, k=5, sampling=sampling, chunk_rows=3)
        b = top_examples(model, reader, None, k=5, sampling=sampling, chunk_rows=1000)
        assert [[e.row for e in c.examples] for c in a] == [[e.row for e in c.examples] for c in b]


def test_quantile_spreads_over_the_distribution(tmp_path):
    A, texts, model, reader = make_set(tmp_path)
    res = top_examples(model, reader, [0], k=5, sampling="QUANTILE", keep_duplicates=True)[0]
    acts = [e.activation for e in res.examples]
    # 50 active values 1, 3, ..., 99 sorted; 5 bins of 10 values, midpoint of each bin
    assert acts == [91.0, 71.0, 51.0, 31.0, 11.0]
    # k_quantile bins < k: 2 bins share 4 examples, 2 each, evenly spaced inside
    res = top_examples(model, reader, [0], k=4, sampling="EXAMPLE_SAMPLING_QUANTILE", k_quantile=2,
                       keep_duplicates=True)[0]
    # bin [25, 50): positions 25 + int(6.25) = 31, 25 + int(18.75) = 43 -> values 63, 87
    assert [e.activation for e in res.examples] == [87.0, 63.0, 37.0, 13.0]
    # dedup: every text distinct
    res = top_examples(model, reader, [0], k=7, sampling="QUANTILE")[0]
    assert len({e.provenance.text for e in res.examples}) == len(res.examples) == 7


def test_random_is_seeded_and_only_active_rows(tmp_path):
    A, texts, model, reader = make_set(tmp_path)
    a = top_examples(model, reader, [0, 1], k=4, sampling="RANDOM", seed=1, keep_duplicates=True)
    b = top_examples(model, reader, [0, 1], k=4, sampling="RANDOM", seed=1, keep_duplicates=True)
    c = top_examples(model, reader, [0, 1], k=4, sampling="RANDOM", seed=2, keep_duplicates=True)
    rows = lambda res: [[e.row for e in x.examples] for x in res]  # noqa: E731
    assert rows(a) == rows(b) and rows(a) != rows(c)
    assert all(A[e.row, 0] != 0 for e in a[0].examples)
    assert all(10 <= e.row < 20 for e in a[1].examples)
    assert len(set(rows(a)[0])) == 4
    # not just the top rows
    assert rows(a)[0] != [98, 96, 94, 92]
    d = top_examples(model, reader, [0], k=6, sampling="RANDOM", seed=1)[0]
    assert len({e.provenance.text for e in d.examples}) == 6
    # any int64 seed of a request is a seed (numpy refuses negative ones: taken modulo 2^64)
    neg = top_examples(model, reader, [0, 1], k=4, sampling="RANDOM", seed=-295, keep_duplicates=True)
    assert rows(neg) == rows(top_examples(model, reader, [0, 1], k=4, sampling="RANDOM", seed=2 ** 64 - 295,
                                          keep_duplicates=True))


def test_context_windows_for_token_sets(tmp_path):
    A, texts, model, reader = make_set(tmp_path)
    res = top_examples(model, reader, [0], k=2, k_context=2)[0]
    ex98, ex96 = res.examples
    # row 98 = sample 19, token 3: context rows 96, 97, 98, 99 (sample ends at 99)
    assert [t.text for t in ex98.context] == [texts[r] for r in (96, 97, 98, 99)]
    assert [t.highlighted for t in ex98.context] == [False, False, True, False]
    assert [t.activation for t in ex98.context] == [97.0, 0.0, 99.0, 0.0]
    # row 96 = sample 19, token 1: context starts at the sample's first row 95
    assert [t.text for t in ex96.context] == [texts[r] for r in (95, 96, 97, 98)]
    assert ex96.context[1].highlighted
    assert top_examples(model, reader, [0], k=2, k_context=0)[0].examples[0].context == []


def test_no_token_context_for_word_sets(tmp_path):
    A, texts, model, reader = make_set(tmp_path, granularity="WORD")
    ex = top_examples(model, reader, [0], k=1, k_context=3)[0].examples[0]
    assert len(ex.context) == 1 and ex.context[0].highlighted and ex.context[0].text == texts[98]


def test_set_without_provenance(tmp_path):
    st = Store(tmp_path)
    A = np.arange(12, dtype=np.float32).reshape(6, 2)
    r = st.open_activation_set(st.put_activation_set(A).id)
    m = build_method("NEURONS_AS_CONCEPTS", 0).fit(A)
    ex = top_examples(m, r, [1], k=2, k_context=2)[0].examples
    assert [e.row for e in ex] == [5, 4] and ex[0].provenance is None


def test_validation_and_cancel(tmp_path):
    A, texts, model, reader = make_set(tmp_path)
    with pytest.raises(InvalidArgument, match="out of range"):
        top_examples(model, reader, [3])
    with pytest.raises(InvalidArgument, match="k must be"):
        top_examples(model, reader, [0], k=-1)
    for field in ("k", "k_quantile", "k_context"):  # enormous values: refused up front
        with pytest.raises(InvalidArgument, match=f"{field} must be between") as error:
            top_examples(model, reader, [0], **{field: 2 ** 31 - 1})
        assert error.value.field == field
    with pytest.raises(InvalidArgument, match="sampling"):
        top_examples(model, reader, [0], sampling="BEST")
    other = build_method("NEURONS_AS_CONCEPTS", 0).fit(np.zeros((3, 4), np.float32))
    with pytest.raises(InvalidArgument, match="hidden size"):
        top_examples(other, reader)
    with pytest.raises(Cancelled):
        top_examples(model, reader, should_stop=lambda: True)
    assert len(top_examples(model, reader, [])) == 3  # empty = every concept
