"""interpreto 0.4's model_wrapping package over the mesh."""

from .model_with_split_points import ModelWithSplitPoints

__all__ = ["ModelWithSplitPoints"]
