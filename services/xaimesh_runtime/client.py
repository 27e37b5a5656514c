"""Client helpers for server-to-server calls and the SDK.

    channel = make_channel("127.0.0.1:50051", token=token)          # plaintext + token
    channel = make_channel("model:50051", token=token, tls_ca="ca.pem")
    channel = connect(config.downstream("model-server"))
    stub.Score(request, timeout=remaining_timeout(context, default=60))
    wait_for_health("127.0.0.1:50051", timeout=30)
    stub = downstream_stub(ModelServiceStub(channel), "model-server", address)  # errors name it

gRPC refuses call credentials on insecure channels, so over plaintext the
bearer token is added by a client interceptor instead; over TLS it travels
as ``access_token_call_credentials``. Either way the server sees
``authorization: Bearer <token>``.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .config import Downstream
from .errors import downstream_error

__all__ = ["BearerTokenInterceptor", "connect", "downstream_stub", "make_channel", "remaining_timeout",
           "wait_for_health"]

# A server-side deadline further away than this means "no deadline".
_NO_DEADLINE = 1e8


class _CallDetails(collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")),
        grpc.ClientCallDetails):
    pass


class BearerTokenInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                             grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds ``authorization: Bearer <token>`` to every call of a channel."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def __repr__(self) -> str:
        return "BearerTokenInterceptor(token=***)"

    def _details(self, d: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = [m for m in (d.metadata or ()) if m[0] != "authorization"] + [self._header]
        return _CallDetails(d.method, d.timeout, metadata, d.credentials,
                            getattr(d, "wait_for_ready", None), getattr(d, "compression", None))

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return continuation(self._details(details), request_iterator)


def _read(value: str | Path | bytes | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return Path(value).read_bytes()


def make_channel(address: str, *, token: str | None = None, tls: bool = False,
                 tls_ca: str | Path | bytes | None = None, tls_cert: str | Path | bytes | None = None,
                 tls_key: str | Path | bytes | None = None, server_name: str | None = None,
                 max_message_mb: int = 64, options: Sequence[tuple[str, Any]] = ()) -> grpc.Channel:
    """A channel to ``address`` ("host:port", or any gRPC target such as
    ``dns:///model:50051``).

    TLS is used when ``tls`` is true or a CA is given (``tls_ca``: PEM path or
    bytes; none = system roots); ``tls_cert`` / ``tls_key`` add a client
    certificate (mTLS); ``server_name`` overrides the name checked in the
    server certificate. ``token`` sends a bearer token on every call.
    """
    size = max_message_mb * 1024 * 1024
    channel_options = [
        ("grpc.max_receive_message_length", size),
        ("grpc.max_send_message_length", size),
        # Keep long server streams alive through idle-killing proxies.
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
    ]
    if server_name:
        channel_options.append(("grpc.ssl_target_name_override", server_name))
    channel_options += list(options)
    if tls or tls_ca is not None or tls_cert is not None:
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("tls_cert and tls_key must be given together")
        credentials = grpc.ssl_channel_credentials(root_certificates=_read(tls_ca),
                                                   private_key=_read(tls_key),
                                                   certificate_chain=_read(tls_cert))
        if token:
            credentials = grpc.composite_channel_credentials(credentials,
                                                             grpc.access_token_call_credentials(token))
        return grpc.secure_channel(address, credentials, options=channel_options)
    channel = grpc.insecure_channel(address, options=channel_options)
    if token:
        channel = grpc.intercept_channel(channel, BearerTokenInterceptor(token))
    return channel


def connect(downstream: Downstream, **kwargs: Any) -> grpc.Channel:
    """A channel to a service declared with ``parser.add_downstream``
    (TLS when it has a CA or a client certificate)."""
    return make_channel(downstream.address, token=downstream.token, tls_ca=downstream.tls_ca,
                        tls_cert=downstream.tls_cert, tls_key=downstream.tls_key, **kwargs)


def remaining_timeout(context: grpc.ServicerContext | None, default: float | None = None, *,
                      margin: float = 0.0) -> float | None:
    """The caller's time left, to pass as ``timeout=`` of a downstream call
    (less ``margin`` seconds to answer in time). ``default`` when the caller
    set no deadline (``None`` = no deadline downstream either)."""
    if context is None:
        return default
    remaining = context.time_remaining()
    if remaining is None or remaining > _NO_DEADLINE:
        return default
    return max(remaining - margin, 0.0)


def wait_for_health(address: str | grpc.Channel, timeout: float = 30.0, *, service: str = "",
                    interval: float = 0.1, **channel_kwargs: Any) -> None:
    """Poll ``grpc.health.v1`` until ``service`` ("" = the whole server) is
    SERVING; raise ``TimeoutError`` saying what was last seen. ``address``
    may be an open channel; otherwise ``channel_kwargs`` go to
    :func:`make_channel` (health needs no token)."""
    own = not isinstance(address, grpc.Channel)
    channel = make_channel(address, **channel_kwargs) if own else address
    stub = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + timeout
    last = "no answer"
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{address if own else 'channel'}: service {service!r} not SERVING "
                                   f"after {timeout:g} s (last: {last})")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=min(max(left, 0.05), 2.0))
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.RpcError as exc:
                last = f"{exc.code().name}: {exc.details()}"
            time.sleep(min(interval, max(deadline - time.monotonic(), 0)))
    finally:
        if own:
            channel.close()


class _NamedStream:
    """A server-streaming call whose errors are ``DownstreamError``; the rest
    (``cancel``, ``code``, ...) is the call's own."""

    def __init__(self, call: Any, service: str, address: str, method: str) -> None:
        self._call, self._service, self._address, self._method = call, service, address, method

    def __iter__(self) -> "_NamedStream":
        return self

    def __next__(self) -> Any:
        try:
            return next(self._call)
        except grpc.RpcError as exc:
            raise downstream_error(exc, self._service, self._address, self._method) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)


class _NamedMethod:
    def __init__(self, callable_: Any, service: str, address: str, method: str) -> None:
        self._callable, self._service, self._address, self._method = callable_, service, address, method

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            reply = self._callable(*args, **kwargs)
        except grpc.RpcError as exc:
            raise downstream_error(exc, self._service, self._address, self._method) from None
        if isinstance(reply, grpc.Call) and hasattr(reply, "__next__"):
            return _NamedStream(reply, self._service, self._address, self._method)
        return reply

    def __getattr__(self, name: str) -> Any:  # .future, .with_call: the plain call
        return getattr(self._callable, name)


class downstream_stub:  # noqa: N801 - used like a function
    """Wrap a generated stub so that a failed call raises
    :class:`~xaimesh_runtime.errors.DownstreamError` naming ``service`` and
    ``address`` ("the model-server at 10.0.0.7:50051 is unavailable ..."),
    which ``map_errors`` reports with the downstream's code."""

    def __init__(self, stub: Any, service: str, address: str = "") -> None:
        self._stub, self._service, self._address = stub, service, address

    def __getattr__(self, method: str) -> _NamedMethod:
        return _NamedMethod(getattr(self._stub, method), self._service, self._address, method)
