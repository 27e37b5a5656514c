"""One standalone HTML page per concept model: every concept's labels, scores,
top examples in context, activation histogram, output tokens and importance.

    page = concept_page(concepts, activations, labels=llm_labels, label_scores=scores,
                        importance_text="Alice offers a drink to Bob.")
    page.save_html("out/concepts.html")

Per concept (docs/concept-page.md): the LLM label (when given) with its
detection / fuzzing balanced accuracies, the extractive label
(ExtractiveLabels), the top examples with the activating tokens highlighted in
context (GetTopExamples), a histogram of the concept's non-zero activations
over the set with the share of rows where it is zero, the output tokens its
decoder direction promotes and suppresses (``output_tokens``, causal LMs) and,
with ``importance_text``, its importance for that text's next tokens
(``concept_output_gradient``: the mean over targets of the summed
|concept x gradient|). The page is self-contained (inline CSS, SVG and
JavaScript); a list of the concepts selects the one shown (``#concept-N`` in
the address opens concept N), and every card is shown without JavaScript.
"""

from __future__ import annotations

import html
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xaimesh.attributions.plots import write_page

__all__ = ["ConceptCard", "ConceptPage", "concept_page", "render_concept_page"]


@dataclass
class ConceptCard:
    """What the page shows of one concept (plain values, so rendering is testable without services)."""

    index: int
    llm_label: str | None = None
    extractive_label: str | None = None
    scores: dict[str, float | None] = field(default_factory=dict)  # "detection" / "fuzzing" balanced accuracies
    examples: list[list[tuple[str, bool, float]]] = field(default_factory=list)  # context tokens: text, highlighted, act.
    histogram: tuple[list[float], list[int]] = ([], [])  # bin edges, counts of the non-zero activations
    zero_share: float = 0.0
    promoted: list[tuple[str, float]] = field(default_factory=list)
    suppressed: list[tuple[str, float]] = field(default_factory=list)
    importance: float | None = None


_STYLE = """
body{margin:0}
.xm-page{font:14px/1.5 system-ui,sans-serif;color:#111;display:flex;min-height:100vh}
.xm-page nav{width:18em;border-right:1px solid #ddd;padding:8px;overflow:auto;max-height:100vh;position:sticky;top:0}
.xm-page nav button{display:block;width:100%;text-align:left;border:0;background:none;padding:3px 6px;cursor:pointer;
font:inherit;border-radius:4px}
.xm-page nav button[aria-pressed=true]{background:#fdebd0}
.xm-page main{flex:1;padding:8px 16px}
.xm-card{border:1px solid #ddd;border-radius:6px;padding:8px 12px;margin:0 0 12px}
.xm-card h2{font-size:1.1em;margin:0 0 4px}
.xm-muted{color:#777}
.xm-ex{margin:2px 0;white-space:pre-wrap}
.xm-ex mark{background:#f5b041;border-radius:3px}
.xm-tok{display:inline-block;margin:1px 6px 1px 0;padding:0 4px;border-radius:3px;background:#eaf2f8}
.xm-tok.xm-down{background:#fdedec}
.xm-grid{display:flex;gap:24px;flex-wrap:wrap}
"""

_SCRIPT = """
(function(){var root=document.getElementById('%s');if(!root)return;
var cards=root.querySelectorAll('.xm-card'),buttons=root.querySelectorAll('nav button');
function pick(i){cards.forEach(function(c){c.hidden=c.dataset.i!==i;});
buttons.forEach(function(b){b.setAttribute('aria-pressed',b.dataset.i===i?'true':'false');});}
buttons.forEach(function(b){b.addEventListener('click',function(){pick(b.dataset.i);});});
var wanted=(location.hash.match(/^#concept-(\\d+)$/)||[])[1];
if(buttons.length)pick(wanted!==undefined&&root.querySelector('.xm-card[data-i="'+wanted+'"]')?wanted:buttons[0].dataset.i);
})();
"""


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _histogram_svg(edges: list[float], counts: list[int], width: int = 260, height: int = 60) -> str:
    if not counts or max(counts) == 0:
        return "<p class='xm-muted'>never active on the set</p>"
    top = max(counts)
    step = width / len(counts)
    bars = "".join(f"<rect x='{i * step:.1f}' y='{height - height * c / top:.1f}' width='{max(step - 1, 1):.1f}' "
                   f"height='{height * c / top:.1f}' fill='#e67e22'><title>{edges[i]:.3g} to {edges[i + 1]:.3g}: "
                   f"{c}</title></rect>" for i, c in enumerate(counts))
    return (f"<svg width='{width}' height='{height + 14}' role='img' aria-label='activation histogram'>{bars}"
            f"<text x='0' y='{height + 12}' font-size='10'>{edges[0]:.3g}</text>"
            f"<text x='{width}' y='{height + 12}' font-size='10' text-anchor='end'>{edges[-1]:.3g}</text></svg>")


def _card_html(card: ConceptCard) -> str:
    esc = html.escape
    title = esc(card.llm_label) if card.llm_label else "<span class='xm-muted'>no LLM label</span>"
    scores = ", ".join(f"{name} {_fmt(value)}" for name, value in card.scores.items())
    lines = [f"<h2>Concept {card.index}: {title}</h2>",
             f"<p>extractive label: <b>{esc(card.extractive_label) if card.extractive_label else 'none'}</b>"
             + (f" · label scores (balanced accuracy): {esc(scores)}" if scores else "")
             + (f" · importance: {card.importance:.3g}" if card.importance is not None else "") + "</p>"]
    examples = []
    for context in card.examples:
        parts = [f"<mark title='activation {a:.3g}'>{esc(t)}</mark>" if hit else esc(t) for t, hit, a in context]
        examples.append(f"<div class='xm-ex'>{''.join(parts)}</div>")
    lines.append("<div class='xm-grid'><div><h3>Top examples</h3>"
                 + ("".join(examples) or "<p class='xm-muted'>none</p>") + "</div>")
    lines.append(f"<div><h3>Activations</h3>{_histogram_svg(*card.histogram)}"
                 f"<p class='xm-muted'>zero on {100 * card.zero_share:.1f} % of the rows</p></div></div>")
    if card.promoted or card.suppressed:
        up = "".join(f"<span class='xm-tok' title='{v:.3g}'>{esc(t)}</span>" for t, v in card.promoted)
        down = "".join(f"<span class='xm-tok xm-down' title='{v:.3g}'>{esc(t)}</span>" for t, v in card.suppressed)
        lines.append(f"<h3>Output tokens</h3><p>promotes: {up}</p><p>suppresses: {down}</p>")
    return f"<section class='xm-card' data-i='{card.index}'>{''.join(lines)}</section>"


def render_concept_page(cards: list[ConceptCard], title: str = "Concepts") -> str:
    """The page's HTML fragment: a list of the concepts, one card each."""
    root = f"xm-page-{uuid.uuid4().hex[:8]}"
    nav = "".join(f"<button type='button' data-i='{c.index}'>{c.index}: "
                  f"{html.escape(c.llm_label or c.extractive_label or '')}</button>" for c in cards)
    body = "".join(_card_html(c) for c in cards)
    return (f"<div class='xm-page' id='{root}'><style>{_STYLE}</style><nav aria-label='concepts'>"
            f"<b>{html.escape(title)}</b>{nav}</nav><main>{body}</main><script>{_SCRIPT % root}</script></div>")


class ConceptPage:
    """`save_html(path)` writes the standalone page; `_repr_html_` shows it in a notebook."""

    def __init__(self, cards: list[ConceptCard], title: str) -> None:
        self.cards, self.title = cards, title

    def html(self) -> str:
        return render_concept_page(self.cards, self.title)

    def _repr_html_(self) -> str:
        return self.html()

    def save_html(self, path: str | Path) -> Path:
        return write_page(path, self.title, self.html())


def concept_page(concept_explainer: Any, activations: Any, *, labels: dict[int, str | None] | None = None,
                 label_scores: Any = None, extractive: bool = True, k_examples: int = 6, k_context: int = 8,
                 top_k_tokens: int = 8, importance_text: str | None = None, bins: int = 30,
                 title: str | None = None) -> ConceptPage:
    """Collects every concept's card from the services (see the module doc).
    ``labels``: LLM labels ({concept: label}, e.g. ``LLMLabels.interpret``);
    ``label_scores``: ``LLMLabels.score``'s result; ``activations``: the
    stored set the concepts are read on (its texts give the examples)."""
    from xaimesh.concepts import _rpc
    from xaimesh.concepts.interpretations import ExtractiveLabels

    k = concept_explainer.nb_concepts_
    codes = concept_explainer.encode_activations(activations)
    extractive_labels = (ExtractiveLabels(concept_explainer, show_progress=False).interpret(
        latent_activations=activations) if extractive else {})
    examples = {int(ce.concept_index): ce for ce in _rpc.iter_top_examples(
        concept_explainer, activations, "all", k=k_examples, k_context=k_context, show_progress=False)}
    model = getattr(concept_explainer.model_with_split_points, "model", None)
    tokens = concept_explainer.output_tokens(top_k_tokens) if model is not None and not model.is_classifier else []
    importance = None
    if importance_text is not None:
        (grads,) = concept_explainer.concept_output_gradient(importance_text, normalization=False)
        importance = np.abs(grads).sum(axis=1).mean(axis=0)
    scores = getattr(label_scores, "scores", None) or {}
    cards = []
    for j in range(k):
        column = codes[:, j]
        active = column[column != 0]
        counts, edges = np.histogram(active, bins=bins) if active.size else (np.zeros(0, int), np.zeros(1))
        ce = examples.get(j)
        cards.append(ConceptCard(
            index=j, llm_label=(labels or {}).get(j), extractive_label=extractive_labels.get(j),
            scores=dict(scores.get(j) or {}),
            examples=[[(t.text, t.highlighted, float(t.activation)) for t in ex.context] or
                      [(ex.provenance.text, True, float(ex.activation))] for ex in (ce.examples if ce else [])],
            histogram=(edges.tolist(), counts.tolist()), zero_share=float(np.mean(column == 0)) if column.size else 0.0,
            promoted=tokens[j]["promoted"] if tokens else [], suppressed=tokens[j]["suppressed"] if tokens else [],
            importance=None if importance is None else float(importance[j])))
    name = title or f"{type(concept_explainer).__name__} {concept_explainer.concept_model_}"
    return ConceptPage(cards, name)
