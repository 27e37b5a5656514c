"""Fixtures for the model-server logic tests: the tiny models, loaded once."""

import sys
from pathlib import Path

import pytest

_SERVICES = Path(__file__).resolve().parents[3] / "services"
if str(_SERVICES) not in sys.path:  # the package may not be installed yet
    sys.path.insert(0, str(_SERVICES))


@pytest.fixture(scope="session")
def lm(tiny_lm_path):
    from xaimesh_model_server.loading import load_model

    return load_model(tiny_lm_path, device="cpu", model_id="tiny-lm")


@pytest.fixture(scope="session")
def clf(tiny_classifier_path):
    from xaimesh_model_server.loading import load_model

    return load_model(tiny_classifier_path, device="cpu", model_id="tiny-clf")


@pytest.fixture(scope="session")
def sentence_ids(lm):
    from xaimesh_model_server.tokenization import tokenize

    return tokenize(lm, "Alice and Bob enter the bar, then Alice offers a drink to Bob.").token_ids


def _served(paths):
    """A ModelService stub over a real in-process gRPC server holding the models at `paths`."""
    import grpc
    from xaimesh_contracts.v1 import model_pb2_grpc
    from xaimesh_model_server.server import ModelServicer
    from xaimesh_runtime.config import ServerConfig
    from xaimesh_runtime.server import start_server

    servicer = ModelServicer([str(p) for p in paths], device="cpu")
    handle = start_server(ServerConfig(service="model-server", workers=4), servicer.register,
                          warmup=servicer.warm_up)
    assert handle.wait_ready(120)
    channel = grpc.insecure_channel(handle.address)
    yield model_pb2_grpc.ModelServiceStub(channel)
    channel.close()
    handle.stop(grace=0)
    servicer.close()


@pytest.fixture(scope="module")
def stub(tiny_lm_path):
    """A ModelService stub over a real in-process gRPC server holding the tiny LM."""
    yield from _served([tiny_lm_path])


@pytest.fixture(scope="module")
def t5_stub():
    """The same, holding the tiny T5 of the family matrix."""
    from tests.fixtures.family_models import family_dir

    yield from _served([family_dir("t5")])
