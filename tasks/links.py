"""Receiver links: each monitored receiver is followed by exactly one holder, through a lease.

A :class:`LinkHolder` runs in one process: an event loop thread keeps one link per receiver it holds
(a long-lived connection that follows the receiver's reports, or a connect-per-poll loop for receivers
set to "Connect per poll" and for families without a link), and the thread that *drives* it does the
bookkeeping:

* every ``FLUSH_SECONDS`` (0.25 s) it collects what the links read since the last flush and writes it
  through :meth:`DeviceService.record_poll_results` (changed fields only), then bumps the board version;
* every ``PLAN_SECONDS`` (1 s) it renews its leases (``links:rx:<id>`` in the coordination store, owned,
  ``MICBOARD_LINK_LEASE`` seconds), claims free receivers up to its fair share (all receivers divided by
  the live holders, counted through their seats ``links:seat:<n>``), lets go of any excess so that a new
  consumer takes load, follows receivers added, removed or re-addressed in the admin, records the
  poller's heartbeat, recomputes its channels' statuses (peaks and PREV_* windows expire with time),
  evaluates their alerts (``AlertService.evaluate``; a failure there is logged and the plan goes on) and
  publishes the receivers' health counts (the ``X-Micboard-Receivers`` header).

At most one connection per receiver: a link is started only by the holder of its lease, and a holder
that is no longer driven (its consumer hung or was killed) closes its links after half a lease, before
anyone else can take the lease over. A lease that could not be renewed stops its link at once.
Metering is set back to 0 before every close (the driver's own rule).

No HTML here and no device access outside the drivers; the holder writes through the services. The
Huey tasks at the end of this module drive a holder per consumer in shifts; tests and ``make bench``
drive one from a plain thread.

Show history: the flush folds what it wrote into per-channel windows in memory, and every second, beside
the plan, the windows that ended are written in one bulk insert (``micboard.services.history``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone
from huey import crontab
from huey.contrib.djhuey import HUEY, db_periodic_task, db_task

from micboard import coordination, metrics
from micboard.drivers import get_driver, get_link
from micboard.exceptions import CoordinationError, DriverError, LinkDroppedError, MicboardError
from micboard.models import LINK_PUSH
from micboard.services import BoardService, DeviceService, PollOutcome, PollTarget
from micboard.services.alerts import AlertService
from micboard.services.health import ConnectionHealthService
from micboard.services.history import SampleRecorder

logger = logging.getLogger("tasks.links")

LEASE_PREFIX = "links:rx:"
SEAT_PREFIX = "links:seat:"
MAX_HOLDERS = 32  # seats: how many holders can share the receivers
FLUSH_SECONDS = 0.25
PLAN_SECONDS = 1.0
RETRY_CAP_SECONDS = 5.0  # a lost receiver is tried again at least this often
_STOP_SECONDS = 3.0  # how long closing one link may take (METER_RATE 0, its echo, the TCP close)


def lease_seconds() -> float:
    return settings.MICBOARD_LINK_LEASE


def retry_delay(failures: int) -> float:
    """Seconds before a failed link tries again: 0.5 s doubling to at most 5 s (and MICBOARD_MAX_BACKOFF)."""
    return min(0.5 * 2 ** max(0, failures - 1), RETRY_CAP_SECONDS, settings.MICBOARD_MAX_BACKOFF)


async def poll_target(target: PollTarget, *, timeout: float, meter_rate_ms: int) -> PollOutcome:
    """One connect-per-poll reading of a target; every failure becomes the outcome's error."""
    try:
        poll = get_driver(target.driver)
        # The driver honours `timeout` itself; the outer guard only catches a driver bug.
        reading = await asyncio.wait_for(
            poll(
                target.host,
                target.port,
                model=target.model,
                timeout=timeout,
                meter_rate_ms=meter_rate_ms,
                options=dict(target.options),
            ),
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


@dataclass(eq=False)
class _Link:
    """One receiver's link inside the holder's event loop (touched only from that loop)."""

    target: PollTarget
    task: asyncio.Task | None = None
    driver: object | None = None  # the driver's link object while connected
    pending: list[PollOutcome] = field(default_factory=list)  # outcomes not yet collected


class LinkHolder:
    """Holds receivers' leases and runs their links; see the module docstring.

    Args:
        owner: the lease owner (default: a new owner naming this machine and process, so that a
            restarted consumer on the same machine takes over a dead one's leases at once).
        on_flush: called after each flush with the outcomes written and the seconds the write took
            (``make bench`` counts them).
    """

    def __init__(self, *, owner: str | None = None, on_flush: Callable[[list[PollOutcome], float], None] | None = None):
        self.owner = owner or coordination.new_owner()
        self.on_flush = on_flush
        self.held: dict[int, PollTarget] = {}  # driving thread only
        self.seat: int | None = None
        self._links: dict[int, _Link] = {}  # loop thread only
        self._drive = threading.Lock()
        self._last_driven = time.monotonic()
        self._abandoned = False
        self._retry: dict[int, PollOutcome] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._watcher: asyncio.Task | None = None
        self.history = SampleRecorder()  # show history: fed by flush, written once a second (driving thread)

    # --- the event loop thread ----------------------------------------------------------------------

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                self._watcher = loop.create_task(self._watch_driven())
                try:
                    loop.run_forever()
                finally:  # as asyncio.run ends: no task is left suspended (a link's close would never run)
                    pending = asyncio.all_tasks(loop)
                    for task in pending:
                        task.cancel()
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                    loop.run_until_complete(loop.shutdown_asyncgens())
                    loop.close()

            self._thread = threading.Thread(target=run, name="micboard-links", daemon=True)
            self._thread.start()
            ready.wait(5)
            self._loop = loop
        return self._loop

    def _call(self, coro, timeout: float = _STOP_SECONDS + 1):
        return asyncio.run_coroutine_threadsafe(coro, self._ensure_loop()).result(timeout)

    async def _watch_driven(self) -> None:
        """Close every link when nobody has driven this holder for half a lease (its leases lapse next)."""
        while True:
            await asyncio.sleep(0.25)
            if self._links and time.monotonic() - self._last_driven > lease_seconds() / 2:
                logger.warning(
                    "link holder not driven for %.1f s: closing its %d links", lease_seconds() / 2, len(self._links)
                )
                self._abandoned = True
                await asyncio.gather(*(self._stop_link(rid) for rid in list(self._links)))

    async def _start_link(self, target: PollTarget) -> None:
        link = _Link(target)
        self._links[target.receiver_id] = link
        link.task = asyncio.get_running_loop().create_task(self._run_link(link), name=f"link-{target.receiver_id}")

    async def _stop_link(self, receiver_id: int) -> None:
        link = self._links.pop(receiver_id, None)
        if link is None or link.task is None:
            return
        link.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(link.task, _STOP_SECONDS)

    async def _run_link(self, link: _Link) -> None:
        target = link.target
        link_class = get_link(target.driver) if target.link == LINK_PUSH else None
        if link_class is None:
            await self._poll_loop(link)
            return
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            driver = None
            dropped = False
            try:
                driver = link_class(
                    target.host,
                    target.port,
                    model=target.model,
                    meter_rate_ms=settings.MICBOARD_METER_RATE_MS,
                    timeout=settings.MICBOARD_POLL_TIMEOUT,
                    options=dict(target.options),
                )
                link.driver = driver
                up_at = loop.time()
                await driver.run()
                error = f"{target.host}:{target.port}: the link ended"
            except LinkDroppedError as exc:
                error, dropped = str(exc), True
            except DriverError as exc:
                error = str(exc)
                metrics.count(f"driver_errors:{exc.__class__.__name__}")
            except MicboardError as exc:  # ConfigurationError: an unknown driver or model
                error = str(exc)
            except Exception:  # a driver bug must not cost the other receivers their readings
                logger.exception("link %s failed on %s:%s", target.driver, target.host, target.port)
                metrics.count("driver_errors:internal")
                error = "internal driver error (see the poller's log)"
            connected = driver is not None and getattr(driver, "ready", False)
            if connected:
                last = driver.take()
                if last is not None:  # what arrived just before the link failed is not lost
                    link.pending.append(PollOutcome(target.receiver_id, reading=last))
            link.driver = None
            if dropped and loop.time() - up_at > 2 and failures == 0:
                failures = 1  # a dropped link that had worked: reconnect at once, report only if that fails
                logger.info("receiver %s: %s; reconnecting", target.receiver_id, error)
                continue
            failures = 1 if connected else failures + 1
            link.pending.append(PollOutcome(target.receiver_id, error=error, lost=True))
            await asyncio.sleep(retry_delay(failures))

    async def _poll_loop(self, link: _Link) -> None:
        """Connect per poll: one short session every MICBOARD_POLL_INTERVAL (failures wait out a back-off)."""
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            started = loop.time()
            outcome = await poll_target(
                link.target, timeout=settings.MICBOARD_POLL_TIMEOUT, meter_rate_ms=settings.MICBOARD_METER_RATE_MS
            )
            link.pending.append(outcome)
            failures = failures + 1 if outcome.reading is None else 0
            wait = settings.MICBOARD_POLL_INTERVAL - (loop.time() - started)
            if failures >= settings.MICBOARD_OFFLINE_AFTER:
                wait = max(wait, retry_delay(failures - settings.MICBOARD_OFFLINE_AFTER + 1))
            await asyncio.sleep(max(0.0, wait))

    async def _collect(self) -> list[PollOutcome]:
        outcomes: list[PollOutcome] = []
        for link in self._links.values():
            if link.pending:
                outcomes.extend(link.pending)
                link.pending.clear()
            take = getattr(link.driver, "take", None)
            reading = take() if take is not None else None
            if reading is not None:
                outcomes.append(PollOutcome(link.target.receiver_id, reading=reading))
        return outcomes

    # --- the driving thread ---------------------------------------------------------------------------

    def begin(self) -> bool:
        """Become this holder's driver; False when another thread drives it already."""
        if not self._drive.acquire(blocking=False):
            return False
        self._last_driven = time.monotonic()
        return True

    def end(self) -> None:
        self._drive.release()

    def drive(self, *, seconds: float, stop: threading.Event) -> None:
        """Do the holder's duties in this thread for ``seconds`` or until ``stop`` is set (see the module).

        The caller holds :meth:`begin`. Errors of the database or the coordination store are logged and
        tried again at the next tick; nothing ends the shift early but ``stop``.
        """
        end = time.monotonic() + seconds
        next_plan = 0.0
        while not stop.is_set():
            now = time.monotonic()
            if now >= end:
                return
            self._last_driven = now
            if now >= next_plan:
                next_plan = now + PLAN_SECONDS
                self._guarded(self.plan, "link plan")
                self._guarded(self.write_history, "history")
            self._guarded(self.flush, "link flush")
            stop.wait(max(0.0, FLUSH_SECONDS - (time.monotonic() - now)))

    @staticmethod
    def _guarded(step: Callable[[], None], what: str) -> None:
        try:
            step()
        except Exception:
            logger.exception("%s failed; trying again", what)
            close_old_connections()

    def flush(self) -> None:
        """Write what the links read since the last flush (newest reading per receiver; errors as they came)."""
        collected = self._call(self._collect(), timeout=2.0)
        if self._retry:
            collected = list(self._retry.values()) + collected
        if not collected:
            return
        latest: dict[int, PollOutcome] = {}
        for outcome in collected:  # a later outcome of a receiver replaces an earlier one
            latest[outcome.receiver_id] = outcome
        outcomes = [o for rid, o in latest.items() if rid in self.held]
        self._retry = {}
        started = time.perf_counter()
        now = timezone.now()
        try:
            with metrics.PerformanceMonitor("links.flush"):
                changed = DeviceService.record_poll_results(outcomes=outcomes, now=now)
        except Exception:
            self._retry = {o.receiver_id: o for o in outcomes}  # the next flush tries them again
            raise
        self.history.observe(outcomes, now=now)  # memory only; written by write_history
        if changed:
            BoardService.bump_version()
            if any(o.error for o in outcomes):  # the health header says so as soon as the board does
                ConnectionHealthService.publish_summary()
        if self.on_flush is not None:
            self.on_flush(outcomes, time.perf_counter() - started)

    def write_history(self) -> None:
        """Write the history samples of the windows that ended (one bulk insert; never raises for the database)."""
        self.history.write(now=timezone.now(), receiver_ids=list(self.held))

    def plan(self) -> None:
        """Renew, shed, claim; follow the admin's changes; heartbeat and statuses (see the module)."""
        close_old_connections()
        store = coordination.store()
        ttl = lease_seconds()
        if self._abandoned:  # nobody drove us for a while: our links are closed, our leases lapsed
            self._abandoned = False
            for rid in list(self.held):
                self._let_go(store, rid)
            self.seat = None
        targets = {t.receiver_id: t for t in DeviceService.link_targets()}
        holders = self._take_seat(store, ttl)
        # Receivers removed, switched off or re-addressed: close (a changed one is claimed afresh below).
        for rid, target in list(self.held.items()):
            if targets.get(rid) != target:
                self._let_go(store, rid)
        keys = [LEASE_PREFIX + str(rid) for rid in self.held]
        for rid, ours in zip(list(self.held), store.renew_many(keys, self.owner, ttl), strict=True):
            # Not renewed: lapsed (a restarted Redis forgot it) and free again, or another holder has it.
            if not ours and not store.acquire(LEASE_PREFIX + str(rid), self.owner, ttl):
                logger.warning("receiver %s: lease lost (another holder has it now); closing its link", rid)
                self._call(self._stop_link(rid))
                self.held.pop(rid, None)
        share = math.ceil(len(targets) / holders) if targets else 0
        for rid in sorted(self.held, key=self._rank)[share:]:  # a new holder arrived: hand over the excess
            self._let_go(store, rid)
        if len(self.held) < share:
            free = [rid for rid in targets if rid not in self.held]
            values = store.get_many([LEASE_PREFIX + str(rid) for rid in free])
            unheld = [r for r, v in zip(free, values, strict=True) if v is None or coordination.owner_is_dead(v)]
            for rid in sorted(unheld, key=self._rank):
                if len(self.held) >= share:
                    break
                if store.acquire(LEASE_PREFIX + str(rid), self.owner, ttl):
                    self.held[rid] = targets[rid]
                    self._call(self._start_link(targets[rid]))
        BoardService.record_heartbeat()
        if self.held and DeviceService.refresh_statuses(receiver_ids=list(self.held)):
            BoardService.bump_version()
        self._guarded(self._evaluate_alerts, "alert evaluation")  # with none held too: resolves switched-off ones
        ConnectionHealthService.publish_summary()

    def _evaluate_alerts(self) -> None:
        """Open and resolve the alerts of the receivers held (a failure is logged; the plan goes on)."""
        if AlertService.evaluate(now=timezone.now(), receiver_ids=list(self.held)).changed:
            BoardService.bump_version()

    def _rank(self, receiver_id: int) -> int:
        """An order of receivers of its own per holder, so that holders claiming at once rarely collide."""
        return zlib.crc32(f"{self.owner}:{receiver_id}".encode())

    def _take_seat(self, store, ttl: float) -> int:
        """Hold a seat (claim one if needed); return how many holders are seated (at least 1)."""
        keys = [SEAT_PREFIX + str(n) for n in range(MAX_HOLDERS)]
        if self.seat is not None and not store.renew(keys[self.seat], self.owner, ttl):
            self.seat = None
        values = store.get_many(keys)
        if self.seat is None:
            for n, value in enumerate(values):
                if (value is None or coordination.owner_is_dead(value)) and store.acquire(keys[n], self.owner, ttl):
                    self.seat = n
                    values[n] = self.owner
                    break
        return max(1, sum(1 for v in values if v is not None and not coordination.owner_is_dead(v)))

    def _let_go(self, store, receiver_id: int) -> None:
        """Close a receiver's link (metering off first), then release its lease."""
        self._call(self._stop_link(receiver_id))
        self.held.pop(receiver_id, None)
        try:
            store.release(LEASE_PREFIX + str(receiver_id), self.owner)
        except CoordinationError as exc:  # it lapses by itself
            logger.warning("receiver %s: lease not released: %s", receiver_id, exc)

    def close(self) -> None:
        """Close every link (metering off first) and give back the leases and the seat."""
        if self._closed:
            return
        self._closed = True
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._call(self._stop_all(), timeout=_STOP_SECONDS + 2)
        try:
            store = coordination.store()
            for rid in list(self.held):
                store.release(LEASE_PREFIX + str(rid), self.owner)
            if self.seat is not None:
                store.release(SEAT_PREFIX + str(self.seat), self.owner)
        except CoordinationError as exc:
            logger.warning("leases not released (they lapse by themselves): %s", exc)
        self.held.clear()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(5)

    async def _stop_all(self) -> None:
        await asyncio.gather(*(self._stop_link(rid) for rid in list(self._links)))
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)


# --- Huey: one holder per consumer, driven in shifts ----------------------------------------------------

_stopping = threading.Event()  # set when this consumer shuts down: the shift ends and the links close
_holder_lock = threading.Lock()
_holder: LinkHolder | None = None
_started = False
_started_at = time.monotonic()  # when this consumer queued its shifts (a first shift may still be queued)
MAX_HOPS = 40  # a shift that finds its consumer's holder driven tries another consumer this many times


def process_holder() -> LinkHolder:
    """This process's holder (one per consumer), created on first use."""
    global _holder
    with _holder_lock:
        if _holder is None or _holder._closed:
            _holder = LinkHolder()
        return _holder


@db_task()
def hold_links(chain: str, hops: int = 0) -> None:
    """One shift of this consumer's link holder (MICBOARD_LINK_SHIFT seconds), then the next shift is queued.

    The holder's links outlive the shift: the next shift adopts them when it runs in the same consumer
    (the usual case), and when it runs in another consumer that already drives its own holder it is
    passed on (up to MAX_HOPS times) until it reaches a consumer whose holder nobody drives. A holder
    left undriven closes its links after half a lease and its receivers go to the other holders.
    """
    if _stopping.is_set():
        return
    holder = process_holder()
    if not holder.begin():
        if hops < MAX_HOPS:
            _stopping.wait(0.05)
            hold_links(chain, hops + 1)
        return
    try:
        holder.drive(seconds=settings.MICBOARD_LINK_SHIFT, stop=_stopping)
    finally:
        holder.end()
    if _stopping.is_set():
        holder.close()
        return
    try:
        hold_links(chain)
    except Exception:  # the queue is down: this consumer's holder lapses and the others take over
        logger.exception("cannot queue the next link shift")


def start_link_shifts() -> str:
    """Queue a new chain of holder shifts (each consumer runs one)."""
    chain = uuid.uuid4().hex
    hold_links(chain)
    logger.info("started link shifts %s", chain[:8])
    return chain


@db_periodic_task(crontab(minute="*"))
def links_watchdog() -> None:
    """Start a chain of shifts when this consumer's holder has not been driven for a lease (e.g. lost shift)."""
    holder = _holder
    last = holder._last_driven if holder is not None else _started_at
    if time.monotonic() - last <= lease_seconds():
        return
    reason = BoardService.staleness()
    logger.warning(
        "link watchdog: no holder driven in this consumer%s; starting link shifts", f" ({reason})" if reason else ""
    )
    start_link_shifts()


@HUEY.on_startup()
def _start_on_consumer_start() -> None:
    """Huey calls this in every worker thread; only the first one queues this consumer's shifts."""
    global _started, _started_at
    with _holder_lock:
        if _started:
            return
        _started = True
        _started_at = time.monotonic()
    _stopping.clear()
    start_link_shifts()


@HUEY.on_shutdown()
def _stop_on_consumer_stop() -> None:
    """The first worker that stops ends the shift: its holder closes the links and releases the leases."""
    _stopping.set()
