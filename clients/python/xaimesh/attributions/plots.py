"""Rendering attributions: an interactive HTML view and a plain-terminal one.

    plot = plot_attributions(attributions[0])   # or a list of outputs
    plot.save_html("attributions.html")         # a standalone page

What `plot_attributions` does where:

- **In a notebook** (an IPython kernel: Jupyter, JupyterLab, VS Code, Colab)
  it returns an `AttributionPlot`, which the notebook shows inline as HTML
  when it is the cell's value (like a DataFrame). In a loop, or not last in
  the cell, use `display(plot_attributions(out))` or `show=True`.
- **Anywhere else** (terminal, script, REPL) it prints the plain-terminal
  rendering at once (`show=False` to skip) and returns the same object, so
  `.save_html(path)` is one call away.

The HTML view. Generation: the prompt and the target elements as running
text; hovering a target element (underlined) colours the input elements
by that row's attributions, clicking it pins the selection (the first
target is shown at first, and without JavaScript). Classification: one row
per explained class. The palette is diverging (red: the element raises the
target's score, blue: it lowers it, white: no effect) on a symmetric scale
[-m, +m], with m the largest |attribution| of the row shown (generation) or
of all rows (classification, so classes compare), shown in a legend. Grey
dashed elements are not covered by the row (a later target element, or the
output itself). The page is self-contained: inline CSS and JavaScript, no
external resources.
"""

from __future__ import annotations

import html
import json
import math
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .output import AttributionOutput

__all__ = ["AttributionPlot", "in_notebook", "plot_attributions", "present", "render_html", "render_text",
           "write_page"]

# RdBu end points: red raises the target's score, blue lowers it.
_POS = (178, 24, 43)
_NEG = (33, 102, 172)


def in_notebook() -> bool:
    """True inside an IPython kernel (a notebook), False in a terminal or script."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # noqa: BLE001
        return False
    return shell is not None and getattr(shell, "kernel", None) is not None


def _finite_max(values: np.ndarray) -> float:
    v = np.abs(np.asarray(values, dtype=np.float64))
    v = v[np.isfinite(v)]
    return float(v.max()) if v.size else 0.0


def _colours(value: float, scale: float) -> tuple[str, str]:
    """(background, text colour) of a value on the symmetric scale [-scale, scale]."""
    if not math.isfinite(value) or scale <= 0:
        return "transparent", "inherit"
    x = max(-1.0, min(1.0, value / scale))
    end = _POS if x >= 0 else _NEG
    a = abs(x)
    r, g, b = (round(255 + a * (c - 255)) for c in end)
    return f"rgb({r},{g},{b})", "#fff" if a > 0.6 else "#111"


def _fmt(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:+.3g}"


def _title(output: AttributionOutput) -> str:
    parts = [output.method_name or "attributions"]
    if output.model_id:
        parts.append(f"model {output.model_id}")
    if output.granularity:
        parts.append(f"{output.granularity} granularity")
    if output.inference_mode:
        parts.append(output.inference_mode)
    if output.aggregation:
        parts.append(f"{output.aggregation} aggregation")
    return " · ".join(parts)


# --------------------------------------------------------------------------- terminal


def _wrap_cells(cells: list[str], width: int) -> list[str]:
    """Cells joined by two spaces, wrapped between cells (never inside one)."""
    lines: list[str] = []
    current = ""
    for cell in cells:
        if current and len(current) + 2 + len(cell) > width:
            lines.append(current)
            current = cell
        else:
            current = f"{current}  {cell}" if current else cell
    if current:
        lines.append(current)
    return lines


def render_text(output: AttributionOutput, width: int = 100) -> str:
    """A plain-text rendering: the input and targets, then per target row
    its covered elements with their attributions (in element order)."""
    lines = [_title(output)]
    a = output.attributions
    if output.is_classification or output.explains_concepts:
        lines.append(f"input: {output.text!r}")
        lines.append(("concepts: " if output.explains_concepts else "classes: ") + ", ".join(output.target_elements))
    else:
        lines.append(f"input:   {output.input_text!r}")
        lines.append(f"targets: {output.target_text!r}")
    lines.append("rows: targets; each element with its attribution (+ raises the target's score, - lowers it)")
    for t, target in enumerate(output.target_elements):
        score = float(output.target_scores[t]) if t < len(output.target_scores) else float("nan")
        head = f"{target!r}" + (f" (score {score:.4g})" if math.isfinite(score) else "")
        row = a[t] if t < len(a) else np.zeros(0)
        cells = [f"{e!r} {_fmt(float(v))}" for e, v in zip(output.elements, row, strict=False) if math.isfinite(v)]
        lines.append(head)
        lines.extend("    " + w for w in _wrap_cells(cells or ["(no covered element)"], max(20, width - 4)))
    return "\n".join(lines)


# --------------------------------------------------------------------------- HTML

_CSS = """
#UID{font-family:-apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;font-size:14px;
 line-height:1.9;color:#111;background:#fff;padding:10px 12px;border:1px solid #ddd;border-radius:6px;max-width:980px}
#UID .xm-head{font-weight:600;margin-bottom:2px}
#UID .xm-hint{color:#666;font-size:12px;margin-bottom:6px}
#UID .xm-text{white-space:pre-wrap;word-break:break-word}
#UID .xm-el{padding:1px 0;border-radius:3px;white-space:pre-wrap}
#UID .xm-tgt{text-decoration:underline;text-decoration-color:#888;cursor:pointer}
#UID .xm-nc{color:#999;background:transparent;outline:1px dashed #ccc;outline-offset:-1px}
#UID .xm-sel{outline:2px solid #111;outline-offset:0;color:#111}
#UID .xm-arrow{color:#888;padding:0 4px}
#UID table.xm-rows{border-collapse:collapse}
#UID table.xm-rows th{text-align:right;vertical-align:top;padding:4px 10px 4px 0;font-weight:600;white-space:nowrap}
#UID table.xm-rows td{padding:4px 0;white-space:pre-wrap;word-break:break-word}
#UID .xm-score{color:#666;font-weight:400;font-size:12px}
#UID .xm-legend{display:flex;align-items:center;gap:6px;margin-top:8px;font-size:12px;color:#333}
#UID .xm-bar{display:inline-block;width:160px;height:10px;border:1px solid #ccc;
 background:linear-gradient(to right,rgb(33,102,172),rgb(255,255,255),rgb(178,24,43))}
#UID .xm-cap{margin-left:10px}
"""

_JS = """
(function(){
 var root=document.getElementById("UID");if(!root)return;
 var D=DATA,P=[178,24,43],N=[33,102,172],pinned=0;
 var els=root.querySelectorAll(".xm-el");
 function fmt(v){if(v===null||!isFinite(v))return "n/a";var s=Number(v).toPrecision(3);
  s=String(parseFloat(s));return (v>=0?"+":"")+s;}
 function col(v,m){if(v===null||!(m>0))return null;var x=Math.max(-1,Math.min(1,v/m)),e=x>=0?P:N,a=Math.abs(x);
  return ["rgb("+e.map(function(c){return Math.round(255+a*(c-255));}).join(",")+")",a>0.6?"#fff":"#111"];}
 function rowMax(r){var m=0;r.forEach(function(v){if(v!==null&&isFinite(v))m=Math.max(m,Math.abs(v));});return m;}
 function paint(t){var row=D.scores[t],m=D.global?D.gmax:rowMax(row);
  els.forEach(function(el){var i=+el.getAttribute("data-e"),v=row[i],c=col(v,m);
   el.classList.remove("xm-sel");
   if(c===null){el.classList.add("xm-nc");el.style.background="";el.style.color="";
    el.title=JSON.stringify(D.elements[i])+": not covered by this target";}
   else{el.classList.remove("xm-nc");el.style.background=c[0];el.style.color=c[1];
    el.title=JSON.stringify(D.elements[i])+": "+fmt(v);}
   if(el.getAttribute("data-t")!==null&&+el.getAttribute("data-t")===t)el.classList.add("xm-sel");});
  root.querySelector(".xm-min").textContent=fmt(-m);root.querySelector(".xm-max").textContent=fmt(m);
  var s=D.tscores[t];root.querySelector(".xm-cur").textContent=JSON.stringify(D.targets[t])+
   (s!==null&&isFinite(s)?" (score "+Number(s).toPrecision(4)+")":"");}
 root.querySelectorAll(".xm-tgt").forEach(function(el){var t=+el.getAttribute("data-t");
  el.addEventListener("mouseenter",function(){paint(t);});
  el.addEventListener("mouseleave",function(){paint(pinned);});
  el.addEventListener("click",function(){pinned=t;paint(t);});});
 paint(0);
})();
"""


def _span(output: AttributionOutput, i: int, value: float, scale: float, target: int | None = None,
          selected: bool = False) -> str:
    text = output.elements[i]
    shown = html.escape(text) if text else "&#8709;"
    classes = ["xm-el"]
    if target is not None:
        classes.append("xm-tgt")
    if selected:
        classes.append("xm-sel")
    if math.isfinite(value):
        bg, fg = _colours(value, scale)
        style = f' style="background:{bg};color:{fg}"'
        title = f"{json.dumps(text)}: {_fmt(value)}"
    else:
        classes.append("xm-nc")
        style = ""
        title = f"{json.dumps(text)}: not covered by this target"
    data_t = "" if target is None else f' data-t="{target}"'
    return f'<span class="{" ".join(classes)}" data-e="{i}"{data_t}{style} title="{html.escape(title)}">{shown}</span>'


def _gap(output: AttributionOutput, i: int) -> str:
    """The whitespace between element i - 1 and element i (the spaces between
    words), from the elements' character spans in the explained text; one
    space where the spans are not known (elements built by hand) or hold
    more than whitespace (a chat template between two messages)."""
    if i == 0:
        return ""
    prev, cur = output.segments[i - 1], output.segments[i]
    if output.text and 0 <= prev.end_char <= cur.start_char <= len(output.text) and cur.end_char > cur.start_char:
        between = output.text[prev.end_char:cur.start_char]
        if not between.strip():
            return html.escape(between)
    return " "


def _legend(low: float, high: float, caption: str) -> str:
    return ('<div class="xm-legend"><span class="xm-min">' + html.escape(_fmt(low)) + '</span>'
            '<span class="xm-bar"></span><span class="xm-max">' + html.escape(_fmt(high)) + '</span>'
            '<span class="xm-cap">lowers &#8592; score &#8594; raises' + caption + '</span></div>')


def render_html(output: AttributionOutput, *, uid: str | None = None) -> str:
    """An HTML fragment (inline CSS and JavaScript, nothing external)."""
    uid = uid or f"xm-{uuid.uuid4().hex[:12]}"
    a = np.asarray(output.attributions, dtype=np.float64)
    n_rows, n_el = a.shape if a.ndim == 2 else (0, len(output.elements))
    parts = [f'<div class="xm-attr" id="{uid}">', "<style>" + _CSS.replace("UID", uid) + "</style>",
             f'<div class="xm-head">{html.escape(_title(output))}</div>']
    if output.is_classification or output.explains_concepts or n_rows == 0:
        scale = _finite_max(a)
        what = "concept" if output.explains_concepts else "class"
        parts.append(f'<div class="xm-hint">One row per {what}; hover an element for its value.</div>')
        parts.append('<table class="xm-rows">')
        for t in range(n_rows):
            score = float(output.target_scores[t]) if t < len(output.target_scores) else float("nan")
            label = html.escape(output.target_elements[t] if t < len(output.target_elements) else str(t))
            sc = f'<br><span class="xm-score">score {score:.4g}</span>' if math.isfinite(score) else ""
            spans = "".join(_gap(output, i) + _span(output, i, float(a[t, i]), scale) for i in range(n_el))
            parts.append(f"<tr><th>{label}{sc}</th><td>{spans}</td></tr>")
        parts.append("</table>")
        parts.append(_legend(-scale, scale, " (scale shared by all rows)"))
        parts.append("</div>")
        return "".join(parts)
    # generation: row 0 pre-rendered, JavaScript repaints on hover / click
    P = output.num_prompt_elements
    row0 = a[0]
    scale = _finite_max(row0)
    parts.append('<div class="xm-hint">Hover or click a target element (underlined) to colour the elements '
                 'it is attributed to; click pins it.</div>')
    spans = []
    for i in range(n_el):
        t = i - P
        spans.append(_gap(output, i))
        if i == P:
            spans.append('<span class="xm-arrow">&#8594;</span>')
        if 0 <= t < n_rows:
            spans.append(_span(output, i, float(row0[i]), scale, target=t, selected=t == 0))
        else:
            spans.append(_span(output, i, float(row0[i]), scale))
    parts.append('<div class="xm-text">' + "".join(spans) + "</div>")
    s0 = float(output.target_scores[0]) if len(output.target_scores) else float("nan")
    current = json.dumps(output.target_elements[0]) + (f" (score {s0:.4g})" if math.isfinite(s0) else "")
    parts.append(_legend(-scale, scale, ' · target: <b class="xm-cur">' + html.escape(current) + "</b>"))
    data = {
        "scores": [[None if not math.isfinite(v) else float(v) for v in row] for row in a],
        "elements": list(output.elements),
        "targets": list(output.target_elements),
        "tscores": [None if not math.isfinite(v) else float(v) for v in np.asarray(output.target_scores, float)],
        "global": False,
        "gmax": _finite_max(a),
    }
    # "</" inside a script would end it: escape it in the JSON.
    payload = json.dumps(data, allow_nan=False).replace("</", "<\\/")
    parts.append("<script>" + _JS.replace("UID", uid).replace("DATA", payload) + "</script>")
    parts.append("</div>")
    return "".join(parts)


# --------------------------------------------------------------------------- the plot object


class AttributionPlot:
    """The rendering of one or more attribution outputs: `_repr_html_` for
    notebooks, `save_html(path)` for a standalone page, `str()` for a
    terminal."""

    def __init__(self, outputs: Sequence[AttributionOutput]) -> None:
        self.outputs = list(outputs)

    def html(self) -> str:
        """The HTML fragment (what a notebook shows)."""
        return '<hr style="border:0;border-top:1px solid #eee">'.join(render_html(o) for o in self.outputs)

    def _repr_html_(self) -> str:
        return self.html()

    def save_html(self, path: str | Path) -> Path:
        """Writes a standalone, self-contained HTML page; returns the path."""
        return write_page(path, _title(self.outputs[0]) if self.outputs else "attributions", self.html())

    def __str__(self) -> str:
        return "\n\n".join(render_text(o) for o in self.outputs)

    def __repr__(self) -> str:
        what = ", ".join(f"{o.method_name} {o.shape[0]}x{o.shape[1]}" for o in self.outputs)
        return f"<AttributionPlot: {what}; .save_html(path) writes a standalone page>"


def plot_attributions(attributions: AttributionOutput | Sequence[AttributionOutput], *,
                      show: bool | None = None) -> AttributionPlot:
    """Renders attributions (one output or a list).

    Returns an `AttributionPlot` (`_repr_html_`, `save_html(path)`, `str()`).
    `show=None`: in a notebook, nothing more (the returned object displays
    as the cell's value); elsewhere, print the terminal rendering.
    `show=True`: display now (HTML in a notebook, text elsewhere);
    `show=False`: only return the object.
    """
    outputs = [attributions] if isinstance(attributions, AttributionOutput) else list(attributions)
    for o in outputs:
        if not isinstance(o, AttributionOutput):
            raise TypeError(f"plot_attributions takes AttributionOutput objects, got {type(o).__name__}")
    return present(AttributionPlot(outputs), show)


def present(plot, show: bool | None):
    """Shows a plot object (with `_repr_html_` and `__str__`) as the plot_*
    functions promise: `show=None` prints it outside a notebook (a notebook
    displays the returned object itself), `True` displays it now, `False`
    never. Returns the plot."""
    notebook = in_notebook()
    if show or (show is None and not notebook):
        if notebook:
            from IPython.display import display  # type: ignore[import-not-found]

            display(plot)
        else:
            print(plot)
    return plot


def write_page(path: str | Path, title: str, fragment: str) -> Path:
    """Writes an HTML fragment as a standalone, self-contained page; returns the path."""
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title></head><body style=\"margin:16px;background:#fafafa\">\n"
            + fragment + "\n</body></html>\n")
    path = Path(path)
    path.write_text(page, encoding="utf-8")
    return path
