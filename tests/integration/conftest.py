from tests.fixtures.services import (  # noqa: F401  (pytest fixtures)
    ServiceLauncher,
    ServiceProcess,
    launcher,
    model_server,
    module_launcher,
)
