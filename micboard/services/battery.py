"""Phone battery check: the board's tiles as one list, most urgent pack first.

Read side only, built from :class:`~micboard.services.board.BoardData` (so it shares the board's cache
and version) and rendered once per version by the battery view.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from micboard.services.board import BoardData, Tile
from micboard.status import ChannelStatus, battery_status

# Rank 0 is shown first. See BatteryService.rows for why.
_RANK = {
    ChannelStatus.CRITICAL: 0,
    ChannelStatus.REPLACE: 1,
    ChannelStatus.RX_COM_ERROR: 2,
    ChannelStatus.TX_COM_ERROR: 2,
    ChannelStatus.PREV_CRITICAL: 2,
    ChannelStatus.PREV_REPLACE: 2,
    ChannelStatus.PREV_GOOD: 2,
    ChannelStatus.BATTERY_UNKNOWN: 2,
    ChannelStatus.GOOD: 3,
}
_UNKNOWN_RANK = 2


@dataclass(frozen=True, slots=True)
class BatteryRow:
    """One line of the phone view."""

    tile: Tile
    rank: int  # 0 CRITICAL, 1 REPLACE, 2 no live battery (check it), 3 GOOD
    urgency: str  # "critical", "replace", "check", "good": the row's colour and its word for screen readers
    last_seen: str  # ISO time, "" when the pack is live or was never heard
    last_seen_text: str  # the same as HH:MM in the server's time zone (a fixed time: safe in a shared render)


_URGENCY = ("critical", "replace", "check", "good")


def _rank(tile: Tile) -> int:
    status = ChannelStatus(tile.status)
    if status == ChannelStatus.AUDIO_PEAK:  # a peak says nothing about the battery: rank it by its bars
        return _RANK[battery_status(tile.battery_bars)] if tile.battery_bars is not None else _UNKNOWN_RANK
    return _RANK.get(status, _UNKNOWN_RANK)


def _minutes(tile: Tile) -> float:
    """Minutes left for sorting: a runtime warning counts as none left, an unknown runtime goes last."""
    if tile.runtime_text == "warn":
        return 0
    return tile.runtime_minutes if tile.runtime_minutes is not None else float("inf")


def _clock(iso: str) -> str:
    if not iso:
        return ""
    try:
        return timezone.localtime(datetime.fromisoformat(iso)).strftime("%H:%M")
    except ValueError:
        return ""


class BatteryService:
    """Read side of the phone battery check."""

    @staticmethod
    def rows(*, board: BoardData) -> tuple[BatteryRow, ...]:
        """The board's packs, most urgent first.

        Order: CRITICAL, then REPLACE, then every channel whose battery cannot be vouched for right now
        (RX_COM_ERROR, TX_COM_ERROR, PREV_*, BATTERY_UNKNOWN), then GOOD; within each, fewest minutes
        left first (a runtime warning counts as none left, an unknown runtime last), then board order.
        Why: the person holding the phone is deciding which pack to swap next. A CRITICAL pack dies
        within minutes and a REPLACE pack will before the show ends, so both come before anything else.
        A pack that is off, out of range or behind a silent receiver has no live reading: its last known
        battery may be low, and it must be checked before it goes back on stage, so it comes before the
        GOOD packs, which need nothing. An audio peak says nothing about the battery, so such a pack
        is ranked by its bars. In-ear monitor transmitters (no pack) and unmonitored channels are left out.

        Args:
            board: the board (or one group of it), as BoardService.board returns it.
        Returns:
            One row per channel tile, sorted.
        """
        keyed = []
        for index, tile in enumerate(board.tiles):
            if tile.kind != "channel" or tile.is_iem or tile.status == ChannelStatus.UNASSIGNED:
                continue
            rank = _rank(tile)
            keyed.append(((rank, _minutes(tile), index), tile, rank))
        keyed.sort(key=lambda item: item[0])
        return tuple(
            BatteryRow(
                tile=tile,
                rank=rank,
                urgency=_URGENCY[rank],
                last_seen=tile.last_seen,
                last_seen_text=_clock(tile.last_seen),
            )
            for _, tile, rank in keyed
        )
