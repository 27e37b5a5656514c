"""The LLM interface used for labelling and scoring, and its two backends.

``LLM`` is a protocol: ``complete(messages) -> str`` on a chat conversation
(``[{"role": "system"|"user"|"assistant", "content": str}, ...]``) and
``describe() -> str`` naming the model and where it runs.

- ``OpenAIChatLLM``: any OpenAI-compatible chat-completions endpoint through
  the official ``openai`` client, with our own retry loop.
- ``CallableLLM``: wraps a function (the adapter gives one that calls the
  model-server's Generate RPC with a chat conversation).

API keys are wrapped in ``Secret`` and registered for log redaction; they are
never part of a message, a repr or a log record.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import threading
import time
from typing import Any, Callable, Protocol, Sequence, runtime_checkable
from xaimesh_runtime.errors import ServiceError

from .errors import LLMError
from .redaction import Secret, redact, register, strip_url_userinfo

logger = logging.getLogger(__name__)

Message = dict  # {"role": str, "content": str}

DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"
_ROLES = ("system", "user", "assistant")


@runtime_checkable
class LLM(Protocol):
    def complete(self, messages: Sequence[Message]) -> str:
        """Returns the assistant's reply to ``messages``; raises ``LLMError``."""
        ...

    def describe(self) -> str:
        """E.g. "openai:gpt-4.1-nano@https://api.openai.com/v1"."""
        ...


def validate_messages(messages: Sequence[Message]) -> list[dict[str, str]]:
    out = []
    for i, m in enumerate(messages):
        role, content = m.get("role"), m.get("content")
        if role not in _ROLES:
            raise LLMError(f"message {i}: role must be one of {_ROLES}, got {role!r}", code="INVALID_ARGUMENT")
        if not isinstance(content, str):
            raise LLMError(f"message {i}: content must be a string", code="INVALID_ARGUMENT")
        out.append({"role": role, "content": content})
    if not out:
        raise LLMError("no messages to send", code="INVALID_ARGUMENT")
    return out


# --------------------------------------------------------------------------
# CallableLLM


class CallableLLM:
    """Wraps ``fn(messages) -> str``.

    Exceptions from ``fn`` become ``LLMError``: a ``ServiceError`` keeps its
    code; the runtime's ``DownstreamError`` (a ``code`` attribute) keeps its
    status name and message, an exception with a gRPC-like ``code()``
    (``grpc.RpcError``) its status name and ``details()``; anything else is
    UNKNOWN.
    """

    def __init__(self, fn: Callable[[list[dict[str, str]]], str], description: str) -> None:
        if not callable(fn):
            raise TypeError("fn must be callable")
        self._fn = fn
        self._description = description

    def describe(self) -> str:
        return self._description

    def __repr__(self) -> str:
        return f"CallableLLM({self._description!r})"

    def complete(self, messages: Sequence[Message]) -> str:
        msgs = validate_messages(messages)
        try:
            out = self._fn(msgs)
        except ServiceError:
            raise
        except Exception as exc:  # noqa: BLE001 - mapped below
            code, detail = _describe_foreign_error(exc)
            err = LLMError(redact(f"{self._description}: {detail}"), code=code)
        else:
            if not isinstance(out, str):
                raise LLMError(
                    f"{self._description}: expected a string reply, got {type(out).__name__}", code="INTERNAL"
                )
            return out
        raise err  # raised outside the except block: no chained original


def _describe_foreign_error(exc: BaseException) -> tuple[str, str]:
    code_fn = getattr(exc, "code", None)
    name = getattr(code_fn, "name", None)
    if isinstance(name, str) and name and not callable(code_fn):  # the runtime's DownstreamError: names the service
        return name, f"{name}: {getattr(exc, 'message', exc)}"
    if callable(code_fn):
        try:
            status = code_fn()
            name = getattr(status, "name", None)
            if isinstance(name, str) and name:
                details_fn = getattr(exc, "details", None)
                details = details_fn() if callable(details_fn) else str(exc)
                return name, f"{name}: {details}"
        except Exception:  # noqa: BLE001
            pass
    if isinstance(exc, TimeoutError):
        return "DEADLINE_EXCEEDED", f"timed out: {exc}"
    return "UNKNOWN", f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------
# OpenAIChatLLM


class OpenAIChatLLM:
    """Chat completions on an OpenAI-compatible endpoint.

    Retries (our loop; the client's own ``max_retries`` is 0) on 429 (waiting
    ``Retry-After`` / ``retry-after-ms`` when the server sends one), 5xx,
    connection errors and timeouts, with exponential backoff and jitter; no
    retry on other 4xx. ``max_retries`` counts retries: at most
    ``max_retries + 1`` requests per call. ``timeout_seconds`` bounds each
    request.
    """

    def __init__(
        self,
        model: str,
        api_key: str | Secret | None,
        base_url: str | None = None,
        temperature: float | None = 0.0,
        max_tokens: int | None = None,
        timeout_seconds: float = 30.0,
        max_retries: int = 4,
        *,
        backoff_base_seconds: float = 0.5,
        backoff_max_seconds: float = 20.0,
        max_retry_after_seconds: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        import openai  # the labeling extra; imported here so the module loads without it

        if not model:
            raise LLMError("an OpenAI model name is required (e.g. gpt-4.1-nano)", code="INVALID_ARGUMENT")
        if timeout_seconds is None or timeout_seconds <= 0:
            raise LLMError("timeout_seconds must be > 0", code="INVALID_ARGUMENT")
        if max_retries < 0:
            raise LLMError("max_retries must be >= 0", code="INVALID_ARGUMENT")
        secret = api_key if isinstance(api_key, Secret) else Secret(api_key or "")
        if not secret and not base_url:
            raise LLMError(
                "no OpenAI API key: pass it in the x-openai-api-key call metadata or configure "
                "XAIMESH_OPENAI_API_KEY on the labeling service",
                code="UNAUTHENTICATED",
            )
        register(secret)
        self._secret = secret
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout_seconds = float(timeout_seconds)
        self.max_retries = int(max_retries)
        self._backoff_base = backoff_base_seconds
        self._backoff_max = backoff_max_seconds
        self._max_retry_after = max_retry_after_seconds
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()
        self._openai = openai
        # Local servers (vLLM, Ollama, llama.cpp) take any key; the client wants one.
        try:
            self._client = openai.OpenAI(
                api_key=secret.get() or "no-key",
                base_url=base_url or DEFAULT_OPENAI_BASE_URL,
                max_retries=0,
                timeout=self.timeout_seconds,
            )
        except Exception as exc:  # noqa: BLE001 - httpx.InvalidURL and friends: a bad base_url
            raise LLMError(f"cannot use base_url {redact(str(base_url))[:200]!r}: {_short(exc)}",
                           code="INVALID_ARGUMENT") from None
        self.base_url = strip_url_userinfo(str(self._client.base_url)).rstrip("/")

    # -- public -----------------------------------------------------------

    def describe(self) -> str:
        return f"openai:{self.model}@{self.base_url}"

    def __repr__(self) -> str:
        return f"OpenAIChatLLM(model={self.model!r}, base_url={self.base_url!r}, api_key=***)"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("OpenAIChatLLM holds a credential and cannot be pickled")

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "OpenAIChatLLM":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def complete(self, messages: Sequence[Message]) -> str:
        msgs = validate_messages(messages)
        attempts = self.max_retries + 1
        last: _Failure | None = None
        for attempt in range(attempts):
            outcome = self._attempt(msgs)
            if isinstance(outcome, str):
                return outcome
            last = outcome
            if not outcome.retryable or attempt == attempts - 1:
                break
            delay = self._delay(attempt, outcome.retry_after)
            logger.info(
                "%s: %s; retry %d of %d in %.2fs",
                self.describe(), outcome.cause, attempt + 1, self.max_retries, delay,
            )
            self._sleep(delay)
        assert last is not None
        tries = f" after {attempt + 1} attempts" if attempt > 0 else ""
        raise LLMError(
            redact(f"{last.cause}{tries} (endpoint {self.base_url}, model {self.model})", (self._secret.get(),)),
            code=last.code,
            status=last.status,
        )

    # -- internals ----------------------------------------------------------

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return max(0.0, min(retry_after, self._max_retry_after))
        ceiling = min(self._backoff_max, self._backoff_base * (2 ** attempt))
        with self._rng_lock:
            return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def _attempt(self, msgs: list[dict[str, str]]) -> "str | _Failure":
        oa = self._openai
        kwargs: dict[str, Any] = {"model": self.model, "messages": msgs, "timeout": self.timeout_seconds}
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        if self.max_tokens:
            kwargs["max_tokens"] = int(self.max_tokens)
        try:
            response = self._client.chat.completions.create(**kwargs)
        except oa.APITimeoutError:
            return _Failure(f"request timed out after {self.timeout_seconds:g}s", "DEADLINE_EXCEEDED", True)
        except oa.APIConnectionError as exc:
            return _Failure(f"connection error: {_short(exc)}", "UNAVAILABLE", True)
        except oa.APIStatusError as exc:
            return self._status_failure(exc)
        except oa.APIResponseValidationError as exc:
            return _Failure(f"malformed response: {_short(exc)}", "INTERNAL", False)
        except oa.OpenAIError as exc:
            return _Failure(f"OpenAI client error: {_short(exc)}", "INTERNAL", False)
        except ValueError as exc:  # JSONDecodeError and friends
            return _Failure(f"malformed response: not valid JSON ({type(exc).__name__})", "INTERNAL", False)
        return _extract_content(response)

    def _status_failure(self, exc: Any) -> "_Failure":
        status = int(getattr(exc, "status_code", 0) or 0)
        detail = _error_detail(exc)
        cause = f"HTTP {status}" + (f": {detail}" if detail else "")
        if status == 429:
            return _Failure(cause, "RESOURCE_EXHAUSTED", True, status, _retry_after(exc))
        if status >= 500:
            return _Failure(cause, "UNAVAILABLE", True, status, _retry_after(exc) if status == 503 else None)
        if status == 408:
            return _Failure(cause, "DEADLINE_EXCEEDED", True, status)
        code = {401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND"}.get(status, "INVALID_ARGUMENT")
        return _Failure(cause, code, False, status)


class _Failure:
    __slots__ = ("cause", "code", "retryable", "status", "retry_after")

    def __init__(self, cause: str, code: str, retryable: bool, status: int | None = None,
                 retry_after: float | None = None) -> None:
        self.cause, self.code, self.retryable = cause, code, retryable
        self.status, self.retry_after = status, retry_after


def _short(exc: BaseException, limit: int = 200) -> str:
    text = str(getattr(exc, "message", None) or exc) or type(exc).__name__
    return redact(text[:limit])


def _error_detail(exc: Any, limit: int = 300) -> str:
    """The server's error message ({"error": {"message": ...}}), shortened."""
    body = getattr(exc, "body", None)
    text = None
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            text = inner.get("message")
        elif isinstance(inner, str):
            text = inner
    elif isinstance(body, str):
        text = body
    if not text:
        return ""
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[:limit] + "..."
    return redact(text)


def _retry_after(exc: Any) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _extract_content(response: Any) -> "str | _Failure":
    if isinstance(response, (str, bytes)):
        # The client hands back raw text when the body is not JSON-typed.
        text = response.decode("utf-8", "replace") if isinstance(response, bytes) else response
        try:
            data = json.loads(text)
        except ValueError:
            return _Failure("malformed response: body is not JSON", "INTERNAL", False)
    else:
        data = response
    try:
        choices = data["choices"] if isinstance(data, dict) else getattr(data, "choices", None)
        if not choices:
            return _Failure("malformed response: no choices", "INTERNAL", False)
        first = choices[0]
        message = first["message"] if isinstance(first, dict) else getattr(first, "message", None)
        content = message.get("content") if isinstance(message, dict) else getattr(message, "content", None)
    except (KeyError, IndexError, TypeError, AttributeError):
        return _Failure("malformed response: unexpected shape", "INTERNAL", False)
    if content is None:
        refusal = message.get("refusal") if isinstance(message, dict) else getattr(message, "refusal", None)
        if refusal:
            return _Failure(f"the model refused: {redact(str(refusal)[:200])}", "FAILED_PRECONDITION", False)
        return _Failure("malformed response: the message has no content", "INTERNAL", False)
    if not isinstance(content, str):
        return _Failure("malformed response: content is not a string", "INTERNAL", False)
    return content
