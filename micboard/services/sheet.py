"""Channel sheets: the rows the printed sheet and its CSV download share."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, fields

from micboard.caching import MEDIUM, cache_service_result
from micboard.exceptions import CoordinationError, DeviceNotFoundError
from micboard.models import Channel, Group, GroupSlot, Show
from micboard.query_optimization import QueryOptimizer
from micboard.services.board import BoardService
from micboard.status import ChannelStatus

# A spreadsheet reads a cell starting with one of these as a formula (or strips it into one).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True, slots=True)
class SheetRow:
    """One channel on the sheet; field order is the column order of the CSV."""

    number: int  # position on the board (or in the group), as the tiles are numbered
    channel: str
    performer: str
    receiver: str
    model: str
    band: str
    frequency_mhz: str
    group_channel: str
    tx_model: str
    battery_type: str
    status: str  # as a word ("Good", "Receiver offline"), never a colour
    notes: str


CSV_HEADER = (
    "#", "Channel", "Performer", "Receiver", "Model", "Band", "Frequency (MHz)", "Group/channel", "TX model",
    "Battery type", "Status", "Notes",
)


@dataclass(frozen=True, slots=True)
class SheetHeader:
    show: str
    venue: str
    date: str  # ISO date, "" when not set
    version: str  # the board version the sheet was printed from ("" when the coordination store is down)
    group: str  # the group's name, "" for every channel


def _row(channel: Channel, number: int) -> SheetRow:
    tx = getattr(channel, "transmitter", None)
    assignment = getattr(channel, "assignment", None)
    notes = [n for n in ((assignment.notes, assignment.performer.notes) if assignment else ()) if n]
    return SheetRow(
        number=number,
        channel=channel.name or f"{channel.receiver.name} {channel.number}",
        performer=assignment.performer.name if assignment else "",
        receiver=f"{channel.receiver.name} · ch {channel.number}",
        model=channel.receiver.model,
        band=channel.receiver.rf_band,
        frequency_mhz=channel.frequency_mhz,
        group_channel=channel.group_channel,
        tx_model=tx.model if tx else "",
        battery_type=tx.battery_type if tx else "",
        status=ChannelStatus(channel.status).label,
        notes=" · ".join(notes),
    )


def excel_safe(value: object) -> str:
    """A cell a spreadsheet shows as text: a leading apostrophe on anything it would read as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


class SheetService:
    """Read side of the channel sheets."""

    @staticmethod
    @cache_service_result(timeout=MEDIUM, namespace="board")
    def rows(*, group: str = "") -> tuple[SheetRow, ...]:
        """Every channel of the board (or of one group, in its order, blanks left out), in 2 queries at most.

        Cached per group until the board changes (the sheet, its CSV and every reprint share one read).

        Args:
            group: a group's slug, "" for every monitored channel in board order.
        Returns:
            One row per channel, numbered as its tile.
        Raises:
            DeviceNotFoundError: no group has that slug.
        """
        if not group:
            channels = Channel.objects.for_board().filter(receiver__active=True).order_by("board_position")
            return tuple(_row(c, c.board_position) for c in channels)
        slots = list(QueryOptimizer.slots_for_sheet(GroupSlot.objects.filter(group__slug=group)))
        if not slots and not Group.objects.filter(slug=group).exists():
            raise DeviceNotFoundError(f"No group {group!r}")
        return tuple(_row(s.channel, s.position) for s in slots if s.channel is not None)

    @staticmethod
    def header(*, group: str = "") -> SheetHeader:
        """The show's name, venue and date, the board version and the group's name.

        Raises:
            DeviceNotFoundError: no group has that slug.
        """
        group_name = ""
        if group:
            found = Group.objects.filter(slug=group).first()
            if found is None:
                raise DeviceNotFoundError(f"No group {group!r}")
            group_name = found.name
        show = Show.current()
        try:
            version = BoardService.version()
        except CoordinationError:
            version = ""
        return SheetHeader(
            show=show.name,
            venue=show.venue,
            date=show.date.isoformat() if show.date else "",
            version=version,
            group=group_name,
        )

    @staticmethod
    def csv_text(*, rows: Iterable[SheetRow]) -> str:
        """The rows as CSV for spreadsheets: a header line, every cell Excel-safe (see ``excel_safe``)."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_HEADER)
        names = [f.name for f in fields(SheetRow)]
        for row in rows:
            writer.writerow([excel_safe(getattr(row, name)) for name in names])
        return out.getvalue()
