"""``python manage.py history_size``: bytes the show history takes per channel-hour, on this database.

Writes an hour of 1 s samples for a few channels of a throwaway receiver (values that move like a show's:
battery falling, RF wandering over two antennas, speech audio), measures the table with its index on disk,
and rolls everything back: nothing is left behind. SQLite is measured with its ``dbstat`` table,
PostgreSQL with ``pg_total_relation_size``.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from micboard.exceptions import ConfigurationError
from micboard.models import Channel, ChannelSample
from micboard.services import DeviceService
from micboard.services.history import HistoryService
from micboard.status import ChannelStatus

HOUR = 3600


class _Rollback(Exception):
    pass


def _rows(channels: list[Channel], start: datetime) -> list[ChannelSample]:
    rng = random.Random(7)
    rows = []
    for channel in channels:
        for s in range(HOUR):
            rf = -55 + rng.randint(-8, 8)
            rows.append(
                ChannelSample(
                    channel=channel,
                    at=start + timedelta(seconds=s),
                    resolution=1,
                    battery_bars=5 - s // 900,
                    battery_percent=100 - s // 60,
                    runtime_minutes=480 - s // 60,
                    rf_dbm=rf,
                    rf_antennas=f"{(rf + 100) * 100 // 60},{(rf + 97) * 100 // 60}",
                    audio_dbfs=-60 if rng.random() < 0.3 else rng.randint(-35, -6),
                    status=ChannelStatus.GOOD if s < 2700 else ChannelStatus.REPLACE,
                    tx_present=True,
                )
            )
    return rows


class Command(BaseCommand):
    help = "Measure the show history's bytes per channel-hour on this database (writes nothing that stays)."

    def add_arguments(self, parser):
        parser.add_argument("--channels", type=int, default=4, help="channels written (4 per receiver)")

    def handle(self, *args, channels: int, **options):
        receivers = max(1, (channels + 3) // 4)
        result = {}
        try:
            with transaction.atomic():
                before = HistoryService.table_bytes()
                made = [
                    DeviceService.create_receiver(name=f"history size {n}", model="AD4Q", host="127.0.0.1", port=1 + n)
                    for n in range(receivers)
                ]
                chans = list(Channel.objects.filter(receiver__in=made).order_by("pk"))[:channels]
                ChannelSample.objects.bulk_create(_rows(chans, datetime(2026, 1, 1, tzinfo=UTC)), batch_size=2000)
                result["bytes"] = HistoryService.table_bytes() - before
                result["rows"] = HOUR * len(chans)
                raise _Rollback
        except _Rollback:
            pass
        except ConfigurationError as exc:
            raise CommandError(str(exc)) from exc
        per_row = result["bytes"] / result["rows"]
        per_hour = per_row * HOUR
        steady = per_row * (HOUR + 23 * 360 + 13 * 24 * 60)  # defaults: 1 h raw, 23 h at 10 s, 13 days at 60 s
        self.stdout.write(
            f"{connection.vendor}: {result['rows']} rows of 1 s samples, {result['bytes']} bytes on disk "
            f"(table and index): {per_row:.0f} bytes a row, {per_hour / 1024:.0f} KiB per channel-hour at 1 s, "
            f"{per_row * 360 / 1024:.1f} KiB at 10 s, {per_row * 60 / 1024:.1f} KiB at 60 s; "
            f"with the default tiers and 14 days' retention one channel keeps {steady / 1024 / 1024:.1f} MiB"
        )
