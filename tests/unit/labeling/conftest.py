import sys
from pathlib import Path

_SERVICES = Path(__file__).resolve().parents[3] / "services"
if str(_SERVICES) not in sys.path:  # the editable install may predate the package
    sys.path.insert(0, str(_SERVICES))

from tests.fixtures.fake_openai import fake_openai  # noqa: E402,F401  (pytest fixture)
