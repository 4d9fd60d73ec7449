"""Setup services: performers and assignments, locations, manufacturers, discovery."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from django.db import IntegrityError, transaction
from django.db.models import QuerySet

from micboard.exceptions import AssignmentConflictError, ConfigurationError, DiscoveryError
from micboard.models import (
    Assignment,
    Channel,
    DiscoveryTask,
    Group,
    GroupSlot,
    Location,
    Manufacturer,
    Performer,
    Receiver,
)
from micboard.services.board import BoardService


class AssignmentService:
    """Who wears which pack."""

    @staticmethod
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
    def unassign(*, channel: Channel) -> bool:
        """Remove whoever is on the channel. Returns True if someone was."""
        deleted, _ = Assignment.objects.filter(channel=channel).delete()
        if deleted:
            BoardService.bump_version_on_commit()
        return bool(deleted)

    @staticmethod
    def set_alerts(*, assignments: QuerySet[Assignment] | Iterable[Assignment], enabled: bool) -> int:
        """Enable or disable alerts in bulk. Returns the number changed."""
        ids = [a.pk for a in assignments]
        return Assignment.objects.filter(pk__in=ids).exclude(alerts_enabled=enabled).update(alerts_enabled=enabled)


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


class GroupService:
    """Boards of channels with BLANK spacers."""

    @staticmethod
    @transaction.atomic
    def set_tiles(*, name: str, channels: Sequence[Channel | None], position: int | None = None) -> Group:
        """Create or replace a group's tiles, in order; ``None`` is a BLANK spacer."""
        group = Group.objects.filter(name=name).first() or Group.objects.create(
            name=name, position=position if position is not None else Group.objects.count()
        )
        if position is not None and group.position != position:
            group.position = position
            group.save()
        group.slots.all().delete()
        GroupSlot.objects.bulk_create(
            [GroupSlot(group=group, position=i, channel=c) for i, c in enumerate(channels, start=1)]
        )
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


class DiscoveryService:
    @staticmethod
    def request_discovery(*, scope: str, requested_by=None) -> DiscoveryTask:
        """Record a discovery request for a network range.

        Raises:
            DiscoveryError: the scope is not an IPv4/IPv6 network, or is too large to scan.
        """
        return DiscoveryTask.objects.create(
            scope=DiscoveryService.normalize_scope(scope=scope), requested_by=requested_by
        )

    @staticmethod
    def normalize_scope(*, scope: str) -> str:
        """Return the scope as a network in CIDR form.

        Raises:
            DiscoveryError: not a network range, or larger than a /20.
        """
        try:
            network = ipaddress.ip_network(scope.strip(), strict=False)
        except ValueError as exc:
            raise DiscoveryError(f"{scope!r} is not a network range like 192.168.1.0/24") from exc
        if network.num_addresses > 4096:
            raise DiscoveryError(f"{network} has {network.num_addresses} addresses; scan at most a /20")
        return str(network)
