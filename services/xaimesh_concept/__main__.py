"""``xaimesh serve concept``: the concept-service.

    xaimesh serve concept --data-dir /var/lib/xaimesh/concept \\
        --model-server-address model:50051 [--device cuda]

Every flag has an ``XAIMESH_*`` environment fallback (``XAIMESH_DATA_DIR``,
``XAIMESH_DEVICE``, ``XAIMESH_MODEL_SERVER``...). One process per data
directory: leftovers of interrupted writes are removed at start-up.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from xaimesh_runtime.config import make_parser
from xaimesh_runtime.server import serve

DEFAULT_PORT = 50053
DEFAULT_METRICS_PORT = 9103
#: 1 GiB: with the service's own ~0.4 GB, one fit stays within 1.5 GB of resident memory.
DEFAULT_MEMORY_BUDGET = 1 << 30


def build_parser():
    parser = make_parser("concept", description="xaimesh concept-service: activation sets, concept "
                         "models, concept metrics and top examples", default_port=DEFAULT_PORT,
                         default_metrics_port=DEFAULT_METRICS_PORT)
    # --data-dir (XAIMESH_DATA_DIR) is one of the common server options.
    parser.add_option("--device", default="",
                      help="where fits and loaded concept models run: cpu, cuda, cuda:N "
                           "(empty = cuda when present, else cpu)")
    parser.add_option("--model-cache-size", type=int, default=8,
                      help="fitted concept models kept loaded in memory (LRU)")
    parser.add_option("--memory-budget-bytes", type=int, default=DEFAULT_MEMORY_BUDGET,
                      help="working memory of one fit / metric computation: a concept method whose "
                           "in-memory fit would need more runs its streaming variant "
                           "(docs/concepts-large.md)")
    parser.add_option("--activation-storage-dtype", default="float32",
                      choices=("float32", "float16", "bfloat16"),
                      help="how new activation sets are stored on disk (rows are read back as float32)")
    parser.add_downstream("model-server", default="127.0.0.1:50051")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    config = parser.parse_config(list(sys.argv[1:] if argv is None else argv))
    if config.options.model_cache_size is not None and config.options.model_cache_size < 1:
        parser.error("--model-cache-size (XAIMESH_MODEL_CACHE_SIZE) must be at least 1")
    if config.options.memory_budget_bytes is not None and config.options.memory_budget_bytes < 1 << 20:
        parser.error("--memory-budget-bytes (XAIMESH_MEMORY_BUDGET_BYTES) must be at least 1 MiB")
    from .server import ConceptServicer  # heavy imports (torch) after the flags are checked

    try:
        servicer = ConceptServicer.from_config(config)
    except Exception as exc:  # noqa: BLE001 - a bad --device or an unusable data dir
        print(f"xaimesh serve concept: {exc}", file=sys.stderr)
        return 2
    try:
        return serve(config, servicer.register)
    finally:
        servicer.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
