"""interpreto.lens over the mesh: LogitLens and TunedLens (interpreto 0.5.2's
classes, arguments and LensResults), computed by the model-server; the
tuned lens's translators are fitted there and stored by the
concept-service. Differences: docs/interpreto-compat.md, "Lenses"."""

from __future__ import annotations

from .logit_lens import LogitLens
from .tuned_lens import TunedLens

__all__ = ["LogitLens", "TunedLens"]
