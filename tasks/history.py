"""Huey periodic tasks of the show history: fold samples as they age, delete them after the retention.

Only one consumer works on the history at a time (a Huey lock); each run does bounded batches and the next
run goes on where it stopped. See ``micboard.services.history``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone
from huey import crontab
from huey.contrib.djhuey import HUEY, db_periodic_task
from huey.exceptions import TaskLockedException

from micboard.services.charts import SparklineService
from micboard.services.history import HistoryService

logger = logging.getLogger("tasks.history")

BATCH_ROWS = 5000


def fold_history(*, now: datetime | None = None) -> tuple[int, int]:
    """Fold 1 s rows older than MICBOARD_HISTORY_RAW_MINUTES into 10 s rows, and 10 s rows older than
    MICBOARD_HISTORY_TEN_SECOND_HOURS into 60 s rows; the source rows folded at each step. ``now``: the
    clock to age them by (the show clock of ``micboard/showrun.py``; default the wall clock)."""
    now = now or timezone.now()
    raw = HistoryService.downsample(
        source=1,
        target=10,
        older_than=now - timedelta(minutes=settings.MICBOARD_HISTORY_RAW_MINUTES),
        batch_rows=BATCH_ROWS,
    )
    ten = HistoryService.downsample(
        source=10,
        target=60,
        older_than=now - timedelta(hours=settings.MICBOARD_HISTORY_TEN_SECOND_HOURS),
        batch_rows=BATCH_ROWS,
    )
    return raw, ten


def prune_history_now(*, now: datetime | None = None) -> int:
    """Delete samples older than MICBOARD_HISTORY_RETENTION_DAYS (before ``now``); the count deleted."""
    older_than = (now or timezone.now()) - timedelta(days=settings.MICBOARD_HISTORY_RETENTION_DAYS)
    return HistoryService.prune(older_than=older_than, batch_rows=BATCH_ROWS)


@db_periodic_task(crontab(minute="*"))
def downsample_history() -> None:
    """Every minute: fold aging samples (one consumer at a time)."""
    try:
        with HUEY.lock_task("history-downsample"):
            raw, ten = fold_history()
    except TaskLockedException:
        return  # another consumer is at it
    if raw or ten:
        logger.info("history: folded %d 1 s rows and %d 10 s rows", raw, ten)


@db_periodic_task(crontab(minute="23"))
def prune_history() -> None:
    """Every hour: delete samples past the retention (one consumer at a time)."""
    try:
        with HUEY.lock_task("history-prune"):
            deleted = prune_history_now()
    except TaskLockedException:
        return
    if deleted:
        logger.info("history: deleted %d samples past the retention", deleted)


@db_periodic_task(crontab(minute="*"))
def draw_sparklines() -> None:
    """Every minute: the tiles' battery sparklines, one history query for every channel (kept in the cache)."""
    SparklineService.refresh()
