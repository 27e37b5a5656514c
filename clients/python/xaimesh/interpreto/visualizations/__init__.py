"""interpreto.visualizations over the mesh: plot_attributions and
AttributionVisualization render with the native SDK's view (inline HTML in a
notebook, text in a terminal; ``save_path`` writes a standalone page).
interpreto's colour and layout options (positive_color, negative_color,
default_colormap, onclick_colormap, highlight_border, margin_right,
custom_css, normalize) are accepted and not applied: the native view has its
own colour scale, normalised per target row.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from xaimesh.attributions.plots import plot_attributions as native_plot

__all__ = ["AttributionVisualization", "plot_attributions", "plot_lens"]

_STYLE = ("positive_color", "negative_color", "default_colormap", "onclick_colormap", "highlight_border",
          "margin_right", "custom_css", "normalize")


def _native_output(attribution_output: Any, classes_names: Any) -> Any:
    out = attribution_output.to_native() if hasattr(attribution_output, "to_native") else attribution_output
    if classes_names is not None and out.task == "sequence_classification":
        names = dict(enumerate(classes_names)) if isinstance(classes_names, (list, tuple)) else dict(classes_names)
        out = dataclasses.replace(out, target_elements=[names.get(c, str(c)) for c in out.target_classes])
    return out


class AttributionVisualization:
    def __init__(self, attribution_output: Any, *, class_names: Any = None, classes_names: Any = None,
                 save_path: str | os.PathLike | None = None, **style: Any) -> None:
        unknown = sorted(set(style) - set(_STYLE))
        if unknown:
            raise TypeError(f"AttributionVisualization() got unexpected argument(s) {', '.join(unknown)}")
        self.plot = native_plot(_native_output(attribution_output, classes_names or class_names), show=False)
        self.save_path = save_path

    def display(self) -> None:
        if self.save_path is not None:
            self.plot.save_html(self.save_path)
            return
        native_plot(self.plot.outputs, show=True)


def plot_attributions(attribution_output: Any, *, classes_names: Any = None,
                      save_path: str | os.PathLike | None = None, **style: Any) -> None:
    """interpreto's plot_attributions: displays (or saves to ``save_path``) and returns None."""
    AttributionVisualization(attribution_output, classes_names=classes_names, save_path=save_path,
                             **style).display()


def plot_lens(results: Any, inputs: str, *, tokenizer: Any, label_names: Any = None, align: bool = True,
              custom_css: str = "", save_path: str | os.PathLike | None = None) -> None:
    """interpreto's plot_lens over the native grid (``xaimesh.plot_lens``):
    `results` from this module's LogitLens / TunedLens. The native grid shows
    every position with the token that follows outlined (interpreto's aligned
    layout marks the same cells); `custom_css` is accepted and not applied,
    `label_names` is for classifier lenses, which the mesh does not serve."""
    from xaimesh.lens import plot_lens as native_plot_lens

    del inputs, tokenizer, align, custom_css, label_names
    out = getattr(results, "xaimesh_output", None)
    if out is None:
        raise ValueError("plot_lens takes the results of xaimesh.interpreto's LogitLens / TunedLens")
    plot = native_plot_lens(out)
    if save_path is not None:
        plot.save_html(save_path)
