"""Storing poll results: one receiver's odd data never costs another receiver its reading.

Device strings are cut to their columns, whatever a receiver sends; a value the database still refuses
costs only its own receiver's reading (recorded as a failed poll), on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
from django.db import connection
from django.utils import timezone

from micboard.models import Channel, RealTimeConnection, Receiver, Transmitter
from micboard.services import DeviceService, PollOutcome
from micboard.simulators.rig import rig_device
from tasks.polling import run_poll_cycle
from tests.factories import make_receiver, pack_on, reading, receivers_for, start_simulator, use_fast_polls

pytestmark = pytest.mark.django_db


def column(model, field: str) -> int:
    return model._meta.get_field(field).max_length


def names(receiver) -> list[str]:
    return list(Channel.objects.filter(receiver=receiver).order_by("number").values_list("name", flat=True))


FIRMWARE = "2.7.6.0-engineering-build-for-the-regional-tour-2026"  # 52 characters
RF_BAND = "G57+ (470-616 MHz, Europe)"  # 26
TX_MODEL = "ULXD2-B58-LONG-SERIES-NAME-WITH-OPTIONS-X"  # 41, one word as TX_TYPE / TX_MODEL are sent
CHAN_NAME = "Lead vocal - stage left riser, spare pack in the rack drawer 2 of 3"  # 67


# Per family: (device key, property overrides as (channel, property, raw wire value)).
OVERLONG = {
    "ulxd": [
        (0, "FW_VER", "{" + FIRMWARE + "}"),
        (1, "TX_TYPE", TX_MODEL),
        (2, "CHAN_NAME", "{" + CHAN_NAME + "}"),
        (3, "CHAN_NAME", "{Bass\x00\x07DI}"),  # control characters; PostgreSQL cannot store a NUL at all
    ],
    "ad": [
        (0, "FW_VER", "{" + FIRMWARE + "}"),
        (0, "RF_BAND", "{" + RF_BAND + "}"),
        (1, "TX_MODEL", TX_MODEL),
        (2, "CHAN_NAME", "{" + CHAN_NAME + "}"),
        (3, "CHAN_NAME", "{Bass\x00\x07DI}"),
    ],
}


@pytest.mark.parametrize("odd", ["ulxd", "ad"])
def test_overlong_device_strings_are_cut_to_their_columns_and_every_reading_is_stored(settings, odd):
    use_fast_polls(settings)
    keys = ["ulxd", "ad"]
    sim = start_simulator(keys)
    try:
        receivers = receivers_for(sim, keys)
        for channel, prop, value in OVERLONG[odd]:
            sim.override(odd, prop, value, channel=channel)
        summary = run_poll_cycle()
    finally:
        sim.stop()
    assert summary.failed == 0
    normal = next(k for k in keys if k != odd)
    assert names(receivers[normal]) == [c.name for c in rig_device(normal).channels]

    receiver = Receiver.objects.get(pk=receivers[odd].pk)
    assert receiver.online
    assert receiver.firmware == FIRMWARE[: column(Receiver, "firmware")]
    if odd == "ad":
        assert receiver.rf_band == RF_BAND[: column(Receiver, "rf_band")]
    stored = names(receiver)
    assert stored[1] == CHAN_NAME[: column(Channel, "name")]
    assert stored[2] == "BassDI"  # control characters dropped by the driver
    assert stored[3] == rig_device(odd).channels[3].name
    tx = Transmitter.objects.get(channel__receiver=receiver, channel__number=1)
    assert tx.present and tx.model == TX_MODEL[: column(Transmitter, "model")]


def test_every_device_string_is_cut_to_its_column():
    receiver = make_receiver(model="ULXD4")
    long = pack_on(1, name="N" * 100, antennas="AIAIAIAIAIAIAIAIAI")
    long = replace(long, group_channel="12,34" * 8, tx_model="T" * 50, battery_type="LITHIUM-ION-POLYMER")
    long = replace(long, battery_runtime_state="calculating, please wait a moment")
    odd = replace(reading(long), firmware="F" * 50, device_id="D" * 100, rf_band="B" * 30)
    assert DeviceService.record_poll_results(outcomes=[PollOutcome(receiver.pk, reading=odd)])

    receiver.refresh_from_db()
    assert (receiver.firmware, receiver.device_id, receiver.rf_band) == (
        "F" * column(Receiver, "firmware"),
        "D" * column(Receiver, "device_id"),
        "B" * column(Receiver, "rf_band"),
    )
    channel = receiver.channels.get()
    assert channel.name == "N" * column(Channel, "name")
    assert channel.group_channel == ("12,34" * 8)[: column(Channel, "group_channel")]
    tx = channel.transmitter
    assert tx.model == "T" * column(Transmitter, "model")
    assert tx.battery_type == "LITHIUM-ION-POLYMER"[: column(Transmitter, "battery_type")]
    assert tx.antennas == "AIAIAIAIAIAIAIAIAI"[: column(Transmitter, "antennas")]
    assert tx.runtime_state == "calculating, please wait a moment"[: column(Transmitter, "runtime_state")]


def record_two(bad_channel):
    """Rack A's reading is fine, Rack B's carries ``bad_channel``; both in one batch, as a poll cycle writes."""
    good, bad = make_receiver(name="Rack A", model="ULXD4"), make_receiver(name="Rack B", model="ULXD4")
    changed = DeviceService.record_poll_results(
        outcomes=[
            PollOutcome(good.pk, reading=reading(pack_on(1, name="Lead"))),
            PollOutcome(bad.pk, reading=reading(bad_channel)),
        ],
        now=timezone.now(),
    )
    return good, bad, changed


def assert_only_the_bad_one_failed(good, bad, changed, caplog):
    assert changed
    good.refresh_from_db()
    assert good.online and names(good) == ["Lead"]
    assert RealTimeConnection.objects.get(receiver=good).consecutive_failures == 0
    bad_link = RealTimeConnection.objects.get(receiver=bad)
    assert bad_link.consecutive_failures == 1 and bad_link.last_success_at is None
    assert "reading could not be stored" in bad_link.last_error
    assert names(bad) == [""]  # nothing of its reading was written
    assert any(r.levelno == logging.ERROR and str(bad.pk) in r.getMessage() for r in caplog.records)


def test_a_reading_the_database_refuses_costs_only_its_own_receiver(caplog):
    # A negative battery breaks the CHECK constraint of a positive column on SQLite and PostgreSQL alike.
    good, bad, changed = record_two(pack_on(1, name="Bass", percent=-1))
    assert_only_the_bad_one_failed(good, bad, changed, caplog)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="values only PostgreSQL refuses")
@pytest.mark.parametrize(
    "bad_channel",
    [
        replace(pack_on(1, name="Bass"), tx_offset_db=40000),  # out of range for a smallint column
        pack_on(1, name="Bass\x00DI"),  # PostgreSQL text cannot hold NUL, whatever its length
    ],
    ids=["smallint-out-of-range", "nul-character"],
)
def test_postgresql_refusing_one_reading_keeps_the_others(bad_channel, caplog):
    good, bad, changed = record_two(bad_channel)
    assert_only_the_bad_one_failed(good, bad, changed, caplog)
