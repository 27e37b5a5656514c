"""UNAVAILABLE from the gRPC library (the service is not there) vs UNAVAILABLE
sent by the service (something behind it is down): the SDK names the right one."""

import grpc
from grpc_status import rpc_status

from xaimesh.errors import UnavailableError, from_rpc_error
from xaimesh_runtime.errors import make_status


class FakeError(grpc.RpcError, grpc.Call):
    def __init__(self, details, trailing=()):
        self._details, self._trailing = details, tuple(trailing)

    def code(self):
        return grpc.StatusCode.UNAVAILABLE

    def details(self):
        return self._details

    def trailing_metadata(self):
        return self._trailing

    def initial_metadata(self):
        return ()

    def is_active(self):
        return False

    def time_remaining(self):
        return None

    def cancel(self):
        return False

    def add_callback(self, callback):
        return False


def test_unreachable_service_is_named_with_its_address():
    error = from_rpc_error(FakeError("failed to connect to all addresses"), "concept-service", "h:1")
    assert isinstance(error, UnavailableError)
    assert str(error).startswith("concept-service at h:1 is unavailable (failed to connect")


def test_a_service_reporting_its_downstream_down_is_not_blamed():
    message = "the model-server at h:2 is unavailable (Socket closed); is it running?"
    status = rpc_status.to_status(make_status(grpc.StatusCode.UNAVAILABLE, message))
    error = from_rpc_error(FakeError(message, status.trailing_metadata), "concept-service", "h:1")
    assert isinstance(error, UnavailableError)
    assert str(error) == f"concept-service: {message}" and "concept-service at h:1" not in str(error)
