"""A standalone HTML report of an explanation session (no external resources).

    report = Report("xaimesh seed flow")
    report.add_attributions(attributions)
    report.add_metric_curves(detailed_scores)
    report.add_concepts(labels, labeller.results_, scores)
    report.add_metrics({"MSE": mse, "Sparsity": sparsity})
    report.save("out/report.html")
"""

from __future__ import annotations

import html
import math
import os
import tempfile
from pathlib import Path
from typing import Any

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{font-size:1.6rem}h2{font-size:1.2rem;border-bottom:1px solid #ddd;padding-bottom:.3rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{border:1px solid #ddd;padding:.35rem .5rem;
vertical-align:top;text-align:left}th{background:#f5f5f5}.num{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#777}.ex{display:inline-block;background:#fff4d6;border-radius:3px;padding:0 .25rem;margin:.1rem}
.err{color:#b00020}.note{background:#f0f6ff;border-left:3px solid #4a7bd0;padding:.5rem .8rem}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}"


#: Width of one character of the legend (font-size 11), to size the drawing so no legend is cut.
LEGEND_CHAR_PX = 7
LEGEND_ROW_PX = 16


def curve_svg(series: list[tuple[str, list[float], list[float], str]], *, width: int = 520, height: int = 260,
              x_label: str = "fraction of elements removed", y_label: str = "target probability") -> str:
    """A line chart of (name, xs, ys, colour) series as inline SVG; the
    legend goes under the axis label, one row per series, and the drawing is
    widened when a legend row is longer than it (nothing is clipped)."""
    pad_l, pad_b, pad_t, pad_r = 48, 36, 12, 16
    legend_x = pad_l
    longest = max((len(name) for name, *_ in series), default=0)
    plot_width, plot_height = width, height
    width = max(plot_width, legend_x + 26 + LEGEND_CHAR_PX * longest + pad_r)
    height = plot_height + LEGEND_ROW_PX * len(series) + 6
    ys_all = [y for _, _, ys, _ in series for y in ys if y is not None and not math.isnan(y)]
    y_max = max(ys_all + [1e-9])
    y_max = 1.0 if y_max > 0.5 else y_max * 1.1
    w, h = plot_width - pad_l - pad_r, plot_height - pad_t - pad_b

    def px(x: float, y: float) -> str:
        return f"{pad_l + x * w:.1f},{pad_t + h - (y / y_max) * h:.1f}"

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
             f'<rect x="{pad_l}" y="{pad_t}" width="{w}" height="{h}" fill="#fafafa" stroke="#ccc"/>']
    for i in range(5):
        y = y_max * i / 4
        parts.append(f'<text x="{pad_l - 6}" y="{pad_t + h - h * i / 4 + 4:.1f}" font-size="10" '
                     f'text-anchor="end">{y:.2f}</text>')
        parts.append(f'<text x="{pad_l + w * i / 4:.1f}" y="{pad_t + h + 14}" font-size="10" '
                     f'text-anchor="middle">{i / 4:.2f}</text>')
    parts.append(f'<text x="{pad_l + w / 2}" y="{plot_height - 4}" font-size="11" text-anchor="middle">'
                 f'{_e(x_label)}</text>')
    parts.append(f'<text x="12" y="{pad_t + h / 2}" font-size="11" text-anchor="middle" '
                 f'transform="rotate(-90 12 {pad_t + h / 2})">{_e(y_label)}</text>')
    for k, (name, xs, ys, colour) in enumerate(series):
        points = " ".join(px(x, y) for x, y in zip(xs, ys) if y is not None and not math.isnan(y))
        dash = ' stroke-dasharray="5,4"' if k else ""
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="{points}"/>')
        row_y = plot_height + LEGEND_ROW_PX * k + 8
        parts.append(f'<line x1="{legend_x}" x2="{legend_x + 20}" y1="{row_y}" y2="{row_y}" stroke="{colour}" '
                     f'stroke-width="2"{dash}/>')
        parts.append(f'<text x="{legend_x + 26}" y="{row_y + 4}" font-size="11">{_e(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


class Report:
    """Sections of HTML assembled into one self-contained page."""

    def __init__(self, title: str):
        self.title = title
        self.sections: list[tuple[str, str]] = []

    def add_html(self, heading: str, body: str) -> Report:
        self.sections.append((heading, body))
        return self

    def add_attributions(self, attributions, heading: str = "Attributions") -> Report:
        from xaimesh.attributions import plot_attributions

        return self.add_html(heading, plot_attributions(attributions, show=False).html())

    def add_metric_curves(self, detailed, heading: str | None = None) -> Report:
        """Deletion / Insertion curves of each output against the random-order baseline."""
        body = []
        for output in detailed:
            series = [(f"attribution order (AUC {_fmt(output.auc)})", list(map(float, output.fractions)),
                       list(map(float, output.scores)), "#c0392b")]
            if output.random_scores is not None:
                series.append((f"random order (AUC {_fmt(output.random_auc)})",
                               list(map(float, output.random_fractions)), list(map(float, output.random_scores)),
                               "#7f8c8d"))
            verb = "removed" if output.metric == "deletion" else "inserted"
            verdict = {True: "beats", False: "does not beat", None: "has no"}[output.beats_random]
            body.append(f'<p>Output {output.index}: {output.better} AUC is better; the attribution {verdict} '
                        f'the random-order baseline.</p>'
                        + curve_svg(series, x_label=f"fraction of elements {verb}"))
        metric = detailed[0].metric.capitalize() if len(detailed) else "Metric"
        return self.add_html(heading or f"{metric} curve", "\n".join(body))

    def add_concepts(self, labels: dict[int, str | None], results: dict | None = None, scores=None,
                     heading: str = "Concepts", max_examples: int = 6,
                     extractive_labels: dict[int, str | None] | None = None) -> Report:
        """A table of concepts: label, scores, the extractive label (when given), top examples."""
        rows = []
        methods = ["detection", "fuzzing"] if scores is not None else []
        for index, label in labels.items():
            result = (results or {}).get(index)
            examples = ""
            if result is not None and result.examples:
                examples = " ".join(f'<span class="ex" title="activation {ex.activation:.3f}">{_e(ex.text)}</span>'
                                    for ex in result.examples[:max_examples])
            label_html = _e(label) if label is not None else '<span class="muted">never active</span>'
            if result is not None and result.error is not None:
                label_html = f'<span class="err">{_e(result.error.code)}: {_e(result.error.message)}</span>'
            cells = [f'<td class="num">{index}</td>', f"<td>{label_html}</td>"]
            for method in methods:
                cells.append(f'<td class="num">{_fmt((scores.scores.get(index) or {}).get(method), 2)}</td>')
            if extractive_labels is not None:
                words = extractive_labels.get(index)
                cells.append(f"<td>{_e(words) if words is not None else ''}</td>")
            cells.append(f"<td>{examples}</td>")
            rows.append("<tr>" + "".join(cells) + "</tr>")
        head = "<tr><th>#</th><th>label</th>" + "".join(f"<th>{m} (balanced acc.)</th>" for m in methods) + \
               ("<th>extractive label</th>" if extractive_labels is not None else "") + "<th>top examples</th></tr>"
        note = ""
        if scores is not None:
            note = (f'<p class="note">Label scores by {_e(scores.scorer)}: mean detection '
                    f'{_fmt(scores.mean_detection, 2)}, mean fuzzing {_fmt(scores.mean_fuzzing, 2)} '
                    f'(0.5 = chance).' + (" The scorer is the labeller, so scores are optimistic."
                                          if scores.scorer_is_labeller else "") + "</p>")
        return self.add_html(heading, note + f"<table>{head}{''.join(rows)}</table>")

    def add_metrics(self, values: dict[str, float], heading: str = "Concept metrics") -> Report:
        rows = "".join(f'<tr><td>{_e(k)}</td><td class="num">{_fmt(v, 4)}</td></tr>' for k, v in values.items())
        return self.add_html(heading, f"<table><tr><th>metric</th><th>value</th></tr>{rows}</table>")

    def html(self) -> str:
        body = "\n".join(f"<section><h2>{_e(h)}</h2>\n{b}\n</section>" for h, b in self.sections)
        return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(self.title)}</title>'
                f"<style>{STYLE}</style></head><body><h1>{_e(self.title)}</h1>\n{body}\n</body></html>")

    def _repr_html_(self) -> str:
        return self.html()

    def save(self, path: str | Path) -> Path:
        """Writes the page atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, delete=False, suffix=".tmp") as f:
            f.write(self.html())
        os.replace(f.name, path)
        return path
