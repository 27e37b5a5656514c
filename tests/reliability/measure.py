"""What the reliability tests measure on real service processes: Prometheus
metrics, memory (VmRSS), CPU time, and how long something took to happen."""

from __future__ import annotations

import os
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
REPORT_DIR = ROOT / ".cache" / "reliability"
_TICKS = os.sysconf("SC_CLK_TCK")


def metrics_text(port: int, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as reply:
        return reply.read().decode()


def metric(port: int, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels`
    (0 when there are none)."""
    total = 0.0
    for family in text_string_to_metric_families(metrics_text(port)):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def rss_kib(pid: int) -> int:
    """Resident memory of a process (VmRSS, KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all threads (s)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def cpu_busy(pid: int, interval: float = 0.5) -> float:
    """Fraction of one core the process used over the next `interval` s."""
    before = cpu_seconds(pid)
    time.sleep(interval)
    return (cpu_seconds(pid) - before) / interval


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05,
               what: str = "condition") -> float:
    """Seconds until `predicate()` is true; AssertionError after `timeout`."""
    start = time.monotonic()
    while True:
        try:
            if predicate():
                return time.monotonic() - start
        except Exception:  # noqa: BLE001 - e.g. metrics endpoint not up yet
            pass
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what} not reached after {timeout} s")
        time.sleep(interval)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[rank]
