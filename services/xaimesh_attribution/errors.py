"""Errors raised by the attribution logic.

They know nothing of gRPC: the adapter maps each class to a status code
(`InvalidArgument` -> INVALID_ARGUMENT with a `google.rpc.BadRequest` naming
`field`, `Cancelled` -> CANCELLED, `FailedPrecondition` ->
FAILED_PRECONDITION). Every message says what is wrong and what to do about
it. All derive from `ValueError` so plain Python callers can catch them
generically. Errors raised by a `ModelBackend` are passed through unchanged.
"""

from __future__ import annotations


class AttributionError(ValueError):
    """Base class. `field` names the request field at fault, when one is
    (dotted for nested fields, e.g. "parameters.n_perturbations")."""

    code = "UNKNOWN"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:  # keeps the field visible in logs and test output
        return f"{self.message} (field: {self.field})" if self.field else self.message


class InvalidArgument(AttributionError):
    code = "INVALID_ARGUMENT"


class FailedPrecondition(AttributionError):
    code = "FAILED_PRECONDITION"


class Cancelled(AttributionError):
    code = "CANCELLED"


__all__ = ["AttributionError", "InvalidArgument", "FailedPrecondition", "Cancelled"]
