"""interpreto's concept explainers over the mesh: fitted by the
concept-service, with interpreto's names, arguments and torch returns.

Each class wraps the native explainer of the same name
(``xaimesh.concepts``): ``fit(activations, **kwargs)`` takes interpreto's
fit arguments where the service has them (``max_iter``, ``tol``, ``lr``,
``nb_epochs``, ``batch_size``...: the native aliases; for SAEs also
``criterion``, ``optimizer_class`` / ``optimizer_kwargs``,
``scheduler_class``, ``clip_grad``, mapped to the contract's training
options), accepts placement and monitoring arguments as no-ops and refuses
the rest by name; an SAE's ``fit`` returns interpreto's per-epoch log dict;
``activations_to_concepts`` (0.5) / ``encode_activations`` (0.4),
``concepts_to_activations`` / ``decode_concepts`` and ``get_dictionary``
return torch tensors.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from xaimesh.concepts import explainers as native

from ..._compat import MeshPlacement, accept_noop, mesh_activations, refuse

__all__ = ["BatchTopKSAEConcepts", "Cockatiel", "ConceptAutoEncoderExplainer", "ConceptEncoderExplainer",
           "ConvexNMFConcepts", "DeadNeuronsReanimationLoss", "DictionaryLearningConcepts", "ICAConcepts",
           "JumpReLUSAEConcepts", "KMeansConcepts", "MSELoss", "MpSAEConcepts", "NMFConcepts", "NeuronsAsConcepts",
           "PCAConcepts", "SAELoss", "SAELossClasses", "SVDConcepts", "SemiNMFConcepts", "SparsePCAConcepts",
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
        sae = "loss" in self.native.OPTIONS
        if sae:
            options = _sae_training_options(who, options)
        for bad in ("criterion", "optimizer_class", "optimizer_kwargs", "scheduler_class", "scheduler_kwargs",
                    "clip_grad", "return_sklearn_model"):
            if bad in options and bad not in self.native.OPTIONS:
                raise refuse(who, bad, "the concept-service fits this method with its own solver; "
                             f"options it takes: {', '.join(self.native.OPTIONS)}")
        if options:
            self.native.set_params(**options)
        self.native.fit(mesh_activations(activations, self.split_point))
        return _interpreto_log(self.native.training_log_) if sae else None

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


MpSAEConcepts = _explainer("MpSAEConcepts")


class Cockatiel(NMFConcepts):
    """interpreto's Cockatiel (Jourdan et al. 2023): NMF concepts (the same
    fit, encoding and dictionary). Its ``input_concept_attribution`` /
    ``concept_output_attribution`` call parent methods interpreto 0.5.2 does
    not have, so they are not provided here either."""


# -- SAE training: interpreto's loss classes and torch classes -> the contract's names
class SAELoss:
    """interpreto's base of the SAE criteria (what ``fit(criterion=...)`` takes)."""

    name = ""


class MSELoss(SAELoss):
    """Mean squared reconstruction error per element."""

    name = "mse"


class DeadNeuronsReanimationLoss(SAELoss):
    """MSE - 1e-3 * mean(pre-activations of the concepts dead in the batch)."""

    name = "dead_neurons_reanimation"


class SAELossClasses(Enum):
    MSE = MSELoss
    DeadNeuronsReanimation = DeadNeuronsReanimationLoss


_OPTIMIZERS = {"Adam": "adam", "AdamW": "adamw", "SGD": "sgd"}
_SCHEDULERS = {"CosineAnnealingLR": "cosine", "LinearLR": "linear"}


def _class_name(value: Any) -> str:
    value = value.value if isinstance(value, Enum) else value
    return (value if isinstance(value, type) else type(value)).__name__


def _sae_training_options(who: str, options: dict[str, Any]) -> dict[str, Any]:
    """interpreto's SAE ``fit`` arguments as the native options (docs/concept-methods.md)."""
    options = dict(options)
    if "criterion" in options:
        criterion = options.pop("criterion")
        value = criterion.value if isinstance(criterion, Enum) else criterion
        cls = value if isinstance(value, type) else type(value)
        if not (isinstance(cls, type) and issubclass(cls, SAELoss) and cls is not SAELoss):
            raise refuse(who, "criterion", "give MSELoss or DeadNeuronsReanimationLoss (the service's criteria); "
                         "custom loss functions cannot run on the concept-service")
        options["loss"] = cls.name
    if "optimizer_class" in options:
        name = _class_name(options.pop("optimizer_class"))
        if name not in _OPTIMIZERS:
            raise refuse(who, "optimizer_class", f"{name} is not available; use one of {sorted(_OPTIMIZERS)}")
        options["optimizer"] = _OPTIMIZERS[name]
    for key, value in (options.pop("optimizer_kwargs", None) or {}).items():
        if key == "weight_decay":
            options["weight_decay"] = value
        elif key == "lr":
            options["learning_rate"] = value
        else:
            raise refuse(who, "optimizer_kwargs", f"{key!r} cannot be set; the service takes lr and weight_decay")
    if options.get("scheduler_class") is not None:
        name = _class_name(options.pop("scheduler_class"))
        if name not in _SCHEDULERS:
            raise refuse(who, "scheduler_class", f"{name} is not available; use one of {sorted(_SCHEDULERS)} "
                         "(annealed to 0 over all the steps)")
        options["scheduler"] = _SCHEDULERS[name]
        scheduler_kwargs = options.pop("scheduler_kwargs", None) or {}
        if scheduler_kwargs:
            raise refuse(who, "scheduler_kwargs", "the service's schedules anneal from lr to 0 over all the steps "
                         "and take no arguments")
    else:
        options.pop("scheduler_class", None)
        if options.pop("scheduler_kwargs", None):
            raise refuse(who, "scheduler_kwargs", "scheduler_kwargs without a scheduler_class")
    return options


def _interpreto_log(entries: list[dict]) -> dict[str, list[float]]:
    """The native training log as interpreto's per-epoch log dict (overcomplete's names)."""
    epochs = [e for e in entries if e.get("kind") == "epoch"]
    return {"avg_loss": [e["loss"] for e in epochs],
            "z_sparsity": [e["values"].get("l0", float("nan")) for e in epochs],
            "dead_features": [e["values"].get("dead_fraction", float("nan")) for e in epochs],
            "lr": [e["learning_rate"] for e in epochs]}


class NeuronsAsConcepts(ConceptEncoderExplainer):
    """interpreto's NeuronsAsConcepts: every hidden unit is a concept (no fit needed)."""

    native_class = native.NeuronsAsConcepts

    def __init__(self, splitter: Any, split_point: Any = None) -> None:
        super().__init__(splitter, nb_concepts=None, split_point=split_point)
