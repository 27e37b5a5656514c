"""Concept-based explanations: concept explainers, activation sets, labels.

    from xaimesh.concepts import SemiNMFConcepts, LLMLabels
    from xaimesh.concepts.metrics import MSE, Sparsity

    concepts = SemiNMFConcepts(split_model, nb_concepts=20).fit(activations)
    codes = concepts.encode_activations(activations)

Every name is imported on first use, so ``import xaimesh.concepts`` stays
light. Explainers (``*Concepts``) run in the concept-service; ``LLMLabels``
and ``TopKInputs`` (interpretations) label concepts through the labeling
service, ``ExtractiveLabels`` without an LLM in the concept-service; ``ConSim``
scores concept explanations by simulatability (labeling-service); ``upload_activations`` stores a client-side array as an
activation set; :mod:`xaimesh.concepts._rpc` has the low-level helpers
(``iter_top_examples``...).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    # explainers
    "ConceptExplainer": "xaimesh.concepts.explainers",
    "SemiNMFConcepts": "xaimesh.concepts.explainers",
    "NMFConcepts": "xaimesh.concepts.explainers",
    "ConvexNMFConcepts": "xaimesh.concepts.explainers",
    "PCAConcepts": "xaimesh.concepts.explainers",
    "ICAConcepts": "xaimesh.concepts.explainers",
    "SVDConcepts": "xaimesh.concepts.explainers",
    "KMeansConcepts": "xaimesh.concepts.explainers",
    "DictionaryLearningConcepts": "xaimesh.concepts.explainers",
    "SparsePCAConcepts": "xaimesh.concepts.explainers",
    "NeuronsAsConcepts": "xaimesh.concepts.explainers",
    "VanillaSAEConcepts": "xaimesh.concepts.explainers",
    "TopKSAEConcepts": "xaimesh.concepts.explainers",
    "BatchTopKSAEConcepts": "xaimesh.concepts.explainers",
    "JumpReLUSAEConcepts": "xaimesh.concepts.explainers",
    "MpSAEConcepts": "xaimesh.concepts.explainers",
    "MatryoshkaSAEConcepts": "xaimesh.concepts.explainers",
    "load_file": "xaimesh.concepts.explainers",
    "list_concept_models": "xaimesh.concepts.explainers",
    # activation sets
    "ActivationSet": "xaimesh.split_model",
    "Provenance": "xaimesh.split_model",
    "upload_activations": "xaimesh.concepts._rpc",
    "iter_top_examples": "xaimesh.concepts._rpc",
    # interpretations (labeling)
    "LLMLabels": "xaimesh.concepts.interpretations",
    "ExtractiveLabels": "xaimesh.concepts.interpretations",
    "LinearProbe": "xaimesh.concepts.explainers",
    "CentroidProbe": "xaimesh.concepts.explainers",
    "plot_concepts": "xaimesh.concepts.plots",
    "concept_page": "xaimesh.concepts.page",
    "TopKInputs": "xaimesh.concepts.interpretations",
    # concept-based simulatability (labeling)
    "ConSim": "xaimesh.concepts.simulatability",
    "ConSimResult": "xaimesh.concepts.simulatability",
}

_SUBMODULES = ("metrics", "explainers", "interpretations", "simulatability")

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'xaimesh.concepts' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
