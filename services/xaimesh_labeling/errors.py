"""The labeling logic's own errors, in the mesh's one error family.

Generic errors (``InvalidArgument``, ``FailedPrecondition``, ``Cancelled``...)
are the runtime's; these two say something only labeling knows. Messages are
meant for a person and never contain credentials.
"""

from __future__ import annotations

import grpc
from xaimesh_runtime.errors import ServiceError

__all__ = ["LLMError", "LabelParseError"]


class LLMError(ServiceError):
    """An LLM call failed (after retries where retrying made sense).
    ``code`` says why: RESOURCE_EXHAUSTED (429), UNAVAILABLE (5xx, connection),
    DEADLINE_EXCEEDED (timeout), UNAUTHENTICATED / PERMISSION_DENIED (401 /
    403), INVALID_ARGUMENT / NOT_FOUND (other 4xx), INTERNAL (malformed
    response). ``status`` is the HTTP status when there was one.
    """

    code = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, *, code: grpc.StatusCode | str | None = None, status: int | None = None) -> None:
        super().__init__(message, code=code)
        self.status = status


class LabelParseError(ServiceError):
    """The LLM's answer held no usable label / no parsable scoring answer."""

    code = grpc.StatusCode.INTERNAL
