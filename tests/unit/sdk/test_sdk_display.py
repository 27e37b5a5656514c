"""What a person sees: the attribution view keeps the text's spaces, the
Deletion legend fits its drawing, progress bars show no rate for a stage
that finishes at once."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace

import numpy as np

TEXT = "Alice and Bob enter the bar, then Alice"
WORDS = ["Alice", "and", "Bob", "enter", "the", "bar,", "then", "Alice"]


def _output(task: str = "causal_lm"):
    from xaimesh.attributions.output import AttributionOutput, Segment

    segments, start = [], 0
    for word in WORDS:
        start = TEXT.index(word, start)
        segments.append(Segment(word, start, start + len(word)))
        start += len(word)
    n_targets = 2 if task == "causal_lm" else 1
    return AttributionOutput(attributions=np.arange(n_targets * len(WORDS), dtype=np.float32).reshape(n_targets, -1),
                             elements=WORDS, target_elements=WORDS[-2:] if n_targets == 2 else ["positive"],
                             task=task, num_prompt_elements=6 if n_targets == 2 else 0, segments=segments, text=TEXT)


def _visible_text(html: str) -> str:
    body = re.sub(r"<script>.*?</script>|<style>.*?</style>", "", html, flags=re.S)
    return re.sub(r"<[^>]+>", "", body).replace("&#8594;", "")


def test_the_attribution_view_keeps_the_spaces_between_words():
    from xaimesh.attributions.plots import render_html

    assert TEXT in _visible_text(render_html(_output()))  # not "AliceandBobenterthebar,"
    assert "Alice and Bob enter the bar, then Alice" in _visible_text(render_html(_output("sequence_classification")))


def test_elements_without_spans_are_separated_by_one_space():
    from xaimesh.attributions.output import AttributionOutput
    from xaimesh.attributions.plots import render_html

    out = AttributionOutput(attributions=np.ones((1, 3), np.float32), elements=["a", "b", "c"],
                            target_elements=["x"], task="sequence_classification")
    assert "a b c" in _visible_text(render_html(out))


def test_the_deletion_legend_fits_in_its_drawing():
    from xaimesh.report import LEGEND_CHAR_PX, curve_svg

    names = ["attribution order (AUC 0.012345)", "random order (AUC 0.456789) with a longer caption"]
    svg = curve_svg([(n, [0.0, 0.5, 1.0], [1.0, 0.5, 0.0], "#000") for n in names])
    width = int(re.search(r'<svg[^>]*width="(\d+)"', svg).group(1))
    height = int(re.search(r'<svg[^>]*height="(\d+)"', svg).group(1))
    for x, y, text in re.findall(r'<text x="([\d.]+)" y="([\d.]+)" font-size="11">([^<]*)</text>', svg):
        if text in names:
            assert float(x) + LEGEND_CHAR_PX * len(text) <= width and float(y) <= height


def _progress(stage: str, done: int, total: int, message: str = ""):
    return SimpleNamespace(stage=stage, done=done, total=total, message=message)


def test_a_stage_that_finishes_at_once_shows_no_rate(monkeypatch):
    from xaimesh import _client

    out = io.StringIO()
    bars = _client.StageBars("activations", file=out)
    bars.update(_progress("tokenizing", 0, 1000))
    bars.update(_progress("tokenizing", 1000, 1000, "input 1/1"))
    first = out.getvalue()
    assert "1000/1000" in first and "input 1/1" in first and "it/s" not in first
    bars.update(_progress("forward", 0, 10))  # a new stage: a new bar with its own clock
    clock = _client.time.monotonic() + 5.0
    monkeypatch.setattr(_client.time, "monotonic", lambda: clock)
    bars.update(_progress("forward", 5, 10))
    bars.close()
    assert "it/s" in out.getvalue()[len(first):]
