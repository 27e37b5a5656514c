"""Every RPC of every service under malformed and hostile requests.

Each request must end with a status a person can act on: OK for a request
that happens to be valid, otherwise a non-OK code that is not UNKNOWN or
INTERNAL, with a message; and the service must still answer health after.
"""

from __future__ import annotations

import collections
import json
import os

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings

from hostile import message_strategy
from xaimesh.v1 import attribution_pb2, concept_pb2, labeling_pb2, model_pb2
from xaimesh_runtime.client import make_channel

EXAMPLES = int(os.environ.get("XAIMESH_FUZZ_EXAMPLES", "30"))
FORBIDDEN = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
TALLY: collections.Counter = collections.Counter()

SERVICES = {
    "model": model_pb2.DESCRIPTOR.services_by_name["ModelService"],
    "attribution": attribution_pb2.DESCRIPTOR.services_by_name["AttributionService"],
    "concept": concept_pb2.DESCRIPTOR.services_by_name["ConceptService"],
    "labeling": labeling_pb2.DESCRIPTOR.services_by_name["LabelingService"],
}


@pytest.fixture(scope="module")
def mesh_processes(module_launcher, model_server, tmp_path_factory):
    """Service key -> address; services start on first use."""
    addresses = {"model": model_server.address}
    upstream = ["--model-server-address", model_server.address]

    def address(service: str) -> str:
        if service not in addresses:
            if service == "attribution":
                args = upstream
            elif service == "concept":
                args = upstream + ["--data-dir", str(tmp_path_factory.mktemp("concept-data"))]
            else:
                args = upstream + ["--concept-service-address", address("concept")]
            addresses[service] = module_launcher.start(service, *args).address
        return addresses[service]

    return address


def _invoke(channel, service_desc, method, request):
    path = f"/{service_desc.full_name}/{method.name}"
    out_cls = method.output_type._concrete_class
    serialize, deserialize = (lambda m: m.SerializeToString()), out_cls.FromString
    if method.client_streaming:
        call = (channel.stream_stream if method.server_streaming else channel.stream_unary)(
            path, request_serializer=serialize, response_deserializer=deserialize)
        result = call(iter([request, request]), timeout=30)
    else:
        call = (channel.unary_stream if method.server_streaming else channel.unary_unary)(
            path, request_serializer=serialize, response_deserializer=deserialize)
        result = call(request, timeout=30)
    if method.server_streaming:
        for n, _ in enumerate(result):
            if n > 200:
                result.cancel()
                break


def _cases():
    for service, desc in SERVICES.items():
        for method in desc.methods:
            yield pytest.param(service, method.name, id=f"{service}.{method.name}")


@pytest.mark.parametrize("service, method_name", list(_cases()))
def test_hostile_requests_get_actionable_statuses(mesh_processes, service, method_name):
    desc = SERVICES[service]
    method = desc.methods_by_name[method_name]
    channel = make_channel(mesh_processes(service))

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(message_strategy(method.input_type))
    def check(request):
        TALLY["requests"] += 1
        try:
            _invoke(channel, desc, method, request)
            TALLY["OK"] += 1
        except grpc.RpcError as error:
            code = error.code()
            TALLY[code.name] += 1
            assert code not in FORBIDDEN, f"{method_name}: {code.name}: {error.details()}\nrequest: {request}"[:3000]
            assert code == grpc.StatusCode.CANCELLED or error.details(), f"{method_name}: {code.name} without a message"

    try:
        check()
    finally:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        channel.close()
    assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_report_how_many_requests_were_tried():
    print("hostile requests tried:", json.dumps(dict(TALLY), sort_keys=True))
    assert TALLY["requests"] >= EXAMPLES
