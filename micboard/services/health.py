"""Health of the link to each receiver: failures, back-off, offline and recovery."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db.models import Q, QuerySet
from django.utils import timezone

from micboard.models import RealTimeConnection
from micboard.query_optimization import QueryOptimizer

Status = RealTimeConnection.Status


@dataclass(frozen=True, slots=True)
class HealthReport:
    receiver: str
    healthy: bool
    message: str


SUMMARY_KEY = "micboard:health:summary"  # cache: (published at, unhealthy, total), see publish_summary


def stale_seconds() -> float:
    """Seconds without a good poll after which a link counts as unhealthy (the poller may be gone)."""
    return 3 * settings.MICBOARD_POLL_INTERVAL + settings.MICBOARD_POLL_TIMEOUT


def backoff_seconds(failures: int) -> float:
    """Delay before retrying a receiver that failed ``failures`` times in a row.

    Until it is declared offline a failing receiver is retried at the normal
    interval; after that the delay doubles per failure up to MICBOARD_MAX_BACKOFF.
    """
    interval = settings.MICBOARD_POLL_INTERVAL
    excess = failures - settings.MICBOARD_OFFLINE_AFTER
    if excess < 0:
        return 0.0
    return min(settings.MICBOARD_MAX_BACKOFF, interval * 2 ** (excess + 1))


class ConnectionHealthService:
    """Bookkeeping of RealTimeConnection rows."""

    POLL_FIELDS = [
        "status", "last_attempt_at", "last_success_at", "last_error", "last_error_at",
        "consecutive_failures", "last_latency_ms", "next_attempt_at", "total_polls", "total_failures",
    ]

    @staticmethod
    def apply_success(*, connection: RealTimeConnection, latency_ms: float | None, now: datetime) -> None:
        """Record a good poll on the (unsaved) connection; the caller saves in bulk."""
        connection.status = Status.CONNECTED
        connection.last_attempt_at = now
        connection.last_success_at = now
        connection.consecutive_failures = 0
        connection.last_latency_ms = latency_ms
        connection.next_attempt_at = None
        connection.total_polls += 1

    @staticmethod
    def apply_failure(*, connection: RealTimeConnection, error: str, now: datetime, lost: bool = False) -> bool:
        """Record a failed poll on the (unsaved) connection; the caller saves in bulk.

        Args:
            lost: a live link saw the receiver go (silent or disconnected for seconds): offline at
                once, where failed polls count to MICBOARD_OFFLINE_AFTER first.

        Returns:
            True when the receiver is now to be shown offline.
        """
        connection.consecutive_failures += 1
        connection.total_polls += 1
        connection.total_failures += 1
        connection.last_attempt_at = now
        connection.last_error = error[:1000]
        connection.last_error_at = now
        offline = lost or connection.consecutive_failures >= settings.MICBOARD_OFFLINE_AFTER
        connection.status = Status.FAILED if offline else Status.DEGRADED
        delay = backoff_seconds(connection.consecutive_failures)
        connection.next_attempt_at = now + timedelta(seconds=delay) if delay else None
        return offline

    @staticmethod
    def check_health(
        *, connections: QuerySet[RealTimeConnection] | Iterable[RealTimeConnection], now: datetime | None = None
    ) -> list[HealthReport]:
        """Judge each link from what the poller recorded (it never contacts a device).

        Returns:
            One report per connection, unhealthy ones with a reason.
        """
        now = now or timezone.now()
        stale_after = timedelta(seconds=stale_seconds())
        reports = []
        for conn in connections:
            name = conn.receiver.name
            if not conn.receiver.active:
                reports.append(HealthReport(name, False, "monitoring is switched off"))
            elif conn.consecutive_failures:
                reports.append(
                    HealthReport(name, False, f"{conn.consecutive_failures} failed polls: {conn.last_error}")
                )
            elif conn.last_success_at is None:
                reports.append(HealthReport(name, False, "never answered a poll (is the poller running?)"))
            elif now - conn.last_success_at > stale_after:
                age = int((now - conn.last_success_at).total_seconds())
                reports.append(HealthReport(name, False, f"last good poll {age} s ago (is the poller running?)"))
            else:
                latency = f", {conn.last_latency_ms:.0f} ms" if conn.last_latency_ms is not None else ""
                reports.append(HealthReport(name, True, f"answering{latency}"))
        return reports

    @staticmethod
    def publish_summary() -> tuple[int, int]:
        """Judge every monitored receiver's link and publish the counts for health_summary().

        Called by the poller at the end of each cycle (one query), so that requests read the
        receivers' health from one cache entry and never from the database.

        Returns:
            (unhealthy, total) of the monitored receivers' links.
        """
        connections = RealTimeConnection.objects.filter(receiver__active=True).select_related("receiver")
        reports = ConnectionHealthService.check_health(connections=connections)
        unhealthy, total = sum(1 for r in reports if not r.healthy), len(reports)
        cache.set(SUMMARY_KEY, (time.time(), unhealthy, total), 24 * 3600)
        return unhealthy, total

    @staticmethod
    def health_summary(*, now: float | None = None) -> tuple[int, int] | None:
        """(unhealthy, total) as the poller last published them; no query, never a device.

        A summary older than a link's staleness limit means the poller stopped publishing: every
        link is then unhealthy by check_health's own rule (no good poll lately), so all count.

        Returns:
            The counts, or None when none were published (the poller never ran, or the entry is gone).
        """
        cached = cache.get(SUMMARY_KEY)
        if not (isinstance(cached, tuple) and len(cached) == 3):
            return None
        at, unhealthy, total = cached
        if (now if now is not None else time.time()) - at > stale_seconds():
            return total, total
        return unhealthy, total

    @staticmethod
    def reset(*, connections: QuerySet[RealTimeConnection] | Iterable[RealTimeConnection]) -> int:
        """Forget failures and back-off so the next cycle polls at once. Returns the count."""
        ids = [c.pk for c in connections]
        return RealTimeConnection.objects.filter(pk__in=ids).update(
            consecutive_failures=0, next_attempt_at=None, last_error="", status=Status.UNKNOWN
        )

    @staticmethod
    def get_unhealthy_connections() -> QuerySet[RealTimeConnection]:
        """Links of monitored receivers that are offline or whose last poll failed.

        Returns:
            A queryset of connections (with their receivers), worst first.
        """
        return (
            QueryOptimizer.connections_for_api()
            .filter(receiver__active=True)
            .filter(Q(receiver__online=False) | Q(consecutive_failures__gt=0))
            .order_by("-consecutive_failures", "receiver__name")
        )

    @staticmethod
    def update_heartbeat(*, connection: RealTimeConnection, now: datetime | None = None) -> HealthReport:
        """A client asks whether a link is alive: judge it, and ask for a poll now when it is not.

        Nothing is contacted here and nothing is marked as heard: the link is judged from what the
        poller recorded (``check_health``). A link that is not healthy loses its back-off so the next
        poll cycle tries the receiver at once; the answer of that poll updates the link.

        Args:
            connection: the link (its receiver is read).
        Returns:
            The link's health as recorded now.
        """
        report = ConnectionHealthService.check_health(connections=[connection], now=now)[0]
        if not report.healthy and connection.receiver.active:
            RealTimeConnection.objects.filter(pk=connection.pk).update(next_attempt_at=None)
            connection.next_attempt_at = None
        return report
