"""Log redaction and the `xaimesh` command."""

from __future__ import annotations

import io
import json
import logging
import sys
import types

import pytest

from xaimesh_runtime import cli
from xaimesh_runtime.logging_setup import configure_logging, redact, register_secret


@pytest.mark.parametrize("text,leak", [
    ("metadata: authorization: Bearer abc.DEF-123_xyz=", "abc.DEF-123_xyz"),
    ("using key sk-proj-AbCdEf1234567890", "AbCdEf1234567890"),
    ("config {'api_key': 'qwerty12345'}", "qwerty12345"),
    ("OPENAI api-key=zzz999 password: hunter2", "hunter2"),
])
def test_redact(text, leak):
    assert leak not in redact(text)
    assert "[REDACTED]" in redact(text)


def test_redact_keeps_ordinary_text():
    text = "split at token=5 for model sk-short and tokens: 12"
    assert redact(text) == text


@pytest.fixture
def logger_stream():
    stream = io.StringIO()
    root = logging.getLogger()
    old_level = root.level
    yield stream
    for handler in list(root.handlers):
        if getattr(handler, "_xaimesh_handler", False):
            root.removeHandler(handler)
    root.setLevel(old_level)


def test_json_logs_are_redacted(logger_stream):
    configure_logging("INFO", "json", service="model", secrets=["plain-secret-value"], stream=logger_stream)
    log = logging.getLogger("xaimesh.test")
    log.info("token is %s", "plain-secret-value", extra={"request_id": "r1"})
    try:
        raise RuntimeError("failed with Bearer leaked.token")
    except RuntimeError:
        log.exception("boom")
    log.debug("hidden")
    lines = [json.loads(line) for line in logger_stream.getvalue().splitlines()]
    assert len(lines) == 2
    assert lines[0]["message"] == "token is [REDACTED]" and lines[0]["service"] == "model"
    assert lines[0]["request_id"] == "r1" and lines[0]["level"] == "INFO"
    assert "Traceback" in lines[1]["exc"] and "leaked.token" not in lines[1]["exc"]


def test_text_logs_and_reconfigure(logger_stream):
    configure_logging("DEBUG", "json", stream=io.StringIO())
    configure_logging("DEBUG", "text", service="concept", stream=logger_stream)
    register_secret("another-secret")
    logging.getLogger("x").debug("value another-secret")
    out = logger_stream.getvalue()
    assert "DEBUG concept x: value [REDACTED]" in out
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_xaimesh_handler", False)]
    assert len(ours) == 1


def test_cli_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "serve" in out and "version" in out
    assert cli.main(["version"]) == 0


def test_cli_serve_dispatches_lazily(monkeypatch):
    calls = []
    fake = types.ModuleType("fake_service_main")
    fake.main = lambda argv: calls.append(argv) or 0
    monkeypatch.setitem(sys.modules, "fake_service_main", fake)
    monkeypatch.setitem(cli.SERVICES, "model", ("fake_service_main", "model"))
    assert cli.main(["serve", "model", "--port", "0", "--help"]) == 0
    assert calls == [["--port", "0", "--help"]]


def test_cli_missing_service_names_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(cli.SERVICES, "labeling", ("xaimesh_no_such_pkg.__main__", "labeling"))
    assert cli.main(["serve", "labeling"]) == 2
    err = capsys.readouterr().err
    assert "the labeling service is not installed" in err and "pip install 'xaimesh[labeling]'" in err


def test_cli_missing_dependency_names_the_extra(monkeypatch, capsys):
    broken = types.ModuleType("broken_service_main")
    monkeypatch.setitem(cli.SERVICES, "concept", ("broken_service_main", "concept"))

    def fail(name):
        raise ModuleNotFoundError("No module named 'sklearn'", name="sklearn")

    monkeypatch.setattr(cli.importlib, "import_module", fail)
    assert cli.main(["serve", "concept"]) == 2
    err = capsys.readouterr().err
    assert "needs the module 'sklearn'" in err and "xaimesh[concept]" in err
    del broken


def test_cli_unknown_service(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["serve", "nope"])
    assert info.value.code == 2
