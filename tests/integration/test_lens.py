"""LogitLens through the SDK and a real model-server process over real gRPC."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import torch

import xaimesh
from xaimesh.errors import InvalidArgumentError
from xaimesh_contracts.v1 import model_pb2, model_pb2_grpc
from xaimesh_runtime.client import make_channel

PROMPT = "Alice and Bob enter the bar, then Alice offers a drink to Bob."


@pytest.fixture(scope="module")
def mesh(model_server):
    with xaimesh.connect(model_server.address) as mesh:
        yield mesh


def test_the_lens_of_the_sdk_equals_the_bare_model(mesh, tiny_lm_path, tmp_path):
    from transformers import AutoModelForCausalLM

    model = mesh.model()
    out = xaimesh.LogitLens(model, model.tokenizer, top_k=4)(PROMPT)
    bare = AutoModelForCausalLM.from_pretrained(tiny_lm_path).eval()
    with torch.no_grad():
        hf = bare(torch.tensor([out.input_token_ids]), output_hidden_states=True)
        rows = [bare.lm_head(bare.model.norm(h[0])) for h in hf.hidden_states[:-1]] + [hf.logits[0]]
        expected = torch.softmax(torch.stack(rows).double(), -1).numpy()
    assert out.shape == (model.num_layers + 1, len(out.input_token_ids), 4)
    assert out.layers == ["embeddings", *model.info.split_points]
    assert np.abs(out.top_probabilities - -np.sort(-expected, -1)[..., :4]).max() < 1e-5
    assert "".join(out.input_tokens) == PROMPT

    plot = xaimesh.plot_lens(out, show=False)
    text = str(plot)
    assert text.splitlines()[-1].strip().startswith(model.info.split_points[-1])
    page = plot.save_html(tmp_path / "lens.html").read_text(encoding="utf-8")
    assert page.count("<tr>") == model.num_layers + 2 and "Alice" in page
    # A list of texts gives a list of outputs.
    assert [o.text for o in xaimesh.LogitLens(model)(["the cat", "a dog"])] == ["the cat", "a dog"]


def test_a_lens_on_a_classifier_is_refused(mesh):
    with pytest.raises(InvalidArgumentError, match="sequence classifier") as info:
        xaimesh.LogitLens(mesh.model("tiny-llama-classifier"))("a good film")
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.parametrize("request_, field", [
    (model_pb2.LogitLensRequest(input_ids=[1, 2], top_k=101), "top_k"),
    (model_pb2.LogitLensRequest(), "input_ids"),
    (model_pb2.LogitLensRequest(input_ids=[10**9]), "input_ids"),
])
def test_bad_lens_requests_name_the_field(model_server, request_, field):
    from xaimesh.errors import from_rpc_error

    channel = make_channel(model_server.address)
    try:
        with pytest.raises(grpc.RpcError) as info:
            model_pb2_grpc.ModelServiceStub(channel).LogitLens(request_, timeout=30)
    finally:
        channel.close()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    assert [v.field for v in from_rpc_error(info.value, "model-server").field_violations] == [field]
