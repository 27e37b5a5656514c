"""Lenses: what the model would predict from each layer's residual stream.

    lens = xaimesh.LogitLens(model, tokenizer, top_k=5)
    out = lens("The capital of France is")       # a LensOutput (a list of them for a list of texts)
    plot_lens(out)                               # inline HTML in notebooks, text elsewhere; .save_html(path)

    tuned = xaimesh.TunedLens(model, tokenizer, top_k=5)
    tuned.fit(train_texts, held_out=other_texts)  # translators fitted on the model-server, stored: tuned.lens_id
    plot_lens(tuned("The capital of France is"))  # the same LensOutput and grid
    xaimesh.TunedLens.load(model, "tunedLenses/<id>")   # after a restart

The work runs on the model-server (`LogitLens` rpc): the model's own final
norm and unembedding applied to the input of the first block and to the
output of every block (a tuned lens first applies its translators; the
concept-service stores them and sends them along). Definition and how it
differs from interpreto: docs/lenses.md.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xaimesh_contracts.tensors import to_numpy
from xaimesh_contracts.v1 import concept_pb2, model_pb2

from .attributions.plots import present, write_page

__all__ = ["LensOutput", "LensPlot", "LogitLens", "TunedLens", "plot_lens"]


@dataclass
class LensOutput:
    """The logit lens of one text: rows are `layers` ("embeddings", then every
    block), columns the input positions; position p predicts token p + 1."""

    text: str
    layers: list[str]
    input_token_ids: list[int]
    input_tokens: list[str]
    top_token_ids: np.ndarray  # int64 [layers, positions, k]
    top_probabilities: np.ndarray  # float32 [layers, positions, k]
    top_tokens: list[list[list[str]]]  # [layers][positions][k]
    next_token_probabilities: np.ndarray  # float32 [layers, positions]; NaN at the last position
    lens: str = "logit lens"  # or "tuned lens <id>"

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.top_token_ids.shape)


class LogitLens:
    """Logit lens on a causal LM served by the model-server.

    `top_k`: tokens kept per layer and position (1..100). Texts run with the
    tokenizer's own special tokens unless `add_special_tokens=False`; token id
    lists run as given. A classifier is refused (FAILED_PRECONDITION)."""

    def __init__(self, model, tokenizer=None, *, top_k: int = 5, add_special_tokens: bool = True) -> None:
        self.model = model
        self.tokenizer = tokenizer if tokenizer is not None else model.tokenizer
        self.top_k = top_k
        self.add_special_tokens = add_special_tokens

    def __call__(self, inputs: str | list[int] | Sequence[str], *, timeout: float | None = None,
                 ) -> LensOutput | list[LensOutput]:
        if isinstance(inputs, str) or (isinstance(inputs, Sequence) and inputs and isinstance(inputs[0], int)):
            return self._one(inputs, timeout)
        return [self._one(text, timeout) for text in inputs]

    explain = __call__

    def _one(self, text: str | list[int], timeout: float | None) -> LensOutput:
        if isinstance(text, str):
            ids = self.tokenizer.encode(text, add_special_tokens=self.add_special_tokens)
        else:
            ids, text = [int(i) for i in text], None
        response = self._lens(ids, timeout)
        top = to_numpy(response.top_token_ids, field="top_token_ids")
        n_layers, n_pos, k = top.shape
        flat = list(response.top_tokens)
        tokens = [[flat[(r * n_pos + p) * k:(r * n_pos + p + 1) * k] for p in range(n_pos)] for r in range(n_layers)]
        return LensOutput(
            text="".join(response.input_tokens) if text is None else text, layers=list(response.layers),
            input_token_ids=ids, input_tokens=list(response.input_tokens), top_token_ids=top,
            top_probabilities=to_numpy(response.top_probabilities, field="top_probabilities"), top_tokens=tokens,
            next_token_probabilities=to_numpy(response.next_token_probabilities, field="next_token_probabilities"),
            lens=self._name())

    def _name(self) -> str:
        return "logit lens"

    def _lens(self, ids: list[int], timeout: float | None) -> model_pb2.LogitLensResponse:
        request = model_pb2.LogitLensRequest(model=self.model.model_id, input_ids=ids, top_k=self.top_k)
        return self.model.mesh.client("model").call("LogitLens", request, timeout=timeout)


class TunedLens(LogitLens):
    """Tuned lens (Belrose et al. 2023; interpreto's TunedLens): one affine
    translator per layer, fitted so that each layer's lens matches the
    model's final next-token distribution, then used like LogitLens (same
    LensOutput, same `plot_lens` grid).

    `fit(texts, ...)` has the model-server fit the translators (progress
    shown) and the concept-service store them: `lens_id` ("tunedLenses/{id}")
    names the stored lens, `info_` holds its training losses and the
    KL(final || layer) of the logit and tuned lenses on the training and
    held-out texts. `TunedLens.load(model, lens_id)` uses a stored lens (after
    a restart too). Before fitting or loading, calling it is refused."""

    def __init__(self, model, tokenizer=None, *, top_k: int = 5, add_special_tokens: bool = True,
                 lens_id: str | None = None) -> None:
        super().__init__(model, tokenizer, top_k=top_k, add_special_tokens=add_special_tokens)
        self.lens_id = lens_id
        self.info_: concept_pb2.TunedLens | None = None

    @classmethod
    def load(cls, model, lens_id: str, tokenizer=None, *, top_k: int = 5, add_special_tokens: bool = True,
             timeout: float | None = None) -> "TunedLens":
        """A stored lens (NOT_FOUND when the concept-service has no such lens)."""
        lens = cls(model, tokenizer, top_k=top_k, add_special_tokens=add_special_tokens, lens_id=lens_id)
        response = model.mesh.client("concept").call("GetTunedLens", concept_pb2.GetTunedLensRequest(name=lens_id),
                                                      timeout=timeout)
        lens.info_, lens.lens_id = response.lens, response.lens.name
        return lens

    def fit(self, inputs: str | Sequence[str], *, held_out: Sequence[str] = (), epochs: int = 1,
            learning_rate: float = 1e-3, weight_decay: float = 0.0, display_name: str = "",
            timeout: float | None = None, show_progress: bool = True) -> list[float]:
        """Fits the translators on `inputs` (texts, one optimizer step each, `epochs` passes;
        interpreto's defaults) and stores them; returns the mean loss of each epoch."""
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        request = concept_pb2.FitTunedLensRequest(
            model=self.model.model_id, texts=texts, held_out_texts=list(held_out), epochs=epochs,
            learning_rate=learning_rate, weight_decay=weight_decay, display_name=display_name)
        for event in self.model.mesh.client("concept").stream("FitTunedLens", request, timeout=timeout,
                                                               show_progress=show_progress,
                                                               description="tuned lens"):
            if event.HasField("result"):
                self.info_ = event.result
        self.lens_id = self.info_.name
        return list(self.info_.epoch_losses)

    def _name(self) -> str:
        return f"tuned lens {self.lens_id}"

    def _lens(self, ids: list[int], timeout: float | None) -> model_pb2.LogitLensResponse:
        if self.lens_id is None:
            raise RuntimeError("this TunedLens has no translators yet: call .fit(texts) or TunedLens.load(model, "
                               "lens_id) first")
        request = concept_pb2.ApplyTunedLensRequest(tuned_lens=self.lens_id, input_ids=ids, top_k=self.top_k)
        return self.model.mesh.client("concept").call("ApplyTunedLens", request, timeout=timeout).lens


# --------------------------------------------------------------------------- rendering

_STYLE = """
.xm-lens{font:13px/1.35 system-ui,sans-serif;color:#111}
.xm-lens .xm-scroll{max-width:100%;overflow:auto}
.xm-lens table{border-collapse:collapse}
.xm-lens th,.xm-lens td{border:1px solid #ddd;padding:2px 6px;white-space:pre;text-align:center;max-width:9em;
overflow:hidden;text-overflow:ellipsis}
.xm-lens th{background:#f4f4f4;position:sticky;top:0}
.xm-lens th.xm-layer{text-align:left;position:sticky;left:0}
.xm-lens td.xm-hit{box-shadow:inset 0 0 0 2px #2ca02c}
.xm-lens .xm-key{display:inline-block;width:.8em;height:.8em;box-shadow:inset 0 0 0 2px #2ca02c;vertical-align:middle}
"""


def _visible(token: str) -> str:
    """Whitespace made visible, so a cell predicting a space or newline is not blank."""
    return token.replace(" ", "\u2420").replace("\n", "\\n").replace("\t", "\\t") if token.strip() == "" else token


def _cell_colour(p: float) -> tuple[str, str]:
    """Blue background of opacity p (a probability, 0..1), white text when dark."""
    a = 0.0 if not math.isfinite(p) else max(0.0, min(1.0, p))
    return f"rgba(31,119,180,{0.08 + 0.92 * a:.3f})", "#fff" if a > 0.6 else "#111"


def render_html(out: LensOutput) -> str:
    """A table: one row per layer (embeddings first), one column per input
    position headed by its token; each cell is the top-1 prediction for the
    next token, shaded by its probability, outlined in green where it is the
    token that actually follows; hovering shows the top-k with probabilities."""
    esc = html.escape
    head = "".join(f"<th title='position {p}'>{esc(_visible(t))}</th>" for p, t in enumerate(out.input_tokens))
    rows = []
    n_pos = len(out.input_tokens)
    for r, layer in enumerate(out.layers):
        cells = []
        for p in range(n_pos):
            prob = float(out.top_probabilities[r, p, 0])
            bg, fg = _cell_colour(prob)
            hit = p + 1 < n_pos and int(out.top_token_ids[r, p, 0]) == out.input_token_ids[p + 1]
            tip = "\n".join(f"{_visible(t)!r}: {float(q):.3g}"
                            for t, q in zip(out.top_tokens[r][p], out.top_probabilities[r, p], strict=True))
            nxt = out.next_token_probabilities[r, p]
            if math.isfinite(float(nxt)):
                tip += f"\nnext token {_visible(out.input_tokens[p + 1])!r}: {float(nxt):.3g}"
            cls = " class='xm-hit'" if hit else ""
            cells.append(f"<td{cls} style='background:{bg};color:{fg}' title='{esc(tip, quote=True)}'>"
                         f"{esc(_visible(out.top_tokens[r][p][0]))}</td>")
        rows.append(f"<tr><th class='xm-layer'>{esc(layer)}</th>{''.join(cells)}</tr>")
    title = out.lens[:1].upper() + out.lens[1:]
    legend = (f"<p>{esc(title)}: top-1 next-token prediction of each layer at each position, shaded by its "
              "probability (white 0, dark blue 1); <span class='xm-key'></span> the token that actually "
              "follows. Hover a cell for the top-k.</p>")
    return (f"<div class='xm-lens'><style>{_STYLE}</style>{legend}<div class='xm-scroll'><table>"
            f"<tr><th class='xm-layer'>layer \\ input</th>{head}</tr>{''.join(rows)}</table></div></div>")


def render_text(out: LensOutput, width: int = 10) -> str:
    """Plain-terminal rendering: the top-1 token per layer and position, with
    its probability in hundredths, a `*` where it is the token that follows."""
    def fit(s: str) -> str:
        s = _visible(s)
        return (s if len(s) <= width else s[: width - 1] + "\u2026").ljust(width)

    n_pos = len(out.input_tokens)
    name_width = max(len(name) for name in out.layers)
    lines = [" " * name_width + " | " + " ".join(fit(t) for t in out.input_tokens)]
    for r, layer in enumerate(out.layers):
        cells = []
        for p in range(n_pos):
            hit = p + 1 < n_pos and int(out.top_token_ids[r, p, 0]) == out.input_token_ids[p + 1]
            label = f"{out.top_tokens[r][p][0]}{'*' if hit else ''}:{round(100 * float(out.top_probabilities[r, p, 0]))}"
            cells.append(fit(label))
        lines.append(layer.rjust(name_width) + " | " + " ".join(cells))
    return "\n".join(lines)


class LensPlot:
    """The rendering of one or more lens outputs: `_repr_html_` for notebooks,
    `save_html(path)` for a standalone page, `str()` for a terminal."""

    def __init__(self, outputs: Sequence[LensOutput]) -> None:
        self.outputs = list(outputs)

    def html(self) -> str:
        return "<hr>".join(render_html(o) for o in self.outputs)

    def _repr_html_(self) -> str:
        return self.html()

    def save_html(self, path: str | Path) -> Path:
        """Writes a standalone, self-contained HTML page (no external resources); returns the path."""
        return write_page(path, f"{self.outputs[0].lens}: {self.outputs[0].text[:80]}" if self.outputs else "lens",
                          self.html())

    def __str__(self) -> str:
        return "\n\n".join(render_text(o) for o in self.outputs)

    def __repr__(self) -> str:
        return f"<LensPlot: {len(self.outputs)} lens output(s); .save_html(path) writes a standalone page>"


def plot_lens(outputs: LensOutput | Sequence[LensOutput], *, show: bool | None = None) -> LensPlot:
    """Renders lens outputs. `show=None`: in a notebook nothing more (the
    returned LensPlot displays as the cell's value); elsewhere print the
    terminal rendering. `show=True` displays now, `show=False` never."""
    return present(LensPlot([outputs] if isinstance(outputs, LensOutput) else outputs), show)
