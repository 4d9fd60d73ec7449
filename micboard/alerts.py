"""Alert rules: one pure function per kind, deciding from stored values whether its condition holds now.

Like ``micboard.status``, nothing here reads the database: ``micboard.services.alerts`` loads the rows,
calls these and keeps the alerts. Each function returns a :class:`Hit` while its condition holds (the
text the crew reads, and for time-bound kinds the part that must stay the same for the wait to run on),
or None when it does not. How long a condition must hold before it opens an alert is the service's
business (:func:`hold_seconds`); these functions only look at the present.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.db import models

from micboard.drivers.base import ANTENNA_ACTIVE, ANTENNA_ALERT


class AlertKind(models.TextChoices):
    BATTERY = "battery", "Battery low"
    TX_OFF = "tx_off", "Transmitter off"
    OFFLINE = "offline", "Receiver offline"
    DROPOUT = "dropout", "RF dropout"
    DIVERSITY = "diversity", "Diversity stuck"
    PEAK = "peak", "Audio peak"
    INTERFERENCE = "interference", "Interference"
    CONTROL_DISABLED = "control_disabled", "Third-party control off"
    RUNTIME_TREND = "runtime_trend", "Battery draining fast"


@dataclass(frozen=True, slots=True)
class Hit:
    """A condition that holds: ``detail`` for the crew; ``key`` changes restart a time-bound wait."""

    detail: str
    key: str = ""


@dataclass(frozen=True, slots=True)
class Rules:
    """The thresholds in force for one channel, and the kinds switched on (settings MICBOARD_ALERT_*)."""

    battery_bars: int | None = 1
    battery_minutes: int | None = 30
    off_grace_seconds: int = 60
    rf_dbm: float = -85.0
    rf_seconds: int = 2
    diversity_seconds: int = 300
    peak_seconds: int = 30
    trend_factor: float = 1.5
    trend_minutes: float = 10.0
    kinds: frozenset[str] = frozenset(AlertKind.values)


def default_rules() -> Rules:
    """The rules of every channel without overrides, from the MICBOARD_ALERT_* settings."""
    return Rules(
        battery_bars=settings.MICBOARD_ALERT_BATTERY_BARS,
        battery_minutes=settings.MICBOARD_ALERT_BATTERY_MINUTES,
        off_grace_seconds=settings.MICBOARD_ALERT_OFF_GRACE,
        rf_dbm=settings.MICBOARD_ALERT_RF_DBM,
        rf_seconds=settings.MICBOARD_ALERT_RF_SECONDS,
        diversity_seconds=settings.MICBOARD_ALERT_DIVERSITY_SECONDS,
        peak_seconds=settings.MICBOARD_ALERT_PEAK_SECONDS,
        trend_factor=settings.MICBOARD_ALERT_TREND_FACTOR,
        trend_minutes=settings.MICBOARD_ALERT_TREND_MINUTES,
        kinds=frozenset(settings.MICBOARD_ALERT_KINDS),
    )


def overridden(rules: Rules, **overrides) -> Rules:
    """``rules`` with the overrides that are set (None: keep the default)."""
    values = {name: value for name, value in overrides.items() if value is not None}
    return replace(rules, **values) if values else rules


def _hm(minutes: int) -> str:
    return f"{minutes // 60}:{minutes % 60:02d}"


def battery(*, rules: Rules, tx_present: bool, bars: int | None, minutes: int | None) -> Hit | None:
    """At or below N bars, or M minutes left (an unknown figure never counts as low)."""
    if AlertKind.BATTERY not in rules.kinds or not tx_present:
        return None
    low_bars = rules.battery_bars is not None and bars is not None and bars <= rules.battery_bars
    low_minutes = rules.battery_minutes is not None and minutes is not None and minutes <= rules.battery_minutes
    if not (low_bars or low_minutes):
        return None
    parts = []
    if bars is not None:
        parts.append(f"{bars} bar{'' if bars == 1 else 's'}")
    if minutes is not None:
        parts.append(f"{_hm(minutes)} left")
    return Hit("Battery low: " + ", ".join(parts) + "; swap the pack")


def tx_off(*, rules: Rules, receiver_online: bool, is_iem: bool, tx_present: bool, seen_before: bool) -> Hit | None:
    """A pack that was on is now off while someone is assigned (the grace period is the service's wait)."""
    if AlertKind.TX_OFF not in rules.kinds or is_iem or not receiver_online or tx_present or not seen_before:
        return None
    return Hit("Transmitter switched off while assigned; check the pack is on")


def offline(*, rules: Rules, active: bool, online: bool, polled: bool) -> Hit | None:
    """A monitored receiver that stopped answering (never before its first poll)."""
    if AlertKind.OFFLINE not in rules.kinds or not active or online or not polled:
        return None
    return Hit("Receiver not answering; check its power and network cable")


# The drivers' hint for a unit that accepts a connection and says nothing (micboard.drivers.shure): on an
# SLX-D that is what third-party control switched off looks like. The unit cannot say so itself, so this is
# read from the stored error of an SLX-D only, and tells the crew what to check.
_SILENT_HINT = "third-party control"


def control_disabled(*, rules: Rules, active: bool, online: bool, family: str, last_error: str) -> Hit | None:
    """An SLX-D that stays silent: third-party control is most likely off in its network settings."""
    if AlertKind.CONTROL_DISABLED not in rules.kinds or not active or online or family != "slxd":
        return None
    if _SILENT_HINT not in last_error:
        return None
    return Hit("SLX-D third-party control is off: enable it in the receiver's advanced network settings")


def dropout(*, rules: Rules, tx_present: bool, rf_dbm: float | None) -> Hit | None:
    """RF below X dBm from a pack that is on (held for Y seconds by the service)."""
    if AlertKind.DROPOUT not in rules.kinds or not tx_present or rf_dbm is None or rf_dbm >= rules.rf_dbm:
        return None
    return Hit(f"RF {rf_dbm:.0f} dBm, below {rules.rf_dbm:.0f} dBm: check the antennas and the pack's position")


def diversity(*, rules: Rules, tx_present: bool, antennas: str) -> Hit | None:
    """Two or more antennas and always the same single one receiving (held for Z seconds by the service)."""
    if AlertKind.DIVERSITY not in rules.kinds or not tx_present or len(antennas) < 2:
        return None
    active = [i for i, state in enumerate(antennas) if state == ANTENNA_ACTIVE]
    if len(active) != 1:
        return None
    name = "ABCDEFGH"[active[0]]
    return Hit(f"Only antenna {name} receives; check the other antennas and their cables", key=name)


def peak(*, rules: Rules, tx_present: bool, last_peak_at: datetime | None, now: datetime, window: float) -> Hit | None:
    """Audio peaked within the peak window (the board's PEAK badge).

    One peak is the tile's PEAK badge, not an alert: the service holds this for ``peak_seconds``
    (:func:`hold_seconds`), so only a pack that keeps peaking (each peak within the window of the last)
    alerts, a gain set too hot. A lively demo rig opened an alert every two seconds without the hold.
    """
    if (
        AlertKind.PEAK not in rules.kinds
        or not tx_present
        or last_peak_at is None
        or now - last_peak_at > timedelta(seconds=window)
    ):
        return None
    return Hit("Audio peaking again and again: check the pack's gain")


def interference(*, rules: Rules, tx_present: bool, antennas: str) -> Hit | None:
    """An antenna in the alert state (Axient Digital's red LED).

    protocols.md marks reading red as interference [U]: the drivers map it to ANTENNA_ALERT and nothing
    else, so this fires on that state only and says what the receiver showed.
    """
    if AlertKind.INTERFERENCE not in rules.kinds or not tx_present or ANTENNA_ALERT not in antennas:
        return None
    names = ", ".join("ABCDEFGH"[i] for i, state in enumerate(antennas) if state == ANTENNA_ALERT)
    return Hit(f"Interference indicated on antenna {names}; check the frequency coordination", key=names)


# A rise of more than this many minutes is a new pack (or a runtime recalculated): the trend starts again.
SWAP_RISE = 3


class Drop(NamedTuple):
    """How far a pack's runtime fell since its last swap (``runtime_drop``)."""

    fallen: int  # runtime minutes
    minutes: float  # wall minutes it took
    last_runtime: int  # the last runtime read: a pack reading much more now was swapped since


def runtime_drop(points: Sequence[tuple[datetime, int | None, bool | None]]) -> Drop | None:
    """How far a pack's runtime fell since its last swap (:class:`Drop`), or None.

    ``points`` are (time, runtime minutes, pack present), oldest first, as the history holds them. Unknown
    and calculating runtimes (None) are skipped; a pack switched off, or a runtime that rises by more
    than SWAP_RISE minutes (a swap), starts the stretch again, so a fresh pack is never compared with the
    one it replaced. None when the stretch has fewer than two runtimes.
    """
    first: tuple[datetime, int] | None = None
    last: tuple[datetime, int] | None = None
    for at, minutes, present in points:
        if present is False:
            first = last = None
            continue
        if minutes is None:
            continue
        if last is not None and minutes > last[1] + SWAP_RISE:
            first = None
        if first is None:
            first = (at, minutes)
        last = (at, minutes)
    if first is None or last is None or last[0] <= first[0]:
        return None
    return Drop(first[1] - last[1], (last[0] - first[0]).total_seconds() / 60, last[1])


def swapped_since(drop: Drop, runtime_now: int | None) -> bool:
    """Whether the pack reads a fresh battery since ``drop`` was measured (its figures are another pack's)."""
    return runtime_now is not None and runtime_now > drop.last_runtime + SWAP_RISE


def runtime_trend(
    *, rules: Rules, tx_present: bool, dropped: int | None, elapsed_minutes: float | None, holding: bool = False
) -> Hit | None:
    """A pack whose runtime fell faster than the clock by more than ``trend_factor`` over at least
    ``trend_minutes`` of history (``runtime_drop``). Runtimes are whole minutes, so one minute of the fall
    is allowed for rounding: a healthy pack never trips it.

    ``holding`` (the alert is open already): it holds until the fall slows to half the factor's excess
    over the clock (1.25 for 1.5). A pack draining right at the factor would otherwise open and resolve it
    every time the runtime's last whole minute ticks over.
    """
    if AlertKind.RUNTIME_TREND not in rules.kinds or not tx_present or dropped is None or elapsed_minutes is None:
        return None
    factor = 1 + (rules.trend_factor - 1) / 2 if holding else rules.trend_factor
    if elapsed_minutes < rules.trend_minutes or dropped - 1 <= factor * elapsed_minutes:
        return None
    return Hit(
        f"Battery draining fast: runtime fell {dropped} min in {elapsed_minutes:.0f} min; "
        "check the pack and have a fresh one ready"
    )


def hold_seconds(kind: str, rules: Rules) -> float:
    """How long a condition must hold before it opens an alert."""
    if kind == AlertKind.TX_OFF:
        return float(rules.off_grace_seconds)
    if kind == AlertKind.DROPOUT:
        return float(rules.rf_seconds)
    if kind == AlertKind.DIVERSITY:
        return float(rules.diversity_seconds)
    if kind == AlertKind.PEAK:
        return float(rules.peak_seconds)
    return 0.0
