"""A real in-process gRPC server on 127.0.0.1:0 with the echo test service."""

from __future__ import annotations

import logging
import re
import threading
import urllib.request

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from prometheus_client import REGISTRY

from rt_echo_service import SERVICE
from xaimesh_runtime.client import make_channel, remaining_timeout, wait_for_health

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def call(channel, method, payload=b"", **kwargs):
    return channel.unary_unary(f"/{SERVICE}/{method}")(payload, timeout=5, **kwargs)


def stream(channel, method, payload=b"", **kwargs):
    return list(channel.unary_stream(f"/{SERVICE}/{method}")(payload, timeout=5, **kwargs))


def health_status(channel, service=""):
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def test_health_not_serving_until_warmup_done(start_echo):
    loaded = threading.Event()
    handle = start_echo(warmup=loaded.wait)
    with make_channel(handle.address) as channel:
        assert health_status(channel) == NOT_SERVING
        assert health_status(channel, SERVICE) == NOT_SERVING
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=SERVICE), timeout=5)
        assert next(watch).status == NOT_SERVING
        with pytest.raises(TimeoutError, match="not SERVING after 0.2 s \\(last: NOT_SERVING\\)"):
            wait_for_health(channel, timeout=0.2)
        loaded.set()
        assert handle.wait_ready(5)
        assert next(watch).status == SERVING
        watch.cancel()
        assert health_status(channel) == SERVING
        assert health_status(channel, SERVICE) == SERVING
        with pytest.raises(grpc.RpcError) as info:
            health_status(channel, "no.such.Service")
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        wait_for_health(handle.address, timeout=5)
        assert call(channel, "Echo", b"hi") == b"hi"
        handle.set_serving(False, SERVICE)
        assert health_status(channel, SERVICE) == NOT_SERVING


def test_warmup_event_and_failure(start_echo, caplog):
    ready = threading.Event()
    handle = start_echo(warmup=ready)
    assert not handle.wait_ready(0.1)
    ready.set()
    assert handle.wait_ready(5)

    def broken():
        raise RuntimeError("could not load the model")

    with caplog.at_level(logging.CRITICAL, logger="xaimesh_runtime.server"):
        failed = start_echo(warmup=broken)
        assert not failed.wait_ready(5)
    assert isinstance(failed.warmup_error, RuntimeError) and failed.exit_code == 1
    assert "warm-up failed" in caplog.text
    with make_channel(failed.address) as channel:
        assert health_status(channel) == NOT_SERVING


def test_reflection_lists_services(start_echo):
    handle = start_echo()
    with make_channel(handle.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                            timeout=5)
        names = {s.name for s in next(iter(replies)).list_services_response.service}
    assert names == {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}


def test_bearer_token_auth(start_echo):
    handle = start_echo(auth_token="t0ken-abc")
    assert handle.wait_ready(5)
    with make_channel(handle.address) as anonymous:
        for metadata in (None, [("authorization", "Bearer wrong")], [("authorization", "t0ken-abc")]):
            with pytest.raises(grpc.RpcError) as info:
                call(anonymous, "Echo", b"x", metadata=metadata)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert info.value.details() == "missing or invalid bearer token"
        with pytest.raises(grpc.RpcError) as info:
            stream(anonymous, "Count", b"3")
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # health and reflection stay open
        assert health_status(anonymous) == SERVING
        for method in ("Join", "Upper"):
            with pytest.raises(grpc.RpcError) as info:
                list(anonymous.stream_stream(f"/{SERVICE}/{method}")(iter([b"a"]), timeout=5))
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        refl = reflection_pb2_grpc.ServerReflectionStub(anonymous).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
        assert next(iter(refl)).list_services_response.service
        # unknown methods stay UNIMPLEMENTED
        with pytest.raises(grpc.RpcError) as info:
            call(anonymous, "Nope")
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with make_channel(handle.address, token="t0ken-abc") as channel:
        assert call(channel, "Echo", b"x") == b"x"
        assert stream(channel, "Count", b"3") == [b"0", b"1", b"2"]
        join = channel.stream_unary(f"/{SERVICE}/Join")
        upper = channel.stream_stream(f"/{SERVICE}/Upper")
        assert join(iter([b"a", b"b"]), timeout=5) == b"a+b"
        assert list(upper(iter([b"a", b"b"]), timeout=5)) == [b"A", b"B"]
        # an explicit header is replaced, not duplicated
        assert call(channel, "Echo", b"y", metadata=[("authorization", "Bearer wrong")]) == b"y"


def _error(channel, kind):
    with pytest.raises(grpc.RpcError) as info:
        call(channel, "Fail", kind.encode())
    err = info.value
    status = rpc_status.from_call(err)
    violations = []
    for detail in (status.details if status else []):
        bad = error_details_pb2.BadRequest()
        assert detail.Unpack(bad)
        violations += [(v.field, v.description) for v in bad.field_violations]
    return err.code(), err.details(), violations


def test_error_mapping(start_echo, caplog):
    handle = start_echo()
    with make_channel(handle.address) as channel, caplog.at_level(logging.ERROR):
        assert _error(channel, "tensor") == (grpc.StatusCode.INVALID_ARGUMENT,
                                             "embeddings.shape: expected 3 dimensions, got 2",
                                             [("embeddings.shape", "expected 3 dimensions, got 2")])
        assert _error(channel, "value") == (grpc.StatusCode.INVALID_ARGUMENT,
                                            "split point 40 is out of range: model has 30 layers", [])
        assert _error(channel, "field") == (grpc.StatusCode.INVALID_ARGUMENT,
                                            "must be at least 1", [("parameters.n_steps", "must be at least 1")])
        assert _error(channel, "notfound") == (grpc.StatusCode.NOT_FOUND, "model 'gpt5' is not loaded", [])
        assert _error(channel, "abort") == (grpc.StatusCode.FAILED_PRECONDITION, "fit the model first",
                                            [("concept_model", "not fitted")])
        for kind, hidden in (("runtime", "secret internal detail"), ("keyerror", "raw dict miss"),
                             ("plain-value", "could not be broadcast")):
            code, details, violations = _error(channel, kind)
            assert code == grpc.StatusCode.INTERNAL and not violations
            match = re.fullmatch(r"internal error ([0-9a-f]{12}) in EchoServicer\.Fail: a bug of this service, "
                                 r"not of the request; quote error id \1 when reporting it "
                                 r"\(its traceback is in the service log\)", details)
            assert match, details
            assert hidden not in details and "Traceback" not in details
            error_id = match.group(1)
            assert f"error id {error_id}" in caplog.text and hidden in caplog.text  # the traceback stays in the log
        assert "Traceback" in caplog.text
        # a request that asks for more memory than there is: RESOURCE_EXHAUSTED, not INTERNAL
        code, details, _ = _error(channel, "memory")
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert details.startswith("not enough memory for this request (Unable to allocate 480. GiB")

        with pytest.raises(grpc.RpcError) as info:
            channel.stream_unary(f"/{SERVICE}/Join")(iter([b"ok", b"bad"]), timeout=5)
        assert (info.value.code(), info.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "a part is bad")

        # server-streaming: items, then the mapped error
        responses = channel.unary_stream(f"/{SERVICE}/Count")(b"2:bad input", timeout=5)
        received = []
        with pytest.raises(grpc.RpcError) as info:
            for item in responses:
                received.append(item)
        assert received == [b"0", b"1"]
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details() == "stopped after 2: bad input"


def _sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_metrics_endpoint_counts_calls(start_echo):
    handle = start_echo(metrics_port=0)
    assert handle.metrics_port and handle.metrics_port > 0
    echo, count, fail = (f"/{SERVICE}/{m}" for m in ("Echo", "Count", "Fail"))
    before = (_sample("xaimesh_grpc_requests_total", method=echo, code="OK"),
              _sample("xaimesh_grpc_requests_total", method=count, code="OK"),
              _sample("xaimesh_grpc_requests_total", method=fail, code="INVALID_ARGUMENT"),
              _sample("xaimesh_grpc_request_duration_seconds_count", method=echo))
    with make_channel(handle.address) as channel:
        for _ in range(3):
            call(channel, "Echo", b"x")
        stream(channel, "Count", b"4")
        _error(channel, "value")
        health_status(channel)  # not counted
    expected = (before[0] + 3, before[1] + 1, before[2] + 1, before[3] + 3)
    # the callbacks that count a call run right after it ends: allow a moment
    for _ in range(50):
        after = (_sample("xaimesh_grpc_requests_total", method=echo, code="OK"),
                 _sample("xaimesh_grpc_requests_total", method=count, code="OK"),
                 _sample("xaimesh_grpc_requests_total", method=fail, code="INVALID_ARGUMENT"),
                 _sample("xaimesh_grpc_request_duration_seconds_count", method=echo))
        if after == expected:
            break
        threading.Event().wait(0.05)
    assert after == expected
    body = urllib.request.urlopen(f"http://127.0.0.1:{handle.metrics_port}/metrics", timeout=5).read().decode()
    assert f'xaimesh_grpc_requests_total{{code="OK",method="{echo}"}}' in body
    assert "xaimesh_grpc_request_duration_seconds_bucket" in body
    assert "grpc.health.v1" not in body
    assert "xaimesh_queue_depth" in body or "xaimesh_batch_size" in body


def test_cancelled_stream_is_counted(start_echo):
    handle = start_echo()
    method = f"/{SERVICE}/Count"
    before = _sample("xaimesh_grpc_requests_total", method=method, code="CANCELLED")
    with make_channel(handle.address) as channel:
        responses = channel.unary_stream(method)(b"100000", timeout=5)
        next(responses)
        responses.cancel()
    for _ in range(100):
        if _sample("xaimesh_grpc_requests_total", method=method, code="CANCELLED") == before + 1:
            break
        threading.Event().wait(0.05)
    assert _sample("xaimesh_grpc_requests_total", method=method, code="CANCELLED") == before + 1
    assert _sample("xaimesh_grpc_in_flight_requests", method=method) == 0


def test_stop_is_graceful_and_idempotent(start_echo):
    from rt_echo_service import EchoServicer

    servicer = EchoServicer()
    handle = start_echo(servicer=servicer, grace_seconds=5)
    with make_channel(handle.address) as channel:
        future = channel.unary_unary(f"/{SERVICE}/Sleep").future(b"0.5", timeout=10)
        assert servicer.started.wait(5)
        handle.stop()
        assert future.result() == b"slept"  # the open call finished within the grace
        assert handle.wait(0)
        with pytest.raises(grpc.RpcError):
            call(channel, "Echo", b"x")
    handle.stop()


def test_port_in_use_is_reported(start_echo):
    first = start_echo()
    with pytest.raises(OSError, match="cannot bind 127.0.0.1:"):
        start_echo(port=first.port)


class FakeContext:
    def __init__(self, remaining):
        self.remaining = remaining

    def time_remaining(self):
        return self.remaining


def test_remaining_timeout():
    assert remaining_timeout(FakeContext(10.0), margin=0.5) == 9.5
    assert remaining_timeout(FakeContext(0.1), margin=0.5) == 0.0
    assert remaining_timeout(FakeContext(1e15), default=30) == 30  # no deadline
    assert remaining_timeout(FakeContext(None)) is None
    assert remaining_timeout(None, default=3) == 3


def test_remaining_timeout_inside_a_call(start_echo):
    seen = {}

    from rt_echo_service import EchoServicer

    class Probe(EchoServicer):
        def Echo(self, request, context):
            seen["t"] = remaining_timeout(context, default=-1.0)
            return request

    handle = start_echo(servicer=Probe())
    with make_channel(handle.address) as channel:
        channel.unary_unary(f"/{SERVICE}/Echo")(b"", timeout=3)
        # the wire carries the timeout rounded to a unit, so the server may see a hair more than 3 s
        assert 2 < seen["t"] <= 3.1
        channel.unary_unary(f"/{SERVICE}/Echo")(b"")
        assert seen["t"] == -1.0
