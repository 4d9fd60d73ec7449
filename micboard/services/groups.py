"""Operators' edits of board groups outside the admin: tabs, tile order, channels and BLANK spacers."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.db.models import F, Max, Q, QuerySet
from django.utils.text import slugify

from micboard.caching import SHORT, cache_queryset
from micboard.exceptions import ConfigurationError
from micboard.models import Channel, Group, GroupSlot
from micboard.query_optimization import QueryOptimizer
from micboard.services.board import BoardService
from micboard.services.names import clean_name

GROUP_NAME_MAX = Group._meta.get_field("name").max_length
_PARKED = 10_000  # added to positions while renumbering, above any real position


def _clean_group_name(name: str, *, group: Group | None = None) -> str:
    name = clean_name(name, what="A group", max_length=GROUP_NAME_MAX)
    taken = Group.objects.filter(name__iexact=name)
    if group is not None:
        taken = taken.exclude(pk=group.pk)
    if taken.exists():
        raise ConfigurationError(f"A group called {name!r} exists already.")
    return name


def _free_slug(name: str) -> str:
    base = slugify(name)[:56] or "group"
    slug, n = base, 1
    while Group.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


def _renumber(group: Group, slots: list[GroupSlot]) -> None:
    """Store ``slots`` (every slot of the group) at positions 1..n, in that order."""
    GroupSlot.objects.filter(group=group).update(position=F("position") + _PARKED)
    for position, slot in enumerate(slots, start=1):
        slot.position = position
    GroupSlot.objects.bulk_update(slots, ["position"])


def _slots(group: Group) -> list[GroupSlot]:
    return list(GroupSlot.objects.select_for_update().filter(group=group).order_by("position"))


def move_in_order(rows: QuerySet, *, pk: int, offset: int) -> None:
    """Move one row of an ordered list (``position``, then ``name``) by ``offset``; positions become 1..n.

    The caller holds the transaction; the rows are locked while they are renumbered.
    """
    items = list(rows.select_for_update().order_by("position", "name"))
    index = next(i for i, item in enumerate(items) if item.pk == pk)
    target = max(0, min(len(items) - 1, index + offset))
    items.insert(target, items.pop(index))
    for position, item in enumerate(items, start=1):
        if item.position != position:
            rows.model.objects.filter(pk=item.pk).update(position=position)


class GroupEditService:
    """Board groups edited by operators: every change reaches the screens with their next refresh."""

    @staticmethod
    @cache_queryset(timeout=SHORT, namespace="board")
    def search_channels(*, q: str, limit: int) -> QuerySet[Channel]:
        """Channels to add to a group: every word of ``q`` in the channel's, receiver's or performer's name or model.

        Which channels match is cached until the board changes (a search typed letter by letter asks
        again and again); the rows themselves are read fresh on every call.

        Args:
            q: the words typed ("" finds every channel).
            limit: at most this many channels, by receiver name and channel number.
        Returns:
            The channels with their receiver and performer loaded.
        """
        channels = QueryOptimizer.channels_for_board().order_by("receiver__name", "number")
        for word in q.split():
            channels = channels.filter(
                Q(name__icontains=word) | Q(receiver__name__icontains=word)
                | Q(assignment__performer__name__icontains=word) | Q(receiver__model__icontains=word)
            )
        return channels[:limit]

    @staticmethod
    @transaction.atomic
    def create_group(*, name: str) -> Group:
        """A new, empty group with the last tab.

        Raises:
            ConfigurationError: the name is empty, too long or taken.
        """
        name = _clean_group_name(name)
        position = (Group.objects.aggregate(last=Max("position"))["last"] or 0) + 1
        try:
            with transaction.atomic():
                group = Group.objects.create(name=name, slug=_free_slug(name), position=position)
        except IntegrityError as exc:
            raise ConfigurationError(f"A group called {name!r} exists already.") from exc
        BoardService.bump_version_on_commit()
        return group

    @staticmethod
    @transaction.atomic
    def rename_group(*, group: Group, name: str) -> Group:
        """Rename a group. Its address (slug) stays, so screens showing it keep working.

        Raises:
            ConfigurationError: the name is empty, too long or taken.
        """
        group.name = _clean_group_name(name, group=group)
        group.save()
        BoardService.bump_version_on_commit()
        return group

    @staticmethod
    @transaction.atomic
    def delete_group(*, group: Group) -> None:
        """Delete a group and its tiles (the channels and their performers stay)."""
        group.delete()
        BoardService.bump_version_on_commit()

    @staticmethod
    @transaction.atomic
    def move_group(*, group: Group, offset: int) -> None:
        """Move a group's tab left (``offset`` < 0) or right; tab positions become 1..n."""
        move_in_order(Group.objects.all(), pk=group.pk, offset=offset)
        BoardService.bump_version_on_commit()

    @staticmethod
    @transaction.atomic
    def add_channel(*, group: Group, channel: Channel) -> GroupSlot:
        """Append a channel's tile to a group.

        Raises:
            ConfigurationError: the channel is on this group already.
        """
        slots = _slots(group)
        if any(s.channel_id == channel.pk for s in slots):
            raise ConfigurationError(f"{channel} is on {group.name} already (tile {_tile_of(slots, channel)}).")
        try:
            with transaction.atomic():
                slot = GroupSlot.objects.create(
                    group=group, channel=channel, position=max((s.position for s in slots), default=0) + 1
                )
        except IntegrityError as exc:  # added by someone else meanwhile
            raise ConfigurationError(f"{channel} is on {group.name} already.") from exc
        BoardService.bump_version_on_commit()
        return slot

    @staticmethod
    @transaction.atomic
    def add_blank(*, group: Group) -> GroupSlot:
        """Append a BLANK spacer to a group."""
        slots = _slots(group)
        position = max((s.position for s in slots), default=0) + 1
        slot = GroupSlot.objects.create(group=group, channel=None, position=position)
        BoardService.bump_version_on_commit()
        return slot

    @staticmethod
    @transaction.atomic
    def remove_slot(*, slot: GroupSlot) -> None:
        """Remove a tile (channel or BLANK); the tiles after it move up one number."""
        group = slot.group
        slots = [s for s in _slots(group) if s.pk != slot.pk]
        GroupSlot.objects.filter(pk=slot.pk).delete()
        _renumber(group, slots)
        BoardService.bump_version_on_commit()

    @staticmethod
    @transaction.atomic
    def move_slot(*, slot: GroupSlot, offset: int) -> int:
        """Move a tile up (``offset`` < 0) or down the group's order. Returns its new tile number.

        Raises:
            ConfigurationError: the tile was removed meanwhile.
        """
        slots = _slots(slot.group)
        index = next((i for i, s in enumerate(slots) if s.pk == slot.pk), None)
        if index is None:
            raise ConfigurationError("That tile was removed meanwhile.")
        target = max(0, min(len(slots) - 1, index + offset))
        if target != index:
            slots.insert(target, slots.pop(index))
            _renumber(slot.group, slots)
            BoardService.bump_version_on_commit()
        return target + 1


def _tile_of(slots: list[GroupSlot], channel: Channel) -> int:
    return next(i for i, s in enumerate(slots, start=1) if s.channel_id == channel.pk)
