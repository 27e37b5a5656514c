"""Run a gRPC server the xaimesh way.

:func:`serve` is what a service's ``__main__`` calls; :func:`start_server` is
the same without the blocking and the signal handling (tests, embedding)::

    def register(server: grpc.Server) -> list[str]:
        model_pb2_grpc.add_ModelServiceServicer_to_server(servicer, server)
        return ["xaimesh.v1.ModelService"]

    sys.exit(serve(config, register, warmup=servicer.load_models))

What every server gets:

* a thread-pool ``grpc.server`` with the configured message limits,
  keepalive, ``so_reuseport`` off and optional ``max_connection_age``;
* bearer-token auth (if ``auth_token``) and Prometheus call metrics as
  interceptors; ``/metrics`` over HTTP on ``metrics_port``;
* ``grpc.health.v1``: the overall ``""`` and every registered service are
  NOT_SERVING until ``warmup`` returns (it runs in a background thread once
  the port is bound, so health answers while models load), then SERVING;
* server reflection for the registered services and health;
* TLS, or mutual TLS when ``tls_client_ca`` is set;
* ``ready_file``: ``{"port", "metrics_port", "pid"}`` written atomically
  once SERVING (for parents that started us with ``--port 0``);
* SIGTERM / SIGINT: health NOT_SERVING, ``stop(grace)``, exit status 0; a
  second signal cancels the remaining calls at once. A warm-up that
  raises stops the server with exit status 1.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from .config import ServerConfig
from .interceptors import AuthInterceptor, MetricsInterceptor
from .logging_setup import configure_logging, register_secret
from .metrics import start_metrics_server

__all__ = ["Register", "ServerHandle", "Warmup", "serve", "start_server", "write_ready_file"]

log = logging.getLogger("xaimesh_runtime.server")

Register = Callable[[grpc.Server], Sequence[str]]
Warmup = Callable[[], Any] | threading.Event | None

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def write_ready_file(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON to ``path`` atomically (temp file in the same folder,
    fsync, rename): a reader sees nothing or the whole file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _server_options(config: ServerConfig) -> list[tuple[str, Any]]:
    size = config.max_message_bytes
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", size),
        ("grpc.max_send_message_length", size),
        # Fail loudly if the port is taken instead of sharing it.
        ("grpc.so_reuseport", 0),
        # Ping idle connections so dead peers (and idle-killing proxies) are
        # noticed; accept client pings every 10 s even without calls.
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_ping_strikes", 0),
    ]
    if config.max_connection_age_s > 0:
        age_ms = int(config.max_connection_age_s * 1000)
        options += [("grpc.max_connection_age_ms", age_ms), ("grpc.max_connection_age_grace_ms", age_ms)]
    return options


def _server_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    if not config.tls_enabled:
        return None
    key = config.tls_key.read_bytes()  # type: ignore[union-attr]
    cert = config.tls_cert.read_bytes()  # type: ignore[union-attr]
    client_ca = config.tls_client_ca.read_bytes() if config.tls_client_ca else None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=client_ca,
                                       require_client_auth=client_ca is not None)


class ServerHandle:
    """A started server. ``port`` / ``metrics_port`` are the bound ports.

    ``wait_ready()`` blocks until SERVING; ``stop()`` shuts down gracefully
    (idempotent); ``wait()`` blocks until stopped. Usable as a context
    manager that stops on exit.
    """

    def __init__(self, config: ServerConfig, name: str, server: grpc.Server,
                 health_servicer: health.HealthServicer, service_names: list[str], port: int) -> None:
        self.config = config
        self.name = name
        self.server = server
        self.health = health_servicer
        self.service_names = service_names
        self.port = port
        self.metrics_port: int | None = None
        self.ready = threading.Event()
        self.warmup_error: BaseException | None = None
        self.exit_code = 0
        self._metrics_httpd: Any = None
        self._stop_requests = 0
        self._stop_requested = threading.Event()  # by a signal or a failed warm-up
        self._stopping = threading.Event()  # stop() has begun
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()

    @property
    def address(self) -> str:
        """Where a local client connects (wildcard hosts become loopback)."""
        host = self.config.host
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}.get(host, host)
        return _host_port(host, self.port)

    def set_serving(self, serving: bool, service: str | None = None) -> None:
        """Mark one registered service (or, with ``None``, all of them and the
        overall status) SERVING or NOT_SERVING, e.g. during a reload."""
        status = SERVING if serving else NOT_SERVING
        for name in ([service] if service is not None else ["", *self.service_names]):
            self.health.set(name, status)

    def wait_ready(self, timeout: float | None = None) -> bool:
        """True once SERVING; False on timeout or if the warm-up failed."""
        end = None if timeout is None else time.monotonic() + timeout
        while not self.ready.is_set():
            if self.warmup_error is not None or self._stopping.is_set():
                return False
            remaining = None if end is None else end - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            self.ready.wait(0.05 if remaining is None else min(0.05, remaining))
        return True

    def request_stop(self, exit_code: int = 0) -> None:
        """Ask :meth:`run_until_stopped` to shut down (signal-handler safe)."""
        if self._stop_requests == 0:
            self.exit_code = exit_code
        self._stop_requests += 1
        self._stop_requested.set()

    def stop(self, grace: float | None = None) -> None:
        """Graceful stop: health NOT_SERVING, no new calls, open calls get
        ``grace`` seconds (default ``config.grace_seconds``) to finish."""
        with self._stop_lock:
            if self._stopped.is_set():
                return
            grace = self.config.grace_seconds if grace is None else grace
            log.info("%s stopping (grace %.1f s)", self.name, grace)
            self._stopping.set()
            self.health.enter_graceful_shutdown()
            self.server.stop(grace).wait()
            if self._metrics_httpd is not None:
                self._metrics_httpd.shutdown()
                self._metrics_httpd.server_close()
            if self.config.ready_file is not None:
                self.config.ready_file.unlink(missing_ok=True)
            self._stopped.set()
            log.info("%s stopped", self.name)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until stopped; True if it is."""
        return self._stopped.wait(timeout)

    def run_until_stopped(self) -> int:
        """Block until :meth:`request_stop` (a signal, a failed warm-up), then
        stop. A second request while stopping cancels open calls at once.
        Returns the exit code."""
        while not self._stop_requested.wait(0.5):
            pass
        stopper = threading.Thread(target=self.stop, name=f"{self.name}-stop", daemon=True)
        stopper.start()
        forced = False
        while stopper.is_alive():
            stopper.join(0.1)
            if self._stop_requests > 1 and not forced:
                log.warning("%s: second stop request, cancelling open calls", self.name)
                self.server.stop(0)
                forced = True
        return self.exit_code

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop(grace=0)

    # -- internals ------------------------------------------------------
    def _warm_up(self, warmup: Warmup) -> None:
        try:
            if isinstance(warmup, threading.Event):
                while not warmup.wait(0.2):
                    if self._stopping.is_set():
                        return
            elif warmup is not None:
                warmup()
        except BaseException as exc:  # noqa: BLE001 - reported, then we stop
            log.critical("%s warm-up failed; stopping", self.name, exc_info=exc)
            self.request_stop(exit_code=1)
            self.warmup_error = exc  # last: wait_ready() returns as soon as it is set
            return
        with self._stop_lock:  # never mark a stopping server ready
            if self._stopping.is_set() or self._stop_requested.is_set():
                return
            self.set_serving(True)
            if self.config.ready_file is not None:
                write_ready_file(self.config.ready_file,
                                 {"port": self.port, "metrics_port": self.metrics_port, "pid": os.getpid()})
            self.ready.set()
        log.info("%s serving on %s", self.name, _host_port(self.config.host, self.port))


def start_server(config: ServerConfig, register: Register, *, warmup: Warmup = None,
                 name: str | None = None) -> ServerHandle:
    """Build, bind and start a server; return at once (warm-up runs in the
    background). ``register(server)`` adds the servicers and returns their
    full service names (e.g. ``["xaimesh.v1.ModelService"]``)."""
    config.validate()
    name = name or config.service
    if config.ready_file is not None:
        config.ready_file.unlink(missing_ok=True)  # never leave a stale one behind
    interceptors: list[grpc.ServerInterceptor] = [MetricsInterceptor()]
    if config.auth_token:
        register_secret(config.auth_token)
        interceptors.append(AuthInterceptor(config.auth_token))
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix=f"{name}-grpc"),
        interceptors=interceptors,
        options=_server_options(config),
    )
    service_names = list(register(server))
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    for service in ["", *service_names]:
        health_servicer.set(service, NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection([*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)

    address = _host_port(config.host, config.port)
    credentials = _server_credentials(config)
    try:
        port = (server.add_secure_port(address, credentials) if credentials
                else server.add_insecure_port(address))
    except RuntimeError as exc:
        raise OSError(f"{name}: cannot bind {address}: {exc}") from None
    if port == 0:
        raise OSError(f"{name}: cannot bind {address} (in use?)")

    handle = ServerHandle(config, name, server, health_servicer, service_names, port)
    if config.metrics_port >= 0:
        try:
            handle._metrics_httpd, handle.metrics_port = start_metrics_server(config.metrics_port, config.host)
        except OSError as exc:
            server.stop(0)
            raise OSError(f"{name}: cannot serve metrics on {_host_port(config.host, config.metrics_port)}: "
                          f"{exc.strerror or exc}") from None
    server.start()
    log.info("%s listening on %s (tls=%s, mtls=%s, auth=%s, metrics port=%s, workers=%d)",
             name, _host_port(config.host, port), config.tls_enabled, config.tls_client_ca is not None,
             bool(config.auth_token), handle.metrics_port if handle.metrics_port is not None else "off",
             config.workers)
    threading.Thread(target=handle._warm_up, args=(warmup,), name=f"{name}-warmup", daemon=True).start()
    return handle


def serve(config: ServerConfig, register: Register, *, warmup: Warmup = None, name: str | None = None,
          configure_logs: bool = True) -> int:
    """Run a server until SIGTERM / SIGINT; return the process exit code
    (0 after a graceful stop, 1 if the warm-up failed).

    Sets up logging from the config (JSON or text, secrets redacted) unless
    ``configure_logs=False``. Call from the main thread.
    """
    name = name or config.service
    if configure_logs:
        configure_logging(config.log_level, config.log_format, service=name, secrets=config.secrets())
    else:
        for secret in config.secrets():
            register_secret(secret)
    log.info("%s config: %s", name, json.dumps(config.describe(), default=str))
    handle = start_server(config, register, warmup=warmup, name=name)

    previous: dict[int, Any] = {}

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("%s received %s", name, signal.Signals(signum).name)
        handle.request_stop(0)

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        return handle.run_until_stopped()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
