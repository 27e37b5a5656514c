"""interpreto.concepts.metrics over the mesh, with interpreto's definitions
(which differ from the native SDK's where noted; docs/interpreto-compat.md):

- ``MSE``: interpreto's "MSE" is the Euclidean (Frobenius) norm of
  X - decode(encode(X)) over all rows: the native ``FrobeniusNorm``;
- ``FID``: mean over features of the 1-D Wasserstein distance (native ``FID``);
- ``Sparsity(epsilon)``: the fraction of codes with |c| > epsilon (native
  ``Sparsity(explainer, epsilon)``);
- ``SparsityRatio``: interpreto divides Sparsity by the number of concepts
  (the native SparsityRatio is another quantity);
- ``Stability``: 1 - the matched mean cosine distance (signed cosine)
  between the dictionaries, averaged over pairs; matched one-to-one
  (COSINE_HUNGARIAN) or each concept of the first to its nearest in the
  second (COSINE_MAXIMUM);
- ``ReconstructionError(explainer, LATENT_ACTIVATIONS, distance_function)``:
  EUCLIDEAN, AVERAGE_EUCLIDEAN, WASSERSTEIN_1D, COSINE, LP and AVERAGE_LP
  (also as ``functools.partial(..., p=...)``) are computed by the service;
  KL or any other callable on the activations and reconstructions fetched
  from it;
- ``ConSim`` / ``PromptTypes``: concept-based simulatability, scored by the
  labeling-service (``consim``; its local importances are passed in).
"""

from __future__ import annotations

import functools
from enum import Enum
from itertools import combinations
from typing import Any

from xaimesh.concepts import metrics as native

from ..._compat import mesh_activations
from .consim import ConSim, PromptTypes

__all__ = ["FID", "MSE", "ConSim", "ConceptMatchingAlgorithm", "PromptTypes", "ReconstructionError",
           "ReconstructionSpaces", "Sparsity", "SparsityRatio", "Stability"]


def _native_explainer(concept_explainer: Any) -> Any:
    return getattr(concept_explainer, "native", concept_explainer)


class _ServiceMetric:
    native_class: type

    def __init__(self, concept_explainer: Any) -> None:
        self.concept_explainer = concept_explainer

    def compute(self, latent_activations: Any) -> float:
        explainer = _native_explainer(self.concept_explainer)
        return float(self.native_class(explainer, show_progress=False).compute(
            mesh_activations(latent_activations, self.concept_explainer.split_point)))


class MSE(_ServiceMetric):
    """interpreto's MSE: ||X - decode(encode(X))||_2 over every element."""

    native_class = native.FrobeniusNorm


class FID(_ServiceMetric):
    native_class = native.FID


class Sparsity:
    """The fraction of concept activations with |c| > epsilon."""

    def __init__(self, concept_explainer: Any, epsilon: float = 0.0) -> None:
        self.concept_explainer = concept_explainer
        self.epsilon = float(epsilon)

    def compute(self, latent_activations: Any) -> float:
        explainer = _native_explainer(self.concept_explainer)
        activations = mesh_activations(latent_activations, self.concept_explainer.split_point)
        return float(native.Sparsity(explainer, self.epsilon, show_progress=False).compute(activations))


class SparsityRatio(Sparsity):
    """interpreto's SparsityRatio: Sparsity divided by the number of concepts."""

    def compute(self, latent_activations: Any) -> float:
        return super().compute(latent_activations) / _native_explainer(self.concept_explainer).nb_concepts


def _cosine_matrix(x1: Any, x2: Any) -> Any:
    import torch

    return torch.nn.functional.normalize(x1, dim=1) @ torch.nn.functional.normalize(x2, dim=1).T


def _cosine_hungarian_distance(x1: Any, x2: Any) -> Any:
    """Mean cosine distance of the best one-to-one matching."""
    from scipy.optimize import linear_sum_assignment

    cost = 1 - _cosine_matrix(x1, x2)
    rows, cols = linear_sum_assignment(cost.numpy())
    return cost[rows, cols].sum() / x1.shape[0]


def _cosine_max_distance(x1: Any, x2: Any) -> Any:
    """1 - mean over the rows of x1 of their largest cosine with a row of x2."""
    return 1 - _cosine_matrix(x1, x2).max(dim=1).values.mean()


class ConceptMatchingAlgorithm(Enum):
    COSINE_HUNGARIAN = staticmethod(_cosine_hungarian_distance)
    COSINE_MAXIMUM = staticmethod(_cosine_max_distance)


class Stability:
    """interpreto's Stability of several explainers' (or dictionaries') concepts."""

    def __init__(self, *concept_explainers: Any,
                 matching_algorithm: Any = ConceptMatchingAlgorithm.COSINE_HUNGARIAN) -> None:
        import torch

        if not concept_explainers:
            raise ValueError("At least one `ConceptAutoEncoderExplainer`s or `torch.Tensor`s must be provided.")
        if not callable(matching_algorithm):  # as in interpreto, the members are the functions themselves
            raise ValueError("matching_algorithm must be ConceptMatchingAlgorithm.COSINE_HUNGARIAN or "
                             f"COSINE_MAXIMUM (a distance between two dictionaries), got {matching_algorithm!r}")
        self.distance_function = matching_algorithm
        if len(concept_explainers) == 1:
            concept_explainers = concept_explainers * 2
        self.dictionaries = [c if isinstance(c, torch.Tensor) else c.get_dictionary() for c in concept_explainers]
        shapes = {tuple(d.shape) for d in self.dictionaries}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            raise ValueError(f"the dictionaries must be 2-D with one shape, got {sorted(shapes)}")

    def compute(self) -> float:
        import torch

        scores = [1 - self.distance_function(a.detach().cpu().float(), b.detach().cpu().float())
                  for a, b in combinations(self.dictionaries, 2)]
        return torch.stack(scores).mean().item()


class ReconstructionSpaces(Enum):
    LATENT_ACTIVATIONS = "latent_activations"
    LOGITS = "logits"


class ReconstructionError:
    """interpreto's ReconstructionError: ``distance_function(X, decode(encode(X)))``."""

    def __init__(self, concept_explainer: Any, reconstruction_space: ReconstructionSpaces,
                 distance_function: Any) -> None:
        self.concept_explainer = concept_explainer
        self.reconstruction_space = reconstruction_space
        self.distance_function = distance_function

    def compute(self, latent_activations: Any) -> float:
        from ...commons import distances

        if self.reconstruction_space is not ReconstructionSpaces.LATENT_ACTIVATIONS:
            raise NotImplementedError(f"{self.reconstruction_space} is not supported (interpreto 0.5.2 refuses it too): use ReconstructionSpaces.LATENT_ACTIVATIONS, the only reconstruction space it defines")
        # the distances the concept-service computes, by the native ReconstructionError's names
        on_service = {distances.euclidean_distance: "euclidean",
                      distances.average_euclidean_distance: "average_euclidean",
                      distances.wasserstein_1d_distance: "wasserstein_1d", distances.cosine_distance: "cosine",
                      distances.lp_distance: "lp", distances.average_lp_distance: "average_lp"}
        function, p = self.distance_function, 2.0
        if isinstance(function, functools.partial) and not function.args and set(function.keywords) <= {"p"}:
            function, p = function.func, function.keywords.get("p", 2.0)  # e.g. partial(DistanceFunctions.LP, p=1)
        explainer = _native_explainer(self.concept_explainer)
        activations = mesh_activations(latent_activations, self.concept_explainer.split_point)
        name = on_service.get(function)
        if name is not None:
            return float(native.ReconstructionError(explainer, name, p, show_progress=False).compute(activations))
        import torch

        from xaimesh.split_model import ActivationSet

        if isinstance(activations, ActivationSet):  # a stored set: its rows are fetched
            activations = activations.numpy(show_progress=False)
        rows = torch.as_tensor(activations, dtype=torch.float32)
        reconstructed = torch.from_numpy(explainer.decode_concepts(explainer.encode_activations(rows.numpy())))
        return float(self.distance_function(rows, reconstructed))
