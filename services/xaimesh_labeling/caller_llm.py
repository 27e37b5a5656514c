"""An LLM that runs in the caller's process (a notebook's own model),
reached over the bidirectional ``LabelConceptsWithCallerLlm`` stream.

``CallerLLM.complete(messages)`` queues a ``GenerateCall`` for the caller
and waits for the ``GenerateReply`` of the same id (``deliver``); a failed
or missing reply is retried ``max_retries`` times, then raised as an
``LLMError`` — so the labelling logic treats it like any other LLM: the
concept whose call failed gets the error, the others go on. When the
caller's stream ends, every waiting call fails (CANCELLED) at once.

This module knows no gRPC: the server pumps ``outbox`` to the stream and
feeds replies to ``deliver``; tests drive it with plain queues.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import LLMError
from .llm import validate_messages

DEFAULT_MAX_RETRIES = 2
DEFAULT_TIMEOUT_SECONDS = 300.0


@dataclass(frozen=True)
class Call:
    """A prompt for the caller: its id and chat messages."""

    id: int
    messages: list[dict[str, str]]


@dataclass(frozen=True)
class Reply:
    """The caller's answer: text, or an error message (code: a status name)."""

    id: int
    text: str | None = None
    error: str = ""
    code: str = "UNKNOWN"


class CallerLLM:
    backend = "caller"

    def __init__(self, description: str, *, max_retries: int = DEFAULT_MAX_RETRIES,
                 timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS, outbox: queue.Queue | None = None) -> None:
        self._description = f"caller:{description or 'LLMInterface'}"
        self.max_retries = max_retries
        self.timeout_seconds = timeout_seconds
        #: Calls for the caller, in order; the server sends them on the stream
        #: (its queue may carry the stream's other events too).
        self.outbox: queue.Queue = outbox if outbox is not None else queue.Queue()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._waiting: dict[int, queue.Queue[Reply]] = {}
        self._closed = False

    def describe(self) -> str:
        return self._description

    def __repr__(self) -> str:
        return f"CallerLLM({self._description!r})"

    def deliver(self, reply: Reply) -> None:
        """A reply from the caller; one for an unknown id (late, after a
        timeout) is dropped."""
        with self._lock:
            box = self._waiting.get(reply.id)
        if box is not None:
            box.put(reply)

    def close(self) -> None:
        """The caller's stream ended: every waiting call fails now."""
        with self._lock:
            self._closed = True
            waiting = list(self._waiting.items())
        for call_id, box in waiting:
            box.put(Reply(call_id, error="the caller's stream ended", code="CANCELLED"))

    def complete(self, messages: Sequence[dict]) -> str:
        msgs = validate_messages(messages)
        last = Reply(0)
        for _ in range(self.max_retries + 1):
            last = self._ask(msgs)
            if last.text is not None and last.text.strip():
                return last.text
            if last.code in ("CANCELLED", "DEADLINE_EXCEEDED"):
                break  # the caller is gone or too slow: asking again would wait again
        detail = last.error or "returned no text"
        raise LLMError(f"{self._description}: {detail} (after {self.max_retries + 1} tries at most)",
                       code=last.code if last.error else "INTERNAL")

    def _ask(self, messages: list[dict[str, str]]) -> Reply:
        box: queue.Queue[Reply] = queue.Queue(maxsize=1)
        with self._lock:
            if self._closed:
                return Reply(0, error="the caller's stream ended", code="CANCELLED")
            call_id = next(self._ids)
            self._waiting[call_id] = box
        try:
            self.outbox.put(Call(call_id, messages))
            try:
                return box.get(timeout=self.timeout_seconds)
            except queue.Empty:
                return Reply(call_id, error=f"no reply within {self.timeout_seconds:g} s", code="DEADLINE_EXCEEDED")
        finally:
            with self._lock:
                self._waiting.pop(call_id, None)
