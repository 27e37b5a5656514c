"""The attribution-service's model-server client (`GrpcModelBackend`) and the
servicer over it, in-process: against the real ModelServicer (numbers equal
to the in-process engine), and against a fake ModelService (deadlines
forwarded, upstream cancelled, upstream status codes kept, warm-up)."""

from __future__ import annotations

import socket
import threading
import time
from types import SimpleNamespace

import grpc
import numpy as np
import pytest

from xaimesh_contracts.v1 import attribution_pb2 as apb
from xaimesh_contracts.v1 import attribution_pb2_grpc, model_pb2, model_pb2_grpc, tensor_pb2
from xaimesh_attribution import Replacement, explain
from xaimesh_runtime.errors import Cancelled
from xaimesh_attribution.model_client import GrpcModelBackend
from xaimesh_attribution.server import AttributionServicer
from xaimesh_runtime.config import Downstream, ServerConfig
from xaimesh_runtime.errors import DownstreamError, abort_with
from xaimesh_runtime.server import start_server

PROMPT = "Alice and Bob enter the bar."
TARGET = " Alice smiles."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _attribution_server(address: str):
    servicer = AttributionServicer(Downstream(address), progress_interval=0.0, poll_interval=0.02)
    handle = start_server(ServerConfig(service="attribution", workers=4), servicer.register)
    assert handle.wait_ready(10)
    channel = grpc.insecure_channel(handle.address)
    return servicer, handle, channel, attribution_pb2_grpc.AttributionServiceStub(channel)


# --------------------------------------------------------------------------- the real ModelServicer


@pytest.fixture(scope="module")
def model_service(tiny_lm_path, tiny_classifier_path, torch_single_thread):
    server_module = pytest.importorskip("xaimesh_model_server.server")
    servicer = server_module.ModelServicer([str(tiny_lm_path), str(tiny_classifier_path)])
    handle = start_server(ServerConfig(service="model-server", workers=8), servicer.register,
                          warmup=servicer.warm_up)
    assert handle.wait_ready(120)
    channel = grpc.insecure_channel(handle.address)
    info = model_pb2_grpc.ModelServiceStub(channel).ListModels(model_pb2.ListModelsRequest(), timeout=30)
    ids = [m.model_id for m in info.models]
    yield SimpleNamespace(address=handle.address, channel=channel, lm=ids[0], clf=ids[1])
    channel.close()
    handle.stop(grace=0)
    servicer.close()


def test_backend_matches_engine(model_service, lm_backend):
    remote = GrpcModelBackend(model_service.channel, model_service.lm, lambda: 30.0, address=model_service.address)
    desc = remote.describe()
    local = lm_backend.describe()
    assert (desc.task, desc.vocab_size, desc.max_sequence_length) == (local.task, local.vocab_size,
                                                                       local.max_sequence_length)
    assert (desc.bos_token_id, desc.eos_token_id, desc.pad_token_id) == (local.bos_token_id, local.eos_token_id,
                                                                         local.pad_token_id)
    tok = remote.tokenize(PROMPT, add_special_tokens=True)
    assert tok == lm_backend.tokenize(PROMPT, add_special_tokens=True)
    ids = tok.token_ids
    keep = np.ones((3, len(ids)), dtype=bool)
    keep[1, 1] = keep[2, 2] = False
    positions = list(range(1, len(ids)))
    got = remote.score(ids, keep, Replacement(), target_positions=positions, inference_mode="log_softmax")
    want = lm_backend.score(ids, keep, Replacement(), target_positions=positions, inference_mode="log_softmax")
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert remote.detokenize([ids]) == lm_backend.detokenize([ids])
    assert remote.generate(PROMPT, 4) == lm_backend.generate(PROMPT, 4)


def test_service_over_model_server_matches_in_process(model_service, lm_backend, clf_backend):
    servicer, handle, channel, stub = _attribution_server(model_service.address)
    try:
        req = apb.ExplainRequest(
            model=model_service.lm, method=apb.ATTRIBUTION_METHOD_KERNEL_SHAP,
            parameters=apb.MethodParameters(kernel_shap=apb.KernelShapParameters(n_perturbations=32)),
            inputs=[apb.ExplainInput(text=PROMPT, targets=apb.Targets(text=TARGET))])
        events = list(stub.Explain(req, timeout=120))
        a = events[-1].result.attribution
        got = np.frombuffer(a.scores.raw_contents, "<f4").reshape(tuple(a.scores.shape))
        want = explain(lm_backend, "kernel_shap", {"n_perturbations": 32}, PROMPT, TARGET)
        np.testing.assert_allclose(got, want.scores, atol=1e-5, equal_nan=True)

        req = apb.ExplainRequest(
            model=model_service.lm, method=apb.ATTRIBUTION_METHOD_INTEGRATED_GRADIENTS,
            parameters=apb.MethodParameters(
                integrated_gradients=apb.IntegratedGradientsParameters(n_steps=8)),
            inputs=[apb.ExplainInput(text=PROMPT, targets=apb.Targets(text=TARGET))])
        a = list(stub.Explain(req, timeout=120))[-1].result.attribution
        got = np.frombuffer(a.scores.raw_contents, "<f4").reshape(tuple(a.scores.shape))
        want = explain(lm_backend, "integrated_gradients", {"n_steps": 8}, PROMPT, TARGET)
        np.testing.assert_allclose(got, want.scores, atol=1e-5, equal_nan=True)

        # an input the model-server rejects is that input's item error; its code is kept
        req = apb.ExplainRequest(
            model=model_service.lm, method=apb.ATTRIBUTION_METHOD_SALIENCY,
            inputs=[apb.ExplainInput(text=PROMPT, targets=apb.Targets(token_ids=model_pb2.TokenIds(ids=[10 ** 9]))),
                    apb.ExplainInput(text=PROMPT, targets=apb.Targets(text=TARGET))])
        items = [e for e in stub.Explain(req, timeout=120) if e.WhichOneof("event") != "progress"]
        assert [e.WhichOneof("event") for e in items] == ["item_error", "result"]
        assert items[0].item_error.status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]

        # an unknown model: the model-server's NOT_FOUND
        req.model = "no-such-model"
        with pytest.raises(grpc.RpcError) as info:
            list(stub.Explain(req, timeout=30))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        channel.close()
        handle.stop(grace=0)
        servicer.close()


# --------------------------------------------------------------------------- a fake ModelService


class FakeModelService(model_pb2_grpc.ModelServiceServicer):
    """GetModel / Tokenize answer at once; Score blocks until cancelled (or
    `release` is set) and records what it saw; Tokenize of "bad" fails with
    INVALID_ARGUMENT and a field violation."""

    def __init__(self) -> None:
        self.time_remaining: list[float | None] = []
        self.callers: list[str | None] = []
        self.score_started = threading.Event()
        self.score_cancelled = threading.Event()
        self.release = threading.Event()

    def GetModel(self, request, context):
        self.time_remaining.append(context.time_remaining())
        info = model_pb2.ModelInfo(model_id="fake", task=model_pb2.MODEL_TASK_CAUSAL_LM, vocab_size=100,
                                   max_sequence_length=64)
        info.special_tokens.CopyFrom(model_pb2.SpecialTokens(bos_token="<s>", bos_token_id=1, pad_token="<pad>",
                                                             pad_token_id=0, all_special_ids=[0, 1]))
        return model_pb2.GetModelResponse(model=info)

    def Tokenize(self, request, context):
        self.time_remaining.append(context.time_remaining())
        self.callers.append(dict(context.invocation_metadata()).get("xaimesh-caller"))
        if request.texts[0] == "bad":
            abort_with(context, grpc.StatusCode.INVALID_ARGUMENT, "texts[0]: cannot tokenize", [("texts[0]", "no")])
        text = request.texts[0]
        n = len(text)
        if request.add_special_tokens:
            result = model_pb2.TokenizedText(
                token_ids=[1, 5], tokens=["<s>", text], token_start_chars=[0, 0], token_end_chars=[0, n],
                special_mask=[True, False], word_index=[-1, 0], sentence_index=[-1, 0],
                words=[tensor_pb2.Segment(text=text, end_char=n, start_token=1, end_token=2)],
                sentences=[tensor_pb2.Segment(text=text, end_char=n, start_token=1, end_token=2)])
        else:
            result = model_pb2.TokenizedText(
                token_ids=[7], tokens=[text], token_start_chars=[0], token_end_chars=[n], special_mask=[False],
                word_index=[0], sentence_index=[0],
                words=[tensor_pb2.Segment(text=text, end_char=n, end_token=1)],
                sentences=[tensor_pb2.Segment(text=text, end_char=n, end_token=1)])
        return model_pb2.TokenizeResponse(results=[result])

    def Score(self, request, context):
        self.time_remaining.append(context.time_remaining())
        self.score_started.set()
        while context.is_active() and not self.release.is_set():
            time.sleep(0.01)
        if not context.is_active():
            self.score_cancelled.set()
        return model_pb2.ScoreResponse()


@pytest.fixture
def fake():
    servicer = FakeModelService()
    ready = threading.Event()
    handle = start_server(ServerConfig(service="fake-model", workers=4), lambda s: (
        model_pb2_grpc.add_ModelServiceServicer_to_server(servicer, s), ["xaimesh.v1.ModelService"])[1],
        warmup=ready)
    channel = grpc.insecure_channel(handle.address)
    yield SimpleNamespace(servicer=servicer, handle=handle, channel=channel, address=handle.address, ready=ready)
    servicer.release.set()
    channel.close()
    handle.stop(grace=0)


def test_deadline_is_forwarded(fake):
    backend = GrpcModelBackend(fake.channel, "", lambda: 5.0, address=fake.address)
    assert backend.describe().model_id == "fake"
    assert backend.model_id == "fake"  # the default model is pinned after describe
    backend.tokenize("x")
    seen = fake.servicer.time_remaining
    assert len(seen) == 2 and all(r is not None and 3.0 < r <= 5.1 for r in seen)
    expired = GrpcModelBackend(fake.channel, "", lambda: 0.0, address=fake.address)
    with pytest.raises(DownstreamError) as info:
        expired.describe()
    assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED


def test_each_explanation_names_itself_as_one_caller(fake):
    """All calls of one backend (one explanation) carry one xaimesh-caller
    key, another backend's another; a given key (the incoming call's) is kept."""
    first, second = (GrpcModelBackend(fake.channel, "fake", lambda: None) for _ in range(2))
    kept = GrpcModelBackend(fake.channel, "fake", lambda: None, caller="user-7")
    for backend in (first, first, second, kept):
        backend.tokenize("x")
    a, b, c, d = fake.servicer.callers
    assert a == b and a != c and a and c and d == "user-7"


def test_upstream_invalid_argument_keeps_code_and_fields(fake):
    backend = GrpcModelBackend(fake.channel, "fake", lambda: None, address=fake.address)
    with pytest.raises(DownstreamError) as info:
        backend.tokenize("bad")
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.field_violations == [("texts[0]", "no")]
    assert "cannot tokenize" in info.value.message


def test_unavailable_names_the_address():
    address = f"127.0.0.1:{free_port()}"
    channel = grpc.insecure_channel(address)
    try:
        backend = GrpcModelBackend(channel, "", lambda: 5.0, address=address)
        with pytest.raises(DownstreamError) as info:
            backend.describe()
        assert info.value.code == grpc.StatusCode.UNAVAILABLE
        assert f"model-server at {address} is unavailable" in info.value.message
    finally:
        channel.close()
    # through the service: the call fails UNAVAILABLE with the same message
    servicer, handle, ch, stub = _attribution_server(address)
    try:
        req = apb.ExplainRequest(method=apb.ATTRIBUTION_METHOD_SALIENCY, inputs=[apb.ExplainInput(text="x")])
        with pytest.raises(grpc.RpcError) as rpc:
            list(stub.Explain(req, timeout=10))
        assert rpc.value.code() == grpc.StatusCode.UNAVAILABLE
        assert f"model-server at {address} is unavailable" in rpc.value.details()
    finally:
        ch.close()
        handle.stop(grace=0)
        servicer.close()


def test_cancel_cancels_the_call_in_flight(fake):
    backend = GrpcModelBackend(fake.channel, "fake", lambda: None, address=fake.address)
    outcome = {}

    def score():
        try:
            backend.score([1, 5], np.ones((1, 2), bool), Replacement(), target_positions=[1])
        except BaseException as exc:  # noqa: BLE001
            outcome["error"] = exc

    thread = threading.Thread(target=score)
    thread.start()
    assert fake.servicer.score_started.wait(5)
    backend.cancel()
    thread.join(5)
    assert isinstance(outcome.get("error"), Cancelled)
    assert fake.servicer.score_cancelled.wait(5), "the model-server call was not cancelled"
    with pytest.raises(Cancelled):
        backend.tokenize("x")


def test_client_cancel_reaches_the_model_server(fake):
    servicer, handle, channel, stub = _attribution_server(fake.address)
    try:
        req = apb.ExplainRequest(method=apb.ATTRIBUTION_METHOD_OCCLUSION,
                                 inputs=[apb.ExplainInput(text="a", targets=apb.Targets(text="b"))])
        call = stub.Explain(req, timeout=30)

        def consume():
            try:
                for _ in call:
                    pass
            except grpc.RpcError:
                pass

        threading.Thread(target=consume, daemon=True).start()
        assert fake.servicer.score_started.wait(10)
        call.cancel()
        assert fake.servicer.score_cancelled.wait(5), "the upstream Score was not cancelled with the call"
    finally:
        channel.close()
        handle.stop(grace=0)
        servicer.close()


def test_warm_up_waits_for_model_server_health(fake):
    servicer = AttributionServicer(Downstream(fake.address))
    ready, stop = threading.Event(), threading.Event()
    thread = threading.Thread(target=servicer.wait_for_model_server, args=(ready, stop), kwargs={"interval": 0.1},
                              daemon=True)
    thread.start()
    try:
        assert not ready.wait(0.6), "ready before the model-server is serving"
        fake.ready.set()  # the fake model-server finishes its warm-up: health SERVING
        assert ready.wait(5)
    finally:
        stop.set()
        thread.join(5)
        servicer.close()
    assert not thread.is_alive()
