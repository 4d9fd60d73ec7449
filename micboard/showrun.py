"""A whole show in compressed time: the real simulator, the real driver and the history pipeline (docs/report.md).

The simulated receivers run on a manual clock (``SimulatedDevice.advance``): the harness moves show time on
step by step, and at each step the devices send what changed (REPORTs) and one meter sample per channel
over loopback TCP to the real live link (``ShureLink``), exactly as on a show. The harness waits until the
link has read every byte the devices sent for that step, takes its reading and does what a link holder does
with it, stamped with the show time: ``DeviceService.record_poll_results``, ``SampleRecorder.observe`` /
``write``; every show-minute (every 10 show-seconds in the last hour) ``DeviceService.refresh_statuses`` and
``AlertService.evaluate`` (a holder does both every second; the alerts of the show are a sample, the report's
figures come from the history); every show-minute it folds the history like the Huey task
(``fold_history(now=)``), every show-hour it prunes (``prune_history_now(now=)``).

Steps: every show-second during the last ``MICBOARD_HISTORY_RAW_MINUTES`` of the show (the 1 s rows that
stay), every ``step`` (10) show-seconds before it. Those earlier 1 s rows are folded into 10 s rows anyway,
and one reading per 10 s window gives the same 10 s and 60 s rows as ten, so the table holds the rows a
show polled every second holds: 3600 per channel for the last hour, 360 per channel-hour before it. Scripted
events (swaps, switch-offs, RF fades) fall on step boundaries.

The crew: a pack at or below the battery alert's thresholds (bars or minutes, read off the simulator as a
wrangler reads the pack) is switched off at the next show-minute and back on with a fresh battery after
its swap time. The ground truth is the simulator's (runtime used and time on per channel) and the
harness's own log of what it did (swaps, dropouts), never the history.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from micboard.drivers import get_link
from micboard.exceptions import ConfigurationError
from micboard.models import ChannelSample, Receiver
from micboard.services import AssignmentService, DeviceService, PollOutcome
from micboard.services.alerts import AlertService
from micboard.services.history import HistoryService, SampleRecorder
from micboard.services.report import ReportService, ShowReport
from micboard.simulators.rig import rig_device
from micboard.simulators.shure_tcp import SimulatedShureDevice
from tasks.history import fold_history, prune_history_now

HOUR = 3600

# (rig key, full-pack hours, {channel: drain factor}, {channel: battery % at the start}); names from the rig.
RIG = (
    ("ulxd", 10.0, {}, {1: 100, 2: 80, 3: 55, 4: 35}),
    ("ad", 7.0, {2: 1.6}, {1: 100, 2: 100, 3: 70, 4: 45}),
)
SWAP_SECONDS = (40, 60, 80, 30)  # how long a swap keeps a pack off, by channel number
INTERMISSIONS = ((2 * HOUR, 20 * 60, [("ulxd", 2), ("ad", 1)]), (14 * HOUR, 30 * 60, [("ad", 3)]))
FADES = (  # (show second, seconds, rig key, channel): the pack out of range (RF at the noise floor)
    (3 * HOUR + 300, 20, "ulxd", 1),
    (9 * HOUR + 1200, 90, "ulxd", 1),
    (10 * HOUR + 600, 30, "ad", 4),
    (17 * HOUR + 420, 10, "ulxd", 1),
)
LATE_FADES = ((-40 * 60, 5, "ulxd", 1), (-25 * 60, 12, "ad", 2))  # seconds before the end (the 1 s hour)
PERFORMERS = {"ulxd": "Band", "ad": "Cast"}
# README "History": bytes a sample row takes on disk with its index (``manage.py history_size``), the upper end.
STATED_BYTES_PER_ROW = {"sqlite": 91, "postgresql": 143}
# A show writes channels interleaved and the folding deletes rows all through the table, which leaves pages
# part-full: a 24-hour show measured 1.38-1.41x the packed figure on SQLite, 1.37x on PostgreSQL (vacuumed hourly).
# The README states 1.5x as the size to plan for; over it, the show fails.
SIZE_MARGIN = 1.5
RUNTIME_TOLERANCE_MINUTES = 2  # per battery period (see micboard/services/report.py)


@dataclass(slots=True)
class Truth:
    """What the simulator did to one pack."""

    key: str
    number: int
    swaps: int = 0
    on_seconds: float = 0.0
    used_seconds: float = 0.0
    dropouts: int = 0
    dropout_seconds: int = 0


@dataclass(slots=True)
class ShowResult:
    start: datetime
    end: datetime
    channels: int
    polls: int
    wall_seconds: float
    rows: dict[int, int]  # resolution -> rows kept
    table_bytes: int | None  # the show's share of the samples table on disk (None: not measurable here)
    free_bytes: int | None  # of which free space inside the table's pages (SQLite only)
    vendor: str
    report: ShowReport
    truth: dict[tuple[str, int], Truth]
    packs: dict[tuple[str, int], object] = field(default_factory=dict)  # (key, channel) -> PackReport

    def expected_rows(self) -> dict[int, int]:
        """Rows per resolution a show polled every second keeps at its end with the settings' tiers."""
        seconds = int((self.end - self.start).total_seconds())
        raw = min(seconds, int(settings.MICBOARD_HISTORY_RAW_MINUTES * 60))
        ten = min(seconds - raw, int(settings.MICBOARD_HISTORY_TEN_SECOND_HOURS * HOUR) - raw)
        sixty = seconds - raw - ten
        return {1: raw * self.channels, 10: ten // 10 * self.channels, 60: sixty // 60 * self.channels}

    def stated_bytes(self) -> int | None:
        """The size the README states for the rows of this show (expected rows x stated bytes per row)."""
        per_row = STATED_BYTES_PER_ROW.get(self.vendor)
        return None if per_row is None else sum(self.expected_rows().values()) * per_row

    def problems(self) -> list[str]:
        """Where the history or the report disagrees with what the simulator did (empty: none)."""
        found = []
        if self.rows != self.expected_rows():
            found.append(f"rows kept {self.rows}, a show polled every second keeps {self.expected_rows()}")
        stated = self.stated_bytes()
        if stated is not None and self.table_bytes is not None and self.table_bytes > stated * SIZE_MARGIN:
            found.append(f"history takes {self.table_bytes} bytes, over {SIZE_MARGIN}x the stated {stated}")
        for where, truth in self.truth.items():
            pack = self.packs.get(where)
            if pack is None:
                found.append(f"{where}: not in the report")
                continue
            if pack.swaps != truth.swaps:
                found.append(f"{where}: {pack.swaps} swaps reported, {truth.swaps} made")
            used = truth.used_seconds / 60
            allowed = RUNTIME_TOLERANCE_MINUTES * (truth.swaps + 1)
            if pack.runtime_used_minutes is None or abs(pack.runtime_used_minutes - used) > allowed:
                found.append(f"{where}: runtime used {pack.runtime_used_minutes} min reported, {used:.1f} min used")
            if (pack.dropouts, pack.dropout_seconds) != (truth.dropouts, truth.dropout_seconds):
                found.append(
                    f"{where}: dropouts {pack.dropouts} / {pack.dropout_seconds} s reported, "
                    f"{truth.dropouts} / {truth.dropout_seconds} s made"
                )
        return found

    def lines(self) -> list[str]:
        """The figures, for ``manage.py simulate_show`` and ``make bench``."""
        hours = (self.end - self.start).total_seconds() / HOUR
        expected = self.expected_rows()
        out = [
            f"show of {hours:g} h ({self.channels} packs) played in {self.wall_seconds:.1f} s: {self.polls} polls "
            f"through the live link ({self.polls / max(self.wall_seconds, 1e-9):.0f} a second)",
            "rows kept at 1 s / 10 s / 60 s: "
            + " / ".join(f"{self.rows[r]} (expected {expected[r]})" for r in (1, 10, 60)),
        ]
        stated = self.stated_bytes()
        if self.table_bytes is not None:
            per_channel = self.table_bytes / self.channels
            line = (
                f"history on disk ({self.vendor}): {self.table_bytes / 1024:.0f} KiB, "
                f"{per_channel / 1024:.0f} KiB per channel for {hours:g} h"
            )
            if self.free_bytes is not None:
                line += f" ({self.free_bytes / self.table_bytes:.0%} of it free space inside part-full pages)"
            if stated is not None:
                line += (
                    f"; the README's {STATED_BYTES_PER_ROW[self.vendor]} bytes a row make "
                    f"{stated / self.channels / 1024:.0f} KiB per channel for these rows "
                    f"(measured {self.table_bytes / stated:.2f}x)"
                )
            out.append(line)
        out.append("pack: swaps reported/made, runtime used reported/simulated (min), dropouts reported/made")
        for where, truth in sorted(self.truth.items()):
            pack = self.packs.get(where)
            if pack is None:
                continue
            out.append(
                f"  {where[0]} {where[1]}: swaps {pack.swaps}/{truth.swaps}, runtime "
                f"{pack.runtime_used_minutes}/{truth.used_seconds / 60:.1f}, dropouts {pack.dropouts}/{truth.dropouts} "
                f"({pack.dropout_seconds}/{truth.dropout_seconds} s)"
            )
        flagged = [f"{p.label}: {'; '.join(p.flags)}" for p in self.report.untrusted]
        out.append("not to trust tomorrow: " + (" | ".join(flagged) if flagged else "none"))
        problems = self.problems()
        out.append("matches the simulator: yes" if not problems else "MISMATCH: " + "; ".join(problems))
        return out


class _Device(SimulatedShureDevice):
    """The Shure simulator, counting the bytes it queues for each client (the harness's end-of-step mark)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.queued: dict[str, int] = {}

    def _enqueue(self, client, frames: list[str]) -> None:
        if not client.closed and self.output_enabled:
            self.queued[client.peer] = self.queued.get(client.peer, 0) + sum(len(f) for f in frames)
        super()._enqueue(client, frames)

    def _speech(self, ch, t: float) -> tuple[float, float]:
        """Speech without the engine's occasional clips: the show's alerts are about packs, not peaks."""
        peak, rms = super()._speech(ch, t)
        return min(peak, -6.0), rms


class _Loop:
    """An event loop in a thread of its own for the devices and the links (the ORM stays in the caller's)."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="showrun", daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class ShowRun:
    """One scripted show; see the module docstring. Use :func:`run_show`."""

    def __init__(self, *, hours: float, start: datetime, step: int, seed: int):
        self.seconds = int(hours * HOUR)
        self.start = start
        self.step = step
        self.fine_from = self.seconds - int(settings.MICBOARD_HISTORY_RAW_MINUTES * 60)
        self.devices: dict[str, _Device] = {}
        self.receivers: dict[str, Receiver] = {}
        self.links: dict[str, object] = {}
        self.tasks: list[asyncio.Task] = []
        self.truth: dict[tuple[str, int], Truth] = {}
        self.events: dict[int, list[Callable[[], None]]] = {}
        self.swapping: dict[tuple[str, int], int] = {}  # pack -> show second it comes back on
        self.fade_until: dict[tuple[str, int], int] = {}
        self.seed = seed
        self.loop = _Loop()

    # --- the simulated side (runs in the loop's thread) ----------------------------------------------

    async def _start_devices(self) -> None:
        for key, hours, drains, percents in RIG:
            device = _Device(
                rig_device(key),
                host="127.0.0.1",
                port=0,
                seed=self.seed,
                chaos=False,
                runtime_hours=hours,
                pack_events_per_hour=0,
                manual_clock=True,
            )
            for ch in device.channels:
                ch.battery_pct = float(percents.get(ch.number, 100))
                ch.drain = drains.get(ch.number, 1.0)
                ch.rf_base = -45.0  # natural fades stay above the dropout threshold: only scripted ones cross it
                ch.tx_on = True
                self.truth[(key, ch.number)] = Truth(key, ch.number)
            await device.start()
            self.devices[key] = device

    async def _start_links(self) -> None:
        link_class = get_link("shure_tcp")
        for key, device in self.devices.items():
            receiver = self.receivers[key]
            link = link_class(
                device.host, device.port, model=receiver.model, meter_rate_ms=settings.MICBOARD_METER_RATE_MS, timeout=5
            )
            self.links[key] = link
            self.tasks.append(asyncio.get_running_loop().create_task(link.run(), name=f"show-link-{key}"))
        deadline = time.monotonic() + 10
        while not all(link.ready for link in self.links.values()):
            for task in self.tasks:
                if task.done():
                    task.result()  # the link failed: raise its error
            if time.monotonic() > deadline:
                raise RuntimeError("the show's links did not read their receivers within 10 s")
            await asyncio.sleep(0.01)

    async def _advance(self, seconds: float) -> dict[str, object]:
        """Move every device on, wait until each link has read all it was sent, return the readings."""
        for device in self.devices.values():
            device.advance(seconds)
        return await self._settle()

    async def _settle(self) -> dict[str, object]:
        deadline = time.monotonic() + 10
        for key, link in self.links.items():
            device = self.devices[key]
            session = link.session
            peer = str(session.transport.get_extra_info("sockname"))
            while session.bytes_in < device.queued.get(peer, 0):
                if time.monotonic() > deadline or session.eof:
                    raise RuntimeError(f"{key}: the link stopped reading ({session.bytes_in} bytes of {device.queued})")
                await asyncio.sleep(0)
        return {key: link.take() for key, link in self.links.items()}

    async def _step(self, second: int, step: int) -> dict[str, object]:
        """The script's events at ``second``, the crew's round, then ``step`` seconds of show."""
        for event in self.events.pop(second, ()):
            event()
        self._crew(second)
        return await self._advance(step)

    async def _stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for device in self.devices.values():
            await device.stop()

    # --- the script ----------------------------------------------------------------------------------

    def _at(self, second: int, fn: Callable[[], None]) -> None:
        self.events.setdefault(second, []).append(fn)

    def _script(self) -> None:
        for at, seconds, packs in INTERMISSIONS:  # switched off and on again with the same battery
            for key, number in packs:
                self._at(at, lambda k=key, n=number: self._pack(k, n, on=False))
                self._at(at + seconds, lambda k=key, n=number: self._pack(k, n, on=True))
        for at, seconds, key, number in (*FADES, *((self.seconds + a, s, k, n) for a, s, k, n in LATE_FADES)):
            self._at(at, lambda k=key, n=number, s=seconds, a=at: self._fade(k, n, a, s))

    def _pack(self, key: str, number: int, *, on: bool) -> None:
        ch = self.devices[key].channels[number - 1]
        if on:
            ch.tx_on = False  # switched on by the engine, so that the runtime reads "calculating" first
            self.devices[key]._switch_on(ch)
        else:
            self.devices[key]._switch_off(ch)
        self.devices[key]._publish_changes()

    def _fade(self, key: str, number: int, at: int, seconds: int) -> None:
        ch = self.devices[key].channels[number - 1]
        if not ch.tx_on or (key, number) in self.swapping:
            return  # a fade on a pack that is off is no dropout: the script keeps them apart
        ch.rf_lost = True
        self.fade_until[(key, number)] = at + seconds
        truth = self.truth[(key, number)]
        truth.dropouts += 1
        truth.dropout_seconds += seconds

    def _crew(self, second: int) -> None:
        """Every show-minute: swap the packs an alert would name, bring swapped packs back on."""
        for (key, number), back in list(self.swapping.items()):
            if second >= back:
                ch = self.devices[key].channels[number - 1]
                ch.battery_pct = 100.0
                self._pack(key, number, on=True)
                del self.swapping[(key, number)]
        for (key, number), until in list(self.fade_until.items()):
            if second >= until:
                self.devices[key].channels[number - 1].rf_lost = False
                del self.fade_until[(key, number)]
        if second % 60:
            return
        bars, minutes = settings.MICBOARD_ALERT_BATTERY_BARS, settings.MICBOARD_ALERT_BATTERY_MINUTES
        for key, device in self.devices.items():
            for ch in device.channels:
                left, _ = device._runtime(ch)
                if not ch.tx_on or (key, ch.number) in self.swapping or (key, ch.number) in self.fade_until:
                    continue
                if device._bars(ch.battery_pct) <= bars or left <= minutes:
                    self._pack(key, ch.number, on=False)
                    self.swapping[(key, ch.number)] = second + SWAP_SECONDS[(ch.number - 1) % len(SWAP_SECONDS)]
                    self.truth[(key, ch.number)].swaps += 1

    # --- the holder's side (the caller's thread) -----------------------------------------------------

    def _setup_rig(self) -> None:
        for key, device in self.devices.items():
            rig = rig_device(key)
            receiver = DeviceService.create_receiver(
                name=f"Show run {rig.name}", model=rig.model, host=device.host, port=device.port
            )
            self.receivers[key] = receiver
            for channel in receiver.channels.order_by("number"):
                spec = rig.channels[channel.number - 1]
                AssignmentService.assign(channel=channel, performer=f"{PERFORMERS[key]}: {spec.performer}")

    def _record(self, readings: dict[str, object], second: int, recorder: SampleRecorder) -> None:
        now = self.start + timedelta(seconds=second)
        outcomes = [
            PollOutcome(self.receivers[key].pk, reading=reading)
            for key, reading in readings.items()
            if reading is not None
        ]
        ids = [r.pk for r in self.receivers.values()]
        if outcomes:
            DeviceService.record_poll_results(outcomes=outcomes, now=now)
        recorder.observe(outcomes, now=now)
        recorder.write(now=now, receiver_ids=ids)
        if second % (10 if second >= self.fine_from else 60) == 0:
            DeviceService.refresh_statuses(now=now, receiver_ids=ids)
            AlertService.evaluate(now=now, receiver_ids=ids)
        if second % 60 == 0:
            fold_history(now=now)
        if second % HOUR == 0:
            prune_history_now(now=now)
            _vacuum()

    def run(self, progress: Callable[[str], None] | None = None) -> tuple[int, float]:
        """Play the show; returns (polls, wall seconds)."""
        began = time.perf_counter()
        self.loop.run(self._start_devices())
        self._setup_rig()
        self.loop.run(self._start_links())
        self._script()
        recorder = SampleRecorder(resolution=1)
        polls = 0
        second = 0
        readings = self.loop.run(self._settle())
        while True:
            self._record(readings, second, recorder)
            polls += 1
            step = 1 if second >= self.fine_from else self.step
            if second + step >= self.seconds:
                break
            readings = self.loop.run(self._step(second, step))
            second += step
            if progress is not None and second % HOUR == 0:
                spent = time.perf_counter() - began
                progress(f"show hour {second // HOUR} of {self.seconds // HOUR}: {polls} polls in {spent:.0f} s")
        end = self.start + timedelta(seconds=self.seconds)
        recorder.write(now=end, receiver_ids=[])
        fold_history(now=end)
        for key, device in self.devices.items():
            for ch in device.channels:
                truth = self.truth[(key, ch.number)]
                truth.on_seconds, truth.used_seconds = ch.on_seconds, ch.used_seconds
        return polls, time.perf_counter() - began

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.loop.run(self._stop())
        self.loop.close()


def _vacuum() -> None:
    """PostgreSQL: what autovacuum does for the samples table many times in 24 real hours, once a show-hour.

    Folding and pruning delete rows all day; autovacuum (1 min naptime) marks their space for reuse long
    before the next hour's rows arrive. A show played in minutes outruns it, so the harness stands in for it
    (a plain VACUUM: space reused, never returned to the system, as on a real server). Only outside a
    transaction (a test wrapped in one cannot vacuum, and its deleted rows stay until it ends).
    """
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM {connection.ops.quote_name(ChannelSample._meta.db_table)}")


def _free_bytes() -> int:
    """SQLite: the unused bytes inside the pages of the samples table and its index."""
    names = [ChannelSample._meta.db_table, *(index.name for index in ChannelSample._meta.indexes)]
    with connection.cursor() as cursor:
        marks = ", ".join("%s" for _ in names)
        cursor.execute(f"SELECT COALESCE(SUM(unused), 0) FROM dbstat WHERE name IN ({marks})", names)  # noqa: S608
        return int(cursor.fetchone()[0])


def run_show(
    *,
    hours: float = 24.0,
    start: datetime | None = None,
    step: int = 10,
    seed: int = 7,
    keep: bool = True,
    progress: Callable[[str], None] | None = None,
) -> ShowResult:
    """Play a scripted show of ``hours`` from ``start`` (default: ``hours`` ago, on a whole minute) and report it.

    ``keep=False`` deletes the show's receivers (and with them its samples and alerts) afterwards.
    """
    if step not in (1, 2, 5, 10):
        raise ValueError("step must divide 10 (1, 2, 5 or 10 show-seconds)")
    if start is None:
        now = timezone.now().astimezone(UTC).replace(second=0, microsecond=0)
        start = now - timedelta(hours=hours)
    show = ShowRun(hours=hours, start=start, step=step, seed=seed)
    try:
        polls, wall = show.run(progress)
    finally:
        show.close()
    end = start + timedelta(seconds=show.seconds)
    ids = [r.pk for r in show.receivers.values()]
    rows = dict.fromkeys((1, 10, 60), 0)
    for resolution in rows:
        rows[resolution] = ChannelSample.objects.filter(channel__receiver_id__in=ids, resolution=resolution).count()
    try:
        size = HistoryService.table_bytes()
    except ConfigurationError:  # a database the size query does not know
        size = free = None
    else:  # the show's share of the table (other channels' history may share it)
        share = sum(rows.values()) / max(1, ChannelSample.objects.count())
        free = round(_free_bytes() * share) if connection.vendor == "sqlite" else None
        size = round(size * share)
    report = ReportService.build(start=start, end=end)
    by_channel = {(key, p.number): p for p in report.packs for key, r in show.receivers.items() if p.receiver == r.name}
    result = ShowResult(
        start=start,
        end=end,
        channels=len(show.truth),
        polls=polls,
        wall_seconds=wall,
        rows=rows,
        table_bytes=size,
        free_bytes=free,
        vendor=connection.vendor,
        report=report,
        truth=show.truth,
        packs=by_channel,
    )
    if not keep:
        with transaction.atomic():
            Receiver.objects.filter(pk__in=ids).delete()
    return result
