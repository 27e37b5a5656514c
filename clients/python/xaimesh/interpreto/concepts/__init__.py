"""interpreto.concepts over the mesh (see xaimesh.interpreto). Probes
(ProbeExplainer...) and Cockatiel are not provided here."""

from .interpretations import LLMLabels, TopKInputs
from .methods import (
    BatchTopKSAEConcepts,
    ConceptAutoEncoderExplainer,
    ConceptEncoderExplainer,
    ConvexNMFConcepts,
    DictionaryLearningConcepts,
    ICAConcepts,
    JumpReLUSAEConcepts,
    KMeansConcepts,
    NeuronsAsConcepts,
    NMFConcepts,
    PCAConcepts,
    SemiNMFConcepts,
    SparsePCAConcepts,
    SVDConcepts,
    TopKSAEConcepts,
    VanillaSAEConcepts,
)
from .splitters import (
    AllLayersSplitter,
    BaseSplitter,
    ModelWithSplitPoints,
    SplitterForClassification,
    SplitterForGeneration,
)

__all__ = ["AllLayersSplitter", "BaseSplitter", "BatchTopKSAEConcepts", "ConceptAutoEncoderExplainer",
           "ConceptEncoderExplainer", "ConvexNMFConcepts", "DictionaryLearningConcepts", "ICAConcepts",
           "JumpReLUSAEConcepts", "KMeansConcepts", "LLMLabels", "ModelWithSplitPoints", "NMFConcepts",
           "NeuronsAsConcepts", "PCAConcepts", "SVDConcepts", "SemiNMFConcepts", "SparsePCAConcepts",
           "SplitterForClassification", "SplitterForGeneration", "TopKInputs", "TopKSAEConcepts",
           "VanillaSAEConcepts"]
