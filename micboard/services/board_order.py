"""The order of the "All" board: each channel keeps its tile number until someone changes it.

A channel's tile number is ``Channel.board_position``. New channels are appended after the last
number; a channel that goes (receiver removed, or made inactive) leaves a gap, so no other tile is
renumbered and "check tile 7" on the radio still means the same pack.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import transaction
from django.db.models import Max

from micboard.exceptions import BoardOrderError
from micboard.models import MAX_BOARD_POSITION, Channel
from micboard.services.board import BoardService


def _check_position(position: int) -> None:
    if isinstance(position, bool) or not isinstance(position, int) or not 1 <= position <= MAX_BOARD_POSITION:
        raise BoardOrderError(f"A tile number is a whole number from 1 to {MAX_BOARD_POSITION}, not {position!r}")


class BoardOrderService:
    """Edits of the "All" board's tile numbers."""

    @staticmethod
    @transaction.atomic
    def move(*, channel: Channel | int, position: int) -> Channel | None:
        """Give a channel a tile number; the channel holding that number (if any) takes the old one.

        Only these two tiles change number: moving onto a free number leaves a gap where the
        channel was, moving onto a taken number swaps the two.

        Args:
            channel: the channel (or its id) to move.
            position: its new tile number, 1..MAX_BOARD_POSITION.
        Returns:
            The channel that was swapped out (now on the old number), or None.
        Raises:
            BoardOrderError: the number is out of range, or there is no such channel.
        """
        _check_position(position)
        pk = channel.pk if isinstance(channel, Channel) else channel
        rows = {c.pk: c for c in Channel.objects.select_for_update().filter(pk=pk)}
        if pk not in rows:
            raise BoardOrderError(f"No channel with id {pk}")
        moving = rows[pk]
        old = moving.board_position
        if old == position:
            return None
        other = Channel.objects.select_for_update().filter(board_position=position).first()
        if other is None:
            Channel.objects.filter(pk=moving.pk).update(board_position=position)
        else:
            # Two steps through a free number: the unique tile number is never held twice.
            parking = (Channel.objects.aggregate(last=Max("board_position"))["last"] or 0) + 1
            Channel.objects.filter(pk=other.pk).update(board_position=parking)
            Channel.objects.filter(pk=moving.pk).update(board_position=position)
            Channel.objects.filter(pk=other.pk).update(board_position=old)
            other.board_position = old
        if isinstance(channel, Channel):
            channel.board_position = position
        BoardService.bump_version_on_commit()
        return other

    @staticmethod
    @transaction.atomic
    def set_all_order(*, channel_ids: Sequence[int]) -> int:
        """Renumber the "All" board: these channels become tiles 1, 2, 3 … in this order.

        Every channel not listed follows, in its current order, so no number is held twice and
        the gaps close. Use it to tidy the board between shows, not during one.

        Args:
            channel_ids: channel ids in their new order (each at most once).
        Returns:
            How many channels got a new number.
        Raises:
            BoardOrderError: an id is repeated or names no channel; nothing is changed.
        """
        ids = list(channel_ids)
        if len(set(ids)) != len(ids):
            raise BoardOrderError("A channel is listed more than once")
        channels = {c.pk: c for c in Channel.objects.select_for_update().order_by("board_position")}
        unknown = [i for i in ids if i not in channels]
        if unknown:
            raise BoardOrderError(f"No channel with id {unknown[0]}")
        listed = set(ids)
        order = [channels[i] for i in ids] + [c for c in channels.values() if c.pk not in listed]
        changed = [c for n, c in enumerate(order, start=1) if c.board_position != n]
        if not changed:
            return 0
        # First out of the way (above every current number), then onto the new numbers.
        top = max(c.board_position for c in channels.values())
        for c in changed:
            c.board_position += top
        Channel.objects.bulk_update(changed, ["board_position"], batch_size=500)
        for n, c in enumerate(order, start=1):
            c.board_position = n
        Channel.objects.bulk_update(changed, ["board_position"], batch_size=500)
        BoardService.bump_version_on_commit()
        return len(changed)
