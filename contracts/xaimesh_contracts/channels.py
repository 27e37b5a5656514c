"""Channels to xaimesh services, for the SDK and for services calling each other.

    channel = make_channel("127.0.0.1:50051", token=token)          # plaintext + token
    channel = make_channel("model:50051", token=token, tls_ca="ca.pem")
    wait_for_health("127.0.0.1:50051", timeout=30)

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

__all__ = ["CALLER_METADATA", "BearerTokenInterceptor", "make_channel", "wait_for_health"]

#: Request metadata naming the caller a model-server call works for: the
#: model-server's batcher gives each caller one turn (docs/architecture.md,
#: "Many callers"), so requests that share a value share a turn. The
#: attribution-service sends one value per explanation (the incoming call's
#: own value when it has one); without it, each call is its own caller.
CALLER_METADATA = "xaimesh-caller"


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
