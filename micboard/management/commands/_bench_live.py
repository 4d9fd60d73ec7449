"""The live sections of ``make bench``: the link holder's CPU, device change to Chromium, and load.

Kept apart from ``benchmark.py`` (the poll cycle and board-render figures) because these run the
product as it runs in a show: a :class:`~tasks.links.LinkHolder` following the simulated receivers,
and for the browser and load figures a web server in a process of its own.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Sequence

from django.db import connections

from micboard.services import PollOutcome
from tasks.links import LinkHolder


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def p95(values: Sequence[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]


class DrivenHolder:
    """A LinkHolder driven from a thread of this process, as a consumer's Huey shift drives one."""

    def __init__(self) -> None:
        self.flush_seconds: list[float] = []
        self.outcomes = 0
        self.errors = 0
        self.holder = LinkHolder(on_flush=self._flushed)
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bench-holder", daemon=True)

    def _flushed(self, outcomes: list[PollOutcome], seconds: float) -> None:
        self.flush_seconds.append(seconds)
        self.outcomes += len(outcomes)
        self.errors += sum(1 for o in outcomes if o.error)

    def _run(self) -> None:
        if not self.holder.begin():
            return
        try:
            self.holder.drive(seconds=24 * 3600, stop=self.halt)
        finally:
            self.holder.end()
            connections.close_all()

    def start(self) -> DrivenHolder:
        self.thread.start()
        return self

    def reset(self) -> None:
        self.flush_seconds.clear()
        self.outcomes = self.errors = 0

    def stop(self) -> None:
        self.halt.set()
        self.thread.join(30)
        self.holder.close()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"did not {what} within {timeout:g} s")
        time.sleep(0.05)


def link_figures(holder: DrivenHolder, *, receivers: int, seconds: float) -> dict[str, float]:
    """CPU of this process per second of show while ``holder`` follows ``receivers`` receivers.

    The simulator runs in another process and nothing else runs here meanwhile, so the process's CPU
    time is the holder's: its event loop (parsing every REPORT and SAMPLE) and its driving thread
    (snapshots, database writes, leases, heartbeat, statuses).
    """
    wait_until(lambda: len(holder.holder.held) >= receivers, 30, f"hold {receivers} receivers")
    time.sleep(2.0)  # every link past its GET 0 ALL and first writes
    holder.reset()
    cpu, wall = time.process_time(), time.monotonic()
    time.sleep(seconds)
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    flushes = list(holder.flush_seconds)
    return {
        "cpu_ms_per_s": 1000 * cpu / wall,
        "flush_p50_ms": 1000 * median(flushes),
        "flush_p95_ms": 1000 * p95(flushes),
        "flushes_per_s": len(flushes) / wall,
        "readings_per_s": holder.outcomes / wall,
        "errors": holder.errors,
    }
