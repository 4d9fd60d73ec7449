"""Polling: one cycle polls every due receiver concurrently and writes each result as it arrives.

Huey's periodic tasks run at most once a minute, so the cycle is a task that
re-schedules itself every MICBOARD_POLL_INTERVAL seconds. Exactly one such chain
runs: each chain carries a token and a cycle whose token is no longer the
current one stops. A lock with a time-out keeps two cycles from ever running at
once (so we hold at most one connection per receiver), and a per-minute
watchdog starts a new chain when the heartbeat stops (e.g. after a crash).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from huey import crontab
from huey.contrib.djhuey import HUEY, db_periodic_task, db_task

from micboard.drivers import get_driver
from micboard.exceptions import MicboardError
from micboard.services import BoardService, DeviceService, PollOutcome, PollTarget

logger = logging.getLogger("tasks.polling")

CHAIN_KEY = "micboard:poller:chain"
LOCK_KEY = "micboard:poller:lock"


@dataclass(frozen=True, slots=True)
class CycleSummary:
    polled: int
    failed: int
    changed: bool
    seconds: float


async def _poll_one(target: PollTarget, *, timeout: float, meter_rate_ms: int) -> PollOutcome:
    try:
        poll = get_driver(target.driver)
        # The driver honours `timeout` itself; the outer guard only catches a driver bug.
        reading = await asyncio.wait_for(
            poll(target.host, target.port, model=target.model, timeout=timeout, meter_rate_ms=meter_rate_ms),
            timeout + 2,
        )
    except MicboardError as exc:  # DriverError, or ConfigurationError for an unknown driver
        return PollOutcome(target.receiver_id, error=str(exc))
    except TimeoutError:
        return PollOutcome(target.receiver_id, error=f"{target.host}:{target.port} did not finish within {timeout} s")
    except Exception:  # a driver bug must not cost the other receivers their readings
        logger.exception("driver %s failed on %s:%s", target.driver, target.host, target.port)
        return PollOutcome(target.receiver_id, error="internal driver error (see the poller's log)")
    return PollOutcome(target.receiver_id, reading=reading)


def _poll_in_background(targets: list[PollTarget], results: queue.SimpleQueue) -> threading.Thread:
    """Poll every target concurrently on an event loop of its own thread, queueing each outcome.

    The loop never waits for the database, and the ORM stays in the caller's thread (and transaction).
    ``None`` on the queue means every poll has finished.
    """

    async def poll_all() -> None:
        async def one(target: PollTarget) -> None:
            results.put(
                await _poll_one(
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
    """One poll cycle: poll due receivers concurrently, write what changed, bump the board version.

    Each result is written as soon as it arrives (results that arrive together are written together),
    so a receiver that answers quickly is on the board without waiting for a dead one to time out.
    """
    start = time.monotonic()
    targets = DeviceService.due_targets()
    outcomes: list[PollOutcome] = []
    changed = False
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
                if batch and DeviceService.record_poll_results(outcomes=batch, now=timezone.now()):
                    changed = True
                    BoardService.bump_version()
                outcomes.extend(batch)
        finally:
            poller.join()  # polls end within their timeout; never start the next cycle beside them
    if DeviceService.refresh_statuses():  # peaks and PREV_* windows expire with time, polled or not
        changed = True
        BoardService.bump_version()
    BoardService.record_heartbeat()
    for outcome in outcomes:
        if outcome.error:
            logger.info("receiver %s: %s", outcome.receiver_id, outcome.error)
    failed = sum(1 for o in outcomes if o.reading is None)
    return CycleSummary(len(outcomes), failed, changed, time.monotonic() - start)


@db_task()
def poll_cycle(chain: str) -> None:
    """A link of the self-rescheduling poll chain."""
    if cache.get(CHAIN_KEY) != chain:
        return  # a newer chain took over
    start = time.monotonic()
    if cache.add(LOCK_KEY, chain, timeout=int(3 * settings.MICBOARD_POLL_TIMEOUT + 10)):
        try:
            run_poll_cycle()
        except Exception:
            logger.exception("poll cycle failed")
        finally:
            cache.delete(LOCK_KEY)
    delay = max(0.1, settings.MICBOARD_POLL_INTERVAL - (time.monotonic() - start))
    poll_cycle.schedule(args=(chain,), delay=delay)


def start_poll_chain() -> str:
    """Start a new chain; any running one stops at its next link."""
    chain = uuid.uuid4().hex
    cache.set(CHAIN_KEY, chain, timeout=None)
    poll_cycle(chain)
    return chain


@db_periodic_task(crontab(minute="*"))
def poller_watchdog() -> None:
    """Restart the poll chain when its heartbeat stopped."""
    reason = BoardService.staleness()
    if reason:
        logger.warning("poller watchdog: %s; starting a new poll chain", reason)
        start_poll_chain()


@HUEY.on_startup()
def _start_on_consumer_start() -> None:
    start_poll_chain()
