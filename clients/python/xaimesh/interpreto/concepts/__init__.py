"""interpreto.concepts over the mesh (see xaimesh.interpreto). Cockatiel is
its NMF fit only."""

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
from .probes import (
    CosineCentroidProbe,
    DiagonalMahalanobisCentroidProbe,
    DotProductCentroidProbe,
    LinearRegressionProbe,
    LinearSVMProbe,
    LogisticRegressionProbe,
    MeansDiffProbe,
    ProbeExplainer,
    SqL2CentroidProbe,
    SVDDCentroidProbe,
)
from .splitters import (
    AllLayersSplitter,
    BaseSplitter,
    ModelWithSplitPoints,
    SplitterForClassification,
    SplitterForGeneration,
)

__all__ = ["AllLayersSplitter", "BaseSplitter", "BatchTopKSAEConcepts", "Cockatiel", "ConceptAutoEncoderExplainer",
           "ConceptEncoderExplainer", "ConvexNMFConcepts", "CosineCentroidProbe", "DeadNeuronsReanimationLoss",
           "DiagonalMahalanobisCentroidProbe", "DictionaryLearningConcepts", "DotProductCentroidProbe",
           "ICAConcepts", "JumpReLUSAEConcepts", "KMeansConcepts", "LLMLabels", "LinearRegressionProbe",
           "LinearSVMProbe", "LogisticRegressionProbe", "MSELoss", "MeansDiffProbe", "ModelWithSplitPoints",
           "MpSAEConcepts", "NMFConcepts", "NeuronsAsConcepts", "PCAConcepts", "ProbeExplainer", "SAELoss",
           "SAELossClasses", "SVDConcepts", "SVDDCentroidProbe", "SemiNMFConcepts", "SparsePCAConcepts",
           "SplitterForClassification", "SplitterForGeneration", "TopKInputs", "TopKSAEConcepts",
           "VanillaSAEConcepts"]
