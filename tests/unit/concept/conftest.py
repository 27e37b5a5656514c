import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
_services = Path(__file__).resolve().parents[3] / "services"
if str(_services) not in sys.path:
    sys.path.insert(0, str(_services))

import torch  # noqa: E402

torch.set_num_threads(1)
