"""Service metrics: timing of the calls that matter, shared by the web processes and the Huey worker.

``@track_service_metrics`` (on DeviceService.record_poll_results, AssignmentService.assign / reassign /
unassign, BoardService.build) and ``PerformanceMonitor`` (the poll cycle, each HTTP request) record a
duration and an outcome; ``count()`` bumps a labelled counter (driver errors by kind).

Where the numbers live: each process aggregates in memory (a lock and a few dicts, no I/O per call)
and flushes a snapshot of its own to the cache at most every ``FLUSH_SECONDS``, under a key of its own
(so the web processes and the worker never overwrite each other's numbers; no read-modify-write of a
shared entry except the short list of process keys, which heals itself on the next flush). Readers
(``statistics()``, /metrics, the health page) merge the snapshots. The cache and not the coordination
store: these numbers can be lost without harm (an evicted snapshot comes back on the next flush, a
restart starts a process's totals again, which Prometheus reads as a counter reset), while the
coordination store holds the receivers' leases and the board version and takes a write lock per operation on
the embedded default. A snapshot is bounded: per method the last 100 samples and 60 one-minute
buckets; at most ``MAX_NAMES`` methods and ``MAX_PROCESSES`` processes.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from django.conf import settings
from django.core.cache import cache

from micboard.coordination import machine_id

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

FLUSH_SECONDS = 5.0
WINDOW_SECONDS = 3600  # rolling statistics cover the last hour
BUCKET_SECONDS = 60
SAMPLES = 100
MAX_NAMES = 200
MAX_PROCESSES = 64
# Upper bounds (seconds) of the duration histograms /metrics exposes.
HISTOGRAM_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
PROCESSES_KEY = "micboard:metrics:processes"
PROCESS_KEY = "micboard:metrics:process:{id}"


@dataclass
class _Series:
    """One method's numbers in this process."""

    total: int = 0
    total_ok: int = 0
    total_seconds: float = 0.0
    histogram: list[int] = field(default_factory=lambda: [0] * (len(HISTOGRAM_BOUNDS) + 1))
    buckets: dict[int, list[float]] = field(default_factory=dict)  # minute -> [count, ok, sum_ms, min_ms, max_ms]
    samples: deque = field(default_factory=lambda: deque(maxlen=SAMPLES))  # (time, ms, ok)

    def add(self, *, at: float, ms: float, ok: bool) -> None:
        self.total += 1
        self.total_ok += ok
        self.total_seconds += ms / 1000
        seconds = ms / 1000
        index = next((i for i, bound in enumerate(HISTOGRAM_BOUNDS) if seconds <= bound), len(HISTOGRAM_BOUNDS))
        self.histogram[index] += 1
        minute = int(at // BUCKET_SECONDS)
        bucket = self.buckets.get(minute)
        if bucket is None:
            self.buckets[minute] = [1, int(ok), ms, ms, ms]
            oldest = minute - WINDOW_SECONDS // BUCKET_SECONDS
            for old in [m for m in self.buckets if m <= oldest]:
                del self.buckets[old]
        else:
            bucket[0] += 1
            bucket[1] += int(ok)
            bucket[2] += ms
            bucket[3] = min(bucket[3], ms)
            bucket[4] = max(bucket[4], ms)
        self.samples.append((round(at, 3), round(ms, 3), bool(ok)))

    def snapshot(self) -> dict:
        return {
            "total": self.total,
            "total_ok": self.total_ok,
            "total_seconds": self.total_seconds,
            "histogram": list(self.histogram),
            "buckets": {str(m): list(b) for m, b in self.buckets.items()},
            "samples": [list(s) for s in self.samples],
        }


class _Recorder:
    """This process's numbers, flushed to the cache now and then."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[str, _Series] = {}
        self._counters: dict[str, int] = {}
        self._slow: deque = deque(maxlen=20)  # (time, name, ms)
        self._last_flush = 0.0
        self._pid = os.getpid()
        self.clock = time.time

    @property
    def process_id(self) -> str:
        return f"{machine_id()}:{os.getpid()}"

    def _check_fork(self) -> None:
        if self._pid != os.getpid():  # a forked worker starts with its own, empty numbers
            self._series, self._counters, self._slow = {}, {}, deque(maxlen=20)
            self._pid, self._last_flush = os.getpid(), 0.0

    def record(self, name: str, *, ms: float, ok: bool, slow_ms: float | None = None) -> None:
        """Add one call; ``slow_ms`` (default MICBOARD_SLOW_OPERATION_MS) is where it counts as slow."""
        slow_ms = settings.MICBOARD_SLOW_OPERATION_MS if slow_ms is None else slow_ms
        now = self.clock()
        with self._lock:
            self._check_fork()
            series = self._series.get(name)
            if series is None:
                if len(self._series) >= MAX_NAMES:
                    return
                series = self._series[name] = _Series()
            series.add(at=now, ms=ms, ok=ok)
            if ms >= slow_ms and not name.startswith("http."):
                self._slow.append((round(now, 3), name, round(ms, 1)))
        self.flush()

    def count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._check_fork()
            if name in self._counters or len(self._counters) < MAX_NAMES:
                self._counters[name] = self._counters.get(name, 0) + amount
        self.flush()

    def flush(self, *, force: bool = False) -> None:
        """Write this process's snapshot to the cache when FLUSH_SECONDS passed (or ``force``)."""
        now = self.clock()
        if not force and now - self._last_flush < FLUSH_SECONDS:
            return
        with self._lock:
            self._last_flush = now
            snapshot = {
                "at": now,
                "series": {name: s.snapshot() for name, s in self._series.items()},
                "counters": dict(self._counters),
                "slow": [list(s) for s in self._slow],
            }
        key = PROCESS_KEY.format(id=self.process_id)
        try:
            cache.set(key, snapshot, WINDOW_SECONDS)
            known = cache.get(PROCESSES_KEY) or []
            if key not in known:
                cache.set(PROCESSES_KEY, [*known, key][-MAX_PROCESSES:], None)
        except Exception as exc:  # metrics never break the work they measure
            logger.warning("service metrics not flushed to the cache: %s", exc.__class__.__name__)

    def reset(self) -> None:
        """Forget this process's numbers (tests)."""
        with self._lock:
            self._series, self._counters, self._slow = {}, {}, deque(maxlen=20)
            self._last_flush = 0.0


recorder = _Recorder()


def count(name: str, amount: int = 1) -> None:
    """Add to a counter shared with every process (e.g. ``driver_errors:timeout``)."""
    recorder.count(name, amount)


class PerformanceMonitor:
    """Time a block and record it under ``name``; an exception counts as a failure and propagates.

    Example::

        with PerformanceMonitor("poll.cycle"):
            run_poll_cycle()
    """

    def __init__(self, name: str, *, slow_ms: float | None = None):
        """``slow_ms``: from how many milliseconds the block is a slow operation (default
        MICBOARD_SLOW_OPERATION_MS); for blocks whose normal length is set elsewhere, like a poll cycle."""
        self.name = name
        self.slow_ms = settings.MICBOARD_SLOW_OPERATION_MS if slow_ms is None else slow_ms
        self.ok = True
        self.elapsed_ms = 0.0

    def __enter__(self) -> PerformanceMonitor:
        self._start = time.perf_counter()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.elapsed_ms = (time.perf_counter() - self._start) * 1000
        ok = exc_type is None and self.ok
        recorder.record(self.name, ms=self.elapsed_ms, ok=ok, slow_ms=self.slow_ms)
        if self.elapsed_ms >= self.slow_ms and not self.name.startswith("http."):
            logger.warning("slow operation %s: %.0f ms", self.name, self.elapsed_ms)


def track_service_metrics(fn: Callable[P, R]) -> Callable[P, R]:
    """Record each call's duration and outcome under ``Class.method`` (apply under ``@staticmethod``)."""
    name = fn.__qualname__

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with PerformanceMonitor(name):
            return fn(*args, **kwargs)

    return wrapper


@dataclass(frozen=True)
class MethodStatistics:
    """One method's numbers over the last hour, every process merged."""

    name: str
    count: int
    average_ms: float
    min_ms: float
    max_ms: float
    p95_ms: float
    success_rate: float  # 0..1
    samples: tuple[tuple[float, float, bool], ...]  # the last 100: (unix time, ms, ok)


def snapshots() -> list[dict]:
    """Every live process's latest snapshot (this process's flushed first)."""
    recorder.flush(force=True)
    try:
        keys = cache.get(PROCESSES_KEY) or []
        found = cache.get_many(keys)
    except Exception as exc:
        logger.warning("service metrics unreadable: %s", exc.__class__.__name__)
        return []
    return [found[k] for k in keys if isinstance(found.get(k), dict)]


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def statistics(*, now: float | None = None) -> list[MethodStatistics]:
    """Rolling statistics per method over the last hour, every process merged, by name.

    count, average, min, max and success rate come from one-minute buckets of the whole hour; p95
    and the samples from the last 100 calls.
    """
    now = now if now is not None else time.time()
    oldest = int(now // BUCKET_SECONDS) - WINDOW_SECONDS // BUCKET_SECONDS
    merged: dict[str, dict[str, Any]] = {}
    for snap in snapshots():
        for name, series in snap.get("series", {}).items():
            entry = merged.setdefault(name, {"count": 0, "ok": 0, "sum": 0.0, "min": None, "max": None, "samples": []})
            for minute, (n, ok, total, low, high) in series.get("buckets", {}).items():
                if int(minute) <= oldest:
                    continue
                entry["count"] += n
                entry["ok"] += ok
                entry["sum"] += total
                entry["min"] = low if entry["min"] is None else min(entry["min"], low)
                entry["max"] = high if entry["max"] is None else max(entry["max"], high)
            entry["samples"].extend(tuple(s) for s in series.get("samples", []) if s[0] > now - WINDOW_SECONDS)
    result = []
    for name in sorted(merged):
        entry = merged[name]
        if not entry["count"]:
            continue
        samples = tuple(sorted(entry["samples"])[-SAMPLES:])
        result.append(
            MethodStatistics(
                name=name,
                count=entry["count"],
                average_ms=entry["sum"] / entry["count"],
                min_ms=entry["min"],
                max_ms=entry["max"],
                p95_ms=_percentile([s[1] for s in samples], 0.95),
                success_rate=entry["ok"] / entry["count"],
                samples=samples,
            )
        )
    return result


def slow_operations() -> list[tuple[float, str, float]]:
    """The latest slow service calls of every process: (unix time, name, ms), newest first."""
    slow = [tuple(s) for snap in snapshots() for s in snap.get("slow", [])]
    return sorted(slow, reverse=True)[:20]


def totals() -> tuple[dict[str, dict], dict[str, int]]:
    """Since each process started, summed over processes: per method totals and histogram, and counters."""
    series: dict[str, dict] = {}
    counters: dict[str, int] = {}
    for snap in snapshots():
        for name, s in snap.get("series", {}).items():
            entry = series.setdefault(
                name, {"total": 0, "total_ok": 0, "total_seconds": 0.0, "histogram": [0] * (len(HISTOGRAM_BOUNDS) + 1)}
            )
            entry["total"] += s["total"]
            entry["total_ok"] += s["total_ok"]
            entry["total_seconds"] += s["total_seconds"]
            entry["histogram"] = [a + b for a, b in zip(entry["histogram"], s["histogram"], strict=False)]
        for name, value in snap.get("counters", {}).items():
            counters[name] = counters.get(name, 0) + value
    return series, counters
