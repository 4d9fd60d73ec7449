"""The service methods the API calls: domain errors, and a board version bump when the board shows the change."""

import pytest

from micboard.exceptions import (
    AssignmentConflictError,
    ConfigurationError,
    DeviceNotFoundError,
    DeviceOfflineError,
    InvalidReadingError,
)
from micboard.models import Assignment, Location, RealTimeConnection, Receiver
from micboard.services import (
    AssignmentService,
    BoardService,
    ConnectionHealthService,
    DeviceService,
    LocationService,
    PollOutcome,
)
from tests.factories import make_receiver, pack_on, reading

pytestmark = pytest.mark.django_db


@pytest.fixture
def racks():
    a = make_receiver(name="A", model="ULXD4D")
    b = make_receiver(name="B", model="ULXD4D")
    DeviceService.record_poll_results(outcomes=[
        PollOutcome(a.pk, reading=reading(pack_on(1, bars=1), pack_on(2, bars=5))),
        PollOutcome(b.pk, error="refused"),
    ])
    return a, b


def test_device_reads(racks):
    a, b = racks
    assert list(DeviceService.get_active_receivers()) == [a, b]
    assert list(DeviceService.get_online_receivers()) == [a]
    assert list(DeviceService.get_low_battery_receivers(threshold=1)) == [a]
    assert list(DeviceService.get_low_battery_receivers(threshold=0)) == []
    with pytest.raises(InvalidReadingError):
        DeviceService.get_low_battery_receivers(threshold=7)
    assert [t.channel.number for t in DeviceService.get_low_battery_transmitters(threshold=2)] == [1]
    DeviceService.set_active(receivers=[a], active=False)
    assert list(DeviceService.get_active_receivers()) == [b]
    with pytest.raises(DeviceOfflineError):
        DeviceService.sync_device_status(receiver=Receiver.objects.get(pk=a.pk))


def test_unhealthy_connections_and_heartbeat(racks):
    _, b = racks
    assert [c.receiver for c in ConnectionHealthService.get_unhealthy_connections()] == [b]
    report = ConnectionHealthService.update_heartbeat(connection=RealTimeConnection.objects.get(receiver=b))
    assert not report.healthy and "refused" in report.message


def test_assignment_writes_bump_the_board(racks, django_capture_on_commit_callbacks):
    a, _ = racks
    ch1, ch2 = a.channels.order_by("number")
    version = BoardService.version()
    with django_capture_on_commit_callbacks(execute=True):
        made = AssignmentService.create_assignment(channel=ch1, performer="  Maya ", notes="lav")
    assert (made.performer.name, made.notes) == ("Maya", "lav") and BoardService.version() != version
    with pytest.raises(AssignmentConflictError):
        AssignmentService.create_assignment(channel=ch1, performer="Ola")
    with pytest.raises(ConfigurationError):
        AssignmentService.update_assignment(assignment=made, performer=" ")
    version = BoardService.version()
    with django_capture_on_commit_callbacks(execute=True):
        moved = AssignmentService.update_assignment(assignment=made, channel=ch2, priority=4)
    assert (moved.channel, moved.priority) == (ch2, 4) and BoardService.version() != version
    with django_capture_on_commit_callbacks(execute=True):
        AssignmentService.delete_assignment(assignment=moved)
    assert not Assignment.objects.exists()


def test_locations(racks):
    a, b = racks
    sl = LocationService.create_location(name="Stage Left")
    with pytest.raises(DeviceNotFoundError):
        LocationService.move_receivers_by_id(receiver_ids=[a.pk, 9999], location=sl)
    assert not Receiver.objects.filter(location=sl).exists()
    assert LocationService.move_receivers_by_id(receiver_ids=[a.pk, b.pk], location=sl) == 2
    LocationService.create_location(name="FOH")
    with pytest.raises(ConfigurationError):
        LocationService.update_location(location=sl, name="foh")
    assert LocationService.update_location(location=sl, description="wing").description == "wing"
    assert LocationService.delete_location(location=sl) == 2
    assert Receiver.objects.count() == 2 and list(Location.objects.values_list("name", flat=True)) == ["FOH"]
