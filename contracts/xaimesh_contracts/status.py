"""Rich gRPC status: ``google.rpc.Status`` with ``BadRequest`` field violations.

One encoder and one decoder for both sides of the wire: services attach the
fields at fault to the status they end a call with (or to an ``ItemError``
inside a stream); the SDK and services that call other services read them
back.

    status = make_status(grpc.StatusCode.INVALID_ARGUMENT, "n_steps must be >= 1", {"parameters.n_steps": "..."})
    field_violations(rpc_error)        # [("parameters.n_steps", "...")]
    field_violations(status)           # the same, from a Status message
    sent_by_the_service(rpc_error)     # False when the client library made the status (no server)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

__all__ = ["FieldViolations", "code_number", "field_violations", "make_status", "rich_status",
           "sent_by_the_service", "status_code"]

FieldViolations = Mapping[str, str] | Iterable[tuple[str, str]]


def code_number(code: grpc.StatusCode) -> int:
    """The number of a status code (``google.rpc.Code`` uses the same numbers)."""
    return code.value[0]


def status_code(number: int) -> grpc.StatusCode:
    """The ``grpc.StatusCode`` of a ``google.rpc.Status.code`` number (UNKNOWN if none)."""
    for code in grpc.StatusCode:
        if code.value[0] == number:
            return code
    return grpc.StatusCode.UNKNOWN


def _pairs(violations: FieldViolations | None) -> list[tuple[str, str]]:
    if not violations:
        return []
    items = violations.items() if isinstance(violations, Mapping) else violations
    return [(str(f), str(d)) for f, d in items]


def make_status(code: grpc.StatusCode, message: str,
                violations: FieldViolations | None = None) -> status_pb2.Status:
    """A ``google.rpc.Status``, with a BadRequest detail if fields are named."""
    status = status_pb2.Status(code=code_number(code), message=message)
    pairs = _pairs(violations)
    if pairs:
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=f, description=d) for f, d in pairs]))
        status.details.append(detail)
    return status


def rich_status(error: grpc.RpcError) -> status_pb2.Status | None:
    """The rich status a service ended ``error``'s call with; None when there
    is none (the client's gRPC library made the status, or an old server)."""
    try:
        from grpc_status import rpc_status

        return rpc_status.from_call(error)
    except Exception:  # noqa: BLE001 - not a call, or an inconsistent status trailer
        return None


def field_violations(source: grpc.RpcError | status_pb2.Status | Any) -> list[tuple[str, str]]:
    """``[(field, description), ...]`` of the BadRequest details of a failed
    call or of a ``google.rpc.Status``."""
    status = source if isinstance(source, status_pb2.Status) else rich_status(source)
    out: list[tuple[str, str]] = []
    for detail in getattr(status, "details", ()) or ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out += [(v.field, v.description) for v in bad.field_violations]
    return out


def sent_by_the_service(error: grpc.RpcError) -> bool:
    """True when the service itself ended the call with a rich status (its own
    message), false for a status made by the client's gRPC library
    (connection refused or reset: the service is not there)."""
    return rich_status(error) is not None
