"""interpreto.concepts.probes.base over the mesh: `Probe` (the settings of a
probe the concept-service fits) and `ProbeExplainer` (fits it from
activations and labels; the probe is stored as a concept model)."""

from __future__ import annotations

from typing import Any

from ..._compat import MeshPlacement, mesh_activations, refuse
from ..methods import _split_model, _torch
from .bias_calibrators import native_calibration
from .normalizations import NormalizationBase

__all__ = ["Probe", "ProbeExplainer"]


def check_fit_shapes(activations: Any, labels: Any) -> None:
    """interpreto's checks of a probe fit's arguments (ValueError)."""
    if len(activations.shape) != 2:
        raise ValueError(f"Expected activations to be a 2D array, (n, d), got shape {activations.shape}")
    if activations.shape[0] != labels.shape[0]:
        raise ValueError("Activations and labels must have the same number of samples, "
                         f"got {activations.shape[0]} and {labels.shape[0]}.")


class Probe:
    """A probe's settings. interpreto's probes are torch modules fitted in
    process; here `ProbeExplainer.fit` has the concept-service fit them, on
    every row (interpreto holds none out: test_fraction 0)."""

    #: The native explainer class (xaimesh.concepts) and its options.
    native_class: Any = None

    def __init__(self, *, normalization: Any = None, bias_calibrator: Any = None, **settings: Any) -> None:
        """`settings`: the native explainer's options (method or metric, l2, ...)."""
        who = type(self).__name__
        if normalization is not None and not isinstance(normalization, NormalizationBase):
            raise refuse(who, "normalization", "give Standardization() or Whitening() (the concept-service fits them)")
        self._options = {"normalization": normalization.native_name if normalization is not None else None,
                         "bias_calibration": native_calibration(who, "bias_calibrator", bias_calibrator), **settings}
        self.fitted = False
        self.nb_concepts = 0

    def _native_options(self) -> dict[str, Any]:
        return dict(self._options)

    def fit(self, x: Any, y: Any) -> None:
        raise refuse(type(self).__name__, "fit", "the concept-service fits probes: ProbeExplainer(splitter, "
                     "probe).fit(activations, labels)")

    def encode(self, x: Any) -> Any:
        raise refuse(type(self).__name__, "encode", "use ProbeExplainer(splitter, probe).activations_to_concepts")

    def state_dict(self) -> Any:
        raise refuse(type(self).__name__, "state_dict", "a fitted probe is a stored concept model: its name is "
                     "ProbeExplainer.native.concept_model_ (ConceptExplainer.load reloads it)")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._native_options()})"


class ProbeExplainer(MeshPlacement):
    """interpreto's ProbeExplainer(splitter, concept_model): `fit(activations,
    labels)` fits the probe in the concept-service (labels (n, c) or (n,),
    0 / 1); `activations_to_concepts` returns the scores (n, c)."""

    def __init__(self, splitter: Any, concept_model: Probe) -> None:
        if not isinstance(concept_model, Probe):
            raise TypeError(f"concept_model must be a Probe instance, got {type(concept_model).__name__}.")
        self.splitter = splitter
        self._concept_model = concept_model
        self.native = concept_model.native_class(_split_model(splitter), test_fraction=0.0,
                                                 **concept_model._native_options())

    @property
    def concept_model(self) -> Probe:
        return self._concept_model

    @property
    def is_fitted(self) -> bool:
        return self._concept_model.fitted

    def fit(self, activations: Any, labels: Any) -> None:
        check_fit_shapes(activations, labels)
        self.native.fit(mesh_activations(activations), labels, show_progress=False)
        self._concept_model.fitted = True
        self._concept_model.nb_concepts = self.native.nb_concepts

    def activations_to_concepts(self, activations: Any) -> Any:
        if not self.is_fitted:
            raise RuntimeError("Model is not fitted or loaded (self.fitted is False).")
        return _torch(self.native.encode_activations(mesh_activations(activations)))

    def get_dictionary(self) -> Any:
        return _torch(self.native.get_dictionary())

    def __repr__(self) -> str:
        return f"ProbeExplainer({self._concept_model!r})"
