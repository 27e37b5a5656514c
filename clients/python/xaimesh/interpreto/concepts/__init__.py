"""interpreto.concepts over the mesh (see xaimesh.interpreto). Cockatiel is
not provided here."""

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

__all__ = ["AllLayersSplitter", "BaseSplitter", "BatchTopKSAEConcepts", "ConceptAutoEncoderExplainer",
           "ConceptEncoderExplainer", "ConvexNMFConcepts", "CosineCentroidProbe", "DiagonalMahalanobisCentroidProbe",
           "DictionaryLearningConcepts", "DotProductCentroidProbe", "ICAConcepts", "JumpReLUSAEConcepts",
           "KMeansConcepts", "LLMLabels", "LinearRegressionProbe", "LinearSVMProbe", "LogisticRegressionProbe",
           "MeansDiffProbe", "ModelWithSplitPoints", "NMFConcepts", "NeuronsAsConcepts", "PCAConcepts",
           "ProbeExplainer", "SVDConcepts", "SVDDCentroidProbe", "SemiNMFConcepts", "SparsePCAConcepts",
           "SplitterForClassification", "SplitterForGeneration", "SqL2CentroidProbe", "TopKInputs",
           "TopKSAEConcepts", "VanillaSAEConcepts"]
