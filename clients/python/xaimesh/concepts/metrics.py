"""Concept metrics, computed by the concept-service where the activations are.

    from xaimesh.concepts.metrics import MSE, Sparsity, Stability
    MSE(concepts).compute(activations)             # a float
    Sparsity(concepts).compute(activations)
    Stability([concepts_a, concepts_b]).compute()  # dictionaries only

``activations``: an ActivationSet handle (or ``{split_point: handle}``), or
a numpy / torch array [rows, hidden] (sent along, or uploaded for the time
of the call when large).

Definitions (X: activations, C = encode(X), X_hat = decode(C); n rows, d
features, k concepts):

================== ==========================================================
MSE                mean of (X - X_hat)^2 over the n * d elements
FrobeniusNorm      ||X - X_hat||_F (the reference toolkit's "MSE")
ExplainedVariance  1 - ||X - X_hat||^2 / ||X - mean(X)||^2
Sparsity           fraction of active codes (|c| > epsilon, default 0), / (n * k)
SparsityRatio      Sparsity divided by the fraction of non-zero activations
L0                 mean number of non-zero codes per row
DeadConcepts       fraction of concepts zero on every row
FID                mean over features of the 1-D Wasserstein distance between
                   X[:, j] and X_hat[:, j]
AverageEuclidean   mean over rows of ||x - x_hat||_2
CosineDistance     1 - <X, X_hat>_F / (||X||_F ||X_hat||_F)
LpDistance         (sum |X - X_hat|^p)^(1/p) over every element (p >= 1)
AverageLpDistance  mean over rows of ||x - x_hat||_p
ReconstructionError one of the reconstruction distances by name, as the
                   reference toolkit's ReconstructionError(distance_function)
Stability          Hungarian-matched mean |cosine| between the dictionaries of
                   several explainers (1 = the same concepts);
                   ``matching="maximum"``: each concept to its best match
================== ==========================================================

Every definition, with the reference toolkit's: docs/concept-metrics.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from xaimesh.concepts import _rpc
from xaimesh_contracts.v1 import concept_pb2

__all__ = ["FID", "L0", "MSE", "AverageEuclidean", "AverageLpDistance", "ConceptMetric", "CosineDistance",
           "DeadConcepts", "ExplainedVariance", "FrobeniusNorm", "LpDistance", "ReconstructionError", "Sparsity",
           "SparsityRatio", "Stability", "compute_metrics"]

_BY_NAME = {
    "MSE": concept_pb2.CONCEPT_METRIC_MSE, "FROBENIUS": concept_pb2.CONCEPT_METRIC_FROBENIUS,
    "EXPLAINED_VARIANCE": concept_pb2.CONCEPT_METRIC_EXPLAINED_VARIANCE,
    "SPARSITY": concept_pb2.CONCEPT_METRIC_SPARSITY, "SPARSITY_RATIO": concept_pb2.CONCEPT_METRIC_SPARSITY_RATIO,
    "L0": concept_pb2.CONCEPT_METRIC_L0, "DEAD_CONCEPTS": concept_pb2.CONCEPT_METRIC_DEAD_CONCEPTS,
    "FID": concept_pb2.CONCEPT_METRIC_FID, "STABILITY": concept_pb2.CONCEPT_METRIC_STABILITY,
    "AVERAGE_EUCLIDEAN": concept_pb2.CONCEPT_METRIC_AVERAGE_EUCLIDEAN,
    "COSINE_DISTANCE": concept_pb2.CONCEPT_METRIC_COSINE_DISTANCE,
    "STABILITY_MAX": concept_pb2.CONCEPT_METRIC_STABILITY_MAX,
    "LP": concept_pb2.CONCEPT_METRIC_LP, "AVERAGE_LP": concept_pb2.CONCEPT_METRIC_AVERAGE_LP,
}

#: ReconstructionError's distances (the reference toolkit's DistanceFunctions names) -> metric.
_DISTANCES = {
    "euclidean": concept_pb2.CONCEPT_METRIC_FROBENIUS,
    "average_euclidean": concept_pb2.CONCEPT_METRIC_AVERAGE_EUCLIDEAN,
    "wasserstein_1d": concept_pb2.CONCEPT_METRIC_FID,
    "cosine": concept_pb2.CONCEPT_METRIC_COSINE_DISTANCE,
    "lp": concept_pb2.CONCEPT_METRIC_LP,
    "average_lp": concept_pb2.CONCEPT_METRIC_AVERAGE_LP,
}
_MATCHINGS = {"hungarian": concept_pb2.CONCEPT_METRIC_STABILITY, "maximum": concept_pb2.CONCEPT_METRIC_STABILITY_MAX}


def _metric_code(metric: Any) -> int:
    if isinstance(metric, type) and issubclass(metric, ConceptMetric):
        return metric.metric
    if isinstance(metric, int):
        return metric
    key = str(metric).strip().upper().removeprefix("CONCEPT_METRIC_")
    if key not in _BY_NAME:
        raise ValueError(f"unknown concept metric {metric!r}; choose among {list(_BY_NAME)}")
    return _BY_NAME[key]


def _compute(explainers: list, activations: Any, metrics: list[int], *, show_progress: bool,
             timeout: float | None, p: float = 2.0, epsilon: float = 0.0) -> list[concept_pb2.ConceptMetricValue]:
    if not explainers:
        raise ValueError("give at least one concept explainer")
    names = []
    for e in explainers:
        if isinstance(e, str):
            names.append(e)
            continue
        if not getattr(e, "is_fitted", False):
            raise RuntimeError(f"{e!r} is not fitted; call fit() first")
        names.append(e.concept_model_)
    first = next((e for e in explainers if not isinstance(e, str)), None)
    if first is None:
        raise ValueError("give concept explainers, not only model names")
    mesh = first.mesh
    client = _rpc.concept_client(mesh)

    def run(source):
        request = concept_pb2.ComputeConceptMetricsRequest(concept_models=names, metrics=metrics, lp_p=p,
                                                           activation_epsilon=epsilon)
        if source is not None:
            request.source.CopyFrom(source)
        for event in client.stream("ComputeConceptMetrics", request, timeout=timeout, show_progress=show_progress,
                                   description="concept metrics"):
            if event.WhichOneof("event") == "result":
                return list(event.result.values)
        raise RuntimeError("the concept-service ended the call without the metrics")

    if activations is None:
        return run(None)
    with _rpc.activation_source(mesh, activations, getattr(first, "split_point", None), timeout=timeout) as (src, _):
        return run(src)


class ConceptMetric:
    """``Metric(concept_explainer).compute(activations) -> float``."""

    metric: ClassVar[int] = concept_pb2.CONCEPT_METRIC_UNSPECIFIED
    #: The request's lp_p / activation_epsilon (set by the metrics that take them).
    p: float = 2.0
    epsilon: float = 0.0

    def __init__(self, concept_explainer: Any, *, show_progress: bool = True, timeout: float | None = None):
        self.concept_explainer = concept_explainer
        self.show_progress = show_progress
        self.timeout = timeout

    def compute(self, activations: Any) -> float:
        values = _compute([self.concept_explainer], activations, [self.metric], show_progress=self.show_progress,
                          timeout=self.timeout, p=self.p, epsilon=self.epsilon)
        return float(values[0].value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.concept_explainer!r})"


class MSE(ConceptMetric):
    """Mean squared reconstruction error per element."""

    metric = concept_pb2.CONCEPT_METRIC_MSE


class FrobeniusNorm(ConceptMetric):
    """||X - X_hat||_F, un-normalised (the reference toolkit's "MSE")."""

    metric = concept_pb2.CONCEPT_METRIC_FROBENIUS


class ExplainedVariance(ConceptMetric):
    """1 - unexplained variance fraction of the reconstructions."""

    metric = concept_pb2.CONCEPT_METRIC_EXPLAINED_VARIANCE


class _ActivityMetric(ConceptMetric):
    """A metric of which codes are active: |c| > ``epsilon`` (0: non-zero)."""

    def __init__(self, concept_explainer: Any, epsilon: float = 0.0, **kwargs: Any):
        super().__init__(concept_explainer, **kwargs)
        self.epsilon = float(epsilon)


class Sparsity(_ActivityMetric):
    """Fraction of active concept activations."""

    metric = concept_pb2.CONCEPT_METRIC_SPARSITY


class SparsityRatio(_ActivityMetric):
    """Sparsity of the codes divided by the density of the activations."""

    metric = concept_pb2.CONCEPT_METRIC_SPARSITY_RATIO


class L0(_ActivityMetric):
    """Mean number of active concepts per row."""

    metric = concept_pb2.CONCEPT_METRIC_L0


class DeadConcepts(_ActivityMetric):
    """Fraction of concepts never active on the rows."""

    metric = concept_pb2.CONCEPT_METRIC_DEAD_CONCEPTS


class FID(ConceptMetric):
    """Mean per-feature 1-D Wasserstein distance between activations and reconstructions."""

    metric = concept_pb2.CONCEPT_METRIC_FID


class AverageEuclidean(ConceptMetric):
    """Mean over rows of the Euclidean norm of the reconstruction error."""

    metric = concept_pb2.CONCEPT_METRIC_AVERAGE_EUCLIDEAN


class CosineDistance(ConceptMetric):
    """1 - cosine between the activations and their reconstructions (as flat vectors)."""

    metric = concept_pb2.CONCEPT_METRIC_COSINE_DISTANCE


class _PMetric(ConceptMetric):
    def __init__(self, concept_explainer: Any, p: float = 2.0, **kwargs: Any):
        super().__init__(concept_explainer, **kwargs)
        self.p = float(p)


class LpDistance(_PMetric):
    """(sum |X - X_hat|^p)^(1/p) over every element, p >= 1."""

    metric = concept_pb2.CONCEPT_METRIC_LP


class AverageLpDistance(_PMetric):
    """Mean over rows of ||x - x_hat||_p, p >= 1."""

    metric = concept_pb2.CONCEPT_METRIC_AVERAGE_LP


class ReconstructionError(_PMetric):
    """The reconstruction distance named by ``distance``: "euclidean"
    (||X - X_hat||_F, FrobeniusNorm), "average_euclidean", "wasserstein_1d"
    (FID), "cosine" (CosineDistance), "lp" or "average_lp" (with ``p``) —
    the reference toolkit's
    ``ReconstructionError(explainer, LATENT_ACTIVATIONS, distance_function)``."""

    def __init__(self, concept_explainer: Any, distance: str = "euclidean", p: float = 2.0, **kwargs: Any):
        key = str(getattr(distance, "name", distance)).lower()
        if key not in _DISTANCES:
            raise ValueError(f"unknown distance {distance!r}; choose among {list(_DISTANCES)}")
        super().__init__(concept_explainer, p, **kwargs)
        self.distance = key
        self.metric = _DISTANCES[key]


class Stability:
    """Similarity of the dictionaries of several explainers (>= 2):
    ``Stability([a, b]).compute()`` or ``Stability(a, b).compute()``;
    ``matching``: "hungarian" (one-to-one, default) or "maximum" (each
    concept of the first to its most similar concept of the second).
    ``activations`` is accepted and ignored (the metric compares
    dictionaries only)."""

    metric = concept_pb2.CONCEPT_METRIC_STABILITY

    def __init__(self, *concept_explainers: Any, matching: str = "hungarian", show_progress: bool = True,
                 timeout: float | None = None):
        key = str(getattr(matching, "name", matching)).lower().removeprefix("cosine_")
        if key not in _MATCHINGS:
            raise ValueError(f"unknown matching {matching!r}; choose 'hungarian' or 'maximum'")
        self.metric = _MATCHINGS[key]
        if len(concept_explainers) == 1 and isinstance(concept_explainers[0], (list, tuple)):
            concept_explainers = tuple(concept_explainers[0])
        if len(concept_explainers) < 2:
            raise ValueError("Stability compares at least 2 concept explainers")
        self.concept_explainers = list(concept_explainers)
        self.show_progress = show_progress
        self.timeout = timeout

    def compute(self, activations: Any = None) -> float:
        values = _compute(self.concept_explainers, None, [self.metric], show_progress=self.show_progress,
                          timeout=self.timeout)
        return float(values[0].value)


def compute_metrics(concept_explainer: Any, activations: Any, metrics: Iterable[Any] | None = None, *,
                    show_progress: bool = True, timeout: float | None = None, p: float = 2.0,
                    epsilon: float = 0.0) -> dict[str, float]:
    """Several metrics in one pass: ``{"MSE": ..., "SPARSITY": ...}`` (every
    per-model metric when ``metrics`` is None; LP / AVERAGE_LP only when
    named). ``p``: of LP / AVERAGE_LP; ``epsilon``: codes with |c| <=
    epsilon count as inactive."""
    codes = [_metric_code(m) for m in (metrics or [])]
    values = _compute([concept_explainer], activations, codes, show_progress=show_progress, timeout=timeout,
                      p=p, epsilon=epsilon)
    return {concept_pb2.ConceptMetric.Name(v.metric).removeprefix("CONCEPT_METRIC_"): float(v.value)
            for v in values}
