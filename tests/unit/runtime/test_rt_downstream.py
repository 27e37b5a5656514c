"""Server-to-server calls: a failed downstream call names the service that
failed and its address, keeps its code and field violations, and reaches the
caller through ``map_errors`` with that code."""

from __future__ import annotations

import socket

import grpc
import pytest

from rt_echo_service import SERVICE, EchoServicer
from xaimesh_runtime.client import downstream_stub, make_channel
from xaimesh_runtime.errors import DownstreamError, map_errors


class EchoStub:
    """What grpc_tools would generate for the echo service."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.Fail = channel.unary_unary(f"/{SERVICE}/Fail")
        self.Count = channel.unary_stream(f"/{SERVICE}/Count")


def closed_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_an_unreachable_downstream_is_named_with_its_address_and_setting():
    address = closed_address()
    with make_channel(address) as channel:
        stub = downstream_stub(EchoStub(channel), "model-server", address)
        with pytest.raises(DownstreamError) as info:
            stub.Fail(b"value", timeout=5)
    assert info.value.code == grpc.StatusCode.UNAVAILABLE
    assert f"the model-server at {address} is unavailable" in info.value.message
    assert "--model-server-address / XAIMESH_MODEL_SERVER" in info.value.message


def test_a_downstream_refusal_keeps_its_code_and_fields(start_echo):
    handle = start_echo()
    with make_channel(handle.address) as channel:
        stub = downstream_stub(EchoStub(channel), "concept-service", handle.address)
        with pytest.raises(DownstreamError) as info:
            stub.Fail(b"tensor", timeout=5)
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.message.startswith("concept-service: ")
        assert info.value.field_violations == [("embeddings.shape", "expected 3 dimensions, got 2")]
        # a stream: the replies before the failure arrive, then the named error
        call = stub.Count(b"2:bad input", timeout=5)
        assert [next(call), next(call)] == [b"0", b"1"]
        with pytest.raises(DownstreamError) as info:
            next(call)
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "stopped after 2: bad input" in info.value.message
        # the rest of the call object is the call's own
        assert call.code() == grpc.StatusCode.INVALID_ARGUMENT
        call.cancel()


class Relay(EchoServicer):
    """A service in the middle: its Echo calls a downstream that is gone."""

    def __init__(self, address: str, named: bool) -> None:
        super().__init__()
        self.channel = make_channel(address)
        stub = EchoStub(self.channel)
        self.stub = downstream_stub(stub, "model-server", address) if named else stub

    @map_errors()
    def Echo(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        return self.stub.Fail(b"value", timeout=5)


@pytest.mark.parametrize("named", [True, False])
def test_the_caller_learns_which_service_went_away(start_echo, named):
    address = closed_address()
    relay = Relay(address, named)
    handle = start_echo(servicer=relay)
    try:
        with make_channel(handle.address) as channel:
            with pytest.raises(grpc.RpcError) as info:
                channel.unary_unary(f"/{SERVICE}/Echo")(b"", timeout=10)
    finally:
        relay.channel.close()
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    if named:
        assert f"the model-server at {address} is unavailable" in info.value.details()
    else:  # a plain stub: the code still travels, and the message says it was a downstream
        assert info.value.details().startswith("the service this one calls is unavailable")
