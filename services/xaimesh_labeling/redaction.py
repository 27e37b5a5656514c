"""Keeping API keys out of logs, exception texts and reprs.

``Secret`` wraps a key so that ``repr``/``str`` never show it. Registered
secrets (``register``) are replaced by ``***`` in every log record created in
the process (a log-record factory, installed once, that chains to the previous
one), whatever the logger: ours, ``openai``, ``httpx2``, ``httpcore2``...
``redact`` does the same for any text we build (error messages).
"""

from __future__ import annotations

import logging
import re
import threading
import weakref

_REDACTED = "***"
# OpenAI-style keys, also the partly masked forms servers echo back in 401
# messages ("sk-abc1*********wxyz").
_KEY_PATTERN = re.compile(r"\b(?:sk|rk|pk)-[A-Za-z0-9_\-*]{6,}")
# Userinfo in URLs: https://user:pass@host/ -> https://***@host/
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")

_lock = threading.Lock()
_registered: dict[str, int] = {}
_factory_installed = False


class Secret:
    """A string that does not show itself. ``get()`` returns the value."""

    __slots__ = ("_value", "__weakref__")

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __reduce__(self):  # never pickle a key by accident
        raise TypeError("Secret values cannot be pickled")


def redact(text: str, extra: tuple[str, ...] = ()) -> str:
    """Replaces registered secrets, ``extra`` values, key-like tokens and URL
    userinfo in ``text``."""
    if not text:
        return text
    with _lock:
        secrets = list(_registered)
    for s in (*secrets, *extra):
        if s and s in text:
            text = text.replace(s, _REDACTED)
    text = _KEY_PATTERN.sub(_REDACTED, text)
    return _URL_USERINFO.sub(lambda m: m.group("scheme") + _REDACTED + "@", text)


def strip_url_userinfo(url: str) -> str:
    return _URL_USERINFO.sub(lambda m: m.group("scheme"), url)


def register(secret: Secret) -> None:
    """Redacts ``secret`` from every log record until ``secret`` is garbage
    collected (or ``unregister`` is called as many times as ``register``)."""
    value = secret.get()
    if not value:
        return
    with _lock:
        _registered[value] = _registered.get(value, 0) + 1
    _install_record_factory()
    weakref.finalize(secret, _release, value)


def _release(value: str) -> None:
    with _lock:
        n = _registered.get(value, 0) - 1
        if n <= 0:
            _registered.pop(value, None)
        else:
            _registered[value] = n


def _install_record_factory() -> None:
    global _factory_installed
    with _lock:
        if _factory_installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args, **kwargs):
            record = previous(*args, **kwargs)
            try:
                _scrub(record)
            except Exception:  # never break logging
                pass
            return record

        logging.setLogRecordFactory(factory)
        _factory_installed = True


def _contains_secret(text: str) -> bool:
    with _lock:
        secrets = list(_registered)
    return any(s in text for s in secrets) or bool(_KEY_PATTERN.search(text))


def _scrub(record: logging.LogRecord) -> None:
    if not _registered:
        return
    try:
        message = record.getMessage()
    except Exception:
        message = str(record.msg)
    if _contains_secret(message):
        record.msg = redact(message)
        record.args = None
    if record.exc_info and record.exc_info[1] is not None:
        formatted = logging.Formatter().formatException(record.exc_info)
        if _contains_secret(formatted):
            record.exc_text = redact(formatted)
    if record.stack_info and _contains_secret(record.stack_info):
        record.stack_info = redact(record.stack_info)
