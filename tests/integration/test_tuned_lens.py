"""The tuned lens over real services: fitted by the model-server, stored by
the concept-service, the same after the concept-service restarts; bad
requests answered with their status (docs/lenses.md)."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

import xaimesh
from tests.integration.test_concept_service import _quiet  # noqa: F401 (autouse fixture)
from xaimesh.errors import InvalidArgumentError, NotFoundError
from xaimesh_contracts.tensors import to_tensor
from xaimesh_contracts.v1 import concept_pb2, model_pb2, model_pb2_grpc
from xaimesh_runtime.client import make_channel

TRAIN = ["Alice offers a drink to Bob.", "The cat sat on the mat, then it slept.", "Bob and Alice enter the bar.",
         "It rained all day in the little town.", "My brother called me this morning.",
         "We walked home after the party ended."]
HELD_OUT = ["Alice slept on the mat.", "My sister walked to the bar."]
TEXT = "The party in the town ended this morning."


def _concept(launcher, model_server, data_dir):
    return launcher.start("concept", "--model-server-address", model_server.address, "--data-dir", str(data_dir),
                          "--device", "cpu")


def test_a_tuned_lens_is_fitted_stored_and_the_same_after_a_restart(module_launcher, model_server, tmp_path):
    data_dir = tmp_path / "concept-data"
    concept = _concept(module_launcher, model_server, data_dir)
    with xaimesh.connect(model_server.address, concept=concept.address, wait_seconds=30) as mesh:
        model = mesh.model()
        lens = xaimesh.TunedLens(model, top_k=3)
        with pytest.raises(RuntimeError, match="fit"):
            lens(TEXT)
        losses = lens.fit(TRAIN, held_out=HELD_OUT, epochs=4, learning_rate=1e-2, show_progress=False)
        info = lens.info_
        assert len(losses) == 4 and losses[-1] < losses[0]
        assert lens.lens_id == info.name and info.name.startswith("tunedLenses/")
        assert info.model == model.model_id and info.train_texts == len(TRAIN) and info.held_out_texts == 2
        # The translators bring every layer closer to the final distribution, on held-out texts too.
        for logit, tuned in ((info.train_kl_logit_lens, info.train_kl_tuned_lens),
                             (info.held_out_kl_logit_lens, info.held_out_kl_tuned_lens)):
            assert len(logit) == len(tuned) == len(info.layers) and np.all(np.array(tuned) < np.array(logit))
        before = lens(TEXT)
        logit = xaimesh.LogitLens(model, top_k=3)(TEXT)
        assert before.layers == logit.layers and before.shape == logit.shape
        # The last row is the model's own output, untouched by the translators.
        assert np.array_equal(before.top_token_ids[-1], logit.top_token_ids[-1])
        assert not np.array_equal(before.top_probabilities[:-1], logit.top_probabilities[:-1])
        page = xaimesh.plot_lens(before, show=False).html()
        assert "<table>" in page and f"Tuned lens {lens.lens_id}:" in page and before.lens.startswith("tuned lens")
        listed = mesh.client("concept").call("ListTunedLenses", concept_pb2.ListTunedLensesRequest())
        assert [x.name for x in listed.lenses] == [lens.lens_id]

    concept.stop()
    concept = _concept(module_launcher, model_server, data_dir)
    with xaimesh.connect(model_server.address, concept=concept.address, wait_seconds=30) as mesh:
        model = mesh.model()
        reloaded = xaimesh.TunedLens.load(model, lens.lens_id, top_k=3)
        after = reloaded(TEXT)
        assert reloaded.info_ == info
        for name in ("top_token_ids", "top_probabilities", "next_token_probabilities"):
            assert getattr(after, name).tobytes() == getattr(before, name).tobytes(), name
        assert after.top_tokens == before.top_tokens

        with pytest.raises(NotFoundError, match="does not exist"):
            xaimesh.TunedLens.load(model, "tunedLenses/nosuchlens")
        with pytest.raises(NotFoundError, match="does not exist") as info_:
            xaimesh.TunedLens(model, lens_id="nosuchlens")(TEXT)
        assert [v.field for v in info_.value.field_violations] == ["tuned_lens"]
        with pytest.raises(InvalidArgumentError, match="not a causal LM") as info_:
            xaimesh.TunedLens(mesh.model("tiny-llama-classifier")).fit(TRAIN, show_progress=False)
        assert info_.value.code == grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(InvalidArgumentError, match="epochs") as info_:
            xaimesh.TunedLens(model).fit(TRAIN, epochs=0, show_progress=False)
        assert info_.value.code == grpc.StatusCode.INVALID_ARGUMENT

        mesh.client("concept").call("DeleteTunedLens", concept_pb2.DeleteTunedLensRequest(name=lens.lens_id))
        with pytest.raises(NotFoundError):
            reloaded(TEXT)


def test_translators_for_the_wrong_number_of_layers_are_refused(model_server):
    from xaimesh.errors import from_rpc_error

    with make_channel(model_server.address) as channel:
        stub = model_pb2_grpc.ModelServiceStub(channel)
        info = stub.GetModel(model_pb2.GetModelRequest()).model
        blocks, hidden = info.num_layers, info.hidden_size
        request = model_pb2.LogitLensRequest(
            input_ids=[1, 2, 3], translator_weights=to_tensor(np.zeros((blocks + 1, hidden, hidden), np.float32)),
            translator_biases=to_tensor(np.zeros((blocks + 1, hidden), np.float32)))
        with pytest.raises(grpc.RpcError) as info_:
            stub.LogitLens(request)
        error = from_rpc_error(info_.value, "model-server")
        assert info_.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in error.field_violations] == ["translator_weights"]
        assert f"has {blocks} blocks" in info_.value.details()
        request.ClearField("translator_biases")
        with pytest.raises(grpc.RpcError) as info_:
            stub.LogitLens(request)
        assert info_.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "translator_biases" in info_.value.details()
