"""interpreto.concepts.methods.overcomplete: the dictionary-learning and SAE explainers, and the SAE criteria."""

from . import (
    BatchTopKSAEConcepts,
    ConvexNMFConcepts,
    DeadNeuronsReanimationLoss,
    DictionaryLearningConcepts,
    JumpReLUSAEConcepts,
    MpSAEConcepts,
    MSELoss,
    NMFConcepts,
    SAELoss,
    SAELossClasses,
    SemiNMFConcepts,
    SparsePCAConcepts,
    TopKSAEConcepts,
    VanillaSAEConcepts,
)

__all__ = ["BatchTopKSAEConcepts", "ConvexNMFConcepts", "DeadNeuronsReanimationLoss", "DictionaryLearningConcepts",
           "JumpReLUSAEConcepts", "MSELoss", "MpSAEConcepts", "NMFConcepts", "SAELoss", "SAELossClasses",
           "SemiNMFConcepts", "SparsePCAConcepts", "TopKSAEConcepts", "VanillaSAEConcepts"]
