"""Security on real service processes: bearer tokens on every service (and
on the calls between services), TLS and mutual TLS, the OpenAI key kept out
of logs / errors / metrics / data, path-traversal ids, request size limits.
"""

from __future__ import annotations

import os
import re

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from measure import metrics_text
from tests.fixtures.certs import HAVE_OPENSSL, make_certs
from tests.fixtures.fake_openai import FakeHTTPError, FakeOpenAIServer
from xaimesh_contracts.v1 import (attribution_pb2, attribution_pb2_grpc, concept_pb2, concept_pb2_grpc, labeling_pb2,
                        labeling_pb2_grpc, model_pb2, model_pb2_grpc, tensor_pb2)
from xaimesh_runtime.client import make_channel

TOKENS = {"model": "model-token-3f9a", "concept": "concept-token-77c1", "labeling": "labeling-token-0b2e",
          "attribution": "attribution-token-5d48"}
TEXTS = ["The cat sat on the mat.", "Alice and Bob enter the bar, then Alice offers a drink to Bob.",
         "Paris is the capital of France.", "Rain fell all night over the quiet town."]
OPEN_KEY = "sk-proj-LEAKCANARY-" + "9c1e5f0a7b3d" * 3


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("XAIMESH_PROGRESS", "0")


# --------------------------------------------------------------------------
# bearer tokens


@pytest.fixture(scope="module")
def secured(module_launcher, tiny_lm_path, tmp_path_factory):
    """Every service with its own token; each knows the tokens of the services it calls."""
    model = module_launcher.start("model", "--model", str(tiny_lm_path), "--auth-token", TOKENS["model"])
    data_dir = tmp_path_factory.mktemp("secured") / "concept-data"
    concept = module_launcher.start(
        "concept", "--auth-token", TOKENS["concept"], "--model-server-address", model.address,
        "--model-server-token", TOKENS["model"], "--data-dir", str(data_dir), "--device", "cpu")
    concept.data_dir = data_dir
    labeling = module_launcher.start(
        "labeling", "--auth-token", TOKENS["labeling"], "--model-server-address", model.address,
        "--model-server-token", TOKENS["model"], "--concept-service-address", concept.address,
        "--concept-service-token", TOKENS["concept"], env={"XAIMESH_OPENAI_API_KEY": ""})
    attribution = module_launcher.start(
        "attribution", "--auth-token", TOKENS["attribution"], "--model-server-address", model.address,
        "--model-server-token", TOKENS["model"])
    return {"model": model, "concept": concept, "labeling": labeling, "attribution": attribution}


def _probe(service: str, channel) -> None:
    """One cheap call of `service` (it may fail on its arguments, not on auth)."""
    if service == "model":
        model_pb2_grpc.ModelServiceStub(channel).ListModels(model_pb2.ListModelsRequest(), timeout=10)
    elif service == "concept":
        concept_pb2_grpc.ConceptServiceStub(channel).ListActivationSets(
            concept_pb2.ListActivationSetsRequest(), timeout=10)
    elif service == "attribution":
        attribution_pb2_grpc.AttributionServiceStub(channel).ListMethods(
            attribution_pb2.ListMethodsRequest(), timeout=10)
    else:
        list(labeling_pb2_grpc.LabelingServiceStub(channel).ScoreLabels(
            labeling_pb2.ScoreLabelsRequest(), timeout=10))


@pytest.mark.parametrize("service", ["model", "concept", "labeling", "attribution"])
def test_every_service_requires_its_token_and_leaves_health_open(secured, service):
    address = secured[service].address
    others = [t for s, t in TOKENS.items() if s != service]
    for token in (None, "wrong-token", others[0], TOKENS[service] + "x"):
        with make_channel(address, token=token) as channel:
            with pytest.raises(grpc.RpcError) as error:
                _probe(service, channel)
            assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED, (token, error.value)
            assert TOKENS[service] not in (error.value.details() or "")
    with make_channel(address) as channel:  # probes need no token
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    with make_channel(address, token=TOKENS[service]) as channel:
        try:
            _probe(service, channel)
        except grpc.RpcError as error:  # refused on its arguments, past authentication
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    log = secured[service].log()
    assert TOKENS[service] not in log


def test_calls_between_services_carry_the_downstream_tokens(secured):
    concept, labeling = secured["concept"], secured["labeling"]
    with make_channel(concept.address, token=TOKENS["concept"]) as channel:
        stub = concept_pb2_grpc.ConceptServiceStub(channel)
        (*_, last) = stub.CreateActivationSets(concept_pb2.CreateActivationSetsRequest(
            texts=TEXTS, split_points=["1"]), timeout=60)  # concept -> model with the model's token
        aset = last.sets.sets[0].name
        (*_, fitted) = stub.FitConceptModel(concept_pb2.FitConceptModelRequest(
            activation_set=aset, method=concept_pb2.CONCEPT_METHOD_PCA, nb_concepts=2), timeout=60)
    with make_channel(labeling.address, token=TOKENS["labeling"]) as channel:
        events = list(labeling_pb2_grpc.LabelingServiceStub(channel).LabelConcepts(
            labeling_pb2.LabelConceptsRequest(
                concept_model=fitted.model.name, activation_set=aset, k_examples=2,
                llm=labeling_pb2.LlmBackend(model_server=labeling_pb2.ModelServerBackend(
                    max_new_tokens=4, temperature=1.0))), timeout=60))
    labels = [e.label for e in events if e.WhichOneof("event") == "label"]
    assert labels  # labeling -> concept and labeling -> model (Generate) with their tokens
    for label in labels:
        assert not label.HasField("error") or label.error.code != grpc.StatusCode.UNAUTHENTICATED.value[0]
    with make_channel(secured["attribution"].address, token=TOKENS["attribution"]) as channel:
        events = list(attribution_pb2_grpc.AttributionServiceStub(channel).Explain(
            attribution_pb2.ExplainRequest(method=attribution_pb2.ATTRIBUTION_METHOD_OCCLUSION, inputs=[
                attribution_pb2.ExplainInput(text=TEXTS[1], targets=attribution_pb2.Targets(text=" Bob"))]),
            timeout=60))
    assert [e for e in events if e.WhichOneof("event") == "result"]


def test_a_wrong_downstream_token_is_reported_as_the_service_configuration(launcher, secured, tmp_path):
    concept = launcher.start("concept", "--model-server-address", secured["model"].address,
                             "--model-server-token", "not-the-model-token", "--data-dir", str(tmp_path / "d"))
    with make_channel(concept.address) as channel:
        with pytest.raises(grpc.RpcError) as error:
            list(concept_pb2_grpc.ConceptServiceStub(channel).CreateActivationSets(
                concept_pb2.CreateActivationSetsRequest(texts=TEXTS, split_points=["1"]), timeout=30))
    # not the caller's credentials that are wrong: not UNAUTHENTICATED
    assert error.value.code() != grpc.StatusCode.UNAUTHENTICATED
    assert "rejected this service's credentials (check --model-server-token)" in error.value.details()
    assert "not-the-model-token" not in error.value.details() + concept.log()


# --------------------------------------------------------------------------
# TLS and mutual TLS


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if not HAVE_OPENSSL:
        pytest.skip("needs the openssl CLI")
    return make_certs(tmp_path_factory.mktemp("certs"))


def test_tls_and_mutual_tls_through_the_sdk(launcher, tiny_lm_path, certs, tmp_path):
    import xaimesh
    from xaimesh.errors import UnavailableError
    from xaimesh.split_model import ActivationSet

    ca, cert, key = certs / "ca.pem", certs / "server.pem", certs / "server.key"
    client_cert, client_key = certs / "client.pem", certs / "client.key"
    # the model-server requires client certificates (mTLS); the concept-service serves TLS
    # and presents its own client certificate to the model-server
    model = launcher.start("model", "--model", str(tiny_lm_path), "--tls-cert", str(cert), "--tls-key", str(key),
                           "--tls-client-ca", str(ca))
    concept = launcher.start(
        "concept", "--tls-cert", str(cert), "--tls-key", str(key), "--model-server-address", model.address,
        "--model-server-tls-ca", str(ca), "--model-server-tls-cert", str(client_cert),
        "--model-server-tls-key", str(client_key), "--data-dir", str(tmp_path / "d"), "--device", "cpu")

    mesh = xaimesh.connect(model.address, concept=concept.address, tls_ca=str(ca), tls_cert=str(client_cert),
                           tls_key=str(client_key), wait_seconds=30)
    remote = mesh.model()
    assert remote.tokenizer.encode("Hello") and remote.num_layers > 1
    acts = xaimesh.ModelWithSplitPoints(remote, split_points=[1]).get_activations(TEXTS)  # concept -> model, mTLS
    assert acts.num_samples == len(TEXTS) and acts.numpy().shape == acts.shape
    mesh.close()

    # TLS alone (the server's CA, no client certificate): the concept-service yes, the model-server no
    mesh = xaimesh.Mesh({"model": model.address, "concept": concept.address}, tls_ca=str(ca))
    assert [s.name for s in ActivationSet.list(mesh)] == [acts.name]
    with pytest.raises(UnavailableError):
        mesh.model()
    mesh.close()
    # plaintext, or a CA that did not sign the server's certificate: refused
    for options in ({}, {"tls_ca": str(certs / "other-ca.pem"), "tls_cert": str(client_cert),
                         "tls_key": str(client_key)}):
        mesh = xaimesh.Mesh({"model": model.address, "concept": concept.address}, **options)
        with pytest.raises(UnavailableError):
            mesh.model()
        with pytest.raises(UnavailableError):
            ActivationSet.list(mesh)
        mesh.close()
    for service in (model, concept):
        assert "Traceback" not in service.log()


# --------------------------------------------------------------------------
# the OpenAI key


def test_the_openai_key_never_reaches_logs_errors_metrics_or_data(launcher, secured, tmp_path):
    model_server, concept = secured["model"], secured["concept"]
    data_dir = concept.data_dir
    key_file = tmp_path / "openai-key"
    calls = {"n": 0}

    def responder(messages):
        calls["n"] += 1
        if calls["n"] % 3 == 0:  # servers echo the key back in 401s
            raise FakeHTTPError(401, f"Incorrect API key provided: {OPEN_KEY}.")
        if calls["n"] % 3 == 1:
            raise FakeHTTPError(500, f"upstream failed for key {OPEN_KEY}")
        return "Label: cat words"

    with FakeOpenAIServer(responder=responder) as fake:
        key_file.write_text(OPEN_KEY)
        labeling = launcher.start(
            "labeling", "--model-server-address", model_server.address, "--concept-service-address",
            concept.address, "--model-server-token", TOKENS["model"], "--concept-service-token",
            TOKENS["concept"], "--openai-api-key-file", str(key_file), "--openai-base-url", fake.base_url,
            "--log-level", "DEBUG", "--log-format", "json")
        key_file.unlink()
        with make_channel(concept.address, token=TOKENS["concept"]) as channel:
            stub = concept_pb2_grpc.ConceptServiceStub(channel)
            (*_, last) = stub.CreateActivationSets(concept_pb2.CreateActivationSetsRequest(
                texts=TEXTS, split_points=["1"], display_name=f"display {OPEN_KEY[:8]}"), timeout=60)
            aset = last.sets.sets[0].name
            (*_, fitted) = stub.FitConceptModel(concept_pb2.FitConceptModelRequest(
                activation_set=aset, method=concept_pb2.CONCEPT_METHOD_KMEANS, nb_concepts=4), timeout=60)
        messages = []
        with make_channel(labeling.address) as channel:
            stub = labeling_pb2_grpc.LabelingServiceStub(channel)
            base = dict(concept_model=fitted.model.name, activation_set=aset, k_examples=3, max_concurrency=1)
            openai = labeling_pb2.LlmBackend(openai=labeling_pb2.OpenAIBackend(max_retries=-1))
            runs = [
                ({}, labeling_pb2.LabelConceptsRequest(**base)),  # the service's configured key
                ({"metadata": [("x-openai-api-key", OPEN_KEY)]},  # the caller's key, another url
                 labeling_pb2.LabelConceptsRequest(**base, llm=labeling_pb2.LlmBackend(
                     openai=labeling_pb2.OpenAIBackend(base_url=fake.base_url + "/", max_retries=-1)))),
                ({}, labeling_pb2.LabelConceptsRequest(**base, llm=openai)),
            ]
            for kwargs, request in runs:
                for event in stub.LabelConcepts(request, timeout=60, **kwargs):
                    if event.WhichOneof("event") == "label":
                        messages += [event.label.error.message, event.label.label, event.label.llm,
                                     event.label.prompt]
            scores = stub.ScoreLabels(labeling_pb2.ScoreLabelsRequest(
                concept_model=fitted.model.name, activation_set=aset, n_examples=2,
                labels=[labeling_pb2.LabelToScore(concept_index=0, label="cats")],
                scorer=labeling_pb2.LlmBackend(openai=labeling_pb2.OpenAIBackend(max_retries=-1))), timeout=60)
            for event in scores:
                if event.WhichOneof("event") == "score":
                    messages.append(event.score.error.message)
            with pytest.raises(grpc.RpcError) as error:  # a call-level error too
                list(stub.LabelConcepts(labeling_pb2.LabelConceptsRequest(
                    concept_model="conceptModels/nope", activation_set=aset), timeout=30,
                    metadata=[("x-openai-api-key", OPEN_KEY)]))
            messages.append(error.value.details())
        assert any("HTTP 401" in m for m in messages) and any("HTTP 500" in m for m in messages), messages
        assert any("cat words" in m for m in messages)
        assert fake.requests and all(r.headers["authorization"] == f"Bearer {OPEN_KEY}" for r in fake.requests)
        metrics = "".join(metrics_text(s.metrics_port) for s in (labeling, concept, model_server))
        labeling.stop()
    leaks = [m for m in messages if OPEN_KEY in m or OPEN_KEY[:20] in m]
    assert not leaks, leaks
    assert "xaimesh_labeling_llm_calls_total" in metrics and OPEN_KEY[:20] not in metrics
    for process in (labeling, concept, model_server):
        assert process.log() and OPEN_KEY[:20] not in process.log(), process.service
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert OPEN_KEY[:20].encode() not in path.read_bytes(), path


# --------------------------------------------------------------------------
# the data directory and request sizes


TRAVERSALS = ["../../../etc/passwd", "activationSets/../../sentinel", "activationSets/..", "..",
              "/etc/passwd", "activationSets//etc/passwd", "conceptModels/../activation_sets/x",
              "activationSets/a/../../sentinel", "..\\..\\sentinel", "activationSets/%2e%2e%2fsentinel",
              "activationSets/x\x00/../../sentinel", "activationSets/sentinel\n", "~/sentinel", "."]


def test_the_data_directory_refuses_path_traversal_ids(secured):
    concept = secured["concept"]
    data_dir = concept.data_dir
    sentinel = data_dir.parent / "sentinel"  # what "../sentinel" names from the data dir's collections
    sentinel.mkdir()
    (sentinel / "meta.json").write_text("{}")
    around = sorted(p.name for p in data_dir.parent.iterdir())
    c = concept_pb2
    with make_channel(concept.address, token=TOKENS["concept"]) as channel:
        stub = concept_pb2_grpc.ConceptServiceStub(channel)
        (*_, last) = stub.CreateActivationSets(c.CreateActivationSetsRequest(texts=TEXTS, split_points=["1"]),
                                               timeout=60)
        real = last.sets.sets[0]
        calls = {
            "GetActivationSet": lambda n: stub.GetActivationSet(c.GetActivationSetRequest(name=n), timeout=10),
            "DeleteActivationSet": lambda n: stub.DeleteActivationSet(c.DeleteActivationSetRequest(name=n),
                                                                      timeout=10),
            "ReadActivationSet": lambda n: list(stub.ReadActivationSet(c.ReadActivationSetRequest(name=n),
                                                                       timeout=10)),
            "FitConceptModel": lambda n: list(stub.FitConceptModel(c.FitConceptModelRequest(
                activation_set=n, method=c.CONCEPT_METHOD_PCA, nb_concepts=2), timeout=10)),
            "GetConceptModel": lambda n: stub.GetConceptModel(c.GetConceptModelRequest(name=n), timeout=10),
            "DeleteConceptModel": lambda n: stub.DeleteConceptModel(c.DeleteConceptModelRequest(name=n),
                                                                    timeout=10),
            "ExportConceptModel": lambda n: list(stub.ExportConceptModel(c.ExportConceptModelRequest(name=n),
                                                                         timeout=10)),
            "Encode": lambda n: list(stub.Encode(c.EncodeRequest(concept_model=n, source=c.ActivationSource(
                activation_set=c.ActivationSetRange(name=real.name))), timeout=10)),
            "GetTopExamples": lambda n: list(stub.GetTopExamples(c.GetTopExamplesRequest(
                concept_model=n, activation_set=n), timeout=10)),
        }
        tried = 0
        for method, call in calls.items():
            for name in TRAVERSALS + [real.name + "/../" + real.id, real.id + "\n"]:
                with pytest.raises(grpc.RpcError) as error:
                    call(name)
                tried += 1
                assert error.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND), (
                    method, name, error.value.code(), error.value.details())
        # names given by clients never become paths: uploads get server-made ids
        upload = stub.UploadActivationSet(iter([
            c.UploadActivationSetRequest(header=c.UploadActivationSetHeader(
                display_name="../../sentinel", split_point="../../x", model="../../m")),
            c.UploadActivationSetRequest(chunk=tensor_pb2.TensorChunk(
                data=np.ones((2, 4), np.float32).tobytes(), byte_offset=0, total_bytes=32,
                dtype=tensor_pb2.DATA_TYPE_FLOAT32, shape=[2, 4]))]), timeout=10)
        assert re.fullmatch(r"[A-Za-z0-9_-]+", upload.set.id)
        assert stub.GetActivationSet(c.GetActivationSetRequest(name=real.name), timeout=10).set.id == real.id
    assert sorted(p.name for p in sentinel.iterdir()) == ["meta.json"]
    assert (sentinel / "meta.json").read_text() == "{}"
    assert sorted(p.name for p in data_dir.parent.iterdir()) == around  # nothing written next to the data dir
    assert tried >= 9 * len(TRAVERSALS)


def test_messages_over_the_size_limit_are_refused_and_the_service_stays_healthy(launcher, tiny_lm_path, tmp_path):
    model = launcher.start("model", "--model", str(tiny_lm_path), "--max-message-mb", "1")
    concept = launcher.start("concept", "--model-server-address", model.address, "--data-dir", str(tmp_path / "d"),
                             "--max-message-mb", "1", "--device", "cpu")
    big_text = "word " * (300 << 10)  # 1.5 MiB
    with make_channel(model.address) as channel:
        stub = model_pb2_grpc.ModelServiceStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            stub.Tokenize(model_pb2.TokenizeRequest(texts=[big_text]), timeout=30)
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert stub.Tokenize(model_pb2.TokenizeRequest(texts=["fine"]), timeout=30).results
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    with make_channel(concept.address) as channel:
        stub = concept_pb2_grpc.ConceptServiceStub(channel)
        rows = np.ones((600, 512), np.float32)  # one 1.2 MiB chunk
        with pytest.raises(grpc.RpcError) as error:
            stub.UploadActivationSet(iter([
                concept_pb2.UploadActivationSetRequest(header=concept_pb2.UploadActivationSetHeader()),
                concept_pb2.UploadActivationSetRequest(chunk=tensor_pb2.TensorChunk(
                    data=rows.tobytes(), byte_offset=0, total_bytes=rows.nbytes,
                    dtype=tensor_pb2.DATA_TYPE_FLOAT32, shape=list(rows.shape)))]), timeout=30)
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        with pytest.raises(grpc.RpcError) as error:
            list(stub.CreateActivationSets(concept_pb2.CreateActivationSetsRequest(
                texts=[big_text], split_points=["1"]), timeout=30))
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert stub.ListActivationSets(concept_pb2.ListActivationSetsRequest(), timeout=10).sets == []
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert os.path.isdir(tmp_path / "d")
