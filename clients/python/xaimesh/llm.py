"""Which LLM writes (and scores) concept labels.

These objects only *describe* a backend: the labeling-service makes the LLM
calls. Pass one as ``llm_interface=`` of ``LLMLabels`` (or ``scorer=`` of
``LLMLabels.score``)::

    from xaimesh.llm import ModelServerLLM, OpenAILLM

    OpenAILLM(api_key="sk-...")                        # OpenAI, gpt-4.1-nano
    OpenAILLM(base_url="http://vllm:8000/v1", model="Qwen/Qwen2.5-7B-Instruct")  # any compatible server
    ModelServerLLM()                                   # the model-server's own instruct model (offline)

The API key travels only in the call metadata (``x-openai-api-key``), never
inside a message, and ``repr`` never shows it. ``OpenAILLM()`` with no
``api_key`` reads ``OPENAI_API_KEY``; with no key at all and no ``base_url``
it falls back to :class:`ModelServerLLM` (a warning says so), unless
``use_service_key=True`` asks the labeling-service to use its own
configured key. ``llm_interface=None`` leaves the choice to the service: its
configured OpenAI key or endpoint when it has one, else the model-server.
"""

from __future__ import annotations

import abc
import logging
import math
import os
from typing import Any

from xaimesh_contracts.v1 import labeling_pb2

__all__ = ["API_KEY_METADATA", "DEFAULT_OPENAI_MODEL", "CallerLLM", "LLMInterface", "ModelServerLLM", "OpenAILLM",
           "as_llm_interface"]

log = logging.getLogger("xaimesh.llm")

API_KEY_METADATA = "x-openai-api-key"
DEFAULT_OPENAI_MODEL = "gpt-4.1-nano"
OFFICIAL_BASE_URL = "https://api.openai.com/v1"


class LLMInterface(abc.ABC):
    """Base class: a description of an LLM backend of the labeling-service."""

    @abc.abstractmethod
    def to_proto(self) -> labeling_pb2.LlmBackend:
        """The ``LlmBackend`` message sent to the service."""

    def metadata(self) -> list[tuple[str, str]]:
        """Call metadata to send with the request (the API key, if any)."""
        return []

    @abc.abstractmethod
    def describe(self) -> str:
        """What the service will report as ``llm`` (best guess, client side)."""


class ModelServerLLM(LLMInterface):
    """The model-server's own chat model, through its ``Generate`` RPC.

    ``model``: a model id (or a remote model handle) loaded by the
    model-server; ``None`` = its default instruct model (SmolLM2-135M-Instruct
    in a default deployment: labels will be rough). ``max_new_tokens``:
    ``None`` = the service's default for the task (32 for labels, 64 for
    scoring answers). ``temperature`` 0 = greedy decoding.
    """

    def __init__(self, model: Any = None, max_new_tokens: int | None = None, temperature: float = 0.0):
        if model is not None and not isinstance(model, str):
            model = getattr(model, "model_id", None) or str(model)
        if max_new_tokens is not None and (int(max_new_tokens) != max_new_tokens or max_new_tokens < 1):
            raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        temperature = float(temperature)
        if not math.isfinite(temperature) or temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature!r}")
        self.model = model or None
        self.max_new_tokens = None if max_new_tokens is None else int(max_new_tokens)
        self.temperature = temperature

    def to_proto(self) -> labeling_pb2.LlmBackend:
        return labeling_pb2.LlmBackend(model_server=labeling_pb2.ModelServerBackend(
            model=self.model or "", max_new_tokens=self.max_new_tokens or 0, temperature=self.temperature))

    def describe(self) -> str:
        return f"model-server:{self.model or '(default model)'}"

    def __repr__(self) -> str:
        return (f"ModelServerLLM(model={self.model!r}, max_new_tokens={self.max_new_tokens!r}, "
                f"temperature={self.temperature!r})")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ModelServerLLM) and (self.model, self.max_new_tokens, self.temperature) == (
            other.model, other.max_new_tokens, other.temperature)

    __hash__ = None  # type: ignore[assignment]


class OpenAILLM(LLMInterface):
    """An OpenAI-compatible chat-completions endpoint, called by the
    labeling-service.

    ``api_key``: sent in the ``x-openai-api-key`` call metadata only
    (``None`` = ``OPENAI_API_KEY`` from the environment; an empty key is no
    key). ``base_url``: any OpenAI-compatible server (vLLM, Ollama,
    llama.cpp server); ``None`` = the service's configured endpoint, else
    the official API. ``timeout``: seconds per request; ``max_retries``:
    retries on 429, 5xx and timeouts (0 = none). ``max_tokens``: ``None``
    = the endpoint's default.

    With no key and no ``base_url``, the labels come from the model-server's
    own model instead (see ``fallback``), unless ``use_service_key=True``:
    then the service uses its own configured key (and falls back to the
    model-server itself if it has none).
    """

    def __init__(self, api_key: str | None = None, model: str = DEFAULT_OPENAI_MODEL, base_url: str | None = None,
                 temperature: float = 0.0, max_tokens: int | None = None, timeout: float = 30,
                 max_retries: int = 4, *, use_service_key: bool = False):
        if api_key is None:
            api_key = os.environ.get("OPENAI_API_KEY")
        api_key = (api_key or "").strip()
        if not model or not str(model).strip():
            raise ValueError("model must name an OpenAI model (e.g. 'gpt-4.1-nano')")
        temperature = float(temperature)
        if not math.isfinite(temperature) or temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature!r}")
        if max_tokens is not None and (int(max_tokens) != max_tokens or max_tokens < 1):
            raise ValueError(f"max_tokens must be a positive integer or None, got {max_tokens!r}")
        timeout = float(timeout)
        if not math.isfinite(timeout) or timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        if int(max_retries) != max_retries or max_retries < 0:
            raise ValueError(f"max_retries must be an integer >= 0, got {max_retries!r}")
        self.__key = api_key
        self.model = str(model).strip()
        self.base_url = (base_url or "").strip() or None
        self.temperature = temperature
        self.max_tokens = None if max_tokens is None else int(max_tokens)
        self.timeout = timeout
        self.max_retries = int(max_retries)
        self.use_service_key = bool(use_service_key)
        #: The backend actually used when there is no key and no base_url.
        self.fallback: ModelServerLLM | None = None
        if not api_key and not self.base_url and not self.use_service_key:
            self.fallback = ModelServerLLM()
            log.warning("OpenAILLM: no API key (api_key=None and OPENAI_API_KEY unset) and no base_url: "
                        "concept labels will come from the model-server's own model (ModelServerLLM). "
                        "Pass api_key=..., a base_url, or use_service_key=True to use the labeling-service's "
                        "configured key.")

    @property
    def has_api_key(self) -> bool:
        return bool(self.__key)

    def to_proto(self) -> labeling_pb2.LlmBackend:
        if self.fallback is not None:
            return self.fallback.to_proto()
        return labeling_pb2.LlmBackend(openai=labeling_pb2.OpenAIBackend(
            model=self.model, base_url=self.base_url or "", temperature=self.temperature,
            max_tokens=self.max_tokens or 0, timeout_seconds=self.timeout,
            # the service reads 0 as "the default (4)" and a negative value as "none"
            max_retries=self.max_retries if self.max_retries > 0 else -1))

    def metadata(self) -> list[tuple[str, str]]:
        if self.fallback is not None or not self.__key:
            return []
        return [(API_KEY_METADATA, self.__key)]

    def describe(self) -> str:
        if self.fallback is not None:
            return self.fallback.describe()
        return f"openai:{self.model}@{(self.base_url or OFFICIAL_BASE_URL).rstrip('/')}"

    def __repr__(self) -> str:
        key = "'***'" if self.__key else "None"
        extra = ", fallback=ModelServerLLM()" if self.fallback is not None else ""
        return (f"OpenAILLM(model={self.model!r}, base_url={self.base_url!r}, api_key={key}, "
                f"temperature={self.temperature!r}, max_tokens={self.max_tokens!r}, timeout={self.timeout!r}, "
                f"max_retries={self.max_retries!r}{extra})")

    __str__ = __repr__

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_OpenAILLM__key", None)  # never pickle a key; a copy has none
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.__key = ""


class CallerLLM:
    """An LLM that runs in this process — a notebook's own model — for
    concept labels: the labeling-service builds each prompt and sends it
    over a bidirectional stream; the SDK runs ``fn(messages)`` here and sends
    the reply back (``LabelConceptsWithCallerLlm``).

    ``fn(messages) -> str | None`` with ``messages`` a chat
    ``[{"role": "system" | "user" | "assistant", "content": str}, ...]``;
    an exception or ``None`` is a failed reply, retried ``max_retries``
    times by the service, then that concept alone carries the error.
    ``timeout_seconds``: how long the service waits for one reply. Calls run
    one at a time, in the thread that called ``interpret``.
    """

    def __init__(self, fn: Any, name: str | None = None, *, max_retries: int = 2,
                 timeout_seconds: float = 300.0):
        if not callable(fn):
            raise TypeError(f"CallerLLM takes a function fn(messages) -> str, not {type(fn).__name__}")
        if int(max_retries) != max_retries or not 0 <= max_retries <= 10:
            raise ValueError(f"max_retries must be an integer in [0, 10], got {max_retries!r}")
        timeout_seconds = float(timeout_seconds)
        if not math.isfinite(timeout_seconds) or not 0 < timeout_seconds <= 3600:
            raise ValueError(f"timeout_seconds must be in (0, 3600], got {timeout_seconds!r}")
        self.fn = fn
        self.name = name or getattr(fn, "__qualname__", None) or type(fn).__name__
        self.max_retries = int(max_retries)
        self.timeout_seconds = timeout_seconds

    def describe(self) -> str:
        return f"caller:{self.name}"

    def __repr__(self) -> str:
        return f"CallerLLM({self.name!r})"

    def reply(self, call: labeling_pb2.GenerateCall) -> labeling_pb2.GenerateReply:
        """Runs ``fn`` on one prompt of the service; its answer or its error."""
        from google.rpc import code_pb2, status_pb2

        messages = [{"role": m.role, "content": m.content} for m in call.messages]
        try:
            text = self.fn(messages)
        except Exception as exc:  # noqa: BLE001 - the service records it against the concept
            message = f"{type(exc).__name__}: {exc}"[:500]
            return labeling_pb2.GenerateReply(id=call.id, error=status_pb2.Status(code=code_pb2.UNKNOWN,
                                                                                 message=message))
        if not isinstance(text, str) or not text.strip():
            return labeling_pb2.GenerateReply(id=call.id, error=status_pb2.Status(
                code=code_pb2.INTERNAL, message=f"{self.name} returned {type(text).__name__ if text is None else repr(text)[:40]}, not a label"))
        return labeling_pb2.GenerateReply(id=call.id, text=text)


def as_llm_interface(value: Any) -> LLMInterface | CallerLLM | None:
    """``None``, an :class:`LLMInterface`, a :class:`CallerLLM`, or a
    shorthand: ``"model-server"`` / ``"local"`` (ModelServerLLM()),
    ``"openai"`` (OpenAILLM())."""
    if value is None or isinstance(value, (LLMInterface, CallerLLM)):
        return value
    if isinstance(value, str):
        key = value.strip().lower()
        if key in ("model-server", "model_server", "local"):
            return ModelServerLLM()
        if key == "openai":
            return OpenAILLM()
    raise TypeError(f"expected an LLM interface (OpenAILLM(...), ModelServerLLM(...), CallerLLM(fn)) or None, "
                    f"not {value!r}")
