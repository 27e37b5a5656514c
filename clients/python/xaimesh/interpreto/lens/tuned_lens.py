"""interpreto 0.5.2's TunedLens over the native `xaimesh.TunedLens`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..concepts.splitters import AllLayersSplitter
from .logit_lens import LogitLens

__all__ = ["TunedLens"]


class TunedLens(LogitLens):
    """Tuned lens over the mesh (interpreto.TunedLens): translators start at
    zero (a new lens is the logit lens, bit for bit), `fit` has the
    model-server train them with interpreto's objective and defaults, and the
    concept-service stores them: `lens_id` names them (interpreto keeps them
    in the object's `state_dict()`); `TunedLens(splitter, lens_id=...)` uses
    stored ones."""

    def __init__(self, splitter: str | AllLayersSplitter, top_k: int = 5, *, lens_id: str | None = None) -> None:
        self._lens_id = lens_id
        super().__init__(splitter, top_k)

    def _native(self) -> Any:
        from xaimesh.lens import LogitLens as NativeLogitLens
        from xaimesh.lens import TunedLens as NativeTunedLens

        model, tokenizer = self.splitter.model, self.splitter.tokenizer
        if self._lens_id is None:  # zero translators: the logit lens exactly
            return NativeLogitLens(model, tokenizer, top_k=self.top_k)
        return NativeTunedLens.load(model, self._lens_id, tokenizer, top_k=self.top_k)

    @property
    def lens_id(self) -> str | None:
        """"tunedLenses/{id}" once fitted or loaded."""
        return self._lens_id

    def fit(self, inputs: str | Iterable[str], epochs: int = 1, learning_rate: float = 1e-3,
            weight_decay: float = 0.0) -> list[float]:
        """Fits every translator on the texts (one AdamW step per text); returns the mean loss of each epoch."""
        from xaimesh.lens import TunedLens as NativeTunedLens

        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        if not texts:
            raise ValueError("Tuned Lens fitting requires at least one text.")
        if epochs < 1:
            raise ValueError("`epochs` must be positive.")
        native = NativeTunedLens(self.splitter.model, self.splitter.tokenizer, top_k=self.top_k)
        losses = native.fit(texts, epochs=epochs, learning_rate=learning_rate, weight_decay=weight_decay)
        self.native, self._lens_id = native, native.lens_id
        return losses

    def train(self, mode: bool = True) -> "TunedLens":  # interpreto's lenses are torch modules
        del mode
        return self
