"""Sennheiser SSC v1: the codec on protocols.md's example messages, then the driver and link against the simulator.

Parser units need no network. Driver tests run :func:`micboard.drivers.ssc.poll` and :class:`SscLink` over real
loopback UDP against :mod:`micboard.simulators.ssc` (ephemeral ports), with the simulator's dynamics frozen so
values can be asserted.
"""

from __future__ import annotations

import json

import pytest

from micboard.drivers.ssc_spec import model_from_product, read_groups, ssc_model
from micboard.drivers.ssc_wire import (
    SscState,
    decode,
    encode,
    error_entries,
    get_request,
    subscribe_request,
)
from micboard.exceptions import ProtocolError

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
    assert state.terminated == [("mates", "tx1", "battery", "gauge")]
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
