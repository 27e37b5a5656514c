"""Which LLM a request gets, with which credential, and how many calls at once.

Plain logic: the adapter decodes a request's ``LlmBackend`` into an
:class:`OpenAISpec` or a :class:`ModelServerSpec` (or none) and the call's
``x-openai-api-key`` metadata into a ``Secret``; :meth:`LlmPolicy.build`
checks the spec and returns the LLM, counted in
``xaimesh_labeling_llm_calls_total``.

* ``model_server``: the model-server's ``Generate`` RPC with a chat
  conversation (empty model = its default instruct model), through a
  :class:`~xaimesh_labeling.downstream.ModelGenerator`.
* ``openai``: any OpenAI-compatible endpoint. The API key is the call
  metadata's, else the service's own key (``--openai-api-key`` /
  ``XAIMESH_OPENAI_API_KEY`` / ``..._FILE``); an empty key counts as no key.
  ``base_url`` is the request's, else ``--openai-base-url``, else the
  official endpoint. The service's own key is only ever sent to the
  service's own endpoint: a request naming another ``base_url`` without a
  metadata key is sent with no key (as local vLLM / Ollama servers expect).
  **With no key at all and no base URL, the model-server backend is used
  instead** (logged, and visible in the ``llm`` field of every label).
* no backend: OpenAI when a key (metadata or configured) or a configured
  base URL is available, otherwise the model-server.

Keys are wrapped in ``Secret`` and registered with the log redactors; they
never appear in a message, a log line, an error text or a metric.
"""

from __future__ import annotations

import logging
import math
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from xaimesh_runtime import metrics
from xaimesh_runtime.errors import InvalidArgument, ServiceError
from xaimesh_runtime.logging_setup import register_secret

from .llm import DEFAULT_OPENAI_BASE_URL, LLM, CallableLLM, OpenAIChatLLM
from .redaction import Secret, register

if TYPE_CHECKING:
    from .downstream import ModelGenerator

__all__ = ["CountedLLM", "LABEL_MAX_NEW_TOKENS", "LlmPolicy", "ModelServerSpec", "OpenAISpec",
           "caller_key", "check_base_url", "score_max_new_tokens"]

log = logging.getLogger("xaimesh_labeling.llm_policy")

DEFAULT_OPENAI_MODEL = "gpt-4.1-nano"
# Concurrent LLM calls of one request (max_concurrency 0): an endpoint's
# rate limits suit a few; the model-server decodes concurrent calls in one
# batch, so it gets as many as it batches.
DEFAULT_MAX_CONCURRENCY = 4
DEFAULT_MODEL_SERVER_CONCURRENCY = 16
DEFAULT_MAX_CONCURRENCY_CAP = 16
DEFAULT_OPENAI_TIMEOUT = 30.0
DEFAULT_OPENAI_RETRIES = 4
# Bounds of a request's OpenAI backend: past them a request could keep the
# service busy for hours (2^31 retries of a refused connection).
MAX_OPENAI_TIMEOUT = 600.0
MAX_OPENAI_RETRIES = 10
MAX_BASE_URL_CHARS = 2048
# The most tokens a request may let the LLM write per answer (OpenAI
# max_tokens, model-server max_new_tokens): labels and scores need far fewer.
MAX_GENERATED_TOKENS = 4096
# Model-server generation lengths: a label is at most 5 words; a scoring
# answer is a JSON list of excerpt numbers.
LABEL_MAX_NEW_TOKENS = 16  # a 1-5 word label; more only slows CPU generation

LLM_CALLS = metrics.counter("xaimesh_labeling_llm_calls_total",
                            "LLM calls of the labeling-service by backend and outcome (ok or a status code)",
                            ["backend", "outcome"])


def score_max_new_tokens(n_examples: int) -> int:
    """Enough for the longest answer to a scoring question on ``2 *
    n_examples`` excerpts, "[1, 2, ..., 2n]" at a token a digit, comma and
    space (plus 8 to spare), and no more: small local models ramble to the
    limit."""
    longest = 2 + sum(len(str(i)) + 2 for i in range(1, 2 * n_examples + 1))
    return min(MAX_GENERATED_TOKENS, longest + 8)


def simulation_max_new_tokens(n_samples: int) -> int:
    """Enough for a ConSim answer, a "Sample_{i}: {class}" line per sample
    at about 16 tokens a line."""
    return min(MAX_GENERATED_TOKENS, 16 * n_samples + 8)


@dataclass(frozen=True)
class OpenAISpec:
    """labeling.proto's OpenAIBackend (zero values = defaults)."""

    model: str = ""
    base_url: str = ""
    temperature: float = 0.0
    max_tokens: int = 0
    timeout_seconds: float = 0.0
    max_retries: int = 0


@dataclass(frozen=True)
class ModelServerSpec:
    """labeling.proto's ModelServerBackend (zero values = defaults)."""

    model: str = ""
    max_new_tokens: int = 0
    temperature: float = 0.0


def caller_key(text: str | None) -> Secret:
    """The call's own API key (``x-openai-api-key`` metadata), registered
    with the log redactors; empty = none."""
    secret = Secret((text or "").strip())
    if secret:
        register(secret)
        register_secret(secret.get())
    return secret


def _norm_url(url: str | None) -> str:
    return (url or "").strip().rstrip("/").lower()


def check_base_url(url: str, field: str) -> None:
    """A request's base_url is an http(s) URL of a sane length (empty = the default)."""
    url = (url or "").strip()
    if not url:
        return
    if len(url) > MAX_BASE_URL_CHARS:
        raise InvalidArgument(f"base_url is {len(url)} characters long; at most {MAX_BASE_URL_CHARS}", field=field)
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise InvalidArgument(f"base_url is not a URL ({exc})", field=field) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgument("base_url must be an http(s) URL such as http://localhost:8000/v1", field=field)


class CountedLLM:
    """Counts calls in ``xaimesh_labeling_llm_calls_total``; delegates the rest."""

    def __init__(self, llm: LLM, backend: str) -> None:
        self._llm = llm
        self._backend = backend

    @property
    def backend(self) -> str:
        """"openai" or "model-server"."""
        return self._backend

    def describe(self) -> str:
        return self._llm.describe()

    def complete(self, messages: Sequence[dict]) -> str:
        try:
            out = self._llm.complete(messages)
        except ServiceError as exc:
            LLM_CALLS.labels(self._backend, exc.code.name).inc()
            raise
        except Exception:
            LLM_CALLS.labels(self._backend, "UNKNOWN").inc()
            raise
        LLM_CALLS.labels(self._backend, "ok").inc()
        return out

    def close(self) -> None:
        close = getattr(self._llm, "close", None)
        if callable(close):
            close()

    def __repr__(self) -> str:
        return f"CountedLLM({self._llm!r})"


class LlmPolicy:
    """The service's LLM settings: its own key (``api_key``, empty = none),
    endpoint (``base_url``, empty = the official one), default OpenAI model
    and the most concurrent LLM calls of one request."""

    def __init__(self, api_key: str = "", base_url: str = "", openai_model: str = "",
                 max_concurrency: int | None = None) -> None:
        key = (api_key or "").strip()
        self._api_key = Secret(key)  # empty = no key
        if key:
            register(self._api_key)
            register_secret(key)
        self.base_url = (base_url or "").strip() or None
        self.openai_model = (openai_model or "").strip() or DEFAULT_OPENAI_MODEL
        self.max_concurrency = int(max_concurrency) if max_concurrency else DEFAULT_MAX_CONCURRENCY_CAP
        if self.max_concurrency < 1:
            raise ValueError("--max-concurrency must be at least 1")

    @property
    def has_key(self) -> bool:
        return bool(self._api_key)

    def __repr__(self) -> str:
        return (f"LlmPolicy(openai_base_url={self.base_url!r}, openai_api_key={'***' if self._api_key else None}, "
                f"max_concurrency={self.max_concurrency})")

    # -- concurrency -----------------------------------------------------------

    @staticmethod
    def check_concurrency(requested: int, field: str) -> None:
        if requested < 0:
            raise InvalidArgument(f"max_concurrency must be >= 0 (0 = {DEFAULT_MAX_CONCURRENCY} for an OpenAI "
                                  f"endpoint, {DEFAULT_MODEL_SERVER_CONCURRENCY} for the model-server)", field=field)

    def concurrency(self, requested: int, llm: object) -> int:
        """The calls in flight at once: the request's (0 = the backend's
        default), at most the service's cap."""
        default = (DEFAULT_MODEL_SERVER_CONCURRENCY if getattr(llm, "backend", "") == "model-server"
                   else DEFAULT_MAX_CONCURRENCY)
        return min(requested or default, self.max_concurrency)

    # -- the LLM ---------------------------------------------------------------

    def build(self, spec: OpenAISpec | ModelServerSpec | None, meta_key: Secret,
              model_server: Callable[[], ModelGenerator], *, max_new_tokens: int, seed: int = 0,
              field: str = "llm") -> CountedLLM:
        """The LLM of a request (see the module docstring). ``model_server``
        gives the model-server client, only when that backend is used;
        ``max_new_tokens``: the model-server's answer length when the spec
        says 0; ``field``: the request field of the backend ("llm", "scorer")."""
        if isinstance(spec, ModelServerSpec):
            return self._model_server_llm(spec, model_server, max_new_tokens, seed, field)
        if isinstance(spec, OpenAISpec):
            check_base_url(spec.base_url, f"{field}.openai.base_url")
            key, base_url = self._openai_target(spec.base_url, meta_key)
            if not key and _norm_url(base_url) in ("", _norm_url(DEFAULT_OPENAI_BASE_URL)):
                log.info("OpenAI backend requested without an API key (x-openai-api-key metadata or "
                         "--openai-api-key) nor a base_url: using the model-server's own model instead")
                return self._model_server_llm(ModelServerSpec(), model_server, max_new_tokens, seed, field)
            return self._openai_llm(spec, key, base_url, field)
        key, base_url = self._openai_target("", meta_key)
        if key or self.base_url:
            return self._openai_llm(OpenAISpec(), key, base_url, field)
        return self._model_server_llm(ModelServerSpec(), model_server, max_new_tokens, seed, field)

    def _openai_target(self, requested_base_url: str, meta_key: Secret) -> tuple[Secret, str | None]:
        """(key, base_url): the caller's key goes wherever the caller says;
        the service's key only to the service's own endpoint."""
        requested = (requested_base_url or "").strip() or None
        if meta_key:
            return meta_key, requested or self.base_url
        own = self.base_url or DEFAULT_OPENAI_BASE_URL
        if requested is None or _norm_url(requested) == _norm_url(own):
            return self._api_key, self.base_url or requested
        return Secret(""), requested

    def _openai_llm(self, oa: OpenAISpec, key: Secret, base_url: str | None, field: str) -> CountedLLM:
        where = f"{field}.openai"
        if oa.timeout_seconds < 0 or not math.isfinite(oa.timeout_seconds) or oa.timeout_seconds > MAX_OPENAI_TIMEOUT:
            raise InvalidArgument(f"timeout_seconds must be between 0 and {MAX_OPENAI_TIMEOUT:g} (0 = 30 s), "
                                  f"got {oa.timeout_seconds:g}", field=f"{where}.timeout_seconds")
        if oa.max_retries > MAX_OPENAI_RETRIES:
            raise InvalidArgument(f"max_retries must be at most {MAX_OPENAI_RETRIES} (0 = {DEFAULT_OPENAI_RETRIES}, "
                                  f"negative = none), got {oa.max_retries}", field=f"{where}.max_retries")
        if not 0 <= oa.max_tokens <= MAX_GENERATED_TOKENS:
            raise InvalidArgument(f"max_tokens must be between 0 and {MAX_GENERATED_TOKENS} (0 = the endpoint's "
                                  f"default; a label is a few words), got {oa.max_tokens}", field=f"{where}.max_tokens")
        if not math.isfinite(oa.temperature) or oa.temperature < 0:
            raise InvalidArgument("temperature must be >= 0", field=f"{where}.temperature")
        # 0 = the default (4); a negative value = no retries.
        retries = DEFAULT_OPENAI_RETRIES if oa.max_retries == 0 else max(0, int(oa.max_retries))
        llm = OpenAIChatLLM(
            model=oa.model.strip() or self.openai_model,
            api_key=key,
            base_url=base_url,
            temperature=float(oa.temperature),
            max_tokens=int(oa.max_tokens) or None,
            timeout_seconds=float(oa.timeout_seconds) or DEFAULT_OPENAI_TIMEOUT,
            max_retries=retries,
        )
        return CountedLLM(llm, "openai")

    @staticmethod
    def _model_server_llm(ms: ModelServerSpec, model_server: Callable[[], ModelGenerator],
                          default_max_new_tokens: int, seed: int, field: str) -> CountedLLM:
        where = f"{field}.model_server"
        if not 0 <= ms.max_new_tokens <= MAX_GENERATED_TOKENS:
            raise InvalidArgument(f"max_new_tokens must be between 0 and {MAX_GENERATED_TOKENS} (0 = "
                                  f"{default_max_new_tokens}; a label is a few words), got {ms.max_new_tokens}",
                                  field=f"{where}.max_new_tokens")
        if not math.isfinite(ms.temperature) or ms.temperature < 0:
            raise InvalidArgument("temperature must be >= 0", field=f"{where}.temperature")
        generator = model_server()
        model_id = generator.resolve_model(ms.model)
        max_new = int(ms.max_new_tokens) or default_max_new_tokens
        temperature = float(ms.temperature)

        def generate(messages: list[dict[str, str]]) -> str:
            return generator.generate(model_id, messages, max_new_tokens=max_new, temperature=temperature,
                                      seed=int(seed))

        return CountedLLM(CallableLLM(generate, f"model-server:{model_id}"), "model-server")
