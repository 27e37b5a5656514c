"""End to end: the Node.js client (clients/node) against real Python services.

Starts a model-server on the tiny test model and an attribution-service in
front of it, runs examples/attribution_and_activations.js, and checks its
numbers against the same calls made from Python (the Node decoding of raw
tensors must agree with numpy's to float32 precision). The Node unit tests
themselves (`npm test` in clients/node) run without any service.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "clients" / "node"
EXAMPLE = NODE_DIR / "examples" / "attribution_and_activations.js"
TEXT = "Alice and Bob enter the bar, "
TARGET = "then Alice offers a drink to Bob."
LAYER = "1"



def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_serving(address: str, proc: subprocess.Popen, log: Path, timeout: float = 240.0) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"service at {address} exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.5)
    pytest.fail(f"service at {address} not SERVING after {timeout}s:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def node_modules():
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node / npm are not on PATH")
    if not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        proc = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            pytest.skip(f"npm ci failed (npm registry unreachable?): {proc.stderr.strip()[-300:]}")
    return node


@pytest.fixture(scope="module")
def mesh(tmp_path_factory, tiny_lm_path):
    """model-server (tiny model) + attribution-service on free local ports."""
    tmp = tmp_path_factory.mktemp("mesh")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("XAIMESH_")}
    base_env.update({
        "XAIMESH_HOST": "127.0.0.1",
        "XAIMESH_METRICS_PORT": "0",
        "XAIMESH_GRACE_SECONDS": "2",
        "XAIMESH_DEVICE": "cpu",
        "XAIMESH_DTYPE": "float32",
        "XAIMESH_CACHE_DIR": str(tmp / "cache"),
        "XAIMESH_DATA_DIR": str(tmp / "data"),
        "OMP_NUM_THREADS": "1",
    })
    procs: list[subprocess.Popen] = []
    logs: list = []

    def start(module: str, port: int, **env) -> subprocess.Popen:
        log = tmp / f"{module}.log"
        handle = open(log, "w")
        logs.append(handle)
        proc = subprocess.Popen(
            [sys.executable, "-m", module],
            env={**base_env, "XAIMESH_PORT": str(port), **env},
            stdout=handle, stderr=subprocess.STDOUT, cwd=tmp,
        )
        procs.append(proc)
        _wait_serving(f"127.0.0.1:{port}", proc, log)
        return proc

    model_port, attribution_port = _free_port(), _free_port()
    try:
        start("xaimesh_model_server", model_port, XAIMESH_MODEL=str(tiny_lm_path))
        start("xaimesh_attribution", attribution_port, XAIMESH_MODEL_SERVER=f"127.0.0.1:{model_port}")
        yield {"model": f"127.0.0.1:{model_port}", "attribution": f"127.0.0.1:{attribution_port}"}
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for handle in logs:
            handle.close()


def _decode(tensor) -> np.ndarray:
    from xaimesh_contracts.v1 import tensor_pb2

    dtypes = {
        tensor_pb2.DATA_TYPE_FLOAT32: "<f4",
        tensor_pb2.DATA_TYPE_FLOAT64: "<f8",
        tensor_pb2.DATA_TYPE_INT64: "<i8",
        tensor_pb2.DATA_TYPE_INT32: "<i4",
    }
    if tensor.dtype == tensor_pb2.DATA_TYPE_BFLOAT16:
        bits = np.frombuffer(tensor.raw_contents, dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(tuple(tensor.shape))
    return np.frombuffer(tensor.raw_contents, dtype=dtypes[tensor.dtype]).reshape(tuple(tensor.shape))


def _python_reference(mesh) -> tuple[np.ndarray, list[str], list[np.ndarray]]:
    """The example's two calls, made with the Python stubs."""
    import grpc
    from xaimesh_contracts.v1 import attribution_pb2, attribution_pb2_grpc, model_pb2, model_pb2_grpc, tensor_pb2

    with grpc.insecure_channel(mesh["attribution"]) as channel:
        stub = attribution_pb2_grpc.AttributionServiceStub(channel)
        request = attribution_pb2.ExplainRequest(
            method=attribution_pb2.ATTRIBUTION_METHOD_OCCLUSION,
            parameters=attribution_pb2.MethodParameters(occlusion=attribution_pb2.OcclusionParameters(window=1)),
            inputs=[attribution_pb2.ExplainInput(text=TEXT, targets=attribution_pb2.Targets(text=TARGET))],
            granularity=tensor_pb2.GRANULARITY_WORD,
            inference_mode=tensor_pb2.INFERENCE_MODE_SOFTMAX,
        )
        results = [e.result for e in stub.Explain(request, timeout=300) if e.WhichOneof("event") == "result"]
    assert len(results) == 1
    attribution = results[0].attribution
    scores = _decode(attribution.scores)

    rows: list[np.ndarray] = []
    with grpc.insecure_channel(mesh["model"]) as channel:
        stub = model_pb2_grpc.ModelServiceStub(channel)
        request = model_pb2.StreamActivationsRequest(
            texts=[TEXT, TARGET], split_points=[LAYER], granularity=tensor_pb2.GRANULARITY_TOKEN,
            dtype=tensor_pb2.DATA_TYPE_FLOAT32,
        )
        for event in stub.StreamActivations(request, timeout=300):
            if event.WhichOneof("event") == "chunk":
                rows.extend(_decode(event.chunk.rows))
    return scores, [s.text for s in attribution.input_elements], rows


def test_node_example_matches_python(mesh, node_modules):
    env = {
        **os.environ,
        "XAIMESH_ATTRIBUTION": mesh["attribution"],
        "XAIMESH_MODEL_SERVER": mesh["model"],
        "XAIMESH_EXAMPLE_TEXT": TEXT,
        "XAIMESH_EXAMPLE_TARGET": TARGET,
        "XAIMESH_EXAMPLE_LAYER": LAYER,
        "XAIMESH_EXAMPLE_TIMEOUT": "300",
    }
    env.pop("XAIMESH_CONCEPT", None)
    env.pop("XAIMESH_AUTH_TOKEN", None)
    proc = subprocess.run([node_modules, str(EXAMPLE)], cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"example failed:\n{proc.stderr}"
    out = json.loads(proc.stdout)

    # Attribution: shape, finiteness where defined, NaN after each target.
    attribution = out["attribution"]
    assert attribution["method"] == "ATTRIBUTION_METHOD_OCCLUSION"
    n_targets, n_elements = attribution["shape"]
    assert n_targets == len(attribution["target_elements"]) >= 1
    assert n_elements == len(attribution["input_elements"])
    # Word elements are the words themselves, without the spaces between them.
    assert attribution["input_elements"][: attribution["num_prompt_elements"]] == TEXT.split()
    node_scores = np.array([[np.nan if v is None else v for v in row] for row in attribution["scores"]], dtype=np.float64)
    n_prompt = attribution["num_prompt_elements"]
    assert np.isfinite(node_scores[:, :n_prompt]).all()
    for score in attribution["target_scores"]:
        assert 0.0 <= score <= 1.0  # SOFTMAX: probabilities

    # The same call from Python gives the same numbers (deterministic method).
    py_scores, py_elements, py_rows = _python_reference(mesh)
    assert attribution["input_elements"] == py_elements
    np.testing.assert_array_equal(np.isnan(node_scores), np.isnan(py_scores))
    np.testing.assert_allclose(node_scores[~np.isnan(node_scores)], py_scores[~np.isnan(py_scores)], rtol=1e-5, atol=1e-7)

    # Activations: one row per token of both texts, hidden size of the tiny model.
    activations = out["activations"]
    assert activations["num_rows"] == len(py_rows) > 0
    assert activations["hidden_size"] == py_rows[0].shape[0] == 64
    assert {r["sample_index"] for r in activations["rows"]} == {0, 1}
    for node_row, py_row in zip(activations["rows"], py_rows):
        assert math.isclose(node_row["l2_norm"], float(np.linalg.norm(py_row.astype(np.float64))), rel_tol=1e-5)
        np.testing.assert_allclose(node_row["head"], py_row[:4], rtol=1e-6, atol=0)
