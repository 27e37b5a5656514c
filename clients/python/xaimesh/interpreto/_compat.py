"""What the interpreto-compatible classes share: interpreto's enums, the
keyword arguments that mean nothing on a mesh, and the bridge between
interpreto's in-memory torch tensors and the mesh's activation sets.

The enums have interpreto's names and members (so ``Granularity.WORD``,
``InferenceModes.SOFTMAX`` written for interpreto work unchanged), and each
maps to the native SDK's option value it stands for.
"""

from __future__ import annotations

import warnings
from enum import Enum, auto
from typing import Any

from xaimesh.attributions.options import invalid

__all__ = ["ActivationGranularity", "DistancesFromMask", "Granularity", "GranularityAggregationStrategy",
           "InferenceModes", "MeshPlacement", "SamplingMethod", "SequenceSamplers", "SobolIndicesOrders",
           "accept_noop", "activations_tensor", "mesh_activations", "refuse"]


class Granularity(Enum):
    """interpreto.commons.granularity.Granularity."""

    ALL_TOKENS = "all_tokens"
    TOKEN = "token"
    WORD = "word"
    SENTENCE = "sentence"
    PART_SENTENCE = "part_sentence"
    DEFAULT = ALL_TOKENS  # an alias of ALL_TOKENS, as in interpreto


class GranularityAggregationStrategy(Enum):
    """interpreto.commons.granularity.GranularityAggregationStrategy."""

    MEAN = "mean"
    MAX = "max"
    MIN = "min"
    SUM = "sum"
    SIGNED_MAX = "signed_max"
    FIRST = "first"
    LAST = "last"


class InferenceModes(Enum):
    """interpreto's InferenceModes: what number a target is scored by."""

    LOGITS = auto()
    SOFTMAX = auto()
    LOG_SOFTMAX = auto()

    def __call__(self, logits):
        import torch

        if self is InferenceModes.SOFTMAX:
            return torch.softmax(logits, dim=-1)
        if self is InferenceModes.LOG_SOFTMAX:
            return torch.log_softmax(logits, dim=-1)
        return logits


class ActivationGranularity(Enum):
    """ModelWithSplitPoints.activation_granularities."""

    ALL_TOKENS = Granularity.ALL_TOKENS
    CLS_TOKEN = "cls_token"
    SAMPLE = "sample"
    SENTENCE = Granularity.SENTENCE
    TOKEN = Granularity.TOKEN
    WORD = Granularity.WORD


class DistancesFromMask(Enum):
    """Lime.distance_functions (the mesh's Lime weighs masks by their cosine distance only)."""

    HAMMING = "hamming"
    EUCLIDEAN = "euclidean"
    COSINE = "cosine"


class SequenceSamplers(Enum):
    """Sobol.samplers."""

    SOBOL = "sobol"
    HALTON = "halton"
    LatinHypercube = "latin_hypercube"


class SobolIndicesOrders(Enum):
    """Sobol.sobol_indices_orders."""

    FIRST_ORDER = "first order"
    TOTAL_ORDER = "total order"


class SamplingMethod(Enum):
    """LLMLabels' sampling_method."""

    TOP = "top"
    QUANTILE = "quantile"
    RANDOM = "random"


def member(enum: type[Enum], value: Any, field: str) -> Enum:
    """The member of an interpreto enum given as a member, its name or its value."""
    if isinstance(value, enum):
        return value
    if isinstance(value, Enum):
        value = value.name
    for m in enum:
        if value in (m.value, m.name) or (isinstance(value, str) and value.upper() == m.name.upper()):
            return m
    raise invalid(f"{field}: unknown value {value!r}; use one of {', '.join(enum.__name__ + '.' + m.name for m in enum)}",
                  field)


def native_granularity(value: Any) -> str:
    g = member(Granularity, value, "granularity")
    if g is Granularity.PART_SENTENCE:
        raise invalid("granularity PART_SENTENCE is not computed by the mesh: its elements are all tokens, tokens, "
                      "words or sentences (Granularity.ALL_TOKENS, TOKEN, WORD, SENTENCE)", "granularity")
    return g.value


def native_aggregation(value: Any) -> str:
    a = member(GranularityAggregationStrategy, value, "granularity_aggregation_strategy")
    if a in (GranularityAggregationStrategy.FIRST, GranularityAggregationStrategy.LAST):
        raise invalid(f"granularity_aggregation_strategy {a.name} is not computed by the mesh: use MEAN, MAX, MIN, "
                      "SUM or SIGNED_MAX", "granularity_aggregation_strategy")
    return a.value


def native_inference_mode(value: Any) -> str:
    return member(InferenceModes, value, "inference_mode").name.lower()


def accept_noop(who: str, name: str, value: Any, default: Any = None) -> None:
    """An interpreto argument that has no meaning on a mesh (placement,
    batching, progress bars): accepted and ignored (docs/interpreto-compat.md)."""
    del who, name, value, default


class MeshPlacement:
    """interpreto's placement methods (``to``, ``cpu``, ``cuda``): no-ops, placement is the model-server's."""

    def to(self, device: Any) -> Any:
        accept_noop(type(self).__name__, "device", device)
        return self

    def cpu(self) -> Any:
        return self

    def cuda(self) -> Any:
        return self


def refuse(who: str, name: str, why: str):
    """The error of an interpreto argument value the mesh cannot honour."""
    return invalid(f"{who}({name}=...): {why}", name)


def warn_once(key: str, message: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        warnings.warn(message, UserWarning, stacklevel=3)


_WARNED: set[str] = set()


# ---------------------------------------------------------------------------
# activations: torch tensors (interpreto) that remember their activation set
# ---------------------------------------------------------------------------
def activations_tensor(activation_set: Any):
    """The rows of an activation set as a float32 torch tensor, as interpreto
    returns them, which remembers the set it came from: given back to a
    concept explainer or metric unchanged, the set is used where it is
    stored; sliced or modified (a new tensor, or an in-place change), the
    tensor's own values are sent instead."""
    tensor = activation_set.torch(show_progress=False)
    tensor._xaimesh_set = (activation_set, tensor._version)  # noqa: SLF001
    return tensor


def mesh_activations(activations: Any, split_point: Any = None) -> Any:
    """What the native SDK takes for interpreto's activations: the stored set
    of an unchanged tensor from `get_activations`, else the values (a tensor,
    an array, or {split_point: ...} of the 0.4 API)."""
    if isinstance(activations, dict):
        if split_point is not None and split_point in activations:
            return mesh_activations(activations[split_point])
        if len(activations) == 1:
            return mesh_activations(next(iter(activations.values())))
        raise ValueError(f"activations hold several split points ({list(activations)}): give one of them")
    remembered = getattr(activations, "_xaimesh_set", None)
    if remembered is not None and remembered[1] == activations._version:
        return remembered[0]
    return activations
