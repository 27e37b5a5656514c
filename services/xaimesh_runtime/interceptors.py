"""Server interceptors: bearer-token auth and Prometheus call metrics.

Both leave health checking and reflection alone (open, unmeasured): probes
must work without a token, and wrapping the health ``Watch`` handler would
lose its non-blocking mode.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from typing import Any

import grpc

from . import metrics

__all__ = ["AuthInterceptor", "MetricsInterceptor", "is_open_method"]

log = logging.getLogger("xaimesh_runtime.access")

OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
UNAUTHENTICATED_MESSAGE = "missing or invalid bearer token"


def is_open_method(method: str) -> bool:
    """Health and reflection: no token needed, not counted in metrics."""
    return method.startswith(OPEN_PREFIXES)


def _rewrap(handler: grpc.RpcMethodHandler, wrap: Callable[[Callable, bool], Callable]) -> grpc.RpcMethodHandler:
    """The same handler with its behavior replaced by ``wrap(behavior,
    response_streaming)``; serializers are kept."""
    common = {"request_deserializer": handler.request_deserializer,
              "response_serializer": handler.response_serializer}
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(wrap(handler.unary_unary, False), **common)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(wrap(handler.unary_stream, True), **common)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(wrap(handler.stream_unary, False), **common)
    return grpc.stream_stream_rpc_method_handler(wrap(handler.stream_stream, True), **common)


class AuthInterceptor(grpc.ServerInterceptor):
    """Requires ``authorization: Bearer <token>`` (constant-time compare)."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def _authorized(self, metadata: Any) -> bool:
        for key, value in metadata or ():
            if key == "authorization":
                given = value.encode() if isinstance(value, str) else bytes(value)
                return hmac.compare_digest(given, self._expected)
        return False

    def intercept_service(self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or is_open_method(method) or self._authorized(handler_call_details.invocation_metadata):
            return handler

        def wrap(_behavior: Callable, _streaming: bool) -> Callable:
            def deny(_request: Any, context: grpc.ServicerContext) -> Any:
                context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)
            return deny

        return _rewrap(handler, wrap)


class _Call:
    """Bookkeeping of one call; ``finish`` runs once, when the RPC ends."""

    __slots__ = ("method", "start", "context", "outcome")

    def __init__(self, method: str, context: grpc.ServicerContext) -> None:
        self.method, self.context, self.start = method, context, time.perf_counter()
        self.outcome: str | None = None  # "ok" | "raised" | None (never finished)

    def finish(self) -> None:
        code = self.context.code()
        if code is not None:
            name = code.name
        elif self.outcome == "raised":
            name = "UNKNOWN"  # what gRPC sends for an unhandled exception
        elif self.outcome == "ok":
            name = "OK"
        else:  # the response stream was abandoned
            name = "DEADLINE_EXCEEDED" if self.context.time_remaining() <= 0 else "CANCELLED"
        elapsed = time.perf_counter() - self.start
        metrics.GRPC_REQUESTS.labels(self.method, name).inc()
        metrics.GRPC_LATENCY.labels(self.method).observe(elapsed)
        metrics.GRPC_IN_FLIGHT.labels(self.method).dec()
        log.debug("%s %s %.1f ms", self.method, name, elapsed * 1000)


class MetricsInterceptor(grpc.ServerInterceptor):
    """Counts finished calls by method and code, times them, tracks calls in
    flight. Streaming calls are counted when the stream ends (completed,
    failed, cancelled or past its deadline)."""

    def intercept_service(self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or is_open_method(method):
            return handler  # unknown methods are not labels: no unbounded cardinality

        def wrap(behavior: Callable, streaming: bool) -> Callable:
            def measured(request: Any, context: grpc.ServicerContext) -> Any:
                call = _Call(method, context)
                metrics.GRPC_IN_FLIGHT.labels(method).inc()
                if not context.add_callback(call.finish):
                    call.finish()  # already over
                try:
                    result = behavior(request, context)
                except BaseException:
                    call.outcome = "raised"
                    raise
                if not streaming:
                    call.outcome = "ok"
                    return result
                return _measured_stream(result, call)
            return measured

        return _rewrap(handler, wrap)


def _measured_stream(responses: Any, call: _Call) -> Any:
    try:
        yield from responses
    except GeneratorExit:
        raise  # abandoned: `finish` sees no outcome
    except BaseException:
        call.outcome = "raised"
        raise
    call.outcome = "ok"
