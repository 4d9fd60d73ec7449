"""The one-shot poll cycle end to end over real loopback sockets: driver -> services -> models.

The other end is the protocol simulator; nothing of micboard is mocked.
"""

import time

import pytest

from conftest import drop_cache_entries
from micboard import coordination
from micboard.models import Channel, Receiver
from micboard.services import BoardService, DeviceService
from micboard.simulators.rig import DEMO_RIG, rig_device
from micboard.status import ChannelStatus as S
from tasks.links import LEASE_PREFIX
from tasks.polling import run_poll_cycle
from tests.factories import receivers_for, start_simulator, use_fast_polls

pytestmark = pytest.mark.django_db


@pytest.fixture
def fast_polls(settings):
    use_fast_polls(settings)


@pytest.fixture
def small_rig(fast_polls):
    """ULX-D and Axient: fast families (100 ms metering) for multi-cycle tests."""
    keys = ["ulxd", "ad"]
    sim = start_simulator(keys)
    yield sim, receivers_for(sim, keys)
    sim.stop()


def tiles(receiver):
    return {c.number: c for c in Channel.objects.filter(receiver=receiver).select_related("transmitter")}


def status_of(receiver):
    return [c.status for c in Channel.objects.filter(receiver=receiver).order_by("number")]


def test_one_cycle_reads_every_family_of_the_demo_rig(fast_polls):
    keys = [d.key for d in DEMO_RIG]
    sim = start_simulator(keys)
    try:
        receivers = receivers_for(sim, keys)
        summary = run_poll_cycle()
        qlxd = sim.snapshot("qlxd")
    finally:
        sim.stop()
    assert summary.polled == len(keys) and summary.failed == 0 and summary.changed
    for key, receiver in receivers.items():
        receiver.refresh_from_db()
        assert receiver.online, key
        for number, rig_channel in enumerate(rig_device(key).channels, start=1):
            channel = tiles(receiver)[number]
            assert channel.name == rig_channel.name, key
            assert channel.frequency_khz == (rig_channel.frequency_khz or None), key  # the System API has none
    # Battery bars follow the rig's percentages: 96 % -> 5 bars GOOD, 44 % -> 3 REPLACE, 23 % -> 2 CRITICAL.
    assert status_of(receivers["ulxd"]) == [S.GOOD, S.GOOD, S.REPLACE, S.CRITICAL]
    lead = tiles(receivers["ulxd"])[1].transmitter
    assert lead.present and lead.battery_bars == 5 and lead.battery_percent == 96 and lead.model == "ULXD2"
    assert lead.rf_percent is not None and lead.antennas
    assert lead.rf_antennas == ""  # ULX-D reports one RF figure, not one per antenna
    romeo = tiles(receivers["ad"])[1].transmitter
    assert romeo.quality is not None  # Axient reports quality
    levels = [int(v) for v in romeo.rf_antennas.split(",")]  # and the RF level of each antenna
    assert len(levels) == 2 and max(levels) == romeo.rf_percent
    assert status_of(receivers["psm"]) == [S.GOOD, S.GOOD]  # IEM transmitter answering
    assert status_of(receivers["slxd"]) == [S.GOOD, S.REPLACE]
    assert all(c["meter_rate"] == 0 for c in qlxd["channels"]), "metering left on"


def test_pack_switched_off_shows_previous_state_and_recovers(small_rig):
    sim, receivers = small_rig
    run_poll_cycle()
    sim.pack_off("ulxd", 2)
    run_poll_cycle()
    channel = tiles(receivers["ulxd"])[2]
    assert channel.status == S.PREV_GOOD
    assert channel.transmitter.last_battery_bars == 4 and not channel.transmitter.present
    sim.pack_on("ulxd", 2)
    run_poll_cycle()
    assert tiles(receivers["ulxd"])[2].status == S.GOOD


def test_dead_receiver_goes_offline_without_delaying_the_others_and_recovers(small_rig, settings):
    sim, receivers = small_rig
    run_poll_cycle()
    sim.power_off("ad")
    version = BoardService.version()
    first = run_poll_cycle()
    ad_statuses = [S.GOOD, S.GOOD, S.CRITICAL, S.CRITICAL]  # 88 %, 63 %, 38 %, 15 %
    assert first.failed == 1 and status_of(receivers["ad"]) == ad_statuses
    run_poll_cycle()
    assert status_of(receivers["ad"]) == [S.RX_COM_ERROR] * 4
    assert BoardService.version() != version
    assert status_of(receivers["ulxd"]) == [S.GOOD, S.GOOD, S.REPLACE, S.CRITICAL]
    sim.power_on("ad")
    DeviceService.request_poll(receivers=[receivers["ad"]])  # skip the back-off wait
    run_poll_cycle()
    assert status_of(receivers["ad"]) == ad_statuses
    assert Receiver.objects.get(pk=receivers["ad"].pk).online


def test_receiver_that_hangs_is_cut_off_by_its_timeout_while_others_are_read(small_rig):
    sim, receivers = small_rig
    run_poll_cycle()
    sim.set_fault("ad", "stop_answering")
    sim.set_name("ulxd", 1, "Lead 2")
    summary = run_poll_cycle()
    assert summary.failed == 1
    assert tiles(receivers["ulxd"])[1].name == "Lead 2"
    assert "sent nothing" in receivers["ad"].connection.__class__.objects.get(receiver=receivers["ad"]).last_error


def test_slxd_with_third_party_control_disabled_says_what_to_check(fast_polls):
    sim = start_simulator(["slxd"])
    try:
        receiver = receivers_for(sim, ["slxd"])["slxd"]
        sim.set_fault("slxd", "third_party_disabled")
        run_poll_cycle()
        run_poll_cycle()
    finally:
        sim.stop()
    receiver.refresh_from_db()
    assert status_of(receiver) == [S.RX_COM_ERROR, S.RX_COM_ERROR]
    assert "third-party control" in receiver.connection.last_error


def test_garbage_on_the_wire_does_not_lose_the_reading(small_rig):
    sim, receivers = small_rig
    sim.set_fault("ulxd", "garbage")
    for _ in range(3):
        run_poll_cycle()
    receiver = Receiver.objects.get(pk=receivers["ulxd"].pk)
    assert receiver.online
    assert [c.name for c in tiles(receiver).values()] == [c.name for c in rig_device("ulxd").channels]


def test_refused_connection_is_recorded_with_its_address(small_rig):
    sim, receivers = small_rig
    sim.set_fault("ad", "refuse")
    run_poll_cycle()
    conn = Receiver.objects.get(pk=receivers["ad"].pk).connection
    assert conn.consecutive_failures == 1 and sim.address("ad")[0] in conn.last_error


def test_a_broken_cache_costs_the_poll_cycle_nothing(small_rig, settings, tmp_path):
    """The embedded default's cache folder unusable: every reading is still stored and screens told."""
    _sim, receivers = small_rig
    blocked = tmp_path / "cache"
    blocked.write_text("not a directory")
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": str(blocked)}
    }
    version = BoardService.version()
    summary = run_poll_cycle()
    assert summary.polled == 2 and summary.failed == 0
    assert all(Receiver.objects.get(pk=r.pk).online for r in receivers.values())
    assert [c.name for c in tiles(receivers["ad"]).values()] == [c.name for c in rig_device("ad").channels]
    assert BoardService.version() != version and BoardService.staleness() == ""


def test_poller_state_survives_the_cache_being_culled(small_rig):
    """Whatever the cache drops (a full file cache culls a third of its entries), the poller keeps its state."""
    run_poll_cycle()
    store = coordination.store()
    assert store.acquire(LEASE_PREFIX + "1", "a-holder", 60)
    version, beat = BoardService.version(), BoardService.heartbeat()
    drop_cache_entries()
    assert store.get(LEASE_PREFIX + "1") == "a-holder"
    assert BoardService.version() == version and BoardService.heartbeat() == beat
    assert BoardService.staleness() == ""


def test_watchdog_queues_shifts_for_a_consumer_whose_holder_nobody_drives(small_rig, monkeypatch):
    from huey.contrib.djhuey import HUEY

    from tasks import links

    queued = HUEY.pending_count()
    monkeypatch.setattr(links, "_started_at", time.monotonic())
    links.links_watchdog.call_local()  # a consumer that just queued its first shift: left alone
    assert HUEY.pending_count() == queued
    monkeypatch.setattr(links, "_started_at", time.monotonic() - 3600)
    links.links_watchdog.call_local()  # nobody drove a holder here for an hour: a new chain of shifts
    assert HUEY.pending_count() == queued + 1
    HUEY.flush()


def test_poll_command_checks_the_rack_and_fails_when_a_receiver_does_not_answer(small_rig):
    from io import StringIO

    from django.core.management import CommandError, call_command

    sim, receivers = small_rig
    out = StringIO()
    call_command("poll", stdout=out)
    text = out.getvalue()
    assert f"ok      {receivers['ad'].name}" in text and f"ok      {receivers['ulxd'].name}" in text
    assert "4 channels, 4 transmitters on" in text and "2 polled, 0 failed" in text
    sim.power_off("ad")
    out = StringIO()
    with pytest.raises(CommandError, match="1 receiver"):
        call_command("poll", stdout=out)
    assert f"FAILED  {receivers['ad'].name} ({receivers['ad'].address}): " in out.getvalue()
    assert "connection refused" in out.getvalue()
