"""Async services (micboard.async_services) under asyncio, and the health page that uses them (async view)."""

from __future__ import annotations

import asyncio
import os

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient
from django.urls import reverse

from micboard import metrics
from micboard.async_services import (
    AsyncAssignmentService,
    AsyncConnectionHealthService,
    AsyncDeviceService,
    AsyncLocationService,
    AsyncManufacturerService,
)
from micboard.exceptions import DeviceNotFoundError
from micboard.services import AssignmentService, BoardService, DeviceService, LocationService, PollOutcome
from micboard.services.health import ConnectionHealthService
from tests.factories import make_receiver, make_user, pack_off, pack_on, reading
from web import ops_views

HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture
def rig(transactional_db):
    """Committed rows (the async ORM reads them from its own thread and connection)."""
    assert not os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")  # sync ORM calls on the loop would raise
    band = make_receiver(name="Band Rack", model="ULXD4Q")
    dead = make_receiver(name=HOSTILE, model="ULXD4D")
    packs = reading(pack_on(1, name="Lead Vox"), pack_off(2), pack_on(3), pack_on(4))
    DeviceService.record_poll_results(outcomes=[PollOutcome(band.pk, reading=packs)])
    for _ in range(2):
        DeviceService.record_poll_results(outcomes=[PollOutcome(dead.pk, error="127.0.0.1:9 refused the connection")])
    LocationService.move_receivers(receivers=[band], location=LocationService.create_location(name="Stage left"))
    AssignmentService.assign(channel=band.channels.get(number=1), performer="Priya Nair")
    BoardService.bump_version()
    BoardService.record_heartbeat()
    ConnectionHealthService.publish_summary()
    metrics.recorder.reset()
    return band, dead


@pytest.mark.asyncio
async def test_device_reads(rig):
    band, _ = rig
    receivers = await AsyncDeviceService.list_receivers()
    assert [r.name for r in receivers] == [HOSTILE, "Band Rack"]  # by name: "<" sorts first
    assert receivers[1].location.name == "Stage left" and receivers[1].connection.status == "connected"
    assert (await AsyncDeviceService.get_receiver(receiver_id=band.pk)).manufacturer.name == "Shure"
    with pytest.raises(DeviceNotFoundError):
        await AsyncDeviceService.get_receiver(receiver_id=999_999)
    assert await AsyncDeviceService.count_receivers() == (2, 1)
    transmitters = await AsyncDeviceService.list_transmitters()
    assert sum(1 for t in transmitters if t.present) == 3 and transmitters[-1].channel.receiver.name == "Band Rack"


@pytest.mark.asyncio
async def test_assignment_location_and_manufacturer_reads(rig):
    assignments = await AsyncAssignmentService.list_assignments()
    assert [(a.performer.name, a.channel.number) for a in assignments] == [("Priya Nair", 1)]
    assert await AsyncAssignmentService.count_assignments() == 1
    locations = await AsyncLocationService.list_locations()
    assert [(loc.name, loc.receiver_count) for loc in locations] == [("Stage left", 1)]
    assert (await AsyncLocationService.get_location(location_id=locations[0].pk)).name == "Stage left"
    with pytest.raises(DeviceNotFoundError):
        await AsyncLocationService.get_location(location_id=999_999)
    assert [(m.name, m.receiver_count) for m in await AsyncManufacturerService.list_manufacturers()] == [("Shure", 2)]


@pytest.mark.asyncio
async def test_connection_health_matches_the_sync_service(rig):
    from micboard.models import RealTimeConnection

    reports = await AsyncConnectionHealthService.check_health()
    assert [(r.receiver, r.healthy) for r in reports] == [(HOSTILE, False), ("Band Rack", True)]
    assert "refused the connection" in reports[0].message
    assert await AsyncConnectionHealthService.count_unhealthy() == 1
    sync_reports = await sync_to_async(
        lambda: ConnectionHealthService.check_health(
            connections=RealTimeConnection.objects.select_related("receiver").order_by("receiver__name")
        )
    )()
    assert [(r.receiver, r.healthy) for r in sync_reports] == [(r.receiver, r.healthy) for r in reports]


@pytest.mark.asyncio
async def test_reads_run_concurrently_under_gather(rig):
    results = await asyncio.gather(
        AsyncDeviceService.list_receivers(),
        AsyncDeviceService.list_transmitters(),
        AsyncConnectionHealthService.list_connections(),
    )
    assert [len(r) for r in results] == [2, 6, 2]


# --- the health page --------------------------------------------------------------------------------


async def client_for(role: str | None) -> AsyncClient:
    client = AsyncClient()
    if role is not None:
        user = await sync_to_async(make_user)(role, role=role if role != "none" else None)
        await client.aforce_login(user)
    return client


def test_the_health_page_is_an_async_view():
    assert asyncio.iscoroutinefunction(ops_views.health)


@pytest.mark.asyncio
async def test_the_health_page_shows_poller_links_slow_operations_and_statistics(rig, settings):
    settings.MICBOARD_SLOW_OPERATION_MS = 0.0001
    await sync_to_async(BoardService.board)()  # a board build: measured, and "slow" at this threshold
    client = await client_for("operator")
    response = await client.get(reverse("ops-health"))
    assert response.status_code == 200 and response["Cache-Control"].startswith("max-age=0")
    html = response.content.decode()
    assert 'id="poller-state"' in html and "Running: last heartbeat" in html and "<time datetime=" in html
    assert "1 of 2 monitored receivers online; 3 of 6 transmitters present." in html
    assert "1 unhealthy" in html and "2 failed polls: 127.0.0.1:9 refused the connection" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and HOSTILE not in html
    assert "<th scope=\"row\">BoardService.build</th><td>1</td><td>100 %</td>" in html
    assert "BoardService.build:" in html.split('id="slow"')[1]  # listed as a slow operation
    assert response["X-Micboard-Receivers"] == "1 of 2 unhealthy"


@pytest.mark.asyncio
async def test_the_health_page_says_when_the_poller_stopped(rig):
    await sync_to_async(BoardService.record_heartbeat)(at=1_000_000_000)
    html = (await (await client_for("admin")).get(reverse("ops-health"))).content.decode()
    assert "Stopped: last heartbeat" in html and 'datetime="2001-09-09T01:46:40+00:00"' in html


@pytest.mark.asyncio
async def test_the_health_page_is_for_operators(rig):
    anonymous = await (await client_for(None)).get(reverse("ops-health"))
    assert anonymous.status_code == 302 and reverse("login") in anonymous["Location"]
    for role in ("viewer", "none"):
        refused = await (await client_for(role)).get(reverse("ops-health"))
        assert refused.status_code == 403 and "Band Rack" not in refused.content.decode()
    assert (await (await client_for("operator")).post(reverse("ops-health"))).status_code == 405
