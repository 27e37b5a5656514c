"""Plain exceptions of the labeling logic (no gRPC here).

Every error carries ``code``: the *name* of the gRPC status code the adapter
should answer with (``"UNAVAILABLE"``, ``"DEADLINE_EXCEEDED"``...), so
``grpc.StatusCode[err.code]`` maps it without a lookup table. Messages are
meant for a person and never contain credentials.
"""

from __future__ import annotations


class LabelingError(Exception):
    """Base class. ``code`` is a gRPC status code name."""

    code: str = "INTERNAL"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class InvalidArgumentError(LabelingError):
    """A caller-supplied value is wrong (empty label, bad parameter...)."""

    code = "INVALID_ARGUMENT"


class FailedPreconditionError(LabelingError):
    """The inputs cannot support the request (e.g. fuzzing without context)."""

    code = "FAILED_PRECONDITION"


class LLMError(LabelingError):
    """An LLM call failed (after retries where retrying made sense).

    ``code`` says why: RESOURCE_EXHAUSTED (429), UNAVAILABLE (5xx, connection),
    DEADLINE_EXCEEDED (timeout), UNAUTHENTICATED / PERMISSION_DENIED (401 /
    403), INVALID_ARGUMENT / NOT_FOUND (other 4xx), INTERNAL (malformed
    response). ``status`` is the HTTP status when there was one.
    """

    code = "UNKNOWN"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message, code=code)
        self.status = status


class LabelParseError(LabelingError):
    """The LLM's answer held no usable label / no parsable scoring answer."""

    code = "INTERNAL"


class CancelledError(LabelingError):
    """``should_stop()`` turned true: the run was abandoned."""

    code = "CANCELLED"
