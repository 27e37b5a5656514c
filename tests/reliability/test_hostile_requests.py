"""Every RPC of every service under malformed and hostile requests.

Each request must end with a status a person can act on: OK for a request
that happens to be valid, otherwise a non-OK code that is not UNKNOWN or
INTERNAL, with a message; and the service must still answer health after.

Requests also must not run on until the client gives up: a small request
with an enormous count (2^31 perturbations, k, nb_concepts,
max_iterations...) is refused up front, so DEADLINE_EXCEEDED (the
per-request deadline is ``XAIMESH_FUZZ_DEADLINE`` s, default 20) fails the
test too, unless the request itself carries more than
``HEAVY_REQUEST_BYTES`` (hundreds of long texts are real work).

Real resource names (a model id, an activation set, a concept model, token
ids, an exported concept model) are mixed into the fields of those names
(see ``hostile.message_strategy(known=...)``), so requests get past the
"not found" checks and reach the deeper validation. Resources a request
deleted are re-created before the next RPC is tried.

``XAIMESH_FUZZ_EXAMPLES`` (default 30) requests per RPC;
``XAIMESH_FUZZ_SEED`` draws another set of examples (default: the fixed,
derandomized set); ``XAIMESH_FUZZ_SHRINK=1`` shrinks a failing request to a
minimal one (off by default: each shrinking step is a real call, minutes). The tally of requests per service and status code is
printed and written to ``.cache/reliability/hostile.json``.
"""

from __future__ import annotations

import collections
import json
import os
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, Phase, given, seed, settings

from hostile import _set_path, message_strategy, mutation_strategy
from xaimesh_contracts.v1 import (attribution_pb2, concept_pb2, concept_pb2_grpc, labeling_pb2, model_pb2,
                        model_pb2_grpc, tensor_pb2)
from xaimesh_contracts.tensors import to_tensor
from xaimesh_runtime.client import make_channel

EXAMPLES = int(os.environ.get("XAIMESH_FUZZ_EXAMPLES", "30"))
SEED = os.environ.get("XAIMESH_FUZZ_SEED")
DEADLINE = float(os.environ.get("XAIMESH_FUZZ_DEADLINE", "20"))
PHASES = [p for p in Phase if p != Phase.shrink or os.environ.get("XAIMESH_FUZZ_SHRINK") == "1"]
FORBIDDEN = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
HEAVY_REQUEST_BYTES = 256 << 10
ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / ".cache" / "reliability" / "hostile.json"

# service -> status code name -> count; method -> slowest request (s)
TALLY: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
SLOWEST: dict[str, float] = {}

SERVICES = {
    "model": model_pb2.DESCRIPTOR.services_by_name["ModelService"],
    "attribution": attribution_pb2.DESCRIPTOR.services_by_name["AttributionService"],
    "concept": concept_pb2.DESCRIPTOR.services_by_name["ConceptService"],
    "labeling": labeling_pb2.DESCRIPTOR.services_by_name["LabelingService"],
}
TEXTS = ["The cat sat on the mat.", "Alice and Bob enter the bar, then Alice offers a drink to Bob.",
         "Paris is the capital of France.", "Rain fell all night over the quiet town."]


class Resources:
    """Real names for the hostile requests, re-created when a request deleted them."""

    def __init__(self, model_address: str):
        self.model_address = model_address
        self.concept_address: str | None = None
        self.known: dict[str, list] = {}
        self.set_name = self.model_name = ""

    def model_known(self) -> dict[str, list]:
        if not self.known:
            with make_channel(self.model_address) as channel:
                stub = model_pb2_grpc.ModelServiceStub(channel)
                infos = stub.ListModels(model_pb2.ListModelsRequest(), timeout=30).models
                models = [m.model_id for m in infos]
                ids = list(stub.Tokenize(model_pb2.TokenizeRequest(texts=TEXTS[1:2]), timeout=30)
                           .results[0].token_ids)
            self.known = {
                "model": ["", *models],
                "texts": [TEXTS[:1], TEXTS],
                "text": TEXTS[:2],
                "split_points": [["1"], ["0", "2"], ["model.layers.1"]],
                "input_ids": [ids, ids[:3]],
                "ids": [ids],
                "target_positions": [[len(ids) - 1], [1, 2]],
                "target_classes": [[0], [1]],
                "token_ids": [ids[:2]],
                "hidden_size": [infos[0].hidden_size],
            }
        return self.known

    def concept_known(self, concept_address: str) -> dict[str, list]:
        known = dict(self.model_known())
        with make_channel(concept_address) as channel:
            stub = concept_pb2_grpc.ConceptServiceStub(channel)
            if not self._exists(stub.GetActivationSet, concept_pb2.GetActivationSetRequest(name=self.set_name)):
                (*_, last) = stub.CreateActivationSets(concept_pb2.CreateActivationSetsRequest(
                    texts=TEXTS, split_points=["1"], granularity=tensor_pb2.GRANULARITY_TOKEN), timeout=60)
                self.set_name = last.sets.sets[0].name
            if not self._exists(stub.GetConceptModel, concept_pb2.GetConceptModelRequest(name=self.model_name)):
                (*_, last) = stub.FitConceptModel(concept_pb2.FitConceptModelRequest(
                    activation_set=self.set_name, method=concept_pb2.CONCEPT_METHOD_PCA, nb_concepts=3),
                    timeout=60)
                self.model_name = last.model.name
            set_rows = int(stub.GetActivationSet(concept_pb2.GetActivationSetRequest(name=self.set_name),
                                                 timeout=30).set.shape[0])
            exported = b"".join(r.data for r in stub.ExportConceptModel(
                concept_pb2.ExportConceptModelRequest(name=self.model_name), timeout=30))
        known.update({
            "name": [self.set_name, self.model_name],
            "activation_set": [self.set_name],
            "concept_model": [self.model_name],
            "concept_models": [[self.model_name], [self.model_name, self.model_name]],
            "concept_indices": [[0], [0, 2]],
            "data": [exported, exported[: len(exported) // 2]],
            "labels": [to_tensor(np.arange(set_rows) % 2)],
        })
        return known

    @staticmethod
    def _exists(get, request) -> bool:
        if not request.name:
            return False
        try:
            get(request, timeout=30)
            return True
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise


# Each service's data memory is capped: a request that makes a service
# allocate hundreds of GiB gets a MemoryError there instead of making the
# kernel kill processes all over a shared machine.
MEMORY_LIMIT_MB = 6144


@pytest.fixture(scope="module")
def mesh_processes(module_launcher, tiny_lm_path, tiny_classifier_path, tmp_path_factory):
    """Service key -> address; services start on first use."""
    from tests.fixtures.family_models import family_dir

    # an encoder-decoder too: requests that name it with a causal LM's fields must be refused, not crash it
    model = module_launcher.start("model", "--model", str(tiny_lm_path), "--model", str(tiny_classifier_path),
                                  "--model", str(family_dir("t5")), memory_limit_mb=MEMORY_LIMIT_MB)
    addresses = {"model": model.address}
    upstream = ["--model-server-address", model.address]

    def address(service: str) -> str:
        if service not in addresses:
            if service == "attribution":
                args = upstream
            elif service == "concept":
                args = upstream + ["--data-dir", str(tmp_path_factory.mktemp("concept-data")), "--device", "cpu"]
            else:
                args = upstream + ["--concept-service-address", address("concept")]
            addresses[service] = module_launcher.start(service, *args, memory_limit_mb=MEMORY_LIMIT_MB).address
        return addresses[service]

    return address


@pytest.fixture(scope="module")
def resources(mesh_processes) -> Resources:
    return Resources(mesh_processes("model"))


def _invoke(channel, service_desc, method, request, repeat: int = 2, timeout: float = DEADLINE,
            max_events: int | None = 200):
    """Send `request` (`repeat` times on a client stream) and read the whole
    answer; a stream is cancelled after `max_events` messages."""
    path = f"/{service_desc.full_name}/{method.name}"
    out_cls = method.output_type._concrete_class
    serialize, deserialize = (lambda m: m.SerializeToString()), out_cls.FromString
    if method.client_streaming:
        call = (channel.stream_stream if method.server_streaming else channel.stream_unary)(
            path, request_serializer=serialize, response_deserializer=deserialize)
        result = call(iter([request] * repeat), timeout=timeout)
    else:
        call = (channel.unary_stream if method.server_streaming else channel.unary_unary)(
            path, request_serializer=serialize, response_deserializer=deserialize)
        result = call(request, timeout=timeout)
    if method.server_streaming:
        for n, _ in enumerate(result):
            if max_events is not None and n > max_events:
                result.cancel()
                break


def _check_code(key: str, error: grpc.RpcError, request) -> None:
    code = error.code()
    assert code not in FORBIDDEN, f"{key}: {code.name}: {error.details()}\nrequest: {request}"[:3000]
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        assert request.ByteSize() > HEAVY_REQUEST_BYTES, (
            f"{key}: a {request.ByteSize()}-byte request ran past the {DEADLINE:g} s deadline instead of "
            f"being refused up front\nrequest: {request}")[:3000]


def _cases():
    for service, desc in SERVICES.items():
        for method in desc.methods:
            yield pytest.param(service, method.name, id=f"{service}.{method.name}")


def _fuzz(channel, service: str, method_name: str, strategy, repeat: int) -> None:
    """Sends the requests `strategy` draws to one RPC: each must end OK or
    with an actionable status (see _check_code) and a message; the service
    still answers health afterwards. Closes `channel`."""
    desc = SERVICES[service]
    method = desc.methods_by_name[method_name]
    tally = TALLY[service]
    key = f"{service}.{method_name}"

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=SEED is None,
              suppress_health_check=list(HealthCheck), phases=PHASES)
    @given(strategy)
    def check(request):
        tally["requests"] += 1
        started = time.monotonic()
        try:
            _invoke(channel, desc, method, request, repeat=repeat)
            tally["OK"] += 1
        except grpc.RpcError as error:
            code = error.code()
            tally[code.name] += 1
            _check_code(key, error, request)
            assert code == grpc.StatusCode.CANCELLED or error.details(), f"{key}: {code.name} without a message"
        finally:
            SLOWEST[key] = max(SLOWEST.get(key, 0.0), time.monotonic() - started)

    if SEED is not None:
        check = seed(int(SEED))(check)
    try:
        check()
    finally:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        channel.close()
    assert health.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("service, method_name", list(_cases()))
def test_hostile_requests_get_actionable_statuses(mesh_processes, resources, service, method_name):
    method = SERVICES[service].methods_by_name[method_name]
    address = mesh_processes(service)
    known = (resources.model_known() if service in ("model", "attribution")
             else resources.concept_known(mesh_processes("concept")))
    _fuzz(make_channel(address), service, method_name, message_strategy(method.input_type, known=known), repeat=2)


# RPCs whose valid request is mutated one or two fields at a time.
MUTATED = {
    "model": ["Tokenize", "Detokenize", "Score", "ComputeGradients", "Generate", "StreamActivations",
              "LogitLens", "ConceptGradients", "UnembedDirections", "FitLensTranslators"],
    "attribution": ["Explain", "EvaluateAttributions"],
    "concept": ["CreateActivationSets", "ListActivationSets", "ReadActivationSet", "FitConceptModel",
                "ListConceptModels", "Encode", "Decode", "GetDictionary", "ComputeConceptMetrics",
                "GetTopExamples", "ExtractLabels", "FitProbe", "ImportConceptModel", "GetConceptEncoder",
                "FitTunedLens"],
    "labeling": ["LabelConcepts", "ScoreLabels", "ScoreSimulatability"],
}


def _evaluate_request(attribution_address: str, explain) -> attribution_pb2.EvaluateAttributionsRequest:
    """A valid Deletion request of the first attribution `explain` gives."""
    from xaimesh_contracts.v1 import attribution_pb2_grpc

    with make_channel(attribution_address) as channel:
        stub = attribution_pb2_grpc.AttributionServiceStub(channel)
        attributions = [e.result.attribution for e in stub.Explain(explain, timeout=60)
                        if e.WhichOneof("event") == "result"]
    assert attributions, "the base Explain request gave no attribution"
    return attribution_pb2.EvaluateAttributionsRequest(
        model=explain.model, metric=attribution_pb2.ATTRIBUTION_METRIC_DELETION, attributions=attributions[:1],
        n_random_orders=2)


def valid_request(resources: Resources, concept_address, attribution_address, service: str, method: str):
    """A valid request of `method`, built with the real resources."""
    k = resources.model_known() if service in ("model", "attribution") else resources.concept_known(concept_address())
    ids, lm = k["input_ids"][0], k["model"][1]
    m, c, a, t = model_pb2, concept_pb2, attribution_pb2, tensor_pb2
    if service == "model":
        return {
            "Tokenize": lambda: m.TokenizeRequest(texts=TEXTS),
            "Detokenize": lambda: m.DetokenizeRequest(sequences=[m.TokenIds(ids=ids)]),
            "Score": lambda: m.ScoreRequest(model=lm, input_ids=ids, target_positions=[len(ids) - 1]),
            "ComputeGradients": lambda: m.ComputeGradientsRequest(
                model=lm, input_ids=ids, target_positions=[len(ids) - 1],
                samples=m.EmbeddingSamples(alphas=[0.5, 1.0])),
            "Generate": lambda: m.GenerateRequest(model=lm, text="Hello", max_new_tokens=4),
            "StreamActivations": lambda: m.StreamActivationsRequest(model=lm, texts=TEXTS, split_points=["1"]),
            "LogitLens": lambda: m.LogitLensRequest(model=lm, input_ids=ids, top_k=3),
            "VocabularyConcepts": lambda: m.VocabularyConceptsRequest(
                model=lm, k=3, concept_encoder=m.ConceptEncoder(
                    split_point="1", weight=to_tensor(np.eye(k["hidden_size"][0], 2, dtype=np.float32)))),
            "UnembedDirections": lambda: m.UnembedDirectionsRequest(
                model=lm, directions=to_tensor(np.ones((2, k["hidden_size"][0]), np.float32)), top_k=3),
            "ConceptGradients": lambda: m.ConceptGradientsRequest(
                model=lm, input_ids=ids, split_point="1", target_positions=[len(ids) - 1],
                codes=to_tensor(np.zeros((len(ids), 2), np.float32)),
                decoder=to_tensor(np.zeros((2, k["hidden_size"][0]), np.float32))),
            "FitLensTranslators": lambda: m.FitLensTranslatorsRequest(model=lm, texts=TEXTS[:2],
                                                                      held_out_texts=TEXTS[2:3]),
        }[method]()
    if service == "attribution":
        explain = a.ExplainRequest(model=lm, method=a.ATTRIBUTION_METHOD_OCCLUSION, inputs=[
            a.ExplainInput(text=TEXTS[1], targets=a.Targets(text=" Bob smiles."))])
        return explain if method == "Explain" else _evaluate_request(attribution_address(), explain)
    source = c.ActivationSource(activation_set=c.ActivationSetRange(name=resources.set_name))
    msg_server = labeling_pb2.LlmBackend(model_server=labeling_pb2.ModelServerBackend(max_new_tokens=4))
    return {
        "CreateActivationSets": lambda: c.CreateActivationSetsRequest(texts=TEXTS[:2], split_points=["1"]),
        "ListActivationSets": lambda: c.ListActivationSetsRequest(page_size=10),
        "ReadActivationSet": lambda: c.ReadActivationSetRequest(name=resources.set_name, include_provenance=True),
        "FitConceptModel": lambda: c.FitConceptModelRequest(
            activation_set=resources.set_name, method=c.CONCEPT_METHOD_PCA, nb_concepts=3),
        "ListConceptModels": lambda: c.ListConceptModelsRequest(page_size=10),
        "Encode": lambda: c.EncodeRequest(concept_model=resources.model_name, source=source),
        "Decode": lambda: c.DecodeRequest(concept_model=resources.model_name, codes=t.Tensor(
            dtype=t.DATA_TYPE_FLOAT32, shape=[2, 3], raw_contents=bytes(24))),
        "GetDictionary": lambda: c.GetDictionaryRequest(concept_model=resources.model_name),
        "ComputeConceptMetrics": lambda: c.ComputeConceptMetricsRequest(
            concept_models=[resources.model_name], source=source),
        "GetTopExamples": lambda: c.GetTopExamplesRequest(
            concept_model=resources.model_name, activation_set=resources.set_name, k=3, k_context=2),
        "FitProbe": lambda: c.FitProbeRequest(activation_set=resources.set_name, labels=k["labels"][0],
                                              max_iterations=5),
        "ExtractLabels": lambda: c.ExtractLabelsRequest(
            concept_model=resources.model_name, activation_set=resources.set_name, k_examples=5),
        "ImportConceptModel": lambda: c.ImportConceptModelRequest(data=k["data"][0]),
        "GetConceptEncoder": lambda: c.GetConceptEncoderRequest(name=resources.model_name, concepts=[0, 2]),
        "FitTunedLens": lambda: c.FitTunedLensRequest(model=lm, texts=TEXTS[:2], held_out_texts=TEXTS[2:3]),
        "LabelConcepts": lambda: labeling_pb2.LabelConceptsRequest(
            concept_model=resources.model_name, activation_set=resources.set_name, concept_indices=[0],
            k_examples=3, llm=msg_server),
        "ScoreLabels": lambda: labeling_pb2.ScoreLabelsRequest(
            concept_model=resources.model_name, activation_set=resources.set_name, n_examples=2,
            labels=[labeling_pb2.LabelToScore(concept_index=0, label="cats")], scorer=msg_server),
        "ScoreSimulatability": lambda: labeling_pb2.ScoreSimulatabilityRequest(
            samples=TEXTS[:4], predictions=[0, 1, 1, 0], classes=["calm", "lively"],
            concept_labels=["people", "animals"], class_importances=[
                labeling_pb2.ConceptValues(values=[1.0, -0.5]), labeling_pb2.ConceptValues(values=[-0.2, 2.0])],
            prompt_type=labeling_pb2.SIMULATABILITY_PROMPT_E2_GLOBAL_CONCEPTS_WITH_LP, llm=msg_server),
    }[method]()


def _mutated_cases():
    for service, methods in MUTATED.items():
        for method in methods:
            yield pytest.param(service, method, id=f"{service}.{method}")


@pytest.mark.parametrize("service, method_name", list(_mutated_cases()))
def test_one_hostile_field_in_a_valid_request(mesh_processes, resources, service, method_name):
    """A valid request with one or two fields (at any depth) made hostile:
    enormous counts, negative sizes, NaN, unknown enums... reach the
    validation of that field instead of stopping at "not found"."""
    desc = SERVICES[service]
    method = desc.methods_by_name[method_name]
    base = valid_request(resources, lambda: mesh_processes("concept"), lambda: mesh_processes("attribution"),
                         service, method_name)
    channel = make_channel(mesh_processes(service))
    _invoke(channel, desc, method, base, repeat=1)  # the base itself is valid
    _fuzz(channel, service, method_name, mutation_strategy(base), repeat=1)


CHAT = model_pb2.ChatConversation(messages=[model_pb2.ChatMessage(role="system", content="Be brief."),
                                             model_pb2.ChatMessage(role="user", content=TEXTS[1])])
# (service, method, variant): valid requests of the other kinds of input —
# chats (the tiny LM has SmolLM2's chat template) and an encoder-decoder
# (the tiny T5: source + target sequences, source_length).
VARIANTS = [
    ("model", "Tokenize", "chat"), ("model", "Generate", "chat"),
    ("attribution", "Explain", "chat"), ("attribution", "EvaluateAttributions", "chat"),
    ("model", "Score", "seq2seq"), ("model", "ComputeGradients", "seq2seq"), ("model", "Generate", "seq2seq"),
    ("model", "StreamActivations", "seq2seq"), ("attribution", "Explain", "seq2seq"),
]


def variant_request(resources: Resources, attribution_address, service: str, method: str, variant: str):
    """A valid request of `method` with a chat, or on the tiny T5."""
    m, a = model_pb2, attribution_pb2
    lm = resources.model_known()["model"][1]
    if variant == "chat":
        if method == "Tokenize":
            return m.TokenizeRequest(model=lm, chats=[CHAT])
        if method == "Generate":
            return m.GenerateRequest(model=lm, chat=CHAT, max_new_tokens=4)
        explain = a.ExplainRequest(model=lm, method=a.ATTRIBUTION_METHOD_OCCLUSION,
                                   inputs=[a.ExplainInput(chat=CHAT, targets=a.Targets(text=" Bob smiles."))])
    else:
        with make_channel(resources.model_address) as channel:
            stub = model_pb2_grpc.ModelServiceStub(channel)
            source, target = (list(r.token_ids) for r in stub.Tokenize(m.TokenizeRequest(
                model="t5", texts=[TEXTS[1], TEXTS[0]], add_special_tokens=True), timeout=30).results)
        ids, S = source + target, len(source)
        if method == "Score":
            return m.ScoreRequest(model="t5", input_ids=ids, source_length=S, target_positions=[S, len(ids) - 1])
        if method == "ComputeGradients":
            return m.ComputeGradientsRequest(model="t5", input_ids=ids, source_length=S, target_positions=[S + 1],
                                             samples=m.EmbeddingSamples(alphas=[0.5, 1.0]))
        if method == "Generate":
            return m.GenerateRequest(model="t5", text=TEXTS[1], max_new_tokens=4)
        if method == "StreamActivations":
            return m.StreamActivationsRequest(model="t5", texts=TEXTS, split_points=["encoder.block.1", "3"])
        explain = a.ExplainRequest(model="t5", method=a.ATTRIBUTION_METHOD_OCCLUSION,
                                   inputs=[a.ExplainInput(text=TEXTS[1], targets=a.Targets(text="Bob smiles."))])
    if method == "Explain":
        return explain
    request = _evaluate_request(attribution_address(), explain)
    assert request.attributions[0].input_ids  # a chat attribution carries the ids the model saw
    return request


@pytest.mark.parametrize("service, method_name, variant", [pytest.param(*v, id=f"{v[0]}.{v[1]}:{v[2]}")
                                                           for v in VARIANTS])
def test_one_hostile_field_in_a_valid_chat_or_encoder_decoder_request(mesh_processes, resources, service,
                                                                     method_name, variant):
    """As above, from a valid request with a chat or on an encoder-decoder:
    a broken chat message, a source_length past the ids, targets inside the
    source... get actionable statuses too."""
    desc = SERVICES[service]
    method = desc.methods_by_name[method_name]
    base = variant_request(resources, lambda: mesh_processes("attribution"), service, method_name, variant)
    channel = make_channel(mesh_processes(service))
    _invoke(channel, desc, method, base, repeat=1)  # the base itself is valid
    _fuzz(channel, service, method_name, mutation_strategy(base), repeat=1)


INT32_MAX, INT64_MAX = 2 ** 31 - 1, 2 ** 63 - 1
CLOSED_PORT_URL = "http://127.0.0.1:9/v1"  # connection refused at once
# (service, method, {field path: value}): a count asking for absurd work.
ENORMOUS = [
    ("model", "Generate", {"max_new_tokens": INT32_MAX}),
    ("model", "Generate", {"top_k": INT32_MAX, "do_sample": True}),
    ("model", "StreamActivations", {"max_length": INT32_MAX}),
    ("model", "StreamActivations", {"chunk_bytes": INT32_MAX}),
    ("model", "Score", {"target_positions": [INT64_MAX]}),
    ("model", "ComputeGradients", {"samples.alphas": [0.5] * 100_000}),
    ("model", "LogitLens", {"top_k": INT32_MAX}),
    ("model", "UnembedDirections", {"top_k": INT32_MAX}),
    ("model", "VocabularyConcepts", {"k": INT32_MAX}),
    ("model", "FitLensTranslators", {"epochs": INT32_MAX}),
    ("concept", "FitTunedLens", {"epochs": INT32_MAX}),
    ("attribution", "Explain", {"method": 2, "parameters.lime.n_perturbations": INT32_MAX}),
    ("attribution", "Explain", {"method": 3, "parameters.kernel_shap.n_perturbations": INT32_MAX}),
    ("attribution", "Explain", {"method": 4, "parameters.sobol.n_perturbations": INT32_MAX}),
    ("attribution", "Explain", {"method": 7, "parameters.integrated_gradients.n_steps": INT32_MAX}),
    ("attribution", "Explain", {"method": 9, "parameters.smooth_grad.n_steps": INT32_MAX}),
    ("attribution", "Explain", {"parameters.occlusion.batch_size": INT32_MAX}),
    ("attribution", "Explain", {"parameters.occlusion.window": INT32_MAX}),
    ("attribution", "Explain", {"inputs.targets.max_new_tokens": INT32_MAX}),
    ("attribution", "EvaluateAttributions", {"n_steps": INT32_MAX}),
    ("attribution", "EvaluateAttributions", {"n_random_orders": INT32_MAX}),
    ("attribution", "EvaluateAttributions", {"batch_size": INT32_MAX}),
    ("concept", "ExtractLabels", {"k_examples": INT32_MAX}),
    ("concept", "FitProbe", {"max_iterations": INT32_MAX}),
    ("concept", "FitConceptModel", {"nb_concepts": INT32_MAX}),
    ("concept", "FitConceptModel", {"method": 1, "options.max_iterations": INT32_MAX,
                                    "options.tolerance": 1e-30}),
    ("concept", "FitConceptModel", {"method": 11, "options.epochs": INT32_MAX}),
    ("concept", "FitConceptModel", {"method": 11, "nb_concepts": INT32_MAX}),
    ("concept", "FitConceptModel", {"method": 10, "nb_concepts": INT32_MAX}),
    ("concept", "FitConceptModel", {"method": 11, "options.batch_size": INT32_MAX}),
    ("concept", "FitConceptModel", {"method": 12, "options.top_k": INT32_MAX}),
    ("concept", "FitConceptModel", {"method": 7, "nb_concepts": 100_000}),
    ("concept", "GetTopExamples", {"k": INT32_MAX}),
    ("concept", "GetTopExamples", {"k_quantile": INT32_MAX, "sampling": 2}),
    ("concept", "GetTopExamples", {"k_context": INT32_MAX}),
    ("concept", "GetTopExamples", {"concept_indices": [INT32_MAX]}),
    ("concept", "ReadActivationSet", {"chunk_bytes": INT32_MAX}),
    ("concept", "ListActivationSets", {"page_size": INT32_MAX}),
    ("concept", "Encode", {"chunk_bytes": INT32_MAX}),
    ("labeling", "LabelConcepts", {"k_examples": INT32_MAX}),
    ("labeling", "LabelConcepts", {"k_context": INT32_MAX, "k_quantile": INT32_MAX}),
    ("labeling", "LabelConcepts", {"max_concurrency": INT32_MAX}),
    ("labeling", "LabelConcepts", {"llm.model_server.max_new_tokens": INT32_MAX}),
    ("labeling", "LabelConcepts", {"llm.openai.base_url": CLOSED_PORT_URL, "llm.openai.max_retries": INT32_MAX}),
    ("labeling", "LabelConcepts", {"llm.openai.base_url": CLOSED_PORT_URL, "llm.openai.timeout_seconds": 1e30}),
    ("labeling", "LabelConcepts", {"llm.openai.base_url": CLOSED_PORT_URL, "llm.openai.max_tokens": INT32_MAX,
                                   "llm.openai.max_retries": -1}),
    ("labeling", "ScoreLabels", {"n_examples": INT32_MAX}),
    ("labeling", "ScoreLabels", {"k_context": INT32_MAX}),
    ("labeling", "ScoreLabels", {"max_concurrency": INT32_MAX}),
]
ENORMOUS_DEADLINE = 15.0


def _field_path(descriptor, dotted: str) -> tuple:
    path, d = [], descriptor
    for name in dotted.split("."):
        field = d.fields_by_name[name]
        path.append(field)
        d = field.message_type
    return tuple(path)


def _enormous_cases():
    for s, m, f in ENORMOUS:
        yield pytest.param(s, m, f,
                           id=f"{s}.{m}:" + ",".join(f"{k}={str(v)[:12]}" for k, v in f.items()))


@pytest.mark.parametrize("service, method_name, fields", list(_enormous_cases()))
def test_enormous_counts_are_refused_up_front(mesh_processes, resources, service, method_name, fields):
    """A count that asks for absurd work is refused (INVALID_ARGUMENT /
    RESOURCE_EXHAUSTED) or clamped to what exists, at once: never run
    until the client's deadline."""
    desc = SERVICES[service]
    method = desc.methods_by_name[method_name]
    request = valid_request(resources, lambda: mesh_processes("concept"), lambda: mesh_processes("attribution"),
                            service, method_name)
    for dotted, value in fields.items():
        _set_path(request, _field_path(method.input_type, dotted), value)
    key = f"{service}.{method_name}"
    TALLY[service]["requests"] += 1
    started = time.monotonic()
    with make_channel(mesh_processes(service)) as channel:
        try:
            _invoke(channel, desc, method, request, repeat=1, timeout=ENORMOUS_DEADLINE, max_events=None)
            code, details = grpc.StatusCode.OK, ""
        except grpc.RpcError as error:
            code, details = error.code(), error.details()
    elapsed = time.monotonic() - started
    TALLY[service][code.name] += 1
    SLOWEST[key] = max(SLOWEST.get(key, 0.0), elapsed)
    print(f"  {key} {fields}: {code.name} in {elapsed:.2f} s: {details[:160]}")
    assert code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED,
                    grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.FAILED_PRECONDITION), (code, details)
    assert elapsed < ENORMOUS_DEADLINE / 2, f"took {elapsed:.1f} s: {code.name} {details}"


def test_report_how_many_requests_were_tried():
    report = {"examples_per_rpc": EXAMPLES, "deadline_s": DEADLINE,
              "services": {s: dict(sorted(c.items())) for s, c in TALLY.items()},
              "total_requests": sum(c["requests"] for c in TALLY.values()),
              "slowest_s": {k: round(v, 3) for k, v in sorted(SLOWEST.items(), key=lambda kv: -kv[1])[:8]}}
    print("\nhostile requests tried, per service and status code:")
    for service, counts in report["services"].items():
        codes = ", ".join(f"{k} {v}" for k, v in counts.items() if k != "requests")
        print(f"  {service:<12} {counts.get('requests', 0):>5} requests: {codes}")
    print(f"  total {report['total_requests']}; slowest: {report['slowest_s']}")
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2))
    assert report["total_requests"] >= EXAMPLES
