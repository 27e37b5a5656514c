"""Calling one service: channel, stub, error mapping, progress-bar streams."""

from __future__ import annotations

import contextlib
import os
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
        bar = None
        try:
            for event in call:
                kind = event.WhichOneof("event") if _has_event(event) else None
                if kind == "progress":
                    progress = event.progress
                    if on_progress is not None:
                        on_progress(progress)
                    if show_progress and progress_enabled():
                        bar = _update_bar(bar, progress, description or method)
                    continue
                yield event
        except grpc.RpcError as error:
            raise from_rpc_error(error, self.service, self.address) from None
        finally:
            call.cancel()
            if bar is not None:
                bar.close()

    def close(self) -> None:
        self.channel.close()


def _has_event(message) -> bool:
    return any(o.name == "event" for o in message.DESCRIPTOR.oneofs)


def progress_enabled() -> bool:
    return os.environ.get("XAIMESH_PROGRESS", "1") not in ("0", "false", "no")


def _update_bar(bar, progress, description):
    from tqdm.auto import tqdm

    total = progress.total or None
    if bar is None:
        bar = tqdm(total=total, desc=progress.stage or description, leave=False)
    elif total and bar.total != total:
        bar.total = total
    if progress.stage and bar.desc != progress.stage:
        bar.set_description(progress.stage)
    bar.n = progress.done
    if progress.message:
        bar.set_postfix_str(progress.message, refresh=False)
    bar.refresh()
    return bar


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
