"""Sennheiser SSC v1: the codec on protocols.md's example messages, then the driver and link against the simulator.

Parser units need no network. Driver tests run :func:`micboard.drivers.ssc.poll` and :class:`SscLink` over real
loopback UDP against :mod:`micboard.simulators.ssc` (ephemeral ports), with the simulator's dynamics frozen so
values can be asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time

import pytest

from micboard.drivers.ssc import SscLink, poll, probe
from micboard.drivers.ssc_spec import model_from_product, read_groups, ssc_model
from micboard.drivers.ssc_wire import (
    SscState,
    decode,
    encode,
    error_entries,
    get_request,
    peak_level,
    subscribe_request,
)
from micboard.exceptions import (
    ConnectionTimeoutError,
    DeviceSilentError,
    DriverError,
    LinkDroppedError,
    ProtocolError,
)
from micboard.models import Channel, DiscoveryTask, Receiver
from micboard.services import DiscoveryService
from micboard.simulators.announce import Announcer, AnnouncerThread, announcements_for
from micboard.simulators.engine import SimulatorThread
from micboard.simulators.rig import RigChannel, RigDevice
from micboard.simulators.ssc import SimulatedSscDevice
from micboard.status import ChannelStatus as S
from tasks.discovery import ScanPlan, scan
from tests.factories import Driven, receivers_for, start_rig_at, start_simulator, use_fast_polls, wait_for

EWDX2 = ssc_model("EM2")


def state_of(model: str, *datagrams: str) -> SscState:
    state = SscState(ssc_model(model))
    for datagram in datagrams:
        state.apply(decode(datagram.encode()))
    return state


# --- codec: protocols.md §5.2-§5.4 examples -----------------------------------------------------------


def test_a_read_reply_fills_the_leaf_it_names():
    request = get_request([("rx1", "name")], xid=17)
    assert json.loads(encode(request)) == {"rx1": {"name": None}, "osc": {"xid": 17}}
    state = state_of("EM2", '{"rx1":{"name":"Vocal 1"}}')
    assert state.reading().channels[1].name == "Vocal 1"


def test_repeated_top_level_keys_merge_instead_of_the_last_one_winning():
    message = decode(b'{"osc":{"xid":17},"osc":{"state":{"subscribe":[]}},"rx1":{"name":"A"},"rx1":{"mute":true}}')
    assert message == {"osc": {"xid": 17, "state": {"subscribe": []}}, "rx1": {"name": "A", "mute": True}}


@pytest.mark.parametrize(
    "datagram",
    [b'{"rx1":{"name":"Vocal 1"}', b"[1,2]", b'{"rx1":NaN}', b"\xff\xfe{}", b"", b"{" * 40 + b"}" * 40],
)
def test_malformed_datagrams_are_refused_with_a_protocol_error(datagram):
    with pytest.raises(ProtocolError):
        decode(datagram)


def test_a_subscription_request_has_the_documented_shape():
    request = subscribe_request([("mates", "tx1", "battery", "gauge")], xid=3, lifetime=10, max_ms=250)
    entry = request["osc"]["state"]["subscribe"][0]
    assert entry == {"#": {"lifetime": 10, "min": 0, "max": 250}, "mates": {"tx1": {"battery": {"gauge": None}}}}
    cancel = subscribe_request([("mates", "tx1", "battery", "gauge")], xid=4, lifetime=10, cancel=True)
    assert cancel["osc"]["state"]["subscribe"][0]["#"] == {"cancel": True}


def test_a_notification_reads_like_a_get_reply_and_gives_bars_from_the_gauge():
    state = state_of("EM2", '{"mates":{"tx1":{"battery":{"gauge":64}}}}')
    ch = state.reading().channels[1]
    assert (ch.battery_percent, ch.battery_bars) == (64, 4)


def test_subscription_terminated_is_collected_for_renewal_with_its_description():
    message = decode(
        b'{"osc":{"error":[{"mates":{"tx1":{"battery":{"gauge":[310]}}}},{"desc":"subscription terminates"}]}}'
    )
    [error] = error_entries(message)
    gauge = ("mates", "tx1", "battery", "gauge")
    assert (error.path, error.code, error.desc) == (gauge, 310, "subscription terminates")
    state = SscState(EWDX2)
    state.apply(message)
    assert state.terminated == {("mates", "tx1", "battery", "gauge")}
    assert state.error_replies == 0  # a renewal, not a fault


def test_424_on_the_transmitter_means_no_transmitter_and_its_battery_is_unknown():
    state = state_of(
        "EM2",
        '{"mates":{"tx1":{"type":"SKM","battery":{"gauge":80}}},"m":{"rx1":{"rsqi":90}}}',
        '{"osc":{"error":[{"mates":{"tx1":{"type":[424],"battery":{"gauge":[424,{"desc":"failed dependency"}]}}}}]}}',
    )
    ch = state.reading().channels[1]
    assert ch.tx_present is False
    assert ch.battery_percent is None and ch.battery_bars is None
    assert state.error_replies == 0
    state.apply(decode(b'{"mates":{"tx1":{"type":"SKM","battery":{"gauge":79}}}}'))  # switched on again
    ch = state.reading().channels[1]
    assert ch.tx_present is True and ch.battery_bars == 4


def test_unknown_address_errors_count_but_leave_the_rest_of_the_reading():
    state = state_of("EM2", '{"rx1":{"name":"LEAD"},"osc":{"error":[{"rx1":{"frequency":[404]}}]}}')
    assert state.reading().channels[1].name == "LEAD"
    assert state.reading().channels[1].frequency_khz is None
    assert state.reading().error_replies == 1


@pytest.mark.parametrize(
    ("signal", "present"),
    [
        ('{"rx1":{"warnings":["NoLink"]}}', False),
        ('{"mates":{"active":[]}}', False),
        ('{"mates":{"active":["mates/tx2"]}}', False),
        ('{"m":{"rx1":{"rsqi":0}}}', False),
        ('{"mates":{"active":["mates/tx1"]}}', True),
        ('{"m":{"rx1":{"rsqi":72}}}', True),
        ('{"rx1":{"warnings":[]}}', None),
    ],
)
def test_transmitter_presence_on_ewdx(signal, present):
    assert state_of("EM2", signal).reading().channels[1].tx_present is present


def test_ewdx_meters_frequency_names_and_mutes_are_normalised():
    state = state_of(
        "EM4-DANTE",
        '{"device":{"identity":{"product":"EW-DX EM 4 Dante","serial":"1234567890","version":"4.1.0"},'
        '"name":"STAGE-L","frequency_code":"Q1-9"}}',
        '{"rx3":{"name":"VOX 3","frequency":550025,"mute":true,"warnings":["AfPeak","Aes256Error"]}}',
        '{"mates":{"tx3":{"type":"SKM","mute":false,"warnings":[],'
        '"battery":{"gauge":37,"lifetime":245,"type":"Primary Cell"}}}}',
        '{"m":{"rx3":{"rssi":-62.5,"rsqi":88,"divi":2,"af":-24.0}}}',
    )
    reading = state.reading()
    assert (reading.device_id, reading.model, reading.firmware, reading.rf_band) == (
        "1234567890",
        "EW-DX EM 4 Dante",
        "4.1.0",
        "Q1-9",
    )
    ch = reading.channels[3]
    assert (ch.name, ch.frequency_khz, ch.tx_model) == ("VOX 3", 550025, "SKM")
    assert (ch.audio_muted, ch.tx_muted) == (True, False)
    assert (ch.battery_percent, ch.battery_bars, ch.battery_runtime_min, ch.battery_type) == (37, 2, 245, "AA")
    assert (ch.rf_dbm, ch.rf_percent, ch.antennas, ch.quality) == (-62.5, 62, "IA", 5)
    assert (ch.audio_dbfs, ch.audio_percent, ch.audio_peak, ch.metered) == (-24.0, 76, True, True)
    assert not reading.channels[1].metered and reading.channels[1].tx_present is None


def test_a_clip_between_two_readings_shows_once_and_the_peak_level_is_per_receiver():
    state = state_of("EM2", '{"m":{"rx1":{"af":0.0}}}', '{"m":{"rx1":{"af":-30.0}}}')
    assert state.reading().channels[1].audio_peak is True  # the clip came and went before the reading
    assert state.reading().channels[1].audio_peak is False  # reported once
    quiet = SscState(EWDX2, peak_dbfs=peak_level({"peak_dbfs": "-10"}))
    quiet.apply(decode(b'{"m":{"rx2":{"af":-8.5}}}'))
    assert quiet.reading().channels[2].audio_peak is True
    with pytest.raises(DriverError, match="peak_dbfs"):
        peak_level({"peak_dbfs": "loud"})


def test_ewdx_floor_values_of_a_switched_off_transmitter_are_not_a_peak():
    ch = state_of("EM2", '{"m":{"rx2":{"rssi":-105.0,"rsqi":0,"divi":0,"af":-138.0}}}').reading().channels[2]
    assert (ch.tx_present, ch.rf_percent, ch.antennas, ch.audio_percent, ch.audio_peak) == (False, 0, "XX", 0, False)


def test_speechline_rack_reads_flat_battery_leaves_with_runtime_in_seconds():
    ch = (
        state_of(
            "SL-RACK-DW",
            '{"mates":{"active":["tx1"],"tx1":{"bat_gauge":55,"bat_bars":3,"bat_lifetime":16200,"bat_type":1,'
            '"device_type":0,"warnings":"Low Bat"}},"rx1":{"name":"LECTERN","mute_state":true,"rf_quality":81}}',
        )
        .reading()
        .channels[1]
    )
    assert (ch.tx_present, ch.tx_model, ch.name, ch.tx_muted) == (True, "Handheld", "LECTERN", True)
    assert (ch.battery_percent, ch.battery_bars, ch.battery_runtime_min, ch.battery_type) == (55, 3, 270, "LION")
    assert (ch.rf_percent, ch.rf_dbm, ch.quality, ch.metered, ch.frequency_khz) == (81, None, 5, True, None)
    off = state_of("SL-RACK-DW", '{"mates":{"active":[]}}').reading().channels[1]
    assert off.tx_present is False


def test_speechline_mcr_lists_mates_per_channel_and_warns_no_link():
    state = state_of(
        "SL-MCR4-DW",
        '{"rx2":{"mates":["mates/tx2"],"warnings":[]},"rx3":{"mates":[],"warnings":["No Link"]}}',
    )
    reading = state.reading()
    assert (reading.channels[2].tx_present, reading.channels[3].tx_present) == (True, False)
    assert reading.family == "speechline"


def test_hostile_values_never_become_readings():
    ch = (
        state_of(
            "EM2",
            '{"rx1":{"name":"A\\u0000B\\u001b","frequency":true},"m":{"rx1":{"rssi":"loud","af":1e308,"divi":7}},'
            '"mates":{"tx1":{"battery":{"gauge":250,"lifetime":-5}}},"junk":{"a":{"b":1}}}',
        )
        .reading()
        .channels[1]
    )
    assert ch.name == "AB"
    assert (ch.frequency_khz, ch.rf_dbm, ch.audio_dbfs, ch.antennas) == (None, None, None, None)
    assert (ch.battery_percent, ch.battery_runtime_min) == (None, None)


def test_product_strings_name_their_models_and_reads_stay_small():
    assert model_from_product("EW-DX EM 2 Dante").model == "EM2-DANTE"
    assert model_from_product("EWDX EM4").model == "EM4-DANTE"
    assert model_from_product("SL MCR 4 DW").model == "SL-MCR4-DW"
    assert model_from_product("SL Rack Receiver DW").model == "SL-RACK-DW"
    assert model_from_product("Digital 6000") is None
    assert all(len(group) <= 5 for group in read_groups(ssc_model("EM4-DANTE")))


# --- the driver against the simulator, over real loopback UDP -------------------------------------------

EWDX_RIG = RigDevice(
    key="em4",
    name="Panel EM 4",
    model="EM4-DANTE",
    device_id="1922000417",
    octet=21,
    location="FOH",
    channels=(
        RigChannel("HOST", "Dana", "SKM", "LION", 84, 518200),
        RigChannel("GUEST 1", "Ravi", "SK", "ALKA", 47, 519350),
        RigChannel("GUEST 2", "Kate", "SK", "LION", 12, 520475),
        RigChannel("GUEST 3", "Tom", "SKM", "LION", 66, 521600),
    ),
    driver="sennheiser_ssc",
)
RACK_RIG = RigDevice(
    key="slrack",
    name="Lectern rack",
    model="SL-RACK-DW",
    device_id="SL0042",
    octet=21,
    location="FOH",
    channels=(RigChannel("Lectern", "Speaker", "SL HH DW", "LION", 58),),
    driver="sennheiser_ssc",
)
MCR_RIG = RigDevice(
    key="slmcr",
    name="Boardroom MCR",
    model="SL-MCR4-DW",
    device_id="SL0077",
    octet=21,
    location="FOH",
    channels=(RigChannel("Chair", "Chair", "SL BL DW", "LION", 91), RigChannel("Seat_2", "Guest", "SL TS DW")),
    driver="sennheiser_ssc",
)


@pytest.fixture
def sim():
    devices = [
        SimulatedSscDevice(rig, host="127.0.0.1", port=0, dynamics=False, calculating_seconds=0, seed=7)
        for rig in (EWDX_RIG, RACK_RIG, MCR_RIG)
    ]
    thread = SimulatorThread(devices).start()
    yield thread
    thread.stop()


def read(sim, key="em4", model=None, timeout=2.0):
    host, port = sim.address(key)
    rig = {"em4": EWDX_RIG, "slrack": RACK_RIG, "slmcr": MCR_RIG}[key]
    return asyncio.run(poll(host, port, model=model or rig.model, timeout=timeout, meter_rate_ms=100))


async def until(predicate, timeout: float, what: str):
    """``tests.factories.wait_for`` for code running inside the event loop."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"did not {what} within {timeout} s")


class Raw:
    """A bare UDP client for the simulator's side of the protocol (what any SSC client would send)."""

    def __init__(self, address):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(1.0)
        self.sock.connect(address)

    def ask(self, data: bytes) -> list[bytes]:
        self.sock.send(data)
        replies = [self.sock.recv(65535)]
        self.sock.settimeout(0.15)
        with contextlib.suppress(TimeoutError):
            while True:
                replies.append(self.sock.recv(65535))
        self.sock.settimeout(1.0)
        return replies

    def close(self):
        self.sock.close()


def test_a_poll_reads_every_reading_of_an_ew_dx_em_4(sim):
    reading = read(sim)
    assert (reading.family, reading.device_id, reading.model, reading.rf_band) == (
        "ewdx",
        "1922000417",
        "EW-DX EM 4 Dante",
        "Q1-9",
    )
    assert reading.firmware and reading.latency_ms is not None and reading.error_replies == 0
    host = reading.channels[1]
    assert (host.name, host.frequency_khz, host.tx_present, host.tx_model) == ("HOST", 518200, True, "SKM")
    assert (host.battery_percent, host.battery_bars, host.battery_type) == (84, 5, "LION")
    assert host.battery_runtime_min == 403  # 84 % of an 8-hour pack
    assert (host.rf_dbm, host.rf_percent, host.antennas, host.quality) == (-50.0, 83, "AI", 5)
    assert (host.audio_dbfs, host.audio_percent, host.audio_peak, host.metered) == (-24.0, 76, False, True)
    assert (host.audio_muted, host.tx_muted) == (False, False)
    guest = reading.channels[2]
    assert (guest.battery_type, guest.battery_bars, guest.tx_model) == ("AA", 3, "SK")
    wait_for(lambda: sim.snapshot("em4")["subscribers"] == {}, 1, "cancel the poll's meter subscriptions")


def test_a_switched_off_transmitter_reads_as_absent_with_nothing_made_up(sim):
    sim.pack_off("em4", 2)
    ch = read(sim).channels[2]
    assert ch.tx_present is False
    assert (ch.battery_percent, ch.battery_bars, ch.battery_runtime_min, ch.tx_model) == (None, None, None, None)
    assert (ch.rf_percent, ch.antennas, ch.audio_percent, ch.quality, ch.audio_peak) == (0, "XX", 0, 0, False)
    assert ch.name == "GUEST 1"  # the receiver side is still read
    sim.pack_on("em4", 2)
    assert read(sim).channels[2].tx_present is True


def test_a_pack_out_of_range_loses_its_link(sim):
    sim.rf_loss("em4", 4)
    ch = read(sim).channels[4]
    assert (ch.tx_present, ch.rf_percent) == (False, 0)


def test_peaks_and_mutes_reach_the_reading(sim):
    sim.peak("em4", 3)
    sim.tx_mute("em4", 1)
    reading = read(sim)
    assert reading.channels[3].audio_peak is True
    assert reading.channels[1].tx_muted is True
    assert reading.channels[1].audio_percent == 0  # a muted pack sits at the floor


def test_speechline_receivers_read_their_own_dialects(sim):
    rack = read(sim, "slrack").channels[1]
    assert (rack.name, rack.tx_present, rack.tx_model, rack.battery_percent) == ("Lectern", True, "Handheld", 58)
    assert rack.battery_runtime_min == 278  # bat_lifetime came in seconds
    assert (rack.rf_percent, rack.rf_dbm, rack.frequency_khz, rack.metered) == (100, None, None, True)
    sim.pack_off("slrack", 1)
    assert read(sim, "slrack").channels[1].tx_present is False
    mcr = read(sim, "slmcr")
    assert mcr.model == "SL MCR 4 DW" and mcr.error_replies == 0
    assert (mcr.channels[1].tx_present, mcr.channels[1].tx_model) == (True, "Boundary")
    assert mcr.channels[2].tx_model == "Tablestand"
    assert [mcr.channels[n].tx_present for n in (3, 4)] == [False, False]  # no pack: "No Link"


def test_the_discovery_probe_names_the_model_serial_and_channels(sim):
    host, port = sim.address("em4")
    [found] = asyncio.run(probe(host, port, timeout=1.0))
    assert (found.driver, found.model, found.device_id, found.name, found.firmware) == (
        "sennheiser_ssc",
        "EM4-DANTE",
        "1922000417",
        "Panel EM 4",
        "4.1.0",
    )
    assert found.channels == ((1, "HOST"), (2, "GUEST 1"), (3, "GUEST 2"), (4, "GUEST 3")) and not found.note
    sim.set_fault("em4", "third_party_disabled")  # for a scan, a silent address is an empty one
    with pytest.raises(ConnectionTimeoutError, match="no SSC answer") as silent:
        asyncio.run(probe(host, port, timeout=0.5))
    assert not isinstance(silent.value, DeviceSilentError) and "third-party access" in str(silent.value)


def test_a_receiver_set_to_the_wrong_model_says_so(sim):
    host, port = sim.address("slmcr")
    with pytest.raises(ProtocolError, match=r"says it is SL MCR 4 DW \(SL-MCR4-DW\) but .* set to EM2"):
        asyncio.run(poll(host, port, model="EM2", timeout=2.0))


@pytest.mark.parametrize(
    ("fault", "error", "message", "within"),
    [
        ("refuse", ConnectionTimeoutError, "ICMP port unreachable", 0.5),
        ("silent", DeviceSilentError, "third-party access", 2.3),
        ("stop_answering", DeviceSilentError, "no reply", 2.3),
        ("third_party_disabled", DeviceSilentError, "Legacy", 2.3),
        ("drop_mid_frame", ProtocolError, "none was a valid SSC message", 2.3),
    ],
)
def test_each_fault_fails_the_poll_with_what_to_check_and_clears(sim, fault, error, message, within):
    sim.set_fault("em4", fault)
    started = time.monotonic()
    with pytest.raises(error, match=message):
        read(sim)
    assert time.monotonic() - started < within
    sim.set_fault("em4", None)
    assert read(sim).channels[1].name == "HOST"


def test_garbage_and_slow_replies_still_give_the_whole_reading(sim):
    sim.set_fault("em4", "garbage")
    for _ in range(3):
        assert [c.name for c in read(sim).channels.values()] == ["HOST", "GUEST 1", "GUEST 2", "GUEST 3"]
    assert sim.snapshot("em4")["stats"]["garbage_datagrams"] > 0
    sim.set_fault("em4", "slow")
    reading = read(sim)
    assert reading.latency_ms >= 1400 and reading.channels[4].metered


def test_the_ninth_subscribing_client_is_told_no(sim):
    address = sim.address("em4")
    clients = [Raw(address) for _ in range(8)]
    try:
        for n, client in enumerate(clients):
            client.ask(encode(subscribe_request([("rx1", "name")], xid=n, lifetime=30)))
        assert len(sim.snapshot("em4")["subscribers"]) == 8
        with pytest.raises(ProtocolError, match=r"refused a subscription.*8"):
            read(sim)
    finally:
        for client in clients:
            client.close()


def test_the_simulator_answers_like_the_unit(sim):
    client = Raw(sim.address("em4"))
    try:
        [bad] = client.ask(b'{"rx1":{"name":"NEW"}')  # malformed: refused, nothing executed
        assert json.loads(bad)["osc"]["error"][0]["osc"][0] == 400
        [echo] = client.ask(b'{"rx1":{"name":"vox"},"osc":{"xid":5}}')
        assert json.loads(echo) == {"rx1": {"name": "VOX"}, "osc": {"xid": 5}}
        [refused] = client.ask(b'{"mates":{"tx1":{"type":"SK"}},"rx9":{"name":null},"rx1":{"gain":7},"osc":{"xid":6}}')
        assert refused.count(b'"osc"') == 2  # xid and error in two members, as in the vendor's example
        errors = {(e.path, e.code) for e in error_entries(decode(refused))}
        assert errors == {(("mates", "tx1", "type"), 403), (("rx9",), 404), (("rx1", "gain"), 406)}
        sim.pack_off("em4", 1)
        [off] = client.ask(b'{"mates":{"tx1":{"battery":{"gauge":null}},"active":null},"rx1":{"warnings":null}}')
        message = decode(off)
        assert [(e.path, e.code) for e in error_entries(message)] == [(("mates", "tx1", "battery", "gauge"), 424)]
        assert message["mates"]["active"] == ["mates/tx2", "mates/tx3", "mates/tx4"]
        assert message["rx1"]["warnings"] == ["NoLink"]
    finally:
        client.close()
    assert read(sim).channels[1].name == "VOX"


def test_subscriptions_notify_at_once_then_on_change_and_end_with_310(sim):
    client = Raw(sim.address("em4"))
    try:
        request = subscribe_request([("mates", "tx1", "battery", "gauge")], xid=1, lifetime=1)
        ack, initial = client.ask(encode(request))
        assert decode(ack)["osc"]["state"]["subscribe"][0]["#"] == {"min": 0, "max": 0, "count": 1000, "lifetime": 1}
        assert decode(initial) == {"mates": {"tx1": {"battery": {"gauge": 84}}}}
        sim.set_battery("em4", 1, 61)
        client.sock.settimeout(1.0)
        assert decode(client.sock.recv(65535)) == {"mates": {"tx1": {"battery": {"gauge": 61}}}}
        [ended] = [e for e in error_entries(decode(client.sock.recv(65535)))]
        assert (ended.code, ended.desc) == (310, "subscription terminates")
        assert sim.snapshot("em4")["subscribers"] == {}
    finally:
        client.close()


def run_link(sim, key, scenario, **kwargs):
    """Run an SscLink against ``key`` while ``scenario(link, task)`` plays; return what the link ended with."""
    host, port = sim.address(key)

    async def main():
        link = SscLink(host, port, model=RACK_RIG.model if key == "slrack" else EWDX_RIG.model, **kwargs)
        task = asyncio.create_task(link.run())
        try:
            await scenario(link, task)
        finally:
            task.cancel()
            ended, _ = await asyncio.wait({task}, timeout=3)
        assert ended, "the link went on after it was cancelled"
        return task.exception() if not task.cancelled() else asyncio.CancelledError()

    return asyncio.run(main())


def test_a_link_follows_changes_renews_and_cancels_when_closed(sim):
    async def scenario(link, task):
        reading = await until(link.take, 2, "give a first reading")
        assert reading.channels[2].battery_percent == 47 and link.ready
        await asyncio.to_thread(sim.pack_off, "em4", 2)
        await until(lambda: (r := link.take()) and r.channels[2].tx_present is False, 1, "see the pack go off")
        await asyncio.to_thread(sim.set_name, "em4", 3, "Panel 3")
        await until(lambda: (r := link.take()) and r.channels[3].name == "PANEL 3", 1, "see the new name")
        await until(lambda: link.renewals >= 2, 3, "renew its subscriptions")
        assert not task.done()
        assert len(sim.snapshot("em4")["subscribers"]) == 1

    outcome = run_link(sim, "em4", scenario, meter_rate_ms=250, lifetime=2)
    assert isinstance(outcome, asyncio.CancelledError)
    assert wait_for(lambda: sim.snapshot("em4")["subscribers"] == {}, 1, "cancel its subscriptions")


def test_a_link_subscribes_again_when_the_device_ends_its_subscriptions(sim):
    async def scenario(link, task):
        await until(link.take, 2, "give a first reading")
        await asyncio.to_thread(sim.call, "em4", "end_subscriptions")
        await until(lambda: sim.snapshot("em4")["subscribers"], 1, "subscribe again after 310")
        await asyncio.to_thread(sim.set_battery, "em4", 4, 30)
        await until(lambda: (r := link.take()) and r.channels[4].battery_percent == 30, 1, "follow on")
        assert not task.done()

    run_link(sim, "em4", scenario)


@pytest.mark.parametrize(
    ("fault", "error"),
    [("stop_answering", DeviceSilentError), ("drop_mid_frame", ProtocolError), ("refuse", LinkDroppedError)],
)
def test_a_link_ends_within_three_seconds_of_a_fault_and_a_new_one_works_after_it(sim, fault, error):
    async def scenario(link, task):
        await until(link.take, 2, "give a first reading")
        await asyncio.to_thread(sim.set_fault, "em4", fault)
        started = time.monotonic()
        await until(task.done, 3, "end the link")
        assert time.monotonic() - started < 3

    assert isinstance(run_link(sim, "em4", scenario), error)
    sim.set_fault("em4", None)

    async def works(link, task):
        await until(link.take, 2, "read again once the fault is gone")

    run_link(sim, "em4", works)


def test_a_powered_off_receiver_drops_the_link(sim):
    async def scenario(link, task):
        await until(link.take, 2, "give a first reading")
        await asyncio.to_thread(sim.power_off, "slrack")
        await until(task.done, 3, "end the link")

    outcome = run_link(sim, "slrack", scenario)
    assert isinstance(outcome, LinkDroppedError | DeviceSilentError), outcome


# --- through the link holder to the board ------------------------------------------------------------


def _statuses(receiver):
    return [c.status for c in Channel.objects.filter(receiver=receiver).order_by("number")]


def _channel(receiver, number):
    return Channel.objects.select_related("transmitter").get(receiver=receiver, number=number)


@pytest.mark.django_db(transaction=True)
def test_the_board_follows_the_demo_ew_dx_over_one_live_link(settings):
    use_fast_polls(settings)
    sim = start_simulator(["ewdx"])
    holder = None
    try:
        receiver = receivers_for(sim, ["ewdx"])["ewdx"]
        holder = Driven()
        wait_for(lambda: _statuses(receiver) == [S.GOOD, S.GOOD, S.REPLACE, S.CRITICAL], 5, "read the EW-DX")
        mod = _channel(receiver, 1)
        assert (mod.name, mod.frequency_khz) == ("MOD", 518200)
        tx = mod.transmitter
        assert (tx.model, tx.battery_percent, tx.battery_bars, tx.battery_type, tx.quality) == ("SKM", 90, 5, "LION", 5)
        assert tx.rf_percent > 0 and tx.antennas in ("AI", "IA") and tx.audio_percent is not None
        assert Receiver.objects.get(pk=receiver.pk).device_id == "1922000417"

        sim.pack_off("ewdx", 2)
        started = time.monotonic()
        wait_for(lambda: _channel(receiver, 2).status == S.PREV_GOOD, 2, "show the pack switched off")
        assert time.monotonic() - started < 1.0
        sim.set_name("ewdx", 1, "chair")
        wait_for(lambda: _channel(receiver, 1).name == "CHAIR", 2, "show the renamed channel")
        assert len(sim.snapshot("ewdx")["subscribers"]) == 1  # one client, following by subscription
    finally:
        if holder is not None:
            holder.stop()
        wait_for(lambda: sim.snapshot("ewdx")["subscribers"] == {}, 2, "cancel the link's subscriptions")
        sim.stop()


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.django_db(transaction=True)
def test_discovery_hears_the_demo_ew_dx_announce_itself_and_identifies_it():
    sim, port = start_rig_at(["ewdx"], network="127.0.67")
    try:
        _, ssc = announcements_for(sim.hub.devices.values())
        announcer = Announcer(shure=[], ssc=ssc, slp_port=_free_udp_port(), mdns_port=_free_udp_port(), every=0.2)
        with AnnouncerThread(announcer):
            task = DiscoveryService.request_discovery(scope="127.0.67.1/32", families=["sennheiser_ssc"])
            plan = ScanPlan(
                addresses=("127.0.67.1",),  # not the EW-DX's address: only its announcement can find it
                families=("sennheiser_ssc",),
                ports={"sennheiser_ssc": port},
                listen_seconds=0.8,
                slp_port=announcer.slp_port,
                mdns_port=announcer.mdns_port,
                timeout=1.0,
            )
            scan(task.pk, plan=plan)
    finally:
        sim.stop()
    task = DiscoveryTask.objects.get(pk=task.pk)
    [device] = task.devices.all()
    assert (device.host, device.port, device.source) == ("127.0.67.21", port, "mDNS")
    assert (device.driver, device.model, device.device_id) == ("sennheiser_ssc", "EM4-DANTE", "1922000417")
    assert device.channels == [[1, "MOD"], [2, "PANEL 1"], [3, "PANEL 2"], [4, "PANEL 3"]]
