"""Board read side: tiles for the front-of-house board, cached by version.

The poll cycle bumps the board version whenever a channel changed; the board
view keys its ETag and its cached tiles on that version, so a refresh where
nothing changed costs one read of the coordination store and no SQL at all.

The version and the poller's heartbeat live in :mod:`micboard.coordination`
(never evicted). The cache holds one built board per group, replaced when the
version moves on, so it cannot grow with the number of versions; losing it (a
culled entry, a cache that is down) only costs a rebuild from the database.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from django.conf import settings
from django.utils import timezone

from micboard import caching, coordination
from micboard.drivers.base import RUNTIME_CALCULATING, RUNTIME_WARNING
from micboard.exceptions import CoordinationError, DeviceNotFoundError
from micboard.metrics import track_service_metrics
from micboard.models import Channel, Group, GroupSlot
from micboard.query_optimization import QueryOptimizer
from micboard.services.alerts import LiveAlertService, TileAlert
from micboard.services.charts import SparklineService
from micboard.status import ChannelStatus

logger = logging.getLogger("micboard.board")

_SLUG = re.compile(r"[-\w]{1,64}")
NAMESPACE = "board"  # the cache namespace whose version is the board version (micboard.caching)
VERSION_KEY = caching.namespace_version_key(NAMESPACE)  # "board:version" in the coordination store
HEARTBEAT_KEY = "poller:heartbeat"
DATA_TIMEOUT = caching.DAY  # seconds; the version inside the entry decides whether it is current


def data_key(group: str) -> str:
    """Cache key of the latest built board of a group (one entry each, replaced as the version moves on)."""
    return caching.cache_key(NAMESPACE, "data", group)

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
    runtime_minutes: int | None = None  # what runtime_text shows, as minutes (None: unknown, calc or warn)
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
    offline: bool = False  # the receiver is not answering (RX_COM_ERROR): values shown are its last known
    battery_stale: bool = False  # battery and runtime are the last known ones, not a live reading
    last_seen: str = ""  # ISO time the pack (its receiver when offline) was last heard; "" when live or never
    last_seen_text: str = ""  # that time as the crew reads it, in TIME_ZONE: "20:14" or "27 Nov 20:14"
    battery_spark: str = ""  # SVG path of the battery over the last 30 minutes (micboard.services.charts), "" none
    alert_state: str = ""  # its most urgent live alert: "open" (flashes), "acknowledged" (marked); "" for none
    alert_text: str = ""  # that alert's short text ("Battery low", "Battery low +1")

    @property
    def title_size(self) -> str:
        """"", "long" or "xlong": long names get smaller type (then an ellipsis), never a second row."""
        length = len(self.title)
        return "xlong" if length > 24 else "long" if length > 14 else ""

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
    degraded: str = ""  # why live updates are impaired (coordination store down); "" when all is well
    states: tuple[str, ...] = ()  # tile_state() of each tile, in order (computed once, when the board is built)


STATE_CHARS = 16  # length of a tile_state(): 8 bytes of BLAKE2b as hex


def tile_state(tile: Tile) -> str:
    """A digest of everything a tile shows (its displayed state), the same in every process.

    Tiles hold values already quantised to what a tile shows (``level()``, whole dBm, minutes), so
    a meter moving within its 5 % step or a signal moving by a fraction of a dBm is the same
    state. Two tiles with one state render to the same HTML: renders are cached by this digest, and
    a refresh compares digests to send only the tiles that changed (``web/board_tiles.py``).
    """
    return hashlib.blake2b(repr(tile).encode(), digest_size=STATE_CHARS // 2).hexdigest()


def level(percent: int | None) -> int | None:
    """A meter's percentage in the 5 % steps a meter draws (half-up): 72 -> 70, 73 -> 75; None stays None."""
    if percent is None:
        return None
    return min(100, max(0, 5 * ((int(percent) * 2 + 5) // 10)))


def whole_dbm(dbm: float | None) -> float | None:
    """An RF level in the whole dBm a tile prints (half away from zero): -55.4 -> -55.0, -55.5 -> -56.0."""
    if dbm is None:
        return None
    return float(int(dbm - 0.5) if dbm < 0 else int(dbm + 0.5))


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
    """``Transmitter.rf_antennas`` as meter levels: ``"72,65"`` -> ``(70, 65)``; empty or malformed -> ``()``."""
    parts = text.split(",") if text else []
    if not all(p.isascii() and p.isdigit() for p in parts):
        return ()
    return tuple(level(int(p)) for p in parts)


def tile_for_channel(
    channel: Channel,
    *,
    slot: int,
    built_at: datetime | None = None,
    spark: str = "",
    alert: TileAlert | None = None,
) -> Tile:
    """Build the tile of one channel (its relations must be loaded: see ``for_board()``).

    Meters and the RF level are quantised to what the tile shows (``level()``, ``whole_dbm()``), so
    the tile (and its ``tile_state()``) changes only when its screen would.

    Args:
        slot: the tile number shown (``Channel.board_position`` on "All", ``GroupSlot.position`` in a group).
        built_at: when the board is built; a last-seen time on another day shows its date.
        spark: the battery sparkline's path (``SparklineService.tile_paths``; changes once a minute at most).
        alert: the live alert the tile carries (``LiveAlertService.tile_alert``), if any.
    """
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
    offline = status == ChannelStatus.RX_COM_ERROR
    battery_stale = False
    minutes = None
    if tx is None:
        bars = percent = None
        runtime = ""
    elif offline and _last_battery_current(tx, receiver.last_seen):
        # The receiver stopped answering: keep what it last said about the pack, shown as old.
        bars, percent, minutes = tx.last_battery_bars, tx.last_battery_percent, tx.last_runtime_minutes
        runtime = runtime_text(minutes)
        battery_stale = True
    elif prev:
        bars, percent, minutes = tx.last_battery_bars, tx.last_battery_percent, tx.last_runtime_minutes
        runtime = runtime_text(minutes)
    elif live:
        bars, percent = tx.battery_bars, tx.battery_percent
        runtime = runtime_text(tx.runtime_minutes, tx.runtime_state)
        minutes = tx.runtime_minutes if not tx.runtime_state else None
    else:
        bars = percent = None
        runtime = ""
    if live:
        seen = None
    elif status == ChannelStatus.RX_COM_ERROR:
        seen = receiver.last_seen  # when the receiver last answered (the pack's own time ran on until then)
    else:
        seen = tx.last_seen if tx else None
    seen_iso, seen_text = _seen(seen, built_at)
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
        battery_type=(tx.battery_type if tx and (live or prev or battery_stale) else ""),
        runtime_text=runtime,
        runtime_minutes=minutes,
        rf_percent=level(tx.rf_percent) if tx and online else None,
        rf_dbm=whole_dbm(tx.rf_dbm) if tx and online else None,
        audio_percent=level(tx.audio_percent) if tx and online else None,
        antennas=tx.antennas if tx and online else "",
        rf_antennas=antenna_levels(tx.rf_antennas) if tx and online else (),
        frequency_mhz=channel.frequency_mhz,
        tx_offset_db=tx.tx_offset_db if live else None,
        quality=tx.quality if tx and online else None,
        tx_model=tx.model if live else "",
        muted=bool(tx and online and (tx.muted or tx.audio_muted)),
        prev=prev,
        hint=hint,
        offline=offline,
        battery_stale=battery_stale,
        last_seen=seen_iso,
        last_seen_text=seen_text,
        battery_spark="" if receiver.is_iem else spark,
        alert_state=alert.state if alert else "",
        alert_text=alert.text if alert else "",
    )


def _last_battery_current(tx, receiver_seen: datetime | None) -> bool:
    """Whether the pack's last battery reading is worth showing on an offline receiver's tile.

    It is when the pack was on within the previous-pack window before the receiver's last answer
    (a pack switched off long before keeps its battery no longer, as on a live receiver).
    """
    if tx.last_battery_at is None or tx.last_battery_bars is None or receiver_seen is None:
        return False
    return (receiver_seen - tx.last_battery_at).total_seconds() <= settings.MICBOARD_PREVIOUS_WINDOW


def _seen(at: datetime | None, built_at: datetime | None) -> tuple[str, str]:
    """A receiver's last answer as (ISO time, "HH:MM" in the server's time zone).

    A fixed time, never an age: the render is cached and shared. The date is added when it is
    not the day the board was built.
    """
    if at is None:
        return "", ""
    local = timezone.localtime(at)
    text = local.strftime("%H:%M")
    if built_at is not None and timezone.localtime(built_at).date() != local.date():
        text = f"{local.day} {local.strftime('%b')} {text}"
    return at.astimezone(UTC).isoformat(timespec="seconds"), text


def poller_silence_limit() -> float:
    """Seconds without a heartbeat after which the poller counts as stopped.

    Link holders beat every second; this is longer than anything a live system can take between two
    beats: a dead holder's leases lapsing (one lease) before another consumer's holder takes over, one
    poll time-out, and 3 s of slack (a slow database write).
    """
    return settings.MICBOARD_LINK_LEASE + settings.MICBOARD_POLL_TIMEOUT + 3


class BoardService:
    """Read side of the board and its version."""

    @staticmethod
    def version() -> str:
        """The current board version (created on first use).

        Raises:
            CoordinationError: the coordination store is unreachable.
        """
        return caching.namespace_version(NAMESPACE)

    @staticmethod
    def bump_version() -> str:
        """Mark the board as changed; every client re-renders on its next refresh.

        The board version is the version of the "board" cache namespace, so this also invalidates
        everything cached under it (``micboard.caching``: tiles, grids, sheet rows ...).

        Raises:
            CoordinationError: the coordination store is unreachable.
        """
        return caching.bump_namespace(NAMESPACE)

    @staticmethod
    def bump_version_on_commit() -> None:
        """Bump the version (``invalidate_cache("board")``) once the current transaction (if any) has committed.

        Every setup write calls this. A store that is down by then is logged, not raised: the change
        is committed, and screens pick it up with the next change (or re-render while the store is
        down anyway).
        """
        caching.invalidate_cache_on_commit(NAMESPACE)

    @staticmethod
    def record_heartbeat(*, at: float | None = None) -> None:
        """Called by every link holder each second (and by a poll cycle). Raises: CoordinationError."""
        coordination.store().set(HEARTBEAT_KEY, repr(at if at is not None else time.time()))

    @staticmethod
    def heartbeat() -> float | None:
        """When a holder (or poll cycle) last reported in (epoch seconds), None if never. Raises: CoordinationError."""
        beat = coordination.store().get(HEARTBEAT_KEY)
        try:
            return float(beat) if beat is not None else None
        except ValueError:
            return None

    @staticmethod
    def staleness(*, now: float | None = None) -> str:
        """Why the board's data is stale, or "" when the poller is running (for logs and /healthz).

        Returns:
            A short reason ("the poller has not run yet", "the poller stopped 40 s ago", or the
            coordination store's error).
        """
        try:
            beat = BoardService.heartbeat()
        except CoordinationError as exc:
            return str(exc)
        if beat is None:
            return "the poller has not run yet"
        age = (now if now is not None else time.time()) - beat
        if age > poller_silence_limit():
            return f"the poller stopped {int(age)} s ago"
        return ""

    @staticmethod
    def board(*, group: str = "") -> BoardData:
        """The tiles of one group (or of every channel), from the cache when current.

        With the coordination store down the board is built from the database on every call and
        says so in ``degraded``.

        Raises:
            micboard.exceptions.DeviceNotFoundError: no group has that slug.
        """
        if group and not _SLUG.fullmatch(group):
            raise DeviceNotFoundError(f"No group {group[:64]!r}")  # not even a slug: no cache key from it
        try:
            version = BoardService.version()
        except CoordinationError as exc:
            logger.warning("serving the board from the database: %s", exc)
            return replace(
                BoardService.build(group=group, version=""),
                degraded="live updates are impaired: the coordination store is not answering",
            )
        return caching.versioned(
            data_key(group),
            lambda: BoardService.build(group=group, version=version),
            version=version,
            timeout=DATA_TIMEOUT,
        )

    @staticmethod
    @track_service_metrics
    def build(*, group: str, version: str) -> BoardData:
        """Build the board from the database in a constant number of queries."""
        now = datetime.now(UTC)
        sparks = SparklineService.tile_paths(now=now)  # one cache read: drawn once a minute by a Huey task
        groups = tuple(GroupTab(name=g.name, slug=g.slug) for g in Group.objects.all())
        alerts = LiveAlertService.for_tiles()  # one query for every tile's alert

        def tile(channel: Channel, slot: int) -> Tile:
            alert = LiveAlertService.tile_alert(channel_id=channel.pk, receiver_id=channel.receiver_id, alerts=alerts)
            return tile_for_channel(channel, slot=slot, built_at=now, spark=sparks.get(channel.pk, ""), alert=alert)

        if group:
            if group not in {g.slug for g in groups}:
                raise DeviceNotFoundError(f"No group {group!r}")
            slots = QueryOptimizer.slots_for_board(GroupSlot.objects.filter(group__slug=group))
            # A tile's number is its slot's position: a slot removed leaves a gap, no renumbering.
            tiles = tuple(
                tile(s.channel, s.position) if s.channel else Tile(kind="blank", slot=s.position)
                for s in slots.order_by("position")
            )
        else:
            # A tile's number is the channel's own board position: adding or removing a receiver
            # leaves every other tile on its number (gaps allowed).
            channels = Channel.objects.for_board().filter(receiver__active=True).order_by("board_position")
            tiles = tuple(tile(c, c.board_position) for c in channels)
        return BoardData(
            version=version,
            group=group,
            groups=groups,
            tiles=tiles,
            updated_at=now.isoformat(timespec="seconds"),
            states=tuple(tile_state(t) for t in tiles),
        )
