"""Shure UHF-R: the parser on protocols.md §2's example frames, then the driver against the simulator over UDP."""

from __future__ import annotations

import pytest

from micboard.drivers import uhfr_spec as spec
from micboard.drivers.base import RUNTIME_CALCULATING
from micboard.drivers.uhfr import UhfrState, parse_message, parse_sample, split_datagram
from micboard.exceptions import ProtocolError

# --------------------------------------------------------------------------------------------------------
# Parser units (protocols.md §2 example frames)
# --------------------------------------------------------------------------------------------------------


def state_after(*datagrams: bytes, channels: int = 2) -> UhfrState:
    state = UhfrState(channels)
    for datagram in datagrams:
        messages, _broken = split_datagram(datagram)
        for body in messages:
            state.apply(parse_message(body))
    return state


def channel(state: UhfrState, number: int = 1):
    return state.reading().channels[number]


def test_chan_name_report_turns_underscores_into_spaces():
    assert channel(state_after(b"* REPORT 1 CHAN_NAME LEAD_VOX *")).name == "LEAD VOX"


def test_sample_example_reads_antenna_rf_battery_and_audio():
    ch = channel(state_after(b"* SAMPLE 1 ALL XB 082 097 4 015 *"))
    assert ch.antennas == "IA"  # XB: antenna B in use
    assert ch.rf_dbm == -82.0  # the stronger antenna; fields read as -dBm
    assert ch.rf_antenna_percents == (30, 5)  # -82 dBm and -97 dBm on the -100...-40 dBm window
    assert ch.rf_percent == 30
    assert ch.battery_bars == 4 and ch.tx_present is True
    assert ch.audio_percent == 50  # 015: four of the eight LEDs lit
    assert ch.audio_dbfs is None  # the bitmap has no known dB scale
    assert ch.audio_peak is False and ch.metered is True


def test_sample_field_is_positional_with_every_antenna_code():
    codes = {
        code: channel(state_after(f"* SAMPLE 1 ALL {code} 050 060 5 001 *".encode())).antennas
        for code in spec.ANTENNA_CODES
    }
    assert codes == {"AX": "AI", "XB": "IA", "AB": "AA", "XX": "XX"}


def test_silence_is_an_empty_meter_and_the_peak_led_is_a_peak():
    assert channel(state_after(b"* SAMPLE 1 ALL AX 050 060 5 000 *")).audio_percent == 0
    loud = channel(state_after(b"* SAMPLE 1 ALL AX 050 060 5 255 *"))
    assert loud.audio_percent == 100 and loud.audio_peak is True
    assert channel(state_after(b"* SAMPLE 1 ALL AX 050 060 5 127 *")).audio_peak is False


def test_a_peak_between_two_readings_is_shown_once():
    state = state_after(b"* SAMPLE 1 ALL AX 050 060 5 255 *", b"* SAMPLE 1 ALL AX 050 060 5 007 *")
    assert state.reading().channels[1].audio_peak is True
    assert state.reading().channels[1].audio_peak is False


def test_frequency_and_group_channel():
    ch = channel(state_after(b"* REPORT 1 FREQUENCY 578000 *", b"* REPORT 1 GROUP_CHAN 01 05 *"))
    assert ch.frequency_khz == 578000 and ch.group_channel == "01,05"
    none = channel(state_after(b"* REPORT 1 GROUP_CHAN -- -- *", b"* REPORT 1 FREQUENCY 000000 *"))
    assert none.group_channel is None and none.frequency_khz is None


@pytest.mark.parametrize("bars", ["1", "2", "3", "4", "5"])
def test_tx_bat_bars(bars):
    ch = channel(state_after(f"* REPORT 1 TX_BAT {bars} *".encode(), b"* REPORT 1 TX_TYPE UR2 *"))
    assert ch.battery_bars == int(bars) and ch.tx_present is True and ch.tx_model == "UR2"
    assert ch.battery_percent is None  # bars are never passed off as a percentage


def test_transmitter_off_reads_as_absent_with_every_sentinel_unknown():
    ch = channel(
        state_after(
            b"* REPORT 1 TX_TYPE UR1 *",  # reported while the pack was on
            b"* REPORT 1 TX_BAT U *",
            b"* REPORT 1 TX_BAT_MINS UNKNOWN *",
            b"* REPORT 1 TX_BAT_TYPE UNKNOWN *",
            b"* SAMPLE 1 ALL XX 108 110 U 000 *",
        )
    )
    assert ch.tx_present is False
    assert (ch.tx_model, ch.battery_bars, ch.battery_runtime_min, ch.battery_type) == (None, None, None, None)
    assert ch.antennas == "XX" and ch.rf_percent == 0 and ch.audio_percent == 0


def test_sample_battery_switches_the_pack_off_and_on_between_reports():
    state = state_after(b"* REPORT 1 TX_BAT 5 *", b"* SAMPLE 1 ALL XX 108 110 U 000 *")
    assert state.reading().channels[1].tx_present is False
    state.apply(parse_message("SAMPLE 1 ALL AX 048 061 3 015"))
    assert state.reading().channels[1].battery_bars == 3


def test_battery_type_runtime_and_mute():
    ch = channel(
        state_after(
            b"* REPORT 1 TX_BAT 4 *",
            b"* REPORT 1 TX_BAT_TYPE ALKALINE *",
            b"* REPORT 1 TX_BAT_MINS 00312 *",
            b"* REPORT 1 MUTE ON *",
        )
    )
    assert (ch.battery_type, ch.battery_runtime_min, ch.audio_muted) == ("ALKA", 312, True)
    calculating = channel(state_after(b"* REPORT 1 TX_BAT 4 *", b"* REPORT 1 TX_BAT_MINS 65534 *"))
    assert calculating.battery_runtime_min is None and calculating.battery_runtime_state == RUNTIME_CALCULATING


def test_several_messages_in_one_datagram_are_all_read():
    state = state_after(b"* REPORT 1 CHAN_NAME A *  * REPORT 2 CHAN_NAME B *")
    assert [c.name for c in state.reading().channels.values()] == ["A", "B"]


def test_junk_and_a_cut_message_are_counted_not_read():
    assert split_datagram(b"\x00\xff* REPORT 1 TX_BAT 4 *") == (["REPORT 1 TX_BAT 4"], 1)
    assert split_datagram(b"* REPORT 1 CHAN_NAME LEA") == ([], 1)
    assert split_datagram(b"x" * 5000) == ([], 1)  # only the first MAX_DATAGRAM bytes are looked at


@pytest.mark.parametrize(
    "body",
    [
        "REP 1 CHAN_NAME X",  # UHF-R answers REPORT, never REP
        "GET 1 CHAN_NAME",
        "REPORT 1",
        "SAMPLE 1 XB 082 097 4 015",  # ALL missing
        "SAMPLE X ALL XB 082 097 4 015",
    ],
)
def test_malformed_messages_raise_protocol_error(body):
    with pytest.raises(ProtocolError):
        parse_message(body)


@pytest.mark.parametrize(
    "fields",
    [
        ("XB", "082", "097", "4"),  # a field short
        ("XB082", "097", "4", "015"),  # no spaces between fields (an emulator's mistake, §7.8)
        ("BA", "082", "097", "4", "015"),
        ("XB", "-82", "097", "4", "015"),
        ("XB", "082", "097", "7", "015"),
        ("XB", "082", "097", "4", "300"),
    ],
)
def test_malformed_samples_raise_and_leave_the_state_unchanged(fields):
    with pytest.raises(ProtocolError):
        parse_sample(fields)
    state = state_after(b"* SAMPLE 1 ALL AX 050 060 5 015 *")
    with pytest.raises(ProtocolError):
        state.apply(parse_message("SAMPLE 1 ALL " + " ".join(fields)))
    assert channel(state).rf_dbm == -50.0 and channel(state).battery_bars == 5


def test_channels_the_model_lacks_are_ignored():
    state = state_after(b"* REPORT 2 CHAN_NAME B *", channels=1)
    assert list(state.reading().channels) == [1] and state.ignored == 1


def test_meter_rate_is_sent_in_units_of_30_ms():
    assert spec.meter_units(100) == 3  # "* METER 1 ALL 003 *"
    assert spec.meter_units(250) == 8
    assert spec.meter_units(10) == 1 and spec.meter_units(10**6) == 999
