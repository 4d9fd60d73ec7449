"""Async counterparts of the services' read and health methods, for async views.

Built on Django's async ORM (``aget``, ``acount``, ``async for``): the queries run in Django's
database thread, never on the event loop's thread. Where a sync service method is reused
(ConnectionHealthService.check_health judges rows already loaded, without touching the database)
it is given plain objects, so nothing lazy is evaluated on the loop. Everything returned is fully
loaded (lists of model instances with their ``select_related`` rows), so templates rendered from it
make no queries.
"""

from __future__ import annotations

from django.db.models import Count, Q

from micboard.exceptions import DeviceNotFoundError
from micboard.models import Assignment, Location, Manufacturer, RealTimeConnection, Receiver, Transmitter
from micboard.services.health import ConnectionHealthService, HealthReport


async def _list(queryset) -> list:
    return [obj async for obj in queryset]


class AsyncDeviceService:
    """Receivers and transmitters, read without blocking the event loop."""

    @staticmethod
    async def get_receiver(*, receiver_id: int) -> Receiver:
        """One receiver with its manufacturer and location.

        Raises:
            DeviceNotFoundError: no receiver has that id.
        """
        try:
            return await Receiver.objects.select_related("manufacturer", "location").aget(pk=receiver_id)
        except Receiver.DoesNotExist as exc:
            raise DeviceNotFoundError(f"No receiver {receiver_id}") from exc

    @staticmethod
    async def list_receivers(*, active_only: bool = False) -> list[Receiver]:
        """Every receiver (or the monitored ones) with manufacturer, location and connection, by name."""
        qs = Receiver.objects.select_related("manufacturer", "location", "connection").order_by("name")
        if active_only:
            qs = qs.filter(active=True)
        return await _list(qs)

    @staticmethod
    async def count_receivers() -> tuple[int, int]:
        """(monitored, online) receiver counts, in one query."""
        counts = await Receiver.objects.filter(active=True).aaggregate(
            monitored=Count("pk"), online=Count("pk", filter=Q(online=True))
        )
        return counts["monitored"], counts["online"]

    @staticmethod
    async def list_transmitters() -> list[Transmitter]:
        """Every transmitter seen, with its channel and receiver, by receiver name and channel."""
        qs = Transmitter.objects.select_related("channel__receiver").order_by(
            "channel__receiver__name", "channel__number"
        )
        return await _list(qs)


class AsyncAssignmentService:
    """Who wears what, read asynchronously."""

    @staticmethod
    async def list_assignments() -> list[Assignment]:
        """Every assignment with its performer, channel and receiver."""
        return await _list(Assignment.objects.select_related("performer", "channel__receiver").order_by("pk"))

    @staticmethod
    async def count_assignments() -> int:
        """How many channels have a performer."""
        return await Assignment.objects.acount()


class AsyncConnectionHealthService:
    """The links to the receivers, judged as ConnectionHealthService does."""

    @staticmethod
    async def list_connections() -> list[RealTimeConnection]:
        """Every receiver's link with its receiver, by receiver name."""
        return await _list(RealTimeConnection.objects.select_related("receiver").order_by("receiver__name"))

    @staticmethod
    async def check_health(*, connections: list[RealTimeConnection] | None = None) -> list[HealthReport]:
        """One report per link (ConnectionHealthService.check_health on rows loaded asynchronously)."""
        if connections is None:
            connections = await AsyncConnectionHealthService.list_connections()
        return ConnectionHealthService.check_health(connections=connections)

    @staticmethod
    async def count_unhealthy() -> int:
        """How many monitored receivers' links are unhealthy."""
        connections = await _list(RealTimeConnection.objects.filter(receiver__active=True).select_related("receiver"))
        return sum(1 for r in ConnectionHealthService.check_health(connections=connections) if not r.healthy)


class AsyncLocationService:
    """Locations, read asynchronously."""

    @staticmethod
    async def list_locations() -> list[Location]:
        """Every location with how many receivers it holds (``receiver_count``), by name."""
        return await _list(Location.objects.annotate(receiver_count=Count("receivers")).order_by("name"))

    @staticmethod
    async def get_location(*, location_id: int) -> Location:
        """One location.

        Raises:
            DeviceNotFoundError: no location has that id.
        """
        try:
            return await Location.objects.aget(pk=location_id)
        except Location.DoesNotExist as exc:
            raise DeviceNotFoundError(f"No location {location_id}") from exc


class AsyncManufacturerService:
    """Manufacturers, read asynchronously."""

    @staticmethod
    async def list_manufacturers() -> list[Manufacturer]:
        """Every manufacturer with how many receivers it made (``receiver_count``), by name."""
        return await _list(Manufacturer.objects.annotate(receiver_count=Count("receivers")).order_by("name"))
