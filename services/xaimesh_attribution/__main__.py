"""`xaimesh serve attribution` (or `python -m xaimesh_attribution`).

    xaimesh serve attribution --model-server-address 127.0.0.1:50051 [--port 50052 ...]

The service holds no model: it calls the model-server given by
`--model-server-address` (env XAIMESH_MODEL_SERVER, default
127.0.0.1:50051), with `--model-server-token` / `--model-server-tls-ca` when
it needs them. It starts at once and stays NOT_SERVING (health) until the
model-server answers SERVING, retrying for as long as it takes (a warning is
logged every 30 s); SIGTERM stops it at any time.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence

from xaimesh_runtime.config import make_parser
from xaimesh_runtime.server import serve

from .model_client import DEFAULT_MAX_IN_FLIGHT
from .server import AttributionServicer


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser("attribution", description="xaimesh attribution-service: perturbation and gradient "
                         "attribution methods and attribution metrics, computed through the model-server.",
                         default_port=50052, default_metrics_port=9102)
    parser.add_downstream("model-server", default="127.0.0.1:50051")
    parser.add_option("--health-poll-s", type=float, default=1.0,
                      help="at start, how often the model-server's health is polled until it is serving")
    parser.add_option("--score-in-flight", type=int, default=DEFAULT_MAX_IN_FLIGHT,
                      help="Score requests of one explanation kept in flight to the model-server, so its "
                           "batcher has the next batch queued (1 = one at a time)")
    config = parser.parse_config(list(argv) if argv is not None else None)
    if config.options.score_in_flight < 1:
        parser.error(f"--score-in-flight must be at least 1, got {config.options.score_in_flight}")
    servicer = AttributionServicer(config.downstream("model-server"),
                                   score_in_flight=config.options.score_in_flight)
    ready, stop = threading.Event(), threading.Event()
    threading.Thread(target=servicer.wait_for_model_server, args=(ready, stop),
                     kwargs={"interval": max(0.05, float(config.options.health_poll_s))},
                     name="attribution-wait-model-server", daemon=True).start()
    try:
        return serve(config, servicer.register, warmup=ready)
    finally:
        stop.set()
        servicer.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
