"""Polling: one cycle polls every due receiver concurrently and writes each result as it arrives.

Huey's periodic tasks run at most once a minute and its scheduler wakes once a second, so the poll
loop is a chain of tasks: each link waits for the poll lock and for the cycle's due time (sleeping in
its worker, so the interval is exactly MICBOARD_POLL_INTERVAL from one cycle's start to the next),
runs one cycle and queues the next link at once.

* Exactly one chain: a chain carries a token, and a link whose token is no longer the current one
  ends. Each consumer start begins one new chain (the newest wins).
* Never two cycles at once, never a receiver polled twice in an interval: the lock is atomic and
  owned (only its owner renews or releases it; a holder renews it from a thread while it lives, and
  a process on the same machine takes over the lock of an owner process that died), and the next
  cycle's due time is shared by every chain and consumer.
* Nothing ends the chain but a newer chain: an error of the database, of Redis or of the queue is
  logged (rate-limited) and the link retries in place, so polling resumes within about an interval
  of the fault clearing. A per-minute watchdog starts a new chain when the heartbeat stops anyway.

All of that state lives in micboard.coordination, never in the cache.
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
from django.db import close_old_connections
from django.utils import timezone
from huey import crontab
from huey.contrib.djhuey import HUEY, db_periodic_task, db_task

from micboard import coordination, metrics
from micboard.drivers import get_driver
from micboard.exceptions import CoordinationError, MicboardError
from micboard.services import BoardService, DeviceService, PollOutcome, PollTarget
from micboard.services.board import poll_lock_seconds, poller_silence_limit
from micboard.services.health import ConnectionHealthService

logger = logging.getLogger("tasks.polling")

CHAIN_KEY = "poller:chain"
CHAIN_STARTED_KEY = "poller:chain-started"  # epoch seconds; a chain just started has not beaten yet
LOCK_KEY = "poller:lock"
DUE_KEY = "poller:next-cycle"  # epoch seconds at which the next cycle may start

_stopping = threading.Event()  # set when this consumer shuts down: running links end promptly
_started = threading.Lock()
_chain_started = False


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
        metrics.count(f"driver_errors:{exc.__class__.__name__}")
        return PollOutcome(target.receiver_id, error=str(exc))
    except TimeoutError:
        metrics.count("driver_errors:timeout")
        return PollOutcome(target.receiver_id, error=f"{target.host}:{target.port} did not finish within {timeout} s")
    except Exception:  # a driver bug must not cost the other receivers their readings
        logger.exception("driver %s failed on %s:%s", target.driver, target.host, target.port)
        metrics.count("driver_errors:internal")
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
    return CycleSummary(len(outcomes), failed, changed, time.monotonic() - start)


class _Lease:
    """Holds the poll lock while the link runs: a thread renews it every quarter of its lifetime."""

    def __init__(self, store, owner: str, ttl: float):
        self.store, self.owner, self.ttl = store, owner, ttl
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="micboard-poll-lease", daemon=True)

    def __enter__(self) -> _Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()
        try:
            self.store.release(LOCK_KEY, self.owner)
        except CoordinationError as exc:  # it expires by itself
            logger.warning("poll lock not released: %s", exc)

    def _renew(self) -> None:
        while not self._done.wait(self.ttl / 4):
            try:
                if not self.store.renew(LOCK_KEY, self.owner, self.ttl):
                    logger.warning("poll lock lost while this cycle ran (coordination store outage?)")
            except CoordinationError as exc:
                logger.warning("poll lock not renewed: %s", exc)


def _run_link(chain: str, owner: str) -> bool:
    """Wait for the lock and the due time, then run one cycle. Returns False when the chain is over.

    Raises:
        CoordinationError, django.db.DatabaseError: the caller retries.
    """
    store = coordination.store()
    interval = settings.MICBOARD_POLL_INTERVAL
    ttl = poll_lock_seconds()
    give_up = time.monotonic() + ttl + interval + settings.MICBOARD_POLL_TIMEOUT + 3
    while True:
        current = store.get(CHAIN_KEY)
        if current is None:  # a Redis restarted without persistence forgot it: this chain goes on
            store.add(CHAIN_KEY, chain)
        elif current != chain:
            return False  # a newer chain took over
        if store.acquire(LOCK_KEY, owner, ttl):
            break
        if time.monotonic() > give_up:
            logger.warning("poll lock still held by %s; trying again in the next link", store.get(LOCK_KEY))
            return True
        if _stopping.wait(min(0.05, interval / 10)):
            return False
    with _Lease(store, owner, ttl):
        due = float(store.get(DUE_KEY) or 0)
        wait = min(due - time.time(), interval)  # never longer than an interval (clock steps)
        if wait > 0 and _stopping.wait(wait):
            return False
        if store.get(CHAIN_KEY) != chain:
            return False
        store.set(DUE_KEY, repr(time.time() + interval))
        close_old_connections()
        run_poll_cycle()
    return True


@db_task()
def poll_cycle(chain: str) -> None:
    """A link of the poll chain: one cycle, then the next link is queued.

    Errors never end the chain: the link retries in place (and keeps polling from here while the
    queue cannot take the next link) until the fault clears, the chain is superseded or the consumer
    stops.
    """
    owner = coordination.new_owner()
    while not _stopping.is_set():
        try:
            if not _run_link(chain, owner):
                return
        except Exception:  # database, coordination store or a bug: log it, wait a moment, go on
            logger.exception("poll cycle failed; retrying")
            close_old_connections()
            _stopping.wait(min(1.0, settings.MICBOARD_POLL_INTERVAL))
            continue
        try:
            poll_cycle(chain)
            return
        except Exception:
            logger.exception("cannot queue the next poll link; polling on from this worker")


def start_poll_chain() -> str:
    """Start a new chain; any running one ends at its next link.

    Raises:
        CoordinationError: the coordination store is unreachable (the watchdog tries again).
    """
    chain = uuid.uuid4().hex
    store = coordination.store()
    store.set(CHAIN_STARTED_KEY, repr(time.time()))
    store.set(CHAIN_KEY, chain)
    poll_cycle(chain)
    logger.info("started poll chain %s", chain[:8])
    return chain


@db_periodic_task(crontab(minute="*"))
def poller_watchdog() -> None:
    """Restart the poll chain when its heartbeat stopped (e.g. the worker holding it was killed).

    A chain gets as long as a running one may stay silent to show its first heartbeat.
    """
    reason = BoardService.staleness()
    if not reason:
        return
    started = float(coordination.store().get(CHAIN_STARTED_KEY) or 0)
    if time.time() - started <= poller_silence_limit():
        return
    logger.warning("poller watchdog: %s; starting a new poll chain", reason)
    start_poll_chain()


@HUEY.on_startup()
def _start_on_consumer_start() -> None:
    """Huey calls this in every worker thread; only the first one starts the chain."""
    global _chain_started
    with _started:  # the others wait until the chain is recorded (else a watchdog run could start another)
        if _chain_started:
            return
        _chain_started = True
        _stopping.clear()
        start_poll_chain()


@HUEY.on_shutdown()
def _stop_on_consumer_stop() -> None:
    """The first worker that stops tells running links to end, so shutdown does not wait an interval."""
    _stopping.set()
