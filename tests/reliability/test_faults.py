"""Faults on real service processes: a model-server SIGKILLed in the middle of
work, restarted on the same port; cancelled calls and short deadlines; an
LLM endpoint that fails in every way it can.

What each test promises (docs/reliability.md lists them with the figures
of the last run, written to ``.cache/reliability/faults.json``):

* the SDK call in flight ends within a few seconds with ``UnavailableError``
  naming the service that went away, never hangs;
* after a restart on the same port, the same SDK objects (and the
  concept-service's own channel to the model-server) work again, with no
  reconnect code;
* a cancelled activation pull, fit or attribution stops the work within one batch (the
  model-server's queue is empty and its CPU idle, a small call is served
  at once), and a short client deadline ends the model-server's call too;
* LLM endpoint failures (429 storm, 500s, timeouts, malformed JSON) are
  per-concept errors: the other concepts get their labels.
"""

from __future__ import annotations

import json
import signal
import threading
import time

import grpc
import numpy as np
import pytest

from measure import REPORT_DIR, cpu_busy, metric, wait_until
from tests.fixtures.fake_openai import FakeHTTPError, FakeMalformed, FakeOpenAIServer
from xaimesh_contracts.v1 import concept_pb2, concept_pb2_grpc, labeling_pb2, labeling_pb2_grpc, model_pb2, tensor_pb2
from xaimesh_runtime.client import make_channel

STREAM_ACTIVATIONS = "/xaimesh.v1.ModelService/StreamActivations"
FIT = "/xaimesh.v1.ConceptService/FitConceptModel"
SENTENCE = "Alice and Bob enter the bar, then Alice offers a drink to Bob. "
# Enough work for the tiny model to take several seconds with batches of 4.
LONG_TEXTS = [f"{i}. " + SENTENCE * 6 for i in range(6000)]
SHORT_TEXTS = ["The cat sat on the mat.", "Paris is the capital of France.", "Rain fell all night."]
REPORT = REPORT_DIR / "faults.json"
CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


def record(**figures) -> None:
    """Merge figures into the faults report."""
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(REPORT.read_text()) if REPORT.exists() else {}
    data.update({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()})
    REPORT.write_text(json.dumps(data, indent=2, sort_keys=True))
    print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()))


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("XAIMESH_PROGRESS", "0")


MODEL_ARGS = ("--max-batch-size", "4", "--batch-wait-ms", "0")


def _start_stack(launcher, tiny_lm_path, data_dir):
    model = launcher.start("model", "--model", str(tiny_lm_path), *MODEL_ARGS)
    concept = launcher.start("concept", "--model-server-address", model.address, "--data-dir", str(data_dir),
                             "--device", "cpu")
    return model, concept


@pytest.fixture(scope="module")
def stack(module_launcher, tiny_lm_path, tmp_path_factory):
    """A model-server with small batches and a concept-service in front of it."""
    return _start_stack(module_launcher, tiny_lm_path, tmp_path_factory.mktemp("concept-data"))


def _in_background(fn):
    """Run fn() in a thread; the returned dict gets "value" or "error" and "ended"."""
    out: dict = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - inspected by the test
            out["error"] = exc
        out["ended"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    out["thread"] = thread
    return out


def _wait_idle(process, timeout: float = 5.0) -> float:
    """Seconds until the process uses less than a fifth of a core (its work stopped)."""
    return wait_until(lambda: cpu_busy(process.process.pid, 0.25) < 0.2, timeout, interval=0,
                      what=f"the {process.service} idle")


def _streaming_activations(model) -> bool:
    return metric(model.metrics_port, "xaimesh_grpc_in_flight_requests", method=STREAM_ACTIVATIONS) >= 1


def test_model_server_killed_mid_work_then_restarted_on_the_same_port(launcher, tiny_lm_path, tmp_path):
    """SIGKILL during an activation pull through the concept-service, then
    during a long Score: each SDK call ends at once with UnavailableError
    naming the model-server; after a restart on the same port the same SDK
    objects (and the concept-service's channel) work again."""
    import xaimesh
    from xaimesh.errors import UnavailableError
    from xaimesh.split_model import ActivationSet
    from xaimesh_contracts.tensors import to_tensor

    model, concept = _start_stack(launcher, tiny_lm_path, tmp_path / "concept-data")
    mesh = xaimesh.connect(model.address, concept=concept.address, wait_seconds=30)
    remote = mesh.model()
    split_model = xaimesh.ModelWithSplitPoints(remote, split_points=[1])
    ids = remote.tokenizer.encode(SENTENCE * 4)
    keep = np.random.default_rng(0).random((8000, len(ids))) < 0.7
    client = mesh.client("model")

    def score(mask):
        return client.call("Score", model_pb2.ScoreRequest(
            model=remote.model_id, input_ids=ids, keep_mask=to_tensor(mask), target_positions=[len(ids) - 1]))

    current = {"model": model}

    def kill_during(work, started, what):
        job = _in_background(work)
        wait_until(lambda: started(current["model"]), 30, what=what)
        time.sleep(0.5)
        killed = time.monotonic()
        current["model"].stop(signal.SIGKILL)
        job["thread"].join(30)
        assert not job["thread"].is_alive(), f"the SDK call hung after the model-server died ({what})"
        error = job.get("error")
        assert isinstance(error, UnavailableError), repr(error)
        assert "model-server" in str(error) and model.address in str(error), str(error)
        assert "concept-service at" not in str(error), f"blames the wrong service: {error}"
        return job["ended"] - killed

    def restart():
        started = time.monotonic()
        current["model"] = launcher.start("model", "--model", str(tiny_lm_path), *MODEL_ARGS, port=model.port)
        return time.monotonic() - started

    # 1. an activation pull through the concept-service
    pull_detected = kill_during(lambda: split_model.get_activations(LONG_TEXTS), _streaming_activations,
                                "the model-server streaming activations")
    assert pull_detected < 5.0
    assert ActivationSet.list(mesh) == []  # nothing half-written
    restart_s = restart()
    resumed = time.monotonic()
    acts = split_model.get_activations(SHORT_TEXTS)  # the same objects, no reconnect code
    pull_first = time.monotonic() - resumed
    assert acts.num_samples == len(SHORT_TEXTS) and acts.shape[0] > 0
    assert remote.tokenizer.encode("Hello") == mesh.model().tokenizer.encode("Hello")

    # 2. a long Score straight from the SDK
    score_detected = kill_during(lambda: score(keep), lambda m: metric(
        m.metrics_port, "xaimesh_queue_depth", queue="model") > 0, "score rows queued")
    assert score_detected < 5.0
    restart()
    resumed = time.monotonic()
    reply = score(keep[:4])
    score_first = time.monotonic() - resumed
    assert list(reply.scores.shape)[:1] == [4]
    assert split_model.get_activations(SHORT_TEXTS[:1]).num_samples == 1
    record(pull_kill_detected_s=pull_detected, score_kill_detected_s=score_detected,
           model_server_restart_s=restart_s, first_call_after_restart_s=max(pull_first, score_first))
    mesh.close()


def test_cancelling_a_pull_frees_the_model_server_and_the_concept_service(stack):
    model, concept = stack
    channel = make_channel(concept.address)
    stub = concept_pb2_grpc.ConceptServiceStub(channel)
    before = {s.name for s in stub.ListActivationSets(concept_pb2.ListActivationSetsRequest(), timeout=10).sets}
    call = stub.CreateActivationSets(concept_pb2.CreateActivationSetsRequest(
        texts=LONG_TEXTS, split_points=["1"], granularity=tensor_pb2.GRANULARITY_TOKEN), timeout=120)
    events = iter(call)
    next(events)  # the pull is under way
    wait_until(lambda: _streaming_activations(model), 30, what="the model-server streaming activations")
    time.sleep(0.5)
    cancelled = time.monotonic()
    call.cancel()
    freed = wait_until(lambda: not _streaming_activations(model)
                       and metric(model.metrics_port, "xaimesh_queue_depth", queue="model") == 0,
                       10, what="the model-server's call ended and its queue empty")
    # the work stopped: both processes idle (a batch already running may finish), a small call answered at once
    for process in (model, concept):
        _wait_idle(process)
    idle = time.monotonic() - cancelled
    small = time.monotonic()
    (*_, last) = stub.CreateActivationSets(concept_pb2.CreateActivationSetsRequest(
        texts=SHORT_TEXTS, split_points=["1"]), timeout=30)
    small = time.monotonic() - small
    assert last.sets.sets[0].num_samples == len(SHORT_TEXTS)
    assert small < 5.0
    # the cancelled pull left no set behind
    sets = stub.ListActivationSets(concept_pb2.ListActivationSetsRequest(), timeout=10).sets
    assert {s.name for s in sets} - before == {last.sets.sets[0].name}
    record(pull_cancel_freed_s=freed, pull_cancel_idle_s=idle, small_call_after_cancel_s=small)
    channel.close()


def test_a_short_deadline_ends_the_model_server_call_too(stack):
    model, concept = stack
    channel = make_channel(concept.address)
    stub = concept_pb2_grpc.ConceptServiceStub(channel)
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as error:
        for _ in stub.CreateActivationSets(concept_pb2.CreateActivationSetsRequest(
                texts=LONG_TEXTS, split_points=["1"]), timeout=2.0):
            pass
    assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 4.0
    ended = wait_until(lambda: not _streaming_activations(model)
                       and metric(model.metrics_port, "xaimesh_queue_depth", queue="model") == 0,
                       10, what="the model-server's call ended")
    finished = sum(metric(model.metrics_port, "xaimesh_grpc_requests_total", method=STREAM_ACTIVATIONS, code=c)
                   for c in ("DEADLINE_EXCEEDED", "CANCELLED"))
    assert finished >= 1
    _wait_idle(model)
    record(deadline_downstream_ended_s=ended, deadline_downstream_idle_s=time.monotonic() - started - 2.0)
    channel.close()


def test_cancelling_a_fit_frees_the_concept_service(stack):
    model, concept = stack
    channel = make_channel(concept.address)
    stub = concept_pb2_grpc.ConceptServiceStub(channel)
    (*_, last) = stub.CreateActivationSets(concept_pb2.CreateActivationSetsRequest(
        texts=LONG_TEXTS[:300], split_points=["1"]), timeout=60)
    name = last.sets.sets[0].name
    call = stub.FitConceptModel(concept_pb2.FitConceptModelRequest(
        activation_set=name, method=concept_pb2.CONCEPT_METHOD_SAE_VANILLA, nb_concepts=64,
        options=concept_pb2.ConceptFitOptions(epochs=100000, batch_size=32, device="cpu")), timeout=120)
    for event in call:  # training under way: its first epoch is done
        if event.WhichOneof("event") == "log":
            break
    assert cpu_busy(concept.process.pid, 0.3) > 0.3
    cancelled = time.monotonic()
    call.cancel()
    _wait_idle(concept)
    freed = time.monotonic() - cancelled
    assert metric(concept.metrics_port, "xaimesh_grpc_in_flight_requests", method=FIT) == 0
    assert not [m for m in stub.ListConceptModels(concept_pb2.ListConceptModelsRequest(), timeout=10).models
                if m.activation_set == name]
    record(fit_cancel_freed_s=freed)
    channel.close()


@pytest.fixture(scope="module")
def attribution(module_launcher, stack):
    model, _ = stack
    return module_launcher.start("attribution", "--model-server-address", model.address)


def _parameters(apb, method: str, values: dict):
    """The method's own parameter message inside MethodParameters (the oneof
    field is the method's name: ATTRIBUTION_METHOD_KERNEL_SHAP -> kernel_shap)."""
    name = method.removeprefix("ATTRIBUTION_METHOD_").lower()
    field = apb.MethodParameters.DESCRIPTOR.fields_by_name[name]
    return apb.MethodParameters(**{name: field.message_type._concrete_class(**values)})


@pytest.mark.parametrize("method, parameters", [
    # the largest n_steps the service accepts: its quadrature rule alone once took minutes
    ("ATTRIBUTION_METHOD_INTEGRATED_GRADIENTS", {"n_steps": 10_000, "batch_size": 4}),
    ("ATTRIBUTION_METHOD_KERNEL_SHAP", {"n_perturbations": 20_000, "batch_size": 4}),
])
def test_cancelling_an_attribution_frees_it_and_the_model_server(stack, attribution, method, parameters):
    from xaimesh_contracts.v1 import attribution_pb2 as apb
    from xaimesh_contracts.v1 import attribution_pb2_grpc

    model, _ = stack
    channel = make_channel(attribution.address)
    stub = attribution_pb2_grpc.AttributionServiceStub(channel)
    call = stub.Explain(apb.ExplainRequest(
        method=apb.AttributionMethod.Value(method), parameters=_parameters(apb, method, parameters),
        inputs=[apb.ExplainInput(text=SENTENCE, targets=apb.Targets(text=" Bob smiles."))]), timeout=120)
    for event in call:  # work under way: its first batch is done
        if event.WhichOneof("event") == "progress" and event.progress.done > 0:
            break
    cancelled = time.monotonic()
    call.cancel()
    for process in (attribution, model):
        _wait_idle(process)
    freed = time.monotonic() - cancelled
    assert metric(model.metrics_port, "xaimesh_queue_depth", queue="model") == 0
    record(**{f"explain_cancel_freed_s_{method.removeprefix('ATTRIBUTION_METHOD_').lower()}": freed})
    channel.close()


# --------------------------------------------------------------------------
# the LLM endpoint fails


@pytest.fixture(scope="module")
def labeling_stack(module_launcher, stack):
    model_server, concept = stack
    labeling = module_launcher.start("labeling", "--model-server-address", model_server.address,
                                     "--concept-service-address", concept.address,
                                     env={"XAIMESH_OPENAI_API_KEY": ""})
    with make_channel(concept.address) as channel:
        stub = concept_pb2_grpc.ConceptServiceStub(channel)
        (*_, last) = stub.CreateActivationSets(concept_pb2.CreateActivationSetsRequest(
            texts=[SENTENCE, *SHORT_TEXTS, "A dog ran across the park.", "Seven plus five makes twelve."],
            split_points=["2"], granularity=tensor_pb2.GRANULARITY_TOKEN), timeout=60)
        aset = last.sets.sets[0].name
        (*_, fitted) = stub.FitConceptModel(concept_pb2.FitConceptModelRequest(
            activation_set=aset, method=concept_pb2.CONCEPT_METHOD_KMEANS, nb_concepts=6,
            options=concept_pb2.ConceptFitOptions(seed=0)), timeout=60)
    return labeling, aset, fitted.model.name


def _label(labeling, aset, concept_model, fake, **openai):
    openai.setdefault("max_retries", -1)  # no retries: one failure = one concept's error
    openai.setdefault("timeout_seconds", 1.0)
    request = labeling_pb2.LabelConceptsRequest(
        concept_model=concept_model, activation_set=aset, k_examples=3, max_concurrency=1,
        llm=labeling_pb2.LlmBackend(openai=labeling_pb2.OpenAIBackend(
            model="gpt-fake", base_url=fake.base_url, **openai)))
    with make_channel(labeling.address) as channel:
        stub = labeling_pb2_grpc.LabelingServiceStub(channel)
        events = list(stub.LabelConcepts(request, timeout=60, metadata=[("x-openai-api-key", "sk-fault-test")]))
    return [e.label for e in events if e.WhichOneof("event") == "label"]


def test_llm_endpoint_failures_are_per_concept_errors(labeling_stack):
    labeling, aset, concept_model = labeling_stack
    calls = {"n": 0}
    lock = threading.Lock()

    def responder(messages):
        with lock:
            calls["n"] += 1
            n = calls["n"]
        if n == 1:
            raise FakeHTTPError(500, "The server had an error")
        if n == 2:
            raise FakeHTTPError(429, "Rate limit reached", {"retry-after": "0"})
        if n == 3:
            time.sleep(3.0)  # past the 1 s timeout
        if n == 4:
            raise FakeMalformed()
        return "Label: bar words"

    with FakeOpenAIServer(responder=responder) as fake:
        labels = _label(labeling, aset, concept_model, fake)
    live = [label for label in labels if label.has_label or label.HasField("error")]
    assert len(labels) == 6 and len(live) >= 5, labels
    errors = sorted(CODE_NAMES[label.error.code] for label in live if label.HasField("error"))
    assert errors == sorted(["UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "INTERNAL"]), errors
    good = [label for label in live if not label.HasField("error")]
    assert good and all(label.label == "bar words" for label in good)


def test_llm_429_storm_and_500_storm_are_per_concept_errors(labeling_stack):
    labeling, aset, concept_model = labeling_stack
    with FakeOpenAIServer() as fake:
        fake.fail_429(1000, retry_after="0")
        storm = _label(labeling, aset, concept_model, fake, max_retries=2)
        fake.fail_429(0)
        fake.fail_500_always()
        errors_500 = _label(labeling, aset, concept_model, fake, max_retries=1)
        fake.fail_500_always(False)
        fake.malformed()
        malformed = _label(labeling, aset, concept_model, fake)
        fake.malformed(False)
        healthy = _label(labeling, aset, concept_model, fake)
    for labels, code in ((storm, "RESOURCE_EXHAUSTED"), (errors_500, "UNAVAILABLE"), (malformed, "INTERNAL")):
        live = [label for label in labels if label.HasField("error") or label.has_label]
        assert live and all(CODE_NAMES[label.error.code] == code for label in live), labels
    assert [label.label for label in healthy if label.has_label] and all(
        not label.HasField("error") for label in healthy)
