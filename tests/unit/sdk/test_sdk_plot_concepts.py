"""plot_concepts: the tokens shaded by the selected concept, the concept list
ordered by importance, a standalone page, and bad shapes refused."""

import re

import numpy as np
import pytest

from xaimesh.concepts import plot_concepts

TOKENS = ["My", " brother", " and", " my", " sister", " laughed", "."]


def _activations():
    a = np.zeros((len(TOKENS), 3))
    a[1, 0], a[4, 0] = 2.0, 1.0  # concept 0: family words
    a[5, 1] = 0.5  # concept 1: "laughed"
    a[2, 2] = -1.0  # concept 2: negative (a signed method)
    return a


def test_tokens_are_shaded_by_the_most_important_concept(tmp_path):
    plot = plot_concepts(sample=TOKENS, concepts_activations=_activations(),
                         concepts_labels={0: ["brother", "sister"], 1: "laughter"},
                         concepts_importances=[[0.1, -0.9, 0.0], [0.2, -0.3, 0.0]], show=False)
    page = plot.html()
    labels = re.findall(r"class='xm-c'[^>]*>([^<]*)<", page)
    assert labels == ["laughter", "brother, sister", "concept 2"]  # by |summed importance|: 1.2, 0.3, 0
    spans = re.findall(r"class='xm-t' data-a='([^']*)' style='background:([^']*)'", page)
    assert len(spans) == len(TOKENS)
    # The first listed concept (laughter) is selected: only "laughed" is shaded, fully.
    assert spans[5][1] == "rgb(243,156,18)" and all(bg == "rgb(255,255,255)" for i, (_, bg) in enumerate(spans) if i != 5)
    # data-a holds each shown concept's activation scaled by its largest |value| on the sample.
    assert [float(x) for x in spans[1][0].strip("[]").split(",")] == [0.0, 1.0, 0.0]
    assert [float(x) for x in spans[2][0].strip("[]").split(",")] == [0.0, 0.0, -1.0]
    assert "laughter (importance -1.2): ' laughed' 0.5" in str(plot)
    saved = plot.save_html(tmp_path / "concepts.html").read_text(encoding="utf-8")
    assert saved.startswith("<!DOCTYPE html>") and not re.search(r"(src|href)\s*=\s*[\"']?https?:", saved)


def test_without_importances_concepts_are_ranked_by_activation_and_top_k_applies():
    plot = plot_concepts(sample=TOKENS, concepts_activations=_activations(), top_k=2, show=False)
    assert plot.shown == [0, 1]
    assert "concept 2" not in plot.html()


@pytest.mark.parametrize("kwargs, match", [
    (dict(concepts_activations=np.zeros((3, 2))), "7 rows"),
    (dict(concepts_activations=np.zeros((7, 3)), concepts_importances=[1.0, 2.0]), "3 concepts"),
    (dict(concepts_activations=np.zeros((7, 3)), concepts_labels=["a"]), "1 labels for 3 concepts"),
    (dict(concepts_activations=np.zeros((7, 3)), top_k=0), "top_k"),
])
def test_bad_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plot_concepts(sample=TOKENS, show=False, **kwargs)
