"""Shure command strings: framing, message parsing and per-family normalization (no network, no DB)."""

from __future__ import annotations

import pytest

from micboard.drivers.base import RUNTIME_CALCULATING, RUNTIME_WARNING
from micboard.drivers.shure_spec import AXIENT, PSM1000, QLXD, SLXD, ULXD
from micboard.drivers.shure_wire import (
    ShureState,
    parse_message,
    parse_sample,
    peak_threshold,
    psm_level_percent,
)
from micboard.exceptions import DriverError, ProtocolError


def read(family: str, channels: int, *frames: str):
    state = ShureState(family, channels)
    for frame in frames:
        state.apply(parse_message(frame))
    return state.reading()


def channel(family: str, *frames: str, channels: int = 1):
    return read(family, channels, *frames).channels[1]


# --------------------------------------------------------------------------------------------------------
# Device-level properties
# --------------------------------------------------------------------------------------------------------


def test_device_properties_strip_padding():
    reading = read(
        SLXD,
        2,
        "< REP DEVICE_ID {Rack1   } >",
        "< REP MODEL {SLXD4D                          } >",
        "< REP FW_VER {2.0.15.2                } >",
        "< REP RF_BAND {G55     } >",
    )
    assert (reading.device_id, reading.model, reading.firmware, reading.rf_band) == (
        "Rack1",
        "SLXD4D",
        "2.0.15.2",
        "G55",
    )
    assert sorted(reading.channels) == [1, 2]
    assert reading.family == SLXD


def test_firmware_self_test_star_is_kept():
    assert read(AXIENT, 2, "< REP FW_VER {2.0.15.2*               } >").firmware == "2.0.15.2*"


def test_psm_device_name_is_the_device_id():
    assert read(PSM1000, 2, "< REPORT DEVICE_NAME {IEM Rack} >").device_id == "IEM Rack"


def test_rep_err_is_counted():
    reading = read(ULXD, 1, "< REP ERR >", "< REP 1 BATT_BARS 004 >", "< REP ERR >")
    assert reading.error_replies == 2
    assert reading.channels[1].battery_bars == 4


def test_messages_for_channels_the_model_lacks_are_ignored():
    state = ShureState(ULXD, 2)
    state.apply(parse_message("< REP 3 CHAN_NAME {Ghost} >"))
    state.apply(parse_message("< SAMPLE 4 ALL AX 092 031 >"))
    assert sorted(state.reading().channels) == [1, 2]
    assert state.ignored == 2


def test_unknown_properties_are_ignored():
    ch = channel(ULXD, "< REP 1 AUDIO_GAIN 018 >", "< REP 1 ENCRYPTION_WARNING OFF >")
    assert ch.name is None and ch.metered is False


def test_malformed_value_raises_and_leaves_state_unchanged():
    state = ShureState(ULXD, 1)
    state.apply(parse_message("< REP 1 BATT_BARS 004 >"))
    with pytest.raises(ProtocolError):
        state.apply(parse_message("< REP 1 BATT_BARS four >"))
    assert state.reading().channels[1].battery_bars == 4


# --------------------------------------------------------------------------------------------------------
# ULX-D / QLX-D
# --------------------------------------------------------------------------------------------------------

ULX_ALL = (
    "< REP 1 CHAN_NAME {Vox 1   } >",
    "< REP 1 FREQUENCY 578350 >",
    "< REP 1 GROUP_CHAN {1,5} >",
    "< REP 1 AUDIO_MUTE OFF >",
    "< REP 1 TX_TYPE ULXD2 >",
    "< REP 1 BATT_BARS 004 >",
    "< REP 1 BATT_CHARGE 085 >",
    "< REP 1 BATT_RUN_TIME 00312 >",
    "< REP 1 BATT_TYPE LION >",
    "< REP 1 TX_OFFSET 003 >",
    "< REP 1 TX_MUTE_STATUS OFF >",
)


def test_ulxd_channel_properties():
    ch = channel(ULXD, *ULX_ALL)
    assert ch.name == "Vox 1"
    assert ch.frequency_khz == 578350
    assert ch.group_channel == "1,5"
    assert ch.tx_present is True
    assert ch.tx_model == "ULXD2"
    assert ch.battery_bars == 4
    assert ch.battery_percent == 85
    assert ch.battery_runtime_min == 312
    assert ch.battery_runtime_state is None
    assert ch.battery_type == "LION"
    assert ch.tx_offset_db == 3
    assert ch.audio_muted is False
    assert ch.tx_muted is False
    assert ch.metered is False


def test_ulxd_sample():
    ch = channel(ULXD, "< SAMPLE 1 ALL AX 092 031 >")
    assert ch.antennas == "AI"
    assert ch.rf_dbm == -36.0  # 92 - 128
    assert ch.rf_percent == 100
    assert ch.audio_dbfs == -19.0  # Companion's eee - 50
    assert ch.audio_percent == 62  # the meter still shows 2 * eee
    assert ch.audio_peak is False
    assert ch.quality is None
    assert ch.metered is True


def test_ulxd_reports_one_rf_figure_not_one_per_antenna():
    ch = channel(ULXD, "< SAMPLE 1 ALL AX 092 031 >")
    assert ch.rf_percent is not None
    assert ch.rf_antenna_percents is None


def test_ulxd_sample_antenna_b_and_rf_window():
    ch = channel(ULXD, "< SAMPLE 1 ALL XB 058 020 >")
    assert ch.antennas == "IA"
    assert ch.rf_dbm == -70.0
    assert ch.rf_percent == 50


def test_ulxd_sample_no_antenna_still_reports_rf():
    ch = channel(ULXD, "< SAMPLE 1 ALL XX 020 000 >")
    assert ch.antennas == "XX"
    assert ch.rf_dbm == -108.0
    assert ch.rf_percent == 0
    assert ch.audio_dbfs == -50.0
    assert ch.audio_percent == 0  # silence reads as an empty meter


@pytest.mark.parametrize(("eee", "peak"), [("047", False), ("048", True), ("050", True)])
def test_ulxd_peak_from_two_db_below_full_scale(eee, peak):
    assert channel(ULXD, f"< SAMPLE 1 ALL AX 090 {eee} >").audio_peak is peak


def test_ulxd_audio_above_the_documented_range_reads_as_full_scale():
    ch = channel(ULXD, "< SAMPLE 1 ALL XB 035 098 >")  # micboard's docs example, outside 000-050
    assert (ch.audio_dbfs, ch.audio_percent, ch.audio_peak) == (0.0, 100, True)


@pytest.mark.parametrize(
    ("family", "frame"),
    [(ULXD, "< SAMPLE 1 ALL AX 090 045 >"), (SLXD, "< SAMPLE 1 ALL 115 100 090 >")],
)
def test_the_peak_threshold_is_a_per_family_setting(family, frame):
    """-5 dBFS: no peak at the default -2 dBFS, a peak once the crew sets the threshold to -6 dBFS."""
    state = ShureState(family, 1)
    state.apply(parse_message(frame))
    assert state.reading().channels[1].audio_peak is False
    strict = ShureState(family, 1, peak_dbfs=peak_threshold(family, {"peak_dbfs": "-6"}))
    strict.apply(parse_message(frame))
    assert strict.reading().channels[1].audio_peak is True


@pytest.mark.parametrize("bad", ["loud", "3", "-90", "nan"])
def test_a_peak_threshold_that_is_not_a_level_is_refused_with_a_clear_error(bad):
    with pytest.raises(DriverError, match="peak_dbfs must be a level in dBFS"):
        peak_threshold(ULXD, {"peak_dbfs": bad})
    assert peak_threshold(ULXD, {}) == -2.0
    assert peak_threshold(AXIENT, None) == -2.0


@pytest.mark.parametrize(
    "frame",
    ["< SAMPLE 1 ALL AX 092 >", "< SAMPLE 1 ALL QQ 092 031 >", "< SAMPLE 1 ALL AX 0x5 031 >"],
)
def test_ulxd_malformed_sample_raises(frame):
    with pytest.raises(ProtocolError):
        channel(ULXD, frame)


def test_ulxd_transmitter_off_sentinels():
    ch = channel(
        ULXD,
        *ULX_ALL,
        "< REP 1 TX_TYPE UNKN >",
        "< REP 1 BATT_BARS 255 >",
        "< REP 1 BATT_CHARGE 255 >",
        "< REP 1 BATT_RUN_TIME 65535 >",
        "< REP 1 BATT_TYPE UNKN >",
        "< REP 1 TX_OFFSET 255 >",
        "< REP 1 TX_MUTE_STATUS UNKN >",
        "< REP 1 GROUP_CHAN {--,--} >",
        "< REP 1 FREQUENCY 000000 >",
    )
    assert ch.tx_present is False
    assert ch.tx_model is None
    assert ch.battery_bars is None
    assert ch.battery_percent is None
    assert ch.battery_runtime_min is None
    assert ch.battery_runtime_state is None
    assert ch.battery_type is None
    assert ch.tx_offset_db is None
    assert ch.tx_muted is None
    assert ch.group_channel is None
    assert ch.frequency_khz is None
    assert ch.name == "Vox 1"


def test_ulxd_tx_present_from_bars_alone():
    assert channel(ULXD, "< REP 1 TX_TYPE UNKN >", "< REP 1 BATT_BARS 003 >").tx_present is True
    assert channel(ULXD, "< REP 1 BATT_BARS 255 >").tx_present is False
    assert channel(ULXD, "< REP 1 CHAN_NAME {A} >").tx_present is None


@pytest.mark.parametrize(
    ("family", "frames"),
    [
        (ULXD, ("< REP 1 TX_TYPE ULXD2 >", "< REP 1 BATT_BARS 255 >")),
        (QLXD, ("< REP 1 TX_TYPE QLXD1 >", "< REP 1 BATT_BARS 255 >")),
        (SLXD, ("< REP 1 TX_MODEL SLXD2 >", "< REP 1 TX_BATT_BARS 255 >")),
        (AXIENT, ("< REP 1 TX_MODEL AD2 >", "< REP 1 TX_BATT_BARS 255 >")),
    ],
)
def test_a_pack_that_reports_its_model_is_present_without_battery_bars(family, frames):
    ch = channel(family, *frames)
    assert ch.tx_present is True and ch.tx_model and ch.battery_bars is None


def test_control_characters_are_dropped_from_device_strings():
    reading = read(
        ULXD,
        1,
        "< REP FW_VER {2.7\x00.6.0\x7f} >",
        "< REP 1 CHAN_NAME {Lead\x00Vox\x07} >",
        "< REP 1 TX_TYPE ULXD2\x00 >",
    )
    assert reading.firmware == "2.7.6.0"
    assert reading.channels[1].name == "LeadVox"
    assert reading.channels[1].tx_model == "ULXD2"


@pytest.mark.parametrize(
    ("raw", "minutes", "state"),
    [("00000", 0, None), ("65532", 65532, None), ("65533", None, RUNTIME_WARNING),
     ("65534", None, RUNTIME_CALCULATING), ("65535", None, None)],
)
def test_ulxd_runtime_sentinels(raw, minutes, state):
    ch = channel(ULXD, f"< REP 1 BATT_RUN_TIME {raw} >")
    assert (ch.battery_runtime_min, ch.battery_runtime_state) == (minutes, state)


def test_qlxd_battery_percent_only_from_batt_charge():
    ch = channel(QLXD, "< REP 1 TX_TYPE QLXD2 >", "< REP 1 BATT_BARS 003 >", "< REP 1 BATT_TYPE ALKA >")
    assert ch.battery_bars == 3
    assert ch.battery_percent is None  # never bars x 20
    assert ch.battery_type == "ALKA"
    assert channel(QLXD, "< REP 1 BATT_CHARGE 040 >").battery_percent == 40


def test_qlxd_sample_and_names():
    ch = channel(QLXD, "< REP 1 CHAN_NAME {Lectern } >", "< SAMPLE 1 ALL XB 070 045 >")
    assert ch.name == "Lectern"
    assert ch.antennas == "IA"
    assert ch.rf_dbm == -58.0
    assert ch.audio_dbfs == -5.0
    assert ch.audio_percent == 90


def test_ulx_ignores_ad_style_names():
    ch = channel(ULXD, "< REP 1 TX_MODEL ULXD2 >", "< REP 1 TX_BATT_BARS 004 >")
    assert ch.tx_model is None and ch.battery_bars is None


# --------------------------------------------------------------------------------------------------------
# SLX-D
# --------------------------------------------------------------------------------------------------------


def test_slxd_channel_properties():
    ch = channel(
        SLXD,
        "< REP 1 CHAN_NAME {Lead Vox                       } >",
        "< REP 1 GROUP_CHANNEL {6,100} >",
        "< REP 1 FREQUENCY 0602125 >",
        "< REP 1 TX_MODEL SLXD2 >",
        "< REP 1 TX_BATT_BARS 004 >",
        "< REP 1 TX_BATT_MINS 00125 >",
    )
    assert ch.name == "Lead Vox"
    assert ch.group_channel == "6,100"
    assert ch.frequency_khz == 602125  # 7 digits on the wire
    assert ch.tx_present is True
    assert ch.tx_model == "SLXD2"
    assert ch.battery_bars == 4
    assert ch.battery_percent is None  # SLX-D has no percentage
    assert ch.battery_runtime_min == 125


def test_slxd_group_channel_wildcard_with_padding():
    assert channel(SLXD, "< REP 1 GROUP_CHANNEL {--,--     } >").group_channel is None


def test_slxd_sample():
    ch = channel(SLXD, "< SAMPLE 1 ALL 102 102 086 >")
    assert ch.audio_dbfs == -18.0
    assert ch.audio_percent == 82
    assert ch.audio_peak is False
    assert ch.rf_dbm == -34.0
    assert ch.rf_percent == 100
    assert ch.antennas is None
    assert ch.rf_antenna_percents is None  # the documented SAMPLE has one RSSI
    assert ch.metered is True


def test_slxd_sample_peak():
    assert channel(SLXD, "< SAMPLE 1 ALL 118 100 086 >").audio_peak is True
    assert channel(SLXD, "< SAMPLE 1 ALL 117 100 086 >").audio_peak is False


def test_slxd_five_field_sample_by_field_count():
    values = parse_sample(SLXD, ("090", "080", "050", "064", "A"))
    assert values.rssi_dbm == (-70.0, -56.0)
    ch = channel(SLXD, "< SAMPLE 1 ALL 090 080 050 064 A >")
    assert ch.rf_dbm == -56.0
    assert ch.audio_dbfs == -40.0
    assert ch.rf_antenna_percents == (50, 73)  # -70 / -56 dBm, antenna A first
    assert ch.rf_percent == 73


@pytest.mark.parametrize("frame", ["< SAMPLE 1 ALL 102 102 >", "< SAMPLE 1 ALL 102 102 086 050 >"])
def test_slxd_wrong_field_count_raises(frame):
    with pytest.raises(ProtocolError):
        channel(SLXD, frame)


def test_slxd_rssi_with_antenna_index():
    ch = channel(SLXD, "< REP 1 RSSI 1 083 >", "< REP 1 RSSI 2 064 >")
    assert ch.rf_dbm == -37.0  # strongest of -37 / -56
    assert ch.rf_antenna_percents == (100, 73)
    assert ch.metered is False  # REPs from GET ALL are not a meter reading


def test_slxd_rssi_without_antenna_index():
    ch = channel(SLXD, "< REP 1 RSSI 068 >")
    assert ch.rf_dbm == -52.0
    assert ch.rf_antenna_percents is None  # one figure, no antenna to put it on


def test_slxd_one_antenna_reported_is_no_per_antenna_reading():
    assert channel(SLXD, "< REP 1 RSSI 2 064 >").rf_antenna_percents is None  # B alone would be labelled A


def test_slxd_sample_keeps_the_per_antenna_rssi_of_the_same_poll():
    # The documented SAMPLE has one RSSI; the GET ALL reply just before it gave one per antenna (§1.7).
    ch = channel(SLXD, "< REP 1 RSSI 1 070 >", "< REP 1 RSSI 2 064 >", "< SAMPLE 1 ALL 090 080 071 >")
    assert ch.rf_dbm == -49.0  # the SAMPLE's figure
    assert ch.rf_antenna_percents == (83, 73)  # -50 / -56 dBm from the REPs
    assert ch.metered is True


def test_slxd_audio_level_reps():
    ch = channel(SLXD, "< REP 1 AUDIO_LEVEL_RMS 102 >", "< REP 1 AUDIO_LEVEL_PEAK 119 >")
    assert ch.audio_dbfs == -18.0
    assert ch.audio_peak is True


def test_sample_replaces_rssi_reps():
    ch = channel(SLXD, "< REP 1 RSSI 1 100 >", "< REP 1 RSSI 2 100 >", "< SAMPLE 1 ALL 050 040 030 >")
    assert ch.rf_dbm == -90.0


def test_slxd_transmitter_off():
    ch = channel(
        SLXD,
        "< REP 1 TX_MODEL UNKNOWN >",
        "< REP 1 TX_BATT_BARS 255 >",
        "< REP 1 TX_BATT_MINS 65535 >",
    )
    assert (ch.tx_present, ch.tx_model, ch.battery_bars, ch.battery_runtime_min) == (False, None, None, None)


@pytest.mark.parametrize(
    ("raw", "state"), [("65534", RUNTIME_CALCULATING), ("65533", RUNTIME_WARNING), ("65535", None)]
)
def test_slxd_runtime_states(raw, state):
    ch = channel(SLXD, "< REP 1 TX_MODEL SLXD1 >", f"< REP 1 TX_BATT_MINS {raw} >")
    assert ch.battery_runtime_min is None
    assert ch.battery_runtime_state == state
    assert ch.tx_present is True


# --------------------------------------------------------------------------------------------------------
# Axient Digital
# --------------------------------------------------------------------------------------------------------


def test_ad_channel_properties():
    ch = channel(
        AXIENT,
        "< REP 1 CHAN_NAME {05                             } >",
        "< REP 1 FREQUENCY 0594075 >",
        "< REP 1 GROUP_CHANNEL {--,--} >",
        "< REP 1 AUDIO_MUTE OFF >",
        "< REP 1 TX_MODEL ADX2 >",
        "< REP 1 TX_BATT_BARS 004 >",
        "< REP 1 TX_BATT_CHARGE_PERCENT 085 >",
        "< REP 1 TX_BATT_MINS 00412 >",
        "< REP 1 TX_BATT_TYPE LION >",
        "< REP 1 TX_OFFSET 015 >",
        "< REP 1 CHAN_QUALITY 005 >",
        "< REP 1 TX_MUTE_MODE_STATUS ON >",
        "< REP 1 ANTENNA_STATUS BR >",
        "< REP 1 SLOT_STATUS 8 EMPTY >",
        "< REP 1 SLOT_BATT_MINS 3 65535 >",
        "< REP 1 SLOT_TX_DEVICE_ID 2 {  } >",
        channels=2,
    )
    assert ch.name == "05"
    assert ch.frequency_khz == 594075
    assert ch.group_channel is None
    assert ch.audio_muted is False
    assert ch.tx_present is True
    assert ch.tx_model == "ADX2"
    assert ch.battery_bars == 4
    assert ch.battery_percent == 85
    assert ch.battery_runtime_min == 412
    assert ch.battery_type == "LION"
    assert ch.tx_offset_db == 3  # 15 - 12
    assert ch.quality == 5
    assert ch.tx_muted is False
    assert ch.antennas == "AR"


def test_ad_tx_mute_mode_and_negative_offset():
    ch = channel(AXIENT, "< REP 1 TX_MUTE_MODE_STATUS MUTE >", "< REP 1 TX_OFFSET 000 >")
    assert ch.tx_muted is True
    assert ch.tx_offset_db == -12


def test_ad_standard_sample():
    ch = channel(AXIENT, "< SAMPLE 1 ALL 005 031 102 102 BB 31 086 31 065 >", channels=2)
    assert ch.quality == 5
    assert ch.audio_dbfs == -18.0
    assert ch.audio_percent == 82
    assert ch.audio_peak is False
    assert ch.antennas == "AA"
    assert ch.rf_dbm == -34.0
    assert ch.rf_percent == 100
    assert ch.rf_antenna_percents == (100, 75)  # -34 / -55 dBm
    assert ch.metered is True


def test_ad_idle_sample_captured_from_a_real_ad4q():
    frame = "< SAMPLE 1 ALL 255 000 005 033 XX 00 011 00 012 >"
    values = parse_sample(AXIENT, parse_message(frame).tokens)
    assert values.rssi_dbm == (-109.0, -108.0)
    assert values.audio_peak_dbfs == -115.0
    ch = channel(AXIENT, frame, channels=4)
    assert ch.quality is None
    assert ch.antennas == "XX"
    assert ch.rf_dbm == -108.0
    assert ch.rf_percent == 0
    assert ch.rf_antenna_percents == (0, 0)  # noise floor on both antennas, still two levels
    assert ch.audio_dbfs == -87.0  # RMS above peak: odd but real
    assert ch.audio_percent == 13
    assert ch.audio_peak is False


def test_ad_quadversity_sample():
    frame = "< SAMPLE 2 ALL 004 031 102 102 BBBB 31 083 31 068 31 069 31 072 >"
    values = parse_sample(AXIENT, parse_message(frame).tokens)
    assert values.rssi_dbm == (-37.0, -52.0, -51.0, -48.0)
    ch = read(AXIENT, 4, frame).channels[2]
    assert ch.antennas == "AAAA"
    assert ch.quality == 4
    assert ch.rf_dbm == -37.0
    assert ch.rf_antenna_percents == (100, 80, 82, 87)  # A B C D: -37 -52 -51 -48 dBm


def test_ad_fd_c_sample_with_second_rf_section():
    frame = "< SAMPLE 1 ALL 005 031 102 102 BB 31 082 31 060 BB 31 090 31 060 >"
    values = parse_sample(AXIENT, parse_message(frame).tokens)
    assert values.rssi_dbm == (-38.0, -60.0, -30.0, -60.0)
    ch = channel(AXIENT, frame, channels=2)
    assert ch.antennas == "AA"
    assert ch.rf_dbm == -30.0
    assert ch.rf_antenna_percents == (100, 67)  # per antenna, the stronger carrier: -30 / -60 dBm


def test_ad_truncated_second_rf_section_is_tolerated():
    ch = channel(AXIENT, "< SAMPLE 1 ALL 005 031 102 102 BX 31 082 00 010 BB 31 >", channels=2)
    assert ch.antennas == "AX"
    assert ch.rf_dbm == -38.0


@pytest.mark.parametrize(
    "frame",
    [
        "< SAMPLE 1 ALL 005 031 102 102 >",
        "< SAMPLE 1 ALL 005 031 102 102 BB 31 086 31 >",
        "< SAMPLE 1 ALL 005 031 102 102 BQ 31 086 31 065 >",
        "< SAMPLE 1 ALL 0x5 031 102 102 BB 31 086 31 065 >",
    ],
)
def test_ad_malformed_sample_raises(frame):
    with pytest.raises(ProtocolError):
        channel(AXIENT, frame, channels=2)


def test_ad_peak_from_bitmap_bit_7():
    ch = channel(AXIENT, "< SAMPLE 1 ALL 005 128 090 080 BR 31 080 00 010 >", channels=2)
    assert ch.audio_dbfs == -40.0
    assert ch.audio_peak is True
    assert ch.antennas == "AR"


def test_ad_peak_from_level():
    assert channel(AXIENT, "< SAMPLE 1 ALL 005 031 118 100 BB 31 080 31 070 >").audio_peak is True
    assert channel(AXIENT, "< SAMPLE 1 ALL 005 127 117 100 BB 31 080 31 070 >").audio_peak is False


def test_ad_rssi_and_antenna_reps():
    ch = channel(
        AXIENT,
        "< REP 1 RSSI 1 012 >",
        "< REP 1 RSSI 2 050 >",
        "< REP 1 ANTENNA_STATUS BRXX >",
        "< REP 1 AUDIO_LEVEL_RMS 020 >",
        "< REP 1 AUDIO_LED_BITMAP 255 >",
    )
    assert ch.rf_dbm == -70.0
    assert ch.rf_antenna_percents == (0, 50)  # -108 / -70 dBm
    assert ch.antennas == "ARXX"
    assert ch.audio_dbfs == -100.0
    assert ch.audio_peak is True


def test_ad_transmitter_off_sentinels():
    ch = channel(
        AXIENT,
        "< REP 1 TX_MODEL UNKNOWN >",
        "< REP 1 TX_BATT_BARS 255 >",
        "< REP 1 TX_BATT_CHARGE_PERCENT 255 >",
        "< REP 1 TX_BATT_MINS 65535 >",
        "< REP 1 TX_BATT_TYPE UNKN >",
        "< REP 1 TX_OFFSET 255 >",
        "< REP 1 CHAN_QUALITY 255 >",
        "< REP 1 TX_MUTE_MODE_STATUS UNKNOWN >",
        "< REP 1 ANTENNA_STATUS XX >",
        "< REP 1 CHAN_NAME {  } >",
    )
    assert ch.tx_present is False
    assert ch.tx_model is None
    assert ch.battery_bars is None
    assert ch.battery_percent is None
    assert ch.battery_runtime_min is None
    assert ch.battery_type is None
    assert ch.tx_offset_db is None
    assert ch.quality is None
    assert ch.tx_muted is None
    assert ch.antennas == "XX"
    assert ch.name is None


def test_ad_runtime_calculating():
    ch = channel(AXIENT, "< REP 1 TX_MODEL AD2 >", "< REP 1 TX_BATT_MINS 65534 >")
    assert (ch.battery_runtime_min, ch.battery_runtime_state) == (None, RUNTIME_CALCULATING)


# --------------------------------------------------------------------------------------------------------
# PSM1000 (P10T)
# --------------------------------------------------------------------------------------------------------


def test_psm1000_reports_unbraced():
    reading = read(
        PSM1000,
        2,
        "< REPORT 1 CHAN_NAME IEM1 >",
        "< REPORT 1 FREQUENCY 578000 >",
        "< REPORT 1 GROUP_CHAN 01,05 >",
        "< REPORT 1 RF_MUTE 1 >",
        "< REPORT 1 RF_TX_LVL 50 >",
        "< REPORT 2 RF_MUTE 0 >",
        "< REPORT 2 GROUP_CHAN --,-- >",
    )
    one, two = reading.channels[1], reading.channels[2]
    assert one.name == "IEM1"
    assert one.frequency_khz == 578000
    assert one.group_channel == "01,05"
    assert one.audio_muted is True
    assert two.audio_muted is False
    assert two.group_channel is None
    for ch in (one, two):
        assert ch.tx_present is None
        assert ch.battery_bars is None and ch.battery_percent is None and ch.battery_runtime_min is None
        assert ch.rf_antenna_percents is None  # a transmitter: no RF reception at all
        assert ch.metered is False


def test_psm1000_reports_braced():
    ch = channel(PSM1000, "< REPORT 2 CHAN_NAME {Drums   } >", channels=2)
    assert ch.name is None  # that was channel 2
    assert read(PSM1000, 2, "< REPORT 2 CHAN_NAME {Drums   } >").channels[2].name == "Drums"


def test_psm1000_meters_use_the_led_ladder():
    ch = channel(PSM1000, "< REPORT 1 AUDIO_IN_LVL_L 1234567 >", "< REPORT 1 AUDIO_IN_LVL_R 300000 >")
    assert ch.audio_percent == 50  # louder side: 641928 <= 1234567 < 1588744
    assert ch.audio_dbfs is None
    assert ch.metered is True


@pytest.mark.parametrize(
    ("raw", "percent"),
    [("0", 0), ("10271", 0), ("10272", 10), ("23728", 20), ("85488", 30), ("246260", 40),
     ("641928", 50), ("1588744", 60), ("2157767", 70), ("2502969", 70), ("2502970", 80), ("99999999", 80)],
)
def test_psm1000_ladder_thresholds(raw, percent):
    assert psm_level_percent(raw) == percent


def test_psm1000_rejects_sample():
    with pytest.raises(ProtocolError):
        channel(PSM1000, "< SAMPLE 1 ALL AX 092 031 >")
