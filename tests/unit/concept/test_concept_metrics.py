import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from xaimesh_runtime.errors import Cancelled, InvalidArgument
from xaimesh_concept.methods import build_method
from xaimesh_concept.metrics import (MetricAccumulator, compute_metrics, metrics_from_arrays,
                                     normalize_metric_name, stability)

X = np.array([[1.0, 0.0, 2.0],
              [3.0, 1.0, 0.0],
              [0.0, 2.0, 4.0],
              [2.0, 1.0, 2.0]], np.float32)
X_HAT = np.array([[1.0, 1.0, 2.0],
                  [2.0, 1.0, 0.0],
                  [0.0, 2.0, 2.0],
                  [2.0, 0.0, 2.0]], np.float32)
CODES = np.array([[1.0, 0.0],
                  [0.0, 0.0],
                  [2.0, 0.0],
                  [0.5, 0.0]], np.float32)


def test_metrics_against_hand_computed_values():
    m = metrics_from_arrays(X, CODES, X_HAT)
    # squared errors: row0 1, row1 1, row2 4, row3 1 -> 7 over 12 elements
    assert m["MSE"] == pytest.approx(7 / 12)
    assert m["FROBENIUS"] == pytest.approx(np.sqrt(7))
    assert m["MSE"] == pytest.approx(m["FROBENIUS"] ** 2 / X.size)
    # ||X - mean||^2: col0 mean 1.5 -> 0.25+2.25+2.25+0.25=5; col1 mean 1 -> 1+0+1+0=2;
    # col2 mean 2 -> 0+4+4+0=8; total 15
    assert m["EXPLAINED_VARIANCE"] == pytest.approx(1 - 7 / 15)
    assert m["SPARSITY"] == pytest.approx(3 / 8)
    assert m["L0"] == pytest.approx(3 / 4)
    assert m["DEAD_CONCEPTS"] == pytest.approx(0.5)
    dens_x = 9 / 12
    assert m["SPARSITY_RATIO"] == pytest.approx((3 / 8) / dens_x)
    fid = np.mean([wasserstein_distance(X[:, j], X_HAT[:, j]) for j in range(3)])
    assert m["FID"] == pytest.approx(fid)
    # sorted-difference formula, by hand: col0 sorted [0,1,2,3] vs [0,1,2,2] -> 0.25;
    # col1 [0,1,1,2] vs [0,1,1,2] -> 0; col2 [0,2,2,4] vs [0,2,2,2] -> 0.5
    assert m["FID"] == pytest.approx((0.25 + 0 + 0.5) / 3)


def test_accumulator_in_chunks_equals_one_shot():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((103, 7)).astype(np.float32) * 5 + 100
    R = A + rng.standard_normal(A.shape).astype(np.float32)
    C = np.maximum(rng.standard_normal((103, 5)), 0).astype(np.float32)
    ref = metrics_from_arrays(A, C, R)
    acc = MetricAccumulator(7, 5)
    for i in range(0, 103, 10):
        acc.update(A[i:i + 10], C[i:i + 10], R[i:i + 10])
    got = acc.result()
    for k, v in ref.items():
        assert got[k] == pytest.approx(v, rel=1e-9), k


def test_fid_spills_to_disk_and_stays_exact(tmp_path):
    rng = np.random.default_rng(1)
    A = rng.standard_normal((500, 6)).astype(np.float32)
    R = (A * 0.5 + 0.1).astype(np.float32)
    C = np.ones((500, 2), np.float32)
    ref = metrics_from_arrays(A, C, R, ["FID"])["FID"]
    # announced size above the budget -> memmaps from the start
    acc = MetricAccumulator(6, 2, ["FID"], n_rows_hint=500, fid_memory_bytes=1000,
                            tmp_dir=str(tmp_path))
    assert acc._spill is not None
    for i in range(0, 500, 64):
        acc.update(A[i:i + 64], C[i:i + 64], R[i:i + 64])
    assert acc.result()["FID"] == pytest.approx(ref, rel=1e-9)
    acc.close()
    # unknown size -> switches to disk when the budget is exceeded
    acc = MetricAccumulator(6, 2, ["FID"], fid_memory_bytes=5000, tmp_dir=str(tmp_path))
    for i in range(0, 500, 64):
        acc.update(A[i:i + 64], C[i:i + 64], R[i:i + 64])
    assert acc._spill is not None
    assert acc.result()["FID"] == pytest.approx(ref, rel=1e-9)
    acc.close()
    assert list(tmp_path.iterdir()) == []


def test_compute_metrics_with_a_model_and_progress():
    rng = np.random.default_rng(2)
    A = rng.standard_normal((90, 5)).astype(np.float32)
    m = build_method("PCA", 5, {"device": "cpu"}).fit(A)
    seen = []
    vals = compute_metrics(m, A, ["MSE", "EXPLAINED_VARIANCE", "L0"], chunk_rows=20,
                           progress=seen.append)
    assert vals["MSE"] < 1e-10 and vals["EXPLAINED_VARIANCE"] == pytest.approx(1.0)
    assert vals["L0"] == pytest.approx(5.0)
    assert [p.done for p in seen] == [20, 40, 60, 80, 90] and seen[-1].total == 90
    with pytest.raises(Cancelled):
        compute_metrics(m, A, chunk_rows=20, should_stop=lambda: True)
    with pytest.raises(InvalidArgument, match="hidden size"):
        compute_metrics(m, A[:, :3])


def test_stability():
    rng = np.random.default_rng(3)
    D = rng.standard_normal((6, 10))
    perm = rng.permutation(6)
    signs = np.array([1, -1, 1, 1, -1, 1])[:, None]
    assert stability([D, (D[perm] * signs) * 3.0]) == pytest.approx(1.0)
    assert stability([D, D, D[perm]]) == pytest.approx(1.0)
    # orthogonal dictionaries -> 0
    E = np.eye(4)
    assert stability([E[:2], E[2:]]) == pytest.approx(0.0)
    # hand-computed: [e0, e1] vs [(e0+e1)/sqrt2, e1] -> best matching 1/sqrt2 + 1 ... /2
    A = np.array([[1.0, 0.0], [0.0, 1.0]])
    B = np.array([[1.0, 1.0], [0.0, 1.0]])
    assert stability([A, B]) == pytest.approx((1 / np.sqrt(2) + 1) / 2)
    with pytest.raises(InvalidArgument, match="at least 2"):
        stability([A])
    with pytest.raises(InvalidArgument, match="hidden size"):
        stability([A, np.ones((2, 3))])


def test_metric_names():
    assert normalize_metric_name("CONCEPT_METRIC_FID") == "FID"
    assert normalize_metric_name("mse") == "MSE"
    with pytest.raises(InvalidArgument, match="unknown concept metric"):
        normalize_metric_name("ACCURACY")
