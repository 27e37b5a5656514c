"""Real service processes over real gRPC, on free loopback ports.

`start_service("model", "--model", path)` spawns `xaimesh serve model` with
`--port 0` and a ready file, waits until it is serving (health SERVING), and
returns a handle; every process started through the fixture is stopped
(SIGTERM, then SIGKILL) at teardown.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ServiceProcess:
    service: str
    process: subprocess.Popen
    ready_file: Path
    log_path: Path
    args: list[str] = field(default_factory=list)
    port: int = 0
    metrics_port: int | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self, timeout: float = 120.0) -> ServiceProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.service} exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            if self.ready_file.exists():
                info = json.loads(self.ready_file.read_text())
                self.port, self.metrics_port = info["port"], info.get("metrics_port")
                return self
            time.sleep(0.05)
        raise TimeoutError(f"{self.service} not ready after {timeout} s:\n{self.log()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


class ServiceLauncher:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.started: list[ServiceProcess] = []

    def start(self, service: str, *args: str, env: dict | None = None, port: int = 0,
              wait: bool = True, timeout: float = 120.0) -> ServiceProcess:
        n = len(self.started)
        ready = self.tmp / f"{service}-{n}.ready.json"
        log_path = self.tmp / f"{service}-{n}.log"
        command = [sys.executable, "-m", "xaimesh_runtime.cli", "serve", service, "--host", "127.0.0.1",
                   "--port", str(port), "--metrics-port", "0", "--ready-file", str(ready), *args]
        full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=full_env,
                                       stdin=subprocess.DEVNULL, cwd=ROOT)
        handle = ServiceProcess(service, process, ready, log_path, list(args))
        self.started.append(handle)
        return handle.wait_ready(timeout) if wait else handle

    def stop_all(self) -> None:
        for handle in reversed(self.started):
            handle.stop()


@pytest.fixture
def launcher(tmp_path):
    launcher = ServiceLauncher(tmp_path)
    yield launcher
    launcher.stop_all()


@pytest.fixture(scope="module")
def module_launcher(tmp_path_factory):
    launcher = ServiceLauncher(tmp_path_factory.mktemp("services"))
    yield launcher
    launcher.stop_all()


@pytest.fixture(scope="module")
def model_server(module_launcher, tiny_lm_path, tiny_classifier_path) -> ServiceProcess:
    """A model-server process holding the tiny causal LM (default) and the tiny classifier."""
    return module_launcher.start("model", "--model", str(tiny_lm_path), "--model", str(tiny_classifier_path))
