"""Exceptions raised by the SDK.

Every failed call raises an `XaimeshError` (or a subclass named after the gRPC
status code) that carries the status code, the service that answered and the
service's own message, e.g.::

    InvalidArgumentError: model-server: split point 40 is out of range: model has 30 layers
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import grpc
from xaimesh_contracts.status import field_violations, sent_by_the_service, status_code


@dataclass
class FieldViolation:
    field: str
    description: str


class XaimeshError(Exception):
    """A call to a xaimesh service failed."""

    def __init__(self, code: grpc.StatusCode, service: str, message: str,
                 field_violations: list[FieldViolation] | None = None):
        self.code = code
        self.service = service
        self.message = message
        self.field_violations = field_violations or []
        super().__init__(f"{service}: {message}" if service else message)


class InvalidArgumentError(XaimeshError, ValueError):
    pass


class NotFoundError(XaimeshError, LookupError):
    pass


class UnavailableError(XaimeshError, ConnectionError):
    pass


class ResourceExhaustedError(XaimeshError):
    pass


class UnauthenticatedError(XaimeshError, PermissionError):
    pass


class DeadlineExceededError(XaimeshError, TimeoutError):
    pass


class CancelledError(XaimeshError):
    pass


_BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgumentError,
    grpc.StatusCode.FAILED_PRECONDITION: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: UnauthenticatedError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.CANCELLED: CancelledError,
}


def from_rpc_error(error: grpc.RpcError, service: str, address: str = "") -> XaimeshError:
    """Turns a grpc.RpcError into the matching XaimeshError subclass.

    UNAVAILABLE made by the client's gRPC library means the service itself
    is unreachable, and the message says so with its address; UNAVAILABLE
    sent by the service means something behind it is (the service's
    message names it, e.g. "the model-server at ... is unavailable")."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    message = error.details() if hasattr(error, "details") else str(error)
    if code == grpc.StatusCode.UNAVAILABLE and not sent_by_the_service(error):
        where = f" at {address}" if address else ""
        message = f"{service}{where} is unavailable ({message}); is it running?"
        service_label = ""
    else:
        service_label = service
    cls = _BY_CODE.get(code, XaimeshError)
    return cls(code, service_label, message or code.name,
               [FieldViolation(f, d) for f, d in field_violations(error)])


def from_status(status: Any, service: str, prefix: str = "") -> XaimeshError:
    """The XaimeshError of a ``google.rpc.Status`` that a service sent for
    one item of a stream or batch (``prefix`` says which item)."""
    code = status_code(status.code)
    message = f"{prefix}: {status.message}" if prefix else status.message
    return _BY_CODE.get(code, XaimeshError)(code, service, message or code.name,
                                            [FieldViolation(f, d) for f, d in field_violations(status)])
