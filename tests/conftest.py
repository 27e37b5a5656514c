import os
import sys
from pathlib import Path

# Two cores on CI: keep torch from oversubscribing them in each process.
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pytest  # noqa: E402

from tests.fixtures import tiny_models  # noqa: E402


@pytest.fixture(scope="session")
def tiny_lm_path() -> Path:
    return tiny_models.tiny_causal_lm_dir()


@pytest.fixture(scope="session")
def tiny_classifier_path() -> Path:
    return tiny_models.tiny_classifier_dir()


@pytest.fixture(scope="session")
def tokenizer_path() -> Path:
    return tiny_models.tokenizer_dir()
