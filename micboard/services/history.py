"""Show history: per-channel samples written by the link holders, folded to coarser rows, pruned.

A link holder folds every reading it writes into an in-memory window per channel (:class:`SampleRecorder`,
fed from the holder's flush: a few dict operations per channel, no query) and, once a second, turns the
windows that have ended into :class:`ChannelSample` rows written in one bulk insert. Rows are folded the
same way at every step: the lowest battery and RF, the loudest audio, the last status. Huey folds 1 s rows
into 10 s and 10 s into 60 s rows as they age, and deletes what is older than the retention
(``tasks/history.py``); :meth:`HistoryService.series` reads them back.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from micboard.exceptions import ConfigurationError
from micboard.models import Channel, ChannelSample

logger = logging.getLogger("micboard.history")

RESOLUTIONS = (1, 10, 60)  # seconds: what the holders write, then what Huey folds them into
_SMALLINT = 32767
_RF_ANTENNAS = 8  # "100," * 8 fits ChannelSample.rf_antennas


def _lower(a, b):
    return b if a is None else a if b is None else min(a, b)


def _higher(a, b):
    return b if a is None else a if b is None else max(a, b)


@dataclass(slots=True)
class Fold:
    """A channel's readings over one window: lowest battery and RF, loudest audio, last status and presence."""

    battery_bars: int | None = None
    battery_percent: int | None = None
    runtime_minutes: int | None = None
    rf_dbm: int | None = None
    rf_antennas: tuple[int, ...] = ()
    audio_dbfs: int | None = None
    status: str = ""
    tx_present: bool | None = None

    def add(
        self,
        *,
        battery_bars=None,
        battery_percent=None,
        runtime_minutes=None,
        rf_dbm=None,
        rf_antennas: tuple[int, ...] = (),
        audio_dbfs=None,
        status: str = "",
        tx_present: bool | None = None,
    ) -> None:
        self.battery_bars = _lower(self.battery_bars, battery_bars)
        self.battery_percent = _lower(self.battery_percent, battery_percent)
        self.runtime_minutes = _lower(self.runtime_minutes, runtime_minutes)
        self.rf_dbm = _lower(self.rf_dbm, rf_dbm)
        if rf_antennas:  # each antenna's lowest; a changed antenna count (AD's RF mode) starts afresh
            mine = self.rf_antennas
            self.rf_antennas = (
                tuple(min(a, b) for a, b in zip(mine, rf_antennas, strict=True))
                if len(mine) == len(rf_antennas)
                else rf_antennas
            )
        self.audio_dbfs = _higher(self.audio_dbfs, audio_dbfs)
        if status:
            self.status = status
        if tx_present is not None:
            self.tx_present = tx_present

    def add_reading(self, ch) -> None:
        """Fold a ChannelReading in (the flush's hot path: plain comparisons, no calls per figure)."""
        if ch.tx_present is False:
            self.tx_present = False
        else:
            if ch.tx_present is not None:
                self.tx_present = True
            if (v := ch.battery_bars) is not None and (self.battery_bars is None or v < self.battery_bars):
                self.battery_bars = v
            if (v := ch.battery_percent) is not None and (self.battery_percent is None or v < self.battery_percent):
                self.battery_percent = v
            if (v := ch.battery_runtime_min) is not None:
                v = min(v, _SMALLINT)
                if self.runtime_minutes is None or v < self.runtime_minutes:
                    self.runtime_minutes = v
        if ch.metered:
            if (v := ch.rf_dbm) is not None:
                v = max(-_SMALLINT, min(_SMALLINT, round(v)))
                if self.rf_dbm is None or v < self.rf_dbm:
                    self.rf_dbm = v
            if (v := ch.audio_dbfs) is not None:
                v = max(-_SMALLINT, min(_SMALLINT, round(v)))
                if self.audio_dbfs is None or v > self.audio_dbfs:
                    self.audio_dbfs = v
            if ch.rf_antenna_percents:
                self.add(rf_antennas=ch.rf_antenna_percents)

    def add_sample(self, sample: ChannelSample) -> None:
        self.add(
            battery_bars=sample.battery_bars,
            battery_percent=sample.battery_percent,
            runtime_minutes=sample.runtime_minutes,
            rf_dbm=sample.rf_dbm,
            rf_antennas=_antennas(sample.rf_antennas),
            audio_dbfs=sample.audio_dbfs,
            status=sample.status,
            tx_present=sample.tx_present,
        )

    def sample(self, *, channel_id: int, at: datetime, resolution: int) -> ChannelSample:
        return ChannelSample(
            channel_id=channel_id,
            at=at,
            resolution=resolution,
            battery_bars=self.battery_bars,
            battery_percent=self.battery_percent,
            runtime_minutes=self.runtime_minutes,
            rf_dbm=self.rf_dbm,
            rf_antennas=",".join(str(p) for p in self.rf_antennas[:_RF_ANTENNAS]),
            audio_dbfs=self.audio_dbfs,
            status=self.status,
            tx_present=self.tx_present,
        )


def _antennas(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split(",")) if text else ()
    except ValueError:
        return ()


def _bucket(at: datetime, resolution: int) -> datetime:
    """The start of the ``resolution``-second window holding ``at`` (windows align to the epoch)."""
    seconds = int(at.timestamp()) // resolution * resolution
    return datetime.fromtimestamp(seconds, tz=UTC)


class SampleRecorder:
    """A link holder's history: readings folded per channel and window, and the rows waiting to be written.

    ``observe`` runs in the holder's flush (every 0.25 s) and never touches the database; ``write`` runs
    once a second, looks up the channels' ids and statuses in one query and writes every finished window
    in one bulk insert. While the database refuses, rows wait here, at most ``cap`` of them (the oldest
    go first, counted in a warning); a failed insert is logged and tried again, never raised.
    """

    def __init__(self, *, resolution: int | None = None, cap: int | None = None):
        self.resolution = settings.MICBOARD_HISTORY_RESOLUTION if resolution is None else resolution
        if self.resolution not in (0, *RESOLUTIONS):
            raise ConfigurationError(f"A history resolution is 0 (off), 1, 10 or 60 seconds, not {self.resolution}")
        self.cap = settings.MICBOARD_HISTORY_BUFFER_ROWS if cap is None else cap
        self.windows: dict[datetime, dict[tuple[int, int], Fold]] = {}  # window start -> (receiver, channel)
        self.pending: deque[ChannelSample] = deque()
        self.dropped = 0  # rows given up because the buffer was full (since this recorder started)
        self._last_status: dict[int, str] = {}  # channel id -> status of its last row

    def observe(self, outcomes: Iterable, *, now: datetime) -> None:
        """Fold the readings of a flush (PollOutcome list) into the window holding ``now``."""
        if not self.resolution:
            return
        window = self.windows.get(start := _bucket(now, self.resolution))
        if window is None:
            window = self.windows[start] = {}
        for outcome in outcomes:
            reading = outcome.reading
            if reading is None:
                continue
            rid = outcome.receiver_id
            for number, ch in reading.channels.items():
                fold = window.get((rid, number))
                if fold is None:
                    fold = window[(rid, number)] = Fold()
                fold.add_reading(ch)

    def write(self, *, now: datetime, receiver_ids: Sequence[int]) -> int:
        """Turn the windows ended by ``now`` into rows and write every waiting row; the count written.

        Channels of ``receiver_ids`` (the holder's receivers) that read nothing in a window get a
        status-only row when their status changed since their last row (a receiver gone offline).
        """
        if not self.resolution:
            return 0
        current = _bucket(now, self.resolution)
        ended = sorted(start for start in self.windows if start < current)
        if ended:
            try:
                self._queue([(start, self.windows[start]) for start in ended], receiver_ids)
            except DatabaseError as exc:  # the windows wait (bounded like the rows) for the next second
                logger.warning("history: channels not read (%s); trying again in a second", exc)
                self._bound_windows()
                return 0
            for start in ended:
                del self.windows[start]
        if not self.pending:
            return 0
        rows = list(self.pending)
        try:
            HistoryService.write_samples(samples=rows)
        except DatabaseError as exc:
            logger.warning("history: %d samples not written (%s); trying again in a second", len(rows), exc)
            return 0
        self.pending.clear()
        return len(rows)

    def _bound_windows(self) -> None:
        """Keep the unwritten windows within the cap (the oldest go first, counted)."""
        held = sum(len(folds) for folds in self.windows.values()) + len(self.pending)
        for start in sorted(self.windows):
            if held <= self.cap:
                break
            lost = len(self.windows.pop(start))
            held -= lost
            self.dropped += lost
            logger.warning("history: buffer full (%d samples): dropped a window of %d", self.cap, lost)

    def _queue(self, windows: list[tuple[datetime, dict[tuple[int, int], Fold]]], receiver_ids: Sequence[int]) -> None:
        wanted = set(receiver_ids) | {rid for _, folds in windows for rid, _ in folds}
        channels = {
            (rid, number): (pk, status)
            for pk, rid, number, status in Channel.objects.filter(receiver_id__in=wanted).values_list(
                "pk", "receiver_id", "number", "status"
            )
        }
        rows: list[ChannelSample] = []
        for start, folds in windows:
            for key, fold in folds.items():
                found = channels.get(key)
                if found is None:
                    continue  # a channel the model lacks, or a receiver deleted meanwhile
                pk, status = found
                fold.status = status
                rows.append(fold.sample(channel_id=pk, at=start, resolution=self.resolution))
                self._last_status[pk] = status
        last_start = windows[-1][0]
        for key, (pk, status) in channels.items():
            if key[0] in receiver_ids and key not in windows[-1][1] and self._last_status.get(pk) != status:
                rows.append(Fold(status=status).sample(channel_id=pk, at=last_start, resolution=self.resolution))
                self._last_status[pk] = status
        known = {pk for pk, _ in channels.values()}
        self._last_status = {pk: s for pk, s in self._last_status.items() if pk in known}
        self.pending.extend(rows)
        over = len(self.pending) - self.cap
        if over > 0:
            for _ in range(over):
                self.pending.popleft()
            self.dropped += over
            logger.warning(
                "history: buffer full (%d samples): dropped the %d oldest (%d since start)",
                self.cap,
                over,
                self.dropped,
            )


class HistoryService:
    """Writes, folds, prunes and reads channel samples."""

    @staticmethod
    def table_bytes() -> int:
        """The samples table and its indexes, in bytes on disk (``manage.py history_size``, the show run).

        Raises:
            ConfigurationError: a database this cannot measure (SQLite and PostgreSQL only).
        """
        table = ChannelSample._meta.db_table
        with connection.cursor() as cursor:
            if connection.vendor == "sqlite":
                names = [table, *(index.name for index in ChannelSample._meta.indexes)]
                marks = ", ".join("%s" for _ in names)
                cursor.execute(f"SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name IN ({marks})", names)  # noqa: S608
            elif connection.vendor == "postgresql":
                cursor.execute("SELECT pg_total_relation_size(%s)", [table])
            else:
                raise ConfigurationError(f"cannot measure tables on {connection.vendor}")
            return int(cursor.fetchone()[0])

    @staticmethod
    def write_samples(*, samples: Sequence[ChannelSample]) -> None:
        """One bulk insert. Raises: DatabaseError (the caller keeps the rows)."""
        with transaction.atomic():
            ChannelSample.objects.bulk_create(samples, batch_size=1000)

    @staticmethod
    def downsample(*, source: int, target: int, older_than: datetime, batch_rows: int = 5000) -> int:
        """Fold ``source``-second rows older than ``older_than`` into ``target``-second rows, channel by channel.

        Each batch (at most ``batch_rows`` source rows) is one transaction: the folded rows are inserted and
        their sources deleted together. A window cut by the batch's end waits for the next batch.
        Returns: how many source rows were folded.
        """
        if target % source or target <= source:
            raise ConfigurationError(f"{source} s rows do not fold into {target} s rows")
        older_than = _bucket(older_than, target)  # never fold a window still being written
        span = timedelta(seconds=target)
        folded = 0
        for channel_id in Channel.objects.order_by("pk").values_list("pk", flat=True):
            while True:
                rows = list(
                    ChannelSample.objects.filter(channel_id=channel_id, resolution=source, at__lt=older_than).order_by(
                        "at", "pk"
                    )[:batch_rows]
                )
                if not rows:
                    break
                full = len(rows) == batch_rows
                if full:  # the last window may go on past the batch: it waits for the next one
                    last = _bucket(rows[-1].at, target)
                    rows = [r for r in rows if r.at < last]
                    if not rows:  # a batch smaller than one window: take that window whole
                        rows = list(
                            ChannelSample.objects.filter(
                                channel_id=channel_id, resolution=source, at__gte=last, at__lt=last + span
                            ).order_by("at", "pk")
                        )
                windows: dict[datetime, Fold] = {}
                for row in rows:
                    windows.setdefault(_bucket(row.at, target), Fold()).add_sample(row)
                used = [row.pk for row in rows]
                with transaction.atomic():
                    ChannelSample.objects.bulk_create(
                        [f.sample(channel_id=channel_id, at=s, resolution=target) for s, f in windows.items()]
                    )
                    ChannelSample.objects.filter(pk__in=used).delete()
                folded += len(used)
                if not full:
                    break
        return folded

    @staticmethod
    def prune(*, older_than: datetime, batch_rows: int = 5000) -> int:
        """Delete samples older than ``older_than``, channel by channel, ``batch_rows`` at a time; the count."""
        deleted = 0
        for channel_id in Channel.objects.order_by("pk").values_list("pk", flat=True):
            for resolution in RESOLUTIONS:
                while True:
                    pks = list(
                        ChannelSample.objects.filter(
                            channel_id=channel_id, resolution=resolution, at__lt=older_than
                        ).values_list("pk", flat=True)[:batch_rows]
                    )
                    if not pks:
                        break
                    deleted += ChannelSample.objects.filter(pk__in=pks).delete()[0]
        return deleted

    @staticmethod
    def stored_rows(
        *, start: datetime, end: datetime, channel_ids: Sequence[int] | None = None, chunk_size: int = 5000
    ) -> Iterator[tuple]:
        """Every stored sample from ``start`` to ``end`` as kept (each row at its own resolution, nothing folded),
        ordered by channel then time, streamed in one query.

        Yields: (channel_id, at, resolution, battery_bars, battery_percent, runtime_minutes, rf_dbm, status,
        tx_present) tuples.
        """
        rows = ChannelSample.objects.filter(at__gte=start, at__lt=end)
        if channel_ids is not None:
            rows = rows.filter(channel_id__in=list(channel_ids))
        yield from rows.order_by("channel_id", "at", "pk").values_list(
            "channel_id",
            "at",
            "resolution",
            "battery_bars",
            "battery_percent",
            "runtime_minutes",
            "rf_dbm",
            "status",
            "tx_present",
        ).iterator(chunk_size=chunk_size)

    @staticmethod
    def resolution_for(*, start: datetime, now: datetime | None = None) -> int:
        """The finest resolution still kept at ``start`` (older rows have been folded into coarser ones)."""
        now = now or timezone.now()
        if start >= now - timedelta(minutes=settings.MICBOARD_HISTORY_RAW_MINUTES):
            return max(1, settings.MICBOARD_HISTORY_RESOLUTION)
        if start >= now - timedelta(hours=settings.MICBOARD_HISTORY_TEN_SECOND_HOURS):
            return max(10, settings.MICBOARD_HISTORY_RESOLUTION)
        return 60

    @staticmethod
    def series(
        *, channel: Channel, start: datetime, end: datetime, now: datetime | None = None, coarsest: int = 1
    ) -> tuple[int, list[ChannelSample]]:
        """A channel's samples from ``start`` to ``end`` at one resolution, oldest first.

        The resolution is the finest still kept at ``start``, or ``coarsest`` seconds when that is coarser
        (a chart that wants a bounded number of points); finer rows in the range are folded to it here, so
        the series is even. Windows with no row are absent (no data, not 0).
        Returns: (resolution in seconds, unsaved ChannelSample rows).
        """
        if end <= start:
            return max(1, settings.MICBOARD_HISTORY_RESOLUTION, coarsest), []
        resolution = max(HistoryService.resolution_for(start=start, now=now), coarsest)
        windows: dict[datetime, Fold] = {}
        rows = ChannelSample.objects.filter(channel=channel, at__gte=_bucket(start, resolution), at__lt=end)
        for row in rows.order_by("at", "pk").iterator(chunk_size=2000):
            windows.setdefault(_bucket(row.at, max(resolution, row.resolution)), Fold()).add_sample(row)
        return resolution, [f.sample(channel_id=channel.pk, at=s, resolution=resolution) for s, f in windows.items()]
