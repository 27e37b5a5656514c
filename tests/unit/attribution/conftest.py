"""Fixtures of the attribution-logic tests: synthetic backends (games with
known answers) and in-process backends over the model-server engine with
the tiny models."""

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
_SERVICES = Path(__file__).resolve().parents[3] / "services"
if str(_SERVICES) not in sys.path:  # the package may not be installed yet
    sys.path.insert(0, str(_SERVICES))
_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))


@pytest.fixture(scope="session")
def torch_single_thread():
    import torch

    torch.set_num_threads(1)
    return torch


@pytest.fixture(scope="session")
def lm_backend(tiny_lm_path, torch_single_thread):
    from attr_backends import engine_backend

    return engine_backend(tiny_lm_path, "tiny-lm")


@pytest.fixture(scope="session")
def clf_backend(tiny_classifier_path, torch_single_thread):
    from attr_backends import engine_backend

    return engine_backend(tiny_classifier_path, "tiny-clf")
