"""Channel status logic: what colour a tile shows."""

from datetime import UTC, datetime, timedelta

import pytest

from micboard.status import ChannelStatus, compute_status

NOW = datetime(2026, 11, 27, 20, 0, tzinfo=UTC)


def status(**overrides):
    values = dict(
        now=NOW,
        receiver_active=True,
        receiver_online=True,
        is_iem=False,
        tx_present=True,
        battery_bars=5,
        last_peak_at=None,
        last_battery_bars=5,
        last_battery_at=NOW,
    )
    values.update(overrides)
    return compute_status(**values)


@pytest.mark.parametrize(
    ("bars", "expected"),
    [
        (5, ChannelStatus.GOOD),
        (4, ChannelStatus.GOOD),
        (3, ChannelStatus.REPLACE),
        (2, ChannelStatus.CRITICAL),
        (1, ChannelStatus.CRITICAL),
        (0, ChannelStatus.CRITICAL),
    ],
)
def test_battery_bars_decide_the_colour(bars, expected):
    assert status(battery_bars=bars) == expected


def test_thresholds_come_from_settings(settings):
    settings.MICBOARD_BATTERY_GOOD_BARS = 5
    settings.MICBOARD_BATTERY_REPLACE_BARS = 4
    assert status(battery_bars=4) == ChannelStatus.REPLACE
    assert status(battery_bars=3) == ChannelStatus.CRITICAL


def test_offline_receiver_beats_everything():
    assert status(receiver_online=False, last_peak_at=NOW) == ChannelStatus.RX_COM_ERROR


def test_inactive_receiver_is_unassigned():
    assert status(receiver_active=False, receiver_online=False) == ChannelStatus.UNASSIGNED


def test_recent_peak_shows_audio_peak_then_expires():
    assert status(last_peak_at=NOW - timedelta(seconds=3)) == ChannelStatus.AUDIO_PEAK
    assert status(last_peak_at=NOW - timedelta(seconds=11)) == ChannelStatus.GOOD


@pytest.mark.parametrize(
    ("last_bars", "expected"),
    [(5, ChannelStatus.PREV_GOOD), (3, ChannelStatus.PREV_REPLACE), (1, ChannelStatus.PREV_CRITICAL)],
)
def test_pack_switched_off_keeps_its_last_battery_for_30_minutes(last_bars, expected):
    off = dict(tx_present=False, battery_bars=None, last_battery_bars=last_bars)
    assert status(**off, last_battery_at=NOW - timedelta(minutes=29)) == expected
    assert status(**off, last_battery_at=NOW - timedelta(minutes=31)) == ChannelStatus.TX_COM_ERROR


def test_never_seen_pack_is_tx_com_error():
    assert (
        status(tx_present=False, battery_bars=None, last_battery_bars=None, last_battery_at=None)
        == ChannelStatus.TX_COM_ERROR
    )


def test_present_pack_without_battery_reading_is_battery_unknown_not_off():
    # The pack is on (the receiver reports its model): neither "Off (was good)" nor "No transmitter".
    assert status(tx_present=True, battery_bars=None, last_battery_bars=4) == ChannelStatus.BATTERY_UNKNOWN
    assert (
        status(tx_present=True, battery_bars=None, last_battery_bars=None, last_battery_at=None)
        == ChannelStatus.BATTERY_UNKNOWN
    )
    assert ChannelStatus.BATTERY_UNKNOWN.label == "Battery unknown"


def test_peak_shows_on_a_present_pack_with_unknown_battery():
    assert status(tx_present=True, battery_bars=None, last_peak_at=NOW) == ChannelStatus.AUDIO_PEAK
    assert status(tx_present=True, battery_bars=None, last_peak_at=NOW - timedelta(seconds=11)) == (
        ChannelStatus.BATTERY_UNKNOWN
    )


def test_peak_on_a_switched_off_pack_is_not_shown():
    assert (
        status(tx_present=False, battery_bars=None, last_peak_at=NOW, last_battery_bars=2)
        == ChannelStatus.PREV_CRITICAL
    )


def test_iem_channel_is_good_while_its_transmitter_answers():
    assert status(is_iem=True, tx_present=None, battery_bars=None) == ChannelStatus.GOOD
    assert status(is_iem=True, receiver_online=False) == ChannelStatus.RX_COM_ERROR
