"""Load on real service processes and the tiny model.

``test_mixed_load_quick`` (10 s, in the normal suite) and ``test_mixed_load_soak``
(``XAIMESH_SOAK_SECONDS``, default 60; ``pytest -m soak``): 16 concurrent
clients, each with its own SDK mesh, mix Score, StreamActivations, concept
Encode and attribution Explain. The only
failure allowed is RESOURCE_EXHAUSTED back-pressure, which clients retry
with backoff. p50 / p99 latency, throughput and the RSS growth of every
service process are printed and written to ``.cache/reliability/load-*.json``.

``test_the_queue_bound_holds_under_overload``: a model-server with a tiny
``--max-queue-items`` flooded by 32 callers answers RESOURCE_EXHAUSTED, its
queue never grows past the bound, and it serves normally after the flood.
"""

from __future__ import annotations

import collections
import json
import os
import random
import threading
import time

import grpc
import numpy as np
import pytest

from measure import REPORT_DIR, metric, percentile, rss_kib
from xaimesh_contracts.v1 import concept_pb2, concept_pb2_grpc, model_pb2, model_pb2_grpc
from xaimesh_runtime.client import make_channel
from xaimesh_contracts.tensors import to_tensor

CLIENTS = 16
TEXTS = ["The cat sat on the mat.", "Alice and Bob enter the bar, then Alice offers a drink to Bob.",
         "Paris is the capital of France.", "Rain fell all night over the quiet town.",
         "Gradient descent follows the slope downhill.", "Seven plus five makes twelve."]


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("XAIMESH_PROGRESS", "0")


@pytest.fixture(scope="module")
def load_stack(module_launcher, tiny_lm_path, tmp_path_factory):
    model = module_launcher.start("model", "--model", str(tiny_lm_path))
    concept = module_launcher.start("concept", "--model-server-address", model.address, "--data-dir",
                                    str(tmp_path_factory.mktemp("concept-data")), "--device", "cpu")
    attribution = module_launcher.start("attribution", "--model-server-address", model.address)
    services = {"model": model, "concept": concept, "attribution": attribution}
    with make_channel(concept.address) as channel:
        stub = concept_pb2_grpc.ConceptServiceStub(channel)
        (*_, last) = stub.CreateActivationSets(concept_pb2.CreateActivationSetsRequest(
            texts=TEXTS * 4, split_points=["1"]), timeout=60)
        aset = last.sets.sets[0]
        (*_, fitted) = stub.FitConceptModel(concept_pb2.FitConceptModelRequest(
            activation_set=aset.name, method=concept_pb2.CONCEPT_METHOD_PCA, nb_concepts=8), timeout=60)
    return services, aset, fitted.model.name


class Client:
    """One researcher: its own mesh, a loop of mixed calls until `stop`."""

    def __init__(self, n: int, services, aset, concept_model, stop: threading.Event, results):
        import xaimesh

        self.n, self.stop, self.results = n, stop, results
        self.rng = random.Random(n)
        self.mesh = xaimesh.Mesh({k: s.address for k, s in services.items()})
        self.model = self.mesh.model()
        self.ids = self.model.tokenizer.encode(TEXTS[1])
        self.aset, self.concept_model = aset, concept_model
        self.ops = ["score", "activations", "encode", "explain"]

    def score(self):
        mask = np.random.default_rng(self.rng.randrange(1 << 30)).random((16, len(self.ids))) < 0.7
        reply = self.mesh.client("model").call("Score", model_pb2.ScoreRequest(
            model=self.model.model_id, input_ids=self.ids, keep_mask=to_tensor(mask),
            target_positions=[len(self.ids) - 1]), timeout=60)
        assert list(reply.scores.shape)[:1] == [16]

    def activations(self):
        out = self.model.activations(self.rng.sample(TEXTS, 2), split_points=[1], show_progress=False)
        assert next(iter(out.values())).rows.shape[0] > 0

    def encode(self):
        start = self.rng.randrange(0, self.aset.shape[0] - 8)
        request = concept_pb2.EncodeRequest(concept_model=self.concept_model, source=concept_pb2.ActivationSource(
            activation_set=concept_pb2.ActivationSetRange(name=self.aset.name, row_start=start,
                                                          row_end=start + 8)))
        rows = sum(e.codes.shape[0] for e in self.mesh.client("concept").stream("Encode", request, timeout=60,
                                                                                 show_progress=False))
        assert rows == 8

    def explain(self):
        from xaimesh.attributions import Occlusion

        (out,) = Occlusion(self.model)(TEXTS[0], " It purred.")
        assert out is not None

    def run(self):
        from xaimesh.errors import ResourceExhaustedError

        try:
            while not self.stop.is_set():
                op = self.rng.choice(self.ops)
                started = time.monotonic()
                backoff = 0.05
                while True:
                    try:
                        getattr(self, op)()
                        break
                    except ResourceExhaustedError:
                        self.results["retries"].append(op)
                        time.sleep(backoff * (0.5 + self.rng.random()))
                        backoff = min(backoff * 2, 2.0)
                    except Exception as error:  # noqa: BLE001 - every other failure is reported
                        self.results["failures"].append(f"{op}: {type(error).__name__}: {error}")
                        break
                self.results["latency"][op].append(time.monotonic() - started)
        finally:
            self.mesh.close()


def run_mixed_load(load_stack, seconds: float, variant: str) -> dict:
    services, aset, concept_model = load_stack
    results = {"latency": collections.defaultdict(list), "failures": [], "retries": []}
    stop = threading.Event()
    clients = [Client(n, services, aset, concept_model, stop, results) for n in range(CLIENTS)]
    for c in clients:  # warm every path once before measuring memory
        for op in c.ops[:1] if c.n else c.ops:
            getattr(c, op)()
    rss_before = {k: rss_kib(s.process.pid) for k, s in services.items()}
    threads = [threading.Thread(target=c.run, daemon=True) for c in clients]
    started = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(120)
    elapsed = time.monotonic() - started
    assert not any(t.is_alive() for t in threads), "a client hung"
    rss_after = {k: rss_kib(s.process.pid) for k, s in services.items()}
    all_latencies = [x for values in results["latency"].values() for x in values]
    report = {
        "variant": variant, "seconds": round(elapsed, 1), "clients": CLIENTS,
        "calls": len(all_latencies), "throughput_per_s": round(len(all_latencies) / elapsed, 1),
        "p50_ms": round(1000 * percentile(all_latencies, 50), 1),
        "p99_ms": round(1000 * percentile(all_latencies, 99), 1),
        "per_op": {op: {"calls": len(v), "p50_ms": round(1000 * percentile(v, 50), 1),
                        "p99_ms": round(1000 * percentile(v, 99), 1)}
                   for op, v in sorted(results["latency"].items())},
        "resource_exhausted_retries": len(results["retries"]),
        "failures": len(results["failures"]),
        "rss_mib_before": {k: round(v / 1024, 1) for k, v in rss_before.items()},
        "rss_mib_after": {k: round(v / 1024, 1) for k, v in rss_after.items()},
        "rss_growth_mib": {k: round((rss_after[k] - rss_before[k]) / 1024, 1) for k in rss_before},
    }
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    (REPORT_DIR / f"load-{variant}.json").write_text(json.dumps(report, indent=2))
    print(f"\nload ({variant}): {json.dumps(report)}")
    assert not results["failures"], results["failures"][:10]
    assert set(results["latency"]) == set(clients[0].ops), "an operation never ran"
    for service, growth in report["rss_growth_mib"].items():
        assert growth < 300, f"{service} grew by {growth} MiB"
    return report


def test_mixed_load_quick(load_stack):
    report = run_mixed_load(load_stack, float(os.environ.get("XAIMESH_LOAD_SECONDS", "10")), "quick")
    assert report["calls"] >= CLIENTS


@pytest.mark.soak
def test_mixed_load_soak(load_stack):
    run_mixed_load(load_stack, float(os.environ.get("XAIMESH_SOAK_SECONDS", "60")), "soak")


def test_the_queue_bound_holds_under_overload(launcher, tiny_lm_path):
    bound = 8
    model = launcher.start("model", "--model", str(tiny_lm_path), "--max-queue-items", str(bound),
                           "--max-batch-size", "2", "--batch-wait-ms", "0")
    channel = make_channel(model.address)
    stub = model_pb2_grpc.ModelServiceStub(channel)
    ids = list(stub.Tokenize(model_pb2.TokenizeRequest(texts=[TEXTS[1]]), timeout=30).results[0].token_ids)
    mask = to_tensor(np.ones((4, len(ids)), dtype=bool))
    request = model_pb2.ScoreRequest(input_ids=ids, keep_mask=mask, target_positions=[len(ids) - 1])
    codes: collections.Counter = collections.Counter()
    depths: list[float] = []
    stop = threading.Event()

    def flood():
        while not stop.is_set():
            try:
                stub.Score(request, timeout=30)
                codes["OK"] += 1
            except grpc.RpcError as error:
                codes[error.code().name] += 1

    def watch():
        while not stop.is_set():
            depths.append(metric(model.metrics_port, "xaimesh_queue_depth", queue="model"))
            time.sleep(0.02)

    threads = [threading.Thread(target=flood, daemon=True) for _ in range(32)]
    threads.append(threading.Thread(target=watch, daemon=True))
    for t in threads:
        t.start()
    time.sleep(4.0)
    stop.set()
    for t in threads:
        t.join(60)
    print(f"\noverload: {dict(codes)}, max queue depth seen {max(depths)} (bound {bound})")
    assert codes["RESOURCE_EXHAUSTED"] > 0 and codes["OK"] > 0
    assert set(codes) == {"OK", "RESOURCE_EXHAUSTED"}, codes
    assert max(depths) <= bound
    # after the flood: served normally, health SERVING
    started = time.monotonic()
    assert list(stub.Score(request, timeout=10).scores.shape) == [4, 1]
    assert time.monotonic() - started < 2.0
    assert metric(model.metrics_port, "xaimesh_queue_depth", queue="model") == 0
    rejected = metric(model.metrics_port, "xaimesh_grpc_requests_total", method="/xaimesh.v1.ModelService/Score",
                      code="RESOURCE_EXHAUSTED")
    assert rejected == codes["RESOURCE_EXHAUSTED"]
    report = REPORT_DIR / "overload.json"
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps({"bound": bound, "codes": dict(codes), "max_depth": max(depths)}, indent=2))
    channel.close()
