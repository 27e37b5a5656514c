"""interpreto.commons.granularity: the enums."""

from .._compat import Granularity, GranularityAggregationStrategy

__all__ = ["Granularity", "GranularityAggregationStrategy"]
