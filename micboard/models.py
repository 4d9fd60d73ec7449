"""Domain models of micboard.

Thin models: fields, constraints and small read-only helpers. Every write
happens in ``micboard.services``. Unknown readings are stored as NULL, never
as the vendor's sentinel values (255, 65535, UNKN ...).
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.text import slugify

from micboard.alerts import AlertKind
from micboard.caching import MEDIUM, cached_property_with_ttl
from micboard.drivers import driver_choices, model_choices
from micboard.drivers.catalog import DeviceModel, device_model
from micboard.managers import ChannelQuerySet, KioskLinkQuerySet, ReceiverQuerySet
from micboard.status import ChannelStatus

DRIVER_SHURE_TCP = "shure_tcp"


class TimeStampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class Manufacturer(TimeStampedModel):
    name = models.CharField(max_length=64, unique=True)
    slug = models.SlugField(max_length=64, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        if not self.slug:
            self.slug = slugify(self.name)
        super().save(*args, **kwargs)


class Location(TimeStampedModel):
    name = models.CharField(max_length=100, unique=True)
    description = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


LINK_PUSH = "push"
LINK_POLL = "poll"
LINK_CHOICES = [(LINK_PUSH, "Live link"), (LINK_POLL, "Connect per poll")]


class Receiver(TimeStampedModel):
    """A networked receiver (or IEM transmitter) that micboard polls."""

    name = models.CharField(max_length=100)
    manufacturer = models.ForeignKey(Manufacturer, on_delete=models.PROTECT, related_name="receivers")
    model = models.CharField(max_length=32, choices=model_choices)
    driver = models.CharField("protocol", max_length=32, choices=driver_choices, default=DRIVER_SHURE_TCP)
    host = models.CharField(max_length=255, help_text="IP address or host name on the venue network.")
    port = models.PositiveIntegerField(default=2202, validators=[MinValueValidator(1), MaxValueValidator(65535)])
    remote_id = models.CharField(
        "device id on the server",
        max_length=64,
        blank=True,
        help_text="Shure System API only: the device's id on the server (discovery fills it in).",
    )
    api_key = models.CharField(
        "API key",
        max_length=256,
        blank=True,
        help_text="Shure System API only: the server's shared secret (sent as x-api-key).",
    )
    tls_fingerprint = models.CharField(
        "certificate fingerprint",
        max_length=95,
        blank=True,
        help_text="Shure System API only: SHA-256 of the server's certificate, to trust a self-signed server "
        "(or set MICBOARD_SYSTEM_API_CA_FILE).",
    )
    location = models.ForeignKey(Location, null=True, blank=True, on_delete=models.SET_NULL, related_name="receivers")
    active = models.BooleanField(default=True, help_text="Poll this receiver.")
    link = models.CharField(
        "connection",
        max_length=8,
        choices=LINK_CHOICES,
        default=LINK_PUSH,
        help_text="Live link: one connection that follows the receiver's reports (fastest). "
        "Connect per poll: a short connection every poll interval, for gear or networks that drop idle connections.",
    )
    online = models.BooleanField(default=False, editable=False)
    last_seen = models.DateTimeField(null=True, blank=True, editable=False)
    firmware = models.CharField(max_length=32, blank=True, editable=False)
    device_id = models.CharField(max_length=64, blank=True, editable=False)
    rf_band = models.CharField(max_length=16, blank=True, editable=False)

    objects = ReceiverQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["host", "port", "remote_id"], name="unique_receiver_address")]

    def __str__(self) -> str:
        return f"{self.name} ({self.model})"

    @property
    def catalog_entry(self) -> DeviceModel:
        """Raises KeyError when the driver does not read this model."""
        return device_model(self.model, driver=self.driver)

    @property
    def channel_count(self) -> int:
        return self.catalog_entry.channels

    @property
    def is_iem(self) -> bool:
        return self.catalog_entry.is_iem

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


MAX_BOARD_POSITION = 9999


def next_board_position() -> int:
    """The tile number a new channel gets on the "All" board: after the last one (gaps stay gaps)."""
    last = Channel.objects.aggregate(last=models.Max("board_position"))["last"]
    return (last or 0) + 1


class Channel(models.Model):
    """One channel of a receiver, as the receiver reports it."""

    receiver = models.ForeignKey(Receiver, on_delete=models.CASCADE, related_name="channels")
    number = models.PositiveSmallIntegerField(validators=[MinValueValidator(1), MaxValueValidator(8)])
    name = models.CharField(max_length=64, blank=True, help_text="CHAN_NAME as the receiver reports it.")
    frequency_khz = models.PositiveIntegerField(null=True, blank=True)
    group_channel = models.CharField(max_length=16, blank=True)
    status = models.CharField(
        max_length=16, choices=ChannelStatus.choices, default=ChannelStatus.RX_COM_ERROR, editable=False
    )
    status_changed_at = models.DateTimeField(null=True, blank=True, editable=False)
    board_position = models.PositiveIntegerField(
        "tile number",
        validators=[MinValueValidator(1), MaxValueValidator(MAX_BOARD_POSITION)],
        help_text='Its tile number on the "All" board. New channels go last; a number stays with its channel.',
    )

    objects = ChannelQuerySet.as_manager()

    class Meta:
        ordering = ["receiver__name", "number"]
        constraints = [
            models.UniqueConstraint(fields=["receiver", "number"], name="unique_channel_number"),
            models.UniqueConstraint(fields=["board_position"], name="unique_board_position"),
        ]

    def __str__(self) -> str:
        return f"{self.receiver.name} ch{self.number}" + (f" ({self.name})" if self.name else "")

    def save(self, *args, **kwargs):
        if self.board_position is None:
            self.board_position = next_board_position()
        super().save(*args, **kwargs)

    @property
    def frequency_mhz(self) -> str:
        return f"{self.frequency_khz / 1000:.3f}" if self.frequency_khz else ""

    @cached_property_with_ttl(timeout=MEDIUM, namespace="board")
    def board_groups(self) -> tuple[str, ...]:
        """Names of the groups (board tabs) this channel is on, in tab order.

        Kept in the cache per channel until the board changes (every group edit bumps the board
        version), so the channel drawer's refreshes do not ask the database each time.
        """
        if self.pk is None:
            return ()
        return tuple(
            Group.objects.filter(slots__channel=self)
            .distinct()
            .order_by("position", "name")
            .values_list("name", flat=True)
        )


class Transmitter(models.Model):
    """The pack (body pack, handheld) currently seen on a channel."""

    channel = models.OneToOneField(Channel, on_delete=models.CASCADE, related_name="transmitter")
    present = models.BooleanField(default=False)
    model = models.CharField(max_length=32, blank=True)
    battery_bars = models.PositiveSmallIntegerField(null=True, blank=True)
    battery_percent = models.PositiveSmallIntegerField(null=True, blank=True)
    runtime_minutes = models.PositiveIntegerField(null=True, blank=True)
    runtime_state = models.CharField(max_length=16, blank=True)  # "calculating" / "warning"
    battery_type = models.CharField(max_length=8, blank=True)
    rf_dbm = models.FloatField(null=True, blank=True)
    rf_percent = models.PositiveSmallIntegerField(null=True, blank=True)
    audio_dbfs = models.FloatField(null=True, blank=True)
    audio_percent = models.PositiveSmallIntegerField(null=True, blank=True)
    antennas = models.CharField(max_length=8, blank=True)  # one char per antenna: A/I/X/R
    # RF level (%) per antenna in device order, comma-separated ("72,65"); "" when the family reports one figure.
    rf_antennas = models.CharField(max_length=32, blank=True)
    tx_offset_db = models.SmallIntegerField(null=True, blank=True)
    quality = models.PositiveSmallIntegerField(null=True, blank=True)
    muted = models.BooleanField(null=True, blank=True)  # transmitter mute switch
    audio_muted = models.BooleanField(null=True, blank=True)  # receiver output (PSM1000: RF mute)
    last_seen = models.DateTimeField(null=True, blank=True)
    last_peak_at = models.DateTimeField(null=True, blank=True)
    # The last valid battery, kept for the PREV_* states after the pack is switched off.
    last_battery_bars = models.PositiveSmallIntegerField(null=True, blank=True)
    last_battery_percent = models.PositiveSmallIntegerField(null=True, blank=True)
    last_runtime_minutes = models.PositiveIntegerField(null=True, blank=True)
    last_battery_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.model or 'transmitter'} on {self.channel_id}"


class ChannelSample(models.Model):
    """One channel's readings over ``resolution`` seconds from ``at`` (show history; see HistoryService).

    Folded like the downsampling: the lowest battery and RF, the loudest audio, the last status. ``None`` is
    unknown (no reading of that figure in the window), never 0.
    """

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="samples", db_index=False)
    at = models.DateTimeField()
    resolution = models.PositiveSmallIntegerField()  # seconds: 1, 10 or 60
    battery_bars = models.SmallIntegerField(null=True)
    battery_percent = models.SmallIntegerField(null=True)
    runtime_minutes = models.SmallIntegerField(null=True)  # capped at 32767 (22 days)
    rf_dbm = models.SmallIntegerField(null=True)  # strongest antenna, whole dBm
    rf_antennas = models.CharField(max_length=32, blank=True)  # per antenna, percent: "72,65" (as Transmitter)
    audio_dbfs = models.SmallIntegerField(null=True)  # whole dBFS
    status = models.CharField(max_length=16, blank=True)
    tx_present = models.BooleanField(null=True)

    class Meta:
        indexes = [models.Index(fields=["channel", "resolution", "at"], name="sample_channel_res_at")]

    def __str__(self) -> str:
        return f"{self.channel_id} @ {self.at:%H:%M:%S} ({self.resolution} s)"


class Performer(TimeStampedModel):
    name = models.CharField(max_length=100, unique=True)
    notes = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Assignment(TimeStampedModel):
    """Who wears the pack on a channel."""

    class Priority(models.IntegerChoices):
        LOW = 1, "Low"
        NORMAL = 2, "Normal"
        HIGH = 3, "High"
        CRITICAL = 4, "Critical"

    performer = models.ForeignKey(Performer, on_delete=models.CASCADE, related_name="assignments")
    channel = models.OneToOneField(Channel, on_delete=models.CASCADE, related_name="assignment")
    alerts_enabled = models.BooleanField(default=True)
    priority = models.PositiveSmallIntegerField(choices=Priority.choices, default=Priority.NORMAL)
    responsible = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="micboard_assignments",
        help_text="Crew member who swaps this pack.",
    )
    notes = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["-priority", "performer__name"]

    def __str__(self) -> str:
        return f"{self.performer} on {self.channel}"


class Group(TimeStampedModel):
    """An ordered board of channels, with BLANK spacers."""

    name = models.CharField(max_length=64, unique=True)
    slug = models.SlugField(max_length=64, unique=True)
    position = models.PositiveSmallIntegerField(default=0, help_text="Order of the tabs on the board.")

    class Meta:
        ordering = ["position", "name"]
        # "Board", not "group": Django's user groups live beside these in the admin.
        verbose_name = "board"
        verbose_name_plural = "boards"

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        if not self.slug:
            self.slug = slugify(self.name)
        super().save(*args, **kwargs)


class GroupSlot(models.Model):
    """One tile position of a group: a channel, or a BLANK spacer when channel is empty."""

    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="slots")
    position = models.PositiveSmallIntegerField()
    # A channel that goes (its receiver deleted or changed to a smaller model) leaves a BLANK behind,
    # so every other tile of the group keeps its number and its place on the screen.
    channel = models.ForeignKey(
        Channel,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="group_slots",
        help_text="Leave empty for a BLANK spacer.",
    )

    class Meta:
        ordering = ["group", "position"]
        constraints = [
            models.UniqueConstraint(fields=["group", "position"], name="unique_group_position"),
            models.UniqueConstraint(
                fields=["group", "channel"], condition=models.Q(channel__isnull=False), name="unique_group_channel"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.group} #{self.position}: {self.channel or 'BLANK'}"


class RealTimeConnection(models.Model):
    """Health of the link to one receiver."""

    class Status(models.TextChoices):
        UNKNOWN = "unknown", "Not polled yet"
        CONNECTED = "connected", "Connected"
        DEGRADED = "degraded", "Failing"
        FAILED = "failed", "Offline"

    receiver = models.OneToOneField(Receiver, on_delete=models.CASCADE, related_name="connection")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.UNKNOWN)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_latency_ms = models.FloatField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    total_polls = models.PositiveIntegerField(default=0)
    total_failures = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.receiver.name}: {self.get_status_display()}"


class DiscoveryTask(TimeStampedModel):
    """One discovery run over a network range: what it looks for, how far it got, what it heard.

    A Huey task (``tasks.discovery``) runs it; what it finds lands in ``DiscoveredDevice`` rows for review.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        CANCELLED = "cancelled", "Cancelled"
        FAILED = "failed", "Failed"

    scope = models.CharField(max_length=100, help_text="What to scan, e.g. a CIDR range like 10.0.0.0/24.")
    families = models.JSONField(default=list, blank=True, help_text="Driver keys to probe for (empty: every one).")
    listen = models.BooleanField(default=True, help_text="Also listen for devices announcing themselves (SLP, mDNS).")
    options = models.JSONField(default=dict, blank=True, editable=False)  # probe extras (a System API key): never shown
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    phase = models.CharField(max_length=64, blank=True)  # what it is doing now, in words
    probes_total = models.PositiveIntegerField(default=0)
    probes_done = models.PositiveIntegerField(default=0)
    devices_found = models.PositiveIntegerField(default=0)
    notes = models.JSONField(default=list, blank=True)  # what the crew should know (a silent unit ...), bounded
    cancel_requested = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Discovery {self.scope} ({self.status})"

    @property
    def finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.CANCELLED, self.Status.FAILED)

    @property
    def percent(self) -> int:
        if self.finished:
            return 100
        return min(99, round(100 * self.probes_done / self.probes_total)) if self.probes_total else 0


class DiscoveredDevice(models.Model):
    """A device a discovery run found, waiting for review: nothing becomes a receiver without it."""

    class State(models.TextChoices):
        NEW = "new", "New"
        KNOWN = "known", "Known"
        MOVED = "moved", "Moved"

    class Outcome(models.TextChoices):
        NONE = "", "Not reviewed"
        ADDED = "added", "Added"
        UPDATED = "updated", "Address updated"

    task = models.ForeignKey(DiscoveryTask, on_delete=models.CASCADE, related_name="devices")
    driver = models.CharField("protocol", max_length=32)
    model = models.CharField(max_length=32)
    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField()
    device_id = models.CharField(max_length=64, blank=True)
    serial = models.CharField(max_length=64, blank=True)
    name = models.CharField(max_length=100, blank=True)
    channels = models.JSONField(default=list, blank=True)  # [[number, name], ...] as the device reports them
    remote_id = models.CharField(max_length=64, blank=True)
    firmware = models.CharField(max_length=32, blank=True)
    note = models.CharField(max_length=255, blank=True)
    source = models.CharField(max_length=32, blank=True)  # how it was found: "scan", "SLP", "mDNS"
    state = models.CharField(max_length=8, choices=State.choices, default=State.NEW)
    receiver = models.ForeignKey(
        Receiver, null=True, blank=True, on_delete=models.SET_NULL, related_name="discoveries"
    )
    previous_address = models.CharField(max_length=300, blank=True)  # a moved receiver's address when found
    outcome = models.CharField(max_length=8, choices=Outcome.choices, default=Outcome.NONE, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    found_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["task", "host", "port", "remote_id"]

    def __str__(self) -> str:
        return f"{self.model} at {self.address} ({self.state})"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class AuditEntry(models.Model):
    """Audit trail of configuration changes, written by signal handlers."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    action = models.CharField(max_length=16)  # created / changed / deleted
    model = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    summary = models.CharField(max_length=255)

    class Meta:
        ordering = ["-at"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.action} {self.model} {self.summary}"


class KioskLink(models.Model):
    """A signed, read-only link that opens the board (or the phone view) without an account.

    Only ``token_id`` (random, not a secret on its own) is stored; the URL carries it signed with the
    SECRET_KEY (``micboard.services.kiosk``), so the database never holds a working link in clear.
    ``group`` scopes the link to one board group; deleting the group deletes its scoped links, so a
    scoped screen is refused rather than widened to every group.
    """

    name = models.CharField(max_length=100, help_text="Where the screen is, e.g. “FOH tablet” or “Sam's phone”.")
    token_id = models.CharField(max_length=43, unique=True, editable=False)
    group = models.ForeignKey(
        Group,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="kiosk_links",
        help_text="Show only this group. Leave empty for every group.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Leave empty for a link that never expires.")
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = KioskLinkQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        permissions = [("revoke_kiosklink", "Can revoke kiosk link")]

    def __str__(self) -> str:
        return self.name


class Show(TimeStampedModel):
    """The show the rig is set up for (one row): printed in the header of the channel sheets."""

    name = models.CharField(max_length=100, blank=True, help_text="Printed at the top of the channel sheets.")
    venue = models.CharField(max_length=100, blank=True)
    date = models.DateField(null=True, blank=True)

    class Meta:
        verbose_name = "show"

    def __str__(self) -> str:
        return self.name or "Show"

    @classmethod
    def current(cls) -> Show:
        """The show's details (an unsaved blank one until set in the admin)."""
        return cls.objects.order_by("pk").first() or cls()


class Scene(TimeStampedModel):
    """A named set of assignments (act 1, act 2 ...) that replaces every assignment when activated."""

    name = models.CharField(max_length=100, unique=True)
    position = models.PositiveSmallIntegerField(default=0, help_text="Order in the scene list.")
    notes = models.CharField(max_length=255, blank=True)
    active = models.BooleanField(default=False, editable=False, help_text="The scene activated last.")
    activated_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["position", "name"]
        constraints = [
            models.UniqueConstraint(fields=["active"], condition=models.Q(active=True), name="one_active_scene"),
        ]

    def __str__(self) -> str:
        return self.name


class SceneAssignment(models.Model):
    """Who wears the pack on a channel in a scene (a channel appears at most once per scene)."""

    scene = models.ForeignKey(Scene, on_delete=models.CASCADE, related_name="assignments")
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="scene_assignments")
    performer = models.ForeignKey(Performer, on_delete=models.CASCADE, related_name="scene_assignments")

    class Meta:
        ordering = ["scene", "channel__receiver__name", "channel__number"]
        constraints = [models.UniqueConstraint(fields=["scene", "channel"], name="unique_scene_channel")]

    def __str__(self) -> str:
        return f"{self.scene}: {self.performer} on {self.channel}"


class AlertRule(models.Model):
    """One assignment's own alert thresholds; an empty field keeps the default (settings MICBOARD_ALERT_*)."""

    assignment = models.OneToOneField(Assignment, on_delete=models.CASCADE, related_name="alert_rule")
    battery_bars = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(5)], help_text="Alert at or below this many bars."
    )
    battery_minutes = models.PositiveIntegerField(null=True, blank=True, help_text="Alert at or below this runtime.")
    off_grace_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="A pack switched off this long while assigned alerts (planned swaps)."
    )
    rf_dbm = models.FloatField(
        "RF below (dBm)", null=True, blank=True, validators=[MinValueValidator(-120), MaxValueValidator(0)]
    )
    rf_seconds = models.PositiveIntegerField("for (seconds)", null=True, blank=True)
    diversity_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="One antenna alone receiving this long alerts."
    )
    trend_factor = models.FloatField(
        "runtime falling faster than",
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="Alert when the runtime falls this many times faster than the clock (e.g. 1.5).",
    )

    def __str__(self) -> str:
        return f"Alert rules of {self.assignment}"


ALERT_LIVE_STATES = ("open", "acknowledged")


class Alert(models.Model):
    """Something the crew must act on: opened by ``AlertService.evaluate``, resolved when it clears.

    A receiver-wide alert (offline) has no channel. At most one open or acknowledged alert per channel
    (or receiver) and kind, enforced by the database, so concurrent evaluators never duplicate one.
    """

    class State(models.TextChoices):
        OPEN = "open", "Open"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        RESOLVED = "resolved", "Resolved"

    receiver = models.ForeignKey(Receiver, on_delete=models.CASCADE, related_name="alerts")
    channel = models.ForeignKey(Channel, null=True, blank=True, on_delete=models.CASCADE, related_name="alerts")
    kind = models.CharField(max_length=20, choices=AlertKind.choices)
    state = models.CharField(max_length=16, choices=State.choices, default=State.OPEN)
    priority = models.PositiveSmallIntegerField(choices=Assignment.Priority.choices, default=Assignment.Priority.NORMAL)
    detail = models.CharField(max_length=255)
    opened_at = models.DateTimeField()
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    acknowledged_from = models.CharField("acknowledged from screen", max_length=100, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at"]
        indexes = [models.Index(fields=["state", "receiver"], name="alert_state_receiver")]
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "kind"],
                condition=models.Q(state__in=ALERT_LIVE_STATES, channel__isnull=False),
                name="one_live_alert_per_channel_kind",
            ),
            models.UniqueConstraint(
                fields=["receiver", "kind"],
                condition=models.Q(state__in=ALERT_LIVE_STATES, channel__isnull=True),
                name="one_live_alert_per_receiver_kind",
            ),
        ]

    def __str__(self) -> str:
        where = self.channel if self.channel_id else self.receiver
        return f"{self.get_kind_display()} on {where} ({self.state})"


class AlertCondition(models.Model):
    """Since when a rule's condition holds (kept in the database so that every evaluator sees the same wait).

    ``key`` is the part of the condition that must stay the same for the wait to run on (the one antenna
    receiving); a new key restarts it.
    """

    receiver = models.ForeignKey(Receiver, on_delete=models.CASCADE, related_name="+")
    channel = models.ForeignKey(Channel, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=20, choices=AlertKind.choices)
    key = models.CharField(max_length=32, blank=True)
    since = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "kind"], condition=models.Q(channel__isnull=False), name="one_condition_per_channel"
            ),
            models.UniqueConstraint(
                fields=["receiver", "kind"], condition=models.Q(channel__isnull=True), name="one_condition_per_receiver"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} since {self.since:%H:%M:%S}"


# Webhooks, e-mail subscriptions and the delivery log live in their own module (see there).
from micboard.models_outbound import (  # noqa: E402, F401
    ALERT_EVENTS,
    EVENT_ACKNOWLEDGED,
    EVENT_CHOICES,
    EVENT_OPENED,
    EVENT_RESOLVED,
    AlertSubscription,
    Delivery,
    Webhook,
)
