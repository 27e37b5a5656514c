"""concept_output_gradient through the SDK, a real model-server and a real
concept-service, against autograd on the bare Hugging Face model with the
same decoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.integration.test_concept_service import TEXTS, _quiet, connect, start_concept  # noqa: F401

TEXT = "Alice offers a drink to Bob."


def test_concept_output_gradient_equals_autograd_on_the_bare_model(launcher, model_server, tmp_path, tiny_lm_path):
    import xaimesh
    from transformers import AutoModelForCausalLM
    from xaimesh.concepts import PCAConcepts

    concept = start_concept(launcher, model_server, tmp_path / "concept-data")
    with connect(model_server, concept) as mesh:
        model = mesh.model()
        split_model = xaimesh.ModelWithSplitPoints(model, split_points=[1])
        acts = split_model.get_activations(TEXTS, activation_granularity=split_model.activation_granularities.TOKEN)
        concepts = PCAConcepts(split_model, nb_concepts=4).fit(acts)
        (raw,) = concepts.concept_output_gradient(TEXT, concepts_x_gradients=False, normalization=False)
        (normed,) = concepts.concept_output_gradient(TEXT)
        ids = model.tokenizer.encode(TEXT, add_special_tokens=True)
        (rows,) = model.activations([TEXT], split_points=[1], granularity="ALL_TOKENS", show_progress=False).values()
        codes = concepts.encode_activations(rows.rows)
        offset = concepts.decode_concepts(np.zeros((1, 4), np.float32))[0]
        decoder = concepts.decode_concepts(np.eye(4, dtype=np.float32)) - offset

    bare = AutoModelForCausalLM.from_pretrained(tiny_lm_path).eval()
    c = torch.from_numpy(codes).requires_grad_(True)

    def swap(module, args, output):
        new = (c @ torch.from_numpy(decoder) + torch.from_numpy(offset))[None]
        return (new, *output[1:]) if isinstance(output, tuple) else new

    handle = bare.model.layers[1].register_forward_hook(swap)
    logits = bare(torch.tensor([ids])).logits[0]
    handle.remove()
    expected = np.stack([torch.autograd.grad(logits[p - 1, ids[p]], c, retain_graph=True)[0].numpy()
                         for p in range(1, len(ids))])
    assert raw.shape == (len(ids) - 1, len(ids), 4)
    assert np.abs(raw - expected).max() < 1e-4 * max(1.0, np.abs(expected).max())
    weighted = expected * codes[None]
    weighted /= np.abs(weighted).sum(axis=(1, 2), keepdims=True)
    assert np.abs(normed - weighted).max() < 1e-4
    assert np.allclose(np.abs(normed).sum(axis=(1, 2)), 1.0, atol=1e-5)
