"""A sample's tokens coloured by concept activation, with the concepts' labels and importances.

    tokens = model.tokenizer.tokenize(text)                    # or any list of token strings
    codes = concepts.encode_activations(activations_of_text)   # [tokens, concepts]
    plot_concepts(sample=tokens, concepts_activations=codes,
                  concepts_labels=labels, concepts_importances=importances)   # .save_html(path)

The keywords are interpreto's ``plot_concepts`` (its local mode, one sample).
The HTML view lists the ``top_k`` concepts (by |importance| when importances
are given, else by their largest activation on the sample) with their label
and an importance bar; the sample's tokens are shaded by the selected
concept's activation, relative to that concept's largest |activation| on the
sample (orange where it is positive, blue where negative). The first concept is
selected without JavaScript; clicking another one re-shades the tokens. The
page is self-contained (inline CSS and JavaScript).
"""

from __future__ import annotations

import html
import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xaimesh.attributions.plots import present, write_page

__all__ = ["ConceptPlot", "plot_concepts"]

_POS = (243, 156, 18)  # orange: the concept is active
_NEG = (33, 102, 172)  # blue: negative activation (signed methods)

_STYLE = """
.xm-cp{font:14px/1.6 system-ui,sans-serif;color:#111;display:flex;gap:16px;flex-wrap:wrap}
.xm-cp .xm-list{min-width:16em;max-width:24em}
.xm-cp .xm-c{display:block;width:100%;text-align:left;border:1px solid #ddd;background:#fff;margin:2px 0;
padding:3px 6px;cursor:pointer;font:inherit}
.xm-cp .xm-c[aria-pressed=true]{border-color:#e67e22;box-shadow:inset 3px 0 0 #e67e22}
.xm-cp .xm-bar{display:block;height:4px;background:#f39c12;margin-top:2px}
.xm-cp .xm-bar.xm-neg{background:#2166ac}
.xm-cp .xm-text{flex:1;min-width:20em;white-space:pre-wrap}
.xm-cp .xm-t{border-radius:3px}
"""

_SCRIPT = """
(function(){var root=document.getElementById('%s');if(!root)return;
var colour=function(v){var a=Math.min(1,Math.abs(v)),e=v>=0?[%d,%d,%d]:[%d,%d,%d];
return 'rgb('+e.map(function(c){return Math.round(255+a*(c-255));}).join(',')+')';};
root.querySelectorAll('.xm-c').forEach(function(b){b.addEventListener('click',function(){
root.querySelectorAll('.xm-c').forEach(function(o){o.setAttribute('aria-pressed',o===b?'true':'false');});
var j=+b.dataset.j;root.querySelectorAll('.xm-t').forEach(function(t){
t.style.background=colour(JSON.parse(t.dataset.a)[j]);});});});})();
"""


def _colour(value: float) -> str:
    a = min(1.0, abs(value))
    end = _POS if value >= 0 else _NEG
    r, g, b = (round(255 + a * (c - 255)) for c in end)
    return f"rgb({r},{g},{b})"


def _labels(concepts_labels: Any, k: int) -> list[str]:
    if concepts_labels is None:
        return [f"concept {j}" for j in range(k)]
    if isinstance(concepts_labels, dict):
        return [_label_text(concepts_labels.get(j), j) for j in range(k)]
    labels = list(concepts_labels)
    if len(labels) != k:
        raise ValueError(f"concepts_labels has {len(labels)} labels for {k} concepts")
    return [_label_text(label, j) for j, label in enumerate(labels)]


def _label_text(label: Any, j: int) -> str:
    if label is None:
        return f"concept {j}"
    if isinstance(label, (list, tuple)):
        return ", ".join(str(x) for x in label)
    return str(label)


class ConceptPlot:
    """`_repr_html_` for notebooks, `save_html(path)` for a standalone page, `str()` for a terminal."""

    def __init__(self, sample: list[str], activations: np.ndarray, labels: list[str], importances: np.ndarray | None,
                 shown: list[int]) -> None:
        self.sample, self.activations, self.labels = sample, activations, labels
        self.importances, self.shown = importances, shown

    def _scaled(self) -> np.ndarray:
        """Each shown concept's activations over the sample divided by its largest |activation| on it."""
        cols = self.activations[:, self.shown]
        top = np.abs(cols).max(axis=0)
        return np.divide(cols, top, out=np.zeros_like(cols), where=top > 0)

    def html(self) -> str:
        esc = html.escape
        root = f"xm-cp-{uuid.uuid4().hex[:8]}"
        scaled = self._scaled()
        scale = float(np.abs(self.importances).max()) if self.importances is not None else 0.0
        buttons = []
        for i, j in enumerate(self.shown):
            bar = ""
            if self.importances is not None:
                value = float(self.importances[j])
                width = 100 * abs(value) / scale if scale > 0 else 0
                bar = (f"<span class='xm-bar{' xm-neg' if value < 0 else ''}' style='width:{width:.0f}%'></span>")
            title = f"concept {j}" + (f", importance {float(self.importances[j]):+.3g}"
                                      if self.importances is not None else "")
            buttons.append(f"<button type='button' class='xm-c' data-j='{i}' aria-pressed='{str(i == 0).lower()}' "
                           f"title='{esc(title, quote=True)}'>{esc(self.labels[j])}{bar}</button>")
        tokens = []
        for p, token in enumerate(self.sample):
            values = json.dumps([round(float(v), 4) for v in scaled[p]])
            tip = "; ".join(f"{self.labels[j]}: {float(self.activations[p, j]):.3g}" for j in self.shown[:5])
            first = float(scaled[p, 0]) if self.shown else 0.0
            tokens.append(f"<span class='xm-t' data-a='{values}' style='background:{_colour(first)}' "
                          f"title='{esc(tip, quote=True)}'>{esc(token)}</span>")
        script = _SCRIPT % (root, *_POS, *_NEG)
        return (f"<div class='xm-cp' id='{root}'><style>{_STYLE}</style><div class='xm-list'>{''.join(buttons)}</div>"
                f"<div class='xm-text'>{''.join(tokens)}</div><script>{script}</script></div>")

    def _repr_html_(self) -> str:
        return self.html()

    def save_html(self, path: str | Path) -> Path:
        """Writes a standalone, self-contained HTML page; returns the path."""
        return write_page(path, "Concepts: " + "".join(self.sample)[:80], self.html())

    def __str__(self) -> str:
        lines = []
        for j in self.shown:
            order = np.argsort(-self.activations[:, j], kind="stable")[:5]
            top = ", ".join(f"{self.sample[p]!r} {float(self.activations[p, j]):.3g}" for p in order
                            if self.activations[p, j] > 0)
            importance = f" (importance {float(self.importances[j]):+.3g})" if self.importances is not None else ""
            lines.append(f"{self.labels[j]}{importance}: {top or 'not active on this sample'}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<ConceptPlot: {len(self.sample)} tokens, {len(self.shown)} concepts; .save_html(path)>"


def plot_concepts(*, sample: Sequence[str], concepts_activations: Any, concepts_labels: Any = None,
                  concepts_importances: Any = None, top_k: int | None = 10, show: bool | None = None) -> ConceptPlot:
    """Renders one sample's tokens coloured by concept activation.

    ``sample``: the tokens (strings, as they should be shown); ``concepts_activations``:
    [tokens, concepts]; ``concepts_labels``: a list (one per concept) or a
    dict {concept: label} (labels may be lists of words); ``concepts_importances``:
    [concepts], or [outputs, concepts] (summed over the outputs, e.g. the rows of
    ``concept_output_gradient``); ``top_k`` concepts are shown (None = all).
    ``show`` as for ``plot_attributions``."""
    tokens = [str(t) for t in sample]
    acts = np.asarray(concepts_activations.detach().cpu().numpy() if hasattr(concepts_activations, "detach")
                      else concepts_activations, dtype=np.float64)
    if acts.ndim != 2 or acts.shape[0] != len(tokens):
        raise ValueError(f"concepts_activations must be [tokens, concepts] with {len(tokens)} rows, "
                         f"got shape {list(acts.shape)}")
    k = acts.shape[1]
    importances = None
    if concepts_importances is not None:
        importances = np.asarray(concepts_importances, dtype=np.float64)
        if importances.ndim == 2:
            importances = importances.sum(axis=0)
        if importances.shape != (k,):
            raise ValueError(f"concepts_importances must be [concepts] or [outputs, concepts] with {k} concepts, "
                             f"got shape {list(np.shape(concepts_importances))}")
        importances = np.nan_to_num(importances)
    if top_k is not None and (int(top_k) != top_k or top_k < 1):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
    ranking = np.abs(importances) if importances is not None else acts.max(axis=0, initial=0.0)
    shown = [int(j) for j in np.argsort(-ranking, kind="stable")[: top_k or k]]
    return present(ConceptPlot(tokens, acts, _labels(concepts_labels, k), importances, shown), show)
