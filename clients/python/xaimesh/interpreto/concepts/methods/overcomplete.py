"""interpreto.concepts.methods.overcomplete: the dictionary-learning and SAE explainers."""

from . import (
    BatchTopKSAEConcepts,
    ConvexNMFConcepts,
    DictionaryLearningConcepts,
    JumpReLUSAEConcepts,
    NMFConcepts,
    SemiNMFConcepts,
    SparsePCAConcepts,
    TopKSAEConcepts,
    VanillaSAEConcepts,
)

__all__ = ["BatchTopKSAEConcepts", "ConvexNMFConcepts", "DictionaryLearningConcepts", "JumpReLUSAEConcepts",
           "NMFConcepts", "SemiNMFConcepts", "SparsePCAConcepts", "TopKSAEConcepts", "VanillaSAEConcepts"]
