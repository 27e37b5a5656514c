"""interpreto's concept explainers over the mesh: fitted by the
concept-service, with interpreto's names, arguments and torch returns.

Each class wraps the native explainer of the same name
(``xaimesh.concepts``): ``fit(activations, **kwargs)`` takes interpreto's
fit arguments where the service has them (``max_iter``, ``tol``, ``lr``,
``nb_epochs``, ``batch_size``...: the native aliases), accepts placement
and monitoring arguments as no-ops and refuses the rest by name;
``activations_to_concepts`` (0.5) / ``encode_activations`` (0.4),
``concepts_to_activations`` / ``decode_concepts`` and ``get_dictionary``
return torch tensors.
"""

from __future__ import annotations

from typing import Any

from xaimesh.concepts import explainers as native

from ..._compat import MeshPlacement, accept_noop, mesh_activations, refuse

__all__ = ["BatchTopKSAEConcepts", "ConceptAutoEncoderExplainer", "ConceptEncoderExplainer", "ConvexNMFConcepts",
           "DictionaryLearningConcepts", "ICAConcepts", "JumpReLUSAEConcepts", "KMeansConcepts", "NMFConcepts",
           "NeuronsAsConcepts", "PCAConcepts", "SVDConcepts", "SemiNMFConcepts", "SparsePCAConcepts",
           "TopKSAEConcepts", "VanillaSAEConcepts"]

#: interpreto fit / constructor arguments that change nothing on the mesh.
_FIT_NOOPS = ("device", "use_amp", "monitoring", "verbose", "overwrite", "max_nan_fallbacks")


def _split_model(splitter: Any) -> Any:
    """The native split model behind an interpreto-compatible splitter (or a native one)."""
    return getattr(splitter, "native", splitter)


def _torch(array: Any):
    import torch

    return torch.from_numpy(array.copy())


class ConceptEncoderExplainer(MeshPlacement):
    """Base of the compatible concept explainers."""

    native_class: type = native.ConceptExplainer

    def __init__(self, splitter: Any, *, nb_concepts: int | None = None, split_point: Any = None,
                 device: Any = "cpu", **kwargs: Any) -> None:
        who = type(self).__name__
        accept_noop(who, "device", device)  # the concept-service fits where it runs
        self.splitter = splitter
        self.model_with_split_points = splitter  # 0.4's name
        split_model = _split_model(splitter)
        if split_point is not None and hasattr(splitter, "_module_path"):
            split_point = next((s for s in split_model.split_points
                                if splitter._module_path(s) == splitter._module_path(split_point)), split_point)
        self.native = self.native_class(split_model, nb_concepts, split_point=split_point,
                                        **self._options(who, kwargs))

    @staticmethod
    def _options(who: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        options = {}
        for name, value in kwargs.items():
            if name in _FIT_NOOPS:
                accept_noop(who, name, value)
                continue
            options[name] = value
        return options

    # -- interpreto's attributes ---------------------------------------------
    @property
    def nb_concepts(self) -> int:
        return self.native.nb_concepts

    @property
    def split_point(self) -> str:
        sp = self.native.split_point
        return self.splitter._module_path(sp) if hasattr(self.splitter, "_module_path") else str(sp)

    @property
    def is_fitted(self) -> bool:
        return self.native.is_fitted

    @property
    def concept_model(self) -> Any:
        """interpreto exposes the fitted model; here: the native explainer
        (``nb_concepts``, ``concept_model_`` names the stored model)."""
        return self.native

    def fit(self, activations: Any, *args: Any, **kwargs: Any) -> Any:
        who = f"{type(self).__name__}.fit"
        if args:
            raise refuse(who, "*args", "give fit arguments by name")
        options = self._options(who, kwargs)
        for bad in ("criterion", "optimizer_class", "optimizer_kwargs", "scheduler_class", "scheduler_kwargs",
                    "clip_grad", "return_sklearn_model"):
            if bad in options:
                raise refuse(who, bad, "the concept-service trains with its own loss and optimiser; "
                             f"options it takes: {', '.join(self.native.OPTIONS)}")
        if options:
            self.native.set_params(**options)
        self.native.fit(mesh_activations(activations, self.split_point))
        return None

    def activations_to_concepts(self, activations: Any):
        return _torch(self.native.encode_activations(mesh_activations(activations, self.split_point)))

    def concepts_to_activations(self, concepts: Any):
        return _torch(self.native.decode_concepts(concepts))

    # 0.4's names
    encode_activations = activations_to_concepts
    decode_concepts = concepts_to_activations

    def get_dictionary(self):
        return _torch(self.native.get_dictionary())

    def get_inputs_to_concepts_model(self) -> Any:
        """The model interpreto's attribution classes take to explain concept activations."""
        from ..base import ModelForInputsToConcepts

        return ModelForInputsToConcepts(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(over {self.native!r})"


ConceptAutoEncoderExplainer = ConceptEncoderExplainer


def _explainer(name: str) -> type:
    return type(name, (ConceptEncoderExplainer,), {"native_class": getattr(native, name), "__doc__":
                                                   f"interpreto's {name}, fitted by the concept-service."})


SemiNMFConcepts = _explainer("SemiNMFConcepts")
NMFConcepts = _explainer("NMFConcepts")
ConvexNMFConcepts = _explainer("ConvexNMFConcepts")
PCAConcepts = _explainer("PCAConcepts")
ICAConcepts = _explainer("ICAConcepts")
SVDConcepts = _explainer("SVDConcepts")
KMeansConcepts = _explainer("KMeansConcepts")
DictionaryLearningConcepts = _explainer("DictionaryLearningConcepts")
SparsePCAConcepts = _explainer("SparsePCAConcepts")
VanillaSAEConcepts = _explainer("VanillaSAEConcepts")
TopKSAEConcepts = _explainer("TopKSAEConcepts")
BatchTopKSAEConcepts = _explainer("BatchTopKSAEConcepts")
JumpReLUSAEConcepts = _explainer("JumpReLUSAEConcepts")


class NeuronsAsConcepts(ConceptEncoderExplainer):
    """interpreto's NeuronsAsConcepts: every hidden unit is a concept (no fit needed)."""

    native_class = native.NeuronsAsConcepts

    def __init__(self, splitter: Any, split_point: Any = None) -> None:
        super().__init__(splitter, nb_concepts=None, split_point=split_point)
