from tests.fixtures.services import (  # noqa: F401  (pytest fixtures)
    ServiceLauncher,
    ServiceProcess,
    launcher,
    model_server,
    module_launcher,
)

import pytest


def pytest_collection_modifyitems(config, items):
    """Soak tests run only when asked for (`-m soak`), never in the normal
    suite, even when `-m "not slow"` replaces the default `-m 'not soak'`."""
    if "soak" in (config.getoption("markexpr", "") or ""):
        return
    skip = pytest.mark.skip(reason="soak test: run with `pytest -m soak`")
    for item in items:
        if item.get_closest_marker("soak") is not None:
            item.add_marker(skip)
