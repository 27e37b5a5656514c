"""Logging: JSON lines or text on stderr, with secrets redacted.

``configure_logging`` installs one handler on the root logger (calling it
again replaces it). Its :class:`RedactFilter` rewrites every record so that
bearer tokens, ``sk-...`` API keys, ``api_key=...``-style assignments and any
value registered with :func:`register_secret` never reach the output, the
formatted exception text included.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import re
import sys
import threading
from collections.abc import Iterable
from typing import IO, Any

__all__ = ["JsonFormatter", "RedactFilter", "configure_logging", "redact", "register_secret"]

REDACTED = "[REDACTED]"
_PATTERNS = [
    # "Bearer abc.def" in headers, metadata dumps, exception texts.
    (re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9\-._~+/]+=*"), r"\1" + REDACTED),
    # OpenAI-style keys (sk-..., sk-proj-...).
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"), "sk-" + REDACTED),
    # api_key=..., "auth_token": "...", password: ...
    (re.compile(r"(?i)(\b(?:api[_-]?key|auth[_-]?token|access[_-]?token|client[_-]?secret|password|secret)"
                r"[\"']?\s*[:=]\s*[\"']?)[^\s\"',;}]+"), r"\1" + REDACTED),
]
_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_HANDLER_MARK = "_xaimesh_handler"


def register_secret(value: str | None) -> None:
    """Redact this exact value from every log line from now on."""
    if value and len(value) >= 4:
        with _secrets_lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """``text`` with anything that looks like a credential replaced."""
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactFilter(logging.Filter):
    """Rewrites a record's message (and exception text) with :func:`redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what we have
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


# Attributes every LogRecord has; anything else came from `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, service, and
    any ``extra=`` fields; ``exc`` holds the traceback when there is one."""

    def __init__(self, service: str | None = None) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _dt.datetime.fromtimestamp(record.created, _dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.service:
            entry["service"] = self.service
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        return redact(json.dumps(entry, default=str, ensure_ascii=False))


def configure_logging(level: str | int = "INFO", fmt: str = "text", *, service: str | None = None,
                      secrets: Iterable[str | None] = (), stream: IO[str] | None = None) -> logging.Handler:
    """Send all logs to ``stream`` (stderr) as ``fmt`` ("json" or "text").

    Idempotent: replaces the handler a previous call installed and leaves
    other handlers (e.g. pytest's) alone. Returns the installed handler.
    """
    for secret in secrets:
        register_secret(secret)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    setattr(handler, _HANDLER_MARK, True)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        prefix = f"{service} " if service else ""
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {prefix}%(name)s: %(message)s"))
    handler.addFilter(RedactFilter())
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    # grpc's own chatter is rarely useful at INFO.
    logging.getLogger("grpc").setLevel(max(root.level, logging.WARNING))
    return handler
