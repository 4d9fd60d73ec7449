"""Board read side: tiles for the front-of-house board, cached by version.

The poll cycle bumps the board version whenever a channel changed; the board
view keys its ETag and its cached tiles on that version, so a refresh where
nothing changed costs one cache read and no SQL at all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from micboard.drivers.base import RUNTIME_CALCULATING, RUNTIME_WARNING
from micboard.models import Channel, Group, GroupSlot
from micboard.status import ChannelStatus

VERSION_KEY = "micboard:board:version"
HEARTBEAT_KEY = "micboard:poller:heartbeat"
DATA_TIMEOUT = 300  # seconds a cached board stays in the cache (versions make it exact)

_PREVIOUS = {ChannelStatus.PREV_GOOD, ChannelStatus.PREV_REPLACE, ChannelStatus.PREV_CRITICAL}
# Tile.antennas letters (micboard.drivers.base ANTENNA_*) as a screen reader hears them.
_ANTENNA_STATES = {"a": "active", "i": "inactive", "x": "no signal", "r": "alert"}


@dataclass(frozen=True, slots=True)
class AntennaMeter:
    """One antenna's RF bar on a tile."""

    letter: str  # A, B, C, D in device order
    percent: int  # 0..100
    state: str  # that antenna's letter in Tile.antennas, lower case ("a" active ...); "" when not reported

    @property
    def state_label(self) -> str:
        return _ANTENNA_STATES.get(self.state, "")


@dataclass(frozen=True, slots=True)
class Tile:
    """Everything one tile shows; plain data so it can be cached."""

    kind: str  # "channel" or "blank"
    slot: int
    channel_id: int | None = None
    title: str = ""
    channel_name: str = ""
    performer: str = ""
    receiver_name: str = ""
    receiver_model: str = ""
    channel_number: int | None = None
    status: str = ""
    status_label: str = ""
    is_iem: bool = False
    battery_bars: int | None = None
    battery_percent: int | None = None
    battery_type: str = ""
    runtime_text: str = ""
    rf_percent: int | None = None
    rf_dbm: float | None = None
    audio_percent: int | None = None
    antennas: str = ""
    rf_antennas: tuple[int, ...] = ()  # RF % per antenna; () when the family reports one figure or offline
    frequency_mhz: str = ""
    tx_offset_db: int | None = None
    quality: int | None = None
    tx_model: str = ""
    muted: bool = False
    prev: bool = False
    hint: str = ""

    @property
    def antenna_meters(self) -> tuple[AntennaMeter, ...]:
        """One RF bar per antenna when two or more levels are known, else () (the tile keeps one RF meter)."""
        if len(self.rf_antennas) < 2:
            return ()
        return tuple(
            AntennaMeter(letter=chr(ord("A") + i), percent=pct, state=self.antennas[i : i + 1].lower())
            for i, pct in enumerate(self.rf_antennas)
        )


@dataclass(frozen=True, slots=True)
class GroupTab:
    name: str
    slug: str


@dataclass(frozen=True, slots=True)
class BoardData:
    version: str
    group: str  # slug, "" for all channels
    groups: tuple[GroupTab, ...]
    tiles: tuple[Tile, ...]
    updated_at: str  # ISO time the data was built


def runtime_text(minutes: int | None, state: str = "") -> str:
    """Format a runtime as H:MM the way the board shows it."""
    if state == RUNTIME_CALCULATING:
        return "calc"
    if state == RUNTIME_WARNING:
        return "warn"
    if minutes is None:
        return ""
    return f"{minutes // 60}:{minutes % 60:02d}"


def antenna_levels(text: str) -> tuple[int, ...]:
    """Parse ``Transmitter.rf_antennas``: ``"72,65"`` -> ``(72, 65)``; empty or malformed -> ``()``."""
    parts = text.split(",") if text else []
    if not all(p.isascii() and p.isdigit() for p in parts):
        return ()
    return tuple(min(100, int(p)) for p in parts)


def tile_for_channel(channel: Channel, *, slot: int) -> Tile:
    """Build the tile of one channel (its relations must be loaded: see ``for_board()``)."""
    receiver = channel.receiver
    tx = getattr(channel, "transmitter", None)
    assignment = getattr(channel, "assignment", None)
    performer = assignment.performer.name if assignment else ""
    status = ChannelStatus(channel.status)
    prev = status in _PREVIOUS
    hint = ""
    if status == ChannelStatus.RX_COM_ERROR:
        connection = getattr(receiver, "connection", None)
        hint = connection.last_error if connection and connection.last_error else "Not polled yet"
    live = tx is not None and tx.present and status not in (ChannelStatus.RX_COM_ERROR, ChannelStatus.UNASSIGNED)
    if tx is None:
        bars = percent = None
        runtime = ""
    elif prev:
        bars, percent = tx.last_battery_bars, tx.last_battery_percent
        runtime = runtime_text(tx.last_runtime_minutes)
    elif live:
        bars, percent = tx.battery_bars, tx.battery_percent
        runtime = runtime_text(tx.runtime_minutes, tx.runtime_state)
    else:
        bars = percent = None
        runtime = ""
    online = status not in (ChannelStatus.RX_COM_ERROR, ChannelStatus.UNASSIGNED)
    return Tile(
        kind="channel",
        slot=slot,
        channel_id=channel.pk,
        title=performer or channel.name or f"{receiver.name} {channel.number}",
        channel_name=channel.name,
        performer=performer,
        receiver_name=receiver.name,
        receiver_model=receiver.model,
        channel_number=channel.number,
        status=status.value,
        status_label=status.label,
        is_iem=receiver.is_iem,
        battery_bars=bars,
        battery_percent=percent,
        battery_type=(tx.battery_type if tx and (live or prev) else ""),
        runtime_text=runtime,
        rf_percent=tx.rf_percent if tx and online else None,
        rf_dbm=tx.rf_dbm if tx and online else None,
        audio_percent=tx.audio_percent if tx and online else None,
        antennas=tx.antennas if tx and online else "",
        rf_antennas=antenna_levels(tx.rf_antennas) if tx and online else (),
        frequency_mhz=channel.frequency_mhz,
        tx_offset_db=tx.tx_offset_db if live else None,
        quality=tx.quality if tx and online else None,
        tx_model=tx.model if live else "",
        muted=bool(tx and online and (tx.muted or tx.audio_muted)),
        prev=prev,
        hint=hint,
    )


class BoardService:
    """Read side of the board and its cache version."""

    @staticmethod
    def version() -> str:
        """The current board version (created on first use)."""
        version = cache.get(VERSION_KEY)
        if version is None:
            version = str(time.time_ns())
            cache.add(VERSION_KEY, version, timeout=None)
            version = cache.get(VERSION_KEY, version)
        return version

    @staticmethod
    def bump_version() -> str:
        """Mark the board as changed; every client re-renders on its next refresh."""
        version = str(time.time_ns())
        cache.set(VERSION_KEY, version, timeout=None)
        return version

    @staticmethod
    def bump_version_on_commit() -> None:
        """Bump the version once the current transaction (if any) has committed."""
        transaction.on_commit(BoardService.bump_version)

    @staticmethod
    def record_heartbeat(*, at: float | None = None) -> None:
        """Called by the poll cycle after every run."""
        cache.set(HEARTBEAT_KEY, at if at is not None else time.time(), timeout=None)

    @staticmethod
    def staleness(*, now: float | None = None) -> str:
        """Why the board's data is stale, or "" when the poller is running.

        Returns:
            A short reason for the banner ("poller not running", "poller stopped 40 s ago").
        """
        beat = cache.get(HEARTBEAT_KEY)
        if beat is None:
            return "the poller has not run yet"
        age = (now if now is not None else time.time()) - beat
        limit = 3 * settings.MICBOARD_POLL_INTERVAL + settings.MICBOARD_POLL_TIMEOUT + 2
        if age > limit:
            return f"the poller stopped {int(age)} s ago"
        return ""

    @staticmethod
    def board(*, group: str = "") -> BoardData:
        """The tiles of one group (or of every channel), from the cache when current.

        Raises:
            micboard.exceptions.DeviceNotFoundError: no group has that slug.
        """
        version = BoardService.version()
        key = f"micboard:board:data:{version}:{group}"
        data = cache.get(key)
        if data is None:
            data = BoardService.build(group=group, version=version)
            cache.set(key, data, timeout=DATA_TIMEOUT)
        return data

    @staticmethod
    def build(*, group: str, version: str) -> BoardData:
        """Build the board from the database in a constant number of queries."""
        from micboard.exceptions import DeviceNotFoundError

        groups = tuple(GroupTab(name=g.name, slug=g.slug) for g in Group.objects.all())
        if group:
            if group not in {g.slug for g in groups}:
                raise DeviceNotFoundError(f"No group {group!r}")
            slots = GroupSlot.objects.filter(group__slug=group).select_related(
                "channel__receiver",
                "channel__receiver__connection",
                "channel__transmitter",
                "channel__assignment__performer",
            )
            tiles = tuple(
                tile_for_channel(s.channel, slot=i) if s.channel else Tile(kind="blank", slot=i)
                for i, s in enumerate(slots, start=1)
            )
        else:
            channels = Channel.objects.for_board().filter(receiver__active=True)
            tiles = tuple(tile_for_channel(c, slot=i) for i, c in enumerate(channels, start=1))
        return BoardData(
            version=version,
            group=group,
            groups=groups,
            tiles=tiles,
            updated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
