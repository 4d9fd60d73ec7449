"""One poll cycle: every due receiver polled once, concurrently, each result written as it arrives.

The consumer follows receivers through long-lived links (:mod:`tasks.links`); a cycle is the one-shot
form of the same reading, for ``manage.py poll`` (check a rack from the command line, with or without
a running consumer) and for tests that need a reading now. It polls connect-per-poll whatever the
receiver's link setting, so it never holds a connection beyond its time-out.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from micboard import metrics
from micboard.exceptions import CoordinationError
from micboard.services import BoardService, DeviceService, PollOutcome, PollTarget
from micboard.services.health import ConnectionHealthService
from tasks.links import poll_target

logger = logging.getLogger("tasks.polling")


@dataclass(frozen=True, slots=True)
class CycleSummary:
    polled: int
    failed: int
    changed: bool
    seconds: float
    outcomes: tuple[PollOutcome, ...] = ()


def _poll_in_background(targets: list[PollTarget], results: queue.SimpleQueue) -> threading.Thread:
    """Poll every target concurrently on an event loop of its own thread, queueing each outcome.

    The loop never waits for the database, and the ORM stays in the caller's thread (and transaction).
    ``None`` on the queue means every poll has finished.
    """

    async def poll_all() -> None:
        async def one(target: PollTarget) -> None:
            results.put(
                await poll_target(
                    target, timeout=settings.MICBOARD_POLL_TIMEOUT, meter_rate_ms=settings.MICBOARD_METER_RATE_MS
                )
            )

        await asyncio.gather(*(one(t) for t in targets))

    def run() -> None:
        try:
            asyncio.run(poll_all())
        finally:
            results.put(None)

    thread = threading.Thread(target=run, name="micboard-poll", daemon=True)
    thread.start()
    return thread


def run_poll_cycle() -> CycleSummary:
    """One poll cycle, timed as ``poll.cycle`` in the service metrics (see _run_poll_cycle)."""
    # A cycle waits a meter period for its SAMPLEs and up to the poll time-out for a dead receiver by
    # design; it is slow only past that (plus the driver guard), e.g. when the database drags.
    with metrics.PerformanceMonitor("poll.cycle", slow_ms=(settings.MICBOARD_POLL_TIMEOUT + 2) * 1000):
        return _run_poll_cycle()


def _run_poll_cycle() -> CycleSummary:
    """One poll cycle: poll due receivers concurrently, write what changed, bump the board version.

    Each result is written as soon as it arrives (results that arrive together are written together),
    so a receiver that answers quickly is on the board without waiting for a dead one to time out.
    A batch that cannot be written (database error) is logged and the cycle goes on with the next
    one; a version bump that fails (coordination store down) is retried at the end of the cycle.

    Raises:
        CoordinationError: the heartbeat or a version bump could not be recorded at the end.
        django.db.DatabaseError: the database could not even be read for the targets.
    """
    start = time.monotonic()
    targets = DeviceService.due_targets()
    outcomes: list[PollOutcome] = []
    changed = bump_due = False
    if targets:
        results: queue.SimpleQueue = queue.SimpleQueue()
        poller = _poll_in_background(targets, results)
        try:
            finished = False
            while not finished:
                batch = [results.get()]
                while not results.empty():
                    batch.append(results.get())
                finished = None in batch
                batch = [outcome for outcome in batch if outcome is not None]
                outcomes.extend(batch)
                if not batch:
                    continue
                try:
                    if DeviceService.record_poll_results(outcomes=batch, now=timezone.now()):
                        changed = bump_due = True
                        BoardService.bump_version()
                        bump_due = False
                except CoordinationError as exc:
                    logger.warning("board version not bumped yet: %s", exc)
                except Exception:  # the database refused this batch: the next batch is another chance
                    logger.exception("could not store the readings of receivers %s", [o.receiver_id for o in batch])
        finally:
            poller.join()  # polls end within their timeout; never start the next cycle beside them
    if DeviceService.refresh_statuses():  # peaks and PREV_* windows expire with time, polled or not
        changed = bump_due = True
    if bump_due:
        BoardService.bump_version()
    BoardService.record_heartbeat()
    try:
        ConnectionHealthService.publish_summary()  # for the X-Micboard-Receivers header
    except Exception as exc:  # the cache may be down: the header is advice, the cycle is done
        logger.warning("receivers' health summary not published: %s", exc.__class__.__name__)
    for outcome in outcomes:
        if outcome.error:
            logger.info("receiver %s: %s", outcome.receiver_id, outcome.error)
    failed = sum(1 for o in outcomes if o.reading is None)
    return CycleSummary(len(outcomes), failed, changed, time.monotonic() - start, tuple(outcomes))
