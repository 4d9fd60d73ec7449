"""Custom querysets: the filters setup pages and health checks rely on."""

from datetime import timedelta

import pytest
from django.utils import timezone

from micboard.models import Channel, Location, Manufacturer, Receiver
from micboard.services import AssignmentService, DeviceService, PollOutcome
from tests.factories import make_receiver, pack_on, reading

pytestmark = pytest.mark.django_db


@pytest.fixture
def rig():
    stage = Location.objects.create(name="Stage")
    sennheiser = Manufacturer.objects.create(name="Sennheiser")
    good = make_receiver(name="Good", model="ULXD4", location=stage)
    low = make_receiver(name="Low", model="ULXD4")
    dead = make_receiver(name="Dead", model="ULXD4", manufacturer=sennheiser)
    idle = make_receiver(name="Idle", model="ULXD4", active=False)
    DeviceService.record_poll_results(
        outcomes=[
            PollOutcome(good.pk, reading=reading(pack_on(1, bars=5))),
            PollOutcome(low.pk, reading=reading(pack_on(1, bars=1))),
            PollOutcome(dead.pk, error="connection refused"),
        ]
    )
    return {"good": good, "low": low, "dead": dead, "idle": idle, "stage": stage, "sennheiser": sennheiser}


def names(qs):
    return sorted(r.name for r in qs)


def test_online_and_offline_cover_monitored_receivers_only(rig, settings):
    assert names(Receiver.objects.online()) == ["Good", "Low"]
    assert names(Receiver.objects.offline()) == ["Dead"]  # never answered; Idle is not monitored


def test_by_manufacturer_accepts_instance_slug_or_name(rig):
    assert names(Receiver.objects.by_manufacturer(rig["sennheiser"])) == ["Dead"]
    assert names(Receiver.objects.by_manufacturer("sennheiser")) == ["Dead"]
    assert names(Receiver.objects.by_manufacturer("Shure")) == ["Good", "Idle", "Low"]


def test_with_low_battery_uses_the_threshold(rig):
    assert names(Receiver.objects.with_low_battery(threshold=1)) == ["Low"]
    assert names(Receiver.objects.with_low_battery(threshold=5)) == ["Good", "Low"]
    assert [c.receiver.name for c in Channel.objects.with_low_battery(threshold=2)] == ["Low"]


def test_recently_updated(rig):
    assert names(Receiver.objects.recently_updated(seconds=60)) == ["Good", "Low"]
    Receiver.objects.filter(name="Good").update(last_seen=timezone.now() - timedelta(minutes=5))
    assert names(Receiver.objects.recently_updated(seconds=60)) == ["Low"]


def test_in_location_by_instance_or_name(rig):
    assert names(Receiver.objects.in_location(rig["stage"])) == ["Good"]
    assert names(Receiver.objects.in_location("stage")) == ["Good"]


def test_with_assignments(rig):
    AssignmentService.assign(channel=rig["low"].channels.get(), performer="Maya")
    assert names(Receiver.objects.with_assignments()) == ["Low"]


def test_unhealthy_and_with_errors(rig):
    assert names(Receiver.objects.unhealthy()) == ["Dead"]
    assert names(Receiver.objects.with_errors()) == ["Dead"]
    DeviceService.record_poll_results(outcomes=[PollOutcome(rig["dead"].pk, reading=reading(pack_on(1)))])
    assert names(Receiver.objects.unhealthy()) == []
    assert names(Receiver.objects.with_errors()) == []
