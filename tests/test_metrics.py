"""Service metrics (micboard.metrics) and /metrics for Prometheus."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse
from prometheus_client.parser import text_string_to_metric_families

from micboard import metrics
from micboard.exceptions import AssignmentConflictError
from micboard.metrics import PerformanceMonitor, statistics, track_service_metrics
from micboard.services import AssignmentService, BoardService, DeviceService, PollOutcome
from tasks.polling import run_poll_cycle
from tests.factories import make_receiver, pack_off, pack_on, reading, receivers_for, start_simulator, use_fast_polls

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def fresh_numbers():
    metrics.recorder.reset()
    yield
    metrics.recorder.reset()
    metrics.recorder.clock = __import__("time").time


def stats_of(name: str):
    return next((s for s in statistics() if s.name == name), None)


def scrape(client: Client | None = None, **kwargs) -> dict[str, dict[tuple, float]]:
    """/metrics parsed: {sample name: {labels as sorted tuple: value}}."""
    response = (client or Client()).get(reverse("metrics"), **kwargs)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


# --- the statistics ----------------------------------------------------------------------------


def test_rolling_statistics_count_average_min_max_p95_and_keep_the_last_100_samples():
    for ms in range(1, 151):  # 1 .. 150 ms
        metrics.recorder.record("Demo.op", ms=float(ms), ok=ms % 10 != 0)
    s = stats_of("Demo.op")
    assert s.count == 150 and s.min_ms == 1 and s.max_ms == 150
    assert s.average_ms == pytest.approx(75.5)
    assert s.success_rate == pytest.approx(135 / 150)
    assert len(s.samples) == 100 and s.samples[0][1] == 51  # the last 100 calls: 51 .. 150 ms
    assert s.p95_ms == 145  # of those last 100


def test_statistics_cover_one_hour_only():
    clock = [1_000_000.0]
    metrics.recorder.clock = lambda: clock[0]
    metrics.recorder.record("Demo.old", ms=500, ok=False)
    clock[0] += 3700
    metrics.recorder.record("Demo.old", ms=10, ok=True)
    s = next(s for s in statistics(now=clock[0]) if s.name == "Demo.old")
    assert s.count == 1 and s.max_ms == 10 and s.success_rate == 1.0 and len(s.samples) == 1


def test_performance_monitor_times_a_block_and_counts_an_exception_as_a_failure():
    with PerformanceMonitor("Demo.block") as monitor:
        sum(range(1000))
    assert monitor.elapsed_ms > 0
    with pytest.raises(ValueError), PerformanceMonitor("Demo.block"):
        raise ValueError("boom")
    s = stats_of("Demo.block")
    assert s.count == 2 and s.success_rate == 0.5


def test_slow_operations_are_logged_and_listed(settings, caplog):
    settings.MICBOARD_SLOW_OPERATION_MS = 0.0001
    with PerformanceMonitor("Demo.slow"):
        sum(range(1000))
    assert "slow operation Demo.slow" in caplog.text
    assert [name for _, name, _ in metrics.slow_operations()] == ["Demo.slow"]


def test_a_poll_cycle_that_waits_for_its_meters_is_not_a_slow_operation(settings, caplog):
    """A cycle lasts a meter period by design (1 s on the demo rig): only past its time-out is it slow."""
    use_fast_polls(settings)
    settings.MICBOARD_SLOW_OPERATION_MS = 1  # every tracked service call counts as slow here ...
    sim = start_simulator(["ulxd"])
    try:
        receivers_for(sim, ["ulxd"])
        assert run_poll_cycle().failed == 0
    finally:
        sim.stop()
    slow = [name for _, name, _ in metrics.slow_operations()]
    assert "poll.cycle" not in slow and "slow operation poll.cycle" not in caplog.text  # ... but not the cycle
    assert "DeviceService.record_poll_results" in slow


def test_the_services_that_matter_are_tracked():
    @track_service_metrics
    def plain(*, x: int) -> int:
        return x

    assert plain(x=3) == 3 and plain.__name__ == "plain"
    rx = make_receiver(name="Band Rack")
    DeviceService.record_poll_results(outcomes=[PollOutcome(rx.pk, reading=reading(pack_on(1), pack_off(2)))])
    channel = rx.channels.get(number=1)
    AssignmentService.assign(channel=channel, performer="Priya Nair")
    AssignmentService.reassign(channel=channel, name="Sam Lee", expected="Priya Nair")
    with pytest.raises(AssignmentConflictError):  # someone else changed it meanwhile: a failed call
        AssignmentService.reassign(channel=channel, name="Jo", expected="Priya Nair")
    AssignmentService.unassign(channel=channel)
    BoardService.board()
    names = {s.name: s for s in statistics()}
    assert names["DeviceService.record_poll_results"].count == 1
    assert names["AssignmentService.assign"].count >= 1
    assert names["AssignmentService.reassign"].count == 2 and names["AssignmentService.reassign"].success_rate == 0.5
    assert names["AssignmentService.unassign"].count == 1
    assert names["BoardService.build"].count == 1


def test_the_numbers_are_bounded():
    for n in range(metrics.MAX_NAMES + 50):
        metrics.recorder.record(f"Demo.op{n}", ms=1, ok=True)
    assert len(statistics()) == metrics.MAX_NAMES


# --- /metrics -------------------------------------------------------------------------------------


def test_metrics_are_refused_to_other_addresses_and_wrong_tokens(settings):
    settings.MICBOARD_METRICS_TOKEN = "scrape-token-1"
    client = Client(REMOTE_ADDR="10.1.2.3")
    refused = client.get(reverse("metrics"))
    assert refused.status_code == 403 and b"micboard_" not in refused.content
    assert client.get(reverse("metrics"), headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert client.get(reverse("metrics"), headers={"Authorization": "Bearer scrape-token-1"}).status_code == 200
    settings.MICBOARD_METRICS_TOKEN = ""
    assert client.get(reverse("metrics"), headers={"Authorization": "Bearer "}).status_code == 403  # no token set
    settings.MICBOARD_METRICS_ALLOW = ["10.1.0.0/16"]
    assert client.get(reverse("metrics")).status_code == 200
    assert Client().get(reverse("metrics")).status_code == 403  # loopback no longer listed


def test_a_request_through_a_reverse_proxy_needs_the_token(settings):
    """Behind a proxy on the same machine every client looks like loopback: the address proves nothing."""
    settings.MICBOARD_METRICS_TOKEN = "scrape-token-2"
    proxied = Client(headers={"X-Forwarded-For": "203.0.113.9"})
    assert proxied.get(reverse("metrics")).status_code == 403
    assert Client(headers={"Forwarded": "for=203.0.113.9"}).get(reverse("metrics")).status_code == 403
    assert proxied.get(reverse("metrics"), headers={"Authorization": "Bearer scrape-token-2"}).status_code == 200


def test_metrics_answer_loopback_by_default_with_state_from_the_database():
    rx = make_receiver(name="Band Rack")
    make_receiver(name="Spare Rack")  # never answered: offline
    DeviceService.record_poll_results(outcomes=[PollOutcome(rx.pk, reading=reading(pack_on(1, bars=1), pack_off(2)))])
    BoardService.bump_version()
    BoardService.board()
    Client().get(reverse("healthz"))
    m = scrape()
    assert m["micboard_receivers"] == {(("state", "online"),): 1.0, (("state", "offline"),): 1.0}
    assert m["micboard_channels"][(("status", "CRITICAL"),)] == 1.0
    assert m["micboard_board_builds_total"][()] == 1.0
    assert m["micboard_service_calls_total"][(("method", "DeviceService.record_poll_results"), ("outcome", "ok"))] == 1
    assert m["micboard_request_seconds_count"][()] >= 1


def test_a_poll_cycle_reaches_metrics_with_its_duration_and_driver_errors(settings):
    use_fast_polls(settings)
    sim = start_simulator(["ulxd"])
    try:
        receivers_for(sim, ["ulxd"])
        with socket.socket() as probe:  # a port nothing listens on: the connection is refused
            probe.bind(("127.0.0.1", 0))
            dead_port = probe.getsockname()[1]
        make_receiver(name="Dead Rack", port=dead_port)
        summary = run_poll_cycle()
    finally:
        sim.stop()
    assert summary.polled == 2 and summary.failed == 1
    m = scrape()
    assert m["micboard_poll_cycle_seconds_count"][()] == 1
    assert m["micboard_poll_cycle_seconds_sum"][()] > 0
    assert sum(m["micboard_driver_errors_total"].values()) == 1
    assert m["micboard_receivers"][(("state", "online"),)] == 1


def test_the_workers_numbers_reach_the_web_process():
    """Another process (as the Huey consumer is) records and flushes; this one's /metrics shows it."""
    script = textwrap.dedent(
        """
        import django
        django.setup()
        from micboard import metrics
        metrics.recorder.record("poll.cycle", ms=1234.0, ok=True)
        metrics.recorder.record("DeviceService.record_poll_results", ms=20.0, ok=False)
        metrics.count("driver_errors:DriverError", 3)
        metrics.recorder.flush(force=True)
        """
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "web.settings"}
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True, timeout=60)
    m = scrape()
    assert m["micboard_poll_cycle_seconds_count"][()] == 1
    assert m["micboard_poll_cycle_seconds_bucket"][(("le", "2.5"),)] == 1
    assert m["micboard_poll_cycle_seconds_bucket"][(("le", "1.0"),)] == 0
    assert m["micboard_driver_errors_total"][(("kind", "DriverError"),)] == 3
    s = stats_of("DeviceService.record_poll_results")
    assert s.count == 1 and s.success_rate == 0
