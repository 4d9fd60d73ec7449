"""Services: setup, applying poll results, health bookkeeping, assignments."""

from dataclasses import replace
from datetime import timedelta

import pytest
from django.utils import timezone

from micboard.exceptions import AssignmentConflictError, ConfigurationError, DeviceNotFoundError, DiscoveryError
from micboard.models import AuditEntry, Channel, Group, RealTimeConnection, Receiver
from micboard.services import (
    AssignmentService,
    BoardService,
    ConnectionHealthService,
    DeviceService,
    DiscoveryService,
    GroupService,
    LocationService,
    ManufacturerService,
    PollOutcome,
)
from micboard.status import ChannelStatus
from tests.factories import make_receiver, pack_off, pack_on, reading

pytestmark = pytest.mark.django_db


def apply(receiver, *channels, now=None, error=""):
    outcome = PollOutcome(receiver.pk, reading=None if error else reading(*channels), error=error)
    return DeviceService.record_poll_results(outcomes=[outcome], now=now or timezone.now())


def statuses(receiver):
    return list(receiver.channels.order_by("number").values_list("status", flat=True))


def test_create_receiver_builds_channels_transmitters_and_connection():
    receiver = make_receiver(model="AD4D")
    assert receiver.manufacturer.name == "Shure"
    assert list(receiver.channels.values_list("number", flat=True)) == [1, 2]
    assert all(hasattr(c, "transmitter") for c in receiver.channels.all())
    assert RealTimeConnection.objects.filter(receiver=receiver).exists()
    assert statuses(receiver) == [ChannelStatus.RX_COM_ERROR] * 2  # not polled yet


def test_create_receiver_rejects_unknown_model():
    with pytest.raises(ConfigurationError, match="XYZ9"):
        make_receiver(model="XYZ9")


def test_get_receiver_raises_domain_error():
    with pytest.raises(DeviceNotFoundError):
        DeviceService.get_receiver(receiver_id=4242)


def test_reading_is_stored_and_shown_as_good():
    receiver = make_receiver(model="ULXD4D")
    assert apply(receiver, pack_on(1, bars=5, minutes=312, name="Lead Vox"), pack_on(2, bars=3))
    receiver.refresh_from_db()
    assert receiver.online and receiver.firmware == "2.4.6"
    ch1 = receiver.channels.get(number=1)
    assert ch1.name == "Lead Vox" and ch1.frequency_mhz == "578.125"
    assert ch1.transmitter.runtime_minutes == 312 and ch1.transmitter.antennas == "AI"
    assert statuses(receiver) == [ChannelStatus.GOOD, ChannelStatus.REPLACE]


def test_same_reading_again_changes_nothing_the_board_shows():
    receiver = make_receiver(model="ULXD4")
    now = timezone.now()
    assert apply(receiver, pack_on(1), now=now) is True
    assert apply(receiver, pack_on(1), now=now + timedelta(seconds=2)) is False


def test_per_antenna_rf_is_stored_and_the_same_levels_again_change_nothing():
    receiver = make_receiver(model="AD4D")
    now = timezone.now()
    assert apply(receiver, pack_on(1, antenna_dbm=(-57.0, -61.0), antennas="AA"), now=now) is True
    tx = receiver.channels.get(number=1).transmitter
    assert tx.rf_antennas == "72,65" and tx.rf_percent == 72  # the strongest antenna
    same = pack_on(1, antenna_dbm=(-57.0, -61.0), antennas="AA")
    assert apply(receiver, same, now=now + timedelta(seconds=2)) is False
    assert apply(receiver, pack_on(1, antenna_dbm=(-57.0, -80.0), antennas="AA"), now=now + timedelta(seconds=4))
    assert receiver.channels.get(number=1).transmitter.rf_antennas == "72,33"
    # A reading with one RF figure (or none per antenna) leaves nothing stale behind.
    apply(receiver, pack_on(1), now=now + timedelta(seconds=6))
    assert receiver.channels.get(number=1).transmitter.rf_antennas == ""


def test_per_antenna_rf_is_kept_when_a_poll_carried_no_meter_reading():
    receiver = make_receiver(model="AD4D")
    now = timezone.now()
    apply(receiver, pack_on(1, antenna_dbm=(-57.0, -61.0)), now=now)
    unmetered = replace(pack_on(1), metered=False)  # GET ALL answered, no SAMPLE before the deadline
    assert apply(receiver, unmetered, now=now + timedelta(seconds=2)) is False
    assert receiver.channels.get(number=1).transmitter.rf_antennas == "72,65"


def test_unknown_values_are_stored_as_null_never_as_sentinels():
    receiver = make_receiver(model="ULXD4")
    apply(receiver, pack_on(1, bars=4, percent=None, minutes=None))
    tx = receiver.channels.get().transmitter
    assert tx.battery_percent is None and tx.runtime_minutes is None and tx.battery_bars == 4


def test_pack_switched_off_shows_previous_state_with_last_battery():
    receiver = make_receiver(model="ULXD4")
    now = timezone.now()
    apply(receiver, pack_on(1, bars=2, minutes=40), now=now)
    apply(receiver, pack_off(1), now=now + timedelta(seconds=2))
    channel = receiver.channels.get()
    assert channel.status == ChannelStatus.PREV_CRITICAL
    assert channel.transmitter.battery_bars is None
    assert channel.transmitter.last_battery_bars == 2 and channel.transmitter.last_runtime_minutes == 40
    # 31 minutes later the last battery is too old to trust.
    DeviceService.refresh_statuses(now=now + timedelta(minutes=31))
    assert statuses(receiver) == [ChannelStatus.TX_COM_ERROR]


def test_pack_on_without_battery_bars_is_battery_unknown_keeps_its_last_battery_and_shows_peaks():
    receiver = make_receiver(model="ULXD4")
    now = timezone.now()
    apply(receiver, pack_on(1, bars=4), now=now)
    no_bars = replace(pack_on(1), battery_bars=None, battery_percent=None, battery_runtime_min=None)
    apply(receiver, no_bars, now=now + timedelta(seconds=2))
    channel = receiver.channels.get()
    assert channel.status == ChannelStatus.BATTERY_UNKNOWN  # not "Off (was good)": the pack is on
    assert channel.transmitter.present and channel.transmitter.model == "ULXD2"
    assert channel.transmitter.last_battery_bars == 4
    apply(receiver, replace(no_bars, audio_peak=True), now=now + timedelta(seconds=4))
    assert statuses(receiver) == [ChannelStatus.AUDIO_PEAK]
    DeviceService.refresh_statuses(now=now + timedelta(seconds=15))
    assert statuses(receiver) == [ChannelStatus.BATTERY_UNKNOWN]


def test_peak_shows_then_expires_with_time():
    receiver = make_receiver(model="ULXD4")
    now = timezone.now()
    apply(receiver, pack_on(1, peak=True), now=now)
    assert statuses(receiver) == [ChannelStatus.AUDIO_PEAK]
    assert DeviceService.refresh_statuses(now=now + timedelta(seconds=11)) is True
    assert statuses(receiver) == [ChannelStatus.GOOD]


def test_receiver_goes_offline_after_n_failures_backs_off_and_recovers(settings):
    settings.MICBOARD_OFFLINE_AFTER = 2
    settings.MICBOARD_POLL_INTERVAL = 2
    settings.MICBOARD_MAX_BACKOFF = 10
    receiver = make_receiver(model="ULXD4")
    now = timezone.now()
    apply(receiver, pack_on(1), now=now)
    assert not apply(receiver, error="refused", now=now + timedelta(seconds=2))  # one failure: still online
    assert statuses(receiver) == [ChannelStatus.GOOD]
    assert apply(receiver, error="refused", now=now + timedelta(seconds=4))
    receiver.refresh_from_db()
    assert not receiver.online and statuses(receiver) == [ChannelStatus.RX_COM_ERROR]
    conn = receiver.connection
    assert conn.status == RealTimeConnection.Status.FAILED and conn.last_error == "refused"
    assert conn.next_attempt_at == now + timedelta(seconds=8)
    assert DeviceService.due_targets(now=now + timedelta(seconds=5)) == []
    assert [t.receiver_id for t in DeviceService.due_targets(now=now + timedelta(seconds=13))] == [receiver.pk]
    for i in range(3, 8):
        apply(receiver, error="refused", now=now + timedelta(seconds=2 * i))
    conn.refresh_from_db()
    assert conn.next_attempt_at - conn.last_attempt_at == timedelta(seconds=10)  # capped
    apply(receiver, pack_on(1), now=now + timedelta(seconds=30))
    receiver.refresh_from_db()
    assert receiver.online and receiver.connection.consecutive_failures == 0
    assert statuses(receiver) == [ChannelStatus.GOOD]


def test_request_poll_skips_back_off():
    receiver = make_receiver(model="ULXD4")
    RealTimeConnection.objects.filter(receiver=receiver).update(
        next_attempt_at=timezone.now() + timedelta(minutes=5)
    )
    assert DeviceService.due_targets() == []
    DeviceService.request_poll(receivers=[receiver])
    assert len(DeviceService.due_targets()) == 1


def test_inactive_receivers_are_not_polled_and_show_unassigned():
    receiver = make_receiver(model="ULXD4")
    apply(receiver, pack_on(1))
    assert DeviceService.set_active(receivers=[receiver], active=False) == 1
    assert DeviceService.due_targets() == []
    assert statuses(receiver) == [ChannelStatus.UNASSIGNED]


def test_check_health_explains_each_link():
    good, bad = make_receiver(name="Good"), make_receiver(name="Bad")
    DeviceService.record_poll_results(
        outcomes=[PollOutcome(good.pk, reading=reading(pack_on(1))), PollOutcome(bad.pk, error="timed out")]
    )
    checked = ConnectionHealthService.check_health(connections=RealTimeConnection.objects.all())
    reports = {r.receiver: r for r in checked}
    assert reports["Good"].healthy
    assert not reports["Bad"].healthy and "timed out" in reports["Bad"].message
    assert ConnectionHealthService.reset(connections=RealTimeConnection.objects.filter(receiver=bad)) == 1
    assert RealTimeConnection.objects.get(receiver=bad).consecutive_failures == 0


def test_assignment_conflict_and_replace():
    channel = make_receiver(model="ULXD4").channels.get()
    AssignmentService.assign(channel=channel, performer="Maya")
    with pytest.raises(AssignmentConflictError, match="Maya"):
        AssignmentService.assign(channel=channel, performer="Jonas")
    AssignmentService.assign(channel=channel, performer="Jonas", replace=True)
    assert Channel.objects.get(pk=channel.pk).assignment.performer.name == "Jonas"
    assert AssignmentService.unassign(channel=channel)


def test_bulk_alert_toggle_counts_only_changes():
    receiver = make_receiver(model="ULXD4D")
    for ch, name in zip(receiver.channels.all(), ["A", "B"], strict=True):
        AssignmentService.assign(channel=ch, performer=name)
    from micboard.models import Assignment

    assert AssignmentService.set_alerts(assignments=Assignment.objects.all(), enabled=False) == 2
    assert AssignmentService.set_alerts(assignments=Assignment.objects.all(), enabled=False) == 0


def test_discovery_rejects_bad_and_huge_scopes():
    assert DiscoveryService.request_discovery(scope="10.0.0.7/24").scope == "10.0.0.0/24"
    with pytest.raises(DiscoveryError):
        DiscoveryService.request_discovery(scope="stage left")
    with pytest.raises(DiscoveryError):
        DiscoveryService.request_discovery(scope="10.0.0.0/8")


def test_location_names_are_unique():
    LocationService.create_location(name="FOH")
    with pytest.raises(ConfigurationError):
        LocationService.create_location(name="foh")
    assert LocationService.get_or_create_location(name="FOH").name == "FOH"


def test_sync_devices_restores_missing_channels_and_requests_a_poll():
    receiver = make_receiver(model="ULXD4Q")
    receiver.channels.filter(number__gt=2).delete()
    RealTimeConnection.objects.filter(receiver=receiver).update(next_attempt_at=timezone.now() + timedelta(hours=1))
    assert ManufacturerService.sync_devices(manufacturers=[receiver.manufacturer]) == 1
    assert receiver.channels.count() == 4 and len(DeviceService.due_targets()) == 1


def test_group_tiles_keep_order_and_blanks():
    receiver = make_receiver(model="ULXD4D")
    ch1, ch2 = receiver.channels.order_by("number")
    GroupService.set_tiles(name="Band", channels=[ch2, None, ch1])
    group = Group.objects.get(name="Band")
    assert [s.channel_id for s in group.slots.all()] == [ch2.pk, None, ch1.pk]


def test_config_changes_leave_an_audit_trail_but_polling_does_not():
    receiver = make_receiver(name="Audited")
    assert AuditEntry.objects.filter(model="receiver", action="created", summary__contains="Audited").exists()
    count = AuditEntry.objects.count()
    apply(receiver, pack_on(1))
    assert AuditEntry.objects.count() == count


def test_board_version_changes_only_when_bumped():
    first = BoardService.version()
    assert BoardService.version() == first
    assert BoardService.bump_version() != first


def test_staleness_reports_a_stopped_poller(settings):
    settings.MICBOARD_POLL_INTERVAL = 2
    settings.MICBOARD_POLL_TIMEOUT = 3
    BoardService.record_heartbeat(at=1000.0)
    assert BoardService.staleness(now=1005.0) == ""
    assert "stopped 60 s ago" in BoardService.staleness(now=1060.0)


def test_with_low_battery_manager_finds_receivers_with_critical_packs():
    low, full = make_receiver(name="Low", model="ULXD4"), make_receiver(name="Full", model="ULXD4")
    apply(low, pack_on(1, bars=1))
    apply(full, pack_on(1, bars=5))
    assert list(Receiver.objects.with_low_battery(threshold=2)) == [low]
