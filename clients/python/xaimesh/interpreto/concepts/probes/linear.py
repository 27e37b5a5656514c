"""interpreto.concepts.probes.linear over the mesh (docs/probes.md: the
regression targets are -1 / +1 where interpreto's are 0 / 1)."""

from __future__ import annotations

from typing import Any

from xaimesh.concepts import explainers as native

from ..._compat import refuse
from .base import Probe
from .bias_calibrators import BiasCalibrator, prevalence_bias

__all__ = ["LinearRegressionProbe", "LinearSVMProbe", "LogisticRegressionProbe", "MeansDiffProbe"]


class _LinearProbe(Probe):
    native_class = native.LinearProbe
    method = ""

    def __init__(self, *, normalization: Any = None, bias_calibrator: BiasCalibrator | None = None,
                 **settings: Any) -> None:
        super().__init__(normalization=normalization, bias_calibrator=bias_calibrator, method=self.method, **settings)


class LinearRegressionProbe(_LinearProbe):
    method = "linear_regression"

    def __init__(self, l2: float = 0.0, bias_calibrator: BiasCalibrator | None = None,
                 normalization: Any = None) -> None:
        super().__init__(normalization=normalization, bias_calibrator=bias_calibrator, l2=float(l2))


class MeansDiffProbe(_LinearProbe):
    method = "means_diff"

    def __init__(self, bias_calibrator: BiasCalibrator | None = None, normalization: Any = None,
                 eps: float = 1e-8) -> None:
        if float(eps) != 1e-8:
            raise refuse("MeansDiffProbe", "eps", "the concept-service's floor is 1e-8")
        super().__init__(normalization=normalization, bias_calibrator=bias_calibrator)


class _GradientProbe(_LinearProbe):
    def __init__(self, lr: float = 1e-2, max_iter: int = 20, l2: float = 0.0, init_from_means_diff: bool = True,
                 init_bias_calibrator: BiasCalibrator | None = prevalence_bias, normalization: Any = None) -> None:
        who = type(self).__name__
        if not init_from_means_diff:
            raise refuse(who, "init_from_means_diff", "the concept-service starts from the means difference")
        if init_bias_calibrator is not prevalence_bias:
            raise refuse(who, "init_bias_calibrator", "the concept-service starts from the prevalence intercept")
        super().__init__(normalization=normalization, l2=float(l2), learning_rate=float(lr),
                         max_iterations=int(max_iter))


class LogisticRegressionProbe(_GradientProbe):
    method = "logistic_regression"


class LinearSVMProbe(_GradientProbe):
    method = "linear_svm"
