"""Channel status: the one place that decides a tile's colour.

The states and their order follow the original micboard: a receiver that does
not answer beats everything (RX_COM_ERROR); a present pack is judged by its
battery bars, a recent audio peak wins over the battery colour; a pack that
went silent keeps its last battery for a while (PREV_*), then becomes
TX_COM_ERROR. Whether a pack is present is what the receiver says about the
transmitter (TX type / model, see the drivers), never the battery alone: a pack that
is on but reports no battery bars is BATTERY_UNKNOWN, and its peaks show.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models


class ChannelStatus(models.TextChoices):
    GOOD = "GOOD", "Good"
    REPLACE = "REPLACE", "Replace"
    CRITICAL = "CRITICAL", "Critical"
    PREV_GOOD = "PREV_GOOD", "Off (was good)"
    PREV_REPLACE = "PREV_REPLACE", "Off (was replace)"
    PREV_CRITICAL = "PREV_CRITICAL", "Off (was critical)"
    AUDIO_PEAK = "AUDIO_PEAK", "Audio peak"
    BATTERY_UNKNOWN = "BATTERY_UNKNOWN", "Battery unknown"
    TX_COM_ERROR = "TX_COM_ERROR", "No transmitter"
    RX_COM_ERROR = "RX_COM_ERROR", "Receiver offline"
    UNASSIGNED = "UNASSIGNED", "Not monitored"


ATTENTION_STATUSES = frozenset(
    {ChannelStatus.CRITICAL, ChannelStatus.REPLACE, ChannelStatus.RX_COM_ERROR, ChannelStatus.AUDIO_PEAK}
)


def battery_status(bars: int) -> ChannelStatus:
    """GOOD / REPLACE / CRITICAL for a bar count, with the thresholds from settings."""
    if bars >= settings.MICBOARD_BATTERY_GOOD_BARS:
        return ChannelStatus.GOOD
    if bars >= settings.MICBOARD_BATTERY_REPLACE_BARS:
        return ChannelStatus.REPLACE
    return ChannelStatus.CRITICAL


_PREVIOUS = {
    ChannelStatus.GOOD: ChannelStatus.PREV_GOOD,
    ChannelStatus.REPLACE: ChannelStatus.PREV_REPLACE,
    ChannelStatus.CRITICAL: ChannelStatus.PREV_CRITICAL,
}


def compute_status(
    *,
    now: datetime,
    receiver_active: bool,
    receiver_online: bool,
    is_iem: bool,
    tx_present: bool | None,
    battery_bars: int | None,
    last_peak_at: datetime | None,
    last_battery_bars: int | None,
    last_battery_at: datetime | None,
) -> ChannelStatus:
    """Decide the status of one channel.

    Args:
        now: the time to judge against (peaks and PREV_* windows are time-bound).
        receiver_active: monitoring is enabled for the receiver.
        receiver_online: the receiver answered its recent polls.
        is_iem: an in-ear monitor transmitter channel (no pack, no battery).
        tx_present: a transmitter is on the channel (None: unknown), as the receiver reports it.
        battery_bars: current bars 0-5, None when unknown.
        last_peak_at: when audio last peaked.
        last_battery_bars / last_battery_at: the last valid battery reading.
    Returns:
        The ChannelStatus for the tile.
    """
    if not receiver_active:
        return ChannelStatus.UNASSIGNED
    if not receiver_online:
        return ChannelStatus.RX_COM_ERROR
    if is_iem:
        return ChannelStatus.GOOD
    if tx_present:
        if last_peak_at and now - last_peak_at <= timedelta(seconds=settings.MICBOARD_PEAK_WINDOW):
            return ChannelStatus.AUDIO_PEAK
        if battery_bars is None:
            return ChannelStatus.BATTERY_UNKNOWN  # on, but no bars: neither "no transmitter" nor "off"
        return battery_status(battery_bars)
    if (
        last_battery_bars is not None
        and last_battery_at is not None
        and now - last_battery_at <= timedelta(seconds=settings.MICBOARD_PREVIOUS_WINDOW)
    ):
        return _PREVIOUS[battery_status(last_battery_bars)]
    return ChannelStatus.TX_COM_ERROR
