"""xaimesh_runtime: what every xaimesh server shares.

Modules (import what you need; importing this package is cheap):

* :mod:`.config` — ``make_parser`` / ``ServerConfig``: common flags with
  ``XAIMESH_*`` environment fallback, service options, downstream services.
* :mod:`.server` — ``serve`` / ``start_server``: a gRPC server with health,
  reflection, auth, metrics, TLS, warm-up, ready-file and graceful shutdown.
* :mod:`.tensors` — numpy / torch <-> ``Tensor`` codec, validation, chunking.
* :mod:`.errors` — ``map_errors``, ``abort_with``, ``status_for_item``.
* :mod:`.client` — ``make_channel``, ``connect``, ``remaining_timeout``,
  ``wait_for_health``.
* :mod:`.metrics` — Prometheus helpers (batch size, queue wait / depth).
* :mod:`.logging_setup` — JSON / text logs with secret redaction.
* :mod:`.cli` — the ``xaimesh`` command.

A service's ``__main__.py``::

    from xaimesh_runtime.config import make_parser
    from xaimesh_runtime.server import serve

    def main(argv=None) -> int:
        parser = make_parser("model", description="xaimesh model-server")
        parser.add_option("--default-model", default="smollm2-135m-instruct", help="...")
        config = parser.parse_config(argv)
        servicer = ModelServicer(config)
        return serve(config, servicer.register, warmup=servicer.load_models)
"""

__all__ = ["__version__"]

try:
    from importlib.metadata import version as _version

    __version__ = _version("xaimesh")
except Exception:  # pragma: no cover - not installed
    __version__ = "0.0.0"
