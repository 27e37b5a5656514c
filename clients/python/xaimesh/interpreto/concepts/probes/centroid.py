"""interpreto.concepts.probes.centroid over the mesh: the concept-service's
CENTROID_PROBE (docs/probes.md)."""

from __future__ import annotations

from typing import Any

from xaimesh.concepts import explainers as native

from ..._compat import refuse
from .base import Probe
from .bias_calibrators import BiasCalibrator

__all__ = ["BaseCentroidProbe", "CosineCentroidProbe", "DiagonalMahalanobisCentroidProbe", "DotProductCentroidProbe",
           "SVDDCentroidProbe", "SqL2CentroidProbe"]


class BaseCentroidProbe(Probe):
    native_class = native.CentroidProbe
    metric = ""

    def __init__(self, normalization: Any = None, bias_calibrator: BiasCalibrator | None = None,
                 eps: float = 1e-8, **settings: Any) -> None:
        if float(eps) != 1e-8:
            raise refuse(type(self).__name__, "eps", "the concept-service's floor is 1e-8")
        super().__init__(normalization=normalization, bias_calibrator=bias_calibrator, metric=self.metric,
                         **settings)


class DotProductCentroidProbe(BaseCentroidProbe):
    metric = "dot_product"


class CosineCentroidProbe(BaseCentroidProbe):
    metric = "cosine"


class SqL2CentroidProbe(BaseCentroidProbe):
    metric = "sq_l2"


class DiagonalMahalanobisCentroidProbe(BaseCentroidProbe):
    """Normalisation None means Standardization(), as interpreto's."""

    metric = "diagonal_mahalanobis"

    def __init__(self, normalization: Any = None, bias_calibrator: BiasCalibrator | None = None, eps: float = 1e-8,
                 shrinkage: float = 1.0) -> None:
        if not 0.0 <= shrinkage <= 1.0:
            raise AssertionError("shrinkage must be in [0.0, 1.0]")  # interpreto asserts
        super().__init__(normalization, bias_calibrator, eps, shrinkage=float(shrinkage))


class SVDDCentroidProbe(BaseCentroidProbe):
    metric = "svdd"

    def __init__(self, lr: float = 5e-2, max_iter: int = 20, C: float = 1.0, l2: float = 0.0,  # noqa: N803
                 normalization: Any = None, eps: float = 1e-8) -> None:
        super().__init__(normalization, None, eps, learning_rate=float(lr), max_iterations=int(max_iter),
                         svdd_c=float(C), l2=float(l2))
