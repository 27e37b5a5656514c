"""gRPC error handling for servicers.

Every service raises the errors it means on purpose as one family,
:class:`ServiceError` and its subclasses (``InvalidArgument``, ``NotFound``,
``FailedPrecondition``, ``ResourceExhausted``, ``Unavailable``,
``DeadlineExceeded``, ``Cancelled``): each carries its status ``code``, the
request ``field`` at fault (if any) and a ``message`` a person can act on.
Logic modules raise them and know nothing else of gRPC. The servicer methods
of ``server.py`` are wrapped with :func:`map_errors`::

    class ModelServicer(model_pb2_grpc.ModelServiceServicer):
        @map_errors()
        def GetModel(self, request, context):
            raise NotFound(f"no model {name!r}; loaded: ...", field="model")

        @map_errors()                       # server-streaming works the same
        def StreamActivations(self, request, context):
            yield ...

A ``ServiceError`` ends the call with its code and a ``google.rpc.BadRequest``
naming its field. A contract decoding error (``TensorError``,
``EnumValueError``) is INVALID_ARGUMENT. A failed call to another service
(:class:`DownstreamError`) keeps that service's code. Anything else,
``ValueError`` included, is a bug of ours: ``INTERNAL`` with an error id
that is logged with the traceback; the message says which id to quote.
"""

from __future__ import annotations

import functools
import inspect
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn, TypeVar

import grpc
from google.rpc import code_pb2, status_pb2
from grpc_status import rpc_status
from xaimesh_contracts.enums import EnumValueError
from xaimesh_contracts.status import FieldViolations, code_number, field_violations, make_status
from xaimesh_contracts.tensors import TensorError

from .config import env_name

__all__ = [
    "DEFAULT_ERROR_MAP",
    "Cancelled",
    "DeadlineExceeded",
    "DownstreamError",
    "FailedPrecondition",
    "FieldViolations",
    "InvalidArgument",
    "NotFound",
    "ResourceExhausted",
    "ServiceError",
    "Unavailable",
    "check_cancelled",
    "abort_with",
    "code_for",
    "downstream_error",
    "make_status",
    "map_errors",
    "status_for_item",
]

log = logging.getLogger("xaimesh_runtime.errors")

F = TypeVar("F", bound=Callable[..., Any])


class ServiceError(Exception):
    """An error a service raises on purpose. ``code`` is the gRPC status to
    answer with (a subclass fixes it; ``code=`` overrides it per instance,
    as a ``grpc.StatusCode`` or its name); ``field`` names the request field
    at fault, dotted for nested fields ("parameters.n_steps")."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, *, field: str | None = None,
                 code: grpc.StatusCode | str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = grpc.StatusCode[code] if isinstance(code, str) else code

    def __str__(self) -> str:  # keeps the field visible in logs and test output
        return f"{self.message} (field: {self.field})" if self.field else self.message


class InvalidArgument(ServiceError, ValueError):
    """The request is wrong; ``ValueError`` too, so plain Python callers of
    the logic modules can catch it as they would any bad value."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ServiceError, LookupError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(ServiceError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(ServiceError):
    code = grpc.StatusCode.CANCELLED

    def __init__(self, message: str = "the operation was cancelled", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)


def check_cancelled(should_stop: Callable[[], bool] | None, what: str = "the operation") -> None:
    """Raise :class:`Cancelled` when the ``should_stop`` callable says so."""
    if should_stop is not None and should_stop():
        raise Cancelled(f"{what} was cancelled")


# Checked along the exception's MRO, after the service's own mapping. Plain
# ValueError is not here: raised by numpy, torch or our own code it is a bug
# of ours (INTERNAL), not the caller's fault.
DEFAULT_ERROR_MAP: dict[type[BaseException], grpc.StatusCode] = {
    TensorError: grpc.StatusCode.INVALID_ARGUMENT,
    EnumValueError: grpc.StatusCode.INVALID_ARGUMENT,
    NotImplementedError: grpc.StatusCode.UNIMPLEMENTED,
    # A request asked for more memory than the server has (numpy's
    # "Unable to allocate 480 GiB..."): the caller can ask for less.
    MemoryError: grpc.StatusCode.RESOURCE_EXHAUSTED,
}
MAX_MESSAGE_CHARS = 2000


def status_for_item(code: grpc.StatusCode, message: str,
                    field_violations: FieldViolations | None = None) -> status_pb2.Status:
    """The ``google.rpc.Status`` of one failed item inside a stream or a
    batch response (``code`` OK gives an OK status)."""
    return make_status(code, message, field_violations)


def abort_with(context: grpc.ServicerContext, code: grpc.StatusCode, message: str,
               field_violations: FieldViolations | None = None) -> NoReturn:
    """End the call with ``code`` / ``message`` and rich details (the
    ``grpc-status-details-bin`` trailer that ``rpc_status.from_call`` reads).
    Raises, like ``context.abort``."""
    context.abort_with_status(rpc_status.to_status(make_status(code, message, field_violations)))
    raise AssertionError("unreachable")  # pragma: no cover - abort raises


def code_for(exc: BaseException, mapping: Mapping[type[BaseException], grpc.StatusCode] | None = None
             ) -> grpc.StatusCode | None:
    """The status code of ``exc`` under ``mapping`` then the defaults; the most
    specific class wins. ``None`` = unexpected (INTERNAL)."""
    for table in (mapping or {}, DEFAULT_ERROR_MAP):
        for cls in type(exc).__mro__:
            if cls in table:
                return table[cls]
    return None


def _is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"  # torch's CUDA OOM


def _message(exc: BaseException) -> str:
    # str(KeyError("x")) is "'x'": use the argument itself.
    if isinstance(exc, ServiceError):
        text = exc.message
    elif isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        text = exc.args[0]
    elif _is_out_of_memory(exc):
        text = (f"not enough memory for this request ({str(exc).splitlines()[0] if str(exc) else 'out of memory'})"
                "; ask for less work at once (fewer samples, steps or rows)")
    else:
        text = str(exc) or type(exc).__name__
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS] + "..."


def _exception_violations(exc: BaseException) -> list[tuple[str, str]]:
    violations = getattr(exc, "field_violations", None)
    if violations:
        return _violations(violations)
    field = getattr(exc, "field", None)
    if isinstance(field, str) and field:
        return [(field, str(getattr(exc, "description", None) or _message(exc)))]
    return []


# Codes of a failed downstream call that say something about this service's
# own credentials or configuration, not the caller's request: INTERNAL.
_OWN_FAULT = {
    grpc.StatusCode.UNAUTHENTICATED: "rejected this service's credentials",
    grpc.StatusCode.PERMISSION_DENIED: "refused this service's credentials",
    grpc.StatusCode.UNIMPLEMENTED: "does not implement the call (version mismatch?)",
}


class DownstreamError(Exception):
    """A call to another service of the mesh failed. ``code`` is the status
    to report, ``message`` names that service and its address so the caller
    knows which one went away, ``field_violations`` are its BadRequest
    violations (fields of the downstream request)."""

    def __init__(self, code: grpc.StatusCode, message: str,
                 field_violations: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field_violations = list(field_violations)

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


def downstream_error(error: grpc.RpcError, service: str, address: str = "", doing: str = "") -> DownstreamError:
    """The :class:`DownstreamError` of a failed call to ``service`` (a name
    declared with ``add_downstream``, e.g. "model-server") at ``address``;
    ``doing`` says what the call was for (e.g. "Score")."""
    code = error.code() if callable(getattr(error, "code", None)) else grpc.StatusCode.UNKNOWN
    details = (error.details() if callable(getattr(error, "details", None)) else "") or ""
    # Only a named downstream (with its address) has settings to point at.
    where = f"the {service} at {address}" if address else f"the {service}"
    if code == grpc.StatusCode.UNAVAILABLE:
        reached = f" (this service reaches it through --{service}-address / {env_name(service)})" if address else ""
        return DownstreamError(code, f"{where} is unavailable ({details}); is it running?{reached}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DownstreamError(code, f"the deadline passed while waiting for {where}"
                               + (f" ({doing})" if doing else ""))
    if code in _OWN_FAULT:
        check = f" (check --{service}-token)" if address and code != grpc.StatusCode.UNIMPLEMENTED else ""
        return DownstreamError(grpc.StatusCode.INTERNAL, f"{where} {_OWN_FAULT[code]}{check}: {details}")
    return DownstreamError(code, f"{service}: {details or code.name}", field_violations(error))


def _handle(exc: Exception, context: grpc.ServicerContext, method: str,
            mapping: Mapping[type[BaseException], grpc.StatusCode] | None) -> NoReturn:
    if context.code() not in (None, grpc.StatusCode.OK):
        raise exc  # the servicer already aborted: keep its status
    if not context.is_active():
        if isinstance(exc, Cancelled):  # the work stopped because the caller went away
            log.info("%s: the caller went away; stopped", method)
            raise _CallerGone from None
        raise exc  # client cancelled or deadline passed: nobody to tell
    code = exc.code if isinstance(exc, ServiceError) else code_for(exc, mapping)
    if code is None and _is_out_of_memory(exc):
        code = grpc.StatusCode.RESOURCE_EXHAUSTED
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and _is_out_of_memory(exc):
        log.warning("%s: out of memory: %s", method, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    if code is not None:
        abort_with(context, code, _message(exc), _exception_violations(exc))
    if isinstance(exc, grpc.RpcError) and isinstance(exc, grpc.Call):
        # a stub that is not a downstream_stub: the service is not known by name
        exc = downstream_error(exc, "service this one calls")
    if isinstance(exc, DownstreamError):
        log.warning("%s: downstream call failed: %s", method, exc)
        abort_with(context, exc.code, exc.message, exc.field_violations)
    error_id = uuid.uuid4().hex[:12]
    log.error("%s: unexpected %s (error id %s)", method, type(exc).__name__, error_id, exc_info=exc)
    abort_with(context, grpc.StatusCode.INTERNAL,
               f"internal error {error_id} in {method}: a bug of this service, not of the request; "
               f"quote error id {error_id} when reporting it (its traceback is in the service log)")


class _CallerGone(Exception):
    """Raised by ``_handle`` when there is nobody to answer; the wrappers end the call quietly."""


def map_errors(mapping: Mapping[type[BaseException], grpc.StatusCode] | None = None) -> Callable[[F], F]:
    """Decorate a servicer method (unary or generator) so that exceptions
    become gRPC statuses: a :class:`ServiceError` its own code, then
    ``mapping`` (exception class -> code), then :data:`DEFAULT_ERROR_MAP`,
    then downstream ``grpc.RpcError`` codes forwarded, then INTERNAL with an
    error id. The context must be the last argument.
    """

    def decorate(fn: F) -> F:
        method = fn.__qualname__
        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def stream_wrapper(*args: Any, **kwargs: Any) -> Any:
                context = args[-1]
                try:
                    yield from fn(*args, **kwargs)
                except Exception as exc:  # noqa: BLE001
                    try:
                        _handle(exc, context, method, mapping)
                    except _CallerGone:
                        return
            return stream_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def unary_wrapper(*args: Any, **kwargs: Any) -> Any:
            context = args[-1]
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001
                try:
                    _handle(exc, context, method, mapping)
                except _CallerGone:
                    return None
        return unary_wrapper  # type: ignore[return-value]

    return decorate


# google.rpc.Code and grpc.StatusCode share numbers; keep a sanity check.
assert code_pb2.INVALID_ARGUMENT == code_number(grpc.StatusCode.INVALID_ARGUMENT)
