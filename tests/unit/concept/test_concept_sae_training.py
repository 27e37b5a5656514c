"""SAE variants (MpSAE, Matryoshka), the training options and the training
log: planted dictionaries, a hand-written matching pursuit, the log's FINAL
entry recomputed from the fitted model, the schedules, the block feed and
the refusals."""

import math

import numpy as np
import pytest

from xaimesh_concept.common import numpy_rng
from xaimesh_concept.data import ArraySource, iter_shuffled_batches
from xaimesh_concept.methods import ConceptMethod, build_method
from xaimesh_runtime.errors import InvalidArgument

N_PLANTED, D_PLANTED, K_PLANTED = 2000, 24, 12


@pytest.fixture(scope="module")
def planted():
    """Rows that are sums of 2 of 12 known unit atoms, coefficients in [1, 2]."""
    rng = np.random.default_rng(0)
    atoms = rng.standard_normal((K_PLANTED, D_PLANTED))
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    codes = np.zeros((N_PLANTED, K_PLANTED))
    for i in range(N_PLANTED):
        codes[i, rng.choice(K_PLANTED, 2, replace=False)] = rng.uniform(1, 2, 2)
    return (codes @ atoms).astype(np.float32), atoms


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(5)
    return (rng.standard_normal((300, 12)) @ rng.standard_normal((12, 12))).astype(np.float32)


def best_cosines(atoms, dictionary):
    """For each planted atom, its largest |cosine| with a learned atom."""
    learned = dictionary / np.linalg.norm(dictionary, axis=1, keepdims=True)
    return np.abs(atoms @ learned.T).max(1)


PLANTED_FIT = {"device": "cpu", "epochs": 20, "batch_size": 64, "learning_rate": 3e-3, "seed": 1, "top_k": 2}


@pytest.mark.parametrize("name, nb_concepts", [("SAE_MP", 24), ("SAE_TOPK", 24), ("SAE_BATCH_TOPK", 24)])
def test_planted_dictionary_is_recovered(planted, name, nb_concepts):
    X, atoms = planted
    m = build_method(name, nb_concepts, PLANTED_FIT).fit(X)
    cos = best_cosines(atoms, m.dictionary_)
    assert cos.min() >= 0.9, np.sort(cos)
    codes = m.encode(X)
    assert codes.shape == (N_PLANTED, nb_concepts) and m.decode(codes).shape == X.shape
    rel = np.linalg.norm(m.decode(codes) - X) / np.linalg.norm(X)
    assert rel < 0.15, rel


def test_matryoshka_prefixes_reconstruct_on_their_own(planted):
    """The nested objective: the first m concepts of a Matryoshka SAE
    reconstruct far better than the first m of a TopK SAE trained alike,
    and the log's prefix errors are those of the fitted model."""
    X, _ = planted
    prefixes = [6, 12, 24]
    mat = build_method("SAE_MATRYOSHKA", 24, {**PLANTED_FIT, "matryoshka_prefixes": prefixes[:-1]}).fit(X)
    assert mat.matryoshka_prefixes == prefixes  # nb_concepts appended
    flat = build_method("SAE_TOPK", 24, PLANTED_FIT).fit(X)
    final = mat.training_log_[-1]
    for m in prefixes:
        def prefix_mse(model):
            z = model.encode(X)
            rec = z[:, :m] @ model.dictionary_[:m] + model.b_dec.numpy()
            return float(((rec - X) ** 2).mean())
        assert final.values[f"mse_prefix_{m}"] == pytest.approx(prefix_mse(mat), rel=1e-4)
        if m < 24:
            assert prefix_mse(mat) < 0.75 * prefix_mse(flat), (m, prefix_mse(mat), prefix_mse(flat))
    assert final.values["reconstruction"] == pytest.approx(
        np.mean([final.values[f"mse_prefix_{m}"] for m in prefixes]), rel=1e-6)


def hand_matching_pursuit(x, W, b, steps):
    """Matching pursuit written out: the signed best atom, ``steps`` times."""
    z = np.zeros((x.shape[0], W.shape[0]))
    for i, row in enumerate(x.astype(np.float64) - b):
        r = row.copy()
        for _ in range(steps):
            c = W @ r
            j = int(np.argmax(c))
            z[i, j] += c[j]
            r -= c[j] * W[j]
    return z


def test_mp_encoding_is_matching_pursuit(X):
    m = build_method("SAE_MP", 7, {"device": "cpu", "epochs": 2, "top_k": 4, "seed": 2}).fit(X)
    W = m.dictionary_.astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(W, axis=1), 1.0, rtol=1e-5)
    ref = hand_matching_pursuit(X[:20], W, m.b_dec.numpy().astype(np.float64), 4)
    np.testing.assert_allclose(m.encode(X[:20]), ref, rtol=1e-4, atol=1e-4)
    # at most top_k atoms, and the residual only shrinks
    assert ((m.encode(X) != 0).sum(1) <= 4).all()
    one = build_method("SAE_MP", 7, {"device": "cpu", "epochs": 2, "top_k": 1, "seed": 2}).fit(X)
    centred = X - one.b_dec.numpy()
    assert np.linalg.norm(one.reconstruct(X) - X) < np.linalg.norm(centred)
    # persisted without encoder weights, encodes the same after reload
    state = m.state_dict()
    assert set(state.tensors) == {"W_dec", "b_dec"}
    np.testing.assert_array_equal(ConceptMethod.from_state(state).encode(X), m.encode(X))
    with pytest.raises(InvalidArgument, match="pursuit steps must be <= nb_concepts"):
        build_method("SAE_MP", 4, {"device": "cpu", "top_k": 5})


# ---------------------------------------------------------------- training log
def recomputed_loss(m, X, criterion="MSE"):
    """The training loss of a fitted model on every row, from encode / decode."""
    z = m.encode(X).astype(np.float64)
    rec = float(((m.decode(z) - X) ** 2).mean())
    if m.method_name == "SAE_MATRYOSHKA":
        b = m.b_dec.numpy()
        rec = float(np.mean([((z[:, :p] @ m.dictionary_[:p] + b - X) ** 2).mean() for p in m.matryoshka_prefixes]))
    if m.method_name == "SAE_VANILLA":
        rec += m.l1_coefficient * float((np.abs(z) * np.linalg.norm(m.dictionary_, axis=1)).sum(1).mean())
    if m.method_name == "SAE_JUMP_RELU":
        rec += m.l1_coefficient * float((z != 0).sum(1).mean())
    if criterion == "DEAD_NEURONS_REANIMATION":
        pre = ((X - m.b_dec.numpy()) @ m.W_enc.numpy() + m.b_enc.numpy()).astype(np.float64)
        dead = ~(z > 0).any(0)
        rec -= 1e-3 * float((pre * dead[None, :]).mean())
    return rec


@pytest.mark.parametrize("name, options", [
    ("SAE_TOPK", {"top_k": 3}), ("SAE_VANILLA", {"l1_coefficient": 0.01}), ("SAE_MP", {"top_k": 3}),
    ("SAE_MATRYOSHKA", {"top_k": 3}), ("SAE_BATCH_TOPK", {"top_k": 3}),
    ("SAE_JUMP_RELU", {"l1_coefficient": 0.01, "jump_threshold": 0.1}),
    ("SAE_TOPK", {"top_k": 1, "loss": "DEAD_NEURONS_REANIMATION"}),
])
def test_final_log_entry_is_the_fitted_model_on_the_data(X, name, options):
    m = build_method(name, 24, {"device": "cpu", "epochs": 3, "batch_size": 64, **options}).fit(X)
    final = m.training_log_[-1]
    assert final.kind == "FINAL" and final.loss == m.final_loss_
    assert final.loss == pytest.approx(recomputed_loss(m, X, m.loss), rel=1e-5, abs=1e-7)
    codes = m.encode(X)
    assert final.values["dead_fraction"] == float((~(codes != 0).any(0)).mean())
    assert final.values["l0"] == pytest.approx(float((codes != 0).sum(1).mean()))
    parts = final.values["reconstruction"] + final.values["sparsity_penalty"] + final.values.get("reanimation", 0.0)
    assert final.loss == pytest.approx(parts, rel=1e-9)
    for entry in m.training_log_[:-1]:
        assert entry.kind == "EPOCH" and entry.learning_rate == pytest.approx(1e-3)
        assert {"reconstruction", "sparsity_penalty", "l0", "dead_fraction", "learning_rate"} <= set(entry.values)


def test_reanimation_pushes_dead_concepts_up(X):
    """Under MSE a concept that never fires gets no gradient (its encoder bias
    stays 0); the reanimation term raises the pre-activations of the concepts
    dead in a minibatch, so Adam moves their bias up."""
    base = {"device": "cpu", "epochs": 2, "batch_size": 64, "top_k": 1, "seed": 4}
    plain = build_method("SAE_TOPK", 48, base).fit(X)
    revived = build_method("SAE_TOPK", 48, {**base, "loss": "DEAD_NEURONS_REANIMATION"}).fit(X)
    dead = ~(plain.encode(X) != 0).any(0)
    assert dead.sum() >= 5
    assert (plain.b_enc.numpy()[dead] == 0).all()
    assert (revived.b_enc.numpy()[dead] > 0).all()
    assert "reanimation" not in plain.training_log_[0].values
    assert all("reanimation" in e.values for e in revived.training_log_)


@pytest.mark.parametrize("scheduler, factor", [
    ("CONSTANT", lambda s, t: 1.0),
    ("COSINE", lambda s, t: 0.5 * (1 + math.cos(math.pi * s / t))),
    ("LINEAR", lambda s, t: 1 - s / t),
    ("WARMUP", lambda s, t: min(1.0, (s + 1) / 5)),
])
def test_learning_rate_schedules(X, scheduler, factor):
    m = build_method("SAE_TOPK", 16, {"device": "cpu", "epochs": 2, "batch_size": 100, "top_k": 2,
                                      "learning_rate": 0.01, "scheduler": scheduler, "warmup_steps": 5,
                                      "log_every_steps": 1}).fit(X)
    steps = [e for e in m.training_log_ if e.kind == "STEP"]
    assert [e.step for e in steps] == list(range(1, 7))  # 300 rows / 100 per batch x 2 epochs
    for e in steps:
        assert e.learning_rate == pytest.approx(0.01 * factor(e.step - 1, 6))
        assert e.values["learning_rate"] == e.learning_rate
    epochs = [e for e in m.training_log_ if e.kind == "EPOCH"]
    assert [e.learning_rate for e in epochs] == [steps[2].learning_rate, steps[5].learning_rate]


def test_optimizers_weight_decay_and_clipping_change_the_fit(X):
    base = {"device": "cpu", "epochs": 2, "top_k": 2, "seed": 1, "learning_rate": 0.01}
    fits = {key: build_method("SAE_TOPK", 8, {**base, **extra}).fit(X).dictionary_ for key, extra in {
        "adam": {}, "adamw": {"optimizer": "ADAMW", "weight_decay": 0.5}, "sgd": {"optimizer": "SGD"},
        "clipped": {"clip_grad": 1e-4}}.items()}
    for key in ("adamw", "sgd", "clipped"):
        assert not np.allclose(fits[key], fits["adam"]), key
    # Adam steps are scale-free: clipping the gradient norm matters only for SGD's step size
    slow = build_method("SAE_TOPK", 8, {**base, "optimizer": "SGD", "clip_grad": 1e-6}).fit(X)
    init = build_method("SAE_TOPK", 8, {**base, "epochs": 1, "learning_rate": 1e-12}).fit(X)
    assert np.abs(slow.dictionary_ - init.dictionary_).max() < 1e-4


def test_enum_options_take_names_and_numbers():
    from xaimesh_contracts.v1 import concept_pb2

    m = build_method("SAE_TOPK", 4, {"device": "cpu", "top_k": 2, "loss": concept_pb2.SAE_LOSS_DEAD_NEURONS_REANIMATION,
                                     "optimizer": "adamw", "scheduler": "SAE_SCHEDULER_COSINE"})
    assert (m.loss, m.optimizer, m.scheduler) == ("DEAD_NEURONS_REANIMATION", "ADAMW", "COSINE")
    default = build_method("SAE_TOPK", 4, {"device": "cpu", "top_k": 2, "loss": 0, "optimizer": 0, "scheduler": 0})
    assert (default.loss, default.optimizer, default.scheduler) == ("MSE", "ADAM", "CONSTANT")


@pytest.mark.parametrize("options, field, words", [
    ({"loss": 99}, "options.loss", "unknown SAE loss"),
    ({"optimizer": "LBFGS"}, "options.optimizer", "ADAMW"),
    ({"scheduler": "STEP"}, "options.scheduler", "COSINE"),
    ({"clip_grad": -1.0}, "options.clip_grad", ">= 0"),
    ({"weight_decay": float("nan")}, "options.weight_decay", "finite"),
    ({"learning_rate": -0.1}, "options.learning_rate", ">= 0"),
    ({"scheduler": "WARMUP"}, "options.warmup_steps", "warmup_steps >= 1"),
    ({"log_every_steps": -2}, "options.log_every_steps", "between 0"),
])
def test_bad_training_options_are_refused(options, field, words):
    with pytest.raises(InvalidArgument) as err:
        build_method("SAE_TOPK", 8, {"device": "cpu", "top_k": 2, **options})
    assert err.value.field == field and words in str(err.value)


@pytest.mark.parametrize("prefixes", [[4, 2, 8], [0, 8], [4, 16], [4, 4, 8], ["a"]])
def test_bad_matryoshka_prefixes_are_refused(prefixes):
    with pytest.raises(InvalidArgument) as err:
        build_method("SAE_MATRYOSHKA", 8, {"device": "cpu", "top_k": 2, "matryoshka_prefixes": prefixes})
    assert err.value.field == "options.matryoshka_prefixes"


def test_default_matryoshka_prefixes():
    assert build_method("SAE_MATRYOSHKA", 64, {"device": "cpu"}).matryoshka_prefixes == [8, 16, 32, 64]
    assert build_method("SAE_MATRYOSHKA", 3, {"device": "cpu", "top_k": 1}).matryoshka_prefixes == [1, 3]


# ---------------------------------------------------------------- the block feed
@pytest.mark.parametrize("standardize", [False, True])
def test_fit_blocks_is_fit_when_fed_the_same_rows(X, standardize):
    opts = {"device": "cpu", "epochs": 3, "batch_size": 32, "top_k": 2, "seed": 7, "standardize": standardize}
    ref = build_method("SAE_TOPK", 16, opts).fit(X)
    rng = numpy_rng(7)
    source = ArraySource(X)

    def blocks(epoch):  # what fit(X) reads, handed over block by block (odd sizes)
        if epoch == 0:
            return (X[i:i + 77] for i in range(0, len(X), 77))
        rows = np.concatenate(list(iter_shuffled_batches(source, 32, rng)))
        return (rows[i:i + 45] for i in range(0, len(rows), 45))

    fed = build_method("SAE_TOPK", 16, opts).fit_blocks(blocks, X.shape[1])
    np.testing.assert_allclose(fed.dictionary_, ref.dictionary_, atol=1e-5)
    assert fed.final_loss_ == pytest.approx(ref.final_loss_, rel=1e-5)
    np.testing.assert_allclose(fed.reconstruct(X), ref.reconstruct(X), atol=1e-4)
    assert [e.kind for e in fed.training_log_] == [e.kind for e in ref.training_log_]


def test_fit_blocks_refuses_bad_blocks(X):
    m = build_method("SAE_TOPK", 4, {"device": "cpu", "top_k": 2, "epochs": 1})
    with pytest.raises(InvalidArgument, match=r"expected \[rows, 12\]"):
        m.fit_blocks(lambda epoch: iter([X, X[:, :5]]), 12)
    with pytest.raises(InvalidArgument, match="0 rows"):
        m.fit_blocks(lambda epoch: iter([]), 12)
    with pytest.raises(InvalidArgument, match=r"expected \[rows, 12\]"):
        build_method("SAE_TOPK", 4, {"device": "cpu", "top_k": 2, "standardize": True, "epochs": 1}).fit_blocks(
            lambda epoch: iter([X] if epoch == 0 else [X[:, :5]]), 12)


def test_the_stored_log_keeps_the_final_entry(X, tmp_path, monkeypatch):
    from xaimesh_concept import workspace

    monkeypatch.setattr(workspace, "MAX_STORED_LOG", 4)
    ws = workspace.ConceptWorkspace(str(tmp_path))
    aset = ws.store.put_activation_set(X)
    streamed = []
    info = ws.fit(aset.name, "SAE_TOPK", 8, {"device": "cpu", "top_k": 2, "epochs": 2, "batch_size": 30,
                                             "log_every_steps": 1}, progress=streamed.append)
    kinds = [e["kind"] for e in info.training_log]
    assert kinds == ["STEP"] * 4 + ["FINAL"] and info.training_log[-1]["loss"] == pytest.approx(info.final_loss)
    assert [e.kind for e in streamed if not e.progress_only].count("STEP") == 20  # all streamed
