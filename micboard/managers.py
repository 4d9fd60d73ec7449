"""Querysets of the domain models (used as managers via ``QuerySet.as_manager()``)."""

from __future__ import annotations

from datetime import timedelta

from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone


class ReceiverQuerySet(models.QuerySet):
    def active(self) -> ReceiverQuerySet:
        return self.filter(active=True)

    def online(self) -> ReceiverQuerySet:
        return self.filter(active=True, online=True)

    def offline(self) -> ReceiverQuerySet:
        """Monitored receivers that do not answer."""
        return self.filter(active=True, online=False)

    def by_manufacturer(self, manufacturer) -> ReceiverQuerySet:
        """Filter by a Manufacturer instance, its slug or its name."""
        if isinstance(manufacturer, str):
            return self.filter(Q(manufacturer__slug=manufacturer) | Q(manufacturer__name__iexact=manufacturer))
        return self.filter(manufacturer=manufacturer)

    def with_low_battery(self, threshold: int = 2) -> ReceiverQuerySet:
        """Receivers with a present transmitter whose battery is at most ``threshold`` bars."""
        from micboard.models import Transmitter

        low = Transmitter.objects.filter(
            channel__receiver=OuterRef("pk"), present=True, battery_bars__lte=threshold
        )
        return self.filter(Exists(low))

    def recently_updated(self, seconds: float = 60) -> ReceiverQuerySet:
        return self.filter(last_seen__gte=timezone.now() - timedelta(seconds=seconds))

    def in_location(self, location) -> ReceiverQuerySet:
        if isinstance(location, str):
            return self.filter(location__name__iexact=location)
        return self.filter(location=location)

    def with_assignments(self) -> ReceiverQuerySet:
        from micboard.models import Assignment

        return self.filter(Exists(Assignment.objects.filter(channel__receiver=OuterRef("pk"))))

    def unhealthy(self) -> ReceiverQuerySet:
        """Monitored receivers that are offline or whose last poll failed."""
        return self.filter(active=True).filter(Q(online=False) | Q(connection__consecutive_failures__gt=0))

    def with_errors(self) -> ReceiverQuerySet:
        """Receivers whose link reported an error that is still current."""
        return self.filter(connection__consecutive_failures__gt=0).exclude(connection__last_error="")


class ChannelQuerySet(models.QuerySet):
    def for_board(self) -> ChannelQuerySet:
        """Everything a tile needs, in a constant number of queries (``QueryOptimizer.CHANNEL_BOARD``)."""
        from micboard.query_optimization import QueryOptimizer

        return QueryOptimizer.channels_for_board(self)

    def with_low_battery(self, threshold: int = 2) -> ChannelQuerySet:
        return self.filter(transmitter__present=True, transmitter__battery_bars__lte=threshold)


class KioskLinkQuerySet(models.QuerySet):
    # Noting a link's use changes nothing about what it grants.
    BOOKKEEPING = frozenset({"last_used_at"})

    def update(self, **kwargs) -> int:
        """Update the rows; a change of anything but the bookkeeping (revocation, expiry, group) reaches
        the access cache at once, as a save does (``micboard.signals``), so the next request decides again.
        """
        rows = super().update(**kwargs)
        if set(kwargs) - self.BOOKKEEPING:
            from micboard.signals import invalidate_access

            invalidate_access()
        return rows
