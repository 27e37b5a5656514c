"""A real server process: ready-file, SIGTERM with grace, exit codes, logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from rt_echo_service import SERVICE
from xaimesh_runtime.client import make_channel, wait_for_health

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
SCRIPT = HERE / "rt_echo_service.py"


def _spawn(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "services"), str(ROOT / "clients" / "python"), str(ROOT / "contracts")]),
                **(env or {})}
    return subprocess.Popen([sys.executable, str(SCRIPT), "--host", "127.0.0.1", "--port", "0", *args],
                            env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_file(path: Path, proc: subprocess.Popen, timeout: float = 30) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists():
            return json.loads(path.read_text())
        if proc.poll() is not None:
            raise AssertionError(f"server exited early ({proc.returncode}): {proc.stderr.read()}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("no ready file")


def test_sigterm_graceful_shutdown(tmp_path):
    ready = tmp_path / "ready.json"
    proc = _spawn(tmp_path, "--metrics-port", "0", "--ready-file", str(ready), "--grace-seconds", "5",
                  "--warmup-seconds", "0.3", "--log-format", "json",
                  env={"XAIMESH_AUTH_TOKEN": "very-secret-token-123"})
    try:
        info = _wait_file(ready, proc)
        assert set(info) == {"port", "metrics_port", "pid"}
        assert info["pid"] == proc.pid and info["port"] > 0 and info["metrics_port"] > 0
        address = f"127.0.0.1:{info['port']}"
        wait_for_health(address, timeout=5)  # ready-file is written once SERVING
        with make_channel(address, token="very-secret-token-123") as channel:
            assert channel.unary_unary(f"/{SERVICE}/Echo")(b"x", timeout=5) == b"x"
            slow = channel.unary_unary(f"/{SERVICE}/Sleep").future(b"1.0", timeout=10)
            time.sleep(0.3)  # let the call start
            start = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert slow.result() == b"slept"  # finished during the grace period
            rc = proc.wait(timeout=10)
            assert rc == 0 and time.monotonic() - start < 5
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = proc.stderr.read()
    assert not ready.exists()
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    messages = [entry["message"] for entry in lines]
    assert any("received SIGTERM" in m for m in messages), stderr
    assert any(m.startswith("echo serving on 127.0.0.1:") for m in messages)
    assert all(entry["service"] == "echo" for entry in lines)
    assert "very-secret-token-123" not in stderr


def test_failed_warmup_exits_1(tmp_path):
    ready = tmp_path / "ready.json"
    proc = _spawn(tmp_path, "--metrics-port", "-1", "--ready-file", str(ready), "--fail-warmup")
    rc = proc.wait(timeout=30)
    stderr = proc.stderr.read()
    assert rc == 1, stderr
    assert "warm-up failed" in stderr and "could not load the model" in stderr
    assert not ready.exists()


def test_bad_config_exits_2(tmp_path):
    proc = _spawn(tmp_path, env={"XAIMESH_METRICS_PORT": "-5"})
    assert proc.wait(timeout=30) == 2
    assert "--metrics-port (XAIMESH_METRICS_PORT): -5 is not a port number" in proc.stderr.read()


@pytest.mark.parametrize("sig", [signal.SIGINT])
def test_sigint_during_warmup(tmp_path, sig):
    ready = tmp_path / "ready.json"
    proc = _spawn(tmp_path, "--metrics-port", "-1", "--warmup-seconds", "30", "--log-level", "debug")
    try:
        # health answers while warming up
        deadline = time.monotonic() + 30
        while True:
            line = proc.stderr.readline()
            if "listening on" in line or time.monotonic() > deadline:
                break
        port = int(line.split("listening on 127.0.0.1:")[1].split()[0])
        with make_channel(f"127.0.0.1:{port}") as channel:
            from grpc_health.v1 import health_pb2, health_pb2_grpc

            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
            assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        proc.send_signal(sig)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not ready.exists()
    with pytest.raises(grpc.RpcError):
        with make_channel(f"127.0.0.1:{port}") as channel:
            channel.unary_unary(f"/{SERVICE}/Echo")(b"x", timeout=1)
