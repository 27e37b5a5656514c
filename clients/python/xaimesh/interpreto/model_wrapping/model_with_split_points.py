"""interpreto 0.4's model_wrapping.model_with_split_points."""

from .._compat import ActivationGranularity
from ..concepts.splitters import ModelWithSplitPoints

__all__ = ["ActivationGranularity", "ModelWithSplitPoints"]
