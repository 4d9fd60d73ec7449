"""Charts of the show history, drawn by the server as SVG path data (no chart library, strict CSP).

The pure functions turn a series into path data (``M``/``L``/``H`` commands and numbers only, so nothing
from a device can reach the markup through them): a missing value or a missing window breaks the line (a
gap is a gap, never interpolated), values are clamped to the chart, and flat stretches collapse to one
segment so a path changes only when its picture does. Templates draw the paths inside ``<svg>`` elements
and style them by class.

Three readers:

* :class:`SparklineService` gives every board tile its battery over the last ``TILE_MINUTES`` complete
  minutes, drawn once a minute by a Huey task from one query for all channels and kept in the cache;
* :meth:`TimelineService.recent` draws the channel drawer's last hour (battery, RF, audio);
* :meth:`TimelineService.build` draws the timeline page: battery, runtime, RF (each antenna where stored),
  audio, status bands and alerts over a chosen range, at a resolution that keeps each line within
  ``MAX_POINTS`` points.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from micboard import caching
from micboard.models import Alert, Channel, ChannelSample
from micboard.services.history import RESOLUTIONS, HistoryService
from micboard.status import ChannelStatus

MAX_POINTS = 600  # per line on the timeline
DISPLAY_RESOLUTIONS = (1, 10, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600)  # seconds, each a multiple of 60 past 60
TICK_STEPS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800)  # seconds
TILE_MINUTES = 30  # a tile's sparkline: the battery over the last 30 complete minutes, one point a minute
TILE_WIDTH, TILE_HEIGHT = 60, 16  # the tile sparkline's viewBox
RF_FLOOR, RF_TOP = -100.0, -40.0  # dBm: the RF window of the meters (protocols.md §6)
AUDIO_FLOOR = -60.0  # dBFS

_OFF = frozenset(
    {ChannelStatus.PREV_GOOD, ChannelStatus.PREV_REPLACE, ChannelStatus.PREV_CRITICAL, ChannelStatus.TX_COM_ERROR}
)


# --- pure path functions -----------------------------------------------------------------------------------


def num(value: float) -> str:
    """A coordinate as short text: one decimal at most, no trailing zeros (``12``, ``12.5``, ``-0`` as ``0``)."""
    text = f"{value:.1f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


@dataclass(frozen=True, slots=True)
class Frame:
    """A chart's area: ``start``..``end`` (epoch seconds) across ``width``, ``lo``..``hi`` up ``height``."""

    start: float
    end: float
    lo: float
    hi: float
    width: float
    height: float

    def x(self, t: float) -> float:
        span = self.end - self.start
        return min(self.width, max(0.0, (t - self.start) / span * self.width)) if span > 0 else 0.0

    def y(self, value: float) -> float:
        span = self.hi - self.lo
        if span <= 0:
            return self.height
        return self.height - min(1.0, max(0.0, (value - self.lo) / span)) * self.height


def line_path(points: Iterable[tuple[float, float | None]], *, frame: Frame, gap: float, step: float = 0.0) -> str:
    """SVG path data through ``(t, value)`` points (``t`` in epoch seconds, ascending).

    A value of None, or more than ``gap`` seconds between two points, breaks the line. Points outside the
    frame's time span are left out and values are clamped to ``lo``..``hi``. A point alone draws a short
    flat segment ``step`` seconds wide (at least one unit) so it shows. Runs at one height keep only their
    ends. Returns "" when there is nothing to draw.
    """
    runs: list[list[tuple[float, float]]] = []
    run: list[tuple[float, float]] = []
    last_t: float | None = None
    for t, value in points:
        if t < frame.start or t > frame.end:
            continue
        if value is None or (value != value) or (last_t is not None and t - last_t > gap):  # None, NaN, gap
            if run:
                runs.append(run)
            run = []
        if value is not None and value == value:
            run.append((round(frame.x(t), 1), round(frame.y(value), 1)))
        last_t = t
    if run:
        runs.append(run)
    parts: list[str] = []
    for run in runs:
        kept = [p for i, p in enumerate(run) if i == 0 or p != run[i - 1]]
        if len(kept) == 1:
            x, y = kept[0]
            width = max(1.0, round(frame.x(frame.start + step) - frame.x(frame.start), 1)) if step else 1.0
            parts.append(f"M{num(min(x, frame.width - width) if frame.width > width else x)} {num(y)}h{num(width)}")
            continue
        flat = [
            p for i, p in enumerate(kept) if i in (0, len(kept) - 1) or not (kept[i - 1][1] == p[1] == kept[i + 1][1])
        ]
        parts.append("M" + "L".join(f"{num(x)} {num(y)}" for x, y in flat))
    return "".join(parts)


def sparkline(values: Sequence[float | None], *, lo: float, hi: float, width: float, height: float) -> str:
    """Path data of evenly spaced ``values`` across ``width`` (None: a gap); "" when all are unknown."""
    if not values:
        return ""
    last = max(1, len(values) - 1)
    frame = Frame(start=0, end=last, lo=lo, hi=hi, width=width, height=height)
    return line_path(((i, v) for i, v in enumerate(values)), frame=frame, gap=1, step=1)


@dataclass(frozen=True, slots=True)
class Band:
    """A stretch of a chart (a status, an alert): ``x`` and ``width`` in chart units."""

    x: float
    width: float
    css: str
    label: str


def band(*, start: float, end: float, frame: Frame, css: str, label: str) -> Band | None:
    """The part of ``start``..``end`` inside the frame, None when none of it is (or it is under 0.1 wide)."""
    x0, x1 = frame.x(start), frame.x(end)
    if x1 - x0 < 0.1:
        return None
    return Band(x=round(x0, 1), width=round(x1 - x0, 1), css=css, label=label)


@dataclass(frozen=True, slots=True)
class Tick:
    x: float
    label: str


def time_ticks(start: datetime, end: datetime, *, width: float, most: int = 8) -> list[Tick]:
    """Time labels across ``width``, on round local times (TIME_ZONE); a tick on a new day shows its date."""
    span = (end - start).total_seconds()
    if span <= 0:
        return []
    step = next((s for s in TICK_STEPS if span / s <= most), TICK_STEPS[-1])
    local = timezone.localtime(start)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    offset = math.ceil((local - midnight).total_seconds() / step) * step
    at = midnight + timedelta(seconds=offset)
    frame = Frame(start=start.timestamp(), end=end.timestamp(), lo=0, hi=1, width=width, height=1)
    dated = step >= 86400 or timezone.localtime(end).date() != local.date()
    ticks: list[Tick] = []
    last_day = None
    while at <= end and len(ticks) <= most + 1:
        day = at.date()
        label = at.strftime("%H:%M") if step < 86400 else ""
        if dated and day != last_day:
            label = f"{at.day} {at.strftime('%b')} {label}".strip()
        ticks.append(Tick(x=round(frame.x(at.timestamp()), 1), label=label))
        last_day = day
        at = timezone.localtime(at + timedelta(seconds=step))
    return ticks


def display_resolution(span_seconds: float, *, most: int = MAX_POINTS) -> int:
    """The finest display resolution that keeps ``span_seconds`` within ``most`` points."""
    return next((r for r in DISPLAY_RESOLUTIONS if span_seconds / r <= most), DISPLAY_RESOLUTIONS[-1])


def battery_value(bars: int | None, percent: int | None) -> float | None:
    """A battery as percent: the pack's own figure, else bars x 20, else unknown."""
    if percent is not None:
        return float(percent)
    return float(bars * 20) if bars is not None else None


def antenna_dbm(text: str) -> tuple[float, ...]:
    """``ChannelSample.rf_antennas`` (percent per antenna) as dBm on the meters' window; () when malformed."""
    parts = text.split(",") if text else []
    if not all(p.isascii() and p.isdigit() for p in parts):
        return ()
    return tuple(RF_FLOOR + int(p) * (RF_TOP - RF_FLOOR) / 100 for p in parts)


# --- tile sparklines -----------------------------------------------------------------------------------------


def _minute(at: datetime) -> datetime:
    return datetime.fromtimestamp(int(at.timestamp()) // 60 * 60, tz=UTC)


class SparklineService:
    """The battery sparkline of every tile, drawn once a minute by a Huey task (``tasks/history.py``).

    The task reads the history in one batched query for all channels and keeps the paths in the cache; a
    board build reads that one cache entry and no history at all, so a board costs no query per tile and no
    history query. Paths older than ``STALE_MINUTES`` (no consumer running) are not shown: they would
    claim to be the last 30 minutes.
    """

    STALE_MINUTES = 3

    @staticmethod
    def _key() -> str:
        return caching.cache_key("sparklines", "tiles")

    @staticmethod
    def tile_paths(*, now: datetime | None = None) -> dict[int, str]:
        """Channel id -> path data of its battery over the last TILE_MINUTES complete minutes ({} when none)."""
        if not settings.MICBOARD_TILE_SPARKLINES or not settings.MICBOARD_HISTORY_RESOLUTION:
            return {}
        entry = caching.cache_get(SparklineService._key())
        if not isinstance(entry, tuple) or len(entry) != 2:
            return {}
        until, paths = entry
        age = (now or timezone.now()).timestamp() - until
        return paths if 0 <= age <= SparklineService.STALE_MINUTES * 60 + 60 else {}

    @staticmethod
    def refresh(*, now: datetime | None = None) -> int:
        """Draw every channel's sparkline up to the last whole minute and keep them; how many were drawn."""
        if not settings.MICBOARD_TILE_SPARKLINES or not settings.MICBOARD_HISTORY_RESOLUTION:
            return 0
        until = _minute(now or timezone.now())
        paths = SparklineService.compute(until=until)
        caching.cache_set(SparklineService._key(), (until.timestamp(), paths), SparklineService.STALE_MINUTES * 60 + 60)
        return len(paths)

    @staticmethod
    def compute(*, until: datetime) -> dict[int, str]:
        """The paths for the TILE_MINUTES minutes before ``until`` (a whole minute), from the database."""
        first = until - timedelta(minutes=TILE_MINUTES)
        marks = [first + timedelta(seconds=10 * i) for i in range(TILE_MINUTES * 6)]
        rows = ChannelSample.objects.filter(
            channel__receiver__active=True,
            resolution__in=RESOLUTIONS,
            at__gte=first,
            at__lt=until,
            at__in=marks,
        ).values_list("channel_id", "at", "battery_bars", "battery_percent")
        lowest: dict[int, list[float | None]] = {}
        for channel_id, at, bars, percent in rows.iterator(chunk_size=4000):
            value = battery_value(bars, percent)
            if value is None:
                continue
            points = lowest.get(channel_id)
            if points is None:
                points = lowest[channel_id] = [None] * TILE_MINUTES
            i = min(TILE_MINUTES - 1, int((at - first).total_seconds()) // 60)
            if points[i] is None or value < points[i]:
                points[i] = value
        return {
            pk: sparkline(points, lo=0, hi=100, width=TILE_WIDTH, height=TILE_HEIGHT - 1)
            for pk, points in lowest.items()
        }


# --- the drawer and the timeline ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Line:
    css: str
    label: str
    d: str


@dataclass(frozen=True, slots=True)
class Chart:
    key: str
    title: str
    scale: str  # what the bottom and top of the chart stand for, e.g. "0 to 100 %"
    lines: tuple[Line, ...]

    @property
    def empty(self) -> bool:
        return not any(line.d for line in self.lines)


@dataclass(frozen=True, slots=True)
class Marker:
    x: float
    css: str
    label: str


@dataclass(frozen=True, slots=True)
class Event:
    at: datetime
    css: str
    text: str


@dataclass(frozen=True, slots=True)
class Timeline:
    start: datetime
    end: datetime
    resolution: int
    samples: int
    charts: tuple[Chart, ...]
    status_bands: tuple[Band, ...]
    alert_bands: tuple[Band, ...]
    markers: tuple[Marker, ...]
    ticks: tuple[Tick, ...]
    events: tuple[Event, ...]
    events_left_off: int


@dataclass(frozen=True, slots=True)
class Recent:
    """The drawer's sparklines: the last ``minutes`` of battery, RF and audio."""

    minutes: int
    battery: str
    rf: str
    audio: str

    @property
    def empty(self) -> bool:
        return not (self.battery or self.rf or self.audio)


CHART_WIDTH, CHART_HEIGHT = 960, 100  # the timeline's charts (viewBox units)
DRAWER_WIDTH, DRAWER_HEIGHT = 240, 36  # the drawer's sparklines
EVENTS_MAX = 300  # rows of the timeline's event list


def _status_css(status: str) -> str:
    if status == ChannelStatus.RX_COM_ERROR:
        return "offline"
    if status in _OFF:
        return "off"
    if status == ChannelStatus.UNASSIGNED or not status:
        return "unmonitored"
    return status.lower().replace("_", "-")


def _status_label(status: str) -> str:
    try:
        return str(ChannelStatus(status).label)
    except ValueError:
        return "Unknown"


def _status_before(channel: Channel, start: datetime) -> tuple[datetime, str] | None:
    """The last status written before ``start`` (an offline receiver writes one row, then nothing)."""
    found = []
    for resolution in RESOLUTIONS:
        row = (
            ChannelSample.objects.filter(channel=channel, resolution=resolution, at__lt=start)
            .exclude(status="")
            .order_by("-at")
            .values_list("at", "status")
            .first()
        )
        if row is not None:
            found.append(row)
    return max(found) if found else None


class TimelineService:
    """Reads a channel's history for the drawer and the timeline page."""

    @staticmethod
    def recent(*, channel: Channel, now: datetime | None = None, minutes: int = 60) -> Recent:
        """Battery, RF and audio over the last ``minutes`` (one point a minute)."""
        now = now or timezone.now()
        start = now - timedelta(minutes=minutes)
        resolution, rows = HistoryService.series(channel=channel, start=start, end=now, now=now, coarsest=60)
        frame = Frame(
            start=start.timestamp(), end=now.timestamp(), lo=0, hi=100, width=DRAWER_WIDTH, height=DRAWER_HEIGHT
        )
        gap = resolution * 1.5

        def draw(values, lo, hi):
            f = Frame(start=frame.start, end=frame.end, lo=lo, hi=hi, width=frame.width, height=frame.height)
            return line_path(values, frame=f, gap=gap, step=resolution)

        return Recent(
            minutes=minutes,
            battery=draw([(r.at.timestamp(), battery_value(r.battery_bars, r.battery_percent)) for r in rows], 0, 100),
            rf=draw([(r.at.timestamp(), r.rf_dbm) for r in rows], RF_FLOOR, RF_TOP),
            audio=draw([(r.at.timestamp(), r.audio_dbfs) for r in rows], AUDIO_FLOOR, 0),
        )

    @staticmethod
    def build(*, channel: Channel, start: datetime, end: datetime, now: datetime | None = None) -> Timeline:
        """The timeline of ``channel`` from ``start`` to ``end`` (the caller bounds the span)."""
        now = now or timezone.now()
        span = (end - start).total_seconds()
        resolution, rows = HistoryService.series(
            channel=channel, start=start, end=end, now=now, coarsest=display_resolution(span)
        )
        t0, t1 = start.timestamp(), end.timestamp()
        gap = resolution * 1.5
        ts = [r.at.timestamp() for r in rows]

        def frame(lo, hi):
            return Frame(start=t0, end=t1, lo=lo, hi=hi, width=CHART_WIDTH, height=CHART_HEIGHT)

        def draw(values, lo, hi):
            return line_path(zip(ts, values, strict=True), frame=frame(lo, hi), gap=gap, step=resolution)

        runtimes = [r.runtime_minutes for r in rows if r.runtime_minutes is not None]
        runtime_top = max(60, math.ceil(max(runtimes, default=0) / 60) * 60)
        antennas = [antenna_dbm(r.rf_antennas) for r in rows]
        count = max((len(a) for a in antennas), default=0)
        rf_lines = [Line("line-rf", "RF, strongest antenna (dBm)", draw((r.rf_dbm for r in rows), RF_FLOOR, RF_TOP))]
        if count >= 2:
            for i in range(count):
                values = (a[i] if len(a) == count else None for a in antennas)
                rf_lines.append(
                    Line(f"line-ant line-ant-{i}", f"Antenna {'ABCDEFGH'[i]}", draw(values, RF_FLOOR, RF_TOP))
                )
        charts = (
            Chart(
                "battery",
                "Battery",
                "0 to 100 %",
                (
                    Line(
                        "line-battery",
                        "Battery (%)",
                        draw((battery_value(r.battery_bars, r.battery_percent) for r in rows), 0, 100),
                    ),
                ),
            ),
            Chart(
                "runtime",
                "Runtime left",
                f"0 to {runtime_top // 60}:00 h",
                (
                    Line(
                        "line-runtime",
                        "Runtime left (minutes)",
                        draw((r.runtime_minutes for r in rows), 0, runtime_top),
                    ),
                ),
            ),
            Chart("rf", "RF", f"{RF_FLOOR:.0f} to {RF_TOP:.0f} dBm", tuple(rf_lines)),
            Chart(
                "audio",
                "Audio",
                f"{AUDIO_FLOOR:.0f} to 0 dBFS",
                (Line("line-audio", "Audio, loudest (dBFS)", draw((r.audio_dbfs for r in rows), AUDIO_FLOOR, 0)),),
            ),
        )
        status_bands, status_events = TimelineService._status_bands(
            channel, rows, start, min(end, now), resolution, frame(0, 1)
        )
        alert_bands, markers, alert_events = TimelineService._alerts(channel, start, end, now, frame(0, 1))
        events = sorted(status_events + alert_events, key=lambda e: e.at)
        left_off = max(0, len(events) - EVENTS_MAX)
        return Timeline(
            start=start,
            end=end,
            resolution=resolution,
            samples=len(rows),
            charts=charts,
            status_bands=tuple(status_bands),
            alert_bands=tuple(alert_bands),
            markers=tuple(markers),
            ticks=tuple(time_ticks(start, end, width=CHART_WIDTH)),
            events=tuple(events[left_off:]),
            events_left_off=left_off,
        )

    @staticmethod
    def _status_bands(channel, rows, start, until, resolution, frame):
        """Runs of one status. A stretch without rows is "no data" (left blank), except while the receiver
        was offline: an offline receiver's channels get one row when it stops answering and none until it
        answers again, so its offline band runs on until the next row."""
        offline = ChannelStatus.RX_COM_ERROR
        gap = resolution * 1.5
        runs: list[list] = []  # [from, to, status]
        events: list[Event] = []
        current = None
        before = _status_before(channel, start)
        if before and (before[1] == offline or before[0].timestamp() >= start.timestamp() - gap):
            current = [start.timestamp(), start.timestamp(), before[1]]
        last_status = before[1] if before else None
        for row in rows:
            t, status = row.at.timestamp(), row.status or (current[2] if current else "")
            if current is not None and t - current[1] > gap and current[2] != offline:
                current[1] += resolution  # the last window's own length, then no data
                runs.append(current)
                current = None
            if current is not None and status != current[2]:
                current[1] = t
                runs.append(current)
                current = None
            if current is None:
                current = [t, t, status]
            current[1] = t
            if status != last_status:
                events.append(Event(row.at, f"status-{_status_css(status)}", f"Status: {_status_label(status)}"))
                last_status = status
        if current is not None:
            live = current[2] == offline or until.timestamp() - current[1] <= gap
            current[1] = max(current[1], until.timestamp()) if live else current[1] + resolution
            runs.append(current)
        bands = [
            found
            for t_from, t_to, status in runs
            if (
                found := band(
                    start=t_from, end=t_to, frame=frame, css=f"band-{_status_css(status)}", label=_status_label(status)
                )
            )
        ]
        return bands, events

    @staticmethod
    def _alerts(channel, start, end, now, frame):
        alerts = (
            Alert.objects.filter(Q(channel=channel) | Q(channel__isnull=True, receiver_id=channel.receiver_id))
            .filter(opened_at__lt=end)
            .filter(Q(resolved_at__isnull=True) | Q(resolved_at__gte=start))
            .select_related("acknowledged_by")
            .order_by("opened_at")[:EVENTS_MAX]
        )
        bands: list[Band] = []
        markers: list[Marker] = []
        events: list[Event] = []
        for alert in alerts:
            name = alert.get_kind_display()
            until = alert.resolved_at or min(end, now)
            # What the crew saw while it was live: open until someone acknowledged it, then acknowledged.
            acked = alert.acknowledged_at if alert.acknowledged_at and alert.acknowledged_at < until else None
            spans = [(alert.opened_at, acked or until, "open"), *([(acked, until, "acknowledged")] if acked else [])]
            for since, to, state in spans:
                found = band(
                    start=since.timestamp(),
                    end=to.timestamp(),
                    frame=frame,
                    css=f"alert-{state}",
                    label=f"{name} ({state}): {alert.detail}",
                )
                if found:
                    bands.append(found)
            steps = [(alert.opened_at, "opened", f"{name} opened: {alert.detail}")]
            if alert.acknowledged_at:
                who = alert.acknowledged_by.get_username() if alert.acknowledged_by else "someone since removed"
                where = f" from {alert.acknowledged_from}" if alert.acknowledged_from else ""
                steps.append((alert.acknowledged_at, "acknowledged", f"{name} acknowledged by {who}{where}"))
            if alert.resolved_at:
                steps.append((alert.resolved_at, "resolved", f"{name} resolved"))
            for at, css, text in steps:
                if start <= at <= end:
                    markers.append(Marker(x=round(frame.x(at.timestamp()), 1), css=f"mark-{css}", label=text))
                    events.append(Event(at, f"alert-{css}", text))
        return bands, markers, events
