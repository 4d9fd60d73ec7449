"""Outbound alert messages: webhooks, e-mail subscriptions and the delivery log (the outbox).

Imported at the end of ``micboard.models`` (kept apart so that module stays readable). Thin models, as
there: every write happens in ``micboard.services.notify``.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import URLValidator
from django.db import models

from micboard.models import Alert, Assignment, Group

# What a target can subscribe to: an alert's transitions.
EVENT_OPENED = "opened"
EVENT_ACKNOWLEDGED = "acknowledged"
EVENT_RESOLVED = "resolved"
ALERT_EVENTS = (EVENT_OPENED, EVENT_ACKNOWLEDGED, EVENT_RESOLVED)
EVENT_CHOICES = [(EVENT_OPENED, "Opened"), (EVENT_ACKNOWLEDGED, "Acknowledged"), (EVENT_RESOLVED, "Resolved")]


def all_events() -> list[str]:
    return list(ALERT_EVENTS)


def opened_only() -> list[str]:
    return [EVENT_OPENED]


class AlertTarget(models.Model):
    """What a webhook and an e-mail subscription share: the filters of the alerts they get.

    ``priorities`` and ``groups`` empty mean every priority and every board group; ``events`` lists the
    transitions sent (at least one).
    """

    active = models.BooleanField(default=True)
    priorities = models.JSONField(
        default=list, blank=True, help_text="Only alerts of these priorities (none ticked: every priority)."
    )
    groups = models.ManyToManyField(
        Group,
        blank=True,
        related_name="+",
        help_text="Only alerts of channels on these boards (none: every channel and receiver).",
    )
    events = models.JSONField(default=all_events, help_text="Which of an alert's transitions are sent.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True

    def priority_names(self) -> str:
        labels = dict(Assignment.Priority.choices)
        return ", ".join(str(labels.get(p, p)) for p in sorted(self.priorities)) or "all"


class Webhook(AlertTarget):
    """An HTTP endpoint that gets each alert transition as JSON, signed with HMAC-SHA256 of its secret."""

    name = models.CharField(max_length=100, unique=True)
    url = models.URLField(
        "URL",
        max_length=500,
        validators=[URLValidator(schemes=["http", "https"])],
        help_text="Receives a POST of JSON per alert transition (docs/alerts.md: payload and signature).",
    )
    secret = models.CharField(
        max_length=128, help_text="Shared secret of the HMAC-SHA256 signature (X-Micboard-Signature)."
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AlertSubscription(AlertTarget):
    """One user's e-mail about alerts (to the user's address), with quiet hours in the server's TIME_ZONE.

    Quiet hours may span midnight (22:00 to 07:00); during them only critical alerts are e-mailed.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="alert_subscription")
    quiet_start = models.TimeField("quiet hours from", null=True, blank=True)
    quiet_end = models.TimeField("quiet hours until", null=True, blank=True)
    events = models.JSONField(default=opened_only, help_text="Which of an alert's transitions are e-mailed.")

    class Meta:
        ordering = ["user__username"]

    def __str__(self) -> str:
        return f"Alert e-mail to {self.user}"


class Delivery(models.Model):
    """One message to one target (webhook or user) about one alert transition: the outbox and its log.

    Written in the same transaction as the transition it tells of (``NotifyService.record``), sent later
    by a Huey task. ``payload`` is the message as it was at the transition; retries send it again.
    """

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        SUPPRESSED = "suppressed", "Suppressed"

    class Reason(models.TextChoices):
        NONE = "", "—"
        RATE_LIMIT = "rate_limit", "Rate limit (in the next summary)"
        QUIET_HOURS = "quiet_hours", "Quiet hours"

    EVENT_TEST = "test"
    EVENT_SUMMARY = "summary"

    alert = models.ForeignKey(Alert, null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=16)  # opened / acknowledged / resolved / test / summary
    webhook = models.ForeignKey(Webhook, null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="alert_deliveries"
    )
    state = models.CharField(max_length=12, choices=State.choices, default=State.QUEUED)
    reason = models.CharField("suppressed because", max_length=12, choices=Reason.choices, blank=True)
    summary = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="summarised",
        help_text="The summary message that told of this rate-limited one.",
    )
    payload = models.JSONField(default=dict)
    attempts = models.PositiveSmallIntegerField(default=0)
    status_code = models.PositiveSmallIntegerField("last HTTP status", null=True, blank=True)
    error = models.CharField("last error", max_length=500, blank=True)
    log = models.JSONField(default=list, blank=True)  # one entry per attempt: at, outcome, retry_in
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    locked_until = models.DateTimeField(null=True, blank=True)  # a sender is at it until then
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="delivery_state_due"),
            models.Index(fields=["webhook", "state", "sent_at"], name="delivery_webhook_sent"),
            models.Index(fields=["user", "state", "sent_at"], name="delivery_user_sent"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(webhook__isnull=False, user__isnull=True)
                | models.Q(webhook__isnull=True, user__isnull=False),
                name="delivery_one_target",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event} to {self.target} ({self.state})"

    @property
    def target(self) -> str:
        return f"webhook {self.webhook}" if self.webhook_id else f"{self.user}"
