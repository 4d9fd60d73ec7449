"""Normalized readings returned by every driver.

Drivers turn wire bytes into these plain dataclasses; they know nothing of
Django. ``None`` always means "unknown / not reported", never zero: vendor
sentinels (255, 65535, UNKN, ``--,--`` ...) are mapped to ``None`` by the
driver before a reading leaves it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Antenna states, one character per antenna, in the order the device lists them.
ANTENNA_ACTIVE = "A"  # receiving / selected (ULX "A" or "B" letter, AD blue LED)
ANTENNA_INACTIVE = "I"  # present but not selected
ANTENNA_OFF = "X"  # no signal
ANTENNA_ALERT = "R"  # AD red LED (read as interference/alert, see protocols.md §6)

RUNTIME_CALCULATING = "calculating"  # TX_BATT_MINS 65534
RUNTIME_WARNING = "warning"  # TX_BATT_MINS 65533 (battery communication warning)


@dataclass(slots=True)
class ChannelReading:
    """What one receiver channel (or IEM transmitter channel) reported."""

    number: int
    name: str | None = None
    frequency_khz: int | None = None
    group_channel: str | None = None
    # Transmitter (body pack / handheld) seen on this channel.
    tx_present: bool | None = None  # None: the family cannot tell (PSM1000)
    tx_model: str | None = None
    battery_bars: int | None = None  # 0..5
    battery_percent: int | None = None  # 0..100, only a real percentage (never bars*20)
    battery_runtime_min: int | None = None  # 0..65532
    battery_runtime_state: str | None = None  # RUNTIME_CALCULATING / RUNTIME_WARNING
    battery_type: str | None = None  # ALKA, LION, LITH, NIMH
    tx_offset_db: int | None = None
    tx_muted: bool | None = None
    # Receiver side.
    audio_muted: bool | None = None  # receiver audio mute (PSM1000: RF mute)
    rf_dbm: float | None = None  # strongest antenna
    rf_percent: int | None = None  # clamp(100*(dBm+100)/60, 0, 100)
    # Each antenna's RF level (rf_percent_from_dbm of its dBm), in device order (A, B, C, D); rf_percent is
    # the strongest of them. None when the family reports a single RF figure (ULX-D, QLX-D, PSM1000, an SLX-D
    # with only its 3-field SAMPLE) or the antennas reported are not a complete 1..n run of two or more.
    rf_antenna_percents: tuple[int, ...] | None = None
    antennas: str | None = None  # e.g. "AI", "AR", "XX" (see ANTENNA_* above)
    audio_dbfs: float | None = None
    audio_percent: int | None = None  # clamp(100 + dBFS, 0, 100)
    audio_peak: bool = False
    quality: int | None = None  # AD only, 0..5
    metered: bool = False  # a SAMPLE / meter report arrived for this channel


@dataclass(slots=True)
class ReceiverReading:
    """One complete poll of a receiver."""

    family: str
    device_id: str | None = None
    model: str | None = None
    firmware: str | None = None
    rf_band: str | None = None
    channels: dict[int, ChannelReading] = field(default_factory=dict)
    latency_ms: float | None = None
    error_replies: int = 0  # "< REP ERR >" frames seen during the poll


def rf_percent_from_dbm(dbm: float | None) -> int | None:
    """Common RF window of protocols.md §6: -100 dBm -> 0 %, -40 dBm -> 100 %."""
    if dbm is None:
        return None
    return max(0, min(100, round(100 * (dbm + 100) / 60)))


def audio_percent_from_dbfs(dbfs: float | None) -> int | None:
    """protocols.md §6: audio % = clamp(100 + dBFS, 0, 100)."""
    if dbfs is None:
        return None
    return max(0, min(100, round(100 + dbfs)))


def bars_from_percent(pct: int | None) -> int | None:
    """protocols.md §6: 0 if pct = 0, else min(5, ceil(pct / 20))."""
    if pct is None:
        return None
    if pct <= 0:
        return 0
    return min(5, -(-pct // 20))
