"""Prometheus metrics shared by every xaimesh server.

The gRPC interceptor of :mod:`xaimesh_runtime.server` fills the ``grpc_*``
series; services use the helpers below for their own work queues::

    from xaimesh_runtime import metrics
    metrics.BATCH_SIZE.labels(queue="score").observe(len(batch))
    metrics.QUEUE_WAIT.labels(queue="score").observe(waited_s)
    metrics.QUEUE_DEPTH.labels(queue="score").set(len(pending))
    FITS = metrics.counter("xaimesh_concept_fits_total", "Concept models fitted", ["method"])

All live in prometheus_client's default registry (with the process
collectors), served by :func:`start_metrics_server` at ``/metrics``.
The ``get-or-create`` helpers make module reloads and several in-process
servers (tests) safe: asking twice for a name returns the same metric.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import prometheus_client
from prometheus_client import REGISTRY, Counter, Gauge, Histogram

__all__ = [
    "BATCH_SIZE",
    "GRPC_IN_FLIGHT",
    "GRPC_LATENCY",
    "GRPC_REQUESTS",
    "QUEUE_DEPTH",
    "QUEUE_WAIT",
    "counter",
    "gauge",
    "histogram",
    "start_metrics_server",
]

_lock = threading.Lock()
_metrics: dict[str, Any] = {}

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


def _get_or_create(cls: type, name: str, documentation: str, labelnames: Sequence[str], **kwargs: Any) -> Any:
    with _lock:
        existing = _metrics.get(name)
        if existing is not None:
            if not isinstance(existing, cls) or tuple(existing._labelnames) != tuple(labelnames):
                raise ValueError(f"metric {name} already exists as a {type(existing).__name__} "
                                 f"with labels {existing._labelnames}")
            return existing
        metric = cls(name, documentation, labelnames, registry=REGISTRY, **kwargs)
        _metrics[name] = metric
        return metric


def counter(name: str, documentation: str, labelnames: Sequence[str] = ()) -> Counter:
    """A Counter (name without the ``_total`` suffix is fine either way)."""
    return _get_or_create(Counter, name.removesuffix("_total"), documentation, labelnames)


def gauge(name: str, documentation: str, labelnames: Sequence[str] = ()) -> Gauge:
    return _get_or_create(Gauge, name, documentation, labelnames)


def histogram(name: str, documentation: str, labelnames: Sequence[str] = (),
              buckets: Sequence[float] = LATENCY_BUCKETS) -> Histogram:
    return _get_or_create(Histogram, name, documentation, labelnames, buckets=tuple(buckets))


# -- gRPC (filled by the server interceptor) ---------------------------------
GRPC_REQUESTS = counter("xaimesh_grpc_requests_total",
                        "Finished gRPC calls by method and status code", ["method", "code"])
GRPC_LATENCY = histogram("xaimesh_grpc_request_duration_seconds",
                         "Duration of gRPC calls, start to finish (whole stream for streaming calls)",
                         ["method"])
GRPC_IN_FLIGHT = gauge("xaimesh_grpc_in_flight_requests", "gRPC calls in progress", ["method"])

# -- work queues (filled by the services) ------------------------------------
BATCH_SIZE = histogram("xaimesh_batch_size", "Items per executed batch (e.g. sequences per forward pass)",
                       ["queue"], buckets=SIZE_BUCKETS)
QUEUE_WAIT = histogram("xaimesh_queue_wait_seconds", "Time an item waited in a queue before its batch ran",
                       ["queue"])
QUEUE_DEPTH = gauge("xaimesh_queue_depth", "Items waiting in a queue", ["queue"])


def start_metrics_server(port: int, host: str = "0.0.0.0") -> tuple[Any, int]:
    """Serve ``/metrics`` over HTTP on ``host:port`` (0 = free port) in a
    daemon thread. Returns ``(server, bound_port)``; stop it with
    ``server.shutdown(); server.server_close()``."""
    httpd, _thread = prometheus_client.start_http_server(port, addr=host)
    return httpd, int(httpd.server_port)
