"""interpreto 0.5.2's LogitLens over the native `xaimesh.LogitLens`."""

from __future__ import annotations

from typing import Any

from ..concepts.splitters import AllLayersSplitter

__all__ = ["LensResults", "LogitLens"]


class LensResults(dict):
    """interpreto's LensResults ({activation name: {"top_indices", "top_scores"}},
    each (1, positions, top_k)) that also keeps the native LensOutput
    (`xaimesh_output`) and `align`, which `plot_lens` draws from."""

    xaimesh_output: Any = None
    align: bool = True


class LogitLens:
    """Logit lens over the mesh (interpreto.LogitLens): `splitter` is an
    AllLayersSplitter or what it takes (a model name or path). Rows are
    interpreto's (the input of the first block, then every block); scores are
    softmax probabilities. Classifiers are refused by the model-server
    (interpreto lenses them through their classification head)."""

    def __init__(self, splitter: str | AllLayersSplitter, top_k: int = 5) -> None:
        if top_k < 1:
            raise ValueError("`top_k` must be positive.")
        self.splitter = splitter if isinstance(splitter, AllLayersSplitter) else AllLayersSplitter(splitter)
        self.top_k = top_k
        self.native = self._native()

    def _native(self) -> Any:
        from xaimesh.lens import LogitLens as NativeLogitLens

        return NativeLogitLens(self.splitter.model, self.splitter.tokenizer, top_k=self.top_k)

    def _results(self, ids: list[int], start: int, stop: int | None, align: bool) -> LensResults:
        import torch

        out = self.native(ids)
        results = LensResults()
        for row, name in enumerate(self.splitter.activation_names):
            results[name] = {"top_indices": torch.from_numpy(out.top_token_ids[row, start:stop][None]),
                             "top_scores": torch.from_numpy(out.top_probabilities[row, start:stop][None])}
        results.xaimesh_output, results.align = out, align
        return results

    def _ids(self, text: str) -> list[int]:
        return list(self.splitter.tokenizer.encode(text, add_special_tokens=True))

    def explain(self, inputs: str, align: bool = True) -> LensResults:
        """Top predictions at every block boundary; with `align` (interpreto's
        default) column p holds the prediction of token p + 1 and the last
        position is dropped."""
        ids = self._ids(inputs)
        if align and len(ids) < 2:
            raise ValueError("Aligned explanations require at least two tokens.")
        return self._results(ids, 0, -1 if align else None, align)

    def generate(self, inputs: str, max_new_tokens: int = 10, align: bool = True) -> tuple[str, LensResults]:
        """Greedy continuation (the model-server's Generate), then the lens of
        prompt + continuation restricted to the generated tokens."""
        if max_new_tokens < 1:
            raise ValueError("`max_new_tokens` must be positive.")
        model = self.splitter.model
        if model.is_classifier:
            raise ValueError("The wrapped model does not support generation.")
        from xaimesh.mesh import RemoteTokenizer

        prompt = self._ids(inputs)
        generated = list(model.generate(prompt, max_new_tokens=max_new_tokens, do_sample=False).token_ids)
        tokenizer = self.splitter.tokenizer
        options = {} if isinstance(tokenizer, RemoteTokenizer) else {"clean_up_tokenization_spaces": False}
        text = tokenizer.decode(generated, skip_special_tokens=False, **options)
        start = len(prompt) - 1 if align else len(prompt)
        return text, self._results(prompt + generated, start, -1 if align else None, align)

    def forward(self, inputs: str, align: bool = True) -> LensResults:
        return self.explain(inputs, align)

    __call__ = forward

    def eval(self) -> "LogitLens":  # interpreto's lenses are torch modules
        return self
