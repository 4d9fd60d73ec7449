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

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from micboard import alerts as rules_of
from micboard.alerts import AlertKind, Hit, Rules
from micboard.exceptions import AlertError
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
    Receiver,
)
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


def _channel_findings(channel: Channel, rules: Rules, now: datetime) -> dict[str, Hit]:
    receiver = channel.receiver
    tx = getattr(channel, "transmitter", None)
    if tx is None or not receiver.online:
        return {}
    present = bool(tx.present)
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
        )

    @staticmethod
    def findings(*, now: datetime, receiver_ids: Sequence[int] | None = None) -> dict[Key, Finding]:
        """Every condition that holds now on monitored receivers (channels: assigned, alerts on)."""
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
        for channel in channels:
            assignment = channel.assignment
            top_priority[channel.receiver_id] = max(top_priority.get(channel.receiver_id, 0), assignment.priority)
            rules = AlertService.rules_for(assignment=assignment)
            for kind, hit in _channel_findings(channel, rules, now).items():
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
        found = AlertService.findings(now=now, receiver_ids=receiver_ids)
        conditions = AlertCondition.objects.all()
        live = Alert.objects.filter(state__in=ALERT_LIVE_STATES)
        if receiver_ids is not None:
            conditions = conditions.filter(receiver_id__in=receiver_ids)
            live = live.filter(receiver_id__in=receiver_ids) | live.filter(receiver__active=False)
        since: dict[Key, AlertCondition] = {(c.receiver_id, c.channel_id, c.kind): c for c in conditions}
        alerts: dict[Key, Alert] = {(a.receiver_id, a.channel_id, a.kind): a for a in live}

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
        return alert
