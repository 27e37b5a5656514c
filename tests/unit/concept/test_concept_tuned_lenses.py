"""The concept-service side of tuned lenses (tuned_lenses.py): storage that
survives a restart bit for bit, the fit passed on from the model-server, the
translators sent with LogitLens, unknown ids NOT_FOUND. The model-server
side is tests/unit/model_server/test_ms_tuned_lens.py; both over real
processes: tests/integration/test_tuned_lens.py."""

from __future__ import annotations

import numpy as np
import pytest

from xaimesh_concept import tuned_lenses
from xaimesh_concept.store import Store
from xaimesh_contracts.tensors import to_numpy, to_tensor
from xaimesh_contracts.v1 import model_pb2, tensor_pb2
from xaimesh_runtime.errors import Cancelled, InvalidArgument, NotFound

BLOCKS, HIDDEN = 3, 4


class FakeStream(list):
    cancelled = False

    def cancel(self):
        self.cancelled = True


class FakeLensServer:
    """FitLensTranslators: two progress events, then fixed translators; LogitLens records its request."""

    def __init__(self):
        rng = np.random.default_rng(0)
        self.weight = rng.normal(size=(BLOCKS, HIDDEN, HIDDEN)).astype(np.float32)
        self.bias = rng.normal(size=(BLOCKS, HIDDEN)).astype(np.float32)
        self.lens_requests = []
        self.stream = None

    def fit_translators(self, request, *, timeout):
        progress = [model_pb2.FitLensTranslatorsResponse(progress=tensor_pb2.Progress(
            stage="training", done=i + 1, total=2, message=f"epoch 1 loss={i}")) for i in range(2)]
        result = model_pb2.FitLensTranslatorsResponse(result=model_pb2.LensTranslators(
            layers=["embeddings", "model.layers.0", "model.layers.1"], weights=to_tensor(self.weight),
            biases=to_tensor(self.bias), epoch_losses=[0.5], train_kl_logit_lens=[3, 2, 1],
            train_kl_tuned_lens=[1, 0.5, 0.2], train_tokens=12, model=request.model or "fake-lm", epochs=1,
            learning_rate=1e-3))
        self.stream = FakeStream([*progress, result])
        return self.stream

    def logit_lens(self, request, *, timeout):
        self.lens_requests.append(request)
        return model_pb2.LogitLensResponse(model=request.model, layers=["embeddings"])


def _fit(lenses, server, **kw):
    events = []
    request = model_pb2.FitLensTranslatorsRequest(model="fake-lm", texts=["a b", "c d e"], held_out_texts=["f"])
    info = tuned_lenses.fit_tuned_lens(lenses, server, request, "mine", progress=events.append,
                                       should_stop=kw.get("should_stop", lambda: False), timeout=None)
    return info, events


def test_a_fitted_lens_is_stored_and_reloads_bit_for_bit_after_a_restart(tmp_path):
    server = FakeLensServer()
    lenses = tuned_lenses.TunedLensStore(Store(str(tmp_path)))
    info, events = _fit(lenses, server)
    assert [(e.stage, e.done, e.total) for e in events] == [("training", 1, 2), ("training", 2, 2)]
    assert info.name == f"tunedLenses/{info.id}" and info.display_name == "mine" and info.model == "fake-lm"
    assert info.train_texts == 2 and info.held_out_texts == 1 and info.train_tokens == 12
    assert info.hidden_size == HIDDEN and info.layers[0] == "embeddings"
    assert info.train_kl_tuned_lens == pytest.approx([1, 0.5, 0.2])

    restarted = tuned_lenses.TunedLensStore(Store(str(tmp_path)))  # a new process on the same data dir
    again, weight, bias = restarted.load(info.name)
    assert again == info
    assert weight.tobytes() == server.weight.tobytes() and bias.tobytes() == server.bias.tobytes()
    tuned_lenses.apply_tuned_lens(restarted, server, info.id, [1, 2, 3], 4, timeout=None)
    (sent,) = server.lens_requests
    assert sent.model == "fake-lm" and list(sent.input_ids) == [1, 2, 3] and sent.top_k == 4
    assert to_numpy(sent.translator_weights).tobytes() == server.weight.tobytes()
    assert to_numpy(sent.translator_biases).tobytes() == server.bias.tobytes()

    second, _ = _fit(restarted, server)
    listed, token = restarted.list(page_size=1)
    assert [x.id for x in listed] == [info.id] and token
    assert [x.id for x in restarted.list(page_token=token)[0]] == [second.id]
    restarted.delete(info.name)
    assert [x.id for x in restarted.list()[0]] == [second.id]


def test_unknown_or_malformed_lens_names(tmp_path):
    lenses = tuned_lenses.TunedLensStore(Store(str(tmp_path)))
    with pytest.raises(NotFound, match="does not exist") as info:
        tuned_lenses.apply_tuned_lens(lenses, FakeLensServer(), "tunedLenses/abc", [1], 0, timeout=None)
    assert info.value.field == "tuned_lens"
    with pytest.raises(NotFound):
        lenses.get("abc")
    with pytest.raises(NotFound):
        lenses.delete("abc")
    with pytest.raises(InvalidArgument, match="tunedLenses"):
        lenses.get("conceptModels/abc")
    with pytest.raises(InvalidArgument):
        lenses.get("../etc")


def test_a_cancelled_fit_cancels_the_model_server_call_and_stores_nothing(tmp_path):
    server = FakeLensServer()
    lenses = tuned_lenses.TunedLensStore(Store(str(tmp_path)))
    with pytest.raises(Cancelled):
        _fit(lenses, server, should_stop=lambda: True)
    assert server.stream.cancelled and lenses.list()[0] == []
