"""Outbound alert messages: webhooks (signed JSON over HTTP) and e-mail, through an outbox.

How a transition becomes a message, and why it never slows the link or a request:

1. ``AlertService`` calls :meth:`NotifyService.record` inside the transaction of each transition (open,
   acknowledge, resolve). It only writes :class:`Delivery` rows, one per matching target, with the message
   (``payload``) as it is at that moment: the outbox. A transition that rolls back leaves no message; one
   that commits always has its messages stored. Nothing is sent and no queue is touched there.
2. After the commit, :data:`deliveries_queued` is sent with the deliveries to send (and when). ``tasks/notify``
   connects to it and enqueues one Huey task per delivery; this module imports no Huey, so the services,
   the admin and the tests do not need a queue, and the task layer owns the scheduling.
3. The Huey task calls :meth:`NotifyService.send`, which claims the row (a conditional update with a lock
   time, so a task and the sweep never send one delivery twice at once), applies the rate limit, sends,
   and records the attempt: sent, retried later (back-off with jitter, or the server's Retry-After), or
   failed for good. A retry is announced through :data:`deliveries_queued` again.
4. A periodic sweep (:meth:`NotifyService.lost`) finds queued deliveries whose task never ran (a consumer
   killed after the commit, a queue that was down) and queues them again.

Rate limit: at most ``MICBOARD_ALERT_RATE_PER_MINUTE`` messages per target in any 60 s. Beyond it a
delivery is ``suppressed`` (reason ``rate_limit``, counted in the log) and one *summary* message is queued
for the end of the window, listing every message it held back: a crew gets every alert, in one message
instead of a flood. Quiet hours (e-mail only): inside a user's quiet hours a message is suppressed unless
the alert is of the highest priority (critical). See docs/alerts.md.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import json
import logging
import random
import re
import smtplib
import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as clock

import httpx
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Min, Q
from django.dispatch import Signal
from django.urls import reverse
from django.utils import timezone

from micboard.exceptions import ConfigurationError, RateLimitedError
from micboard.models import ALERT_EVENTS, Alert, AlertSubscription, Assignment, Delivery, Group, GroupSlot, Webhook

logger = logging.getLogger("micboard.notify")

# Sent after a commit that queued deliveries: ``schedule`` is a list of (delivery id, datetime to send at or None
# for now). tasks/notify.py enqueues them.
deliveries_queued = Signal()

RATE_WINDOW = timedelta(seconds=60)
SUMMARY_LIMIT = 50  # alerts listed in one summary message (the count says how many more)
ERROR_BYTES = 300  # of a failing response's body, kept in the log
LOST_AFTER = timedelta(seconds=60)  # a queued delivery this late had its task lost: the sweep queues it again
SIGNATURE_HEADER = "X-Micboard-Signature"
TEST_EMAIL_EVERY = timedelta(seconds=60)  # one test e-mail per user in this time
EMAIL_MAX_LENGTH = 254
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_SMTP_PERMANENT = (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt gave: ``ok``; else whether trying again may help, and what the server asked."""

    ok: bool
    retry: bool = False
    status: int | None = None
    error: str = ""
    retry_after: float | None = None


def sign(*, secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Micboard-Signature`` value: ``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def backoff_seconds(attempt: int) -> float:
    """Seconds before retry number ``attempt`` (1, 2 ...): exponential from MICBOARD_ALERT_RETRY_SECONDS up to
    MICBOARD_ALERT_RETRY_MAX_SECONDS, with "equal jitter" (half fixed, half random) so retries spread out."""
    full = min(settings.MICBOARD_ALERT_RETRY_MAX_SECONDS, settings.MICBOARD_ALERT_RETRY_SECONDS * 2 ** (attempt - 1))
    return full / 2 + random.uniform(0, full / 2)


def retry_after_seconds(value: str | None, *, now: datetime) -> float | None:
    """A Retry-After header (seconds or an HTTP date) in seconds from now; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


def in_quiet_hours(*, start, end, at: datetime) -> bool:
    """Whether ``at`` (in the server's TIME_ZONE) falls in [start, end); a window may span midnight."""
    if start is None or end is None or start == end:
        return False
    local = timezone.localtime(at).time()
    if start < end:
        return start <= local < end
    return local >= start or local < end


def _text(value: str, limit: int) -> str:
    """Device text made safe for a mail header or a log line: no control characters, bounded."""
    return _CONTROL.sub(" ", value or "").strip()[:limit]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _public_url(path: str) -> str | None:
    base = settings.MICBOARD_PUBLIC_URL
    return base.rstrip("/") + path if base else None


def _alert_groups(alert: Alert) -> dict[int, str]:
    """The board groups of the alert's channel (a receiver's alert: of any of its channels)."""
    slots = GroupSlot.objects.select_related("group")
    if alert.channel_id:
        slots = slots.filter(channel_id=alert.channel_id)
    else:
        slots = slots.filter(channel__receiver_id=alert.receiver_id)
    return {slot.group_id: slot.group.name for slot in slots.order_by("group__position", "group__name")}


def _matches(target, *, alert: Alert, event: str, groups: dict[int, str]) -> bool:
    if event not in target.events:
        return False
    if target.priorities and alert.priority not in target.priorities:
        return False
    wanted = {group.pk for group in target.groups.all()}
    return not wanted or bool(wanted & groups.keys())


class NotifyService:
    """The outbox of alert messages, and sending them (from Huey tasks only)."""

    # ------------------------------------------------------------------------------------------ the outbox

    @staticmethod
    def payload(*, alert: Alert, event: str, groups: dict[int, str] | None = None) -> dict:
        """The message about one transition of ``alert`` (JSON-ready), as it stands now."""
        channel = alert.channel
        assignment = getattr(channel, "assignment", None) if channel is not None else None
        groups = _alert_groups(alert) if groups is None else groups
        receiver = alert.receiver
        return {
            "event": event,
            "alert": {
                "id": alert.pk,
                "kind": alert.kind,
                "kind_label": str(alert.get_kind_display()),
                "priority": str(Assignment.Priority(alert.priority).label).lower(),
                "priority_level": alert.priority,
                "state": alert.state,
                "detail": alert.detail,
                "receiver": {"id": receiver.pk, "name": receiver.name, "model": receiver.model},
                "channel": (
                    {"id": channel.pk, "number": channel.number, "name": channel.name} if channel is not None else None
                ),
                "performer": assignment.performer.name if assignment is not None else None,
                "groups": list(groups.values()),
                "opened_at": _iso(alert.opened_at),
                "acknowledged_at": _iso(alert.acknowledged_at),
                "acknowledged_by": alert.acknowledged_by.get_username() if alert.acknowledged_by_id else None,
                "acknowledged_from": alert.acknowledged_from or None,
                "resolved_at": _iso(alert.resolved_at),
            },
            "board_url": _public_url(
                reverse("channel-detail", args=[channel.pk]) if channel is not None else reverse("board")
            ),
        }

    @staticmethod
    def record(*, alert: Alert, event: str, now: datetime | None = None) -> list[Delivery]:
        """Store the messages one transition owes its targets (call inside the transition's transaction).

        Writes one queued Delivery per active webhook and e-mail subscription whose event, priority and
        group filters match (a subscriber in quiet hours gets a ``suppressed`` row instead, unless the alert
        is critical) and, after the commit, announces the queued ones through :data:`deliveries_queued`.
        Sends nothing. Two reads when no target exists.

        Returns:
            The deliveries written.
        """
        now = now or timezone.now()
        webhooks = list(Webhook.objects.filter(active=True).prefetch_related("groups"))
        subscriptions = list(
            AlertSubscription.objects.filter(active=True).select_related("user").prefetch_related("groups")
        )
        if not webhooks and not subscriptions:
            return []
        alert = Alert.objects.select_related("receiver", "channel__assignment__performer", "acknowledged_by").get(
            pk=alert.pk
        )
        groups = _alert_groups(alert)
        payload = NotifyService.payload(alert=alert, event=event, groups=groups)
        rows = [
            Delivery(alert=alert, event=event, webhook=hook, payload=payload, next_attempt_at=now)
            for hook in webhooks
            if _matches(hook, alert=alert, event=event, groups=groups)
        ]
        for subscription in subscriptions:
            if not _matches(subscription, alert=alert, event=event, groups=groups):
                continue
            row = Delivery(alert=alert, event=event, user=subscription.user, payload=payload, next_attempt_at=now)
            quiet = in_quiet_hours(start=subscription.quiet_start, end=subscription.quiet_end, at=now)
            if quiet and alert.priority < Assignment.Priority.CRITICAL:
                row.state, row.reason, row.next_attempt_at = (
                    Delivery.State.SUPPRESSED,
                    Delivery.Reason.QUIET_HOURS,
                    None,
                )
            rows.append(row)
        if not rows:
            return []
        rows = Delivery.objects.bulk_create(rows)
        NotifyService._announce([(row.pk, None) for row in rows if row.state == Delivery.State.QUEUED])
        return rows

    @staticmethod
    def queue_test(*, webhook: Webhook | None = None, user: AbstractBaseUser | None = None) -> Delivery:
        """Queue a test message to a webhook or to a user's e-mail address, sent like any other (by Huey).

        A user gets at most one test e-mail per TEST_EMAIL_EVERY, whoever asks (the user or an admin).

        Raises:
            ConfigurationError: neither or both targets given, or the user has no e-mail address.
            RateLimitedError: the user's last test e-mail was queued less than TEST_EMAIL_EVERY ago.
        """
        if (webhook is None) == (user is None):
            raise ConfigurationError("A test message goes to one webhook or one user.")
        now = timezone.now()
        if webhook is not None:
            detail = f"Test message from micboard to the webhook {webhook.name}."
        else:
            NotifyService.check_address(user=user)
            detail = f"Test message from micboard to {user.get_username()}'s alert e-mail address."
        with transaction.atomic():
            if user is not None:
                get_user_model().objects.select_for_update().filter(pk=user.pk).first()  # one asker at a time
                last = (
                    Delivery.objects.filter(user=user, event=Delivery.EVENT_TEST, created_at__gt=now - TEST_EMAIL_EVERY)
                    .order_by("-created_at")
                    .values_list("created_at", flat=True)
                    .first()
                )
                if last is not None:
                    wait = max(1, int((last + TEST_EMAIL_EVERY - now).total_seconds() + 0.999))
                    raise RateLimitedError(
                        f"A test e-mail was sent less than a minute ago; try again in {wait} s.", wait_seconds=wait
                    )
            delivery = Delivery.objects.create(
                event=Delivery.EVENT_TEST,
                webhook=webhook,
                user=user,
                next_attempt_at=now,
                payload={"event": Delivery.EVENT_TEST, "detail": detail, "board_url": _public_url(reverse("board"))},
            )
            NotifyService._announce([(delivery.pk, None)])
        return delivery

    @staticmethod
    def _announce(schedule: list[tuple[int, datetime | None]]) -> None:
        if schedule:
            transaction.on_commit(lambda: deliveries_queued.send(sender=Delivery, schedule=schedule))

    # ------------------------------------------------------------------------------------------ subscriptions

    @staticmethod
    def check_address(*, user: AbstractBaseUser) -> None:
        """A subscription e-mails the user's own address, so the user needs one.

        Raises:
            ConfigurationError: the user has no e-mail address.
        """
        if not getattr(user, "email", ""):
            raise ConfigurationError(f"{user} has no e-mail address: add one to the user first.")

    @staticmethod
    def check_quiet_hours(*, start: clock | None, end: clock | None) -> None:
        """Quiet hours are both set (a window that may span midnight) or both blank, and never empty.

        Raises:
            ConfigurationError: one end only, or a window that starts when it ends.
        """
        if (start is None) != (end is None):
            raise ConfigurationError("Quiet hours need both a start and an end (or neither).")
        if start is not None and start == end:
            raise ConfigurationError("Quiet hours that start when they end are empty: leave both blank instead.")

    @staticmethod
    def clean_email(*, email: str) -> str:
        """An e-mail address as stored on the user (domain in lower case).

        Raises:
            ConfigurationError: blank, too long, or not an address.
        """
        email = (email or "").strip()
        if not email:
            raise ConfigurationError("Alert e-mail needs an address.")
        if len(email) > EMAIL_MAX_LENGTH:
            raise ConfigurationError(f"An e-mail address has at most {EMAIL_MAX_LENGTH} characters.")
        try:
            validate_email(email)
        except ValidationError as exc:
            raise ConfigurationError(f"“{email[:100]}” is not an e-mail address.") from exc
        local, _, domain = email.rpartition("@")
        return f"{local}@{domain.lower()}"

    @staticmethod
    def save_subscription(
        *,
        user: AbstractBaseUser,
        email: str,
        active: bool,
        events: Collection[str],
        priorities: Collection[int],
        group_ids: Collection[int],
        quiet_start: clock | None,
        quiet_end: clock | None,
    ) -> AlertSubscription:
        """Create or change ``user``'s own alert e-mail, and the user's address with it (one transaction).

        Every rule is checked here, whatever form sent the values: the address, at least one known event,
        known priorities, existing board groups (none: every board), quiet hours. The subscription's save
        is written to the audit trail.

        Raises:
            ConfigurationError: a value breaks a rule (the message says which); nothing is saved.
        """
        email = NotifyService.clean_email(email=email)
        if any(e not in ALERT_EVENTS for e in events):
            raise ConfigurationError("Unknown event: choose among opened, acknowledged and resolved.")
        if not events:
            raise ConfigurationError("Tick at least one event: opened, acknowledged or resolved.")
        known = set(Assignment.Priority.values)
        if any(p not in known for p in priorities):
            raise ConfigurationError("Unknown priority: choose among low, normal, high and critical.")
        group_ids = set(group_ids)
        groups = list(Group.objects.filter(pk__in=group_ids))
        if len(groups) != len(group_ids):
            raise ConfigurationError("A board group ticked no longer exists: reload the page.")
        NotifyService.check_quiet_hours(start=quiet_start, end=quiet_end)
        with transaction.atomic():
            if user.email != email:
                user.email = email
                user.save(update_fields=["email"])
            subscription = AlertSubscription.objects.filter(user=user).first() or AlertSubscription(user=user)
            subscription.active = bool(active)
            subscription.events = [e for e in ALERT_EVENTS if e in events]
            subscription.priorities = sorted(set(priorities))
            subscription.quiet_start, subscription.quiet_end = quiet_start, quiet_end
            subscription.save()
            subscription.groups.set(groups)
        return subscription

    @staticmethod
    def delete_subscription(*, user: AbstractBaseUser) -> bool:
        """Stop ``user``'s alert e-mail (the address stays on the user); whether there was a subscription."""
        subscription = AlertSubscription.objects.filter(user=user).first()
        if subscription is None:
            return False
        subscription.delete()  # one row, so the audit trail's post_delete sees it
        return True

    # ------------------------------------------------------------------------------------------ sending

    @staticmethod
    def send(*, delivery_id: int, now: datetime | None = None) -> Delivery | None:
        """Make one attempt at a queued delivery that is due (from a Huey task, never a request or a link).

        Returns:
            The delivery as it stands after the attempt; None when it was not due, not queued any more, or
            another sender holds it.
        """
        now = now or timezone.now()
        lock = settings.MICBOARD_WEBHOOK_TIMEOUT + (settings.EMAIL_TIMEOUT or 10) + 30
        claimed = (
            Delivery.objects.filter(pk=delivery_id, state=Delivery.State.QUEUED)
            .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now + timedelta(seconds=1)))
            .filter(Q(locked_until__isnull=True) | Q(locked_until__lte=now))
            .update(locked_until=now + timedelta(seconds=lock))
        )
        if not claimed:
            return None
        delivery = Delivery.objects.select_related("webhook", "user").get(pk=delivery_id)
        if delivery.event == Delivery.EVENT_SUMMARY:
            if not NotifyService._fill_summary(delivery):
                delivery.delete()  # what it was to tell was told already
                return None
        elif delivery.event != Delivery.EVENT_TEST and NotifyService._over_limit(delivery, now):
            NotifyService._hold_back(delivery, now)
            return delivery
        outcome = NotifyService._attempt(delivery, now)
        NotifyService._settle(delivery, outcome, now)
        return delivery

    @staticmethod
    def _target(delivery: Delivery) -> Q:
        return Q(webhook_id=delivery.webhook_id) if delivery.webhook_id else Q(user_id=delivery.user_id)

    @staticmethod
    def _over_limit(delivery: Delivery, now: datetime) -> bool:
        recent = Delivery.objects.filter(
            NotifyService._target(delivery), state=Delivery.State.SENT, sent_at__gt=now - RATE_WINDOW
        )
        return recent.count() >= settings.MICBOARD_ALERT_RATE_PER_MINUTE

    @staticmethod
    def _hold_back(delivery: Delivery, now: datetime) -> None:
        """Suppress a rate-limited delivery and make sure a summary goes out when the window allows."""
        target = NotifyService._target(delivery)
        with transaction.atomic():
            delivery.state, delivery.reason, delivery.locked_until = (
                Delivery.State.SUPPRESSED,
                Delivery.Reason.RATE_LIMIT,
                None,
            )
            delivery.next_attempt_at = None
            delivery.save(update_fields=["state", "reason", "locked_until", "next_attempt_at"])
            waiting = Delivery.objects.filter(
                target, event=Delivery.EVENT_SUMMARY, state=Delivery.State.QUEUED, payload={}
            ).exists()
            if waiting:
                return
            oldest = Delivery.objects.filter(
                target, state=Delivery.State.SENT, sent_at__gt=now - RATE_WINDOW
            ).aggregate(oldest=Min("sent_at"))["oldest"]
            at = (oldest or now) + RATE_WINDOW
            summary = Delivery.objects.create(
                event=Delivery.EVENT_SUMMARY,
                webhook_id=delivery.webhook_id,
                user_id=delivery.user_id,
                next_attempt_at=at,
            )
            NotifyService._announce([(summary.pk, at)])
        logger.info("rate limit: %s held back for the summary at %s", delivery, at)

    @staticmethod
    def _fill_summary(summary: Delivery) -> bool:
        """On its first attempt, a summary takes every message held back for its target since the last one."""
        if summary.payload:
            return True
        held = Delivery.objects.filter(
            NotifyService._target(summary),
            state=Delivery.State.SUPPRESSED,
            reason=Delivery.Reason.RATE_LIMIT,
            summary__isnull=True,
        ).order_by("created_at", "pk")
        items = list(held[:SUMMARY_LIMIT])
        count = held.count()
        if not count:
            return False
        held.update(summary=summary)
        summary.payload = {
            "event": Delivery.EVENT_SUMMARY,
            "count": count,
            "more": max(0, count - len(items)),
            "messages": [{"event": d.event, "alert": d.payload.get("alert")} for d in items],
            "board_url": _public_url(reverse("board")),
        }
        summary.save(update_fields=["payload"])
        return True

    @staticmethod
    def _attempt(delivery: Delivery, now: datetime) -> Outcome:
        if delivery.webhook_id:
            if not delivery.webhook.active and delivery.event != Delivery.EVENT_TEST:
                return Outcome(ok=False, error="the webhook was switched off")
            return NotifyService._post(delivery, now)
        return NotifyService._email(delivery)

    @staticmethod
    def _settle(delivery: Delivery, outcome: Outcome, now: datetime) -> None:
        """Record an attempt: sent, retried after a back-off, or failed for good."""
        delivery.attempts += 1
        delivery.status_code = outcome.status
        delivery.error = outcome.error[:500]
        delivery.locked_until = None
        entry = {"at": now.isoformat(), "status": outcome.status, "error": delivery.error}
        if outcome.ok:
            delivery.state, delivery.sent_at, delivery.next_attempt_at = Delivery.State.SENT, now, None
            entry["outcome"] = "sent"
        elif outcome.retry and delivery.attempts < settings.MICBOARD_ALERT_SEND_ATTEMPTS:
            delay = (
                min(max(outcome.retry_after, 1.0), settings.MICBOARD_ALERT_RETRY_MAX_SECONDS)
                if outcome.retry_after is not None
                else backoff_seconds(delivery.attempts)
            )
            delivery.next_attempt_at = now + timedelta(seconds=delay)
            entry |= {"outcome": "retry", "retry_in": round(delay, 1)}
        else:
            delivery.state, delivery.next_attempt_at = Delivery.State.FAILED, None
            entry["outcome"] = "failed"
            logger.warning(
                "alert message failed for good after %d attempt(s): %s: %s", delivery.attempts, delivery, delivery.error
            )
        delivery.log = [*delivery.log, entry]
        delivery.save(
            update_fields=[
                "attempts",
                "status_code",
                "error",
                "locked_until",
                "state",
                "sent_at",
                "next_attempt_at",
                "log",
            ]
        )
        if delivery.state == Delivery.State.QUEUED:
            NotifyService._announce([(delivery.pk, delivery.next_attempt_at)])

    @staticmethod
    def body(delivery: Delivery) -> bytes:
        """The exact bytes a webhook receives (the same on every retry)."""
        return json.dumps({"delivery": delivery.pk, **delivery.payload}, sort_keys=True, separators=(",", ":")).encode()

    @staticmethod
    def _post(delivery: Delivery, now: datetime) -> Outcome:
        body = NotifyService.body(delivery)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "micboard-webhook/1",
            "X-Micboard-Event": delivery.event,
            "X-Micboard-Delivery": str(delivery.pk),
            SIGNATURE_HEADER: sign(secret=delivery.webhook.secret, timestamp=int(time.time()), body=body),
        }
        timeout = settings.MICBOARD_WEBHOOK_TIMEOUT
        try:
            # No redirects (a redirect could lead to another host), no proxy from the environment.
            with (
                httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client,
                client.stream("POST", delivery.webhook.url, content=body, headers=headers) as response,
            ):
                status = response.status_code
                if 200 <= status < 300:
                    return Outcome(ok=True, status=status)
                text = NotifyService._bounded_text(response)
                retry_after = retry_after_seconds(response.headers.get("Retry-After"), now=now)
                location = response.headers.get("Location", "")
        except httpx.TimeoutException:
            return Outcome(ok=False, retry=True, error=f"no answer within {timeout:g} s")
        except httpx.UnsupportedProtocol as exc:  # a transport error no retry mends
            return Outcome(ok=False, error=f"unusable URL: {exc}")
        except httpx.TransportError as exc:
            return Outcome(ok=False, retry=True, error=f"connection failed: {exc.__class__.__name__}: {exc}")
        except (httpx.HTTPError, httpx.InvalidURL) as exc:  # an unusable URL: no retry mends that
            return Outcome(ok=False, error=f"{exc.__class__.__name__}: {exc}")
        error = f"HTTP {status}" + (f": {text}" if text else "")
        if 300 <= status < 400:
            return Outcome(
                ok=False,
                status=status,
                error=f"HTTP {status} redirect to {location[:200]} not followed; set the URL to the final address",
            )
        if status in (408, 429) or status >= 500:
            return Outcome(ok=False, retry=True, status=status, error=error, retry_after=retry_after)
        return Outcome(ok=False, status=status, error=error)

    @staticmethod
    def _bounded_text(response: httpx.Response) -> str:
        """At most ERROR_BYTES of a failing response's body, for the log (the rest is never read)."""
        data = b""
        for chunk in response.iter_bytes(chunk_size=ERROR_BYTES):
            data += chunk
            if len(data) >= ERROR_BYTES:
                break
        return _text(data[:ERROR_BYTES].decode("utf-8", "replace"), ERROR_BYTES)

    @staticmethod
    def _email(delivery: Delivery) -> Outcome:
        address = delivery.user.email
        if not address:
            return Outcome(ok=False, error=f"{delivery.user} has no e-mail address")
        subject, text = NotifyService.email_text(delivery)
        try:
            EmailMessage(subject, text, settings.DEFAULT_FROM_EMAIL, [address]).send()
        except _SMTP_PERMANENT as exc:
            return Outcome(ok=False, error=f"refused: {exc}")
        except smtplib.SMTPResponseException as exc:  # 4xx: the server asks to come back later
            code = exc.smtp_code
            return Outcome(ok=False, retry=400 <= code < 500, error=f"SMTP {code}: {_text(str(exc.smtp_error), 200)}")
        except (smtplib.SMTPException, OSError) as exc:
            return Outcome(ok=False, retry=True, error=f"{exc.__class__.__name__}: {exc}")
        return Outcome(ok=True)

    @staticmethod
    def email_text(delivery: Delivery) -> tuple[str, str]:
        """The subject (priority and channel first) and plain-text body of a delivery's e-mail."""
        payload = delivery.payload
        link = payload.get("board_url")
        if delivery.event == Delivery.EVENT_TEST:
            return "[micboard] Test message", payload.get("detail", "") + "\n"
        if delivery.event == Delivery.EVENT_SUMMARY:
            lines = [_line(item["event"], item["alert"]) for item in payload["messages"] if item.get("alert")]
            if payload.get("more"):
                lines.append(f"... and {payload['more']} more.")
            lines += ["", f"Board: {link}"] if link else []
            subject = f"[micboard] {payload['count']} alert messages held back by the rate limit"
            intro = "These alert messages came faster than the rate limit allows:\n\n"
            return subject, intro + "\n".join(lines) + "\n"
        alert = payload["alert"]
        prefix = {"acknowledged": "Acknowledged: ", "resolved": "Resolved: "}.get(delivery.event, "")
        subject = _text(
            f"[micboard] {alert['priority'].upper()}: {prefix}{alert['kind_label']} on {_where(alert)}", 200
        )
        body = [
            f"{alert['kind_label']} on {_where(alert)}",
            f"Priority: {alert['priority']}",
            f"State: {alert['state']}",
            f"Detail: {alert['detail']}",
            f"Receiver: {alert['receiver']['name']} ({alert['receiver']['model']})",
            f"Opened: {_local(alert['opened_at'])}",
        ]
        if alert["acknowledged_at"]:
            screen = f" from {alert['acknowledged_from']}" if alert["acknowledged_from"] else ""
            body.append(f"Acknowledged: {_local(alert['acknowledged_at'])} by {alert['acknowledged_by']}{screen}")
        if alert["resolved_at"]:
            body.append(f"Resolved: {_local(alert['resolved_at'])}")
        if link:
            body.append(f"Board: {link}")
        return subject, "\n".join(_text(line, 500) for line in body) + "\n"

    # ------------------------------------------------------------------------------------------ upkeep

    @staticmethod
    def lost(*, now: datetime | None = None, limit: int = 500) -> list[int]:
        """Queued deliveries due for LOST_AFTER or longer and held by no sender: their task was lost."""
        now = now or timezone.now()
        return list(
            Delivery.objects.filter(state=Delivery.State.QUEUED, next_attempt_at__lte=now - LOST_AFTER)
            .filter(Q(locked_until__isnull=True) | Q(locked_until__lte=now))
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)[:limit]
        )

    @staticmethod
    def prune(*, older_than: datetime, batch_rows: int = 5000) -> int:
        """Delete finished deliveries created before ``older_than`` (one bounded batch); the count deleted."""
        if batch_rows < 1:
            raise ConfigurationError("batch_rows must be at least 1")
        ids = list(
            Delivery.objects.filter(created_at__lt=older_than)
            .exclude(state=Delivery.State.QUEUED)
            .order_by("created_at", "pk")  # a summary goes with or after the messages it told of
            .values_list("pk", flat=True)[:batch_rows]
        )
        return Delivery.objects.filter(pk__in=ids).delete()[0]


def _where(alert: dict) -> str:
    channel = alert.get("channel")
    where = f"{alert['receiver']['name']} ch{channel['number']}" if channel else alert["receiver"]["name"]
    return where + (f" ({alert['performer']})" if alert.get("performer") else "")


def _line(event: str, alert: dict) -> str:
    return f"- {event}: {alert['priority'].upper()} {alert['kind_label']} on {_where(alert)}: {alert['detail']}"


def _local(value: str | None) -> str:
    if not value:
        return ""
    return timezone.localtime(datetime.fromisoformat(value)).strftime("%Y-%m-%d %H:%M:%S %Z")
