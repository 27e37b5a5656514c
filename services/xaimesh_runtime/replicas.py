"""Several replicas of one downstream service behind one name.

    pool = ReplicaPool(config.downstream("model-server"))       # "a:50051,b:50051" or "dns:///model-server:50051"
    stub = pool.stub(model_pb2_grpc.ModelServiceStub, "model-server")
    stub.Score(request, timeout=30)                              # a replica chosen round-robin
    future = stub.Score.future(request, timeout=30); future.cancel()
    for event in stub.StreamActivations(request): ...

The address of a downstream is a comma-separated list of targets. Each
target is one replica (``host:port``, resolved by gRPC itself as before), or
``dns:///name:port``, which this pool resolves to every address the name has
(a Kubernetes headless Service gives one per ready pod) and re-resolves every
``resolve_interval_s`` seconds, so replicas that come and go are followed.

Each call goes to the next replica in round-robin order that has fewer than
``max_in_flight`` calls of this process in flight (0 = no limit); when every
replica is at its limit the call waits for a free slot (within its timeout).
A call that fails with UNAVAILABLE — the replica was stopped, killed, or
cannot be reached — is sent again to another replica, each replica at most
once per call, and that replica is left out of the rotation for a while
(1 s, doubling up to 30 s while it keeps failing). Only UNAVAILABLE is
retried: any other status is the replica's answer. A server stream is retried
only while it has delivered nothing; once messages came, its failure is the
caller's to handle. Every ModelService call is a read (scores, gradients,
tokens, activations of a fixed model), so sending it twice is safe; a
pool must only carry such calls.

Failures are ``DownstreamError``s naming the replica that failed (the
runtime's :func:`~xaimesh_runtime.errors.downstream_error`).
"""

from __future__ import annotations

import functools
import itertools
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc

from . import metrics
from .client import connect, wait_for_health
from .config import Downstream
from .errors import DownstreamError, downstream_error

__all__ = ["DNS_SCHEME", "Replica", "ReplicaPool", "expand_targets"]

log = logging.getLogger(__name__)

DNS_SCHEME = "dns:"
_WAIT_SLICE_S = 0.05  # how often a call waiting for a free slot looks at its cancellation
_BACKOFF_FIRST_S = 1.0
_BACKOFF_MAX_S = 30.0

DOWNSTREAM_IN_FLIGHT = metrics.gauge("xaimesh_downstream_in_flight",
                                     "Calls in flight to one replica of a downstream service",
                                     ["service", "replica"])
DOWNSTREAM_RETRIES = metrics.counter("xaimesh_downstream_retries_total",
                                     "Calls sent again to another replica after UNAVAILABLE", ["service"])


def _split_host_port(target: str) -> tuple[str, str]:
    if target.startswith("["):  # [v6]:port
        host, _, port = target[1:].partition("]:")
        return host, port
    host, _, port = target.rpartition(":")
    return host, port


def _join_host_port(host: str, port: str) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _resolve(name_and_port: str) -> list[str]:
    host, port = _split_host_port(name_and_port)
    if not host or not port:
        raise ValueError(f"{DNS_SCHEME}///{name_and_port}: expected dns:///name:port")
    infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    return sorted({_join_host_port(str(info[4][0]), port) for info in infos})


def expand_targets(address: str, resolve: Callable[[str], list[str]] = _resolve) -> list[tuple[str, str]]:
    """The replicas an address names, as ``(address, server_name)`` pairs:
    ``server_name`` is the DNS name a replica found by resolving has to show
    in its TLS certificate ("" for a target given as it is). Raises
    ``ValueError`` for an empty address, ``OSError`` when a name does not
    resolve."""
    out: list[tuple[str, str]] = []
    for target in (t.strip() for t in address.split(",")):
        if not target:
            continue
        if target.startswith(DNS_SCHEME):
            name_and_port = target[len(DNS_SCHEME):].lstrip("/")
            host, _ = _split_host_port(name_and_port)
            out += [(a, host) for a in resolve(name_and_port)]
        else:
            out.append((target, ""))
    if not out:
        raise ValueError(f"no replica in address {address!r}")
    return list(dict.fromkeys(out))


@dataclass(eq=False)
class Replica:
    """One replica: its channel and what this process has sent it."""

    address: str
    channel: grpc.Channel
    in_flight: int = 0
    calls: int = 0  # calls started on it (tests and logs)
    failures: int = 0  # consecutive UNAVAILABLEs
    down_until: float = 0.0  # monotonic time before which it is left out of the rotation
    stubs: dict[type, Any] = field(default_factory=dict)


class ReplicaPool:
    """Client-side round-robin over the replicas of ``downstream`` (see the
    module docstring). ``max_in_flight``: calls per replica at once from this
    process (0 = no limit); ``resolve_interval_s``: how often ``dns:///``
    names are resolved again; ``channel_kwargs`` go to ``connect``."""

    def __init__(self, downstream: Downstream, *, service: str = "", max_in_flight: int = 0,
                 resolve_interval_s: float = 30.0, resolve: Callable[[str], list[str]] = _resolve,
                 **channel_kwargs: Any) -> None:
        if max_in_flight < 0:
            raise ValueError(f"max_in_flight must be 0 (no limit) or more; got {max_in_flight}")
        self.downstream = downstream
        self.service = service or "downstream service"
        self.max_in_flight = int(max_in_flight)
        self.resolve_interval_s = float(resolve_interval_s)
        self._resolve_fn = resolve
        self._channel_kwargs = channel_kwargs
        self._dynamic = any(t.strip().startswith(DNS_SCHEME) for t in downstream.address.split(","))
        self._cond = threading.Condition()
        self._replicas: list[Replica] = []
        self._retired: list[Replica] = []  # dropped by a new resolution, closed once idle
        self._next = itertools.count()
        self._resolved_at = -float("inf")
        self._closed = False
        self._refresh(force=True, strict=True)

    @property
    def address(self) -> str:
        return self.downstream.address

    @property
    def replicas(self) -> list[Replica]:
        with self._cond:
            return list(self._replicas)

    # ------------------------------------------------------------ membership

    def _refresh(self, *, force: bool = False, strict: bool = False) -> None:
        """Resolve ``dns:///`` names again when due. A failed resolution keeps
        the replicas known so far (``strict``: raise instead, at start)."""
        now = time.monotonic()
        # With no replica known yet, try again soon rather than after the full interval.
        interval = self.resolve_interval_s if self._replicas else min(self.resolve_interval_s, 1.0)
        if not force and (not self._dynamic or now - self._resolved_at < interval):
            return
        self._resolved_at = now
        try:
            targets = expand_targets(self.downstream.address, self._resolve_fn)
        except (OSError, ValueError) as exc:
            if strict and not self._dynamic:
                raise
            log.warning("%s: resolving %s failed (%s); keeping %d known replicas", self.service,
                        self.downstream.address, exc, len(self._replicas))
            return
        with self._cond:
            known = {r.address: r for r in self._replicas}
            wanted = [a for a, _ in targets]
            if wanted == [r.address for r in self._replicas]:
                return
            replicas = []
            for target, server_name in targets:
                replica = known.pop(target, None)
                if replica is None:
                    extra = {"server_name": server_name} if server_name and self._uses_tls() else {}
                    replica = Replica(target, connect(Downstream(target, self.downstream.token,
                                                                 self.downstream.tls_ca, self.downstream.tls_cert,
                                                                 self.downstream.tls_key),
                                                      **extra, **self._channel_kwargs))
                replicas.append(replica)
            self._retired += known.values()
            self._replicas = replicas
            self._close_idle_retired()
            self._cond.notify_all()
        if self._dynamic:
            log.info("%s: %d replicas behind %s: %s", self.service, len(replicas), self.downstream.address,
                     ", ".join(wanted))

    def _uses_tls(self) -> bool:
        return self.downstream.tls_ca is not None or self.downstream.tls_cert is not None

    def _close_idle_retired(self) -> None:
        idle = [r for r in self._retired if r.in_flight == 0]
        self._retired = [r for r in self._retired if r.in_flight > 0]
        for replica in idle:
            replica.channel.close()

    # ------------------------------------------------------------ slots

    def _acquire(self, tried: set[str], deadline: float | None, cancelled: Callable[[], bool]) -> Replica | None:
        """The next replica not in ``tried`` with a free slot (its in-flight
        count taken); waits while all are full. None when every replica was
        tried, the deadline passed or the call was cancelled."""
        self._refresh()
        with self._cond:
            while True:
                if self._closed or cancelled():
                    return None
                candidates = [r for r in self._replicas if r.address not in tried]
                if not candidates:
                    return None
                now = time.monotonic()
                # Replicas that failed lately only when there is no other.
                healthy = [r for r in candidates if r.down_until <= now] or \
                    sorted(candidates, key=lambda r: r.down_until)[:1]
                start = next(self._next)
                for i in range(len(healthy)):
                    replica = healthy[(start + i) % len(healthy)]
                    if self.max_in_flight == 0 or replica.in_flight < self.max_in_flight:
                        replica.in_flight += 1
                        replica.calls += 1
                        DOWNSTREAM_IN_FLIGHT.labels(self.service, replica.address).inc()
                        return replica
                wait = _WAIT_SLICE_S if deadline is None else min(_WAIT_SLICE_S, deadline - now)
                if wait <= 0:
                    return None
                self._cond.wait(wait)

    def _release(self, replica: Replica, unavailable: bool) -> None:
        with self._cond:
            replica.in_flight -= 1
            DOWNSTREAM_IN_FLIGHT.labels(self.service, replica.address).dec()
            if unavailable:
                replica.failures += 1
                backoff = min(_BACKOFF_FIRST_S * 2 ** (replica.failures - 1), _BACKOFF_MAX_S)
                replica.down_until = time.monotonic() + backoff
            else:
                replica.failures, replica.down_until = 0, 0.0
            if replica in self._retired:
                self._close_idle_retired()
            self._cond.notify_all()

    # ------------------------------------------------------------ calls

    def stub(self, stub_class: type, service: str = "") -> "ReplicatedStub":
        """A stub of ``stub_class`` whose calls are spread over the replicas."""
        return ReplicatedStub(self, stub_class, service or self.service)

    def _stub_of(self, replica: Replica, stub_class: type) -> Any:
        with self._cond:
            stub = replica.stubs.get(stub_class)
            if stub is None:
                stub = replica.stubs[stub_class] = stub_class(replica.channel)
            return stub

    def wait_for_health(self, timeout: float) -> str:
        """Wait until one replica's health says SERVING; returns its address.
        Raises ``TimeoutError`` saying what each replica answered last."""
        deadline = time.monotonic() + timeout
        last: dict[str, str] = {}
        while True:
            self._refresh()
            for replica in self.replicas:
                try:
                    wait_for_health(replica.channel, timeout=0.2)
                    return replica.address
                except TimeoutError as exc:
                    last[replica.address] = str(exc)
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no replica of {self.address} is SERVING after {timeout:g} s: "
                                   + ("; ".join(f"{a}: {m}" for a, m in last.items()) or "the name resolves to none"))
            if not last:  # nothing resolved yet: wait for the next resolution instead of spinning
                time.sleep(min(0.1, max(deadline - time.monotonic(), 0.0)))

    def close(self) -> None:
        with self._cond:
            self._closed = True
            replicas, self._replicas = self._replicas + self._retired, []
            self._retired = []
            self._cond.notify_all()
        for replica in replicas:
            replica.channel.close()


class _KindProbe:
    """Stands in for a channel to learn the kind of each method of a stub
    class (its constructor asks the channel for ``unary_unary``,
    ``unary_stream``, ... per method)."""

    def __getattr__(self, kind: str) -> Callable[..., str]:
        return lambda *args, **kwargs: kind


@functools.lru_cache(maxsize=None)
def _kinds(stub_class: type) -> dict[str, str]:
    return {name: kind for name, kind in vars(stub_class(_KindProbe())).items() if isinstance(kind, str)}


class ReplicatedStub:
    """``stub.Method(request, timeout=...)``, ``stub.Method.future(...)`` and
    server streams, each call on one replica of the pool, retried on another
    when that replica is UNAVAILABLE."""

    def __init__(self, pool: ReplicaPool, stub_class: type, service: str) -> None:
        self._pool, self._stub_class, self._service = pool, stub_class, service

    def __getattr__(self, method: str) -> "_ReplicatedMethod":
        return _ReplicatedMethod(self._pool, self._stub_class, self._service, method)


class _ReplicatedMethod:
    def __init__(self, pool: ReplicaPool, stub_class: type, service: str, method: str) -> None:
        self.pool, self.stub_class, self.service, self.method = pool, stub_class, service, method

    def multicallable(self, replica: Replica) -> Any:
        return getattr(self.pool._stub_of(replica, self.stub_class), self.method)

    def future(self, request: Any, timeout: float | None = None, **kwargs: Any) -> "_ReplicatedFuture":
        return _ReplicatedFuture(self, request, timeout, kwargs)

    def __call__(self, request: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        if _kinds(self.stub_class).get(self.method) == "unary_stream":
            return _ReplicatedStream(self, request, timeout, kwargs)
        return self.future(request, timeout, **kwargs).result()


class _Attempts:
    """The replicas one call has tried, and what to raise when none is left."""

    def __init__(self, method: _ReplicatedMethod, timeout: float | None) -> None:
        self.method = method
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.tried: set[str] = set()
        self.last_error: grpc.RpcError | None = None
        self.last_address = ""

    def timeout_left(self) -> float | None:
        return None if self.deadline is None else max(self.deadline - time.monotonic(), 0.0)

    def next_replica(self, cancelled: Callable[[], bool]) -> Replica:
        replica = self.method.pool._acquire(self.tried, self.deadline, cancelled)
        if replica is not None:
            self.tried.add(replica.address)
            if len(self.tried) > 1:
                DOWNSTREAM_RETRIES.labels(self.method.service).inc()
            return replica
        if cancelled():
            raise grpc.FutureCancelledError()
        if self.last_error is not None:
            raise downstream_error(self.last_error, self.method.service, self.last_address,
                                   self.method.method) from None
        if not self.method.pool.replicas:
            raise DownstreamError(grpc.StatusCode.UNAVAILABLE,
                                  f"{self.method.pool.address} names no reachable replica of the "
                                  f"{self.method.service} (does the name resolve?)")
        raise DownstreamError(grpc.StatusCode.DEADLINE_EXCEEDED,
                              f"the deadline passed while every replica of the {self.method.service} at "
                              f"{self.method.pool.address} was at its in-flight limit ({self.method.method})")

    def failed(self, replica: Replica, error: grpc.RpcError) -> bool:
        """Record ``error`` on ``replica``; True when another replica should be tried."""
        unavailable = error.code() == grpc.StatusCode.UNAVAILABLE
        self.method.pool._release(replica, unavailable)
        self.last_error, self.last_address = error, replica.address
        if unavailable:
            log.warning("%s at %s is unavailable during %s (%s); trying another replica", self.method.service,
                        replica.address, self.method.method, error.details())
        return unavailable


class _ReplicatedCall:
    """One call's attempts; ``cancel()`` stops them (and the attempt in
    flight) from any thread."""

    def __init__(self, method: _ReplicatedMethod, request: Any, timeout: float | None, kwargs: dict) -> None:
        self._method, self._request, self._kwargs = method, request, kwargs
        self._attempts = _Attempts(method, timeout)
        self._lock = threading.Lock()
        self._call: Any = None  # the attempt in flight
        self._cancelled = False

    def cancel(self) -> bool:
        with self._lock:
            self._cancelled = True
            call = self._call
        if call is not None:
            call.cancel()
        return True


class _ReplicatedFuture(_ReplicatedCall):
    """The ``.future()`` of a unary call: ``result()`` runs the attempts."""

    def cancelled(self) -> bool:
        return self._cancelled

    def result(self, timeout: float | None = None) -> Any:
        while True:
            replica = self._attempts.next_replica(lambda: self._cancelled)
            with self._lock:
                if self._cancelled:
                    self._method.pool._release(replica, False)
                    raise grpc.FutureCancelledError()
                self._call = self._method.multicallable(replica).future(
                    self._request, timeout=self._attempts.timeout_left(), **self._kwargs)
            try:
                reply = self._call.result()
            except grpc.RpcError as error:
                if self._cancelled:  # the caller's own cancellation, as the plain future raises it
                    self._method.pool._release(replica, False)
                    raise
                if self._attempts.failed(replica, error):
                    continue
                raise downstream_error(error, self._method.service, replica.address, self._method.method) from None
            except grpc.FutureCancelledError:
                self._method.pool._release(replica, False)
                raise
            self._method.pool._release(replica, False)
            return reply


class _ReplicatedStream(_ReplicatedCall):
    """A server stream on one replica; sent to another replica if it fails
    UNAVAILABLE before its first message."""

    def __init__(self, method: _ReplicatedMethod, request: Any, timeout: float | None, kwargs: dict) -> None:
        super().__init__(method, request, timeout, kwargs)
        self._messages = self._run()

    def __iter__(self) -> "_ReplicatedStream":
        return self

    def __next__(self) -> Any:
        return next(self._messages)

    def _run(self) -> Iterator[Any]:
        while True:
            try:
                replica = self._attempts.next_replica(lambda: self._cancelled)
            except grpc.FutureCancelledError:
                return
            with self._lock:
                self._call = self._method.multicallable(replica)(
                    self._request, timeout=self._attempts.timeout_left(), **self._kwargs)
            delivered = False
            try:
                for message in self._call:
                    delivered = True
                    yield message
            except grpc.RpcError as error:
                if delivered or self._cancelled:  # not to be sent again: the caller has part of it
                    self._method.pool._release(replica, error.code() == grpc.StatusCode.UNAVAILABLE
                                               and not self._cancelled)
                elif self._attempts.failed(replica, error):
                    continue
                raise downstream_error(error, self._method.service, replica.address, self._method.method) from None
            except GeneratorExit:
                self._call.cancel()
                self._method.pool._release(replica, False)
                raise
            self._method.pool._release(replica, False)
            return
