"""Live receiver links over real loopback sockets: simulator -> link -> holder -> services -> models.

A holder is driven from a thread here, as a Huey shift drives it in a consumer (tests/test_worker.py
runs real consumers). The simulator records every connection it accepts, which is how these tests see
that a change arrived by push (no new connection) and that a receiver is never connected twice.
"""

import itertools
import time

import pytest

from micboard import coordination
from micboard.models import LINK_POLL, Channel, Receiver
from micboard.services.health import ConnectionHealthService
from micboard.status import ChannelStatus as S
from tasks.links import LEASE_PREFIX
from tests.factories import Driven, receivers_for, start_simulator, use_fast_polls, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def rig(settings):
    use_fast_polls(settings)
    settings.MICBOARD_LINK_LEASE = 3.0
    keys = ["ulxd", "ad"]
    sim = start_simulator(keys)
    holders: list[Driven] = []

    def holder(owner=None) -> Driven:
        driven = Driven(owner)
        holders.append(driven)
        return driven

    yield sim, receivers_for(sim, keys), holder
    for driven in holders:
        driven.stop()
    sim.stop()


def channel(receiver, number):
    return Channel.objects.select_related("transmitter").get(receiver=receiver, number=number)


def statuses(receiver):
    return [c.status for c in Channel.objects.filter(receiver=receiver).order_by("number")]


def online(receiver):
    return Receiver.objects.get(pk=receiver.pk).online


def open_sessions(sim, key):
    return [s for s in sim.device(key).sessions if s[1] is None]


def test_a_reported_change_reaches_the_model_without_a_new_connection(rig):
    sim, receivers, holder = rig
    holder()
    wait_for(lambda: statuses(receivers["ulxd"]) == [S.GOOD, S.GOOD, S.REPLACE, S.CRITICAL], 5, "read the rig")
    connections = sim.device("ulxd").stats["connections"]
    sim.set_name("ulxd", 1, "NEW LEAD")
    started = time.monotonic()
    wait_for(lambda: channel(receivers["ulxd"], 1).name == "NEW LEAD", 2, "show the renamed channel")
    pushed_in = time.monotonic() - started
    sim.pack_off("ulxd", 2)
    wait_for(lambda: channel(receivers["ulxd"], 2).status == S.PREV_GOOD, 2, "show the pack switched off")
    assert sim.device("ulxd").stats["connections"] == connections, "the change came by a new connection"
    assert len(open_sessions(sim, "ulxd")) == 1
    assert pushed_in < 1.0, f"a REPORT took {pushed_in:.2f} s to reach the database"


def test_meters_follow_the_sample_stream(rig):
    sim, receivers, holder = rig
    holder()
    wait_for(lambda: channel(receivers["ad"], 1).transmitter.rf_percent is not None, 5, "meter the Axient")
    sim.peak("ad", 1)
    wait_for(lambda: channel(receivers["ad"], 1).transmitter.last_peak_at is not None, 2, "latch the peak")


def test_a_dead_receiver_shows_rx_com_error_within_three_seconds_and_comes_back_by_itself(rig):
    sim, receivers, holder = rig
    holder()
    wait_for(lambda: online(receivers["ad"]), 5, "bring the Axient online")
    sim.power_off("ad")
    started = time.monotonic()
    wait_for(lambda: statuses(receivers["ad"]) == [S.RX_COM_ERROR] * 4, 3, "show the receiver offline")
    assert time.monotonic() - started < 3
    assert online(receivers["ulxd"]), "one receiver's loss cost another its link"
    wait_for(lambda: ConnectionHealthService.health_summary() == (1, 2), 2, "count it in the health header")
    sim.power_on("ad")
    wait_for(lambda: online(receivers["ad"]) and S.RX_COM_ERROR not in statuses(receivers["ad"]), 8, "recover")


def test_a_silent_link_is_detected_within_three_seconds(rig):
    sim, receivers, holder = rig
    holder()
    wait_for(lambda: online(receivers["ulxd"]), 5, "bring the ULX-D online")
    sim.set_fault("ulxd", "stop_answering")  # connection stays up, nothing more is sent
    started = time.monotonic()
    wait_for(lambda: not online(receivers["ulxd"]), 3.5, "notice the silence")
    assert time.monotonic() - started <= 3.2
    assert statuses(receivers["ulxd"]) == [S.RX_COM_ERROR] * 4
    sim.set_fault("ulxd", None)
    wait_for(lambda: online(receivers["ulxd"]), 8, "recover once the receiver talks again")


def test_a_link_dropped_by_the_device_reconnects_without_going_offline(rig):
    sim, receivers, holder = rig
    holder()
    wait_for(lambda: online(receivers["ulxd"]) and open_sessions(sim, "ulxd"), 5, "link the ULX-D")
    sim.set_fault("ulxd", "drop_mid_frame")  # the next frame is cut and the connection closed
    wait_for(lambda: not open_sessions(sim, "ulxd"), 3, "drop the link")
    sim.set_fault("ulxd", None)
    wait_for(lambda: open_sessions(sim, "ulxd"), 3, "reconnect")
    sim.set_name("ulxd", 3, "AFTER")
    wait_for(lambda: channel(receivers["ulxd"], 3).name == "AFTER", 3, "follow the new link")
    assert online(receivers["ulxd"])


def test_closing_the_holder_switches_metering_off_and_frees_the_leases(rig):
    sim, receivers, holder = rig
    driven = holder()
    wait_for(lambda: all(online(r) for r in receivers.values()), 5, "link both receivers")
    assert any(c["meter_rate"] for c in sim.snapshot("ulxd")["channels"])
    driven.stop()
    assert all(c["meter_rate"] == 0 for key in receivers for c in sim.snapshot(key)["channels"])
    assert all(not open_sessions(sim, key) for key in receivers)
    store = coordination.store()
    assert store.get_many([LEASE_PREFIX + str(r.pk) for r in receivers.values()]) == [None, None]


def test_two_holders_share_the_receivers_and_never_connect_twice(rig):
    sim, receivers, holder = rig
    first = holder()
    wait_for(lambda: len(first.holder.held) == 2, 5, "hold both receivers")
    second = holder()
    wait_for(lambda: len(first.holder.held) == 1 and len(second.holder.held) == 1, 6, "hand one over")
    for key in receivers:
        wait_for(lambda k=key: len(open_sessions(sim, k)) == 1, 3, f"link {key}")
        sessions = sorted(sim.device(key).sessions)
        for earlier, later in itertools.pairwise(sessions):
            assert earlier[1] is not None and earlier[1] <= later[0], f"{key} had two connections at once"


def test_a_hung_holders_receivers_are_taken_over_within_a_lease(rig, settings):
    sim, receivers, holder = rig
    first = holder(owner="elsewhere:1:1:hung")  # another machine: its process cannot be checked for life
    wait_for(lambda: len(first.holder.held) == 2, 5, "hold both receivers")
    second = holder()
    wait_for(lambda: first.holder.held and second.holder.held, 6, "share the receivers")
    first.stop(close=False)  # hung: no more renewals; it closes its links after half a lease
    hung_at = time.monotonic()
    wait_for(lambda: len(second.holder.held) == 2, settings.MICBOARD_LINK_LEASE + 2, "take the receivers over")
    assert time.monotonic() - hung_at <= settings.MICBOARD_LINK_LEASE + 1.5
    for key in receivers:
        sessions = sorted(sim.device(key).sessions)
        for earlier, later in itertools.pairwise(sessions):
            assert earlier[1] is not None and earlier[1] <= later[0], f"{key} had two connections at once"
    wait_for(lambda: all(online(r) for r in receivers.values()), 3, "keep both receivers online")
    first.holder.close()


def test_a_lost_lease_stops_the_link_and_is_claimed_back_when_free(rig):
    sim, receivers, holder = rig
    driven = holder()
    wait_for(lambda: len(driven.holder.held) == 2, 5, "hold both receivers")
    store = coordination.store()
    key = LEASE_PREFIX + str(receivers["ad"].pk)
    store.set(key, "elsewhere:1:1:thief")  # another holder took the lease
    wait_for(lambda: not open_sessions(sim, "ad"), 5, "close the link whose lease was lost")
    assert receivers["ad"].pk not in driven.holder.held
    store.delete(key)
    wait_for(lambda: open_sessions(sim, "ad") and receivers["ad"].pk in driven.holder.held, 3, "claim it back")


def test_a_receiver_set_to_connect_per_poll_is_polled_and_not_held_open(rig):
    sim, receivers, holder = rig
    Receiver.objects.filter(pk=receivers["ad"].pk).update(link=LINK_POLL)
    holder()
    wait_for(lambda: online(receivers["ad"]), 5, "poll the Axient")
    sim.set_name("ad", 2, "POLLED")
    wait_for(lambda: channel(receivers["ad"], 2).name == "POLLED", 3, "poll the new name")
    assert sim.device("ad").stats["connections"] >= 2  # a connection per poll
    wait_for(lambda: not open_sessions(sim, "ad"), 3, "close between polls")


def test_a_pack_out_of_rf_range_shows_its_rf_at_the_floor_and_comes_back(rig):
    sim, receivers, holder = rig
    holder()
    lead = lambda: channel(receivers["ulxd"], 1).transmitter  # noqa: E731
    wait_for(lambda: (lead().rf_percent or 0) > 50, 5, "meter the pack in range")
    sim.rf_loss("ulxd", 1)
    wait_for(lambda: lead().rf_percent == 0 and lead().present, 2, "show the RF loss (pack still on)")
    sim.rf_loss("ulxd", 1, on=False)
    wait_for(lambda: (lead().rf_percent or 0) > 50, 2, "show the pack back in range")


@pytest.mark.parametrize("key", ["ulxd", "qlxd", "slxd", "ad4d", "psm"])
def test_every_family_is_followed_by_push_and_left_unmetered(settings, key):
    """Each Shure family over a live link: its REPORT of a new name arrives without a poll; closing stops metering."""
    use_fast_polls(settings)
    sim = start_simulator([key])
    receiver = receivers_for(sim, [key])[key]
    driven = Driven()
    try:
        wait_for(lambda: online(receiver), 5, f"link the {key}")
        wait_for(lambda: any(c["meter_rate"] for c in sim.snapshot(key)["channels"]), 3, "meter")
        sim.set_name(key, 1, "PUSHED")
        wait_for(lambda: channel(receiver, 1).name == "PUSHED", 2, "follow the REPORT")
        assert sim.device(key).stats["connections"] == 1
        driven.stop()
        assert all(c["meter_rate"] == 0 for c in sim.snapshot(key)["channels"]), "metering left on"
    finally:
        driven.stop()
        sim.stop()
