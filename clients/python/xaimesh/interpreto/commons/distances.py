"""interpreto.commons.distances over the mesh: interpreto 0.5.2's distance
functions, with its definitions (docs/concept-metrics.md), written here.

``ReconstructionError`` (xaimesh.interpreto.concepts.metrics) sends
EUCLIDEAN, AVERAGE_EUCLIDEAN, WASSERSTEIN_1D, COSINE, LP and AVERAGE_LP to
the concept-service (the native metrics of the same definitions) and
computes KL, or any other callable ``f(x1, x2)``, on the activations and
their reconstructions fetched from the service.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

__all__ = ["DistanceFunctions", "average_euclidean_distance", "average_lp_distance", "cosine_distance",
           "cosine_similarity", "euclidean_distance", "kl_divergence", "lp_distance", "wasserstein_1d_distance"]


def _same_shape(x1: Any, x2: Any) -> None:
    if x1.shape != x2.shape:
        raise ValueError(f"Shapes of x1 and x2 must match. Got {tuple(x1.shape)}, {tuple(x2.shape)}.")


def wasserstein_1d_distance(x1: Any, x2: Any, _: Any = None) -> Any:
    """Mean over the columns of the 1-D Wasserstein-1 distance between the
    columns' empirical distributions (sorted values compared rank by rank)."""
    _same_shape(x1, x2)
    if x1.dim() != 2:
        raise ValueError(f"x1 and x2 must be 2D tensors. Got {x1.dim()}D tensors.")
    return (x1.sort(dim=0).values - x2.sort(dim=0).values).abs().mean()


def lp_distance(x1: Any, x2: Any, dim: Any = None, *, p: float = 2.0) -> Any:
    """||x1 - x2||_p over ``dim`` (every element when None)."""
    _same_shape(x1, x2)
    return (x1 - x2).norm(p=p, dim=dim)


def euclidean_distance(x1: Any, x2: Any, dim: Any = None) -> Any:
    return lp_distance(x1, x2, dim, p=2.0)


def average_lp_distance(x1: Any, x2: Any, p: float = 2) -> Any:
    """Mean over the rows (first dimension) of the rows' Lp distances."""
    _same_shape(x1, x2)
    return lp_distance(x1, x2, dim=tuple(range(1, x1.dim())), p=p).mean()


def average_euclidean_distance(x1: Any, x2: Any) -> Any:
    return average_lp_distance(x1, x2, p=2)


def kl_divergence(x1: Any, x2: Any, dim: Any = None) -> Any:
    """sum x1 * log(x1 / x2); defined for values in [0, 1] only (probabilities)."""
    _same_shape(x1, x2)
    if bool((x1 < 0).any() or (x2 < 0).any() or (x1 > 1).any() or (x2 > 1).any()):
        raise ValueError("KL divergence is undefined for negative values or values > 1: "
                         "it is only defined on probability distributions.")
    return (x1 * (x1 / x2).log()).sum(dim=dim)


def cosine_similarity(x1: Any, x2: Any, dim: Any = None) -> Any:
    """<x1, x2> / (||x1|| ||x2||) over ``dim`` (every element when None)."""
    _same_shape(x1, x2)
    return (x1 * x2).sum(dim=dim) / (x1.norm(p=2, dim=dim) * x2.norm(p=2, dim=dim))


def cosine_distance(x1: Any, x2: Any, dim: Any = None) -> Any:
    return 1 - cosine_similarity(x1, x2, dim=dim)


class DistanceFunctions(Enum):
    """As in interpreto, the staticmethod values make the attributes the
    functions themselves (``DistanceFunctions.LP`` is ``lp_distance``)."""

    WASSERSTEIN_1D = staticmethod(wasserstein_1d_distance)
    EUCLIDEAN = staticmethod(euclidean_distance)
    AVERAGE_EUCLIDEAN = staticmethod(average_euclidean_distance)
    LP = staticmethod(lp_distance)
    AVERAGE_LP = staticmethod(average_lp_distance)
    KL = staticmethod(kl_divergence)
    COSINE = staticmethod(cosine_distance)
