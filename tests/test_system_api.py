"""Shure System API: the answers' parser (protocols.md §4 examples) and the driver against the HTTPS simulator."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket
import ssl
import time
from dataclasses import replace

import httpx
import pytest
from django.core.management import call_command

from micboard.drivers import system_api_spec as spec
from micboard.drivers.base import RUNTIME_CALCULATING
from micboard.drivers.catalog import device_model
from micboard.drivers.system_api import MAX_RESPONSE_BYTES, SystemApiLink, inventory, poll, probe
from micboard.drivers.system_api_wire import (
    ChannelAnswers,
    activity,
    battery,
    build_reading,
    channel_index,
    channel_numbers,
    clean_text,
    device_nodes,
    format_fingerprint,
    iso_duration_minutes,
    next_cursor,
    node_device,
    parse_fingerprint,
)
from micboard.exceptions import (
    ConnectionTimeoutError,
    DeviceSilentError,
    DriverConfigurationError,
    DriverError,
    ProtocolError,
)
from micboard.models import Channel, DiscoveredDevice, RealTimeConnection
from micboard.services import DiscoveryService
from micboard.simulators.engine import SLOW_REPLY_SECONDS, SimulatorThread
from micboard.simulators.rig import RigChannel, RigDevice, rig_device
from micboard.simulators.system_api import DEMO_API_KEY, SimulatedSystemApiDevice, server_certificate
from micboard.status import ChannelStatus as S
from tasks.discovery import plan_for, scan
from tasks.polling import run_poll_cycle
from tests.factories import receivers_for, start_simulator, use_fast_polls

# A device node as §4 describes it (the v1.8 spec's OnlineDevice).
ADTQ_NODE = {
    "hardwareIdentity": {"deviceId": "ddb03a46-0000-11dd-a000-000eddcccccc", "serialNumber": "2EK24560748"},
    "softwareIdentity": {"model": "ADTQ", "firmwareVersion": "1.2.1.1"},
    "deviceState": "ONLINE",
    "compatibility": "COMPATIBLE_LATEST",
    "communicationProtocol": {"address": "192.168.10.119", "name": "ESTA.DMP"},
    "capabilities": ["audio-channels", "identify", "name", "reboot"],
}
PACK_NODE = {
    "hardwareIdentity": {"deviceId": "0b5e6c1a-0000-11dd-a000-000edd000006", "serialNumber": "3TJ100006"},
    "softwareIdentity": {"model": "ULXD6", "firmwareVersion": "2.7.6"},
    "deviceState": "ONLINE",
    "capabilities": ["battery-level", "battery-health", "name", "identify"],
}


def channel_id(index: int, key: str = "i") -> str:
    descriptor = {"t": "AudioChannel", "c": "ADTQ", "v": 131088, "s": "CH", key: index}
    return base64.b64encode(json.dumps(descriptor).encode()).decode()


def discharging(duration: str) -> dict:
    return {"currentState": "DISCHARGING", "targetState": "EMPTY", "timeToTargetState": duration}


# ------------------------------------------------------------------------------------------------ parser


def test_device_list_in_each_of_the_three_shapes_gives_the_same_nodes():
    relay = {
        "pageInfo": {"hasNextPage": False, "hasPreviousPage": False, "startCursor": "a", "endCursor": "b"},
        "edges": [{"cursor": "a", "node": ADTQ_NODE}, {"cursor": "b", "node": PACK_NODE}],
    }
    assert device_nodes(relay) == [ADTQ_NODE, PACK_NODE]
    assert device_nodes([ADTQ_NODE, PACK_NODE]) == [ADTQ_NODE, PACK_NODE]
    assert device_nodes({"items": [ADTQ_NODE, PACK_NODE]}) == [ADTQ_NODE, PACK_NODE]
    assert device_nodes({"edges": [{"cursor": "a"}, "junk", {"node": PACK_NODE}]}) == [PACK_NODE]
    with pytest.raises(ProtocolError, match="neither a list"):
        device_nodes({"devices": [ADTQ_NODE]})


def test_relay_cursor_is_followed_only_while_the_server_says_there_is_a_next_page():
    page = {"pageInfo": {"hasNextPage": True, "endCursor": "Y3Vyc29yMg=="}, "edges": [{"cursor": "x", "node": {}}]}
    assert next_cursor(page) == "Y3Vyc29yMg=="
    assert next_cursor({"pageInfo": {"hasNextPage": True}, "edges": [{"cursor": "last", "node": {}}]}) == "last"
    assert next_cursor({"pageInfo": {"hasNextPage": False, "endCursor": "z"}, "edges": []}) is None
    assert next_cursor([ADTQ_NODE]) is None
    assert next_cursor({"items": []}) is None


def test_node_identity_reads_the_documented_fields_and_cleans_device_strings():
    device = node_device(ADTQ_NODE)
    assert device is not None
    assert (device.device_id, device.model, device.serial, device.firmware, device.state, device.address) == (
        "ddb03a46-0000-11dd-a000-000eddcccccc",
        "ADTQ",
        "2EK24560748",
        "1.2.1.1",
        "ONLINE",
        "192.168.10.119",
    )
    assert node_device({"softwareIdentity": {"model": "ADTQ"}}) is None  # no device id: not a device
    assert clean_text(" Lead\x00 Vox\x1b\ud800 ") == "Lead Vox"
    assert clean_text("") is None
    assert clean_text(7) is None


@pytest.mark.parametrize(
    ("duration", "minutes"),
    [
        ("PT853M", 853),  # protocols.md §4
        ("PT14H13M", 853),
        ("P1DT2H", 1560),
        ("PT90S", 2),
        ("PT1.5H", 90),
        ("pt45m", 45),
        ("PT0M", 0),
        ("PT", None),
        ("P", None),
        ("853", None),
        ("P1Y", None),
        ("PT" + "9" * 100 + "M", None),
        (None, None),
        (853, None),
    ],
)
def test_iso_8601_runtime_durations(duration, minutes):
    assert iso_duration_minutes(duration) == minutes


def test_battery_level_gives_percentage_and_runtime_only_while_discharging():
    level = battery({"percentage": 87, "status": discharging("PT853M")})
    assert (level.percent, level.runtime_min, level.runtime_state) == (87, 853, None)
    charging = battery(
        {"percentage": 40, "status": {"currentState": "CHARGING", "targetState": "FULL", "timeToTargetState": "PT90M"}}
    )
    assert (charging.percent, charging.runtime_min) == (40, None)  # 90 min to full is not 90 min left
    calculating = battery({"percentage": 64, "status": {"currentState": "CALCULATING", "timeToTargetState": None}})
    assert (calculating.runtime_min, calculating.runtime_state) == (None, RUNTIME_CALCULATING)


@pytest.mark.parametrize("percentage", [None, -1, 101, 255, "87", True, float("nan")])
def test_battery_percentage_that_is_not_a_percentage_is_unknown_not_zero(percentage):
    assert battery({"percentage": percentage, "status": {}}).percent is None


def test_audio_channel_ids_decode_to_channel_numbers():
    assert channel_index(channel_id(0)) == 0  # the ADTQ form of §4
    assert channel_index(channel_id(3, key="index")) == 3
    assert channel_index(channel_id(2).rstrip("=")) == 2  # padding dropped
    urlsafe = base64.urlsafe_b64encode(json.dumps({"index": 1, "x": "??>>"}).encode()).decode()
    assert channel_index(urlsafe) == 1
    assert channel_index("not base64 at all!") is None
    assert channel_numbers([channel_id(1), channel_id(0)]) == [2, 1]
    # Undecodable or repeated indexes: the channels are numbered by their place in the list.
    assert channel_numbers([channel_id(0), "opaque"]) == [1, 2]
    assert channel_numbers([channel_id(0), channel_id(0)]) == [1, 2]


def test_activity_clipping_is_a_peak_and_unknown_words_are_unknown():
    assert activity({"audioLevel": "CLIPPING"}) == spec.ACTIVITY_CLIPPING
    assert activity({"activity": "good"}) == spec.ACTIVITY_GOOD
    assert activity({"audioLevel": "LOUD"}) is None
    assert activity(None) is None


def test_fingerprints_are_read_as_crews_copy_them():
    digest = bytes(range(32))
    colons = format_fingerprint(digest)
    assert colons.startswith("00:01:02:03") and len(colons) == 95
    assert parse_fingerprint(colons) == digest
    assert parse_fingerprint(colons.replace(":", "").lower()) == digest
    assert parse_fingerprint(" " + colons.replace(":", " ") + " ") == digest
    assert format_fingerprint(digest, short=True) == "00:01:02:03:04:05:06:07…"
    with pytest.raises(DriverConfigurationError, match="64 hex digits"):
        parse_fingerprint("AB:CD")


def test_a_pack_reads_as_one_present_transmitter_with_its_battery():
    level = battery({"percentage": 58, "status": discharging("PT261M")})
    reading = build_reading(PACK_NODE, name="Presenter", muted=True, level=level, channels=[])
    assert (reading.family, reading.model, reading.firmware) == ("system_api", "ULXD6", "2.7.6")
    assert reading.device_id == "0b5e6c1a-0000-11dd-a000-000edd000006"
    ch = reading.channels[1]
    assert (ch.name, ch.tx_present, ch.tx_model, ch.tx_muted) == ("Presenter", True, "ULXD6", True)
    assert (ch.battery_percent, ch.battery_bars, ch.battery_runtime_min) == (58, 3, 261)
    # Nothing the System API does not have is invented.
    assert (ch.rf_dbm, ch.rf_percent, ch.antennas, ch.frequency_khz, ch.audio_dbfs, ch.audio_percent) == (None,) * 6
    assert ch.audio_muted is None


def test_audio_channels_carry_names_mutes_and_a_peak_on_clipping_but_no_level():
    channels = [
        ChannelAnswers(1, name="IEM Vox", muted=False, activity="GOOD"),
        ChannelAnswers(2, name="IEM Keys", muted=None, activity="CLIPPING"),
        ChannelAnswers(3, name=None, muted=None, activity=None),
    ]
    reading = build_reading(ADTQ_NODE, name="PSM Stage", muted=True, level=None, channels=channels)
    one, two, three = (reading.channels[n] for n in (1, 2, 3))
    assert (one.name, one.audio_muted, one.audio_peak, one.metered) == ("IEM Vox", False, False, True)
    assert (two.audio_muted, two.audio_peak) == (True, True)  # no channel mute: the device's
    assert (three.metered, three.audio_peak) == (False, False)  # no activity: no meter at all
    assert all(ch.tx_present is None and ch.battery_bars is None for ch in reading.channels.values())
    assert all(ch.audio_percent is None and ch.rf_percent is None for ch in reading.channels.values())


def test_the_catalog_knows_the_system_api_models_with_their_channels():
    adtq = device_model("ADTQ", driver=spec.DRIVER)
    assert (adtq.channels, adtq.is_iem, adtq.default_port, adtq.family) == (4, True, 10000, "system_api")
    assert device_model("ulxd6", driver=spec.DRIVER).channels == 1
    with pytest.raises(KeyError):
        device_model("ULXD4Q", driver=spec.DRIVER)


# ------------------------------------------------------------------------------------------------ against the simulator

SYSAPI = "shure_system_api"
TEST_RIG = (
    RigDevice(
        "adtq",
        "PSM Stage",
        "ADTQ",
        "ddb03a46-0000-11dd-a000-000edd230001",
        0,
        "Stage",
        tuple(RigChannel(f"IEM {n}", f"Performer {n}") for n in range(1, 5)),
        driver=SYSAPI,
    ),
    RigDevice(
        "pres",
        "Presenter pack",
        "ULXD6",
        "0b5e6c1a-0000-11dd-a000-000edd230002",
        0,
        "Stage",
        (RigChannel("Presenter", "Host", "ULXD6", "LION", 58),),
        driver=SYSAPI,
    ),
    RigDevice(
        "hh",
        "Q&A handheld",
        "ULXD8",
        "0b5e6c1a-0000-11dd-a000-000edd230003",
        0,
        "Stage",
        (RigChannel("Q&A", "Audience", "ULXD8", "LION", 23),),
        driver=SYSAPI,
    ),
    RigDevice(
        "ad4d",
        "Axient pair",
        "AD4D",
        "aa0d4d00-0000-11dd-a000-000edd230004",
        0,
        "Rack",
        (RigChannel("Lectern", "Speaker"), RigChannel("Spare", "Nobody")),
        driver=SYSAPI,
    ),
)
RIG = {rig.key: rig for rig in TEST_RIG}
FAST = 1.0  # poll timeout of the fault tests: every failure must be told within it


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("sysapi-tls")


@pytest.fixture
def sim(tls_dir):
    """Four devices on one simulated SystemAPI server (two list pages), values frozen (dynamics off)."""
    devices = [
        SimulatedSystemApiDevice(rig, host="127.0.0.1", port=0, dynamics=False, calculating_seconds=0, tls_dir=tls_dir)
        for rig in TEST_RIG
    ]
    thread = SimulatorThread(devices).start()
    yield thread
    thread.stop()


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def options(sim, key, **changes):
    snapshot = sim.snapshot(key)
    base = {
        "remote_id": RIG[key].device_id,
        "api_key": snapshot["api_key"],
        "tls_fingerprint": snapshot["tls_fingerprint"],
    }
    return {k: v for k, v in {**base, **changes}.items() if v is not None}


def read(sim, key, *, timeout=3.0, **changes):
    host, port = sim.address(key)
    return asyncio.run(
        poll(host, port, model=RIG[key].model, timeout=timeout, meter_rate_ms=250, options=options(sim, key, **changes))
    )


def failure(sim, key, *, timeout=FAST, **changes):
    """The DriverError a poll ends with, and how long it took."""
    started = time.monotonic()
    with pytest.raises(DriverError) as caught:
        read(sim, key, timeout=timeout, **changes)
    return caught.value, time.monotonic() - started


def test_a_pack_reads_its_battery_runtime_and_name_and_nothing_the_api_lacks(sim):
    reading = read(sim, "pres")
    assert (reading.model, reading.device_id, reading.family) == ("ULXD6", RIG["pres"].device_id, "system_api")
    assert reading.latency_ms is not None and reading.latency_ms > 0
    pack = reading.channels[1]
    assert (pack.name, pack.tx_present, pack.tx_model, pack.tx_muted) == ("Presenter", True, "ULXD6", False)
    # 58 % of an 8-hour pack: 3 bars, 278 minutes (the simulator's ISO-8601 PT278M).
    assert (pack.battery_percent, pack.battery_bars, pack.battery_runtime_min) == (58, 3, 278)
    assert (pack.rf_dbm, pack.rf_percent, pack.antennas, pack.frequency_khz, pack.audio_percent) == (None,) * 5
    sim.set_battery("pres", 1, 9)
    sim.tx_mute("pres", 1)
    sim.set_name("pres", 1, "Keynote")
    pack = read(sim, "pres").channels[1]
    assert (pack.battery_bars, pack.battery_runtime_min, pack.tx_muted, pack.name) == (1, 43, True, "Keynote")


def test_a_psm_transmitter_reads_its_channels_and_a_clip_as_a_peak(sim):
    reading = read(sim, "adtq")
    assert sorted(reading.channels) == [1, 2, 3, 4]
    assert [reading.channels[n].name for n in (1, 2, 3, 4)] == ["IEM 1", "IEM 2", "IEM 3", "IEM 4"]
    assert all(ch.metered and not ch.audio_peak for ch in reading.channels.values())
    assert all(ch.tx_present is None and ch.battery_bars is None for ch in reading.channels.values())
    sim.peak("adtq", 3)
    peaks = [n for n, ch in read(sim, "adtq").channels.items() if ch.audio_peak]
    assert peaks == [3]


def test_a_device_on_the_second_page_is_found_and_its_channel_mutes_read(sim):
    sim.call("ad4d", "audio_mute", channel=2, on=True)
    requests = sim.snapshot("ad4d")["requests"]
    reading = read(sim, "ad4d")
    assert [reading.channels[n].audio_muted for n in (1, 2)] == [False, True]
    assert [reading.channels[n].name for n in (1, 2)] == ["Lectern", "Spare"]
    # Two list pages (page size 2), then name, audio-mute, audio-channels, and name/mute/activity per channel.
    assert sim.snapshot("ad4d")["requests"] - requests == 2 + 3 + 2 * 3


@pytest.mark.parametrize("shape", ["array", "items"])
def test_the_other_device_list_shapes_read_the_same(sim, shape):
    sim.call("hh", "list_shape", shape=shape)
    pack = read(sim, "hh").channels[1]
    assert (pack.name, pack.battery_percent, pack.battery_bars) == ("Q&A", 23, 2)


def test_a_pack_switched_off_is_reported_offline_by_the_server_and_comes_back(sim):
    sim.pack_off("pres", 1)
    error, _ = failure(sim, "pres")
    assert "reports the device offline (OFFLINE)" in str(error)
    assert read(sim, "hh").channels[1].battery_percent == 23  # the server and its other devices still answer
    sim.pack_on("pres", 1)
    assert read(sim, "pres").channels[1].tx_present is True
    sim.power_off("adtq")
    assert "reports the device offline" in str(failure(sim, "adtq")[0])
    sim.power_on("adtq")
    assert len(read(sim, "adtq").channels) == 4


def test_inventory_lists_every_device_with_its_name_and_state(sim):
    sim.pack_off("hh", 1)
    host, port = sim.address("adtq")
    found = asyncio.run(inventory(host, port, timeout=3.0, options=options(sim, "adtq")))
    by_id = {device.device_id: device for device in found}
    assert set(by_id) == {rig.device_id for rig in TEST_RIG}
    adtq = by_id[RIG["adtq"].device_id]
    assert (adtq.model, adtq.name, adtq.state, adtq.firmware) == ("ADTQ", "PSM Stage", "ONLINE", "1.2.1.1")
    assert adtq.serial and adtq.address == "127.0.0.1"
    assert (by_id[RIG["hh"].device_id].state, by_id[RIG["hh"].device_id].name) == ("OFFLINE", None)
    # Without the key a scan still learns that a SystemAPI server answers there, and what it needs.
    with pytest.raises(DriverConfigurationError, match=r"a SystemAPI server answers here \(HTTP 401 without a key\)"):
        asyncio.run(inventory(host, port, timeout=3.0, options=options(sim, "adtq", api_key=None)))


def test_settings_the_crew_must_fix_are_named(sim):
    requests = sim.snapshot("pres")["requests"]
    assert "no API key" in str(failure(sim, "pres", api_key="")[0])
    assert "no device id" in str(failure(sim, "pres", remote_id="")[0])
    assert sim.snapshot("pres")["requests"] == requests  # neither went to the server
    refused, _ = failure(sim, "pres", api_key="wrong-key")
    assert isinstance(refused, DriverConfigurationError) and "refused the API key (HTTP 401)" in str(refused)
    missing, _ = failure(sim, "pres", remote_id="00000000-dead-beef-0000-000000000000")
    assert "does not list device 00000000-dead-beef" in str(missing) and "4 devices listed" in str(missing)


def test_tls_is_verified_by_pin_or_ca_file_and_never_skipped(sim):
    snapshot = sim.snapshot("pres")
    fingerprint, requests = snapshot["tls_fingerprint"], snapshot["requests"]
    untrusted, _ = failure(sim, "pres", tls_fingerprint="")
    assert isinstance(untrusted, DriverConfigurationError)
    assert "not trusted" in str(untrusted) and fingerprint in str(untrusted)  # what to compare on the server
    assert "MICBOARD_SYSTEM_API_CA_FILE" in str(untrusted)
    other = "AB:" * 31 + "AB"
    mismatch, _ = failure(sim, "pres", tls_fingerprint=other)
    assert "does not match the pinned one" in str(mismatch)
    assert "pinned AB:AB:AB:AB:AB:AB:AB:AB…" in str(mismatch) and fingerprint[:23] + "…" in str(mismatch)
    # Neither handshake was followed by a request: the API key never left micboard.
    assert sim.snapshot("pres")["requests"] == requests
    trusted = read(sim, "pres", tls_fingerprint="", ca_file=snapshot["tls_cert_path"])
    assert trusted.channels[1].name == "Presenter"
    assert read(sim, "pres", tls_fingerprint=fingerprint.replace(":", "").lower()).channels[1].battery_bars == 3
    assert "cannot use the CA file" in str(failure(sim, "pres", tls_fingerprint="", ca_file="/nonexistent.pem")[0])


def test_the_server_keeps_its_certificate_in_its_folder(tls_dir, sim):
    host, _ = sim.address("pres")
    kept = server_certificate(tls_dir, host)
    assert kept.fingerprint == sim.snapshot("pres")["tls_fingerprint"]
    assert server_certificate(tls_dir, host).sha256 == kept.sha256  # read again, not made again
    assert oct(kept.key_path.stat().st_mode & 0o777) == "0o600"


def test_the_simulated_server_wants_the_key_and_refuses_an_empty_json_body(sim):
    host, port = sim.address("pres")
    fingerprint = sim.snapshot("pres")["tls_cert_path"]
    with httpx.Client(verify=ssl.create_default_context(cafile=fingerprint)) as client:
        url = f"https://{host}:{port}/api/v1/devices"
        assert client.get(url).status_code == 401
        assert client.get(url).json() == {"message": "Invalid or missing x-api-key"}
        key = {"x-api-key": DEMO_API_KEY}
        empty = client.post(f"{url}/subscription/x", headers={**key, "Content-Type": "application/json"})
        assert empty.status_code == 400 and "Body cannot be empty" in empty.json()["message"]
        rf = client.get(f"{url}/{RIG['pres'].device_id}/rf-level", headers=key)
        assert rf.status_code == 405  # no RF resource exists


@pytest.mark.parametrize(
    ("fault", "kind", "words"),
    [
        ("refuse", ConnectionTimeoutError, "connection refused"),
        ("silent", DeviceSilentError, "did not complete the TLS handshake"),
        ("stop_answering", DeviceSilentError, "sent no answer to GET /api/v1/devices"),
        ("drop_mid_frame", ProtocolError, "closed the connection in the middle of its answer"),
    ],
)
def test_each_fault_ends_the_poll_quickly_with_what_to_check_and_clears(sim, fault, kind, words):
    sim.set_fault("hh", fault)  # a fault is the server's: every device on it is affected
    error, took = failure(sim, "pres")
    assert isinstance(error, kind) and words in str(error), error
    assert took < FAST + 1.0
    sim.set_fault("hh", None)
    assert read(sim, "pres").channels[1].battery_bars == 3


def test_junk_mixed_into_every_answer_is_stepped_over(sim):
    sim.set_fault("hh", "garbage")
    adtq = read(sim, "adtq")
    assert [adtq.channels[n].name for n in sorted(adtq.channels)] == ["IEM 1", "IEM 2", "IEM 3", "IEM 4"]
    pack = read(sim, "ad4d").channels[1]  # on the second page, past the junk edges
    assert pack.name == "Lectern"
    found = asyncio.run(inventory(*sim.address("hh"), timeout=3.0, options=options(sim, "hh")))
    assert sorted(device.name for device in found) == ["Axient pair", "PSM Stage", "Presenter", "Q&A"]


def test_a_slow_server_is_still_read_within_a_two_second_poll_timeout(sim):
    sim.set_fault("pres", "slow")
    started = time.monotonic()
    reading = read(sim, "ad4d", timeout=2.0)  # the second page: the most rounds a poll makes
    assert time.monotonic() - started >= SLOW_REPLY_SECONDS
    assert reading.channels[1].name == "Lectern"


def follow(sim, key, scenario, **changes):
    """Run a live link to ``key`` beside ``scenario(link)`` (a coroutine function); returns how the link ended."""
    host, port = sim.address(key)

    async def run():
        link = SystemApiLink(
            host, port, model=RIG[key].model, timeout=FAST, options=options(sim, key, **changes), read_every=0.2
        )
        task = asyncio.create_task(link.run())
        try:
            await scenario(link)
        finally:
            task.cancel()
        return await asyncio.gather(task, return_exceptions=True)

    return asyncio.run(run())[0]


async def next_reading(link, within=3.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        reading = link.take()
        if reading is not None:
            return reading
        await asyncio.sleep(0.02)
    raise AssertionError("no reading from the link")


def test_a_live_link_reads_again_and_again_over_kept_connections(sim):
    async def scenario(link):
        first = await next_reading(link)
        assert link.ready and first.channels[1].battery_bars == 3 and link.take() is None
        await asyncio.to_thread(sim.set_battery, "pres", 1, 15)
        while (reading := await next_reading(link)).channels[1].battery_bars != 1:
            pass
        assert reading.latency_ms is not None

    connections = sim.snapshot("pres")["stats"]["connections"]
    assert isinstance(follow(sim, "pres", scenario), asyncio.CancelledError)  # it ran until cancelled
    assert sim.snapshot("pres")["stats"]["connections"] - connections <= 4  # not one handshake per reading


@pytest.mark.parametrize("fault", ["refuse", "silent", "stop_answering", "drop_mid_frame"])
def test_a_live_link_ends_at_the_first_reading_that_fails_and_the_next_one_reads(sim, fault):
    host, port = sim.address("pres")

    def link():
        return SystemApiLink(host, port, model="ULXD6", timeout=FAST, options=options(sim, "pres"), read_every=0.2)

    async def broken():
        follower = link()
        task = asyncio.create_task(follower.run())
        await next_reading(follower)
        await asyncio.to_thread(sim.set_fault, "pres", fault)
        started = time.monotonic()
        with pytest.raises(DriverError) as caught:
            await asyncio.wait_for(task, 0.2 + FAST + 2.0)
        return caught.value, time.monotonic() - started

    error, took = asyncio.run(broken())
    assert took < 0.2 + FAST + 0.5, error  # one reading's time-out, not a count of failed polls
    sim.set_fault("pres", None)

    async def again(follower):
        assert (await next_reading(follower)).channels[1].name == "Presenter"

    assert isinstance(follow(sim, "pres", again), asyncio.CancelledError)


@pytest.mark.django_db
def test_the_demo_conference_devices_reach_the_board_through_the_poll_cycle(settings):
    keys = ["keynote", "qa", "adtd"]
    use_fast_polls(settings)
    sim = start_simulator(keys)
    try:
        receivers = receivers_for(sim, keys)
        assert {r.remote_id for r in receivers.values()} == {rig_device(k).device_id for k in keys}
        assert run_poll_cycle().failed == 0
        keynote = Channel.objects.select_related("transmitter").get(receiver=receivers["keynote"])
        # 74 % of an 8-hour pack: 4 bars, GOOD, 5 h 55 min left; the Q&A mic at 31 %: 2 bars, CRITICAL.
        assert (keynote.status, keynote.transmitter.battery_bars, keynote.transmitter.runtime_minutes) == (
            S.GOOD,
            4,
            355,
        )
        assert keynote.transmitter.model == "ULXD6" and keynote.transmitter.rf_percent is None
        assert Channel.objects.get(receiver=receivers["qa"]).status == S.CRITICAL
        iem = Channel.objects.filter(receiver=receivers["adtd"]).order_by("number")
        assert [(c.name, c.status) for c in iem] == [("Host IEM", S.GOOD), ("Panel IEM", S.GOOD)]
        sim.pack_off("keynote", 1)  # the pack is switched off: the server lists it OFFLINE
        for _ in range(settings.MICBOARD_OFFLINE_AFTER):
            run_poll_cycle()
    finally:
        sim.stop()
    keynote.refresh_from_db()
    connection = RealTimeConnection.objects.get(receiver=receivers["keynote"])
    assert keynote.status == S.RX_COM_ERROR and "reports the device offline" in connection.last_error
    assert Channel.objects.get(receiver=receivers["qa"]).status == S.CRITICAL  # the server's other devices read on


# ------------------------------------------------------------------------------------------------ hostile servers


class ScriptedServer:
    """An HTTPS server on 127.0.0.1 that answers every request with ``answer(path)`` (raw HTTP bytes)."""

    def __init__(self, answer):
        self.answer = answer
        self.paths: list[str] = []
        self.certificate = server_certificate(None, "127.0.0.1")

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.certificate.ssl_context())
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info):
        self.server.close()

    async def _serve(self, reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.paths.append(head.split(b" ")[1].decode())
                writer.write(self.answer(self.paths[-1]))
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def poll(self, **changes):
        settings = {"remote_id": "dev-1", "api_key": "k", "tls_fingerprint": self.certificate.fingerprint, **changes}
        return await poll("127.0.0.1", self.port, model="ULXD6", timeout=FAST, options=settings)


def http(body: bytes, *, status: str = "200 OK", headers: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{headers}\r\n".encode() + body


async def refused(server: ScriptedServer) -> DriverError:
    with pytest.raises(DriverError) as caught:
        await server.poll()
    return caught.value


def test_answers_larger_than_the_cap_are_refused_whether_declared_or_streamed():
    async def scenario():
        declared = http(b"[]").replace(b"Content-Length: 2", f"Content-Length: {MAX_RESPONSE_BYTES + 1}".encode())
        async with ScriptedServer(lambda path: declared) as server:
            first = await refused(server)
        chunk = b"[" + b" " * 65536
        size = f"{len(chunk):x}".encode()
        streamed = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + (size + b"\r\n" + chunk + b"\r\n") * 20
        async with ScriptedServer(lambda path: streamed) as server:
            second = await refused(server)
        return first, second

    for error in asyncio.run(scenario()):
        assert isinstance(error, ProtocolError) and f"larger than {MAX_RESPONSE_BYTES} bytes" in str(error)


def test_an_answer_that_is_not_http_says_which_port_to_check():
    async def scenario():
        async with ScriptedServer(lambda path: b"\x16\x03\x01 <REP ERR> \xff\xfe\r\n\r\n") as server:
            return await refused(server), server.port

    error, port = asyncio.run(scenario())
    assert isinstance(error, ProtocolError) and "with something that is not HTTP" in str(error)
    assert f"is port {port} the SystemAPI server's HTTPS port?" in str(error)


def test_a_web_page_instead_of_json_says_which_port_to_check():
    async def scenario():
        page = http(b"<html><body>Welcome</body></html>", headers="Content-Type: text/html\r\n")
        async with ScriptedServer(lambda path: page) as server:
            return await refused(server), server.port

    error, port = asyncio.run(scenario())
    assert isinstance(error, ProtocolError)
    assert "not JSON ('<html><body>Welcome</bod'" in str(error) and f"is port {port} the SystemAPI server's" in str(
        error
    )


def test_a_device_list_that_pages_in_a_circle_ends():
    loop_page = {"pageInfo": {"hasNextPage": True, "endCursor": "again"}, "edges": [{"cursor": "again", "node": {}}]}

    async def scenario():
        async with ScriptedServer(lambda path: http(json.dumps(loop_page).encode())) as server:
            return await refused(server), server.paths

    error, paths = asyncio.run(scenario())
    assert isinstance(error, DriverConfigurationError) and "does not list device dev-1" in str(error)
    assert paths == ["/api/v1/devices", "/api/v1/devices?after=again"]


def test_simctl_reaches_the_system_api_actions():
    device = SimulatedSystemApiDevice(RIG["ad4d"], host="127.0.0.1", port=0, dynamics=False)
    with SimulatorThread([device], control_port=0) as control:
        port = control.control_address[1]
        call_command("simctl", "audio-mute", "ad4d", "1", "on", control_port=port, stdout=io.StringIO())
        call_command("simctl", "list-shape", "ad4d", "items", control_port=port, stdout=io.StringIO())
        snapshot = control.snapshot("ad4d")
    assert snapshot["channels"][0]["audio_muted"] is True and snapshot["list_shape"] == "items"


# ------------------------------------------------------------------------------------------------ discovery


def test_the_probe_lists_every_device_of_the_server_for_review(sim):
    sim.pack_off("hh", 1)
    host, port = sim.address("adtq")
    finds = {f.remote_id: f for f in asyncio.run(probe(host, port, timeout=FAST, options=options(sim, "adtq")))}
    assert set(finds) == {rig.device_id for rig in TEST_RIG}
    pack = finds[RIG["pres"].device_id]
    assert (pack.driver, pack.model, pack.host, pack.port, pack.name) == (SYSAPI, "ULXD6", host, port, "Presenter")
    assert pack.channels == ((1, "Presenter"),) and pack.device_id == pack.remote_id and pack.serial
    assert finds[RIG["hh"].device_id].note == "the server lists it OFFLINE"
    assert (finds[RIG["adtq"].device_id].model, finds[RIG["adtq"].device_id].channels) == ("ADTQ", ())
    with pytest.raises(ConnectionTimeoutError) as nothing:  # an empty address: the scan passes over it
        asyncio.run(probe("127.0.0.1", free_tcp_port(), timeout=FAST, options={}))
    assert not isinstance(nothing.value, DeviceSilentError)


@pytest.mark.django_db(transaction=True)
def test_a_scan_finds_the_servers_devices_and_review_adds_one_that_reads(sim):
    host, port = sim.address("pres")
    scan_options = {k: v for k, v in options(sim, "pres").items() if k in ("api_key", "tls_fingerprint")}
    task = DiscoveryService.request_discovery(scope=f"{host}/32", families=[SYSAPI], listen=False, options=scan_options)
    scan(task.pk, plan=replace(plan_for(task), ports={SYSAPI: port}, listen_seconds=0.0, timeout=FAST))
    found = {d.remote_id: d for d in DiscoveredDevice.objects.filter(task=task)}
    assert set(found) == {rig.device_id for rig in TEST_RIG}
    receiver = DiscoveryService.add_device(device=found[RIG["pres"].device_id], name="Presenter pack")
    assert (receiver.driver, receiver.model, receiver.remote_id) == (SYSAPI, "ULXD6", RIG["pres"].device_id)
    assert (receiver.api_key, receiver.tls_fingerprint) == (DEMO_API_KEY, scan_options["tls_fingerprint"])
    assert run_poll_cycle().failed == 0
    assert Channel.objects.select_related("transmitter").get(receiver=receiver).transmitter.battery_bars == 3
