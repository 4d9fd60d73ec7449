"""Alerts: open them from the stored readings, acknowledge them, resolve them when their condition clears.

``AlertService.evaluate`` reads the channel, transmitter and receiver rows (what the links wrote), asks the
pure rule functions of ``micboard.alerts`` which conditions hold, and reconciles the database with that:

* a condition that starts holding gets an ``AlertCondition`` row (since when); a time-bound kind (pack off,
  dropout, diversity) opens its alert once it held long enough, the others at once;
* an open or acknowledged alert whose condition cleared is resolved;
* every transition writes an ``AuditEntry``, and records the messages it owes webhooks and e-mail
  subscribers in the same transaction (``NotifyService.record``: an outbox, sent later by Huey tasks).

All state lives in the database, and every write is conditional (a unique constraint refuses a second live
alert per channel and kind; a resolve only changes a live row), so two evaluators running at once, in two
consumers, open each alert once and write each transition once.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from micboard import alerts as rules_of
from micboard import caching
from micboard.alerts import AlertKind, Hit, Rules
from micboard.exceptions import AlertError, CoordinationError, DeviceNotFoundError
from micboard.models import (
    ALERT_LIVE_STATES,
    EVENT_ACKNOWLEDGED,
    EVENT_OPENED,
    EVENT_RESOLVED,
    Alert,
    AlertCondition,
    Assignment,
    AuditEntry,
    Channel,
    ChannelSample,
    Group,
    GroupSlot,
    Receiver,
)
from micboard.services.history import RESOLUTIONS
from micboard.services.notify import NotifyService

logger = logging.getLogger("micboard.alerts")

# (receiver id, channel id or None, kind): one condition, one live alert.
Key = tuple[int, int | None, str]


@dataclass(frozen=True, slots=True)
class Finding:
    """A condition that holds now, with what its alert needs."""

    hit: Hit
    hold: float
    priority: int


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What one evaluation changed (the caller bumps the board when anything did)."""

    opened: int = 0
    resolved: int = 0
    updated: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.opened or self.resolved or self.updated)


def _audit(action: str, alert: Alert, summary: str) -> None:
    AuditEntry.objects.create(action=action, model="alert", object_id=str(alert.pk), summary=summary[:255])


def _channel_findings(
    channel: Channel, rules: Rules, now: datetime, trend: rules_of.Drop | None = None, trending: bool = False
) -> dict[str, Hit]:
    receiver = channel.receiver
    tx = getattr(channel, "transmitter", None)
    if tx is None or not receiver.online:
        return {}
    present = bool(tx.present)
    if trend is not None and rules_of.swapped_since(trend, tx.runtime_minutes):
        trend = None  # figures read up to a minute ago, of the pack swapped out since: nothing to judge yet
    hits = {
        AlertKind.BATTERY: rules_of.battery(
            rules=rules, tx_present=present, bars=tx.battery_bars, minutes=tx.runtime_minutes
        ),
        AlertKind.TX_OFF: rules_of.tx_off(
            rules=rules,
            receiver_online=receiver.online,
            is_iem=receiver.is_iem,
            tx_present=present,
            seen_before=tx.last_seen is not None,
        ),
        AlertKind.DROPOUT: rules_of.dropout(rules=rules, tx_present=present, rf_dbm=tx.rf_dbm),
        AlertKind.DIVERSITY: rules_of.diversity(rules=rules, tx_present=present, antennas=tx.antennas),
        AlertKind.PEAK: rules_of.peak(
            rules=rules,
            tx_present=present,
            last_peak_at=tx.last_peak_at,
            now=now,
            window=settings.MICBOARD_PEAK_WINDOW,
        ),
        AlertKind.INTERFERENCE: rules_of.interference(rules=rules, tx_present=present, antennas=tx.antennas),
        AlertKind.RUNTIME_TREND: rules_of.runtime_trend(
            rules=rules,
            tx_present=present,
            dropped=trend.fallen if trend else None,
            elapsed_minutes=trend.minutes if trend else None,
            holding=trending,
        ),
    }
    return {kind: hit for kind, hit in hits.items() if hit is not None}


def _receiver_findings(receiver: Receiver, rules: Rules) -> dict[str, Hit]:
    connection = getattr(receiver, "connection", None)
    try:
        family = receiver.catalog_entry.family
    except KeyError:
        family = ""
    last_error = connection.last_error if connection else ""
    disabled = rules_of.control_disabled(
        rules=rules, active=receiver.active, online=receiver.online, family=family, last_error=last_error
    )
    if disabled is not None:  # the one problem, said precisely: not also "offline"
        return {AlertKind.CONTROL_DISABLED: disabled}
    polled = connection is not None and connection.last_attempt_at is not None
    hit = rules_of.offline(rules=rules, active=receiver.active, online=receiver.online, polled=polled)
    return {AlertKind.OFFLINE: hit} if hit is not None else {}


class RuntimeTrends:
    """How far each pack's runtime fell since its last swap, over at most the last hour (the runtime-trend rule).

    The longer the stretch, the truer the rate: a runtime in whole minutes is one minute off at most, a
    tenth of a 10-minute stretch but a sixtieth of an hour's. The evaluators run every second; the history
    is read at most once a minute per set of channels (an evaluator's), in one query for all of them, and
    the figures kept in the cache meanwhile. The query reads the rows at minute marks only (windows under
    five minutes: just the window, at 10 s or 1 s marks; whatever the history resolution, rows start
    there), not every second's row.
    """

    LOOKBACK_MINUTES = 60

    @staticmethod
    def every(minutes: float) -> float:
        """Seconds the figures are kept: a minute, less for windows under four minutes."""
        return min(60.0, minutes * 15)

    @staticmethod
    def figures(*, channel_ids: Sequence[int], now: datetime, minutes: float) -> dict[int, rules_of.Drop]:
        """Channel id -> how far its runtime fell since its last swap (``runtime_drop``)."""
        ids = sorted(channel_ids)
        digest = hashlib.blake2b(repr(ids).encode(), digest_size=8).hexdigest()
        key = caching.cache_key("alerts", "trend2", minutes, digest)  # trend2: Drop values (a deploy's old entries)
        kept = caching.cache_get(key)
        if isinstance(kept, tuple) and len(kept) == 2 and 0 <= now.timestamp() - kept[0] < RuntimeTrends.every(minutes):
            return kept[1]
        figures = RuntimeTrends.read(channel_ids=ids, now=now, minutes=minutes)
        caching.cache_set(key, (now.timestamp(), figures), RuntimeTrends.every(minutes) + 60)
        return figures

    @staticmethod
    def read(*, channel_ids: Sequence[int], now: datetime, minutes: float) -> dict[int, rules_of.Drop]:
        """The figures from the history: one query for every channel."""
        if minutes >= 5:  # the show's windows: up to an hour at minute marks
            lookback, step = max(minutes, RuntimeTrends.LOOKBACK_MINUTES), 60
        else:  # hair-trigger windows (and tests): just the window, at marks fine enough for it
            lookback, step = minutes, 10 if minutes >= 2 else 1
        start = now - timedelta(minutes=lookback + 1)  # a little more: the stretch may span the whole lookback
        first = -(-int(start.timestamp()) // step) * step  # the first mark at or after start
        marks = [datetime.fromtimestamp(t, tz=UTC) for t in range(first, int(now.timestamp()) + 1, step)]
        rows = (
            ChannelSample.objects.filter(
                channel_id__in=channel_ids, resolution__in=RESOLUTIONS, at__gte=start, at__lte=now, at__in=marks
            )
            .order_by("channel_id", "at")
            .values_list("channel_id", "at", "runtime_minutes", "tx_present")
        )
        points: dict[int, list[tuple[datetime, int | None, bool | None]]] = {}
        for channel_id, at, runtime, present in rows.iterator(chunk_size=4000):
            points.setdefault(channel_id, []).append((at, runtime, present))
        figures = {}
        for channel_id, series in points.items():
            drop = rules_of.runtime_drop(series)
            if drop is not None:
                figures[channel_id] = drop
        return figures


class AlertService:
    """Evaluation and lifecycle of alerts."""

    @staticmethod
    def rules_for(*, assignment: Assignment | None) -> Rules:
        """The rules of an assigned channel: the defaults (settings) with the assignment's overrides."""
        rules = rules_of.default_rules()
        override = getattr(assignment, "alert_rule", None) if assignment is not None else None
        if override is None:
            return rules
        return rules_of.overridden(
            rules,
            battery_bars=override.battery_bars,
            battery_minutes=override.battery_minutes,
            off_grace_seconds=override.off_grace_seconds,
            rf_dbm=override.rf_dbm,
            rf_seconds=override.rf_seconds,
            diversity_seconds=override.diversity_seconds,
            trend_factor=override.trend_factor,
        )

    @staticmethod
    def findings(
        *, now: datetime, receiver_ids: Sequence[int] | None = None, trending: Collection[int] = ()
    ) -> dict[Key, Finding]:
        """Every condition that holds now on monitored receivers (channels: assigned, alerts on).

        Args:
            trending: channels whose runtime-trend alert is live (it holds to a lower rate than opens it).
        """
        defaults = rules_of.default_rules()
        receivers = Receiver.objects.filter(active=True).select_related("connection")
        channels = (
            Channel.objects.filter(receiver__active=True, assignment__alerts_enabled=True)
            .select_related("receiver", "transmitter", "assignment__alert_rule")
            .order_by("pk")
        )
        if receiver_ids is not None:
            receivers = receivers.filter(pk__in=receiver_ids)
            channels = channels.filter(receiver_id__in=receiver_ids)
        found: dict[Key, Finding] = {}
        top_priority: dict[int, int] = {}
        channels = list(channels)
        trends = (
            RuntimeTrends.figures(channel_ids=[c.pk for c in channels], now=now, minutes=defaults.trend_minutes)
            if AlertKind.RUNTIME_TREND in defaults.kinds and channels
            else {}
        )
        for channel in channels:
            assignment = channel.assignment
            top_priority[channel.receiver_id] = max(top_priority.get(channel.receiver_id, 0), assignment.priority)
            rules = AlertService.rules_for(assignment=assignment)
            trend = trends.get(channel.pk)
            for kind, hit in _channel_findings(channel, rules, now, trend, channel.pk in trending).items():
                found[(channel.receiver_id, channel.pk, kind)] = Finding(
                    hit, rules_of.hold_seconds(kind, rules), assignment.priority
                )
        for receiver in receivers:
            priority = top_priority.get(receiver.pk, Assignment.Priority.NORMAL)
            for kind, hit in _receiver_findings(receiver, defaults).items():
                found[(receiver.pk, None, kind)] = Finding(hit, 0.0, priority)
        return found

    @staticmethod
    def evaluate(*, now: datetime | None = None, receiver_ids: Sequence[int] | None = None) -> Evaluation:
        """Open, update and resolve alerts to match what the stored readings say now.

        Args:
            now: the time to judge against.
            receiver_ids: only these receivers (a link holder evaluates the ones it holds); alerts of
                receivers no longer monitored are resolved in any case.
        Returns:
            What changed.
        """
        now = now or timezone.now()
        conditions = AlertCondition.objects.all()
        live = Alert.objects.filter(state__in=ALERT_LIVE_STATES)
        if receiver_ids is not None:
            conditions = conditions.filter(receiver_id__in=receiver_ids)
            live = live.filter(receiver_id__in=receiver_ids) | live.filter(receiver__active=False)
        alerts: dict[Key, Alert] = {(a.receiver_id, a.channel_id, a.kind): a for a in live}
        trending = {key[1] for key in alerts if key[2] == AlertKind.RUNTIME_TREND}
        found = AlertService.findings(now=now, receiver_ids=receiver_ids, trending=trending)
        since: dict[Key, AlertCondition] = {(c.receiver_id, c.channel_id, c.kind): c for c in conditions}

        gone = [c.pk for key, c in since.items() if key not in found]
        if gone:
            AlertCondition.objects.filter(pk__in=gone).delete()
        fresh = []
        for key, finding in found.items():
            condition = since.get(key)
            if condition is None:
                condition = AlertCondition(
                    receiver_id=key[0], channel_id=key[1], kind=key[2], key=finding.hit.key, since=now
                )
                fresh.append(condition)
                since[key] = condition
            elif condition.key != finding.hit.key:  # e.g. the other antenna alone now: the wait starts again
                AlertCondition.objects.filter(pk=condition.pk).update(key=finding.hit.key, since=now)
                condition.key, condition.since = finding.hit.key, now
        if fresh:  # another evaluator may have written the same rows a moment ago: theirs stand
            AlertCondition.objects.bulk_create(fresh, ignore_conflicts=True)

        stale = [alert for key, alert in alerts.items() if key not in found]
        due = [
            (key, finding)
            for key, finding in found.items()
            if key not in alerts and now - since[key].since >= timedelta(seconds=finding.hold)
        ]
        retold = [
            (alerts[key], finding.hit.detail[:255])
            for key, finding in found.items()
            if key in alerts and alerts[key].detail != finding.hit.detail[:255]
        ]
        opened = updated = resolved = 0
        if stale or due or retold:
            # One transaction: a screen sees an alert that replaces another (control_disabled for offline)
            # take its place at once, never both and never neither.
            with transaction.atomic():
                resolved = sum(AlertService._resolve(alert, now) for alert in stale)
                for alert, detail in retold:
                    alert.detail = detail
                    updated += Alert.objects.filter(pk=alert.pk, state__in=ALERT_LIVE_STATES).update(detail=detail)
                opened = sum(AlertService._open(key, finding, now) for key, finding in due)
        return Evaluation(opened=opened, resolved=resolved, updated=updated)

    @staticmethod
    def _open(key: Key, finding: Finding, now: datetime) -> int:
        """Open one alert; 0 when another evaluator opened it first (the constraint refuses a second)."""
        receiver_id, channel_id, kind = key
        try:
            with transaction.atomic():
                alert = Alert.objects.create(
                    receiver_id=receiver_id,
                    channel_id=channel_id,
                    kind=kind,
                    priority=finding.priority,
                    detail=finding.hit.detail[:255],
                    opened_at=now,
                )
                _audit("opened", alert, f"{alert}: {alert.detail}")
                NotifyService.record(alert=alert, event=EVENT_OPENED, now=now)
        except IntegrityError:
            return 0
        logger.info("alert opened: %s", alert)
        return 1

    @staticmethod
    def _resolve(alert: Alert, now: datetime) -> int:
        """Resolve a live alert whose condition cleared; 0 when another evaluator did it first."""
        with transaction.atomic():
            done = Alert.objects.filter(pk=alert.pk, state__in=ALERT_LIVE_STATES).update(
                state=Alert.State.RESOLVED, resolved_at=now
            )
            if done:
                alert.state, alert.resolved_at = Alert.State.RESOLVED, now
                _audit("resolved", alert, f"{alert}: cleared")
                NotifyService.record(alert=alert, event=EVENT_RESOLVED, now=now)
        return done

    @staticmethod
    def acknowledge(*, alert: Alert, user, screen: str = "") -> Alert:
        """Say that someone is on it: the alert stays until its condition clears.

        Args:
            user: who acknowledges.
            screen: where from (the tablet's or phone's name), at most 100 characters kept.
        Raises:
            AlertError: the alert is already acknowledged or resolved.
        """
        now = timezone.now()
        with transaction.atomic():
            done = Alert.objects.filter(pk=alert.pk, state=Alert.State.OPEN).update(
                state=Alert.State.ACKNOWLEDGED,
                acknowledged_at=now,
                acknowledged_by=user,
                acknowledged_from=screen[:100],
            )
            if not done:
                current = Alert.objects.filter(pk=alert.pk).values_list("state", flat=True).first()
                raise AlertError(f"This alert is {current or 'gone'}: nothing to acknowledge")
            alert.refresh_from_db()
            where = f" from {alert.acknowledged_from}" if alert.acknowledged_from else ""
            _audit("acknowledged", alert, f"{alert} by {user}{where}")
            NotifyService.record(alert=alert, event=EVENT_ACKNOWLEDGED, now=now)
            caching.invalidate_cache_on_commit(LIVE_NAMESPACE)  # the board and the phone show it acknowledged
        return alert


# --- the screens' read side: live alerts for the board, its tiles and the phone -----------------------------

_SLUG = re.compile(r"[-\w]{1,64}")  # a group's slug (as the board checks it before using it in a cache key)
LIVE_NAMESPACE = "board"  # the live alerts are cached under the board's version (every alert change bumps it)


@dataclass(frozen=True, slots=True)
class LiveAlert:
    """One open or acknowledged alert as a screen lists it (plain data: cached and shared)."""

    id: int
    kind: str
    kind_label: str
    state: str  # "open" or "acknowledged"
    priority: int
    priority_label: str
    where: str  # the performer (or channel name), else the receiver, as the tile is titled
    place: str  # receiver and channel number ("Rack A ch 2"), or the receiver alone
    detail: str
    opened_at: str  # ISO time; the browser counts the age
    opened_text: str  # that time on the wall clock (server's TIME_ZONE): a fixed time, safe to cache
    acknowledged_at: str = ""  # ISO time, "" while open
    acknowledged_text: str = ""
    acknowledged_by: str = ""
    acknowledged_from: str = ""

    @property
    def is_open(self) -> bool:
        return self.state == Alert.State.OPEN


@dataclass(frozen=True, slots=True)
class LiveAlerts:
    """The live alerts of a board (one group or every channel), most urgent first."""

    group: str
    alerts: tuple[LiveAlert, ...] = ()

    @property
    def open_count(self) -> int:
        return sum(1 for a in self.alerts if a.is_open)

    @property
    def acknowledged_count(self) -> int:
        return len(self.alerts) - self.open_count

    @property
    def digest(self) -> str:
        """A digest of everything listed (a screen's ETag: unchanged alerts answer 304)."""
        return hashlib.blake2b(repr(self).encode(), digest_size=8).hexdigest()


@dataclass(frozen=True, slots=True)
class TileAlert:
    """What a tile carries: the state of its most urgent live alert and a short text."""

    state: str  # "open" (the tile flashes) or "acknowledged" (marked, steady)
    text: str  # "Battery low", "Battery low +1"


def _iso(at: datetime | None) -> str:
    return at.isoformat(timespec="seconds") if at is not None else ""


def _clock(at: datetime | None) -> str:
    return timezone.localtime(at).strftime("%H:%M:%S") if at is not None else ""


def _urgency(state: str, priority: int) -> tuple[int, int]:
    return (0 if state == Alert.State.OPEN else 1, -priority)


def _group_alerts(group: str):
    """Live alerts of a group's tiles: their channels', and their receivers' receiver-wide ones."""
    if not Group.objects.filter(slug=group).exists():
        raise DeviceNotFoundError(f"No group {group[:64]!r}")
    slots = GroupSlot.objects.filter(group__slug=group, channel__isnull=False)
    channel_ids = slots.values("channel_id")
    receiver_ids = slots.values("channel__receiver_id")
    live = Alert.objects.filter(state__in=ALERT_LIVE_STATES)
    return live.filter(channel_id__in=channel_ids) | live.filter(channel__isnull=True, receiver_id__in=receiver_ids)


class LiveAlertService:
    """What the screens show of alerts: cached under the board's version, which every alert change bumps."""

    @staticmethod
    def live(*, group: str = "") -> LiveAlerts:
        """The open and acknowledged alerts of a group's tiles ("" for every monitored receiver).

        Open before acknowledged, then highest priority, then oldest. From the cache while the board's
        version stands (evaluations that change an alert and acknowledgements bump it); built from the
        database when the coordination store is down.

        Raises:
            DeviceNotFoundError: no group has that slug.
        """
        if group and not _SLUG.fullmatch(group):
            raise DeviceNotFoundError(f"No group {group[:64]!r}")
        try:
            version = caching.namespace_version(LIVE_NAMESPACE)
        except CoordinationError:
            return LiveAlertService.build(group=group)
        return caching.versioned(
            caching.cache_key(LIVE_NAMESPACE, "alerts", group),
            lambda: LiveAlertService.build(group=group),
            version=version,
            timeout=caching.DAY,
        )

    @staticmethod
    def build(*, group: str = "") -> LiveAlerts:
        """The live alerts from the database, in one query (two for a group: it must exist); see ``live``."""
        rows = _group_alerts(group) if group else Alert.objects.filter(state__in=ALERT_LIVE_STATES)
        rows = rows.select_related(
            "receiver", "channel__assignment__performer", "acknowledged_by"
        ).order_by("opened_at", "pk")
        items = []
        for alert in rows:
            channel = alert.channel
            receiver = alert.receiver
            if channel is not None:
                assignment = getattr(channel, "assignment", None)
                where = (assignment.performer.name if assignment else "") or channel.name or str(channel)
                place = f"{receiver.name} ch {channel.number}"
            else:
                where, place = receiver.name, receiver.name
            user = alert.acknowledged_by
            items.append(
                LiveAlert(
                    id=alert.pk,
                    kind=alert.kind,
                    kind_label=alert.get_kind_display(),
                    state=alert.state,
                    priority=alert.priority,
                    priority_label=alert.get_priority_display(),
                    where=where,
                    place=place,
                    detail=alert.detail,
                    opened_at=_iso(alert.opened_at),
                    opened_text=_clock(alert.opened_at),
                    acknowledged_at=_iso(alert.acknowledged_at),
                    acknowledged_text=_clock(alert.acknowledged_at),
                    acknowledged_by=user.get_username() if user is not None else "",
                    acknowledged_from=alert.acknowledged_from,
                )
            )
        items.sort(key=lambda a: _urgency(a.state, a.priority))  # stable: oldest first within each
        return LiveAlerts(group=group, alerts=tuple(items))

    @staticmethod
    def for_tiles() -> tuple[dict[int, TileAlert], dict[int, TileAlert]]:
        """What each tile carries, in one query: (by channel id, by receiver id for receiver-wide alerts).

        A tile shows its own most urgent alert or its receiver's (open before acknowledged, then
        priority); "+N" counts the others.
        """
        rows = Alert.objects.filter(state__in=ALERT_LIVE_STATES).values_list(
            "channel_id", "receiver_id", "kind", "state", "priority"
        )
        by_channel: dict[int, list[tuple[str, str, int]]] = {}
        by_receiver: dict[int, list[tuple[str, str, int]]] = {}
        for channel_id, receiver_id, kind, state, priority in rows:
            target = by_channel.setdefault(channel_id, []) if channel_id else by_receiver.setdefault(receiver_id, [])
            target.append((kind, state, priority))
        return _tile_alerts(by_channel), _tile_alerts(by_receiver)

    @staticmethod
    def tile_alert(
        *, channel_id: int, receiver_id: int, alerts: tuple[dict[int, TileAlert], dict[int, TileAlert]]
    ) -> TileAlert | None:
        """The alert a channel's tile carries, from ``for_tiles()``: its own, else its receiver's."""
        by_channel, by_receiver = alerts
        return by_channel.get(channel_id) or by_receiver.get(receiver_id)


def _tile_alerts(grouped: dict[int, list[tuple[str, str, int]]]) -> dict[int, TileAlert]:
    labels = dict(AlertKind.choices)
    out = {}
    for key, found in grouped.items():
        found.sort(key=lambda f: (*_urgency(f[1], f[2]), f[0]))
        kind, state, _ = found[0]
        more = f" +{len(found) - 1}" if len(found) > 1 else ""
        out[key] = TileAlert(state=state, text=f"{labels.get(kind, kind)}{more}")
    return out
