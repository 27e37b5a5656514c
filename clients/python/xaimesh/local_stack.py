"""A local mesh: the installed services as child processes on loopback.

`xaimesh.connect()` with no addresses uses this, so a notebook or `make demo`
works on a laptop with nothing running. Each service gets a free port on
127.0.0.1; logs go to files under the cache directory; everything is stopped
(SIGTERM, then SIGKILL after a grace period) when the program exits.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import platformdirs

from xaimesh.errors import UnavailableError

# Start order matters only for upstream addresses; all start in parallel.
STACK = ("model", "attribution", "concept", "labeling")
PACKAGES = {
    "model": "xaimesh_model_server",
    "attribution": "xaimesh_attribution",
    "concept": "xaimesh_concept",
    "labeling": "xaimesh_labeling",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def installed_services() -> list[str]:
    return [s for s in STACK if importlib.util.find_spec(f"{PACKAGES[s]}.server") is not None]


class LocalStack:
    def __init__(self, models: list[str] | None = None, token: str | None = None,
                 home: Path | None = None, services: list[str] | None = None,
                 extra_args: dict[str, list[str]] | None = None):
        self.home = Path(home or os.environ.get("XAIMESH_HOME")
                         or platformdirs.user_cache_dir("xaimesh")) / "local-stack"
        self.models = models or []
        self.token = token
        self.services = services or installed_services()
        self.extra_args = extra_args or {}
        self.processes: dict[str, subprocess.Popen] = {}
        self.addresses: dict[str, str] = {}
        self.log_paths: dict[str, Path] = {}

    def _command(self, service: str, port: int) -> list[str]:
        command = [sys.executable, "-m", "xaimesh_runtime.cli", "serve", service,
                   "--host", "127.0.0.1", "--port", str(port), "--metrics-port", "-1"]
        if service == "model":
            for model in self.models:
                command += ["--model", model]
        else:
            command += ["--model-server-address", self.addresses["model"]]
        if service == "concept":
            command += ["--data-dir", str(self.home / "concept-data")]
        if service == "labeling":
            command += ["--concept-service-address", self.addresses["concept"]]
        return command + self.extra_args.get(service, [])

    def start(self, wait_seconds: float = 600.0) -> dict[str, str]:
        """Starts the services on free loopback ports and waits until they are
        healthy; returns their addresses. A port taken by another process
        between choosing it and binding it is retried once on new ports."""
        try:
            return self._start_once(wait_seconds)
        except UnavailableError as error:
            if "cannot bind" not in str(error):
                raise
        return self._start_once(wait_seconds)

    def _start_once(self, wait_seconds: float) -> dict[str, str]:
        if "model" not in self.services:
            raise UnavailableError(None, "", "cannot start a local stack: the model-server is not "
                                   "installed (pip install 'xaimesh[all]')")
        self.home.mkdir(parents=True, exist_ok=True)
        self.addresses = {s: f"127.0.0.1:{free_port()}" for s in self.services}
        env = dict(os.environ)
        if self.token:
            env["XAIMESH_AUTH_TOKEN"] = self.token
        for service in self.services:
            port = int(self.addresses[service].rsplit(":", 1)[1])
            log_path = self.home / f"{service}.log"
            self.log_paths[service] = log_path
            with open(log_path, "wb") as log:
                self.processes[service] = subprocess.Popen(
                    self._command(service, port), stdout=log, stderr=subprocess.STDOUT, env=env,
                    stdin=subprocess.DEVNULL, start_new_session=True)
        atexit.unregister(self.stop)  # once, however often the stack restarts
        atexit.register(self.stop)
        try:
            self._wait_healthy(wait_seconds)
        except BaseException:
            self.stop()
            raise
        return dict(self.addresses)

    def restart_with_model(self, spec: str, wait_seconds: float = 600.0) -> dict[str, str]:
        """Restarts every service with one more model-server model (`spec`:
        SPEC[,key=value...] as --model takes it) and returns the new addresses.
        All of them restart, on new ports, so that none keeps a channel to the
        old model-server; the concept-service's sets stay in its data dir."""
        if not self.models:  # the embedded default stays the default model
            self.models = ["default"]
        self.models.append(spec)
        self.stop()
        try:
            return self.start(wait_seconds=wait_seconds)
        except UnavailableError:
            # the model could not be served (the log tail says why): back to the previous models
            self.models.pop()
            self.start(wait_seconds=wait_seconds)
            raise

    def _wait_healthy(self, wait_seconds: float) -> None:
        from xaimesh_contracts.channels import wait_for_health

        deadline = time.monotonic() + wait_seconds
        for service in self.services:
            while True:
                process = self.processes[service]
                if process.poll() is not None:
                    raise UnavailableError(None, "", f"local {service} service exited with code "
                                           f"{process.returncode}:\n{self.log_tail(service)}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise UnavailableError(None, "", f"local {service} service not healthy after "
                                           f"{wait_seconds:.0f} s:\n{self.log_tail(service)}")
                try:
                    wait_for_health(self.addresses[service], timeout=min(2.0, remaining), token=self.token)
                    break
                except Exception:
                    continue

    def log_tail(self, service: str, lines: int = 20) -> str:
        path = self.log_paths.get(service)
        if path is None or not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self, service: str) -> None:
        """SIGKILLs one service (fault-injection in tests)."""
        process = self.processes[service]
        process.send_signal(signal.SIGKILL)
        process.wait()

    def stop(self, grace: float = 10.0) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()


