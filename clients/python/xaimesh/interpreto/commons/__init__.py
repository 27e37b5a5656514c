"""interpreto.commons over the mesh: granularities and the distance functions
of ``ReconstructionError`` (``commons.distances``)."""

from .distances import DistanceFunctions
from .granularity import Granularity, GranularityAggregationStrategy

__all__ = ["DistanceFunctions", "Granularity", "GranularityAggregationStrategy"]
