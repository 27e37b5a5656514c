"""A tiny gRPC service for the runtime tests, without protos.

``xaimesh.test.Echo`` has bytes-in / bytes-out methods made with the generic
handler API. Run as a script it is a complete server (``serve`` + flags), for
the subprocess tests.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parents[3]
for extra in (ROOT / "services", ROOT / "clients" / "python", ROOT / "contracts"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from xaimesh_runtime.errors import InvalidArgument, abort_with, map_errors  # noqa: E402
from xaimesh_contracts.tensors import TensorError  # noqa: E402

SERVICE = "xaimesh.test.Echo"


class UnknownThing(LookupError):
    pass


ERRORS = {UnknownThing: grpc.StatusCode.NOT_FOUND}


class EchoServicer:
    def __init__(self) -> None:
        self.started = threading.Event()

    @map_errors(ERRORS)
    def Echo(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        return request

    @map_errors(ERRORS)
    def Fail(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        kind = request.decode()
        if kind == "tensor":
            raise TensorError("embeddings.shape", "expected 3 dimensions, got 2")
        if kind == "value":
            raise InvalidArgument("split point 40 is out of range: model has 30 layers")
        if kind == "field":
            raise InvalidArgument("must be at least 1", field="parameters.n_steps")
        if kind == "plain-value":  # numpy / torch / our own bug: not the caller's fault
            raise ValueError("operands could not be broadcast together")
        if kind == "notfound":
            raise UnknownThing("model 'gpt5' is not loaded")
        if kind == "keyerror":
            raise KeyError("raw dict miss")  # not in the mapping: INTERNAL
        if kind == "memory":  # numpy's error for an enormous array
            raise MemoryError("Unable to allocate 480. GiB for an array with shape (2147483647, 30)")
        if kind == "abort":
            abort_with(context, grpc.StatusCode.FAILED_PRECONDITION, "fit the model first",
                       {"concept_model": "not fitted"})
        raise RuntimeError("secret internal detail /etc/passwd")

    @map_errors(ERRORS)
    def Count(self, request: bytes, context: grpc.ServicerContext):
        n, _, fail = request.decode().partition(":")
        for i in range(int(n)):
            yield str(i).encode()
        if fail:
            raise InvalidArgument(f"stopped after {n}: {fail}")

    @map_errors(ERRORS)
    def Sleep(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self.started.set()
        time.sleep(float(request.decode()))
        return b"slept"

    @map_errors(ERRORS)
    def Join(self, requests, context: grpc.ServicerContext) -> bytes:
        parts = list(requests)
        if b"bad" in parts:
            raise InvalidArgument("a part is bad")
        return b"+".join(parts)

    @map_errors(ERRORS)
    def Upper(self, requests, context: grpc.ServicerContext):
        for part in requests:
            yield part.upper()

    def register(self, server: grpc.Server) -> list[str]:
        unary = {name: grpc.unary_unary_rpc_method_handler(getattr(self, name))
                 for name in ("Echo", "Fail", "Sleep")}
        unary["Count"] = grpc.unary_stream_rpc_method_handler(self.Count)
        unary["Join"] = grpc.stream_unary_rpc_method_handler(self.Join)
        unary["Upper"] = grpc.stream_stream_rpc_method_handler(self.Upper)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, unary),))
        return [SERVICE]


def main(argv: list[str] | None = None) -> int:
    from xaimesh_runtime.config import make_parser
    from xaimesh_runtime.server import serve

    parser = make_parser("echo", default_port=0, description="runtime test server")
    parser.add_option("--warmup-seconds", type=float, default=0.0, help="pretend to load a model")
    parser.add_option("--fail-warmup", type=bool, default=False, help="warm-up raises")
    config = parser.parse_config(argv)

    def warmup() -> None:
        time.sleep(config.options.warmup_seconds)
        if config.options.fail_warmup:
            raise RuntimeError("could not load the model")

    return serve(config, EchoServicer().register, warmup=warmup)


if __name__ == "__main__":
    sys.exit(main())
