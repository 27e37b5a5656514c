"""interpreto.concepts.probes over the mesh: the linear and centroid probes
are fitted by the concept-service (FitProbe) and stored as concept models;
normalisations and bias calibrators name what the service computes;
scikit-learn probes run in this process, as interpreto's. Differences:
docs/interpreto-compat.md, D11."""

from __future__ import annotations

from .base import Probe, ProbeExplainer
from .bias_calibrators import bce_bias, fpr_bias, lda_shared_var_bias, midpoint_bias, prevalence_bias
from .centroid import (
    CosineCentroidProbe,
    DiagonalMahalanobisCentroidProbe,
    DotProductCentroidProbe,
    SqL2CentroidProbe,
    SVDDCentroidProbe,
)
from .linear import LinearRegressionProbe, LinearSVMProbe, LogisticRegressionProbe, MeansDiffProbe
from .normalizations import Standardization, Whitening

__all__ = ["CosineCentroidProbe", "DiagonalMahalanobisCentroidProbe", "DotProductCentroidProbe",
           "LinearRegressionProbe", "LinearSVMProbe", "LogisticRegressionProbe", "MeansDiffProbe", "Probe",
           "ProbeExplainer", "SVDDCentroidProbe", "SqL2CentroidProbe", "Standardization", "Whitening", "bce_bias",
           "fpr_bias", "lda_shared_var_bias", "midpoint_bias", "prevalence_bias"]
