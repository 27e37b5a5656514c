"""Concept methods, by ConceptMethod enum suffix.

>>> from xaimesh_concept.methods import build_method
>>> m = build_method("SEMI_NMF", 20, {"seed": 1, "max_iterations": 300})
"""

from __future__ import annotations

from xaimesh_contracts.v1 import concept_pb2
from xaimesh_runtime.errors import InvalidArgument

from ..common import enum_key
from .base import REGISTRY, ConceptMethod, ModelState, default_device, resolve_device
from .factorization import NMF, ConvexNMF, SemiNMF
from .linear import ICA, PCA, SVD
from .probe import CentroidProbe, LinearProbe
from .sae import BatchTopKSAE, JumpReLUSAE, TopKSAE, VanillaSAE
from .sae_matryoshka import MatryoshkaSAE
from .sae_mp import MatchingPursuitSAE
from .sklearn_methods import DictionaryLearning, KMeans, NeuronsAsConcepts, SparsePCA

#: Every ConceptFitOptions field (proto order). Fields that do not apply to a
#: method are ignored by build_method (the proto always sends them all).
FIT_OPTION_FIELDS = (
    "seed", "device", "max_iterations", "tolerance", "relu_negative_inputs", "epochs",
    "batch_size", "learning_rate", "top_k", "l1_coefficient", "jump_threshold",
    "jump_bandwidth", "alpha", "standardize", "loss", "optimizer", "scheduler", "weight_decay", "clip_grad",
    "warmup_steps", "log_every_steps", "matryoshka_prefixes",
)

#: The methods FitConceptModel fits (the supervised ones, probes, are fitted by FitProbe).
METHOD_NAMES = tuple(name for name, klass in REGISTRY.items() if not klass.supervised)


def method_class(name) -> type[ConceptMethod]:
    """The class of a method given its ConceptMethod short name ("SEMI_NMF",
    any case), full name ("CONCEPT_METHOD_SEMI_NMF") or number."""
    key = enum_key(concept_pb2.ConceptMethod, name, "method", what="concept method")
    if key == "UNSPECIFIED":
        raise InvalidArgument(f"no concept method given; choose one of {sorted(REGISTRY)}",
                              field="method")
    klass = REGISTRY.get(key)
    if klass is None:  # in the contract, not implemented here
        raise InvalidArgument(f"unknown concept method {name!r}; choose one of {sorted(REGISTRY)}",
                              field="method")
    return klass


def applicable_options(name: str) -> dict:
    """Option name -> default for a method (what options_json will hold)."""
    klass = method_class(name)
    opts = {**klass.COMMON_OPTIONS, **klass.OPTIONS}
    if klass.uses_device:
        opts["device"] = ""
    return opts


def build_method(name: str, nb_concepts: int, options: dict | None = None) -> ConceptMethod:
    """Instantiate a method from its name and a ConceptFitOptions-like dict.

    Proto fields that do not apply to the method are ignored; other unknown
    keys are an InvalidArgument (method-specific extras such as ``max_rows``
    or ``encode_iterations`` are accepted where they apply).
    """
    klass = method_class(name)
    options = dict(options or {})
    allowed = applicable_options(klass.method_name)
    unknown = sorted(k for k in options if k not in allowed and k not in FIT_OPTION_FIELDS)
    if unknown:
        raise InvalidArgument(f"unknown fit option(s) {unknown}; ConceptFitOptions has "
                              f"{list(FIT_OPTION_FIELDS)}", field="options")
    used = {k: v for k, v in options.items() if k in allowed}
    if not klass.uses_device and options.get("device") not in (None, "", "cpu"):
        # validated (so typos are caught) but these methods run on the CPU
        resolve_device(options["device"])
    return klass(nb_concepts, **used)


__all__ = [
    "REGISTRY", "METHOD_NAMES", "FIT_OPTION_FIELDS", "ConceptMethod", "ModelState", "build_method",
    "method_class", "applicable_options", "default_device", "resolve_device",
    "SemiNMF", "NMF", "ConvexNMF", "PCA", "ICA", "SVD", "KMeans", "DictionaryLearning",
    "SparsePCA", "NeuronsAsConcepts", "VanillaSAE", "TopKSAE", "BatchTopKSAE", "JumpReLUSAE", "MatchingPursuitSAE",
    "MatryoshkaSAE", "LinearProbe", "CentroidProbe",
]
