"""Huey tasks that send alert messages (webhooks, e-mail), and the sweep that finds lost ones.

``micboard.services.notify`` writes the messages into its outbox (Delivery rows) inside the alert
transitions and, after the commit, sends the ``deliveries_queued`` signal; the receiver below turns it
into one queued task per delivery (at its retry time for a retry). Queueing never fails a transition: if
the queue cannot be reached, the row stays queued and the sweep sends it a minute later.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.dispatch import receiver
from django.utils import timezone
from huey import crontab
from huey.contrib.djhuey import HUEY, db_periodic_task, db_task
from huey.exceptions import TaskLockedException

from micboard.models import Delivery
from micboard.services.notify import NotifyService, deliveries_queued

logger = logging.getLogger("tasks.notify")


@db_task()
def send_delivery(delivery_id: int) -> str | None:
    """One attempt at one delivery; the service records it and announces a retry if one is due."""
    delivery = NotifyService.send(delivery_id=delivery_id)
    return delivery.state if delivery is not None else None


@receiver(deliveries_queued, sender=Delivery, dispatch_uid="tasks-notify-enqueue")
def enqueue(sender, schedule, **kwargs) -> None:
    """Queue a task per delivery (after the commit that wrote it); a queue that fails is left to the sweep."""
    for delivery_id, at in schedule:
        try:
            if at is None:
                send_delivery(delivery_id)
            else:
                send_delivery.schedule(args=(delivery_id,), eta=at)
        except Exception as exc:  # the queue (Redis, the SQLite file) is down: the row waits for the sweep
            logger.warning("could not queue alert message %s (%s); the sweep sends it", delivery_id, exc)


@db_periodic_task(crontab(minute="*"))
def sweep_deliveries() -> None:
    """Every minute: queue again the deliveries whose task was lost (one consumer at a time)."""
    try:
        with HUEY.lock_task("notify-sweep"):
            lost = NotifyService.lost()
            for delivery_id in lost:
                send_delivery(delivery_id)
    except TaskLockedException:
        return
    if lost:
        logger.info("alert messages: %d lost ones queued again", len(lost))


@db_periodic_task(crontab(minute="41"))
def prune_deliveries() -> None:
    """Every hour: delete finished deliveries older than the history's retention (MICBOARD_HISTORY_RETENTION_DAYS)."""
    older_than = timezone.now() - timedelta(days=settings.MICBOARD_HISTORY_RETENTION_DAYS)
    try:
        with HUEY.lock_task("notify-prune"):
            pruned = NotifyService.prune(older_than=older_than)
    except TaskLockedException:
        return
    if pruned:
        logger.info("alert messages: %d old deliveries pruned", pruned)
