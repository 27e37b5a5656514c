"""Fixtures of the runtime tests: an in-process echo server on 127.0.0.1:0."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
for extra in (HERE, ROOT / "services"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from rt_echo_service import EchoServicer  # noqa: E402
from xaimesh_runtime.config import ServerConfig  # noqa: E402
from xaimesh_runtime.server import ServerHandle, start_server  # noqa: E402


@pytest.fixture
def start_echo() -> Iterator[Callable[..., ServerHandle]]:
    """``start_echo(warmup=None, **config_fields) -> ServerHandle``; every
    server started is stopped at teardown."""
    handles: list[ServerHandle] = []

    def start(warmup=None, servicer: EchoServicer | None = None, **fields) -> ServerHandle:
        fields.setdefault("host", "127.0.0.1")
        fields.setdefault("port", 0)
        fields.setdefault("metrics_port", -1)
        fields.setdefault("workers", 4)
        fields.setdefault("grace_seconds", 0)
        config = ServerConfig(service="echo", **fields)
        handle = start_server(config, (servicer or EchoServicer()).register, warmup=warmup)
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        handle.stop(grace=0)
