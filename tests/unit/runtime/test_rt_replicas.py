"""Several replicas behind one downstream address (xaimesh_runtime.replicas):
round-robin, a per-replica in-flight limit, a call sent again to another
replica when one is UNAVAILABLE (and only then), dns:/// names followed."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from rt_echo_service import SERVICE, EchoServicer
from test_rt_downstream import closed_address
from xaimesh_runtime.config import Downstream
from xaimesh_runtime.errors import DownstreamError
from xaimesh_runtime.replicas import ReplicaPool, expand_targets


class CountingEcho(EchoServicer):
    """Counts the calls it serves and the most it served at once."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.served = self.now = self.most = 0

    def _enter(self) -> None:
        with self.lock:
            self.served += 1
            self.now += 1
            self.most = max(self.most, self.now)

    def _leave(self) -> None:
        with self.lock:
            self.now -= 1

    def _counted(self, method, request, context):
        self._enter()
        try:
            return method(request, context)
        finally:
            self._leave()

    def Echo(self, request, context):
        return self._counted(super().Echo, request, context)

    def Sleep(self, request, context):
        return self._counted(super().Sleep, request, context)


class Echo:
    """A stub of the echo service's methods used here."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.Echo = channel.unary_unary(f"/{SERVICE}/Echo")
        self.Sleep = channel.unary_unary(f"/{SERVICE}/Sleep")
        self.Fail = channel.unary_unary(f"/{SERVICE}/Fail")
        self.Count = channel.unary_stream(f"/{SERVICE}/Count")


@pytest.fixture
def two_replicas(start_echo):
    servicers = [CountingEcho(), CountingEcho()]
    handles = [start_echo(servicer=s) for s in servicers]
    return servicers, handles


@pytest.fixture
def pools():
    made: list[ReplicaPool] = []

    def make(*addresses: str, **kwargs) -> ReplicaPool:
        pool = ReplicaPool(Downstream(",".join(addresses)), service="model-server", **kwargs)
        made.append(pool)
        return pool

    yield make
    for pool in made:
        pool.close()


def test_targets_expand_to_replicas():
    resolve = {"model-server:50051": ["10.0.0.7:50051", "10.0.0.8:50051"]}.__getitem__
    assert expand_targets("a:1, b:2,a:1", resolve) == [("a:1", ""), ("b:2", "")]
    assert expand_targets("dns:///model-server:50051", resolve) == [
        ("10.0.0.7:50051", "model-server"), ("10.0.0.8:50051", "model-server")]
    with pytest.raises(ValueError, match="no replica"):
        expand_targets(" , ", resolve)


def test_calls_go_round_robin_over_the_replicas(two_replicas, pools):
    servicers, handles = two_replicas
    stub = pools(*(h.address for h in handles)).stub(Echo)
    for i in range(10):
        assert stub.Echo(str(i).encode(), timeout=5) == str(i).encode()
    assert [s.served for s in servicers] == [5, 5]


def test_an_unavailable_replica_costs_a_retry_on_another(two_replicas, pools):
    servicers, handles = two_replicas
    gone = closed_address()
    pool = pools(gone, handles[0].address)
    stub = pool.stub(Echo)
    for i in range(6):
        assert stub.Echo(b"x", timeout=5) == b"x"
        assert stub.Count(b"2", timeout=5).__next__() == b"0"  # a stream that delivered nothing yet is retried too
    assert servicers[0].served == 6
    down = next(r for r in pool.replicas if r.address == gone)
    # tried once, then left out of the rotation while it keeps failing
    assert down.calls == 1 and down.failures == 1 and down.in_flight == 0


def test_a_replica_stopped_mid_call_is_retried_elsewhere(start_echo, pools):
    slow, other = CountingEcho(), CountingEcho()
    handles = [start_echo(servicer=slow), start_echo(servicer=other)]
    pool = pools(handles[0].address, handles[1].address)
    future = pool.stub(Echo).Sleep.future(b"0.5", timeout=10)
    result: list = []
    thread = threading.Thread(target=lambda: result.append(future.result()))
    thread.start()
    assert slow.started.wait(5)
    handles[0].stop(grace=0)  # the replica goes away with the call in flight
    thread.join(10)
    assert result == [b"slept"]
    assert other.served == 1
    assert [r.in_flight for r in pool.replicas] == [0, 0]


def test_only_unavailable_is_retried(two_replicas, pools):
    servicers, handles = two_replicas
    pool = pools(*(h.address for h in handles))
    with pytest.raises(DownstreamError) as info:
        pool.stub(Echo).Fail(b"field", timeout=5)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert sum(r.calls for r in pool.replicas) == 1


def test_every_replica_gone_is_unavailable_naming_one(pools):
    gone = [closed_address(), closed_address()]
    with pytest.raises(DownstreamError) as info:
        pools(*gone).stub(Echo).Echo(b"x", timeout=5)
    assert info.value.code == grpc.StatusCode.UNAVAILABLE
    assert any(f"the model-server at {a} is unavailable" in info.value.message for a in gone)


def test_in_flight_is_limited_per_replica(two_replicas, pools):
    servicers, handles = two_replicas
    stub = pools(*(h.address for h in handles), max_in_flight=1).stub(Echo)
    threads = [threading.Thread(target=stub.Sleep, args=(b"0.1",), kwargs={"timeout": 10}) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert [s.served for s in servicers] == [3, 3]
    assert [s.most for s in servicers] == [1, 1]


def test_a_full_replica_set_waits_within_the_deadline(start_echo, pools):
    busy = CountingEcho()
    stub = pools(start_echo(servicer=busy).address, max_in_flight=1).stub(Echo)
    future = stub.Sleep.future(b"1", timeout=10)
    thread = threading.Thread(target=future.result)
    thread.start()
    assert busy.started.wait(5)
    with pytest.raises(DownstreamError) as info:
        stub.Echo(b"x", timeout=0.2)
    thread.join(10)
    assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "in-flight limit" in info.value.message


def test_a_cancelled_future_stops_and_frees_its_slot(start_echo, pools):
    busy = CountingEcho()
    pool = pools(start_echo(servicer=busy).address)
    future = pool.stub(Echo).Sleep.future(b"2", timeout=10)
    outcome: list = []

    def wait() -> None:
        try:
            future.result()
        except (grpc.RpcError, grpc.FutureCancelledError) as exc:
            outcome.append(exc)

    thread = threading.Thread(target=wait)
    thread.start()
    assert busy.started.wait(5)
    future.cancel()
    thread.join(5)
    assert len(outcome) == 1 and not thread.is_alive()
    assert pool.replicas[0].in_flight == 0


def test_dns_names_are_followed_as_replicas_come_and_go(two_replicas, pools):
    servicers, handles = two_replicas
    answers = {"model-server:1": [handles[0].address]}
    pool = pools("dns:///model-server:1", resolve=lambda name: answers[name], resolve_interval_s=0.01)
    stub = pool.stub(Echo)
    stub.Echo(b"x", timeout=5)
    answers["model-server:1"] = [h.address for h in handles]  # a second pod became ready
    time.sleep(0.02)
    for _ in range(4):
        stub.Echo(b"x", timeout=5)
    assert [r.address for r in pool.replicas] == [h.address for h in handles]
    assert servicers[1].served >= 2


def test_health_waits_for_one_serving_replica(two_replicas, pools):
    servicers, handles = two_replicas
    assert pools(closed_address(), handles[1].address).wait_for_health(5) == handles[1].address
    with pytest.raises(TimeoutError, match="resolves to none"):
        pools("dns:///nowhere:1", resolve=lambda name: [], resolve_interval_s=0.01).wait_for_health(0.3)
