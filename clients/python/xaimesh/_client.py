"""Calling one service: channel, stub, error mapping, progress-bar streams."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from xaimesh.errors import from_rpc_error
from xaimesh_contracts.channels import make_channel


class ServiceClient:
    """A stub of one service plus what every call needs.

    `call` runs a unary RPC; `stream` runs a server-streaming RPC, feeds its
    `progress` events to a tqdm bar (when `show_progress`) and yields the other
    events. gRPC errors become `XaimeshError`s naming the service.
    """

    def __init__(self, service: str, address: str, stub_class, *, token: str | None = None,
                 tls_ca: str | None = None, tls_cert: str | None = None, tls_key: str | None = None,
                 timeout: float | None = None):
        self.service = service
        self.address = address
        self.timeout = timeout
        self.channel = make_channel(address, token=token, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key)
        self.stub = stub_class(self.channel)

    def call(self, method: str, request, *, timeout: float | None = None):
        try:
            return getattr(self.stub, method)(request, timeout=timeout or self.timeout)
        except grpc.RpcError as error:
            raise from_rpc_error(error, self.service, self.address) from None

    def stream(self, method: str, request, *, timeout: float | None = None,
               show_progress: bool = True, description: str | None = None,
               on_progress: Callable[[Any], None] | None = None) -> Iterator[Any]:
        """Yields non-progress events; cancels the call if the consumer stops early."""
        call = getattr(self.stub, method)(request, timeout=timeout or self.timeout)
        bar = StageBars(description or method)
        try:
            for event in call:
                kind = event.WhichOneof("event") if _has_event(event) else None
                if kind == "progress":
                    progress = event.progress
                    if on_progress is not None:
                        on_progress(progress)
                    if show_progress and progress_enabled():
                        bar.update(progress)
                    continue
                yield event
        except grpc.RpcError as error:
            raise from_rpc_error(error, self.service, self.address) from None
        finally:
            call.cancel()
            bar.close()

    def close(self) -> None:
        self.channel.close()


def _has_event(message) -> bool:
    return any(o.name == "event" for o in message.DESCRIPTOR.oneofs)


def progress_enabled() -> bool:
    return os.environ.get("XAIMESH_PROGRESS", "1") not in ("0", "false", "no")


#: A stage's rate (items/s) is shown once its bar has run this long: a
#: stage that finishes at once would otherwise show millions of items per second.
RATE_AFTER_SECONDS = 1.0
_NO_RATE = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"
_NO_RATE_NO_TOTAL = "{desc}: {n_fmt} [{elapsed}{postfix}]"


class StageBars:
    """One tqdm bar per stage of a stream's `progress` events: a new stage
    gets a new bar (its own clock), progress advances it by the items done
    since the last event, and the rate appears only once the stage has run
    RATE_AFTER_SECONDS."""

    def __init__(self, description: str, file=None):
        self.description = description
        self.file = file
        self.bar = None
        self.stage = None
        self.started = 0.0

    def update(self, progress) -> None:
        from tqdm.auto import tqdm

        stage = progress.stage or self.description
        total = progress.total or None
        if self.bar is None or stage != self.stage:
            self.close()
            self.bar = tqdm(total=total, desc=stage, leave=False, file=self.file,
                            bar_format=_NO_RATE if total else _NO_RATE_NO_TOTAL)
            self.stage, self.started = stage, time.monotonic()
        elif total and self.bar.total != total:
            self.bar.total = total
        if self.bar.bar_format is not None and time.monotonic() - self.started >= RATE_AFTER_SECONDS:
            self.bar.bar_format = None  # tqdm's default format, with the rate
        if progress.message:
            self.bar.set_postfix_str(progress.message, refresh=False)
        if progress.done >= self.bar.n:
            self.bar.update(progress.done - self.bar.n)
        else:  # a stage that starts over
            self.bar.n = progress.done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@contextlib.contextmanager
def quiet_progress():
    """Temporarily turns progress bars off (tests, scripts)."""
    old = os.environ.get("XAIMESH_PROGRESS")
    os.environ["XAIMESH_PROGRESS"] = "0"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("XAIMESH_PROGRESS", None)
        else:
            os.environ["XAIMESH_PROGRESS"] = old
