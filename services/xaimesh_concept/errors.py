"""Plain exceptions of the concept service core.

The modules of this package know nothing of gRPC; the adapter (server.py)
maps these to status codes:

==================  ====================
exception           gRPC status
==================  ====================
InvalidArgument     INVALID_ARGUMENT (with a BadRequest field violation when
                    ``field`` is set)
NotFound            NOT_FOUND
FailedPrecondition  FAILED_PRECONDITION
Cancelled           CANCELLED
==================  ====================

Every message says what is wrong and, where possible, what to do about it.
"""

from __future__ import annotations


class ConceptError(Exception):
    """Base class of every error raised on purpose by this package."""

    code = "UNKNOWN"

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.message


class InvalidArgument(ConceptError, ValueError):
    code = "INVALID_ARGUMENT"


class NotFound(ConceptError, LookupError):
    code = "NOT_FOUND"


class FailedPrecondition(ConceptError):
    code = "FAILED_PRECONDITION"


class Cancelled(ConceptError):
    code = "CANCELLED"

    def __init__(self, message: str = "the operation was cancelled", *, field: str | None = None):
        super().__init__(message, field=field)


def check_cancelled(should_stop, what: str = "the operation") -> None:
    """Raise Cancelled when the ``should_stop`` callable says so."""
    if should_stop is not None and should_stop():
        raise Cancelled(f"{what} was cancelled")
