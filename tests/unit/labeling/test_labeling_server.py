"""The labeling-service adapter in-process, over real gRPC on 127.0.0.1:0.

Downstream services are tiny fakes (a concept-service with a hand-made
token-level set and codes, a model-server whose Generate answers like a
perfect labeller); the OpenAI endpoint is the real HTTP fake server.
"""

from __future__ import annotations

import logging
import math
import re
import socket
import time
import urllib.request
from concurrent import futures

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tests.fixtures.fake_openai import FakeHTTPError, FakeOpenAIServer
from xaimesh_contracts.v1 import concept_pb2, concept_pb2_grpc, labeling_pb2, labeling_pb2_grpc, model_pb2, model_pb2_grpc
from xaimesh_contracts.v1 import tensor_pb2
from xaimesh_labeling.__main__ import build_parser
from xaimesh_labeling.llm_policy import LABEL_MAX_NEW_TOKENS, score_max_new_tokens, simulation_max_new_tokens
from xaimesh_labeling.server import LabelingServiceServicer
from xaimesh_runtime.client import make_channel
from xaimesh_runtime.server import start_server
from xaimesh_contracts.tensors import to_tensor

KEY = "sk-proj-METADATAKEY-0123456789abcdefXYZ"
CONF_KEY = "sk-proj-CONFIGUREDKEY-9876543210zyxwvuT"
CONCEPT_MODEL = "conceptModels/cm1"
ACT_SET = "activationSets/as1"

# ---------------------------------------------------------------------------
# the data: a token-level set of 8 short samples, 4 concepts (3 is dead)

SAMPLES = [
    ["The", " cat", " sat", " on", " the", " mat"],
    ["A", " dog", " ran", " to", " the", " park"],
    ["My", " bird", " sang", " in", " the", " tree"],
    ["We", " read", " a", " long", " book", " today"],
    ["They", " wrote", " a", " short", " note", " quickly"],
    ["Some", " rain", " fell", " on", " our", " roof"],
    ["One", " fish", " swam", " far", " away", " fast"],
    ["Our", " team", " won", " every", " single", " game"],
]
ANIMALS = {"cat": 3.0, "dog": 2.5, "bird": 2.0, "fish": 1.5}
ARTICLES = {"the": 1.0, "The": 1.2, "a": 0.8, "A": 0.9}
VERBS = {"sat": 1.0, "ran": 1.1, "sang": 1.2, "read": 0.7, "wrote": 0.9, "fell": 0.5, "swam": 1.3, "won": 0.6}
LABELS = {0: "Animals", 1: "Articles", 2: "Past tense verbs"}
VOCAB = {"Animals": set(ANIMALS), "Articles": set(ARTICLES), "Past tense verbs": set(VERBS)}


def build_rows():
    prov, codes = [], []
    for s, toks in enumerate(SAMPLES):
        for t, tok in enumerate(toks):
            word = tok.strip()
            prov.append(model_pb2.RowProvenance(sample_index=s, token_start=t, token_end=t + 1, text=tok))
            codes.append([ANIMALS.get(word, 0.0), ARTICLES.get(word, 0.0), VERBS.get(word, 0.0), 0.0])
    return prov, np.array(codes, np.float32)


PROV, CODES = build_rows()


# ---------------------------------------------------------------------------
# fake downstream services


class FakeConcepts(concept_pb2_grpc.ConceptServiceServicer):
    def __init__(self):
        self.top_requests: list[concept_pb2.GetTopExamplesRequest] = []
        self.top_deadlines: list[float | None] = []
        self.encode_requests: list[concept_pb2.EncodeRequest] = []
        self.has_provenance = True

    def GetActivationSet(self, request, context):
        if request.name != ACT_SET:
            context.abort(grpc.StatusCode.NOT_FOUND, f"activation set {request.name!r} not found")
        return concept_pb2.GetActivationSetResponse(set=concept_pb2.ActivationSet(
            name=ACT_SET, id="as1", shape=[len(PROV), 2], granularity=tensor_pb2.GRANULARITY_TOKEN,
            num_samples=len(SAMPLES), has_provenance=self.has_provenance))

    def GetTopExamples(self, request, context):
        self.top_requests.append(request)
        self.top_deadlines.append(context.time_remaining())
        if request.concept_model != CONCEPT_MODEL:
            context.abort(grpc.StatusCode.NOT_FOUND, f"concept model {request.concept_model!r} not found")
        indices = list(request.concept_indices) or list(range(CODES.shape[1]))
        for c in indices:
            if c >= CODES.shape[1]:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"concept index {c} is out of range")
        yield concept_pb2.GetTopExamplesResponse(progress=tensor_pb2.Progress(stage="encoding", done=1, total=1))
        k = request.k or 10
        for c in indices:
            col = CODES[:, c]
            active = np.flatnonzero(col != 0)
            order = sorted(active, key=lambda r: -col[r])
            if not request.keep_duplicates:  # one row per text, its highest, as the real service does
                seen = set()
                order = [r for r in order if not (PROV[r].text in seen or seen.add(PROV[r].text))]
            order = order[:k]
            mx = float(col.max()) if active.size else 0.0
            examples = []
            for r in order:
                p = PROV[r]
                context_tokens = []
                if request.k_context:
                    for j in range(max(0, r - request.k_context), min(len(PROV), r + request.k_context + 1)):
                        if PROV[j].sample_index == p.sample_index:
                            context_tokens.append(concept_pb2.ContextToken(
                                text=PROV[j].text, highlighted=j == r, activation=float(col[j])))
                examples.append(concept_pb2.ConceptExample(
                    provenance=p, activation=float(col[r]), normalized_activation=float(col[r]) / mx,
                    context=context_tokens))
            yield concept_pb2.GetTopExamplesResponse(concept=concept_pb2.ConceptExamples(
                concept_index=c, num_active_rows=int(active.size), max_activation=mx, examples=examples))

    def Encode(self, request, context):
        self.encode_requests.append(request)
        rng = request.source.activation_set
        lo, hi = rng.row_start, rng.row_end or len(PROV)
        for start in range(lo, hi, 10):  # several chunks
            yield concept_pb2.EncodeResponse(row_start=start, codes=to_tensor(CODES[start:min(hi, start + 10)]))

    def ReadActivationSet(self, request, context):
        lo, hi = request.row_start, request.row_end or len(PROV)
        for start in range(lo, hi, 7):
            end = min(hi, start + 7)
            yield concept_pb2.ReadActivationSetResponse(
                row_start=start, rows=to_tensor(np.zeros((end - start, 2), np.float32)),
                provenance=PROV[start:end] if request.include_provenance else [])


# ConSim: the model calls a review positive when it mentions a "great" thing;
# a simulator that reads the concept label (concept 0 = "great things")
# knows it, one without explanations guesses from the sentiment.
SIM_SAMPLES = ["great but long", "bad", "great", "fine", "great yet awful", "lovely", "great", "poor"]
SIM_PREDICTIONS = [1, 0, 1, 0, 1, 0, 1, 0]
SIM_CLASSES = ["negative", "positive"]


def simulate(messages):
    """A ConSim simulator: with the "great things" concept in its prompt it
    predicts the model exactly, without it it answers the sentiment of the
    sample (half right)."""
    system, user = messages[0]["content"], messages[-1]["content"]
    explained = "great things" in system
    lines = []
    for i, text in re.findall(r"^Sample_(\d+): (.*)$", user, re.M):
        if explained:
            label = "positive" if "great" in text else "negative"
        else:
            label = "positive" if text in ("great", "lovely", "fine") else "negative"
        lines.append(f"Sample_{i}: {label}")
    return "\n".join(lines)


def answer(messages):
    """A perfect LLM: labels from the first << >> word, scoring by vocabulary."""
    system, user = messages[0]["content"], messages[-1]["content"]
    if system.startswith("You simulate a text classifier"):
        return simulate(messages)
    if system.startswith("You check explanations"):
        label = re.search(r"^Label: (.*)$", user, re.M).group(1)
        vocab = VOCAB.get(label, set())
        fuzzing = "placed at random" in system
        picked = []
        for n, text in re.findall(r"^(\d+)\. (.*)$", user, re.M):
            words = re.findall(r"<<(.*?)>>", text) if fuzzing else [text]
            if any(w in vocab for part in words for w in re.findall(r"\w+", part)):
                picked.append(int(n))
        return str(picked)
    marked = re.search(r"<<\s*(\w+)\s*>>", user)
    word = marked.group(1) if marked else re.search(r"\] (\w+)", user).group(1)
    for label, vocab in VOCAB.items():
        if word in vocab:
            return f"Label: {label}."
    return "Something else"


class FakeModels(model_pb2_grpc.ModelServiceServicer):
    def __init__(self):
        self.generate_requests: list[model_pb2.GenerateRequest] = []

    def GetModel(self, request, context):
        if request.model not in ("", "tiny-instruct"):
            context.abort(grpc.StatusCode.NOT_FOUND, f"model {request.model!r} is not loaded")
        return model_pb2.GetModelResponse(model=model_pb2.ModelInfo(
            name="models/tiny-instruct", model_id="tiny-instruct", has_chat_template=True, is_default=True))

    def Generate(self, request, context):
        self.generate_requests.append(request)
        messages = [{"role": m.role, "content": m.content} for m in request.chat.messages]
        return model_pb2.GenerateResponse(text=answer(messages), model="tiny-instruct", finish_reason="eos")


@pytest.fixture
def downstream():
    concepts, models = FakeConcepts(), FakeModels()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    concept_pb2_grpc.add_ConceptServiceServicer_to_server(concepts, server)
    model_pb2_grpc.add_ModelServiceServicer_to_server(models, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield concepts, models, f"127.0.0.1:{port}"
    server.stop(0)


@pytest.fixture
def fake_llm():
    with FakeOpenAIServer(responder=answer) as server:
        yield server


@pytest.fixture
def start_labeling(downstream):
    handles, servicers = [], []
    address = downstream[2]

    def start(*argv, environ=None, metrics=False):
        args = ["--host", "127.0.0.1", "--port", "0", "--metrics-port", "0" if metrics else "-1",
                "--workers", "8", "--grace-seconds", "0", "--model-server-address", address,
                "--concept-service-address", address, *argv]
        config = build_parser().load_config(args, environ=environ or {})
        servicer = LabelingServiceServicer(config)
        handle = start_server(config, servicer.register)
        assert handle.wait_ready(10)
        handles.append(handle)
        servicers.append(servicer)
        channel = make_channel(handle.address)
        handle.stub = labeling_pb2_grpc.LabelingServiceStub(channel)
        handle.channel = channel
        return handle

    yield start
    for handle, servicer in zip(handles, servicers):
        handle.channel.close()
        handle.stop(grace=0)
        servicer.close()


def openai_backend(server, **kw):
    kw.setdefault("model", "gpt-test")
    kw.setdefault("timeout_seconds", 5)
    kw.setdefault("base_url", server.base_url)
    return labeling_pb2.LlmBackend(openai=labeling_pb2.OpenAIBackend(**kw))


def label_request(llm=None, **kw):
    kw.setdefault("k_examples", 5)
    kw.setdefault("k_context", 2)
    return labeling_pb2.LabelConceptsRequest(concept_model=CONCEPT_MODEL, activation_set=ACT_SET, llm=llm, **kw)


def run_labels(handle, request, key=None, timeout=30):
    metadata = [("x-openai-api-key", key)] if key is not None else None
    events = list(handle.stub.LabelConcepts(request, timeout=timeout, metadata=metadata))
    labels = {e.label.concept_index: e.label for e in events if e.WhichOneof("event") == "label"}
    progress = [e.progress for e in events if e.WhichOneof("event") == "progress"]
    return labels, progress, events


# ---------------------------------------------------------------------------
# labels


def test_labels_stream_with_metadata_key(start_labeling, downstream, fake_llm):
    concepts, models, _ = downstream
    handle = start_labeling()
    request = label_request(openai_backend(fake_llm), sampling=concept_pb2.EXAMPLE_SAMPLING_TOP,
                            k_quantile=3, seed=7, max_concurrency=2)
    labels, progress, events = run_labels(handle, request, key=KEY, timeout=20)

    assert sorted(labels) == [0, 1, 2, 3]
    for c, expected in LABELS.items():
        lab = labels[c]
        assert lab.has_label and lab.label == expected and not lab.HasField("error")
        assert lab.llm == f"openai:gpt-test@{fake_llm.base_url}"
        assert lab.examples and lab.examples[0].context
        assert "[system]" in lab.prompt and "<<" in lab.prompt
    dead = labels[3]
    assert not dead.has_label and dead.label == "" and not dead.HasField("error") and not dead.prompt
    # one LLM call per live concept, with the caller's key, never in the body
    assert len(fake_llm.requests) == 3
    for req in fake_llm.requests:
        assert req.headers["authorization"] == f"Bearer {KEY}"
        assert KEY.encode() not in req.raw_body
    assert fake_llm.max_in_flight <= 2
    # the concept-service got the sampling parameters and a forwarded deadline
    (top,) = concepts.top_requests
    assert (top.k, top.sampling, top.k_quantile, top.k_context, top.seed) == (5, 1, 3, 2, 7)
    assert top.concept_model == CONCEPT_MODEL and top.activation_set == ACT_SET
    assert concepts.top_deadlines[0] is not None and 0 < concepts.top_deadlines[0] <= 20
    # progress: the examples stage, then labelling up to 4 / 4
    assert progress[0].stage == "examples"
    labelling = [p for p in progress if p.stage == "labeling"]
    assert (labelling[0].done, labelling[-1].done, labelling[-1].total) == (0, 4, 4)
    # every label is followed by a progress event (streamed as each completes)
    kinds = [e.WhichOneof("event") for e in events]
    for i, kind in enumerate(kinds):
        if kind == "label":
            assert kinds[i + 1] == "progress"
    assert not models.generate_requests


def test_concept_indices_and_defaults(start_labeling, downstream, fake_llm):
    concepts, _, _ = downstream
    handle = start_labeling()
    request = labeling_pb2.LabelConceptsRequest(concept_model=CONCEPT_MODEL, activation_set=ACT_SET,
                                                concept_indices=[2, 0], llm=openai_backend(fake_llm))
    labels, _, _ = run_labels(handle, request, key=KEY)
    assert sorted(labels) == [0, 2]
    (top,) = concepts.top_requests
    assert list(top.concept_indices) == [2, 0] and top.k == 20 and top.k_context == 0
    # without context the prompt shows the rows' own texts
    user_part = labels[0].prompt.split("[user]")[1]
    assert "<<" not in user_part and "] cat" in user_part and labels[0].label == "Animals"


def test_429_then_success_is_retried(start_labeling, fake_llm):
    handle = start_labeling()
    fake_llm.fail_429(2, retry_after="0")
    labels, _, _ = run_labels(handle, label_request(openai_backend(fake_llm, max_retries=3),
                                                    max_concurrency=1), key=KEY)
    assert {c: labels[c].label for c in LABELS} == LABELS
    statuses = [r.status for r in fake_llm.requests]
    assert statuses.count(429) == 2 and statuses.count(200) == 3


def test_500_storm_fails_one_concept_others_labelled(start_labeling, fake_llm):
    handle = start_labeling()

    def responder(messages):
        if "<<cat>>" in messages[-1]["content"]:
            raise FakeHTTPError(500, "The server had an error")
        return answer(messages)

    fake_llm.responder = responder
    labels, _, _ = run_labels(handle, label_request(openai_backend(fake_llm, max_retries=-1)), key=KEY)
    bad = labels[0]
    assert not bad.has_label and bad.HasField("error")
    assert bad.error.code == grpc.StatusCode.UNAVAILABLE.value[0]
    assert "HTTP 500" in bad.error.message and bad.llm.startswith("openai:")
    assert labels[1].label == "Articles" and labels[2].label == "Past tense verbs"
    # max_retries -1 = no retry: one request per concept
    assert len(fake_llm.requests) == 3


def test_500_storm_with_retries_everywhere(start_labeling, fake_llm):
    handle = start_labeling()
    fake_llm.fail_500_always()
    labels, _, _ = run_labels(handle, label_request(openai_backend(fake_llm, max_retries=1),
                                                    concept_indices=[0, 1]), key=KEY)
    for c in (0, 1):
        assert labels[c].error.code == grpc.StatusCode.UNAVAILABLE.value[0]
        assert "after 2 attempts" in labels[c].error.message
    assert len(fake_llm.requests) == 4


def test_slow_endpoint_times_out_per_concept(start_labeling, fake_llm):
    handle = start_labeling()

    def responder(messages):
        if "<<cat>>" in messages[-1]["content"]:
            time.sleep(1.5)
        return answer(messages)

    fake_llm.responder = responder
    t0 = time.monotonic()
    labels, _, _ = run_labels(handle, label_request(openai_backend(fake_llm, timeout_seconds=0.4,
                                                                   max_retries=-1)), key=KEY)
    assert time.monotonic() - t0 < 5
    assert labels[0].error.code == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    assert "timed out" in labels[0].error.message
    assert labels[1].label == "Articles" and labels[2].label == "Past tense verbs"


def test_cancelling_the_call_stops_the_work(start_labeling, fake_llm):
    handle = start_labeling()

    def responder(messages):
        time.sleep(0.4)
        return answer(messages)

    fake_llm.responder = responder
    call = handle.stub.LabelConcepts(label_request(openai_backend(fake_llm), max_concurrency=1),
                                     timeout=30, metadata=[("x-openai-api-key", KEY)])
    for event in call:
        if event.WhichOneof("event") == "label" and event.label.has_label:
            call.cancel()
            break
    time.sleep(1.2)
    assert len(fake_llm.requests) <= 2  # the one that answered, at most one already in flight


# ---------------------------------------------------------------------------
# keys and backends


def test_configured_key_used_only_with_its_endpoint(start_labeling, fake_llm):
    handle = start_labeling("--openai-base-url", fake_llm.base_url,
                            environ={"XAIMESH_OPENAI_API_KEY": CONF_KEY})
    # no backend at all: the configured endpoint with the configured key
    labels, _, _ = run_labels(handle, label_request(None, concept_indices=[0]))
    assert labels[0].label == "Animals" and labels[0].llm == f"openai:gpt-4.1-nano@{fake_llm.base_url}"
    assert fake_llm.requests[-1].headers["authorization"] == f"Bearer {CONF_KEY}"
    # the metadata key wins over the configured one
    run_labels(handle, label_request(openai_backend(fake_llm), concept_indices=[0]), key=KEY)
    assert fake_llm.requests[-1].headers["authorization"] == f"Bearer {KEY}"

    # another endpoint named by the request never receives the service's key
    with FakeOpenAIServer(responder=answer) as other:
        labels, _, _ = run_labels(handle, label_request(openai_backend(other), concept_indices=[0]))
        assert labels[0].label == "Animals"
        assert other.requests[-1].headers["authorization"] == "Bearer no-key"


def test_key_file_option(start_labeling, fake_llm, tmp_path):
    secret_file = tmp_path / "openai-key"
    secret_file.write_text(CONF_KEY + "\n")
    handle = start_labeling(environ={"XAIMESH_OPENAI_API_KEY_FILE": str(secret_file),
                                     "XAIMESH_OPENAI_BASE_URL": fake_llm.base_url})
    labels, _, _ = run_labels(handle, label_request(openai_backend(fake_llm, base_url=""), concept_indices=[1]))
    assert labels[1].label == "Articles"
    assert fake_llm.requests[-1].headers["authorization"] == f"Bearer {CONF_KEY}"


@pytest.mark.parametrize("configured", [None, "", "   "])
def test_no_key_means_model_server(start_labeling, downstream, configured):
    _, models, _ = downstream
    environ = {} if configured is None else {"XAIMESH_OPENAI_API_KEY": configured}
    handle = start_labeling(environ=environ)
    # OpenAI asked for, no key anywhere, no base_url -> the model-server's model
    openai_no_url = labeling_pb2.LlmBackend(openai=labeling_pb2.OpenAIBackend(model="gpt-4.1-nano"))
    for backend, key in ((openai_no_url, None), (openai_no_url, ""), (None, None)):
        labels, _, _ = run_labels(handle, label_request(backend), key=key)
        assert {c: labels[c].label for c in LABELS} == LABELS
        assert all(lab.llm == "model-server:tiny-instruct" for lab in labels.values())
    request = models.generate_requests[-1]
    assert request.model == "tiny-instruct" and request.WhichOneof("prompt") == "chat"
    assert [m.role for m in request.chat.messages] == ["system", "user"]
    assert request.max_new_tokens == LABEL_MAX_NEW_TOKENS and not request.do_sample


def test_model_server_backend_options(start_labeling, downstream):
    _, models, _ = downstream
    handle = start_labeling()
    backend = labeling_pb2.LlmBackend(model_server=labeling_pb2.ModelServerBackend(
        model="tiny-instruct", max_new_tokens=12, temperature=0.7))
    labels, _, _ = run_labels(handle, label_request(backend, concept_indices=[2], seed=3))
    assert labels[2].label == "Past tense verbs"
    request = models.generate_requests[-1]
    assert (request.max_new_tokens, request.do_sample, request.seed) == (12, True, 3)
    assert request.temperature == pytest.approx(0.7)
    # an unknown model is the model-server's NOT_FOUND, for the whole call
    backend.model_server.model = "nope"
    with pytest.raises(grpc.RpcError) as err:
        run_labels(handle, label_request(backend))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "nope" in err.value.details()


def test_key_never_in_logs_messages_or_metrics(start_labeling, fake_llm, caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("openai", "httpx", "httpcore", "xaimesh_labeling", "xaimesh_runtime", "grpc"):
        caplog.set_level(logging.DEBUG, logger=name)
    handle = start_labeling("--openai-base-url", fake_llm.base_url, environ={"XAIMESH_OPENAI_API_KEY": CONF_KEY},
                            metrics=True)

    def responder(messages):
        content = messages[-1]["content"]
        if "<<cat>>" in content:  # a 401 whose body echoes the key, as real servers do
            raise FakeHTTPError(401, f"Incorrect API key provided: {KEY}")
        if "<<dog>>" in content:
            raise FakeHTTPError(500, f"upstream said {CONF_KEY}")
        return answer(messages)

    fake_llm.responder = responder
    payloads = []
    for key in (KEY, None):
        labels, _, events = run_labels(handle, label_request(openai_backend(fake_llm, max_retries=-1,
                                                                            base_url="")), key=key)
        payloads += [e.SerializeToString() for e in events]
        assert labels[0].error.code in (grpc.StatusCode.UNAUTHENTICATED.value[0],
                                        grpc.StatusCode.UNAVAILABLE.value[0])
        assert labels[1].label == "Articles"
        score = list(handle.stub.ScoreLabels(labeling_pb2.ScoreLabelsRequest(
            concept_model=CONCEPT_MODEL, activation_set=ACT_SET,
            labels=[labeling_pb2.LabelToScore(concept_index=0, label="Animals")],
            scorer=openai_backend(fake_llm, max_retries=-1, base_url="")),
            timeout=30, metadata=[("x-openai-api-key", key)] if key else None))
        payloads += [e.SerializeToString() for e in score]
    # the keys did reach the endpoint, in the header only
    auth = {r.headers["authorization"] for r in fake_llm.requests}
    assert auth == {f"Bearer {KEY}", f"Bearer {CONF_KEY}"}
    with urllib.request.urlopen(f"http://127.0.0.1:{handle.metrics_port}/metrics", timeout=5) as reply:
        metrics_text = reply.read().decode()
    assert "xaimesh_labeling_llm_calls_total" in metrics_text
    for secret in (KEY, CONF_KEY):
        assert secret not in caplog.text
        for record in caplog.records:
            assert secret not in record.getMessage()
        assert all(secret.encode() not in p for p in payloads)
        assert secret not in metrics_text
        assert secret not in str(handle.config.describe())


# ---------------------------------------------------------------------------
# whole-call errors


def _violations(error):
    status = rpc_status.from_call(error)
    out = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            out += [v.field for v in bad.field_violations]
    return out


def test_bad_requests(start_labeling, downstream, fake_llm):
    concepts, _, _ = downstream
    handle = start_labeling()
    cases = [
        (labeling_pb2.LabelConceptsRequest(activation_set=ACT_SET), "concept_model"),
        (labeling_pb2.LabelConceptsRequest(concept_model=CONCEPT_MODEL), "activation_set"),
        (label_request(k_examples=-1), "k_examples"),
        (label_request(max_concurrency=-2), "max_concurrency"),
        (label_request(openai_backend(fake_llm, timeout_seconds=-1)), "llm.openai.timeout_seconds"),
        # enormous values are refused up front (2^31 retries of a refused connection ran for days)
        (label_request(openai_backend(fake_llm, timeout_seconds=1e30)), "llm.openai.timeout_seconds"),
        (label_request(openai_backend(fake_llm, max_retries=2 ** 31 - 1)), "llm.openai.max_retries"),
        (label_request(k_examples=2 ** 31 - 1), "k_examples"),
        # a base_url httpx refuses (longer than 64 KiB) was an INTERNAL error
        (label_request(openai_backend(fake_llm, base_url="http://x/" + "x" * 70_000)), "llm.openai.base_url"),
        (label_request(openai_backend(fake_llm, base_url="../../etc/passwd")), "llm.openai.base_url"),
        (label_request(k_context=2 ** 31 - 1), "k_context"),
        (label_request(openai_backend(fake_llm, max_tokens=2 ** 31 - 1)), "llm.openai.max_tokens"),
        (label_request(labeling_pb2.LlmBackend(model_server=labeling_pb2.ModelServerBackend(
            max_new_tokens=2 ** 31 - 1))), "llm.model_server.max_new_tokens"),
    ]
    for request, field in cases:
        with pytest.raises(grpc.RpcError) as err:
            run_labels(handle, request, key=KEY)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert _violations(err.value) == [field]
    # downstream errors keep their code
    with pytest.raises(grpc.RpcError) as err:
        run_labels(handle, label_request(openai_backend(fake_llm), concept_indices=[9]), key=KEY)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "out of range" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        run_labels(handle, labeling_pb2.LabelConceptsRequest(concept_model="conceptModels/zz",
                                                              activation_set=ACT_SET), key=KEY)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # a set without texts cannot be labelled
    concepts.has_provenance = False
    with pytest.raises(grpc.RpcError) as err:
        run_labels(handle, label_request(openai_backend(fake_llm)), key=KEY)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "provenance" in err.value.details()
    assert not fake_llm.requests


def test_an_unreachable_concept_service_is_named(start_labeling, fake_llm):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        nowhere = f"127.0.0.1:{s.getsockname()[1]}"
    handle = start_labeling("--concept-service-address", nowhere)
    with pytest.raises(grpc.RpcError) as err:
        run_labels(handle, label_request(openai_backend(fake_llm)), key=KEY)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert f"the concept-service at {nowhere} is unavailable" in err.value.details()
    assert "XAIMESH_CONCEPT_SERVICE" in err.value.details()


def test_official_endpoint_without_key_falls_back_and_bad_key_is_per_concept(start_labeling, fake_llm):
    handle = start_labeling()

    def responder(messages):
        raise FakeHTTPError(401, "Incorrect API key provided")

    fake_llm.responder = responder
    labels, _, _ = run_labels(handle, label_request(openai_backend(fake_llm)), key="sk-wrong-0123456789")
    assert all(labels[c].error.code == grpc.StatusCode.UNAUTHENTICATED.value[0] for c in LABELS)
    assert "Incorrect API key" in labels[0].error.message and "sk-wrong" not in labels[0].error.message
    backend = labeling_pb2.LlmBackend(openai=labeling_pb2.OpenAIBackend(base_url="https://api.openai.com/v1/"))
    labels, _, _ = run_labels(handle, label_request(backend, concept_indices=[0]))
    assert labels[0].llm == "model-server:tiny-instruct" and labels[0].label == "Animals"


# ---------------------------------------------------------------------------
# scoring


def score_request(scorer, labels, **kw):
    return labeling_pb2.ScoreLabelsRequest(
        concept_model=CONCEPT_MODEL, activation_set=ACT_SET, scorer=scorer,
        labels=[labeling_pb2.LabelToScore(concept_index=c, label=text) for c, text in labels], **kw)


def run_scores(handle, request, key=None):
    metadata = [("x-openai-api-key", key)] if key else None
    events = list(handle.stub.ScoreLabels(request, timeout=30, metadata=metadata))
    scores = [e.score for e in events if e.WhichOneof("event") == "score"]
    summaries = [e.summary for e in events if e.WhichOneof("event") == "summary"]
    assert len(summaries) == 1 and events[-1].WhichOneof("event") == "summary"
    return scores, summaries[0], events


def test_scoring_with_a_perfect_scorer(start_labeling, downstream, fake_llm):
    concepts, _, _ = downstream
    handle = start_labeling()
    scorer = openai_backend(fake_llm)
    labeller = f"openai:gpt-test@{fake_llm.base_url}"
    scores, summary, events = run_scores(handle, score_request(
        scorer, [(0, "Animals"), (2, "Past tense verbs"), (0, "Weather")], n_examples=3, seed=5,
        labeller=labeller), key=KEY)
    assert len(scores) == 6
    by = {(s.concept_index, s.label, s.method): s for s in scores}
    det, fuz = labeling_pb2.LABEL_SCORING_METHOD_DETECTION, labeling_pb2.LABEL_SCORING_METHOD_FUZZING
    for c, label in ((0, "Animals"), (2, "Past tense verbs")):
        for method in (det, fuz):
            s = by[(c, label, method)]
            assert not s.HasField("error"), s.error.message
            assert s.balanced_accuracy == pytest.approx(1.0) and s.n_examples >= 4
    # a wrong label scores at chance or below
    assert by[(0, "Weather", det)].balanced_accuracy == pytest.approx(0.5)
    assert summary.scorer == labeller and summary.scorer_is_labeller
    assert summary.mean_detection == pytest.approx((1 + 1 + 0.5) / 3)
    # activating examples: TOP with context; non-activating ones: rows whose code is 0
    (top,) = concepts.top_requests
    assert (top.sampling, top.k, top.k_context, list(top.concept_indices)) == (1, 6, 4, [0, 2])
    assert concepts.encode_requests and all(r.concept_model == CONCEPT_MODEL for r in concepts.encode_requests)
    detection_prompts = [r.messages[-1]["content"] for r in fake_llm.requests
                         if "Label: Animals" in r.messages[-1]["content"]
                         and "placed at random" not in r.messages[0]["content"]]
    (prompt,) = detection_prompts
    excerpts = re.findall(r"^\d+\. (.*)$", prompt, re.M)
    with_animal = [e for e in excerpts if any(a in e for a in ANIMALS)]
    assert len(with_animal) == 3 and len(excerpts) == 6
    stages = [e.progress.stage for e in events if e.WhichOneof("event") == "progress"]
    assert stages[0] == "examples" and stages[-1] == "scoring"


def test_dense_concepts_are_scored_against_their_quiet_rows(start_labeling, downstream, fake_llm, monkeypatch):
    """Codes that are never exactly 0 (SemiNMF, PCA): the non-activating
    examples are the rows where the concept is at most a tenth of its top."""
    import sys

    dense = CODES + np.float32(0.05)
    monkeypatch.setattr(sys.modules[__name__], "CODES", dense)
    handle = start_labeling()
    scores, summary, _ = run_scores(handle, score_request(
        openai_backend(fake_llm), [(0, "Animals")], n_examples=3, seed=5), key=KEY)
    for s in scores:
        assert not s.HasField("error"), s.error.message
        assert s.balanced_accuracy == pytest.approx(1.0)
    (detection,) = [r.messages[-1]["content"] for r in fake_llm.requests
                    if "placed at random" not in r.messages[0]["content"]]
    excerpts = re.findall(r"^\d+\. (.*)$", detection, re.M)
    assert sum(any(a in e for a in ANIMALS) for e in excerpts) == 3 and len(excerpts) == 6


def test_scoring_methods_errors_and_model_server_scorer(start_labeling, downstream):
    _, models, _ = downstream
    handle = start_labeling()
    scores, summary, _ = run_scores(handle, score_request(
        None, [(1, "Articles"), (3, "Dead concept"), (0, "  ")],
        methods=[labeling_pb2.LABEL_SCORING_METHOD_DETECTION], labeller="openai:gpt-4.1-nano@x"))
    by = {s.concept_index: s for s in scores}
    assert len(scores) == 3
    assert by[1].balanced_accuracy == pytest.approx(1.0) and not by[1].HasField("error")
    assert by[3].error.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert by[0].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert np.isnan(by[3].balanced_accuracy)
    assert summary.scorer == "model-server:tiny-instruct" and not summary.scorer_is_labeller
    assert summary.mean_detection == pytest.approx(1.0) and np.isnan(summary.mean_fuzzing)
    # room for "[1, 2, ..., 10]" (the 10 excerpts of the default 5 + 5), no more
    assert models.generate_requests[-1].max_new_tokens == score_max_new_tokens(5) == 41
    with pytest.raises(grpc.RpcError) as err:
        run_scores(handle, score_request(None, []))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and _violations(err.value) == ["labels"]
    with pytest.raises(grpc.RpcError) as err:
        run_scores(handle, score_request(None, [(0, "x")], methods=[0]))
    assert _violations(err.value) == ["methods[0]"]


def test_non_activating_windows_on_a_large_set(start_labeling, downstream, fake_llm, monkeypatch):
    """With more rows than the search budget, a few seeded windows are encoded."""
    import xaimesh_labeling.sampling as server_module

    concepts, _, _ = downstream
    monkeypatch.setattr(server_module, "NEGATIVE_WINDOW_ROWS", 8)
    monkeypatch.setattr(server_module, "NEGATIVE_MIN_ROWS", 16)
    monkeypatch.setattr(server_module, "NEGATIVE_ROWS_PER_EXAMPLE", 1)
    handle = start_labeling()
    scores, summary, _ = run_scores(handle, score_request(openai_backend(fake_llm), [(0, "Animals")],
                                                          n_examples=2,
                                                          methods=[labeling_pb2.LABEL_SCORING_METHOD_DETECTION]),
                                    key=KEY)
    assert scores[0].balanced_accuracy == pytest.approx(1.0)
    ranges = [(r.source.activation_set.row_start, r.source.activation_set.row_end) for r in concepts.encode_requests]
    assert len(ranges) == 2 and all(hi - lo == 8 and lo % 8 == 0 for lo, hi in ranges)
    # the same seed picks the same windows
    concepts.encode_requests.clear()
    run_scores(handle, score_request(openai_backend(fake_llm), [(0, "Animals")], n_examples=2,
                                     methods=[labeling_pb2.LABEL_SCORING_METHOD_DETECTION]), key=KEY)
    assert [(r.source.activation_set.row_start, r.source.activation_set.row_end)
            for r in concepts.encode_requests] == ranges


# ---------------------------------------------------------------------------
# ScoreSimulatability (ConSim)


def consim_request(llm=None, **kw):
    kw.setdefault("samples", SIM_SAMPLES)
    kw.setdefault("predictions", SIM_PREDICTIONS)
    kw.setdefault("classes", SIM_CLASSES)
    kw.setdefault("concept_labels", ["great things", "complaints"])
    kw.setdefault("class_importances", [labeling_pb2.ConceptValues(values=[-1.0, 1.0]),
                                        labeling_pb2.ConceptValues(values=[2.0, -0.5])])
    kw.setdefault("sample_contributions", [labeling_pb2.ConceptValues(values=[1.0, 0.2]) for _ in range(4)])
    return labeling_pb2.ScoreSimulatabilityRequest(llm=llm, **kw)


def test_consim_explanations_against_the_baseline_through_openai(start_labeling, fake_llm):
    fake_llm.responder = simulate
    handle = start_labeling()
    explained = handle.stub.ScoreSimulatability(consim_request(openai_backend(fake_llm)), timeout=30,
                                                metadata=[("x-openai-api-key", KEY)])
    assert explained.score == 1.0 and explained.n_evaluated == 4 and explained.n_answered == 4
    assert list(explained.model_predictions) == ["positive", "negative", "positive", "negative"]
    assert list(explained.simulator_predictions) == list(explained.model_predictions)
    assert explained.llm == f"openai:gpt-test@{fake_llm.base_url}"
    assert [m.role for m in explained.prompt] == ["system", "user"]
    assert "concept 0: great things" in explained.prompt[0].content
    sent = fake_llm.requests[-1].body["messages"]
    assert [m["content"] for m in sent] == [m.content for m in explained.prompt]
    baseline = handle.stub.ScoreSimulatability(
        consim_request(openai_backend(fake_llm), prompt_type=labeling_pb2.SIMULATABILITY_PROMPT_L2_BASELINE_WITH_LP),
        timeout=30, metadata=[("x-openai-api-key", KEY)])
    assert baseline.score == 0.5 and "great things" not in baseline.prompt[0].content


def test_consim_on_the_model_server_and_with_the_callers_own_reply(start_labeling, downstream):
    _, models, _ = downstream
    handle = start_labeling()
    result = handle.stub.ScoreSimulatability(consim_request(), timeout=30)
    assert result.score == 1.0 and result.llm == "model-server:tiny-instruct"
    assert models.generate_requests[-1].max_new_tokens == simulation_max_new_tokens(4)
    # two steps: the prompt, then the caller's simulator's answer to it, scored; no LLM of the service asked
    asked = len(models.generate_requests)
    prompt = handle.stub.ScoreSimulatability(consim_request(prompt_only=True), timeout=30)
    assert math.isnan(prompt.score) and prompt.llm == "" and list(prompt.model_predictions) == \
        list(result.model_predictions) and list(prompt.prompt) == list(result.prompt)
    scored = handle.stub.ScoreSimulatability(consim_request(reply="Sample_4: positive\nSample_5: positive"),
                                             timeout=30)
    assert scored.score == 0.25 and scored.n_answered == 2 and scored.llm == "caller"
    assert list(scored.simulator_predictions) == ["positive", "positive", "", ""]
    assert len(models.generate_requests) == asked


def test_consim_bad_requests(start_labeling, downstream, fake_llm):
    _, models, _ = downstream
    handle = start_labeling()
    cases = [
        (consim_request(predictions=SIM_PREDICTIONS[:6]), "predictions"),
        (consim_request(samples=SIM_SAMPLES[:7], predictions=SIM_PREDICTIONS[:7]), "samples"),
        (consim_request(predictions=[5] + SIM_PREDICTIONS[1:]), "predictions[0]"),
        (consim_request(classes=[]), "classes"),
        (consim_request(concept_labels=[]), "concept_labels"),
        (consim_request(class_importances=[labeling_pb2.ConceptValues(values=[1.0])] * 2),
         "class_importances[0]"),
        (consim_request(sample_contributions=[]), "sample_contributions"),
        (consim_request(prompt_type=99), "prompt_type"),
        (consim_request(importance_threshold=2.0), "importance_threshold"),
        (consim_request(prompt_only=True, reply="x"), "prompt_only"),
        (consim_request(openai_backend(fake_llm, timeout_seconds=-1)), "llm.openai.timeout_seconds"),
    ]
    for request, field in cases:
        with pytest.raises(grpc.RpcError) as err:
            handle.stub.ScoreSimulatability(request, timeout=30, metadata=[("x-openai-api-key", KEY)])
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert _violations(err.value) == [field], err.value.details()
    assert not fake_llm.requests and not models.generate_requests
    # the simulator's failure keeps its code
    fake_llm.fail_500_always()
    with pytest.raises(grpc.RpcError) as err:
        handle.stub.ScoreSimulatability(consim_request(openai_backend(fake_llm, max_retries=-1)), timeout=30,
                                        metadata=[("x-openai-api-key", KEY)])
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
