"""Post-show report: what each pack and each performer went through between two times (docs/report.md).

Read from the show history (``ChannelSample`` rows as they are kept: 1 s, 10 s or 60 s, streamed in one
query ordered by channel and time, through :meth:`HistoryService.stored_rows`) and the alerts. Every row
is a window folded like the history folds it (the lowest battery and RF, the last status and presence), so
the figures are read the same way at every resolution; what a coarser row cannot tell is stated per figure:

* **time on**: the width of every row whose pack was on at the end of its window. Exact to a row's width at
  each switch-on and switch-off.
* **swaps**: a battery reading fuller than the pack's previous reading by at least one bar, 10 % or
  30 minutes. A pack on never gains charge, so a rise means it was switched off and on again with another
  battery (the off can be shorter than a coarse row); switched off and on with the same battery is no swap.
* **runtime used**: the battery's reported runtime at the start of each battery period (from the first
  reading to the next swap) minus the lowest it reached in that period, summed over the periods. A pack
  switched off uses no runtime, so this is the runtime the pack spent; for a pack that drains as it says,
  the time it was on. Within 1 minute (the runtime's whole minutes) plus one row's drain per period.
* **lowest battery**: the lowest bars, percent and minutes reported while the pack was on.
* **dropouts**: runs of consecutive rows of a pack that was on with RF below the dropout threshold
  (MICBOARD_ALERT_RF_DBM, or the assignment's own); the seconds are the runs' row widths, so a dropout
  counts whole rows (1, 10 or 60 s). The first row after the pack was off or unheard is not counted (its
  lowest RF may be from before the pack came on).
"""

from __future__ import annotations

import csv
import io
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.utils import timezone

from micboard.exceptions import ReportError
from micboard.models import Alert, Assignment, Channel
from micboard.services.alerts import AlertService
from micboard.services.history import HistoryService
from micboard.services.sheet import excel_safe

SWAP_BARS = 1  # a reading this much fuller than the one before is another battery
SWAP_PERCENT = 10
SWAP_MINUTES = 30
FAST_DRAIN = 1.25  # runtime used per hour on, against the median of the packs: flagged at or above this
MIN_HOURS_FOR_DRAIN = 1.0  # a pack on for less than this gives no drain figure
MAX_DAYS = 31  # the longest range a report covers


class _Figures:
    """Text of the figures both tables show."""

    on_seconds: int
    lowest_bars: int | None
    lowest_percent: int | None
    lowest_minutes: int | None

    @property
    def on_hm(self) -> str:
        """Time on as H:MM."""
        minutes = self.on_seconds // 60
        return f"{minutes // 60}:{minutes % 60:02d}"

    @property
    def lowest(self) -> str:
        """The lowest battery in words: "1 bar · 20 % · 96 min" (what the pack reported)."""
        parts = []
        if self.lowest_bars is not None:
            parts.append(f"{self.lowest_bars} bar" + ("" if self.lowest_bars == 1 else "s"))
        if self.lowest_percent is not None:
            parts.append(f"{self.lowest_percent} %")
        if self.lowest_minutes is not None:
            parts.append(f"{self.lowest_minutes} min")
        return " · ".join(parts)


@dataclass(slots=True)
class PackReport(_Figures):
    """One pack (a channel: the pack slot on a receiver) over the range."""

    channel_id: int
    receiver: str
    number: int
    name: str  # the channel's name as the receiver reports it
    performer: str  # assigned now ("" when nobody is)
    rows: int = 0
    on_seconds: int = 0
    runtime_used_minutes: int | None = None
    swaps: int = 0
    lowest_bars: int | None = None
    lowest_percent: int | None = None
    lowest_minutes: int | None = None
    dropouts: int = 0
    dropout_seconds: int = 0
    alerts: int = 0
    resolutions: tuple[int, ...] = ()
    flags: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.receiver} {self.number}" + (f" ({self.name})" if self.name else "")

    @property
    def drain_per_hour(self) -> float | None:
        """Runtime used (minutes) per hour on; about 60 for a pack whose runtime falls with the clock."""
        if self.runtime_used_minutes is None or self.on_seconds < MIN_HOURS_FOR_DRAIN * 3600:
            return None
        return self.runtime_used_minutes / (self.on_seconds / 3600)


@dataclass(slots=True)
class PerformerReport(_Figures):
    """A performer's packs (their assignments now), added up."""

    name: str
    packs: list[str] = field(default_factory=list)
    on_seconds: int = 0
    runtime_used_minutes: int | None = None
    swaps: int = 0
    lowest_bars: int | None = None
    lowest_percent: int | None = None
    lowest_minutes: int | None = None
    dropouts: int = 0
    dropout_seconds: int = 0
    alerts: int = 0


@dataclass(frozen=True, slots=True)
class AlertRow:
    opened_at: datetime
    kind: str
    where: str
    performer: str
    priority: str
    detail: str
    state: str
    acknowledged_by: str
    acknowledged_at: datetime | None
    acknowledged_from: str
    resolved_at: datetime | None


@dataclass(slots=True)
class ShowReport:
    start: datetime
    end: datetime
    packs: list[PackReport]
    performers: list[PerformerReport]
    alerts: list[AlertRow]
    rows_read: int
    resolutions: tuple[int, ...]  # the resolutions of the rows read (1, 10, 60)

    @property
    def untrusted(self) -> list[PackReport]:
        """The packs with a flag (see :meth:`ReportService.build`), most flags first."""
        return sorted((p for p in self.packs if p.flags), key=lambda p: (-len(p.flags), p.receiver, p.number))


def _lower(a, b):
    return b if a is None else a if b is None else min(a, b)


class _PackFold:
    """Reads one pack's rows in time order (see the module docstring for each figure)."""

    def __init__(self, pack: PackReport, rf_dbm: float):
        self.pack = pack
        self.rf_dbm = rf_dbm
        self.last_battery: tuple[int | None, int | None, int | None] | None = None
        self.period_first: int | None = None  # runtime at the start of the battery period
        self.period_low: int | None = None
        self.used: int | None = None
        self.prev_end: datetime | None = None
        self.prev_on = False
        self.in_dropout = False
        self.resolutions: set[int] = set()

    def add(self, at, resolution, bars, percent, minutes, rf, present) -> None:
        pack = self.pack
        pack.rows += 1
        self.resolutions.add(resolution)
        adjacent = self.prev_end is not None and at <= self.prev_end
        if present:
            pack.on_seconds += resolution
        if present is not False and (bars is not None or percent is not None or minutes is not None):
            last = self.last_battery
            if last is not None and self._fuller(last, (bars, percent, minutes)):
                pack.swaps += 1
                self._close_period()
            pack.lowest_bars = _lower(pack.lowest_bars, bars)
            pack.lowest_percent = _lower(pack.lowest_percent, percent)
            pack.lowest_minutes = _lower(pack.lowest_minutes, minutes)
            if minutes is not None:
                if self.period_first is None:
                    self.period_first = minutes
                self.period_low = _lower(self.period_low, minutes)
            self.last_battery = (bars, percent, minutes)
        low = present is True and rf is not None and rf < self.rf_dbm and adjacent and self.prev_on
        if low:
            if not self.in_dropout:
                pack.dropouts += 1
            pack.dropout_seconds += resolution
        self.in_dropout = low
        self.prev_on = present is True
        self.prev_end = at + timedelta(seconds=resolution)

    @staticmethod
    def _fuller(last, now) -> bool:
        margins = (SWAP_BARS, SWAP_PERCENT, SWAP_MINUTES)
        return any(a is not None and b is not None and b >= a + m for a, b, m in zip(last, now, margins, strict=True))

    def _close_period(self) -> None:
        if self.period_first is not None:
            self.used = (self.used or 0) + max(0, self.period_first - self.period_low)
        self.period_first = self.period_low = None

    def finish(self) -> PackReport:
        self._close_period()
        self.pack.runtime_used_minutes = self.used
        self.pack.resolutions = tuple(sorted(self.resolutions))
        return self.pack


class ReportService:
    """The post-show report, and its CSV."""

    @staticmethod
    def check_range(*, start: datetime, end: datetime) -> None:
        """Raises: ReportError when ``end`` is not after ``start`` or the range is longer than MAX_DAYS."""
        if end <= start:
            raise ReportError("The end of the show must be after its start.")
        if end - start > timedelta(days=MAX_DAYS):
            raise ReportError(f"A report covers at most {MAX_DAYS} days.")

    @staticmethod
    def build(*, start: datetime, end: datetime) -> ShowReport:
        """Every pack that has history in ``[start, end)``, its performer's totals, and the alerts of the range.

        Packs not to trust tomorrow get flags: runtime used per hour on at least 1.25 times the median of
        the packs (needs three packs with a figure), the most dropouts (at least two), run down to 0 bars or
        0 minutes. Queries: the channels, the samples (one streamed query) and the alerts, whatever the range.
        Raises: ReportError for a bad range.
        """
        ReportService.check_range(start=start, end=end)
        channels = {
            c.pk: c
            for c in Channel.objects.select_related(
                "receiver", "assignment__performer", "assignment__alert_rule"
            ).order_by("receiver__name", "number")
        }
        alerts = ReportService._alerts(start=start, end=end)
        folds: dict[int, _PackFold] = {}
        rows_read = 0
        resolutions: set[int] = set()
        for channel_id, at, resolution, bars, percent, minutes, rf, _status, present in HistoryService.stored_rows(
            start=start, end=end
        ):
            rows_read += 1
            resolutions.add(resolution)
            fold = folds.get(channel_id)
            if fold is None:
                channel = channels.get(channel_id)
                if channel is None:  # deleted while we read
                    continue
                fold = folds[channel_id] = ReportService._fold_for(channel)
            fold.add(at, resolution, bars, percent, minutes, rf, present)
        packs = [folds[pk].finish() for pk in channels if pk in folds]
        per_channel = defaultdict(int)
        for alert in alerts:
            if alert.channel_id is not None:
                per_channel[alert.channel_id] += 1
        for pack in packs:
            pack.alerts = per_channel.get(pack.channel_id, 0)
        ReportService._flag(packs)
        return ShowReport(
            start=start,
            end=end,
            packs=packs,
            performers=ReportService._performers(packs),
            alerts=[ReportService._alert_row(a) for a in alerts],
            rows_read=rows_read,
            resolutions=tuple(sorted(resolutions)),
        )

    @staticmethod
    def _fold_for(channel: Channel) -> _PackFold:
        assignment: Assignment | None = getattr(channel, "assignment", None)
        rules = AlertService.rules_for(assignment=assignment)
        pack = PackReport(
            channel_id=channel.pk,
            receiver=channel.receiver.name,
            number=channel.number,
            name=channel.name,
            performer=assignment.performer.name if assignment is not None else "",
        )
        return _PackFold(pack, rules.rf_dbm)

    @staticmethod
    def _alerts(*, start: datetime, end: datetime) -> list[Alert]:
        """Alerts open at any time in the range, oldest first."""
        return list(
            Alert.objects.filter(opened_at__lt=end)
            .exclude(resolved_at__lt=start)
            .select_related("receiver", "channel", "acknowledged_by", "channel__assignment__performer")
            .order_by("opened_at", "pk")
        )

    @staticmethod
    def _alert_row(alert: Alert) -> AlertRow:
        channel = alert.channel
        assignment = getattr(channel, "assignment", None) if channel is not None else None
        where = alert.receiver.name + (f" {channel.number}" if channel is not None else "")
        if channel is not None and channel.name:
            where += f" ({channel.name})"
        user = alert.acknowledged_by
        return AlertRow(
            opened_at=alert.opened_at,
            kind=alert.get_kind_display(),
            where=where,
            performer=assignment.performer.name if assignment is not None else "",
            priority=alert.get_priority_display(),
            detail=alert.detail,
            state=alert.get_state_display(),
            acknowledged_by=(user.get_username() if user is not None else ""),
            acknowledged_at=alert.acknowledged_at,
            acknowledged_from=alert.acknowledged_from,
            resolved_at=alert.resolved_at,
        )

    @staticmethod
    def _flag(packs: Sequence[PackReport]) -> None:
        drains = [d for p in packs if (d := p.drain_per_hour) is not None]
        median = statistics.median(drains) if len(drains) >= 3 else None
        most = max((p.dropouts for p in packs), default=0)
        for pack in packs:
            drain = pack.drain_per_hour
            if median and drain is not None and drain >= FAST_DRAIN * median:
                pack.flags.append(
                    f"runtime fell {drain:.0f} min per hour on, "
                    f"{drain / median:.1f} times the median pack ({median:.0f})"
                )
            if most >= 2 and pack.dropouts == most:
                pack.flags.append(f"most dropouts: {pack.dropouts} ({pack.dropout_seconds} s)")
            if pack.lowest_bars == 0 or pack.lowest_minutes == 0:
                pack.flags.append("ran down to 0 bars or 0 minutes")

    @staticmethod
    def _performers(packs: Iterable[PackReport]) -> list[PerformerReport]:
        people: dict[str, PerformerReport] = {}
        for pack in packs:
            if not pack.performer:
                continue
            person = people.setdefault(pack.performer, PerformerReport(name=pack.performer))
            person.packs.append(pack.label)
            person.on_seconds += pack.on_seconds
            if pack.runtime_used_minutes is not None:
                person.runtime_used_minutes = (person.runtime_used_minutes or 0) + pack.runtime_used_minutes
            person.swaps += pack.swaps
            person.lowest_bars = _lower(person.lowest_bars, pack.lowest_bars)
            person.lowest_percent = _lower(person.lowest_percent, pack.lowest_percent)
            person.lowest_minutes = _lower(person.lowest_minutes, pack.lowest_minutes)
            person.dropouts += pack.dropouts
            person.dropout_seconds += pack.dropout_seconds
            person.alerts += pack.alerts
        return sorted(people.values(), key=lambda p: p.name.lower())

    @staticmethod
    def csv_text(*, report: ShowReport) -> str:
        """The report as CSV: a section per table (packs, performers, alerts), each with its header row.

        Every text cell is formula-safe (a leading apostrophe on = + - @), as on the channel sheet.
        """
        out = io.StringIO()
        writer = csv.writer(out)
        cell = excel_safe
        writer.writerow(["Post-show report", _iso(report.start), _iso(report.end)])
        writer.writerow([])
        writer.writerow(["Packs"])
        writer.writerow(
            [
                "Receiver", "Channel", "Name", "Performer", "Time on (min)", "Runtime used (min)", "Swaps",
                "Lowest bars", "Lowest %", "Lowest minutes", "Dropouts", "Dropout seconds", "Alerts",
                "Not to trust",
            ]
        )  # fmt: skip
        for p in report.packs:
            writer.writerow(
                [
                    cell(p.receiver), p.number, cell(p.name), cell(p.performer), p.on_seconds // 60,
                    _blank(p.runtime_used_minutes), p.swaps, _blank(p.lowest_bars), _blank(p.lowest_percent),
                    _blank(p.lowest_minutes), p.dropouts, p.dropout_seconds, p.alerts, cell("; ".join(p.flags)),
                ]
            )  # fmt: skip
        writer.writerow([])
        writer.writerow(["Performers"])
        writer.writerow(
            [
                "Performer", "Packs", "Time on (min)", "Runtime used (min)", "Swaps", "Lowest bars", "Lowest %",
                "Lowest minutes", "Dropouts", "Dropout seconds", "Alerts",
            ]
        )  # fmt: skip
        for p in report.performers:
            writer.writerow(
                [
                    cell(p.name), cell("; ".join(p.packs)), p.on_seconds // 60, _blank(p.runtime_used_minutes),
                    p.swaps, _blank(p.lowest_bars), _blank(p.lowest_percent), _blank(p.lowest_minutes), p.dropouts,
                    p.dropout_seconds, p.alerts,
                ]
            )  # fmt: skip
        writer.writerow([])
        writer.writerow(["Alerts"])
        writer.writerow(
            [
                "Opened", "Kind", "Where", "Performer", "Priority", "Detail", "State", "Acknowledged by",
                "Acknowledged at", "Acknowledged from", "Resolved",
            ]
        )  # fmt: skip
        for a in report.alerts:
            writer.writerow(
                [
                    _iso(a.opened_at), cell(a.kind), cell(a.where), cell(a.performer), cell(a.priority),
                    cell(a.detail), cell(a.state), cell(a.acknowledged_by), _iso(a.acknowledged_at),
                    cell(a.acknowledged_from), _iso(a.resolved_at),
                ]
            )  # fmt: skip
        return out.getvalue()


def _blank(value) -> str | int:
    return "" if value is None else value


def _iso(value: datetime | None) -> str:
    return "" if value is None else timezone.localtime(value).isoformat(timespec="seconds")
