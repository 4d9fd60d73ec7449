"""Discovery runs: listen for devices announcing themselves, probe a range, record what answers.

``run_discovery`` (Huey) runs one :class:`~micboard.models.DiscoveryTask`:

1. **Listen** (``MICBOARD_DISCOVERY_LISTEN_SECONDS``) for Shure SLP announcements and ask mDNS for
   Sennheiser SSC services, on ``MICBOARD_DISCOVERY_INTERFACE`` with multicast TTL
   ``MICBOARD_DISCOVERY_TTL``. A device that announces itself is probed at the address it announced from
   (SLP: the family's probe port; mDNS: the port its SRV record gives).
2. **Probe** every address of the range for every family asked for, at most
   ``MICBOARD_DISCOVERY_CONCURRENCY`` probes at once, each within ``MICBOARD_DISCOVERY_TIMEOUT``.

The network side runs on an event loop in a thread of its own and knows nothing of Django; this thread
writes through DiscoveryService as results arrive (every find at once, progress twice a second) and reads
the cancel flag each time, stopping the probes still queued when it is set. A probe's failure is a note on
the run, never the end of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from django.conf import settings
from django.db import DatabaseError, close_old_connections, transaction
from huey.contrib.djhuey import db_task

from micboard.drivers import dcid, mdns, slp
from micboard.drivers.probes import Found, get_probe, probe_port
from micboard.exceptions import (
    ConfigurationError,
    ConnectionTimeoutError,
    DeviceSilentError,
    DriverError,
    MicboardError,
)
from micboard.models import DiscoveryTask
from micboard.services.discovery import DiscoveryService

logger = logging.getLogger("tasks.discovery")

SHURE = "shure_tcp"
SSC = "sennheiser_ssc"
PROGRESS_EVERY = 0.5  # seconds between two progress writes (and cancel checks)
_INFERRED = "it does not name its model"


@dataclass(frozen=True, slots=True)
class ScanPlan:
    """Everything one run needs, free of Django objects."""

    addresses: tuple[str, ...]
    families: tuple[str, ...]
    ports: Mapping[str, int] = field(default_factory=dict)  # probe port per driver key
    options: Mapping[str, str] = field(default_factory=dict)
    listen_seconds: float = 3.0
    interface: str = "127.0.0.1"
    ttl: int = 0
    slp_port: int = slp.SLP_PORT
    mdns_port: int = mdns.MDNS_PORT
    concurrency: int = 64
    timeout: float = 1.5


@dataclass(frozen=True, slots=True)
class _Target:
    driver: str
    host: str
    port: int
    source: str  # "scan", "SLP", "mDNS"
    model_hint: str | None = None  # the model an SLP announcement's DCID names

    def heard(self) -> str:
        what = f" as {self.model_hint}" if self.model_hint else ""
        return f"{self.host} announced itself ({self.source}{what})"


def plan_for(task: DiscoveryTask) -> ScanPlan:
    """The plan of a stored run, from its row and the settings."""
    ports = {family: probe_port(family) for family in task.families}
    ports.update({k: v for k, v in settings.MICBOARD_DISCOVERY_PORTS.items() if k in ports})
    return ScanPlan(
        addresses=tuple(DiscoveryService.addresses(scope=task.scope)),
        families=tuple(task.families),
        ports=ports,
        options=DiscoveryService.probe_options(task=task),
        listen_seconds=settings.MICBOARD_DISCOVERY_LISTEN_SECONDS if task.listen else 0.0,
        interface=settings.MICBOARD_DISCOVERY_INTERFACE,
        ttl=settings.MICBOARD_DISCOVERY_TTL,
        slp_port=settings.MICBOARD_DISCOVERY_SLP_PORT,
        mdns_port=settings.MICBOARD_DISCOVERY_MDNS_PORT,
        concurrency=settings.MICBOARD_DISCOVERY_CONCURRENCY,
        timeout=settings.MICBOARD_DISCOVERY_TIMEOUT,
    )


# ----------------------------------------------------------------------------------------- network side


async def _until_stopped(job: asyncio.Future, stop: threading.Event) -> None:
    while not job.done():
        await asyncio.wait({job}, timeout=0.1)
        if stop.is_set():
            job.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await job


async def _listen(plan: ScanPlan, emit: Callable, stop: threading.Event) -> list[_Target]:
    jobs: dict[str, asyncio.Future] = {}
    if SHURE in plan.families:
        jobs["SLP"] = asyncio.ensure_future(
            slp.listen(seconds=plan.listen_seconds, interface=plan.interface, port=plan.slp_port)
        )
    if SSC in plan.families:
        jobs["mDNS"] = asyncio.ensure_future(
            mdns.browse(seconds=plan.listen_seconds, interface=plan.interface, ttl=plan.ttl, port=plan.mdns_port)
        )
    if not jobs:
        return []
    emit(("phase", f"Listening for announcements ({plan.listen_seconds:g} s)"))
    await _until_stopped(asyncio.gather(*jobs.values(), return_exceptions=True), stop)
    targets: list[_Target] = []
    for source, job in jobs.items():
        if job.cancelled():
            continue
        error = job.exception()
        if error is not None:
            emit(("note", f"Could not listen for {source} announcements: {error}"))
            continue
        for heard in job.result():
            if source == "SLP":
                targets.append(_Target(SHURE, heard.host, plan.ports[SHURE], source, heard.model))
            else:
                targets.append(_Target(SSC, heard.host, heard.port, source))
    return targets


async def _probe(target: _Target, plan: ScanPlan, emit: Callable) -> None:
    try:
        probe = get_probe(target.driver)
        found: list[Found] = await asyncio.wait_for(
            probe(target.host, target.port, timeout=plan.timeout, options=dict(plan.options)), plan.timeout + 1.0
        )
    except (DriverError, TimeoutError) as exc:
        plain = isinstance(exc, (ConnectionTimeoutError, TimeoutError)) and not isinstance(exc, DeviceSilentError)
        if target.source != "scan":
            reason = "no answer" if isinstance(exc, TimeoutError) else str(exc)
            emit(("note", f"{target.heard()} but did not answer on port {target.port}: {reason}"))
        elif not plain:
            emit(("note", str(exc)))
        return
    except ConfigurationError as exc:
        emit(("note", str(exc)))
        return
    except Exception:  # a probe's own fault must not end the run
        logger.exception("discovery: the %s probe of %s:%s failed", target.driver, target.host, target.port)
        emit(("note", f"{target.host}:{target.port}: the {target.driver} probe failed (see the log)"))
        return
    for item in found:
        if target.model_hint and item.note.startswith(_INFERRED):
            item = replace(item, model=target.model_hint, note="model from its SLP announcement")
        emit(("found", item, target.source))


async def run_scan(plan: ScanPlan, emit: Callable, stop: threading.Event) -> None:
    """Listen, then probe every target with at most ``plan.concurrency`` probes at once; stop when ``stop`` is set."""
    targets = await _listen(plan, emit, stop) if plan.listen_seconds > 0 else []
    seen = {(t.driver, t.host, t.port) for t in targets}
    for address in plan.addresses:
        for family in plan.families:
            key = (family, address, plan.ports[family])
            if key not in seen:
                seen.add(key)
                targets.append(_Target(family, address, plan.ports[family], "scan"))
    emit(("total", len(targets)))
    emit(("phase", "Probing"))
    slots = asyncio.Semaphore(max(1, plan.concurrency))
    running: set[asyncio.Task] = set()
    done = 0

    async def one(target: _Target) -> None:
        nonlocal done
        try:
            await _probe(target, plan, emit)
        finally:
            slots.release()
            done += 1
            emit(("progress", done))

    try:
        for target in targets:
            await slots.acquire()
            if stop.is_set():
                slots.release()
                break
            task = asyncio.create_task(one(target))
            running.add(task)
            task.add_done_callback(running.discard)
        while running and not stop.is_set():
            await asyncio.wait(set(running), timeout=0.1)
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)


def _network_thread(plan: ScanPlan, events: queue.SimpleQueue, stop: threading.Event) -> threading.Thread:
    def run() -> None:
        try:
            asyncio.run(run_scan(plan, events.put, stop))
        except BaseException as exc:  # reported by the ORM side, which ends the run as failed
            logger.exception("discovery: the scan failed")
            events.put(("error", f"{type(exc).__name__}: {exc}"))
        finally:
            events.put(None)

    thread = threading.Thread(target=run, name="micboard-discovery", daemon=True)
    thread.start()
    return thread


# ----------------------------------------------------------------------------------------- Django side


def scan(task_id: int, *, plan: ScanPlan | None = None) -> None:
    """Run one stored discovery task to its end (done, cancelled or failed), writing as results arrive."""
    task = DiscoveryService.start(task_id=task_id)
    if task is None:
        return
    try:
        _load_dcid_map(task_id)
        plan = plan or plan_for(task)
    except MicboardError as exc:
        DiscoveryService.finish(task_id=task_id, error=str(exc))
        return
    events: queue.SimpleQueue = queue.SimpleQueue()
    stop = threading.Event()
    thread = _network_thread(plan, events, stop)
    done = total = 0
    phase, error, notes = "Starting", "", []
    cancelled = False
    written = 0.0
    try:
        while True:
            try:
                event = events.get(timeout=PROGRESS_EVERY)
            except queue.Empty:
                event = ("tick",)
            if event is None:
                break
            kind = event[0]
            if kind == "found":
                DiscoveryService.record_found(task_id=task_id, found=event[1], source=event[2])
            elif kind == "progress":
                done = event[1]
            elif kind == "total":
                total = event[1]
            elif kind == "phase":
                phase = event[1]
            elif kind == "note":
                notes.append(event[1])
            elif kind == "error":
                error = event[1]
            if time.monotonic() - written >= PROGRESS_EVERY:
                written = time.monotonic()
                DiscoveryService.add_notes(task_id=task_id, notes=notes)
                notes = []
                if DiscoveryService.record_progress(task_id=task_id, done=done, total=total, phase=phase):
                    cancelled = True
                    stop.set()
        DiscoveryService.add_notes(task_id=task_id, notes=notes)
        DiscoveryService.record_progress(task_id=task_id, done=done, total=total, phase=phase)
    except DatabaseError as exc:
        stop.set()
        error = f"the database failed during the scan: {exc}"
        logger.exception("discovery: task %s could not record its results", task_id)
    finally:
        stop.set()
        thread.join(timeout=plan.timeout + 5.0)
    DiscoveryService.finish(task_id=task_id, cancelled=cancelled, error=error)


def _load_dcid_map(task_id: int) -> None:
    path = getattr(settings, "MICBOARD_DCID_FILE", "")
    if path:
        try:
            dcid.load_dcid_file(path)
        except ConfigurationError as exc:
            DiscoveryService.add_notes(task_id=task_id, notes=[f"{exc} (models from SLP announcements unknown)"])


@db_task()
def run_discovery(task_id: int) -> None:
    """Huey: run one discovery task."""
    close_old_connections()
    try:
        scan(task_id)
    finally:
        close_old_connections()


def queue_discovery(task: DiscoveryTask) -> None:
    """Queue a recorded run once the transaction that recorded it commits."""
    transaction.on_commit(lambda: run_discovery(task.pk))
