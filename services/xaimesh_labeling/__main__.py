"""``xaimesh serve labeling``: the labeling-service.

    xaimesh serve labeling --concept-service-address concept:50053 \
        --model-server-address model:50051 --openai-api-key-file /var/run/secrets/openai

Options (flag, or ``XAIMESH_*`` environment variable):

* ``--openai-api-key`` / ``XAIMESH_OPENAI_API_KEY`` (or ``--openai-api-key-file`` /
  ``XAIMESH_OPENAI_API_KEY_FILE``, e.g. a mounted Kubernetes Secret): the
  service's own OpenAI key, used when a call brings none in its
  ``x-openai-api-key`` metadata, and only with the service's own endpoint.
  Empty = no key.
* ``--openai-base-url``: the service's OpenAI-compatible endpoint (vLLM,
  Ollama, llama.cpp server...); default the official OpenAI API.
* ``--openai-model``: the OpenAI model when a request names none.
* ``--max-concurrency``: the most LLM calls one request may have in flight
  (a request asks for 4 by default).
* ``--model-server-address`` / ``--concept-service-address`` (and their
  ``-token`` / ``-tls-ca``): the services it calls.

With no key and no base URL, labels come from the model-server's own
instruct model, so the whole flow runs offline.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from xaimesh_runtime.config import ServiceArgumentParser, make_parser

__all__ = ["build_parser", "main"]


def build_parser() -> ServiceArgumentParser:
    parser = make_parser("labeling", description="xaimesh labeling-service: LLM-written concept labels "
                         "and their scoring", default_port=50054, default_metrics_port=9104)
    parser.add_option("--openai-api-key", secret=True,
                      help="OpenAI API key used when a call sends none in its x-openai-api-key metadata "
                           "(only with the service's own endpoint); empty = none")
    parser.add_option("--openai-base-url", default="",
                      help="OpenAI-compatible endpoint of the service (vLLM, Ollama, llama.cpp server); "
                           "empty = https://api.openai.com/v1")
    parser.add_option("--openai-model", default="gpt-4.1-nano",
                      help="OpenAI model when a request names none")
    parser.add_option("--max-concurrency", type=int, default=16,
                      help="most LLM calls one request may have in flight")
    parser.add_downstream("model-server", default="127.0.0.1:50051",
                          help="the model-server (local LLM for labels when no OpenAI key is given)")
    parser.add_downstream("concept-service", default="127.0.0.1:50053",
                          help="the concept-service (examples of concepts)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    config = parser.parse_config(argv)
    if config.options.max_concurrency is not None and config.options.max_concurrency < 1:
        parser.error("--max-concurrency (XAIMESH_MAX_CONCURRENCY): must be at least 1")

    from xaimesh_runtime.server import serve

    from .server import LabelingServiceServicer

    servicer = LabelingServiceServicer(config)
    try:
        return serve(config, servicer.register)
    finally:
        servicer.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
