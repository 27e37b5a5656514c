"""Errors raised by the model-server logic.

They know nothing of gRPC: the adapter maps each class to a status code
(`InvalidArgument` -> INVALID_ARGUMENT, `NotFound` -> NOT_FOUND,
`ResourceExhausted` -> RESOURCE_EXHAUSTED, `Cancelled` -> CANCELLED). Every
message says what is wrong and what to do about it. All of them derive from
`ValueError` so plain Python callers can catch them generically.
"""

from __future__ import annotations


class ModelServerError(ValueError):
    """Base class. `field` names the request field at fault, when one is."""

    code = "UNKNOWN"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidArgument(ModelServerError):
    code = "INVALID_ARGUMENT"


class NotFound(ModelServerError):
    code = "NOT_FOUND"


class ResourceExhausted(ModelServerError):
    code = "RESOURCE_EXHAUSTED"


class Cancelled(ModelServerError):
    code = "CANCELLED"


__all__ = ["ModelServerError", "InvalidArgument", "NotFound", "ResourceExhausted", "Cancelled"]
