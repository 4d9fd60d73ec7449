"""Receivers, channels and transmitters: setup and the write side of polling."""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, models, transaction
from django.db import connection as db_connection
from django.db.models import QuerySet
from django.utils import timezone

from micboard.drivers.base import ChannelReading, ReceiverReading
from micboard.drivers.catalog import DeviceModel, device_model
from micboard.exceptions import (
    ChannelRemovalError,
    ConfigurationError,
    DeviceNotFoundError,
    DeviceOfflineError,
    InvalidReadingError,
)
from micboard.metrics import track_service_metrics
from micboard.models import (
    DRIVER_SHURE_TCP,
    LINK_POLL,
    AuditEntry,
    Channel,
    GroupSlot,
    Location,
    Manufacturer,
    RealTimeConnection,
    Receiver,
    Transmitter,
    next_board_position,
)
from micboard.query_optimization import QueryOptimizer, bulk_create
from micboard.services.addresses import clean_host, resolved_addresses
from micboard.services.board import BoardService
from micboard.services.health import ConnectionHealthService
from micboard.status import compute_status

logger = logging.getLogger("micboard.devices")

# Transmitter fields copied from a ChannelReading (reading attribute -> model field).
_TX_FIELDS = {
    "tx_model": "model",
    "battery_bars": "battery_bars",
    "battery_percent": "battery_percent",
    "battery_runtime_min": "runtime_minutes",
    "battery_type": "battery_type",
    "tx_offset_db": "tx_offset_db",
    "tx_muted": "muted",
    "audio_muted": "audio_muted",
    "quality": "quality",
}
# Meter fields, only taken from a reading that carried a SAMPLE (else they'd read as "no signal").
_METER_FIELDS = {
    "rf_dbm": "rf_dbm",
    "rf_percent": "rf_percent",
    "audio_dbfs": "audio_dbfs",
    "audio_percent": "audio_percent",
    "antennas": "antennas",
    "rf_antenna_percents": "rf_antennas",  # stored as "72,65" (see _rf_antennas_text)
}
# Written on every successful poll; on their own they change nothing a user sees.
_BOOKKEEPING = {"last_seen", "last_battery_at"}
_MAX_ANTENNAS = 8  # "100," * 8 fits Transmitter.rf_antennas (32 characters)


@dataclass(frozen=True, slots=True)
class PollTarget:
    """What a poll needs to know about a receiver, free of Django objects."""

    receiver_id: int
    driver: str
    model: str
    host: str
    port: int
    link: str = LINK_POLL  # LINK_PUSH: a long-lived link follows the receiver; LINK_POLL: connect per poll
    options: tuple[tuple[str, str], ...] = ()  # the driver's extras (see micboard.drivers), as sorted pairs

    @classmethod
    def of(cls, receiver: Receiver) -> PollTarget:
        options = {
            "remote_id": receiver.remote_id,
            "api_key": receiver.api_key,
            "tls_fingerprint": receiver.tls_fingerprint,
            "ca_file": settings.MICBOARD_SYSTEM_API_CA_FILE,
        }
        with contextlib.suppress(KeyError):  # an unknown model fails in the driver, with its own message
            peak = settings.MICBOARD_PEAK_DBFS.get(receiver.catalog_entry.family)
            if peak is not None:
                options["peak_dbfs"] = str(peak)
        return cls(
            receiver.pk,
            receiver.driver,
            receiver.model,
            receiver.host,
            receiver.port,
            receiver.link,
            tuple(sorted((k, v) for k, v in options.items() if v)),
        )


@dataclass(frozen=True, slots=True)
class PollOutcome:
    """The result of polling one receiver: a reading, or the error that stopped it."""

    receiver_id: int
    reading: ReceiverReading | None = None
    error: str = ""
    lost: bool = False  # a live link found the receiver gone: show it offline at once, not after N failures


def save_changes(changes: Iterable[tuple[models.Model, Iterable[str]]]) -> None:
    """Write each row's changed fields, with one ``executemany`` per model and field set.

    Django's ``bulk_update`` builds a CASE WHEN expression per row and field; at board sizes that
    Python work cost several times the UPDATEs themselves (see ``make bench``). Rows that changed the
    same fields share one prepared statement instead, which psycopg 3 pipelines into one round trip.
    Like ``bulk_update``, this sends no signals and leaves ``auto_now`` fields alone.
    """
    groups: dict[tuple[type[models.Model], tuple[str, ...]], list[models.Model]] = defaultdict(list)
    for obj, fields in changes:
        if fields:
            groups[(type(obj), tuple(sorted(fields)))].append(obj)
    if not groups:
        return
    quote = db_connection.ops.quote_name
    with db_connection.cursor() as cursor:
        for (model, fields), rows in groups.items():
            meta = model._meta
            columns = [meta.get_field(name) for name in fields]
            assignments = ", ".join(f"{quote(c.column)} = %s" for c in columns)
            sql = f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {quote(meta.pk.column)} = %s"  # noqa: S608 (names from model metadata, values are parameters)
            cursor.executemany(
                sql,
                [
                    [c.get_db_prep_save(getattr(row, c.attname), db_connection) for c in columns] + [row.pk]
                    for row in rows
                ],
            )


def _rf_antennas_text(percents: tuple[int, ...] | None) -> str:
    """Per-antenna RF percents as stored: ``(72, 65)`` -> ``"72,65"``; None or empty -> ``""``."""
    return ",".join(str(p) for p in (percents or ())[:_MAX_ANTENNAS])


def _database_failed(exc: DatabaseError) -> bool:
    """The database itself failed (connection lost, locked, cancelled), as opposed to refusing a value."""
    return isinstance(exc, (OperationalError, InterfaceError))


def _summary(exc: BaseException) -> str:
    """The first line of an exception's message, at most 200 characters, for logs and ``last_error``."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 200 else text[:199] + "…"


def _set(obj: models.Model, field: str, value, changed: set[str]) -> None:
    """Set ``obj.field`` and note it in ``changed`` when the value differs.

    Device strings are cut to the column's ``max_length`` (whatever a receiver sends, the row can be
    written), and unknown (None) is stored as "" in text columns that do not take NULL.
    """
    model_field = obj._meta.get_field(field)
    if isinstance(value, str):
        if model_field.max_length is not None and len(value) > model_field.max_length:
            value = value[: model_field.max_length]
    elif value is None and not model_field.null and isinstance(model_field, (models.CharField, models.TextField)):
        value = ""
    if getattr(obj, field) != value:
        setattr(obj, field, value)
        changed.add(field)


class DeviceService:
    """Setup of receivers and application of poll results."""

    @staticmethod
    def get_receiver(*, receiver_id: int) -> Receiver:
        """Raises: DeviceNotFoundError."""
        try:
            return Receiver.objects.select_related("connection").get(pk=receiver_id)
        except Receiver.DoesNotExist as exc:
            raise DeviceNotFoundError(f"No receiver with id {receiver_id}") from exc

    @staticmethod
    @transaction.atomic
    def create_receiver(
        *,
        name: str,
        model: str,
        host: str,
        port: int | None = None,
        manufacturer: Manufacturer | None = None,
        location: Location | None = None,
        driver: str = DRIVER_SHURE_TCP,
        active: bool = True,
        remote_id: str = "",
        api_key: str = "",
        tls_fingerprint: str = "",
        device_id: str = "",
    ) -> Receiver:
        """Create a receiver with its channels and its connection record.

        Args:
            port: default: the port the model's devices listen on.
            manufacturer: default: the model's maker (created if missing).
            device_id: the device's own id when known (discovery): no other receiver may have it.
        Raises:
            ConfigurationError: the driver does not read such a model; the host is not an IP address or a
                resolvable name; another receiver is the same device (see ``check_address``).
        """
        entry = DeviceService.catalog_entry(model=model, driver=driver)
        port = entry.default_port if port is None else port
        host = DeviceService.check_address(
            host=host, port=port, driver=driver, remote_id=remote_id, device_id=device_id
        )
        if manufacturer is None:
            manufacturer, _ = Manufacturer.objects.get_or_create(
                name=entry.manufacturer, defaults={"slug": entry.manufacturer.lower()}
            )
        receiver = Receiver.objects.create(
            name=name,
            model=entry.model,
            host=host,
            port=port,
            manufacturer=manufacturer,
            location=location,
            driver=driver,
            active=active,
            remote_id=remote_id,
            api_key=api_key,
            tls_fingerprint=tls_fingerprint,
            device_id=device_id,
        )
        DeviceService.sync_channels(receiver=receiver)
        return receiver

    @staticmethod
    def check_address(
        *, host: str, port: int, driver: str, remote_id: str = "", device_id: str = "", exclude_pk: int | None = None
    ) -> str:
        """Refuse an address no receiver can have, or a device another receiver already is.

        Two receivers are one device when their hosts resolve to a common address on the same port (and,
        behind a System API server, the same ``remote_id``), or when they have the same non-empty device id
        under the same driver. Host names are resolved (each within the poll time-out); another receiver's
        name that does not resolve now cannot be compared and is passed over.

        Args:
            exclude_pk: the receiver being edited.
        Returns:
            The host as stored (see ``micboard.services.addresses.clean_host``).
        Raises:
            ConfigurationError: what is wrong, in words for the crew.
        """
        host = clean_host(host)
        timeout = settings.MICBOARD_POLL_TIMEOUT
        mine = resolved_addresses(host, timeout=timeout)
        others = Receiver.objects.filter(port=port, remote_id=remote_id or "").exclude(pk=exclude_pk)
        for other in others.only("pk", "name", "host", "port").order_by("pk"):
            if other.host.lower() != host.lower():
                try:
                    if not resolved_addresses(other.host, timeout=timeout) & mine:
                        continue
                except ConfigurationError:
                    continue
            raise ConfigurationError(
                f"{host}:{port} is the same device as “{other.name}” ({other.host}:{other.port}): "
                "a receiver is added once."
            )
        if device_id:
            twin = Receiver.objects.filter(driver=driver, device_id=device_id).exclude(pk=exclude_pk).first()
            if twin is not None:
                raise ConfigurationError(
                    f"“{twin.name}” ({twin.address}) is already the device with id {device_id}: "
                    "a receiver is added once; change its address if the device moved."
                )
        return host

    @staticmethod
    def catalog_entry(*, model: str, driver: str) -> DeviceModel:
        """The catalog entry of a model as a driver reads it.

        Raises:
            ConfigurationError: the driver does not read such a model.
        """
        try:
            return device_model(model, driver=driver)
        except KeyError:
            raise ConfigurationError(f"The {driver} protocol does not read a model {model!r}") from None

    @staticmethod
    @transaction.atomic
    def sync_channels(*, receiver: Receiver, remove_extra: bool = False) -> int:
        """Create the channel rows (and their transmitter and connection rows) the receiver's model has.

        Args:
            remove_extra: also delete channels beyond the model's count, with their performers and
                tiles; only ``update_receiver`` passes it, after the removal was confirmed.
        Returns:
            How many channels were added.
        """
        count = receiver.channel_count
        existing = set(receiver.channels.values_list("number", flat=True))
        first = next_board_position()  # new channels go last on the "All" board; no other tile moves
        new = [
            Channel(receiver=receiver, number=n, board_position=first + i)
            for i, n in enumerate(n for n in range(1, count + 1) if n not in existing)
        ]
        bulk_create(Channel, new)
        if remove_extra:
            receiver.channels.filter(number__gt=count).delete()
        missing_tx = receiver.channels.filter(transmitter__isnull=True)
        bulk_create(Transmitter, (Transmitter(channel=c) for c in missing_tx))
        RealTimeConnection.objects.get_or_create(receiver=receiver)
        BoardService.bump_version_on_commit()
        return len(new)

    @staticmethod
    def channel_removal(*, receiver: Receiver) -> str:
        """Say what saving an edited receiver would remove: the channels its model lacks and what hangs on them.

        Args:
            receiver: a stored receiver carrying its edited, not yet saved, model.
        Returns:
            ``"ch 3 (Maya), ch 4; tile 5 of Band turns BLANK"`` (each channel with its performer, then
            the board tiles on them, which stay as spacers so no other tile moves), or ``""`` when
            nothing would be removed (always for a new receiver).
        Raises:
            ConfigurationError: unknown model.
        """
        count = DeviceService.catalog_entry(model=receiver.model, driver=receiver.driver).channels
        if receiver.pk is None:
            return ""
        doomed = list(
            Channel.objects.filter(receiver_id=receiver.pk, number__gt=count)
            .select_related("assignment__performer")
            .order_by("number")
        )
        channels = []
        for channel in doomed:
            assignment = getattr(channel, "assignment", None)
            channels.append(f"ch {channel.number}" + (f" ({assignment.performer.name})" if assignment else ""))
        slots = (
            GroupSlot.objects.filter(channel__in=doomed)
            .select_related("group")
            .order_by("group__position", "group__name", "position")
        )
        tiles = [f"tile {slot.position} of {slot.group.name}" for slot in slots]
        blanks = f"{', '.join(tiles)} turn{'s' if len(tiles) == 1 else ''} BLANK" if tiles else ""
        return "; ".join(part for part in (", ".join(channels), blanks) if part)

    @staticmethod
    @transaction.atomic
    def update_receiver(*, receiver: Receiver, confirm_removal: bool = False) -> Receiver:
        """Save a receiver edited in setup (new or changed) and make its channels match its model.

        Channel numbers the model still has keep their channel, performer and tiles. Channels it
        lacks go, with their assignments and tiles, only when confirmed; one audit entry then
        says exactly what went.

        Args:
            receiver: the edited receiver; saved here.
            confirm_removal: go ahead when the change removes channels.
        Returns:
            The saved receiver.
        Raises:
            ConfigurationError: unknown model; a new or changed address that ``check_address`` refuses.
            ChannelRemovalError: the change removes channels and ``confirm_removal`` is False;
                nothing is saved.
        """
        previous = None
        stored = None
        if receiver.pk is not None:
            stored = (
                Receiver.objects.select_for_update()
                .filter(pk=receiver.pk)
                .values("model", "host", "port", "driver", "remote_id")
                .first()
            )
            previous = stored["model"] if stored else None
        where = {
            "host": receiver.host,
            "port": receiver.port,
            "driver": receiver.driver,
            "remote_id": receiver.remote_id,
        }
        if stored is None or any(stored[k] != v for k, v in where.items()):  # new, or its address changed
            receiver.host = DeviceService.check_address(
                **where, device_id=receiver.device_id if stored else "", exclude_pk=receiver.pk
            )
        removed = DeviceService.channel_removal(receiver=receiver)
        receiver.model = DeviceService.catalog_entry(model=receiver.model, driver=receiver.driver).model
        if removed and not confirm_removal:
            raise ChannelRemovalError(
                f"Changing {receiver.name} from {previous} to {receiver.model} removes {removed}", removed=removed
            )
        receiver.save()
        DeviceService.sync_channels(receiver=receiver, remove_extra=bool(removed))
        if removed:
            summary = f"{receiver.name}: model {previous} -> {receiver.model} removed {removed}"
            AuditEntry.objects.create(
                action="removed",
                model=Channel._meta.verbose_name,
                object_id=str(receiver.pk),
                summary=summary if len(summary) <= 255 else summary[:254] + "…",
            )
        return receiver

    @staticmethod
    def set_active(*, receivers: QuerySet[Receiver] | Iterable[Receiver], active: bool) -> int:
        """Start or stop monitoring receivers. Returns the number changed."""
        ids = [r.pk for r in receivers]
        changed = Receiver.objects.filter(pk__in=ids).exclude(active=active).update(active=active)
        if not active:
            Receiver.objects.filter(pk__in=ids).update(online=False)
        if changed:
            DeviceService.refresh_statuses()
            BoardService.bump_version_on_commit()
        return changed

    @staticmethod
    def due_targets(*, now: datetime | None = None) -> list[PollTarget]:
        """Active receivers whose next poll is due (failing ones wait out their back-off)."""
        now = now or timezone.now()
        receivers = Receiver.objects.active().select_related("connection").order_by("pk")
        return [
            PollTarget.of(r)
            for r in receivers
            if not (
                hasattr(r, "connection")
                and r.connection.next_attempt_at is not None
                and r.connection.next_attempt_at > now
            )
        ]

    @staticmethod
    def link_targets() -> list[PollTarget]:
        """Every monitored receiver, for the link holders (they keep their own back-off per link)."""
        return [
            PollTarget.of(r)
            for r in Receiver.objects.active()
            .only("pk", "driver", "model", "host", "port", "link", "remote_id", "api_key", "tls_fingerprint")
            .order_by("pk")
        ]

    @staticmethod
    def request_poll(*, receivers: QuerySet[Receiver] | Iterable[Receiver]) -> int:
        """Poll these receivers in the next cycle, skipping any back-off. Returns the count."""
        ids = [r.pk for r in receivers]
        for receiver in Receiver.objects.filter(pk__in=ids):
            RealTimeConnection.objects.get_or_create(receiver=receiver)
        RealTimeConnection.objects.filter(receiver_id__in=ids).update(next_attempt_at=None)
        return len(ids)

    @staticmethod
    @track_service_metrics
    def record_poll_results(*, outcomes: Sequence[PollOutcome], now: datetime | None = None) -> bool:
        """Apply one poll cycle's outcomes: write only what changed, in bulk.

        Normally one transaction for the whole batch. When the database refuses it (a value it cannot
        store), the batch is rolled back and each receiver's outcome is written on its own, in its own
        transaction, so one receiver's bad data never costs another its reading; a reading that still
        cannot be stored is recorded (and logged) as a failed poll of its receiver.

        Args:
            outcomes: one per polled receiver.
            now: the cycle's time.
        Returns:
            True when anything the board shows changed.
        Raises:
            DatabaseError: the database itself failed (unreachable, locked): nothing was written.
        """
        now = now or timezone.now()
        try:
            with transaction.atomic():
                return DeviceService._record_outcomes(outcomes, now)
        except DatabaseError as exc:
            if _database_failed(exc):
                raise
            logger.warning("the database refused a batch of poll results (%s); writing each apart", _summary(exc))
        changed = False
        for outcome in outcomes:
            try:
                with transaction.atomic():
                    changed |= DeviceService._record_outcomes([outcome], now)
                continue
            except DatabaseError as exc:
                if _database_failed(exc):
                    raise
                logger.error(
                    "receiver %s: its poll result could not be stored: %s",
                    outcome.receiver_id,
                    _summary(exc),
                    exc_info=logger.isEnabledFor(logging.DEBUG),
                )
                error = f"the reading could not be stored in the database: {_summary(exc)}"
            with transaction.atomic():
                changed |= DeviceService._record_outcomes([PollOutcome(outcome.receiver_id, error=error)], now)
        return changed

    @staticmethod
    def _record_outcomes(outcomes: Sequence[PollOutcome], now: datetime) -> bool:
        """Write a batch of outcomes (the caller holds the transaction); True when the board changed."""
        by_id = {o.receiver_id: o for o in outcomes}
        receivers = {r.pk: r for r in Receiver.objects.filter(pk__in=by_id)}
        connections = {c.receiver_id: c for c in RealTimeConnection.objects.filter(receiver_id__in=receivers)}
        for receiver_id in receivers.keys() - connections.keys():
            connections[receiver_id] = RealTimeConnection.objects.create(receiver_id=receiver_id)
        channels = Channel.objects.filter(receiver_id__in=by_id).select_related("transmitter").order_by("pk")
        channel_map: dict[tuple[int, int], Channel] = {(c.receiver_id, c.number): c for c in channels}

        changes: list[tuple[models.Model, set[str]]] = []
        for receiver_id, outcome in by_id.items():
            receiver = receivers.get(receiver_id)
            if receiver is None:
                continue  # deleted while the cycle ran
            fields: set[str] = set()
            connection = connections[receiver_id]
            if outcome.reading is None:
                offline = ConnectionHealthService.apply_failure(
                    connection=connection, error=outcome.error, now=now, lost=outcome.lost
                )
                if offline:
                    _set(receiver, "online", False, fields)
            else:
                reading = outcome.reading
                ConnectionHealthService.apply_success(connection=connection, latency_ms=reading.latency_ms, now=now)
                _set(receiver, "online", True, fields)
                receiver.last_seen = now
                fields.add("last_seen")
                for attr, field in (("firmware", "firmware"), ("device_id", "device_id"), ("rf_band", "rf_band")):
                    value = getattr(reading, attr)
                    if value is not None:
                        _set(receiver, field, value, fields)
                for number, ch_reading in reading.channels.items():
                    channel = channel_map.get((receiver_id, number))
                    if channel is None:
                        continue  # a channel the model doesn't have (tolerated, not stored)
                    DeviceService._apply_channel(channel, ch_reading, now, changes)
            changes.append((connection, set(ConnectionHealthService.POLL_FIELDS)))
            if fields:
                changes.append((receiver, fields))

        for channel in channel_map.values():  # the statuses below read the rows just updated, no query
            receiver = receivers.get(channel.receiver_id)
            if receiver is not None:
                channel.receiver = receiver
        status_changes = DeviceService._apply_statuses(
            [c for c in channel_map.values() if c.receiver_id in receivers], now
        )
        save_changes([*changes, *status_changes])
        board_changed = any(
            not isinstance(obj, RealTimeConnection) and fields - _BOOKKEEPING for obj, fields in changes
        )
        return board_changed or bool(status_changes)

    @staticmethod
    def _apply_channel(
        channel: Channel, reading: ChannelReading, now: datetime, changes: list[tuple[models.Model, set[str]]]
    ) -> None:
        if reading.number != channel.number:
            raise InvalidReadingError(f"Reading for channel {reading.number} applied to channel {channel.number}")
        fields: set[str] = set()
        if reading.name is not None:
            _set(channel, "name", reading.name, fields)
        if reading.frequency_khz is not None:
            _set(channel, "frequency_khz", reading.frequency_khz, fields)
        if reading.group_channel is not None:
            _set(channel, "group_channel", reading.group_channel, fields)
        if fields:
            changes.append((channel, fields))

        try:
            tx = channel.transmitter
        except Transmitter.DoesNotExist:
            tx = Transmitter.objects.create(channel=channel)
        tx_fields: set[str] = set()
        present = bool(reading.tx_present) if reading.tx_present is not None else True
        _set(tx, "present", present, tx_fields)
        for attr, field in _TX_FIELDS.items():
            value = getattr(reading, attr)
            _set(tx, field, value if present or attr == "audio_muted" else None, tx_fields)
        _set(tx, "runtime_state", (reading.battery_runtime_state or "") if present else "", tx_fields)
        if reading.metered:
            for attr, field in _METER_FIELDS.items():
                value = getattr(reading, attr)
                if attr == "rf_antenna_percents":
                    value = _rf_antennas_text(value)
                _set(tx, field, value, tx_fields)
            if reading.audio_peak and present:
                tx.last_peak_at = now
                tx_fields.add("last_peak_at")
        if present:
            tx.last_seen = now
            tx_fields.add("last_seen")
            if tx.battery_bars is not None:
                _set(tx, "last_battery_bars", tx.battery_bars, tx_fields)
                _set(tx, "last_battery_percent", tx.battery_percent, tx_fields)
                _set(tx, "last_runtime_minutes", tx.runtime_minutes, tx_fields)
                tx.last_battery_at = now
                tx_fields.add("last_battery_at")
        if tx_fields:
            changes.append((tx, tx_fields))

    @staticmethod
    def refresh_statuses(*, now: datetime | None = None, receiver_ids: Sequence[int] | None = None) -> bool:
        """Recompute channel statuses (peaks and PREV_* windows also expire with time).

        Args:
            receiver_ids: only these receivers' channels; all channels when None.
        Returns:
            True when any status changed.
        """
        now = now or timezone.now()
        channels = Channel.objects.select_related("receiver", "transmitter")
        if receiver_ids is not None:
            channels = channels.filter(receiver_id__in=receiver_ids)
        changes = DeviceService._apply_statuses(channels, now)
        save_changes(changes)
        return bool(changes)

    @staticmethod
    def _apply_statuses(channels: Iterable[Channel], now: datetime) -> list[tuple[models.Model, set[str]]]:
        """Set each channel's status from its (loaded) receiver and transmitter; the changes to save."""
        changed = []
        for channel in channels:
            receiver = channel.receiver
            tx = getattr(channel, "transmitter", None)
            status = compute_status(
                now=now,
                receiver_active=receiver.active,
                receiver_online=receiver.online,
                is_iem=receiver.is_iem,
                tx_present=tx.present if tx else None,
                battery_bars=tx.battery_bars if tx else None,
                last_peak_at=tx.last_peak_at if tx else None,
                last_battery_bars=tx.last_battery_bars if tx else None,
                last_battery_at=tx.last_battery_at if tx else None,
            )
            if status != channel.status:
                channel.status = status
                channel.status_changed_at = now
                changed.append((channel, {"status", "status_changed_at"}))
        return changed

    # --- read side used by the JSON API -------------------------------------------------------------

    @staticmethod
    def get_active_receivers() -> QuerySet[Receiver]:
        """Receivers micboard monitors (polls), with what a listing shows loaded.

        Returns:
            A queryset of active receivers with manufacturer, location, connection and channels
            (with their packs and performers) fetched in a constant number of queries.
        """
        return DeviceService.receivers_for_listing().filter(active=True)

    @staticmethod
    def get_online_receivers() -> QuerySet[Receiver]:
        """Monitored receivers whose last polls answered.

        Returns:
            A queryset like ``get_active_receivers()``, online ones only.
        """
        return DeviceService.receivers_for_listing().online()

    @staticmethod
    def get_low_battery_receivers(*, threshold: int = 2) -> QuerySet[Receiver]:
        """Receivers with a pack switched on whose battery is at most ``threshold`` bars.

        Args:
            threshold: bars (0-5).
        Returns:
            A queryset like ``get_active_receivers()``.
        Raises:
            InvalidReadingError: ``threshold`` is not a number of bars from 0 to 5.
        """
        if isinstance(threshold, bool) or not isinstance(threshold, int) or not 0 <= threshold <= 5:
            raise InvalidReadingError(f"A battery threshold is 0 to 5 bars, not {threshold!r}")
        return DeviceService.receivers_for_listing().with_low_battery(threshold=threshold)

    @staticmethod
    def receivers_for_listing() -> QuerySet[Receiver]:
        """Every receiver, with what an API listing shows loaded in a constant number of queries."""
        return QueryOptimizer.receivers_for_api()

    @staticmethod
    def transmitters_for_listing() -> QuerySet[Transmitter]:
        """Every pack (one per channel), with its channel, receiver and performer loaded."""
        return QueryOptimizer.transmitters_for_api()

    @staticmethod
    def get_low_battery_transmitters(*, threshold: int = 2) -> QuerySet[Transmitter]:
        """Packs switched on whose battery is at most ``threshold`` bars, on monitored receivers.

        Raises:
            InvalidReadingError: ``threshold`` is not a number of bars from 0 to 5.
        """
        if isinstance(threshold, bool) or not isinstance(threshold, int) or not 0 <= threshold <= 5:
            raise InvalidReadingError(f"A battery threshold is 0 to 5 bars, not {threshold!r}")
        return DeviceService.transmitters_for_listing().filter(
            present=True, battery_bars__lte=threshold, channel__receiver__active=True
        )

    @staticmethod
    def sync_device_status(*, receiver: Receiver) -> int:
        """Ask for a fresh reading of a receiver: it is polled in the next cycle, skipping any back-off.

        Nothing is contacted here: the poller reads the device, and its answer updates the receiver
        (and the board) as any poll does.

        Args:
            receiver: a monitored receiver.
        Returns:
            1 (the number of receivers marked for polling).
        Raises:
            DeviceOfflineError: monitoring of the receiver is switched off, so it is not polled.
        """
        if not receiver.active:
            raise DeviceOfflineError(f"Monitoring of {receiver.name} is switched off: it is not polled")
        return DeviceService.request_poll(receivers=[receiver])
