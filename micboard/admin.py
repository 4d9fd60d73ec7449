"""Django admin for setup: receivers, channels, performers, groups, link health.

Actions call the services; nothing here talks to a device (a "poll now" asks
the poller to read the receiver in its next cycle).
"""

from __future__ import annotations

import copy

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IS_POPUP_VAR
from django.core.exceptions import ValidationError
from django.db.models import Count, Min, Q
from django.http import HttpResponseRedirect
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from micboard.admin_alerts import AlertRuleInline  # also registers webhooks, subscriptions and deliveries
from micboard.exceptions import ConfigurationError
from micboard.models import (
    MAX_BOARD_POSITION,
    Alert,
    Assignment,
    AuditEntry,
    Channel,
    DiscoveredDevice,
    DiscoveryTask,
    Group,
    GroupSlot,
    KioskLink,
    Location,
    Manufacturer,
    Performer,
    RealTimeConnection,
    Receiver,
    Show,
    Transmitter,
)
from micboard.query_optimization import QueryOptimizer
from micboard.services import (
    AssignmentService,
    BoardOrderService,
    ConnectionHealthService,
    DeviceService,
    KioskService,
    ManufacturerService,
)
from micboard.services.board import BoardService

ONLINE_COLOURS = {True: "#1a7f37", False: "#b42318"}


def _badge(colour: str, text: str):
    return format_html(
        '<span style="background:{};color:#fff;padding:1px 8px;border-radius:8px;font-weight:600">{}</span>',
        colour,
        text,
    )


def _battery_colour(bars: int | None) -> str:
    if bars is None:
        return "#667085"
    if bars >= 4:
        return "#1a7f37"
    if bars == 3:
        return "#b54708"
    return "#b42318"


class BoardAdmin(admin.ModelAdmin):
    """Admin of something the board shows: any change makes every board re-render."""

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        BoardService.bump_version_on_commit()

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        BoardService.bump_version_on_commit()

    def delete_queryset(self, request, queryset):
        super().delete_queryset(request, queryset)
        BoardService.bump_version_on_commit()


@admin.register(Manufacturer)
class ManufacturerAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "receiver_count"]
    prepopulated_fields = {"slug": ["name"]}
    actions = ["sync_devices"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(n_receivers=Count("receivers"))

    @admin.display(description="Receivers", ordering="n_receivers")
    def receiver_count(self, obj):
        return obj.n_receivers

    def has_sync_permission(self, request):
        """Syncing rewrites the receivers' channels: it takes the right to change receivers."""
        return request.user.has_perm("micboard.change_receiver")

    @admin.action(permissions=["sync"], description="Sync devices (channels, then poll now)")
    def sync_devices(self, request, queryset):
        count = ManufacturerService.sync_devices(manufacturers=queryset)
        self.message_user(request, f"Synced {count} receiver(s); they are polled in the next cycle.")


@admin.register(Location)
class LocationAdmin(BoardAdmin):
    list_display = ["name", "description"]
    search_fields = ["name"]


class ChannelInline(admin.TabularInline):
    model = Channel
    extra = 0
    can_delete = False
    fields = ["number", "name", "frequency_khz", "status"]
    readonly_fields = ["number", "name", "frequency_khz", "status"]
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False  # channels follow the receiver's model


class ReceiverAdminForm(forms.ModelForm):
    """The receiver form; a model change that removes channels must be confirmed."""

    confirm_removal = forms.BooleanField(
        required=False,
        widget=forms.HiddenInput,  # shown (as a checkbox) only when the change removes channels
        label="Confirm removal",
        help_text="Remove the channels this model does not have, with their performers and board tiles.",
    )

    class Meta:
        model = Receiver
        fields = [
            "name", "manufacturer", "model", "driver", "host", "port", "link", "location", "active",
            "remote_id", "api_key", "tls_fingerprint",
        ]  # fmt: skip
        widgets = {"api_key": forms.PasswordInput(render_value=False)}  # a secret never goes back to the browser

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.api_key:
            self.fields["api_key"].help_text += " A key is stored; leave blank to keep it."

    def clean_api_key(self):
        return self.cleaned_data.get("api_key") or self.instance.api_key

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("model") or not cleaned.get("driver"):
            return cleaned
        try:
            DeviceService.catalog_entry(model=cleaned["model"], driver=cleaned["driver"])
        except ConfigurationError as exc:
            self.add_error("model", str(exc))
            return cleaned
        self._check_address(cleaned)
        if self.instance.pk is None:
            return cleaned
        edited = copy.copy(self.instance)
        edited.model = cleaned["model"]
        edited.driver = cleaned["driver"]
        try:
            removed = DeviceService.channel_removal(receiver=edited)
        except ConfigurationError as exc:
            self.add_error("model", str(exc))
            return cleaned
        if removed:
            self.fields["confirm_removal"].widget = forms.CheckboxInput()
            if not cleaned.get("confirm_removal"):
                self.add_error(
                    "model",
                    f"{edited.model} has {edited.channel_count} channel(s): saving removes {removed}. "
                    "Tick “Confirm removal” to save anyway.",
                )
        return cleaned

    def _check_address(self, cleaned):
        """A new or changed address must be a host that resolves, and no other receiver's device."""
        where = {k: cleaned.get(k) for k in ("host", "port", "driver")}
        where["remote_id"] = cleaned.get("remote_id") or ""
        if not where["host"] or not where["port"]:
            return
        stored = self.instance
        if stored.pk is not None and all(getattr(stored, k) == v for k, v in where.items()):
            return
        try:
            cleaned["host"] = DeviceService.check_address(
                **where, device_id=stored.device_id if stored.pk else "", exclude_pk=stored.pk
            )
        except ConfigurationError as exc:
            self.add_error("host", str(exc))


@admin.register(Receiver)
class ReceiverAdmin(BoardAdmin):
    list_display = ["name", "model", "address", "location", "active", "online_status", "lowest_battery", "last_seen"]
    list_filter = ["active", "online", "manufacturer", "model", "location"]
    search_fields = ["name", "host", "device_id"]
    readonly_fields = ["online", "last_seen", "firmware", "device_id", "rf_band"]
    form = ReceiverAdminForm
    fields = [
        "name",
        "manufacturer",
        "model",
        "confirm_removal",
        "driver",
        "host",
        "port",
        "link",
        "location",
        "active",
        "remote_id",
        "api_key",
        "tls_fingerprint",
        "online",
        "last_seen",
        "firmware",
        "device_id",
        "rf_band",
    ]
    inlines = [ChannelInline]
    actions = ["poll_now", "mark_inactive", "mark_active"]

    def get_queryset(self, request):
        return QueryOptimizer.receivers_for_admin(super().get_queryset(request)).annotate(
            min_bars=Min("channels__transmitter__battery_bars", filter=Q(channels__transmitter__present=True))
        )

    @admin.display(description="Address")
    def address(self, obj):
        return obj.address

    @admin.display(description="Status", ordering="online")
    def online_status(self, obj):
        if not obj.active:
            return _badge("#667085", "inactive")
        if obj.online:
            return _badge(ONLINE_COLOURS[True], "online")
        connection = getattr(obj, "connection", None)
        text = "offline" if connection and connection.consecutive_failures else "not polled"
        return _badge(ONLINE_COLOURS[False], text)

    @admin.display(description="Lowest battery", ordering="min_bars")
    def lowest_battery(self, obj):
        if obj.min_bars is None:
            return _badge("#667085", "—")
        return _badge(_battery_colour(obj.min_bars), f"{obj.min_bars}/5")

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        if obj is not None and not self.has_change_permission(request, obj):
            # Nothing to confirm on a read-only receiver, and its API key is not shown as text.
            return [f for f in fields if f not in ("confirm_removal", "api_key")]
        if obj is None:
            return [f for f in fields if f != "confirm_removal"]  # nothing to confirm on a new receiver
        return fields

    def save_model(self, request, obj, form, change):
        # The form asked for confirmation when the change removes channels; the service re-checks.
        DeviceService.update_receiver(receiver=obj, confirm_removal=form.cleaned_data.get("confirm_removal", False))
        DeviceService.request_poll(receivers=[obj])

    @admin.action(permissions=["change"], description="Poll now")
    def poll_now(self, request, queryset):
        count = DeviceService.request_poll(receivers=queryset)
        self.message_user(request, f"{count} receiver(s) are polled in the next cycle.")

    @admin.action(permissions=["change"], description="Mark inactive (stop polling)")
    def mark_inactive(self, request, queryset):
        count = DeviceService.set_active(receivers=queryset, active=False)
        self.message_user(request, f"{count} receiver(s) no longer polled.")

    @admin.action(permissions=["change"], description="Mark active (poll again)")
    def mark_active(self, request, queryset):
        count = DeviceService.set_active(receivers=queryset, active=True)
        DeviceService.request_poll(receivers=queryset)
        self.message_user(request, f"{count} receiver(s) polled again.")


class TransmitterInline(admin.StackedInline):
    model = Transmitter
    can_delete = False
    readonly_fields = [f.name for f in Transmitter._meta.fields if f.name not in ("id", "channel")]

    def has_add_permission(self, request, obj=None):
        return False


class AssignmentInline(admin.TabularInline):
    model = Assignment
    extra = 0
    autocomplete_fields = ["performer"]


class ChannelAdminForm(forms.ModelForm):
    """A channel's editable setup; its tile number moves through ``BoardOrderService``."""

    board_position = forms.IntegerField(
        label="Tile number",
        min_value=1,
        max_value=MAX_BOARD_POSITION,
        help_text='Its number on the "All" board. A number another channel has swaps the two tiles.',
    )

    class Meta:
        model = Channel
        fields = ["board_position"]

    def _get_validation_exclusions(self):
        # A taken tile number is no error here: the service swaps the two channels.
        return super()._get_validation_exclusions() | {"board_position"}


class ChannelOrderFormSet(forms.BaseModelFormSet):
    """The changelist's tile numbers: one number twice on the same page is refused."""

    def clean(self):
        super().clean()
        seen: dict[int, str] = {}
        for form in self.forms:
            number = form.cleaned_data.get("board_position") if hasattr(form, "cleaned_data") else None
            if number is None:
                continue
            if number in seen:
                raise forms.ValidationError(
                    f"Tile number {number} is given to both {seen[number]} and {form.instance}; give each its own."
                )
            seen[number] = str(form.instance)


@admin.register(Channel)
class ChannelAdmin(BoardAdmin):
    form = ChannelAdminForm
    list_display = ["__str__", "board_position", "receiver", "number", "name", "frequency", "status", "battery"]
    list_editable = ["board_position"]
    list_filter = ["status", "receiver"]
    search_fields = ["name", "receiver__name", "assignment__performer__name"]
    readonly_fields = ["receiver", "number", "name", "frequency_khz", "group_channel", "status", "status_changed_at"]
    inlines = [AssignmentInline, TransmitterInline]
    actions = ["number_first_on_board"]

    def get_queryset(self, request):
        return QueryOptimizer.channels_for_admin(super().get_queryset(request))

    def get_changelist_form(self, request, **kwargs):
        return ChannelAdminForm

    def get_changelist_formset(self, request, **kwargs):
        kwargs.setdefault("formset", ChannelOrderFormSet)
        return super().get_changelist_formset(request, **kwargs)

    def save_model(self, request, obj, form, change):
        if not (change and "board_position" in form.changed_data):
            super().save_model(request, obj, form, change)
            return
        target = obj.board_position
        obj.board_position = Channel.objects.values_list("board_position", flat=True).get(pk=obj.pk)
        super().save_model(request, obj, form, change)
        swapped = BoardOrderService.move(channel=obj, position=target)
        if swapped is not None:
            self.message_user(
                request, f"{obj} is now tile {target}; {swapped} took its old number {swapped.board_position}."
            )

    @admin.action(permissions=["change"], description="Number the selected channels 1, 2, 3 … on the All board")
    def number_first_on_board(self, request, queryset):
        ids = list(queryset.order_by("board_position").values_list("pk", flat=True))
        changed = BoardOrderService.set_all_order(channel_ids=ids)
        self.message_user(
            request, f"The selected channels are tiles 1 to {len(ids)}, the others follow; {changed} renumbered."
        )

    def has_add_permission(self, request):
        return False  # channels are created with their receiver

    @admin.display(description="MHz", ordering="frequency_khz")
    def frequency(self, obj):
        return obj.frequency_mhz

    @admin.display(description="Battery")
    def battery(self, obj):
        tx = getattr(obj, "transmitter", None)
        bars = tx.battery_bars if tx and tx.present else None
        return _badge(_battery_colour(bars), f"{bars}/5" if bars is not None else "—")


@admin.register(Performer)
class PerformerAdmin(BoardAdmin):
    list_display = ["name", "notes"]
    search_fields = ["name"]


@admin.register(Assignment)
class AssignmentAdmin(BoardAdmin):
    list_display = ["performer", "channel", "priority", "alerts_enabled", "responsible"]
    list_filter = ["alerts_enabled", "priority"]
    list_select_related = ["performer", "channel__receiver", "responsible"]
    autocomplete_fields = ["performer"]
    search_fields = ["performer__name", "channel__name"]
    actions = ["enable_alerts", "disable_alerts"]
    inlines = [AlertRuleInline]

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        # The form already rejected a taken channel (unique); the service re-checks under a transaction.
        assignment = AssignmentService.assign(
            channel=obj.channel,
            performer=obj.performer,
            alerts_enabled=obj.alerts_enabled,
            priority=obj.priority,
            responsible=obj.responsible,
        )
        obj.pk = assignment.pk

    @admin.action(permissions=["change"], description="Enable alerts")
    def enable_alerts(self, request, queryset):
        count = AssignmentService.set_alerts(assignments=queryset, enabled=True)
        self.message_user(request, f"Alerts enabled on {count} assignment(s).")

    @admin.action(permissions=["change"], description="Disable alerts")
    def disable_alerts(self, request, queryset):
        count = AssignmentService.set_alerts(assignments=queryset, enabled=False)
        self.message_user(request, f"Alerts disabled on {count} assignment(s).")


class GroupSlotFormSet(forms.BaseInlineFormSet):
    def clean(self):
        """A channel appears at most once per board (the database refuses a second tile too)."""
        super().clean()
        seen = set()
        for form in self.forms:
            if not hasattr(form, "cleaned_data") or form.cleaned_data.get("DELETE"):
                continue
            channel = form.cleaned_data.get("channel")
            if channel is None:
                continue
            if channel.pk in seen:
                raise forms.ValidationError(f"{channel} is on this board twice; a channel appears at most once.")
            seen.add(channel.pk)


class GroupSlotInline(admin.TabularInline):
    model = GroupSlot
    formset = GroupSlotFormSet
    extra = 4
    ordering = ["position"]
    fields = ["position", "channel"]
    autocomplete_fields = ["channel"]
    verbose_name = "tile"
    verbose_name_plural = "tiles (leave the channel empty for a BLANK spacer)"


@admin.register(Group)
class GroupAdmin(BoardAdmin):
    list_display = ["name", "position", "tile_count"]
    list_editable = ["position"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [GroupSlotInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(n_slots=Count("slots"))

    @admin.display(description="Tiles", ordering="n_slots")
    def tile_count(self, obj):
        return obj.n_slots


@admin.register(RealTimeConnection)
class RealTimeConnectionAdmin(admin.ModelAdmin):
    list_display = [
        "receiver",
        "status_badge",
        "consecutive_failures",
        "last_success_at",
        "last_latency_ms",
        "next_attempt_at",
        "last_error",
    ]
    list_filter = ["status"]
    list_select_related = ["receiver"]
    readonly_fields = [f.name for f in RealTimeConnection._meta.fields if f.name != "id"]
    actions = ["check_health", "reset"]

    def has_add_permission(self, request):
        return False

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj):
        colour = {"connected": "#1a7f37", "degraded": "#b54708", "failed": "#b42318"}.get(obj.status, "#667085")
        return _badge(colour, obj.get_status_display())

    @admin.action(permissions=["view"], description="Check health")
    def check_health(self, request, queryset):
        for report in ConnectionHealthService.check_health(connections=queryset.select_related("receiver")):
            level = messages.SUCCESS if report.healthy else messages.WARNING
            self.message_user(request, f"{report.receiver}: {report.message}", level=level)

    @admin.action(permissions=["change"], description="Reset (forget failures, retry now)")
    def reset(self, request, queryset):
        count = ConnectionHealthService.reset(connections=queryset)
        self.message_user(request, f"Reset {count} connection(s); they are retried in the next cycle.")


class DiscoveredDeviceInline(admin.TabularInline):
    model = DiscoveredDevice
    extra = 0
    can_delete = False
    fields = ["state", "driver", "model", "host", "port", "device_id", "name", "source", "outcome", "receiver"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(DiscoveryTask)
class DiscoveryTaskAdmin(admin.ModelAdmin):
    """Past scans, read only; scans are started and reviewed on the discovery page (web/discovery_views.py)."""

    list_display = ["scope", "status", "devices_found", "created_at", "finished_at", "review"]
    fields = [
        "scope", "families", "listen", "status", "phase", "probes_done", "probes_total", "devices_found", "notes",
        "error", "requested_by", "started_at", "finished_at", "review",
    ]  # fmt: skip
    readonly_fields = fields
    inlines = [DiscoveredDeviceInline]

    @admin.display(description="Review")
    def review(self, obj):
        return format_html('<a href="{}">Review the devices found</a>', reverse("discovery-task", args=[obj.pk]))

    def add_view(self, request, form_url="", extra_context=None):
        return redirect("discovery")  # a scan starts from the discovery page, which queues it

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ["at", "action", "model", "summary"]
    list_filter = ["action", "model"]
    readonly_fields = ["at", "action", "model", "object_id", "summary"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    """What the alert rules raised, newest first: read only (alerts open and resolve by themselves)."""

    list_display = ["opened_at", "kind", "priority", "state", "receiver", "channel", "detail", "acknowledged_by"]
    list_filter = ["state", "kind", "priority"]
    list_select_related = ["receiver", "channel__receiver", "acknowledged_by"]
    date_hierarchy = "opened_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


KIOSK_COLOURS = {"active": "#1a7f37", "revoked": "#b42318", "expired": "#667085"}


class KioskLinkForm(forms.ModelForm):
    class Meta:
        model = KioskLink
        fields = ["name", "group", "expires_at"]

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("A kiosk link needs a name, e.g. “FOH tablet”.")
        return name

    def clean_expires_at(self):
        value = self.cleaned_data.get("expires_at")
        if value is not None and "expires_at" in self.changed_data and value <= timezone.now():
            raise forms.ValidationError("The expiry must be in the future.")
        return value


@admin.register(KioskLink)
class KioskLinkAdmin(admin.ModelAdmin):
    """Kiosk links: created through KioskService, shown with their URL and QR code, revoked by action."""

    form = KioskLinkForm
    list_display = ["name", "scope", "state_badge", "expires_at", "last_used_at", "created_by", "created_at"]
    list_filter = ["group"]
    search_fields = ["name"]
    actions = ["revoke"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return ["state_badge", "created_by", "created_at", "revoked_at", "last_used_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("group", "created_by")

    @admin.display(description="Groups", ordering="group__name")
    def scope(self, obj):
        return obj.group.name if obj.group else "All groups"

    @admin.display(description="State")
    def state_badge(self, obj):
        state = KioskService.state(link=obj)
        return _badge(KIOSK_COLOURS[state], state.capitalize())

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The change page shows a usable link's URLs and the QR code of its phone view (templates/admin/...)."""
        extra_context = dict(extra_context or {})
        obj = self.get_object(request, object_id)
        if obj is not None and KioskService.state(link=obj) == "active":
            extra_context["kiosk_board_url"] = request.build_absolute_uri(KioskService.path(link=obj))
            extra_context["kiosk_phone_url"] = request.build_absolute_uri(
                KioskService.path(link=obj, destination="battery")
            )
            extra_context["kiosk_qr_url"] = f"{reverse('kiosk-qr', args=[obj.pk])}?to=battery"
        return super().change_view(request, object_id, form_url, extra_context)

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        try:
            link = KioskService.create(
                name=obj.name, group=obj.group, expires_at=obj.expires_at, created_by=request.user
            )
        except ConfigurationError as exc:  # the form checked the same rules; a race lands here
            raise ValidationError(str(exc)) from exc
        obj.pk, obj.token_id, obj.created_at, obj.created_by = link.pk, link.token_id, link.created_at, request.user

    def response_add(self, request, obj, post_url_continue=None):
        if "_addanother" in request.POST or IS_POPUP_VAR in request.POST:
            return super().response_add(request, obj, post_url_continue)
        self.message_user(request, f"Kiosk link “{obj.name}” created: open the link on the screen or scan its QR code.")
        return HttpResponseRedirect(reverse("admin:micboard_kiosklink_change", args=[obj.pk]))

    def has_revoke_permission(self, request):
        return request.user.has_perm("micboard.revoke_kiosklink")

    @admin.action(permissions=["revoke"], description="Revoke (screens using them stop at their next refresh)")
    def revoke(self, request, queryset):
        count = KioskService.revoke(links=queryset)
        self.message_user(
            request, f"Revoked {count} kiosk link(s); their screens show the revocation at the next refresh."
        )


@admin.register(Show)
class ShowAdmin(admin.ModelAdmin):
    """The show's name, venue and date for the sheet headers: one row, added once, then edited."""

    list_display = ["name", "venue", "date"]

    def has_add_permission(self, request):
        return super().has_add_permission(request) and not Show.objects.exists()
