"""Two model-server processes behind one attribution-service address
(`--model-server-address a,b`): both get Score work, and killing one in the
middle of an explanation costs retries of its Score calls on the other, not
the explanation — whose numbers equal those of a single replica."""

from __future__ import annotations

import re
import signal
import threading
import time
import urllib.request

import numpy as np
import pytest

PROMPT = "Alice and Bob enter the bar, "
TARGET = "then Alice offers a drink to Bob."
TOL = 1e-5  # batches differ between runs (the batcher coalesces differently): float rounding only
PARAMS = {"n_perturbations": 256, "seed": 5, "batch_size": 2}  # 2 masks a request: many Score calls


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("XAIMESH_PROGRESS", "0")


def scores_served(process) -> int:
    """Score calls a model-server process answered OK (its /metrics)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{process.metrics_port}/metrics", timeout=5).read().decode()
    found = re.search(r'xaimesh_grpc_requests_total\{code="OK",method="[^"]*/Score"\} ([0-9.e+]+)', text) or \
        re.search(r'xaimesh_grpc_requests_total\{method="[^"]*/Score",code="OK"\} ([0-9.e+]+)', text)
    return int(float(found.group(1))) if found else 0


def explain(attribution_address: str, model_server_address: str):
    import xaimesh
    from xaimesh import KernelShap
    from xaimesh.attributions import Granularity

    mesh = xaimesh.connect(model_server=model_server_address, attribution=attribution_address, wait_seconds=60)
    try:
        (out,) = KernelShap(mesh.model(), granularity=Granularity.WORD, **PARAMS)(model_inputs=PROMPT,
                                                                                   targets=TARGET)
        return out
    finally:
        mesh.close()


def test_a_replica_killed_mid_explanation_costs_retries_not_the_result(launcher, tiny_lm_path):
    replicas = [launcher.start("model", "--model", str(tiny_lm_path)) for _ in range(2)]
    single = launcher.start("attribution", "--model-server-address", replicas[1].address)
    both = launcher.start("attribution", "--model-server-address",
                          ",".join(r.address for r in replicas))
    reference = explain(single.address, replicas[1].address)

    # both replicas share the work of one explanation
    before = [scores_served(r) for r in replicas]
    balanced = explain(both.address, replicas[0].address)
    served = [scores_served(r) - b for r, b in zip(replicas, before)]
    assert min(served) > 0, served
    np.testing.assert_allclose(balanced.attributions, reference.attributions, rtol=0, atol=TOL, equal_nan=True)

    # kill the first replica while the explanation is under way
    outcome: dict = {}
    started = scores_served(replicas[0])
    worker = threading.Thread(target=lambda: outcome.update(out=explain(both.address, replicas[1].address)))
    worker.start()
    deadline = time.monotonic() + 60
    while scores_served(replicas[0]) < started + 3 and time.monotonic() < deadline and worker.is_alive():
        time.sleep(0.01)
    assert worker.is_alive(), "the explanation ended before a replica could be killed; make it longer"
    replicas[0].stop(signal.SIGKILL)
    worker.join(120)
    assert "out" in outcome, both.log()[-3000:]
    np.testing.assert_allclose(outcome["out"].attributions, reference.attributions, rtol=0, atol=TOL, equal_nan=True)
    np.testing.assert_allclose(outcome["out"].target_scores, reference.target_scores, rtol=0, atol=TOL, equal_nan=True)
    assert "trying another replica" in both.log()
