import numpy as np
import pytest

from xaimesh_concept.data import ChunkFactorySource
from xaimesh_runtime.errors import Cancelled, InvalidArgument
from xaimesh_concept.methods import (METHOD_NAMES, ConceptMethod, build_method, method_class)

N, D, K = 240, 12, 4


def low_rank(seed=0, nonneg_dict=False, n=N, d=D, k=K):
    rng = np.random.default_rng(seed)
    U = rng.random((n, k))
    W = rng.random((k, d)) if nonneg_dict else rng.standard_normal((k, d))
    return (U @ W).astype(np.float32)


def rel_err(X, R):
    return float(np.linalg.norm(X - R) / np.linalg.norm(X))


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(1)
    base = low_rank(1)
    return (base + 0.05 * rng.standard_normal(base.shape)).astype(np.float32)


# ---------------------------------------------------------------- recovery
@pytest.mark.parametrize("seed", [0, 1])
def test_semi_nmf_recovers_exact_low_rank(seed):
    X = low_rank(seed)
    m = build_method("SEMI_NMF", K, {"device": "cpu", "seed": seed, "max_iterations": 300}).fit(X)
    codes = m.encode(X)
    assert codes.min() >= 0
    assert rel_err(X, m.decode(codes)) < 1e-2
    assert (m.dictionary_ < 0).any()  # free sign


def test_semi_nmf_paper_multiplicative_rule_also_works():
    X = low_rank(0)
    m = build_method("SEMI_NMF", K, {"device": "cpu", "u_solver": "mu", "max_iterations": 200,
                                     "tolerance": 1e-9}).fit(X)
    assert rel_err(X, m.reconstruct(X)) < 0.1  # slower than the default "pg" codes update


@pytest.mark.parametrize("seed", [0, 1])
def test_nmf_recovers_exact_low_rank(seed):
    X = low_rank(seed, nonneg_dict=True)
    m = build_method("NMF", K, {"device": "cpu", "seed": seed, "max_iterations": 500,
                                "tolerance": 1e-9}).fit(X)
    assert m.dictionary_.min() >= 0
    assert rel_err(X, m.reconstruct(X)) < 1e-2


def test_nmf_refuses_negative_inputs_unless_relu():
    X = low_rank(0)
    assert X.min() < 0
    with pytest.raises(InvalidArgument) as e:
        build_method("NMF", K, {"device": "cpu"}).fit(X)
    assert "relu_negative_inputs" in str(e.value)
    assert e.value.field == "options.relu_negative_inputs"
    m = build_method("NMF", K, {"device": "cpu", "relu_negative_inputs": True,
                                "max_iterations": 50}).fit(X)
    codes = m.encode(X)  # negatives are ReLU'd at encode too
    assert codes.shape == (N, K) and codes.min() >= 0
    fitted_pos = build_method("NMF", K, {"device": "cpu", "max_iterations": 5}).fit(np.abs(X))
    with pytest.raises(InvalidArgument, match="relu_negative_inputs"):
        fitted_pos.encode(X)


def test_convex_nmf_dictionary_is_convex_combination_of_rows():
    X = low_rank(2)
    m = build_method("CONVEX_NMF", K, {"device": "cpu", "max_iterations": 100}).fit(X)
    A = m.convex_weights_
    assert A.min() >= 0
    np.testing.assert_allclose(A.sum(0), 1.0, rtol=1e-4)
    np.testing.assert_allclose(A.T @ X[m.support_rows_], m.dictionary_, rtol=1e-3, atol=1e-4)
    assert m.encode(X).min() >= 0
    assert rel_err(X, m.reconstruct(X)) < 0.5


def test_convex_nmf_subsamples_rows_above_max_rows():
    X = low_rank(2)
    m = build_method("CONVEX_NMF", K, {"device": "cpu", "max_iterations": 20, "max_rows": 100}).fit(X)
    assert len(m.support_rows_) == 100 and m.convex_weights_.shape == (100, K)


def test_pca_equals_svd_reference(X):
    k = 5
    m = build_method("PCA", k, {"device": "cpu"}).fit(X)
    Xc = X.astype(np.float64) - X.astype(np.float64).mean(0)
    _, S, Vt = np.linalg.svd(Xc, full_matrices=False)
    for i in range(k):
        c = float(np.dot(m.dictionary_[i], Vt[i]))
        assert abs(abs(c) - 1) < 1e-4, (i, c)
    np.testing.assert_allclose(m.explained_variance_, S[:k] ** 2 / (N - 1), rtol=1e-4)
    ref_codes = Xc @ Vt[:k].T
    np.testing.assert_allclose(np.abs(m.encode(X)), np.abs(ref_codes), atol=1e-4)
    # reconstruction equals the rank-k SVD approximation
    ref = (Xc @ Vt[:k].T @ Vt[:k]) + X.mean(0)
    np.testing.assert_allclose(m.reconstruct(X), ref, atol=1e-4)
    assert abs(m.final_loss_ - float(((X - ref) ** 2).mean())) < 1e-5


def test_svd_matches_numpy(X):
    m = build_method("SVD", 3, {"device": "cpu"}).fit(X)
    _, S, Vt = np.linalg.svd(X.astype(np.float64), full_matrices=False)
    np.testing.assert_allclose(np.abs(m.dictionary_ @ Vt[:3].T), np.eye(3), atol=1e-4)
    np.testing.assert_allclose(m.singular_values_, S[:3], rtol=1e-4)


def test_pca_streams_chunks_and_memmap(X, tmp_path):
    ref = build_method("PCA", 3, {"device": "cpu"}).fit(X)
    path = tmp_path / "x.npy"
    np.save(path, X)
    mm = np.load(path, mmap_mode="r")
    m1 = build_method("PCA", 3, {"device": "cpu"}).fit(mm)
    m2 = build_method("PCA", 3, {"device": "cpu"}).fit(
        ChunkFactorySource(lambda: (X[i:i + 17] for i in range(0, N, 17))))
    for m in (m1, m2):
        np.testing.assert_allclose(m.dictionary_, ref.dictionary_, atol=1e-5)


# ---------------------------------------------------------------- every method
def _k_for(name):
    return {"NEURONS_AS_CONCEPTS": D}.get(name, 16 if name.startswith("SAE") else K)


FAST = {"SAE_VANILLA": {"epochs": 3}, "SAE_TOPK": {"epochs": 3, "top_k": 3},
        "SAE_BATCH_TOPK": {"epochs": 3, "top_k": 3}, "SAE_JUMP_RELU": {"epochs": 3},
        "SAE_MP": {"epochs": 3, "top_k": 3}, "SAE_MATRYOSHKA": {"epochs": 3, "top_k": 3},
        "DICTIONARY_LEARNING": {"max_iterations": 2, "alpha": 0.1}, "SEMI_NMF": {"max_iterations": 30},
        "NMF": {"max_iterations": 30, "relu_negative_inputs": True},
        "CONVEX_NMF": {"max_iterations": 30}, "SPARSE_PCA": {"max_iterations": 10}}


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_every_method_fits_encodes_decodes_and_persists(name, X):
    k = _k_for(name)
    opts = {"device": "cpu", "seed": 3, **FAST.get(name, {})}
    logs = []
    m = build_method(name, k, opts).fit(X, progress=logs.append)
    assert logs, "at least one training log entry"
    codes = m.encode(X)
    assert codes.shape == (N, k) and codes.dtype == np.float32
    np.testing.assert_array_equal(m.encode(X), codes)  # deterministic encode
    rec = m.decode(codes)
    assert rec.shape == (N, D) and rec.dtype == np.float32
    assert m.dictionary_.shape == (k, D)
    assert np.isfinite(codes).all() and np.isfinite(rec).all()
    if method_class(name).nonnegative_codes:
        assert codes.min() >= 0
    # single row encodes like the batch
    np.testing.assert_allclose(m.encode(X[:1]), codes[:1], rtol=1e-4, atol=1e-5)
    # persistence round-trip
    state = m.state_dict()
    import json
    json.dumps(state.config)
    m2 = ConceptMethod.from_state(state)
    np.testing.assert_array_equal(m2.encode(X), codes)
    np.testing.assert_array_equal(m2.dictionary_, m.dictionary_)
    # same seed, same model
    again = build_method(name, k, opts).fit(X)
    np.testing.assert_allclose(again.encode(X), codes, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["SAE_VANILLA", "SAE_TOPK", "SAE_BATCH_TOPK", "SAE_JUMP_RELU", "SAE_MP",
                                  "SAE_MATRYOSHKA"])
def test_sae_training_reduces_loss(name, X):
    opts = {"device": "cpu", "epochs": 12, "batch_size": 32, "learning_rate": 3e-3, "top_k": 4}
    if name in ("SAE_VANILLA", "SAE_JUMP_RELU"):
        opts.pop("top_k")
    m = build_method(name, 24, opts).fit(X)
    epochs = [e for e in m.training_log_ if e.kind == "EPOCH"]
    losses = [e.loss for e in epochs]
    assert len(losses) == 12 and [e.epoch for e in epochs] == list(range(1, 13))
    assert [e.kind for e in m.training_log_] == ["EPOCH"] * 12 + ["FINAL"]
    assert losses[-1] < 0.7 * losses[0], losses
    assert "l0" in epochs[-1].values and "reconstruction" in epochs[-1].values


def test_topk_gives_exactly_k_nonzeros_per_row(X):
    m = build_method("SAE_TOPK", 24, {"device": "cpu", "epochs": 3, "top_k": 5}).fit(X)
    nnz = (m.encode(X) != 0).sum(1)
    assert (nnz == 5).all(), np.bincount(nnz)


def test_batch_topk_uses_a_per_row_threshold_at_inference(X):
    m = build_method("SAE_BATCH_TOPK", 24, {"device": "cpu", "epochs": 4, "top_k": 4}).fit(X)
    assert m.threshold_ > 0
    codes = m.encode(X)
    assert codes[codes > 0].min() > m.threshold_
    # per-row: encoding rows one at a time equals the batch
    singles = np.concatenate([m.encode(X[i:i + 1]) for i in range(10)])
    np.testing.assert_allclose(singles, codes[:10], rtol=1e-5, atol=1e-6)
    # the threshold persists
    assert ConceptMethod.from_state(m.state_dict()).threshold_ == m.threshold_
    # average L0 at inference is in the neighbourhood of top_k
    assert 1 <= (codes != 0).sum(1).mean() <= 12


def test_jump_relu_learns_thresholds(X):
    m = build_method("SAE_JUMP_RELU", 24, {"device": "cpu", "epochs": 5, "l1_coefficient": 0.05,
                                           "jump_threshold": 0.05, "jump_bandwidth": 0.05}).fit(X)
    theta = np.exp(m.log_theta.detach().numpy())
    assert not np.allclose(theta, 0.05)  # the straight-through estimator moved them
    codes = m.encode(X)
    assert ((codes == 0) | (codes > theta[None, :] - 1e-7)).all()


def test_sae_decoder_rows_are_unit_norm(X):
    m = build_method("SAE_VANILLA", 16, {"device": "cpu", "epochs": 2}).fit(X)
    np.testing.assert_allclose(np.linalg.norm(m.dictionary_, axis=1), 1.0, rtol=1e-5)


def test_sae_trains_from_chunk_iterator(X):
    src = ChunkFactorySource(lambda: (X[i:i + 50] for i in range(0, N, 50)))
    m = build_method("SAE_TOPK", 16, {"device": "cpu", "epochs": 2, "top_k": 2}).fit(src)
    assert m.encode(X).shape == (N, 16)


def test_kmeans_codes_and_decode(X):
    m = build_method("KMEANS", K, {"device": "cpu"}).fit(X)
    codes = m.encode(X)
    assert ((codes != 0).sum(1) == 1).all()
    assert (codes.max(1) > 0).all() and (codes.max(1) <= 1).all()
    rec = m.decode(codes)
    idx = codes.argmax(1)
    np.testing.assert_allclose(rec, m.dictionary_[idx], rtol=1e-5)
    onehot = np.eye(K, dtype=np.float32)[idx]
    np.testing.assert_allclose(m.decode(onehot), rec, rtol=1e-5)


def test_neurons_as_concepts_is_identity(X):
    m = build_method("NEURONS_AS_CONCEPTS", 0, {}).fit(X)
    assert m.nb_concepts == D
    np.testing.assert_array_equal(m.encode(X), X)
    np.testing.assert_array_equal(m.dictionary_, np.eye(D, dtype=np.float32))
    with pytest.raises(InvalidArgument, match="hidden size"):
        build_method("NEURONS_AS_CONCEPTS", 5, {}).fit(X)


def test_standardize_is_undone_on_decode(X):
    Xs = X * 10 + 3
    m = build_method("PCA", D, {"device": "cpu", "standardize": True}).fit(Xs)
    np.testing.assert_allclose(m.reconstruct(Xs), Xs, rtol=1e-3, atol=1e-3)
    m2 = ConceptMethod.from_state(m.state_dict())
    np.testing.assert_array_equal(m2.encode(Xs), m.encode(Xs))


# ---------------------------------------------------------------- validation / control
def test_validation_messages(X):
    with pytest.raises(InvalidArgument, match="unknown concept method"):
        build_method("NOPE", 3)
    with pytest.raises(InvalidArgument, match="nb_concepts must be >= 1"):
        build_method("PCA", 0)
    with pytest.raises(InvalidArgument, match="<= the number of rows"):
        build_method("SEMI_NMF", 50, {"device": "cpu"}).fit(X[:10])
    with pytest.raises(InvalidArgument, match="<= the hidden size"):
        build_method("PCA", D + 1, {"device": "cpu"}).fit(X)
    with pytest.raises(InvalidArgument, match="top_k"):
        build_method("SAE_TOPK", 4, {"top_k": 8, "device": "cpu"})
    with pytest.raises(InvalidArgument, match="unknown fit option"):
        build_method("PCA", 2, {"bogus": 1})
    # enormous counts are refused up front, not run for days (or allocated)
    with pytest.raises(InvalidArgument, match="nb_concepts must be at most 65536"):
        build_method("SAE_VANILLA", 2 ** 31 - 1, {"device": "cpu"})
    for option, method in (("max_iterations", "SEMI_NMF"), ("epochs", "SAE_VANILLA"),
                           ("batch_size", "SAE_VANILLA"), ("top_k", "SAE_TOPK")):
        with pytest.raises(InvalidArgument, match=f"{option} must be at most") as error:
            build_method(method, 4, {option: 2 ** 31 - 1, "device": "cpu"})
        assert error.value.field == f"options.{option}"
    m = build_method("PCA", 2, {"device": "cpu"}).fit(X)
    with pytest.raises(InvalidArgument, match="hidden size"):
        m.encode(X[:, :5])
    with pytest.raises(InvalidArgument, match="columns"):
        m.decode(np.zeros((2, 3)))
    # proto zero values mean defaults; inapplicable proto fields are ignored
    m = build_method("SEMI_NMF", 2, {"max_iterations": 0, "top_k": 0, "epochs": 5, "device": "cpu"})
    assert m.get_params()["max_iterations"] == 200 and "epochs" not in m.get_params()
    assert method_class("CONCEPT_METHOD_SAE_TOPK").method_name == "SAE_TOPK"


@pytest.mark.parametrize("name", ["CONVEX_NMF", "SAE_VANILLA", "DICTIONARY_LEARNING", "KMEANS", "ICA"])
def test_negative_seeds_are_seeds(name, X):
    """ConceptFitOptions.seed is an int64: a negative one seeds the fit
    (numpy's generators refuse them, which was an INTERNAL error)."""
    options = {"device": "cpu", "seed": -7, "epochs": 1, "max_iterations": 5}
    a = build_method(name, 3, options).fit(X).encode(X[:20])
    b = build_method(name, 3, options).fit(X).encode(X[:20])
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["SEMI_NMF", "SAE_TOPK", "DICTIONARY_LEARNING", "PCA", "SPARSE_PCA"])
def test_should_stop_cancels(name, X):
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] > 1  # the first poll is before any work

    with pytest.raises(Cancelled):
        build_method(name, 4, {"device": "cpu", "top_k": 2} if name == "SAE_TOPK"
                     else {"device": "cpu"}).fit(X, should_stop=stop)


def test_cuda_devices_are_used_when_present_and_refused_when_absent(X):
    """Runs on both kinds of machine: where CUDA is, a "cuda" fit runs there;
    where it is not, "cuda" is refused with
    a message that says so. Device numbers past the last GPU and unknown
    devices are refused everywhere."""
    import torch

    options = {"device": "cuda", "top_k": 2, "epochs": 1, "seed": 3}
    if torch.cuda.is_available():
        m = build_method("SAE_TOPK", 4, options)
        assert m.device_ == "cuda" and m.get_params()["device"] == "cuda"
        m.fit(X)
        assert m.W_enc.device.type == "cuda" and m.W_dec.device.type == "cuda"
        codes = m.encode(X)
        assert codes.shape == (X.shape[0], 4) and codes.dtype == np.float32 and np.isfinite(codes).all()
        assert ConceptMethod.from_state(m.state_dict(), device="cpu").device_ == "cpu"
    else:
        with pytest.raises(InvalidArgument, match="CUDA is not available") as error:
            build_method("SAE_TOPK", 4, options)
        assert error.value.field == "options.device"
    with pytest.raises(InvalidArgument, match="does not exist|CUDA is not available"):
        build_method("SAE_TOPK", 4, {**options, "device": f"cuda:{torch.cuda.device_count()}"})
    with pytest.raises(InvalidArgument, match="not supported"):
        build_method("SAE_TOPK", 4, {**options, "device": "tpu"})


def test_state_fitted_on_cuda_loads_where_the_server_can_run_it(X):
    """A model saved with device "cuda" loads on CUDA where there is one,
    else on the CPU; ``device=`` overrides it; the codes are the same."""
    import torch

    m = build_method("SAE_TOPK", 8, {"device": "cpu", "epochs": 1, "top_k": 2}).fit(X)
    state = m.state_dict()
    state.config["params"]["device"] = "cuda"
    loaded = ConceptMethod.from_state(state)
    assert loaded.device_ == ("cuda" if torch.cuda.is_available() else "cpu")
    np.testing.assert_allclose(loaded.encode(X), m.encode(X), rtol=1e-5, atol=1e-6)
    assert ConceptMethod.from_state(state, device="cpu").device_ == "cpu"
