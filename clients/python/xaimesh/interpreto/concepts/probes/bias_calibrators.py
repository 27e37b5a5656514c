"""interpreto.concepts.probes.bias_calibrators over the mesh: the names of
the calibrations the concept-service computes (docs/probes.md). Pass them
as `bias_calibrator=`; calling one here is refused (the scores live in the
concept-service)."""

from __future__ import annotations

from typing import Any

from ..._compat import refuse

__all__ = ["BiasCalibrator", "bce_bias", "fpr_bias", "lda_shared_var_bias", "midpoint_bias", "prevalence_bias"]


class BiasCalibrator:
    """A calibration, named by FitProbe's BiasCalibration short name."""

    def __init__(self, name: str, native_name: str) -> None:
        self.__name__ = name
        self.native_name = native_name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise refuse(self.__name__, "scores", "the concept-service calibrates the bias when it fits the probe; pass "
                     f"bias_calibrator={self.__name__} to the probe")

    def __repr__(self) -> str:
        return self.__name__


prevalence_bias = BiasCalibrator("prevalence_bias", "prevalence")
midpoint_bias = BiasCalibrator("midpoint_bias", "midpoint")
fpr_bias = BiasCalibrator("fpr_bias", "fpr")  # target_fpr 0.01, interpreto's default
bce_bias = BiasCalibrator("bce_bias", "bce")
lda_shared_var_bias = BiasCalibrator("lda_shared_var_bias", "lda")


def native_calibration(who: str, name: str, calibrator: Any) -> str | None:
    """FitProbe's calibration name of an interpreto calibrator argument (None: none)."""
    if calibrator is None:
        return None
    if isinstance(calibrator, BiasCalibrator):
        return calibrator.native_name
    raise refuse(who, name, "the concept-service computes the calibrations of bias_calibrators (prevalence_bias, "
                 "midpoint_bias, fpr_bias at 1 % false positives, bce_bias, lda_shared_var_bias), not other callables")
