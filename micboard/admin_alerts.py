"""Django admin of what alerts send and to whom: webhooks, e-mail subscriptions, the delivery log, and the
per-assignment alert rules (an inline of the assignment, see ``micboard.admin``).

A webhook's secret goes into the form and never back out: the field is a password input that is never
filled in, and the page shows only its last four characters. Messages are queued through
``NotifyService`` (the "send test" action); the delivery log is read only.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html

from micboard.exceptions import ConfigurationError, RateLimitedError
from micboard.forms import AlertTargetForm, SubscriptionRulesForm
from micboard.models import AlertRule, AlertSubscription, Delivery, Webhook
from micboard.services.notify import NotifyService

STATE_COLOURS = {"queued": "#b54708", "sent": "#1a7f37", "failed": "#b42318", "suppressed": "#667085"}
SECRET_MIN_LENGTH = 16


class WebhookForm(AlertTargetForm):
    url = forms.URLField(
        label="URL",
        max_length=500,
        assume_scheme="https",
        help_text="Receives a POST of JSON per alert transition (docs/alerts.md: payload and signature).",
    )
    secret = forms.CharField(
        required=False,
        strip=True,
        max_length=128,
        widget=forms.PasswordInput(render_value=False),  # a secret never goes back to the browser
        help_text=f"At least {SECRET_MIN_LENGTH} characters, shared with the receiving end, which checks the "
        "signature with it (docs/alerts.md). "
        "Generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'",
    )

    class Meta:
        model = Webhook
        fields = ["name", "url", "secret", "active", "events", "priorities", "groups"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.secret:
            self.fields["secret"].help_text = "A secret is stored; leave blank to keep it, or type a new one."

    def clean_secret(self):
        secret = self.cleaned_data.get("secret") or ""
        if not secret:
            if self.instance.secret:
                return self.instance.secret
            raise forms.ValidationError("A webhook needs a secret to sign its messages with.")
        if len(secret) < SECRET_MIN_LENGTH:
            raise forms.ValidationError(f"Use at least {SECRET_MIN_LENGTH} characters.")
        return secret


class AlertSubscriptionForm(SubscriptionRulesForm):
    """The admin's subscription: for any user (the crew's own page is web/subscription_views.py)."""

    class Meta(SubscriptionRulesForm.Meta):
        fields = ["user", *SubscriptionRulesForm.Meta.fields]

    def clean_user(self):
        user = self.cleaned_data["user"]
        try:
            NotifyService.check_address(user=user)
        except ConfigurationError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return user


def _badge(colour: str, text: str):
    return format_html(
        '<span style="background:{};color:#fff;padding:1px 8px;border-radius:8px;font-weight:600">{}</span>',
        colour,
        text,
    )


class AlertTargetAdmin(admin.ModelAdmin):
    filter_horizontal = ["groups"]

    @admin.display(description="Events")
    def event_list(self, obj):
        return ", ".join(obj.events)

    @admin.display(description="Priorities")
    def priority_list(self, obj):
        return obj.priority_names()

    @admin.display(description="Boards")
    def group_list(self, obj):
        return ", ".join(g.name for g in obj.groups.all()) or "all"

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("groups")


@admin.register(Webhook)
class WebhookAdmin(AlertTargetAdmin):
    form = WebhookForm
    list_display = ["name", "url", "active", "event_list", "priority_list", "group_list"]
    list_filter = ["active"]
    search_fields = ["name", "url"]
    readonly_fields = ["stored_secret"]
    actions = ["send_test"]

    def get_fields(self, request, obj=None):
        fields = ["name", "url", "secret", "active", "events", "priorities", "groups"]
        if obj is None:
            return fields
        if not self.has_change_permission(request, obj):
            fields.remove("secret")
        return [*fields[:3], "stored_secret", *fields[3:]] if "secret" in fields else ["stored_secret", *fields]

    @admin.display(description="Stored secret")
    def stored_secret(self, obj):
        return f"…{obj.secret[-4:]}" if obj.secret else "none"

    @admin.action(permissions=["change"], description="Send a test message")
    def send_test(self, request, queryset):
        for webhook in queryset:
            NotifyService.queue_test(webhook=webhook)
        self.message_user(
            request, f"Test message queued for {queryset.count()} webhook(s); see Deliveries for the outcome."
        )


@admin.register(AlertSubscription)
class AlertSubscriptionAdmin(AlertTargetAdmin):
    form = AlertSubscriptionForm
    list_display = ["user", "email", "active", "event_list", "priority_list", "group_list", "quiet_hours"]
    list_filter = ["active"]
    search_fields = ["user__username", "user__email"]
    list_select_related = ["user"]
    autocomplete_fields = ["user"]
    actions = ["send_test"]

    @admin.action(permissions=["change"], description="Send a test message")
    def send_test(self, request, queryset):
        queued, refused = 0, []
        for subscription in queryset.select_related("user"):
            try:
                NotifyService.queue_test(user=subscription.user)
            except (ConfigurationError, RateLimitedError) as exc:
                refused.append(f"{subscription.user}: {exc}")
            else:
                queued += 1
        self.message_user(request, f"Test e-mail queued for {queued} subscriber(s); see Deliveries for the outcome.")
        for line in refused:
            self.message_user(request, line, level=messages.WARNING)

    @admin.display(description="E-mail", ordering="user__email")
    def email(self, obj):
        return obj.user.email

    @admin.display(description="Quiet hours")
    def quiet_hours(self, obj):
        if obj.quiet_start is None:
            return "—"
        return f"{obj.quiet_start:%H:%M} to {obj.quiet_end:%H:%M}"


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    """The log of alert messages, newest first: read only (Huey sends, retries and records them)."""

    list_display = [
        "created_at", "event", "target", "state_badge", "reason", "attempts", "status_code", "error", "sent_at",
        "next_attempt_at",
    ]  # fmt: skip
    list_filter = ["state", "event", "reason", "webhook"]
    list_select_related = ["webhook", "user", "alert"]
    search_fields = ["webhook__name", "user__username", "error"]
    date_hierarchy = "created_at"
    fields = [
        "alert", "event", "webhook", "user", "state", "reason", "summary", "attempts", "status_code", "error", "log",
        "next_attempt_at", "created_at", "sent_at", "payload",
    ]  # fmt: skip
    readonly_fields = fields

    @admin.display(description="State", ordering="state")
    def state_badge(self, obj):
        return _badge(STATE_COLOURS.get(obj.state, "#667085"), obj.get_state_display())

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class AlertRuleForm(forms.ModelForm):
    """An assignment's own thresholds, within the ranges a show can use."""

    BOUNDS = {
        "battery_minutes": (0, 24 * 60),
        "off_grace_seconds": (0, 3600),
        "rf_seconds": (0, 3600),
        "diversity_seconds": (0, 24 * 3600),
    }

    class Meta:
        model = AlertRule
        fields = [
            "battery_bars", "battery_minutes", "off_grace_seconds", "rf_dbm", "rf_seconds", "diversity_seconds",
            "trend_factor",
        ]  # fmt: skip

    def clean(self):
        cleaned = super().clean()
        for name, (low, high) in self.BOUNDS.items():
            value = cleaned.get(name)
            if value is not None and not low <= value <= high:
                self.add_error(name, f"Between {low} and {high}.")
        return cleaned


class AlertRuleInline(admin.StackedInline):
    """On the assignment's page: thresholds that replace the settings for this performer's pack."""

    model = AlertRule
    form = AlertRuleForm
    extra = 0
    max_num = 1
    verbose_name = "own alert thresholds"
    verbose_name_plural = "own alert thresholds (empty fields keep the defaults from the settings)"
