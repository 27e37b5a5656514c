"""interpreto.commons over the mesh (DistanceFunctions is not provided:
distances are computed where the metrics run; see docs/interpreto-compat.md)."""

from .granularity import Granularity, GranularityAggregationStrategy

__all__ = ["Granularity", "GranularityAggregationStrategy"]
