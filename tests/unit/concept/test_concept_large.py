"""Activation sets larger than memory: storage dtypes, positioned reads, the
streaming variants of the concept methods past a memory budget, and streamed
metrics / examples equal to their in-memory values (docs/concepts-large.md)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from xaimesh_concept.examples import top_examples
from xaimesh_concept.methods import build_method
from xaimesh_concept.metrics import PER_MODEL_METRICS, MetricAccumulator, compute_metrics, metrics_from_arrays
from xaimesh_concept.store import Store
from xaimesh_concept.workspace import ConceptWorkspace
from xaimesh_runtime.errors import InvalidArgument

N, D, K = 3000, 32, 6


def planted(seed=0, n=N, d=D, k=K):
    """Non-negative mixtures of k directions plus noise (SemiNMF / ICA structure)."""
    rng = np.random.default_rng(seed)
    return (np.abs(rng.standard_normal((n, k))) @ rng.standard_normal((k, d))
            + 0.1 * rng.standard_normal((n, d))).astype(np.float32)


# ---------------------------------------------------------------------------
# storage
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype,rel", [("float32", 0.0), ("float16", 2.0 ** -11), ("bfloat16", 2.0 ** -8)])
def test_storage_dtypes_round_trip_within_their_precision(tmp_path, dtype, rel):
    X = planted() * np.float32(37.0)
    st = Store(tmp_path)
    with st.new_activation_set(storage_dtype=dtype, chunk_bytes=40_000) as w:  # several chunk files
        for i in range(0, N, 700):
            w.append_rows(X[i:i + 700])
        info = w.commit()
    assert info.dtype == dtype
    r = st.open_activation_set(info.id)
    got = r.read(0, N)
    assert got.dtype == np.float32
    if dtype == "float32":
        assert got.tobytes() == X.tobytes()  # bitwise
    else:
        assert np.all(np.abs(got - X) <= rel * np.abs(X))  # round to nearest: half an ulp
        assert np.abs(got - X).max() > 0
    np.testing.assert_array_equal(r.read(1234, 2345), got[1234:2345])  # ranges across chunk files
    assert info.size_bytes < N * D * 4 * (1.0 if dtype == "float32" else 0.55) + 4096


def test_bfloat16_upload_stored_as_bfloat16_is_bitwise(tmp_path):
    X = planted(1)
    bf16 = (X.view(np.uint32) >> 16).astype("<u2")  # truncation: exactly representable values
    ws = ConceptWorkspace(str(tmp_path), storage_dtype="bfloat16")
    shape = [N, D]
    data = bf16.tobytes()
    parts = [("header", {"display_name": "bf"})] + [
        ("chunk", {"data": data[i:i + 10_000], "byte_offset": i, "total_bytes": len(data),
                   "dtype": "bfloat16", "shape": shape if i == 0 else None})
        for i in range(0, len(data), 10_000)]
    info = ws.upload_activation_set(parts)
    assert info.dtype == "bfloat16"
    got = ws.open_activation_set(info.name).read(0, N)
    expect = (bf16.astype(np.uint32) << 16).view(np.float32)
    assert got.tobytes() == expect.tobytes()


def test_out_of_range_values_are_refused_for_half_storage(tmp_path):
    st = Store(tmp_path)
    X = np.ones((4, 3), np.float32)
    X[2, 1] = 1e5
    with pytest.raises(InvalidArgument, match="out of the range of float16"):
        with st.new_activation_set(storage_dtype="float16") as w:
            w.append_rows(X)
    with pytest.raises(InvalidArgument, match="float32, float16 or bfloat16"):
        st.new_activation_set(storage_dtype="float64")


# ---------------------------------------------------------------------------
# streaming fits
# ---------------------------------------------------------------------------
# (method, data, budget in bytes): budgets well below the set (N * D * 4 = 384 kB)
STREAMED = [
    ("SEMI_NMF", "planted", 200_000),
    ("NMF", "nonnegative", 200_000),
    ("KMEANS", "planted", 200_000),
    ("ICA", "planted", 200_000),
    ("SPARSE_PCA", "planted", 500_000),  # its in-memory fit takes 16 bytes a value; fits 488 rows
]


@pytest.mark.parametrize("method,data,budget", STREAMED)
def test_streaming_fit_reaches_the_in_memory_objective_within_2_percent(method, data, budget, tmp_path):
    X = planted(2)
    if data == "nonnegative":
        X = np.abs(X)
    exact = build_method(method, K, {"seed": 0}).fit(X)
    streamed = build_method(method, K, {"seed": 0}).fit(X, memory_budget_bytes=budget, tmp_dir=str(tmp_path))
    assert not exact.streamed_fit_ and streamed.streamed_fit_
    assert streamed.final_loss_ <= exact.final_loss_ * 1.02
    # the reported objective is the model's: recompute it over all rows
    rec = streamed.decode(streamed.encode(X))
    if method in ("SEMI_NMF", "NMF"):  # fitted codes: re-encoding (exact NNLS) can only do better
        assert float(((X - rec) ** 2).mean()) <= streamed.final_loss_ * 1.001
    else:
        assert float(((X - rec) ** 2).mean()) == pytest.approx(streamed.final_loss_, rel=1e-4)
    assert os.listdir(tmp_path) == []  # scratch codes removed


def test_streaming_kmeans_objective_is_the_inertia_of_its_centroids():
    X = planted(3)
    m = build_method("KMEANS", K, {"seed": 1}).fit(X, streaming=True)
    c = m.dictionary_.astype(np.float64)
    d2 = ((X[:, None, :].astype(np.float64) - c[None]) ** 2).sum(-1).min(1)
    assert m.final_loss_ == pytest.approx(d2.sum() / X.size, rel=1e-9)


def test_below_the_budget_the_exact_fit_runs_unchanged():
    X = planted(4)
    plain = build_method("SEMI_NMF", K, {"seed": 0}).fit(X)
    budgeted = build_method("SEMI_NMF", K, {"seed": 0}).fit(X, memory_budget_bytes=1 << 30)
    assert not budgeted.streamed_fit_
    np.testing.assert_array_equal(plain.dictionary_, budgeted.dictionary_)


def test_a_workspace_budget_smaller_than_the_set_forces_the_streaming_path(tmp_path):
    X = planted(5)
    small = ConceptWorkspace(str(tmp_path / "small"), memory_budget_bytes=100_000)
    big = ConceptWorkspace(str(tmp_path / "big"), memory_budget_bytes=1 << 30)
    for ws, streamed in ((small, True), (big, False)):
        info = ws.create_activation_set([X])
        model = ws.fit(info.name, "SEMI_NMF", K, {"seed": 0, "max_iterations": 30})
        _, m = ws.load_model(model.name)
        assert m.streamed_fit_ is streamed
        assert any(e["stage"] == "streaming" for e in model.training_log) is streamed
        stored = ws.store.load_concept_model(model.id)[1]
        assert stored.config["streamed_fit"] is streamed
        assert os.listdir(ws.store.tmp_dir) == []


# ---------------------------------------------------------------------------
# metrics and examples, streamed
# ---------------------------------------------------------------------------
def test_streamed_metrics_with_spilled_fid_equal_the_in_memory_ones(tmp_path):
    X = planted(6)
    m = build_method("PCA", K, {"device": "cpu"}).fit(X)
    codes = m.encode(X)
    expect = metrics_from_arrays(X, codes, m.decode(codes))
    st = Store(tmp_path)
    info = st.put_activation_set(X, chunk_bytes=20_000, storage_dtype="float32")
    got = compute_metrics(m, st.open_activation_set(info.id), chunk_rows=123, fid_memory_bytes=10_000,
                          tmp_dir=st.tmp_dir)
    for name in PER_MODEL_METRICS:
        # the codes of 123-row blocks differ from those of all rows by float32 rounding only
        assert got[name] == pytest.approx(expect[name], rel=1e-6, abs=1e-12), name
    assert os.listdir(st.tmp_dir) == []


def test_fid_spill_grown_twice_stays_exact(tmp_path):
    from scipy.stats import wasserstein_distance

    rng = np.random.default_rng(7)
    X, R = rng.standard_normal((700, 5)), rng.standard_normal((700, 5))
    acc = MetricAccumulator(5, 2, ["FID"], fid_memory_bytes=2_000, tmp_dir=str(tmp_path))
    for i in range(0, 700, 50):  # no row count announced: the spill starts small and doubles
        acc.update(X[i:i + 50], np.ones((50, 2)), R[i:i + 50])
    assert acc._spill is not None and acc._spill[0].n_rows < 1400 * 2
    expect = np.mean([wasserstein_distance(X[:, j].astype(np.float32), R[:, j].astype(np.float32))
                      for j in range(5)])
    assert acc.result()["FID"] == pytest.approx(expect, rel=1e-9)
    acc.close()


def test_streamed_top_examples_equal_brute_force_over_a_half_precision_set(tmp_path):
    X = np.abs(planted(8))
    st = Store(tmp_path)
    info = st.put_activation_set(X, chunk_bytes=30_000, storage_dtype="float16")
    reader = st.open_activation_set(info.id)
    stored = reader.read(0, N)
    m = build_method("NMF", K, {"seed": 0, "max_iterations": 20}).fit(reader, streaming=True,
                                                                       tmp_dir=st.tmp_dir)
    got = top_examples(m, reader, k=7, chunk_rows=97)
    codes = m.encode(stored)
    for ex in got:
        col = codes[:, ex.concept_index]
        best = np.argsort(-col, kind="stable")[:7]
        assert [e.row for e in ex.examples] == best.tolist()
        assert ex.num_active_rows == int((col != 0).sum())
        assert ex.max_activation == pytest.approx(float(col.max()))


# ---------------------------------------------------------------------------
# service configuration
# ---------------------------------------------------------------------------
def test_service_flags_and_env_set_the_budget_and_the_storage_dtype(tmp_path, monkeypatch):
    from xaimesh_concept.__main__ import DEFAULT_MEMORY_BUDGET, build_parser, main
    from xaimesh_concept.server import ConceptServicer

    default = ConceptServicer.from_config(build_parser().parse_config(["--data-dir", str(tmp_path / "a")]))
    assert default.ws.memory_budget_bytes == DEFAULT_MEMORY_BUDGET and default.ws.storage_dtype == "float32"
    monkeypatch.setenv("XAIMESH_ACTIVATION_STORAGE_DTYPE", "bfloat16")
    config = build_parser().parse_config(["--data-dir", str(tmp_path / "b"), "--memory-budget-bytes", "100000000"])
    ws = ConceptServicer.from_config(config).ws
    assert ws.memory_budget_bytes == 100_000_000
    assert ws.create_activation_set([planted(9, n=50)]).dtype == "bfloat16"
    with pytest.raises(SystemExit):  # refused before anything starts
        main(["--data-dir", str(tmp_path / "c"), "--memory-budget-bytes", "1000"])
