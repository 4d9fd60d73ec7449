"""Operations: the operator health page (an async view), /metrics for Prometheus."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import time
from datetime import UTC, datetime
from functools import wraps

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from micboard import metrics
from micboard.async_services import AsyncConnectionHealthService, AsyncDeviceService
from micboard.exceptions import CoordinationError
from micboard.models import Channel, Receiver
from micboard.services import BoardService
from micboard.services.board import poller_silence_limit
from web.access import operator_required

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def async_operator_required(view):
    """``operator_required`` for an async view: the access check runs in a thread (it reads the session)."""

    @operator_required
    def gate(request: HttpRequest) -> None:
        return None

    @wraps(view)
    async def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        refusal = await sync_to_async(gate)(request)
        if refusal is not None:
            return refusal
        return await view(request, *args, **kwargs)

    return wrapped


def _heartbeat() -> dict:
    try:
        beat = BoardService.heartbeat()
    except CoordinationError as exc:
        return {"known": False, "error": str(exc)[:200]}
    if beat is None:
        return {"known": False, "error": "the poller has not run yet"}
    age = time.time() - beat
    at = datetime.fromtimestamp(beat, UTC)
    return {
        "known": True,
        "at": at.isoformat(timespec="seconds"),
        "text": timezone.localtime(at).strftime("%H:%M:%S"),
        "age": int(age),
        "stale": age > poller_silence_limit(),
    }


@require_GET
@never_cache
@async_operator_required
async def health(request: HttpRequest) -> HttpResponse:
    """The operator health page: the poller, each receiver's link, slow operations, service statistics.

    The receivers, the transmitters and the links are read concurrently (asyncio.gather over the
    async services); the metrics come from the shared statistics store (micboard.metrics).
    """
    receivers, transmitters, connections, counts = await asyncio.gather(
        AsyncDeviceService.list_receivers(),
        AsyncDeviceService.list_transmitters(),
        AsyncConnectionHealthService.list_connections(),
        AsyncDeviceService.count_receivers(),
    )
    reports = await AsyncConnectionHealthService.check_health(connections=connections)
    links = [{"connection": c, "report": r} for c, r in zip(connections, reports, strict=True)]
    heartbeat, statistics, slow = await asyncio.gather(
        sync_to_async(_heartbeat)(),
        sync_to_async(metrics.statistics)(),
        sync_to_async(metrics.slow_operations)(),
    )
    context = {
        "heartbeat": heartbeat,
        "links": links,
        "unhealthy": sum(1 for r in reports if not r.healthy),
        "receivers": receivers,
        "monitored": counts[0],
        "online": counts[1],
        "transmitters_present": sum(1 for t in transmitters if t.present),
        "transmitters": len(transmitters),
        "statistics": statistics,
        "slow": [
            {"at": datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds"), "name": name, "ms": ms}
            for at, name, ms in slow
        ],
        "slow_threshold_ms": settings.MICBOARD_SLOW_OPERATION_MS,
    }
    return await sync_to_async(render)(request, "micboard/health.html", context)


def _client_allowed(request: HttpRequest) -> bool:
    token = settings.MICBOARD_METRICS_TOKEN
    auth = request.headers.get("Authorization", "")
    if token and auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].strip().encode(), token.encode()):
        return True
    if "HTTP_X_FORWARDED_FOR" in request.META or "HTTP_FORWARDED" in request.META:
        return False  # through a reverse proxy REMOTE_ADDR is the proxy's (often loopback): token only
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    for allowed in settings.MICBOARD_METRICS_ALLOW:
        try:
            if address in ipaddress.ip_network(allowed, strict=False):
                return True
        except ValueError:
            continue
    return False


def _histogram(name: str, doc: str, entry: dict | None) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc)
    histogram = entry["histogram"] if entry else [0] * (len(metrics.HISTOGRAM_BOUNDS) + 1)
    cumulative, buckets = 0, []
    for bound, n in zip([*metrics.HISTOGRAM_BOUNDS, float("inf")], histogram, strict=True):
        cumulative += n
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
    family.add_metric([], buckets, entry["total_seconds"] if entry else 0.0)
    return family


class _MicboardCollector:
    """State computed from the database at scrape time; counts and durations from the shared store."""

    def collect(self):
        series, counters = metrics.totals()
        yield _histogram("micboard_poll_cycle_seconds", "Duration of one poll cycle.", series.get("poll.cycle"))
        yield _histogram(
            "micboard_link_flush_seconds", "Duration of one write of the links' readings.", series.get("links.flush")
        )
        yield _histogram("micboard_request_seconds", "Duration of HTTP requests.", series.get("http.request"))

        receivers = GaugeMetricFamily("micboard_receivers", "Monitored receivers by state.", labels=["state"])
        monitored = Receiver.objects.filter(active=True)
        online = monitored.filter(online=True).count()
        receivers.add_metric(["online"], online)
        receivers.add_metric(["offline"], monitored.count() - online)
        yield receivers

        channels = GaugeMetricFamily(
            "micboard_channels", "Channels of monitored receivers by status.", labels=["status"]
        )
        rows = Channel.objects.filter(receiver__active=True).values("status").annotate(n=Count("pk")).order_by("status")
        for row in rows:
            channels.add_metric([row["status"] or "UNKNOWN"], row["n"])
        yield channels

        errors = CounterMetricFamily("micboard_driver_errors", "Failed polls by kind of error.", labels=["kind"])
        for name, value in sorted(counters.items()):
            if name.startswith("driver_errors:"):
                errors.add_metric([name.split(":", 1)[1]], value)
        yield errors

        builds = series.get("BoardService.build")
        yield CounterMetricFamily(
            "micboard_board_builds", "Boards built from the database.", value=builds["total"] if builds else 0
        )

        calls = CounterMetricFamily(
            "micboard_service_calls", "Service calls by method and outcome.", labels=["method", "outcome"]
        )
        seconds = CounterMetricFamily("micboard_service_seconds", "Time spent in service calls.", labels=["method"])
        for name, entry in sorted(series.items()):
            if name.startswith("http."):
                continue
            calls.add_metric([name, "ok"], entry["total_ok"])
            calls.add_metric([name, "error"], entry["total"] - entry["total_ok"])
            seconds.add_metric([name], entry["total_seconds"])
        yield calls
        yield seconds


@require_GET
@never_cache
def prometheus_metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text format. Allowed: ``Authorization: Bearer <MICBOARD_METRICS_TOKEN>``, or a direct
    request (no X-Forwarded-For / Forwarded header) from an address in MICBOARD_METRICS_ALLOW (loopback
    by default); anyone else gets 403 and no numbers."""
    if not _client_allowed(request):
        return HttpResponse("Forbidden: /metrics needs the metrics token or an allowed address.\n", status=403,
                            content_type="text/plain; charset=utf-8")
    registry = CollectorRegistry()
    registry.register(_MicboardCollector())
    return HttpResponse(generate_latest(registry), content_type=PROMETHEUS_CONTENT_TYPE)
