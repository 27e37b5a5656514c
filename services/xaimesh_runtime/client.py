"""Client helpers for server-to-server calls.

    channel = connect(config.downstream("model-server"))
    stub.Score(request, timeout=remaining_timeout(context, default=60))
    stub = downstream_stub(ModelServiceStub(channel), "model-server", address)  # errors name it

Channels themselves (``make_channel``, ``wait_for_health``) come from the
contract package, shared with the SDK.
"""

from __future__ import annotations

from typing import Any

import grpc
from xaimesh_contracts.channels import BearerTokenInterceptor, make_channel, wait_for_health

from .config import Downstream
from .errors import downstream_error

__all__ = ["BearerTokenInterceptor", "connect", "downstream_stub", "make_channel", "remaining_timeout",
           "wait_for_health"]

# A server-side deadline further away than this means "no deadline".
_NO_DEADLINE = 1e8


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
