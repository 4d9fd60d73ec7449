"""Setup services: performers and assignments, locations, manufacturers (discovery: ``micboard.services.discovery``)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import QuerySet

from micboard.exceptions import AssignmentConflictError, ConfigurationError, DeviceNotFoundError
from micboard.metrics import track_service_metrics
from micboard.models import (
    Assignment,
    Channel,
    Group,
    GroupSlot,
    Location,
    Manufacturer,
    Performer,
    Receiver,
)
from micboard.query_optimization import bulk_create
from micboard.services.board import BoardService
from micboard.services.names import clean_name

PERFORMER_NAME_MAX = Performer._meta.get_field("name").max_length
PASTE_MAX_CHARS = 20_000


def clean_performer_name(name: str | None) -> str:
    """A performer's name as typed, trimmed. Raises: ConfigurationError (empty or too long)."""
    return clean_name(name, what="A performer", max_length=PERFORMER_NAME_MAX)


def performer_named(name: str) -> Performer:
    """The performer with this (clean) name, ignoring case; created when new."""
    return Performer.objects.filter(name__iexact=name).first() or Performer.objects.create(name=name)


def _check_expected(*, channel: Channel, expected: str) -> Assignment | None:
    """The channel's assignment (locked), when its performer is still the one the operator saw.

    Raises:
        AssignmentConflictError: the channel was taken, changed or cleared meanwhile.
    """
    current = Assignment.objects.select_for_update().filter(channel=channel).select_related("performer").first()
    now = current.performer.name if current else ""
    if now != expected:
        if not expected:
            raise AssignmentConflictError(f"{channel} is already taken by {now}: change it only if you mean to.")
        if not now:
            raise AssignmentConflictError(f"{channel} was cleared meanwhile (it was {expected}).")
        raise AssignmentConflictError(f"{channel} was changed to {now} meanwhile (it was {expected}).")
    return current


@dataclass(frozen=True, slots=True)
class PasteRow:
    """One channel of a bulk paste: its tile, who is on it now and who will be."""

    ASSIGN, CHANGE, REMOVE, SAME, KEEP = "assign", "change", "remove", "same", "keep"

    tile: int  # the tile's number on the group's board
    line: int | None  # the pasted line (1-based); None when the paste has fewer lines than channels
    channel: Channel
    old: str
    new: str
    action: str

    @property
    def changes(self) -> bool:
        return self.action in (self.ASSIGN, self.CHANGE, self.REMOVE)


@dataclass(frozen=True, slots=True)
class PasteExtra:
    line: int
    name: str


@dataclass(frozen=True, slots=True)
class PastePreview:
    rows: tuple[PasteRow, ...]
    extra: tuple[PasteExtra, ...]  # non-blank lines beyond the group's channels: reported, not applied
    errors: tuple[str, ...]
    fingerprint: str  # the state previewed: the group's channels, their performers and the text

    @property
    def changes(self) -> tuple[PasteRow, ...]:
        return tuple(r for r in self.rows if r.changes)


def _paste_preview(*, group: Group, text: str) -> PastePreview:
    text = text or ""
    slots = list(
        GroupSlot.objects.filter(group=group).select_related("channel__receiver", "channel__assignment__performer")
    )
    channels = [(tile, s.channel) for tile, s in enumerate(slots, start=1) if s.channel is not None]
    errors: list[str] = []
    if len(text) > PASTE_MAX_CHARS:
        errors.append(f"The paste is too long ({len(text)} characters; at most {PASTE_MAX_CHARS}).")
        text = ""
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    rows: list[PasteRow] = []
    for index, (tile, channel) in enumerate(channels):
        assignment = getattr(channel, "assignment", None)
        old = assignment.performer.name if assignment else ""
        if index >= len(lines):
            rows.append(PasteRow(tile, None, channel, old, old, PasteRow.KEEP))
            continue
        raw = lines[index].strip()
        if not raw:
            rows.append(PasteRow(tile, index + 1, channel, old, old, PasteRow.KEEP))
            continue
        if raw == "-":
            rows.append(PasteRow(tile, index + 1, channel, old, "", PasteRow.REMOVE if old else PasteRow.SAME))
            continue
        try:
            new = clean_performer_name(raw)
        except ConfigurationError as exc:
            errors.append(f"Line {index + 1}: {exc}")
            new = raw
        action = PasteRow.SAME if new.casefold() == old.casefold() else PasteRow.CHANGE if old else PasteRow.ASSIGN
        rows.append(PasteRow(tile, index + 1, channel, old, new, action))
    extra = tuple(
        PasteExtra(n, line.strip()) for n, line in enumerate(lines[len(channels):], start=len(channels) + 1)
        if line.strip()
    )
    state = json.dumps(
        [
            group.pk,
            [[s.pk, s.channel_id] for s in slots],
            [[r.channel.pk, r.old] for r in rows],
            [line.strip() for line in lines],
        ]
    )
    return PastePreview(
        rows=tuple(rows), extra=extra, errors=tuple(errors),
        fingerprint=hashlib.sha256(state.encode()).hexdigest()[:32],
    )


class AssignmentService:
    """Who wears which pack."""

    @staticmethod
    @track_service_metrics
    @transaction.atomic
    def assign(
        *,
        channel: Channel,
        performer: Performer | str,
        alerts_enabled: bool = True,
        priority: int = Assignment.Priority.NORMAL,
        responsible=None,
        replace: bool = False,
    ) -> Assignment:
        """Put a performer on a channel.

        Args:
            performer: a Performer or a name (created when new).
            replace: take the channel over from whoever has it.
        Raises:
            AssignmentConflictError: the channel is taken and ``replace`` is False.
        """
        if isinstance(performer, str):
            name = performer.strip()
            if not name:
                raise ConfigurationError("A performer needs a name")
            performer, _ = Performer.objects.get_or_create(name=name)
        current = Assignment.objects.filter(channel=channel).select_related("performer").first()
        if current and current.performer_id == performer.pk:
            current.alerts_enabled, current.priority = alerts_enabled, priority
            current.responsible = responsible
            current.save()
            return current
        if current and not replace:
            raise AssignmentConflictError(f"{channel} is already assigned to {current.performer}")
        if current:
            current.delete()
        try:
            with transaction.atomic():
                assignment = Assignment.objects.create(
                    channel=channel, performer=performer, alerts_enabled=alerts_enabled, priority=priority,
                    responsible=responsible,
                )
        except IntegrityError as exc:  # a concurrent assign won the race
            raise AssignmentConflictError(f"{channel} was assigned meanwhile") from exc
        BoardService.bump_version_on_commit()
        return assignment

    @staticmethod
    @track_service_metrics
    @transaction.atomic
    def unassign(*, channel: Channel, expected: str | None = None) -> bool:
        """Remove whoever is on the channel. Returns True if someone was.

        Args:
            expected: the performer name the operator saw on the channel; None skips the check.
        Raises:
            AssignmentConflictError: the channel's performer is no longer ``expected``.
        """
        if expected is not None:
            _check_expected(channel=channel, expected=expected)
        deleted, _ = Assignment.objects.filter(channel=channel).delete()
        if deleted:
            BoardService.bump_version_on_commit()
        return bool(deleted)

    @staticmethod
    @track_service_metrics
    @transaction.atomic
    def reassign(*, channel: Channel, name: str, expected: str) -> Assignment:
        """Put the performer called ``name`` on a channel, or change who is on it.

        The channel keeps its alert settings, priority and responsible crew member when its
        performer changes. A name matching an existing performer (ignoring case) reuses it.

        Args:
            name: the performer's name as typed (trimmed, at most 100 characters).
            expected: the performer name the operator saw on the channel ("" for nobody).
        Raises:
            ConfigurationError: the name is empty or too long.
            AssignmentConflictError: the channel was taken (or changed) since the operator looked.
        """
        name = clean_performer_name(name)
        current = _check_expected(channel=channel, expected=expected)
        performer = performer_named(name)
        if current is not None:
            if current.performer_id == performer.pk:
                return current
            current.performer = performer
            current.save()
        else:
            try:
                with transaction.atomic():
                    current = Assignment.objects.create(channel=channel, performer=performer)
            except IntegrityError as exc:  # a concurrent assign won the race
                raise AssignmentConflictError(f"{channel} was assigned meanwhile.") from exc
        BoardService.bump_version_on_commit()
        return current

    @staticmethod
    def preview_paste(*, group: Group, text: str) -> PastePreview:
        """What pasting one name per line onto a group's channels (in tile order) would do.

        A blank line leaves its channel as it is, a line "-" removes the channel's performer,
        lines beyond the group's channels are reported in ``extra`` and never applied.
        Nothing is written.
        """
        return _paste_preview(group=group, text=text)

    @staticmethod
    @transaction.atomic
    def apply_paste(*, group: Group, text: str, fingerprint: str) -> int:
        """Apply a previewed paste in one transaction. Returns the number of channels changed.

        Args:
            fingerprint: ``PastePreview.fingerprint`` of the preview the operator confirmed.
        Raises:
            ConfigurationError: a line is not a valid name (nothing is applied).
            AssignmentConflictError: the group or its performers changed since the preview.
        """
        list(Assignment.objects.select_for_update().filter(channel__group_slots__group=group).values_list("pk"))
        preview = _paste_preview(group=group, text=text)
        if preview.errors:
            raise ConfigurationError(" ".join(preview.errors))
        if preview.fingerprint != fingerprint:
            raise AssignmentConflictError(
                "The board changed since the preview (a performer or a tile of this group): check the new preview."
            )
        changes = preview.changes
        if not changes:
            return 0
        removed = [r.channel.pk for r in changes if r.action == PasteRow.REMOVE]
        Assignment.objects.filter(channel_id__in=removed).delete()
        current = {a.channel_id: a for a in Assignment.objects.filter(channel__in=[r.channel for r in changes])}
        for row in changes:
            if row.action == PasteRow.REMOVE:
                continue
            performer = performer_named(row.new)
            assignment = current.get(row.channel.pk)
            if assignment is None:
                Assignment.objects.create(channel=row.channel, performer=performer)
            else:
                assignment.performer = performer
                assignment.save()
        BoardService.bump_version_on_commit()
        return len(changes)

    @staticmethod
    def set_alerts(*, assignments: QuerySet[Assignment] | Iterable[Assignment], enabled: bool) -> int:
        """Enable or disable alerts in bulk. Returns the number changed."""
        ids = [a.pk for a in assignments]
        return Assignment.objects.filter(pk__in=ids).exclude(alerts_enabled=enabled).update(alerts_enabled=enabled)


    @staticmethod
    @transaction.atomic
    def create_assignment(
        *,
        channel: Channel,
        performer: str,
        alerts_enabled: bool = True,
        priority: int = Assignment.Priority.NORMAL,
        notes: str = "",
    ) -> Assignment:
        """Put a performer (by name; reused ignoring case, created when new) on a free channel.

        Raises:
            ConfigurationError: the name is empty or too long.
            AssignmentConflictError: someone is already on the channel (nothing is changed).
        """
        person = performer_named(clean_performer_name(performer))
        assignment = AssignmentService.assign(
            channel=channel, performer=person, alerts_enabled=alerts_enabled, priority=priority
        )
        if assignment.notes != notes:
            assignment.notes = notes
            assignment.save(update_fields=["notes", "updated_at"])
        return assignment

    @staticmethod
    @transaction.atomic
    def update_assignment(
        *,
        assignment: Assignment,
        channel: Channel | None = None,
        performer: str | None = None,
        alerts_enabled: bool | None = None,
        priority: int | None = None,
        notes: str | None = None,
    ) -> Assignment:
        """Change an assignment; arguments left as None keep their value.

        Args:
            channel: move the performer to this channel (it must be free).
            performer: the new performer's name (reused ignoring case, created when new).
        Raises:
            ConfigurationError: the name is empty or too long.
            AssignmentConflictError: the target channel is taken (nothing is changed).
        """
        locked = Assignment.objects.select_for_update().get(pk=assignment.pk)
        if channel is not None and channel.pk != locked.channel_id:
            taken = Assignment.objects.filter(channel=channel).select_related("performer").first()
            if taken is not None:
                raise AssignmentConflictError(f"{channel} is already assigned to {taken.performer}")
            locked.channel = channel
        if performer is not None:
            locked.performer = performer_named(clean_performer_name(performer))
        if alerts_enabled is not None:
            locked.alerts_enabled = alerts_enabled
        if priority is not None:
            locked.priority = priority
        if notes is not None:
            locked.notes = notes
        try:
            with transaction.atomic():
                locked.save()
        except IntegrityError as exc:  # the target channel was taken meanwhile
            raise AssignmentConflictError(f"{locked.channel} was assigned meanwhile") from exc
        BoardService.bump_version_on_commit()
        return locked

    @staticmethod
    @transaction.atomic
    def delete_assignment(*, assignment: Assignment) -> None:
        """Take the performer off the channel (the performer stays on file)."""
        Assignment.objects.filter(pk=assignment.pk).delete()
        BoardService.bump_version_on_commit()


class LocationService:
    @staticmethod
    def get_or_create_location(*, name: str) -> Location:
        """The location with this name (case-insensitive), created when new."""
        location = Location.objects.filter(name__iexact=name.strip()).first()
        return location or LocationService.create_location(name=name)

    @staticmethod
    def create_location(*, name: str, description: str = "") -> Location:
        """Raises: ConfigurationError when the name is empty or taken."""
        name = name.strip()
        if not name:
            raise ConfigurationError("A location needs a name")
        if Location.objects.filter(name__iexact=name).exists():
            raise ConfigurationError(f"Location {name!r} exists already")
        return Location.objects.create(name=name, description=description)

    @staticmethod
    def move_receivers(*, receivers: QuerySet[Receiver] | Iterable[Receiver], location: Location | None) -> int:
        ids = [r.pk for r in receivers]
        return Receiver.objects.filter(pk__in=ids).update(location=location)


    @staticmethod
    @transaction.atomic
    def update_location(*, location: Location, name: str | None = None, description: str | None = None) -> Location:
        """Rename or describe a location; None keeps a value.

        Raises:
            ConfigurationError: the name is empty or another location has it.
        """
        if name is not None:
            name = name.strip()
            if not name:
                raise ConfigurationError("A location needs a name")
            if Location.objects.filter(name__iexact=name).exclude(pk=location.pk).exists():
                raise ConfigurationError(f"Location {name!r} exists already")
            location.name = name
        if description is not None:
            location.description = description
        location.save()
        return location

    @staticmethod
    @transaction.atomic
    def delete_location(*, location: Location) -> int:
        """Delete a location; its receivers stay, without a location. Returns how many were in it."""
        count = location.receivers.count()
        location.delete()
        return count

    @staticmethod
    @transaction.atomic
    def move_receivers_by_id(*, receiver_ids: Sequence[int], location: Location | None) -> int:
        """Move receivers (by id) to a location, all or none.

        Raises:
            DeviceNotFoundError: an id names no receiver (nothing is moved).
        """
        ids = set(receiver_ids)
        found = set(Receiver.objects.filter(pk__in=ids).values_list("pk", flat=True))
        missing = sorted(ids - found)
        if missing:
            raise DeviceNotFoundError(f"No receiver with id {', '.join(map(str, missing))}")
        return LocationService.move_receivers(receivers=Receiver.objects.filter(pk__in=ids), location=location)


class GroupService:
    """Boards of channels with BLANK spacers."""

    @staticmethod
    @transaction.atomic
    def set_tiles(*, name: str, channels: Sequence[Channel | None], position: int | None = None) -> Group:
        """Create or replace a group's tiles, in order; ``None`` is a BLANK spacer.

        Raises:
            ConfigurationError: a channel appears twice (a channel is shown at most once per group).
        """
        seen: set[int] = set()
        for channel in channels:
            if channel is not None and channel.pk in seen:
                raise ConfigurationError(f"{channel} is on the group {name!r} twice; a channel appears at most once")
            if channel is not None:
                seen.add(channel.pk)
        group = Group.objects.filter(name=name).first() or Group.objects.create(
            name=name, position=position if position is not None else Group.objects.count()
        )
        if position is not None and group.position != position:
            group.position = position
            group.save()
        group.slots.all().delete()
        bulk_create(GroupSlot, (GroupSlot(group=group, position=i, channel=c) for i, c in enumerate(channels, start=1)))
        BoardService.bump_version_on_commit()
        return group


class ManufacturerService:
    @staticmethod
    def sync_devices(*, manufacturers: QuerySet[Manufacturer] | Iterable[Manufacturer]) -> int:
        """Bring every receiver of these manufacturers in line with its model and poll it now.

        Creates missing channel, transmitter and connection rows and asks the poller to read each
        receiver in its next cycle. It never removes a channel (that takes a confirmed model change
        through ``DeviceService.update_receiver``).
        Returns the number of receivers synced.
        """
        from micboard.services.devices import DeviceService

        receivers = list(Receiver.objects.filter(manufacturer__in=[m.pk for m in manufacturers]))
        for receiver in receivers:
            DeviceService.sync_channels(receiver=receiver)
        DeviceService.request_poll(receivers=receivers)
        BoardService.bump_version_on_commit()
        return len(receivers)
