"""The ConceptService adapter in-process: a real gRPC server on 127.0.0.1:0
over a ConceptWorkspace, and a fake model-server that streams known rows."""

from __future__ import annotations

import os
import threading
import time

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from xaimesh_contracts.v1 import concept_pb2, concept_pb2_grpc, model_pb2, model_pb2_grpc, tensor_pb2
from xaimesh_concept.server import ConceptServicer
from xaimesh_runtime.config import ServerConfig
from xaimesh_runtime.errors import abort_with
from xaimesh_runtime.server import start_server
from xaimesh_contracts.tensors import ChunkAssembler, iter_chunks, to_numpy, to_tensor

HIDDEN = 8
N_LAYERS = 4
TOKEN = tensor_pb2.GRANULARITY_TOKEN


def expected_rows(sample: int, n_tokens: int, layer: int) -> np.ndarray:
    """What the fake model-server sends: a deterministic function of (sample, token, layer)."""
    t = np.arange(n_tokens, dtype=np.float32)[:, None]
    h = np.arange(HIDDEN, dtype=np.float32)[None, :]
    return (np.sin(0.7 * t + 0.3 * h + sample) + 0.1 * layer + 0.05 * sample).astype(np.float32)


class FakeModelServer(model_pb2_grpc.ModelServiceServicer):
    """StreamActivations only: one row per whitespace token of each text,
    chunks of ``chunk_rows`` rows, an ItemError for empty texts."""

    def __init__(self):
        self.delay = 0.0
        self.chunk_rows = 3
        self.cancelled = threading.Event()
        self.finished = threading.Event()
        self.time_remaining: list[float | None] = []
        self.requests: list[model_pb2.StreamActivationsRequest] = []

    def StreamActivations(self, request, context):
        self.requests.append(request)
        self.time_remaining.append(context.time_remaining())
        names = []
        for sp in request.split_points:
            if not sp.isdigit() or int(sp) >= N_LAYERS:
                abort_with(context, grpc.StatusCode.INVALID_ARGUMENT,
                           f"split point {sp} is out of range: model has {N_LAYERS} layers",
                           {"split_points": f"split point {sp} is out of range"})
            names.append(f"model.layers.{sp}")
        yield model_pb2.StreamActivationsResponse(header=model_pb2.ActivationsHeader(
            split_points=names, hidden_size=HIDDEN, num_samples=len(request.texts),
            dtype=tensor_pb2.DATA_TYPE_FLOAT32, granularity=request.granularity or TOKEN,
            aggregation=request.aggregation or tensor_pb2.AGGREGATION_MEAN, model=request.model or "fake-lm"))
        total_rows = 0
        done_samples = 0
        try:
            for i, text in enumerate(request.texts):
                tokens = text.split()
                if not tokens:
                    yield model_pb2.StreamActivationsResponse(item_error=model_pb2.ItemError(
                        index=i, status=rpc_status.status_pb2.Status(code=3, message=f"text {i} has no tokens")))
                    continue
                for sp, name in zip(request.split_points, names):
                    rows = expected_rows(i, len(tokens), int(sp))
                    for s in range(0, len(tokens), self.chunk_rows):
                        if self.delay:
                            time.sleep(self.delay)
                        if not context.is_active():
                            self.cancelled.set()
                            return
                        prov = [model_pb2.RowProvenance(sample_index=i, token_start=j, token_end=j + 1,
                                                        text=tokens[j])
                                for j in range(s, min(s + self.chunk_rows, len(tokens)))]
                        yield model_pb2.StreamActivationsResponse(chunk=model_pb2.ActivationsChunk(
                            split_point=name, rows=to_tensor(rows[s:s + self.chunk_rows]), provenance=prov))
                total_rows += len(tokens)
                done_samples += 1
                yield model_pb2.StreamActivationsResponse(progress=tensor_pb2.Progress(
                    stage="activations", done=i + 1, total=len(request.texts)))
            yield model_pb2.StreamActivationsResponse(summary=model_pb2.ActivationsSummary(
                num_rows=total_rows, num_samples=done_samples))
        finally:
            if not context.is_active():
                self.cancelled.set()
            self.finished.set()


def _config(**kw):
    return ServerConfig(service="test", host="127.0.0.1", port=0, metrics_port=-1, workers=8,
                        grace_seconds=0, **kw)


@pytest.fixture()
def fake_ms():
    fake = FakeModelServer()

    def register(server):
        model_pb2_grpc.add_ModelServiceServicer_to_server(fake, server)
        return ["xaimesh.v1.ModelService"]

    handle = start_server(_config(), register)
    assert handle.wait_ready(10)
    fake.address = handle.address
    yield fake
    handle.stop(grace=0)


@pytest.fixture()
def service(tmp_path, fake_ms):
    servicer = ConceptServicer(str(tmp_path / "data"), fake_ms.address, default_device="cpu")
    handle = start_server(_config(), servicer.register)
    assert handle.wait_ready(10)
    channel = grpc.insecure_channel(handle.address)
    stub = concept_pb2_grpc.ConceptServiceStub(channel)
    stub.servicer = servicer
    stub.data_dir = tmp_path / "data"
    yield stub
    channel.close()
    handle.stop(grace=0)
    servicer.close()


TEXTS = ["the cat sat on the mat today", "", "a dog ran far away from home again and again",
         "birds fly high", "one more sentence with words in it", "short text"]


def create(stub, split_points=("1",), texts=TEXTS, **kw):
    req = concept_pb2.CreateActivationSetsRequest(texts=texts, split_points=list(split_points),
                                                  granularity=TOKEN, display_name="acts", **kw)
    return list(stub.CreateActivationSets(req, timeout=30))


def events_of(responses, kind):
    return [getattr(r, kind) for r in responses if r.WhichOneof("event") == kind]


def code_of(excinfo):
    return excinfo.value.code()


def violations(excinfo):
    status = rpc_status.from_call(excinfo.value)
    out = []
    for d in status.details if status else []:
        if d.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            d.Unpack(bad)
            out += [v.field for v in bad.field_violations]
    return out


def read_all(stub, name, **kw):
    rows, prov = [], []
    for msg in stub.ReadActivationSet(concept_pb2.ReadActivationSetRequest(name=name, **kw), timeout=30):
        rows.append(to_numpy(msg.rows))
        prov.extend(msg.provenance)
    return np.concatenate(rows), prov


def all_expected(layer, texts=TEXTS):
    return np.concatenate([expected_rows(i, len(t.split()), layer) for i, t in enumerate(texts) if t.split()])


# ---------------------------------------------------------------------------
# CreateActivationSets
# ---------------------------------------------------------------------------
def test_create_two_split_points_streams_progress_item_errors_and_sets(service, fake_ms):
    responses = create(service, ["1", "3"])
    progress = events_of(responses, "progress")
    assert any(p.stage == "pulling" for p in progress) and progress[-1].stage == "storing"
    errors = events_of(responses, "item_error")
    assert [e.index for e in errors] == [1] and "no tokens" in errors[0].status.message
    (sets,) = events_of(responses, "sets")
    assert [s.split_point for s in sets.sets] == ["model.layers.1", "model.layers.3"]
    n = sum(len(t.split()) for t in TEXTS)
    for s, layer in zip(sets.sets, (1, 3)):
        assert list(s.shape) == [n, HIDDEN] and s.dtype == tensor_pb2.DATA_TYPE_FLOAT32
        assert s.granularity == TOKEN and s.has_provenance and s.num_samples == 5
        assert s.name == f"activationSets/{s.id}" and s.display_name == "acts" and s.model == "fake-lm"
        rows, prov = read_all(service, s.name, include_provenance=True, chunk_bytes=5 * HIDDEN * 4)
        np.testing.assert_array_equal(rows, all_expected(layer))
        assert [p.text for p in prov] == [w for t in TEXTS for w in t.split()]
        assert prov[7].sample_index == 2 and prov[7].token_start == 0
    # the upstream request and the forwarded deadline
    req = fake_ms.requests[-1]
    assert list(req.split_points) == ["1", "3"] and req.granularity == TOKEN
    # the caller's 30 s, forwarded: gRPC rounds a timeout up when it encodes it on the wire
    assert fake_ms.time_remaining[-1] is not None and fake_ms.time_remaining[-1] <= 30.5
    listed = service.ListActivationSets(concept_pb2.ListActivationSetsRequest(), timeout=5).sets
    assert sorted(s.id for s in listed) == sorted(s.id for s in sets.sets)


def test_create_upstream_errors_are_forwarded_and_nothing_is_stored(service, fake_ms):
    with pytest.raises(grpc.RpcError) as info:
        create(service, ["1", "9"])
    assert code_of(info) == grpc.StatusCode.INVALID_ARGUMENT
    assert "model-server" in info.value.details() and "out of range" in info.value.details()
    assert violations(info) == ["split_points"]
    with pytest.raises(grpc.RpcError) as info:
        create(service, texts=[])
    assert code_of(info) == grpc.StatusCode.INVALID_ARGUMENT and violations(info) == ["texts"]
    with pytest.raises(grpc.RpcError) as info:  # every text fails
        create(service, texts=["", "  "])
    assert code_of(info) == grpc.StatusCode.INVALID_ARGUMENT and "none of the 2 texts" in info.value.details()
    assert list(service.ListActivationSets(concept_pb2.ListActivationSetsRequest(), timeout=5).sets) == []
    assert os.listdir(service.data_dir / "tmp") == []


def test_create_model_server_unavailable(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    servicer = ConceptServicer(str(tmp_path / "d"), f"127.0.0.1:{port}", default_device="cpu")
    handle = start_server(_config(), servicer.register)
    try:
        with grpc.insecure_channel(handle.address) as channel:
            stub = concept_pb2_grpc.ConceptServiceStub(channel)
            with pytest.raises(grpc.RpcError) as info:
                create(stub)
            assert code_of(info) == grpc.StatusCode.UNAVAILABLE
            assert "model-server" in info.value.details() and str(port) in info.value.details()
    finally:
        handle.stop(grace=0)
        servicer.close()


def test_create_cancel_stops_the_upstream_call_and_stores_nothing(service, fake_ms):
    fake_ms.delay = 0.05
    call = service.CreateActivationSets(concept_pb2.CreateActivationSetsRequest(
        texts=TEXTS * 20, split_points=["2"], granularity=TOKEN), timeout=60)
    first = next(call)
    assert first.WhichOneof("event") == "progress"
    call.cancel()
    assert fake_ms.cancelled.wait(10), "the model-server call was not cancelled"
    deadline = time.monotonic() + 10
    while os.listdir(service.data_dir / "tmp") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.listdir(service.data_dir / "tmp") == []
    assert list(service.ListActivationSets(concept_pb2.ListActivationSetsRequest(), timeout=5).sets) == []


def test_create_deadline_is_forwarded(service, fake_ms):
    fake_ms.delay = 0.05
    with pytest.raises(grpc.RpcError) as info:
        list(service.CreateActivationSets(concept_pb2.CreateActivationSetsRequest(
            texts=TEXTS * 20, split_points=["2"], granularity=TOKEN), timeout=0.8))
    assert code_of(info) == grpc.StatusCode.DEADLINE_EXCEEDED
    assert fake_ms.time_remaining[-1] is not None and fake_ms.time_remaining[-1] < 0.9  # 0.8 s, rounded up on the wire
    assert fake_ms.finished.wait(10)


# ---------------------------------------------------------------------------
# uploads, get / list / delete / read
# ---------------------------------------------------------------------------
def upload(stub, X, *, prov=None, chunk_bytes=1000, display_name="up", dtype=None):
    def gen():
        yield concept_pb2.UploadActivationSetRequest(header=concept_pb2.UploadActivationSetHeader(
            display_name=display_name, model="m", split_point="2", granularity=TOKEN))
        for c in iter_chunks(X, chunk_bytes, dtype=dtype):
            yield concept_pb2.UploadActivationSetRequest(chunk=c)
        if prov is not None:
            yield concept_pb2.UploadActivationSetRequest(provenance=concept_pb2.ProvenanceBatch(rows=prov))
    return stub.UploadActivationSet(gen(), timeout=30).set


def data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    return (np.abs(rng.standard_normal((n, 3))) @ rng.standard_normal((3, HIDDEN))
            + 0.01 * rng.standard_normal((n, HIDDEN))).astype(np.float32)


def test_upload_get_list_read_delete(service):
    X = data()
    prov = [model_pb2.RowProvenance(sample_index=i // 10, token_start=i % 10, token_end=i % 10 + 1,
                                    text=f"t{i}") for i in range(len(X))]
    s = upload(service, X, prov=prov)
    assert list(s.shape) == [120, HIDDEN] and s.has_provenance and s.split_point == "2" and s.model == "m"
    assert service.GetActivationSet(concept_pb2.GetActivationSetRequest(name=s.id), timeout=5).set == s
    rows, p = read_all(service, s.name, row_start=5, row_end=50, include_provenance=True)
    np.testing.assert_array_equal(rows, X[5:50])
    assert [x.text for x in p] == [f"t{i}" for i in range(5, 50)]
    rows, p = read_all(service, s.name)
    np.testing.assert_array_equal(rows, X) and p == []
    s16 = upload(service, X, dtype="float16", display_name="half")
    np.testing.assert_allclose(read_all(service, s16.name)[0], X.astype(np.float16).astype(np.float32))
    page = service.ListActivationSets(concept_pb2.ListActivationSetsRequest(page_size=1), timeout=5)
    assert len(page.sets) == 1 and page.next_page_token
    page2 = service.ListActivationSets(concept_pb2.ListActivationSetsRequest(
        page_size=1, page_token=page.next_page_token), timeout=5)
    assert {page.sets[0].id, page2.sets[0].id} == {s.id, s16.id}
    service.DeleteActivationSet(concept_pb2.DeleteActivationSetRequest(name=s.name), timeout=5)
    with pytest.raises(grpc.RpcError) as info:
        service.GetActivationSet(concept_pb2.GetActivationSetRequest(name=s.name), timeout=5)
    assert code_of(info) == grpc.StatusCode.NOT_FOUND and s.id in info.value.details()


def test_set_errors(service):
    X = data()
    bad = X.copy()
    bad[17, 3] = np.nan
    with pytest.raises(grpc.RpcError) as info:
        upload(service, bad)
    assert code_of(info) == grpc.StatusCode.INVALID_ARGUMENT and "NaN" in info.value.details()
    for name in ("activationSets/../../etc", "../x", "activationSets/a/b", "/abs", "conceptModels/abc"):
        with pytest.raises(grpc.RpcError) as info:
            service.GetActivationSet(concept_pb2.GetActivationSetRequest(name=name), timeout=5)
        assert code_of(info) == grpc.StatusCode.INVALID_ARGUMENT, name
        assert violations(info) == ["name"]
    for call in (lambda: service.GetActivationSet(concept_pb2.GetActivationSetRequest(name="nope"), timeout=5),
                 lambda: service.DeleteActivationSet(concept_pb2.DeleteActivationSetRequest(name="nope"),
                                                     timeout=5),
                 lambda: read_all(service, "activationSets/nope")):
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert code_of(info) == grpc.StatusCode.NOT_FOUND
    s = upload(service, X)
    with pytest.raises(grpc.RpcError) as info:
        read_all(service, s.name, row_start=100, row_end=500)
    assert code_of(info) == grpc.StatusCode.INVALID_ARGUMENT and "row range" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:  # chunks out of order
        service.UploadActivationSet(iter([
            concept_pb2.UploadActivationSetRequest(header=concept_pb2.UploadActivationSetHeader()),
            concept_pb2.UploadActivationSetRequest(chunk=tensor_pb2.TensorChunk(
                dtype=tensor_pb2.DATA_TYPE_FLOAT32, shape=[2, HIDDEN], byte_offset=8,
                total_bytes=2 * HIDDEN * 4, data=b"\0" * 8))]), timeout=5)
    assert code_of(info) == grpc.StatusCode.INVALID_ARGUMENT
    assert os.listdir(service.data_dir / "tmp") == []


# ---------------------------------------------------------------------------
# concept models
# ---------------------------------------------------------------------------
def fit(stub, set_name, method=concept_pb2.CONCEPT_METHOD_SEMI_NMF, k=3, timeout=60, **options):
    req = concept_pb2.FitConceptModelRequest(activation_set=set_name, method=method, nb_concepts=k,
                                             options=concept_pb2.ConceptFitOptions(device="cpu", **options),
                                             display_name="cm")
    responses = list(stub.FitConceptModel(req, timeout=timeout))
    (model,) = events_of(responses, "model")
    return model, responses


def encode(stub, model, source, **kw):
    out = []
    for msg in stub.Encode(concept_pb2.EncodeRequest(concept_model=model, source=source, **kw), timeout=30):
        out.append((msg.row_start, to_numpy(msg.codes)))
    return out


def test_fit_encode_decode_dictionary_metrics_export_import(service):
    X = data()
    s = upload(service, X, prov=[model_pb2.RowProvenance(sample_index=i // 10, token_start=i % 10,
                                                         token_end=i % 10 + 1, text=f"w{i % 13}")
                                 for i in range(len(X))])
    model, responses = fit(service, s.name, max_iterations=50)
    progress, logs = events_of(responses, "progress"), events_of(responses, "log")
    assert progress and logs and progress[-1].done <= progress[-1].total
    assert model.method == concept_pb2.CONCEPT_METHOD_SEMI_NMF and model.nb_concepts == 3
    assert model.hidden_size == HIDDEN and model.activation_set == s.name and model.split_point == "2"
    assert model.name == f"conceptModels/{model.id}" and model.device == "cpu"
    assert '"max_iterations": 50' in model.options_json
    assert service.GetConceptModel(concept_pb2.GetConceptModelRequest(name=model.id), timeout=5).model == model
    assert [m.id for m in service.ListConceptModels(concept_pb2.ListConceptModelsRequest(), timeout=5).models] \
        == [model.id]

    src = concept_pb2.ActivationSource(activation_set=concept_pb2.ActivationSetRange(name=s.name))
    chunks = encode(service, model.name, src, chunk_bytes=7 * 3 * 4)
    assert [c[0] for c in chunks] == list(range(0, 120, 7))
    codes = np.concatenate([c[1] for c in chunks])
    assert codes.shape == (120, 3) and (codes >= 0).all()
    again = np.concatenate([c[1] for c in encode(service, model.name, src)])
    np.testing.assert_array_equal(codes, again)
    part = encode(service, model.name, concept_pb2.ActivationSource(
        activation_set=concept_pb2.ActivationSetRange(name=s.name, row_start=10, row_end=20)))
    assert part[0][0] == 10
    np.testing.assert_allclose(part[0][1], codes[10:20], rtol=1e-5, atol=1e-6)
    from_tensor = encode(service, model.name, concept_pb2.ActivationSource(tensor=to_tensor(X[:30])))
    np.testing.assert_allclose(from_tensor[0][1], codes[:30], rtol=1e-5, atol=1e-6)

    rec = np.concatenate([to_numpy(m.reconstructions) for m in service.Decode(
        concept_pb2.DecodeRequest(concept_model=model.name, codes=to_tensor(codes)), timeout=30)])
    assert rec.shape == X.shape
    asm = ChunkAssembler()
    for m in service.GetDictionary(concept_pb2.GetDictionaryRequest(concept_model=model.name), timeout=10):
        asm.add(m.chunk)
    dictionary = asm.numpy()
    assert dictionary.shape == (3, HIDDEN)
    np.testing.assert_allclose(rec, codes @ dictionary, rtol=1e-4, atol=1e-4)

    res = list(service.ComputeConceptMetrics(concept_pb2.ComputeConceptMetricsRequest(
        concept_models=[model.name], source=src,
        metrics=[concept_pb2.CONCEPT_METRIC_MSE, concept_pb2.CONCEPT_METRIC_SPARSITY]), timeout=30))
    (result,) = events_of(res, "result")
    values = {v.metric: v.value for v in result.values}
    assert all(v.concept_model == model.name for v in result.values)
    np.testing.assert_allclose(values[concept_pb2.CONCEPT_METRIC_MSE], np.mean((X - rec) ** 2), rtol=1e-4)
    np.testing.assert_allclose(values[concept_pb2.CONCEPT_METRIC_SPARSITY], np.mean(codes != 0), rtol=1e-6)
    every = events_of(list(service.ComputeConceptMetrics(concept_pb2.ComputeConceptMetricsRequest(
        concept_models=[model.name], source=concept_pb2.ActivationSource(tensor=to_tensor(X))), timeout=30)),
        "result")[0]
    assert len(every.values) == 10  # every per-model metric (docs/concept-metrics.md)

    top = list(service.GetTopExamples(concept_pb2.GetTopExamplesRequest(
        concept_model=model.name, activation_set=s.name, concept_indices=[2, 0], k=4, k_context=2),
        timeout=30))
    concepts = events_of(top, "concept")
    assert [c.concept_index for c in concepts] == [2, 0]
    ex = concepts[0].examples[0]
    assert ex.activation == pytest.approx(codes[:, 2].max(), rel=1e-5)
    assert ex.provenance.text.startswith("w") and any(t.highlighted for t in ex.context)

    data_bytes, first = b"", None
    for i, m in enumerate(service.ExportConceptModel(concept_pb2.ExportConceptModelRequest(name=model.name),
                                                     timeout=10)):
        if i == 0:
            first = m.model
        else:
            assert not m.HasField("model")
        data_bytes += m.data
    assert first == model and data_bytes
    imported = service.ImportConceptModel(iter([
        concept_pb2.ImportConceptModelRequest(data=data_bytes[:100], display_name="copy"),
        concept_pb2.ImportConceptModelRequest(data=data_bytes[100:])]), timeout=10).model
    assert imported.id != model.id and imported.display_name == "copy" and imported.nb_concepts == 3
    codes2 = np.concatenate([c[1] for c in encode(service, imported.name, src)])
    np.testing.assert_array_equal(codes, codes2)
    stab = events_of(list(service.ComputeConceptMetrics(concept_pb2.ComputeConceptMetricsRequest(
        concept_models=[model.name, imported.name], metrics=[concept_pb2.CONCEPT_METRIC_STABILITY]),
        timeout=30)), "result")[0]
    assert stab.values[0].value == pytest.approx(1.0, abs=1e-5) and stab.values[0].concept_model == ""

    service.DeleteConceptModel(concept_pb2.DeleteConceptModelRequest(name=imported.name), timeout=5)
    with pytest.raises(grpc.RpcError) as info:
        encode(service, imported.name, src)
    assert code_of(info) == grpc.StatusCode.NOT_FOUND


def test_model_errors(service):
    X = data(n=20)
    s = upload(service, X)
    with pytest.raises(grpc.RpcError) as info:
        fit(service, s.name, k=50)  # more concepts than rows
    assert code_of(info) == grpc.StatusCode.INVALID_ARGUMENT and violations(info) == ["nb_concepts"]
    with pytest.raises(grpc.RpcError) as info:
        fit(service, s.name, k=-1)
    assert code_of(info) == grpc.StatusCode.INVALID_ARGUMENT and violations(info) == ["nb_concepts"]
    with pytest.raises(grpc.RpcError) as info:
        fit(service, s.name, method=concept_pb2.CONCEPT_METHOD_UNSPECIFIED)
    assert code_of(info) == grpc.StatusCode.INVALID_ARGUMENT and violations(info) == ["method"]
    with pytest.raises(grpc.RpcError) as info:
        fit(service, "activationSets/missing")
    assert code_of(info) == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as info:
        fit(service, "activationSets/..%2F..")
    assert code_of(info) == grpc.StatusCode.INVALID_ARGUMENT
    model, _ = fit(service, s.name, method=concept_pb2.CONCEPT_METHOD_PCA, k=2)
    src = concept_pb2.ActivationSource(tensor=to_tensor(np.zeros((3, HIDDEN + 1), np.float32)))
    with pytest.raises(grpc.RpcError) as info:
        encode(service, model.name, src)
    assert code_of(info) == grpc.StatusCode.INVALID_ARGUMENT and "hidden size" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        encode(service, model.name, concept_pb2.ActivationSource())
    assert code_of(info) == grpc.StatusCode.INVALID_ARGUMENT and violations(info) == ["source"]
    nan = np.zeros((2, 2), np.float32)
    nan[0, 0] = np.nan
    with pytest.raises(grpc.RpcError) as info:
        list(service.Decode(concept_pb2.DecodeRequest(concept_model=model.name, codes=to_tensor(nan)), timeout=5))
    assert code_of(info) == grpc.StatusCode.INVALID_ARGUMENT
    for bad in ("conceptModels/../x", "nope"):
        with pytest.raises(grpc.RpcError) as info:
            service.GetConceptModel(concept_pb2.GetConceptModelRequest(name=bad), timeout=5)
        assert code_of(info) == (grpc.StatusCode.INVALID_ARGUMENT if "/" in bad else grpc.StatusCode.NOT_FOUND)
    with pytest.raises(grpc.RpcError) as info:
        list(service.ComputeConceptMetrics(concept_pb2.ComputeConceptMetricsRequest(
            concept_models=[model.name], metrics=[concept_pb2.CONCEPT_METRIC_STABILITY]), timeout=5))
    assert code_of(info) == grpc.StatusCode.INVALID_ARGUMENT and "at least 2" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        service.ImportConceptModel(iter([concept_pb2.ImportConceptModelRequest(data=b"not a model")]), timeout=5)
    assert code_of(info) == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as info:
        list(service.ExportConceptModel(concept_pb2.ExportConceptModelRequest(name="gone"), timeout=5))
    assert code_of(info) == grpc.StatusCode.NOT_FOUND


def _fit_threads():
    return [t for t in threading.enumerate() if t.name.startswith("job-") and t.is_alive()]


def test_cancelling_a_long_fit_stops_it(service):
    s = upload(service, data(n=400))
    req = concept_pb2.FitConceptModelRequest(
        activation_set=s.name, method=concept_pb2.CONCEPT_METHOD_SAE_VANILLA, nb_concepts=4,
        options=concept_pb2.ConceptFitOptions(device="cpu", epochs=100000, batch_size=8))
    call = service.FitConceptModel(req, timeout=120)
    seen = 0
    for event in call:
        if event.WhichOneof("event") in ("progress", "log"):
            seen += 1
        if seen >= 3:
            break
    call.cancel()
    t0 = time.monotonic()
    while _fit_threads() and time.monotonic() - t0 < 20:
        time.sleep(0.05)
    assert not _fit_threads(), "the fit kept running after the call was cancelled"
    assert list(service.ListConceptModels(concept_pb2.ListConceptModelsRequest(), timeout=5).models) == []


def test_main_parses_flags_and_env(tmp_path, monkeypatch):
    from xaimesh_concept.__main__ import build_parser

    monkeypatch.setenv("XAIMESH_DATA_DIR", str(tmp_path / "env-data"))
    monkeypatch.setenv("XAIMESH_MODEL_SERVER", "ms:1234")
    config = build_parser().parse_config(["--device", "cpu", "--port", "0"])
    assert str(config.data_dir) == str(tmp_path / "env-data") and config.options.device == "cpu"
    assert config.downstream("model-server").address == "ms:1234"
    assert build_parser().parse_config([]).port == 50053
    servicer = ConceptServicer.from_config(config)
    assert servicer.model_server_address == "ms:1234" and (tmp_path / "env-data" / "tmp").is_dir()
