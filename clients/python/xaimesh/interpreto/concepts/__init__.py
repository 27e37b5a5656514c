"""interpreto.concepts over the mesh (see xaimesh.interpreto). Probes
(ProbeExplainer...) are not provided here; Cockatiel is its NMF fit only."""

from .interpretations import LLMLabels, TopKInputs
from .methods import (
    BatchTopKSAEConcepts,
    Cockatiel,
    ConceptAutoEncoderExplainer,
    ConceptEncoderExplainer,
    ConvexNMFConcepts,
    DeadNeuronsReanimationLoss,
    DictionaryLearningConcepts,
    ICAConcepts,
    JumpReLUSAEConcepts,
    KMeansConcepts,
    MpSAEConcepts,
    MSELoss,
    NeuronsAsConcepts,
    NMFConcepts,
    PCAConcepts,
    SAELoss,
    SAELossClasses,
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

__all__ = ["AllLayersSplitter", "BaseSplitter", "BatchTopKSAEConcepts", "Cockatiel", "ConceptAutoEncoderExplainer",
           "ConceptEncoderExplainer", "ConvexNMFConcepts", "DeadNeuronsReanimationLoss", "DictionaryLearningConcepts",
           "ICAConcepts", "JumpReLUSAEConcepts", "KMeansConcepts", "LLMLabels", "MSELoss", "ModelWithSplitPoints",
           "MpSAEConcepts", "NMFConcepts", "NeuronsAsConcepts", "PCAConcepts", "SAELoss", "SAELossClasses",
           "SVDConcepts", "SemiNMFConcepts", "SparsePCAConcepts",
           "SplitterForClassification", "SplitterForGeneration", "TopKInputs", "TopKSAEConcepts",
           "VanillaSAEConcepts"]
