"""MpSAE / Matryoshka and the SAE training options and log through the SDK
and an in-process concept-service (the fixture of test_concept_server_sdk)."""

from __future__ import annotations

import numpy as np
import pytest

from test_concept_server_sdk import mesh  # noqa: F401  (fixture)


@pytest.fixture()
def rows():
    rng = np.random.default_rng(3)
    return (rng.standard_normal((200, 8)) @ rng.standard_normal((8, 8))).astype(np.float32)


def test_new_saes_fit_with_training_options_and_stream_their_log(mesh, rows):  # noqa: F811
    from xaimesh.concepts import ConceptExplainer, MatryoshkaSAEConcepts, MpSAEConcepts
    from xaimesh_contracts.v1 import concept_pb2

    mp = MpSAEConcepts(mesh, nb_concepts=12, device="cpu", k=3, nb_epochs=3, lr=0.01, batch_size=50,
                       scheduler="cosine", optimizer="adamw", weight_decay=0.01, criterion="dead_neurons_reanimation",
                       clip_grad=1.0, log_every_steps=2)
    mp.fit(rows)
    log = mp.training_log
    assert log is mp.training_log_
    assert [e["kind"] for e in log] == ["step", "step", "epoch"] * 3 + ["final"]  # 4 steps an epoch
    final = log[-1]
    codes = mp.encode_activations(rows)
    recon = mp.decode_concepts(codes)
    mse = float(((recon.astype(np.float64) - rows) ** 2).mean())
    assert final["values"]["reconstruction"] == pytest.approx(mse, rel=1e-4)
    assert final["loss"] == pytest.approx(mp.final_loss_, rel=1e-6)
    assert final["values"]["dead_fraction"] == pytest.approx(float((~(codes != 0).any(0)).mean()))
    assert "reanimation" in final["values"] and ((codes != 0).sum(1) <= 3).all()
    # cosine schedule: 12 steps, the last epoch's entry has the last step's rate
    assert log[-2]["learning_rate"] == pytest.approx(0.01 * 0.5 * (1 + np.cos(np.pi * 11 / 12)))
    used = mp.options_
    assert (used["loss"], used["optimizer"], used["scheduler"], used["top_k"]) == (
        "DEAD_NEURONS_REANIMATION", "ADAMW", "COSINE", 3)

    # a loaded model is an MpSAEConcepts, and refits with the stored (named) options
    again = ConceptExplainer.load(mesh, mp.concept_model_)
    assert isinstance(again, MpSAEConcepts) and again.options["scheduler"] == "COSINE"
    assert again.fit(rows, show_progress=False).is_fitted
    np.testing.assert_allclose(again.get_dictionary(), mp.get_dictionary(), atol=1e-6)

    mat = MatryoshkaSAEConcepts(mesh, nb_concepts=8, device="cpu", top_k=2, epochs=2, matryoshka_prefixes=[2, 4])
    mat.fit(rows)
    assert mat.options_["matryoshka_prefixes"] == [2, 4, 8]
    assert {"mse_prefix_2", "mse_prefix_4", "mse_prefix_8"} <= set(mat.training_log[-1]["values"])

    # the progress events say the epoch and the loss
    progress = []
    request = concept_pb2.FitConceptModelRequest(activation_set=mat.activation_set_,
                                                 method=concept_pb2.CONCEPT_METHOD_SAE_TOPK, nb_concepts=4,
                                                 options=concept_pb2.ConceptFitOptions(device="cpu", top_k=2, epochs=2))
    list(mat._client().stream("FitConceptModel", request, on_progress=progress.append, show_progress=False))
    messages = [p.message for p in progress if p.stage == "training"]
    assert messages[0].startswith("epoch 1/2 loss=") and messages[1].startswith("epoch 2/2 loss=")


def test_bad_training_options_answer_clearly(mesh, rows):  # noqa: F811
    from xaimesh.concepts import MatryoshkaSAEConcepts, TopKSAEConcepts
    from xaimesh.errors import InvalidArgumentError

    with pytest.raises(ValueError, match="option scheduler must be one of"):
        TopKSAEConcepts(mesh, nb_concepts=4, scheduler="exponential")
    with pytest.raises(TypeError, match="list of integers"):
        MatryoshkaSAEConcepts(mesh, nb_concepts=4, matryoshka_prefixes="2,4")
    with pytest.raises(TypeError, match="does not take option 'matryoshka_prefixes'"):
        TopKSAEConcepts(mesh, nb_concepts=4, matryoshka_prefixes=[2])
    with pytest.raises(InvalidArgumentError, match="warmup_steps >= 1"):
        TopKSAEConcepts(mesh, nb_concepts=4, device="cpu", top_k=2, scheduler="warmup").fit(rows)
    with pytest.raises(InvalidArgumentError, match="matryoshka_prefixes must increase"):
        MatryoshkaSAEConcepts(mesh, nb_concepts=4, device="cpu", top_k=2, matryoshka_prefixes=[3, 2]).fit(rows)


def test_interpretos_fit_arguments_map_to_the_training_options(mesh, rows):  # noqa: F811
    import torch

    from xaimesh.errors import InvalidArgumentError
    from xaimesh.interpreto.concepts import (Cockatiel, DeadNeuronsReanimationLoss, MpSAEConcepts, SAELossClasses,
                                             TopKSAEConcepts)

    explainer = MpSAEConcepts(mesh, nb_concepts=6, k=2, device="cuda")
    log = explainer.fit(torch.from_numpy(rows), criterion=DeadNeuronsReanimationLoss, optimizer_class=torch.optim.SGD,
                        optimizer_kwargs={"weight_decay": 0.01}, scheduler_class=torch.optim.lr_scheduler.CosineAnnealingLR,
                        lr=0.01, nb_epochs=2, batch_size=100, clip_grad=1.0, monitoring=1, use_amp=False)
    used = explainer.native.options_
    assert (used["loss"], used["optimizer"], used["scheduler"], used["weight_decay"], used["clip_grad"]) == (
        "DEAD_NEURONS_REANIMATION", "SGD", "COSINE", pytest.approx(0.01), 1.0)
    assert set(log) == {"avg_loss", "z_sparsity", "dead_features", "lr"} and len(log["avg_loss"]) == 2
    assert log["lr"][-1] == pytest.approx(0.01 * 0.5 * (1 + np.cos(np.pi * 3 / 4)))  # 4 steps, the last
    codes = explainer.activations_to_concepts(torch.from_numpy(rows))
    assert codes.shape == (len(rows), 6) and ((codes != 0).sum(1) <= 2).all()

    topk = TopKSAEConcepts(mesh, nb_concepts=6, k=2)
    topk.fit(rows, criterion=SAELossClasses.MSE.value, nb_epochs=1)
    assert topk.native.options_["loss"] == "MSE"
    for bad, words in (({"criterion": torch.nn.MSELoss}, "MSELoss or DeadNeuronsReanimationLoss"),
                       ({"optimizer_class": torch.optim.RMSprop}, "RMSprop is not available"),
                       ({"optimizer_kwargs": {"momentum": 0.5}}, "'momentum' cannot be set"),
                       ({"scheduler_class": torch.optim.lr_scheduler.StepLR}, "StepLR is not available"),
                       ({"scheduler_class": torch.optim.lr_scheduler.CosineAnnealingLR,
                         "scheduler_kwargs": {"T_max": 3}}, "take no arguments")):
        with pytest.raises(InvalidArgumentError, match=words):
            topk.fit(rows, **bad)
    cockatiel = Cockatiel(mesh, nb_concepts=3, force_relu=True)
    assert cockatiel.fit(rows, max_iter=20) is None and cockatiel.get_dictionary().shape == (3, 8)


def test_interpretos_reconstruction_errors_and_stability_matchings(mesh, rows):  # noqa: F811
    """xaimesh.interpreto's ReconstructionError with each of interpreto's
    distances, and Stability with both matchings, against the formulas
    evaluated by hand on the fetched arrays."""
    import functools

    import torch

    from xaimesh.interpreto.commons.distances import DistanceFunctions, lp_distance
    from xaimesh.interpreto.concepts import PCAConcepts
    from xaimesh.interpreto.concepts.metrics import (ConceptMatchingAlgorithm, ReconstructionError,
                                                     ReconstructionSpaces, Stability)

    explainer = PCAConcepts(mesh, nb_concepts=3)
    explainer.fit(torch.from_numpy(rows))
    X = rows.astype(np.float64)
    R = explainer.concepts_to_activations(explainer.activations_to_concepts(torch.from_numpy(rows))).double().numpy()
    diff = X - R
    expected = {
        DistanceFunctions.EUCLIDEAN: np.linalg.norm(diff),
        DistanceFunctions.AVERAGE_EUCLIDEAN: np.linalg.norm(diff, axis=1).mean(),
        DistanceFunctions.WASSERSTEIN_1D: np.abs(np.sort(X, 0) - np.sort(R, 0)).mean(),
        DistanceFunctions.COSINE: 1 - (X * R).sum() / (np.linalg.norm(X) * np.linalg.norm(R)),
        DistanceFunctions.LP: np.linalg.norm(diff),
        DistanceFunctions.AVERAGE_LP: np.linalg.norm(diff, axis=1).mean(),
        functools.partial(lp_distance, p=1): np.abs(diff).sum(),
        functools.partial(DistanceFunctions.AVERAGE_LP, p=1): np.abs(diff).sum(1).mean(),
        lambda a, b: (a - b).abs().max(): np.abs(diff).max(),  # any callable: on the fetched arrays
    }
    space = ReconstructionSpaces.LATENT_ACTIVATIONS
    for distance, value in expected.items():
        got = ReconstructionError(explainer, space, distance).compute(torch.from_numpy(rows))
        assert got == pytest.approx(value, rel=1e-4), distance
    with pytest.raises(ValueError, match="probability distributions"):
        ReconstructionError(explainer, space, DistanceFunctions.KL).compute(torch.from_numpy(rows))
    with pytest.raises(NotImplementedError, match="LATENT_ACTIVATIONS"):
        ReconstructionError(explainer, ReconstructionSpaces.LOGITS, DistanceFunctions.EUCLIDEAN).compute(rows)

    a = torch.eye(3)
    b = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 1.0, 0.0]])  # a permutation, a sign flip, a blend
    c = 1 / np.sqrt(2)
    # signed cosines: a -> b: e0 -> {0, 0, c}, e1 -> {1, 0, c}, e2 -> {0, -1, 0}
    assert Stability(a, b, matching_algorithm=ConceptMatchingAlgorithm.COSINE_MAXIMUM).compute() == pytest.approx(
        (c + 1 + 0) / 3)
    # one-to-one, best total: e1 -> b0 (1), e0 -> b1 (0), e2 -> b2 (0); the sign-flipped atom counts -1
    assert Stability(a, b).compute() == pytest.approx(1 / 3, abs=1e-6)
    assert Stability(explainer).compute() == pytest.approx(1.0)  # one explainer: compared with itself
    with pytest.raises(ValueError, match="COSINE_MAXIMUM"):
        Stability(a, b, matching_algorithm="maximum")


def test_native_lp_distances_and_activity_threshold_on_the_wire(mesh, rows):  # noqa: F811
    from xaimesh.concepts import PCAConcepts
    from xaimesh.concepts.metrics import (AverageLpDistance, DeadConcepts, L0, LpDistance, ReconstructionError,
                                          Sparsity, compute_metrics)
    from xaimesh.errors import InvalidArgumentError

    pca = PCAConcepts(mesh, nb_concepts=3).fit(rows)
    codes = pca.encode_activations(rows)
    diff = rows.astype(np.float64) - pca.decode_concepts(codes)
    assert LpDistance(pca, p=1).compute(rows) == pytest.approx(np.abs(diff).sum(), rel=1e-5)
    assert AverageLpDistance(pca, p=3).compute(rows) == pytest.approx(
        ((np.abs(diff) ** 3).sum(1) ** (1 / 3)).mean(), rel=1e-5)
    assert ReconstructionError(pca, "lp", p=1).compute(rows) == pytest.approx(np.abs(diff).sum(), rel=1e-5)
    eps = float(np.median(np.abs(codes)))
    assert Sparsity(pca, epsilon=eps).compute(rows) == pytest.approx(np.mean(np.abs(codes) > eps))
    assert L0(pca, eps).compute(rows) == pytest.approx((np.abs(codes) > eps).sum(1).mean())
    assert DeadConcepts(pca, epsilon=1e9).compute(rows) == 1.0
    both = compute_metrics(pca, rows, ["LP", "SPARSITY"], p=1, epsilon=eps)
    assert both["LP"] == pytest.approx(np.abs(diff).sum(), rel=1e-5)
    with pytest.raises(InvalidArgumentError, match="lp_p must be a finite number >= 1"):
        LpDistance(pca, p=0.5).compute(rows)
    with pytest.raises(InvalidArgumentError, match="activation_epsilon"):
        Sparsity(pca, epsilon=-1).compute(rows)
