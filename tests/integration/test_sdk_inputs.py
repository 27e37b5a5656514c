"""The SDK reads inputs with one loader (``xaimesh.datasets.load_texts``):
what a researcher passes to ``get_activations`` — the shipped sample rows,
a single text, a column mapping — reaches the model as the same texts."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("XAIMESH_PROGRESS", "0")


def test_get_activations_takes_sample_rows_a_text_and_a_column(launcher, model_server, tmp_path):
    import xaimesh
    from xaimesh.datasets import sample_dataset

    concept = launcher.start("concept", "--model-server-address", model_server.address,
                             "--data-dir", str(tmp_path / "data"), "--device", "cpu", "--grace-seconds", "2")
    mesh = xaimesh.connect(model_server.address, concept=concept.address, wait_seconds=30)
    split_model = xaimesh.ModelWithSplitPoints(mesh.model(), split_points=[1])
    rows = sample_dataset(small=True)[:5]
    texts = [r["text"] for r in rows]
    sample = split_model.get_activations(inputs=rows, activation_granularity="SAMPLE")
    assert sample.num_samples == len(rows)
    assert [p.text for p in sample.provenance()] == texts
    column = split_model.get_activations(inputs={"text": texts}, activation_granularity="SAMPLE")
    np.testing.assert_array_equal(column.numpy(), sample.numpy())
    one = split_model.get_activations(texts[0], activation_granularity="SAMPLE")
    np.testing.assert_allclose(one.numpy()[0], sample.numpy()[0], rtol=1e-5, atol=1e-6)
