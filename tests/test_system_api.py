"""Shure System API: the answers' parser (protocols.md §4 examples) and the driver against the HTTPS simulator."""

from __future__ import annotations

import base64
import json

import pytest

from micboard.drivers import system_api_spec as spec
from micboard.drivers.base import RUNTIME_CALCULATING
from micboard.drivers.catalog import device_model
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
from micboard.exceptions import DriverConfigurationError, ProtocolError

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
