"""Discovery: scans requested, their progress, what they found, and the review that turns a find into a receiver.

A scan (``tasks.discovery``) probes the addresses of a range and listens for announcements; every device
it identifies becomes a :class:`DiscoveredDevice`, matched against the receivers by its own identity
(device id / serial, or System API device id), never by its address:

* **new**: no receiver is this device; "Add" creates one with its channels (through DeviceService, so the
  host checks apply);
* **known**: a receiver is this device at this address; nothing to do;
* **moved**: a receiver is this device at another address; "Update address" moves it.

Nothing becomes a receiver without that review.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import replace

from django.conf import settings
from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from micboard.drivers import DRIVER_LABELS, DRIVERS
from micboard.drivers.probes import PROBES, Found
from micboard.exceptions import ConfigurationError, DiscoveryError
from micboard.models import Channel, DiscoveredDevice, DiscoveryTask, Receiver
from micboard.services.addresses import resolved_addresses
from micboard.services.devices import DeviceService

__all__ = ["MAX_SCAN_ADDRESSES", "DiscoveryService"]

MAX_SCAN_ADDRESSES = 4096  # a /20
MAX_NOTES = 20
SYSTEM_API = "shure_system_api"
OPTION_KEYS = ("api_key", "tls_fingerprint")  # what a scan may carry to its probes (System API)
_MATCH_TIMEOUT = 1.0  # seconds to resolve a known receiver's host name when telling known from moved


_CONTROL = dict.fromkeys([*range(0x20), 0x7F])


def _limited(text: str, size: int) -> str:
    """A device's (or a probe's) text as stored: control characters dropped (PostgreSQL refuses NUL), cut to size."""
    text = str(text or "").translate(_CONTROL)
    return text if len(text) <= size else text[: size - 1] + "…"


class DiscoveryService:
    """Discovery runs and the review of what they found."""

    # ---- requesting a scan ---------------------------------------------------------------------------

    @staticmethod
    def normalize_scope(*, scope: str) -> str:
        """Return the scope as a network in CIDR form.

        Raises:
            DiscoveryError: not a network range, or larger than a /20.
        """
        try:
            network = ipaddress.ip_network(scope.strip(), strict=False)
        except ValueError as exc:
            raise DiscoveryError(f"{scope!r} is not a network range like 192.168.1.0/24") from exc
        if network.num_addresses > MAX_SCAN_ADDRESSES:
            raise DiscoveryError(f"{network} has {network.num_addresses} addresses; scan at most a /20")
        return str(network)

    @staticmethod
    def families() -> list[tuple[str, str]]:
        """(driver key, label) of every family a scan can probe for."""
        return [(key, DRIVER_LABELS.get(key, key)) for key in DRIVERS if key in PROBES]

    @staticmethod
    def request_discovery(
        *,
        scope: str,
        requested_by=None,
        families: Sequence[str] | None = None,
        listen: bool = True,
        options: dict[str, str] | None = None,
    ) -> DiscoveryTask:
        """Record a scan of a network range (the caller queues ``tasks.discovery.run_discovery``).

        Args:
            families: driver keys to probe for; None or empty: every family with a probe.
            listen: also listen for devices announcing themselves (SLP, mDNS).
            options: extras the probes need (``api_key``, ``tls_fingerprint`` for a System API server).
        Raises:
            DiscoveryError: the scope is not a network or is larger than a /20; an unknown family.
        """
        known = [key for key, _label in DiscoveryService.families()]
        chosen = list(dict.fromkeys(families or known))
        unknown = [f for f in chosen if f not in known]
        if unknown:
            raise DiscoveryError(f"Cannot scan for {', '.join(unknown)}; families: {', '.join(known)}")
        extras = {k: str(v).strip() for k, v in (options or {}).items() if k in OPTION_KEYS and str(v).strip()}
        return DiscoveryTask.objects.create(
            scope=DiscoveryService.normalize_scope(scope=scope),
            requested_by=requested_by,
            families=chosen,
            listen=listen,
            options=extras,
        )

    @staticmethod
    def addresses(*, scope: str) -> list[str]:
        """The addresses a scan of ``scope`` probes: its hosts (a /31 or /32: every address)."""
        network = ipaddress.ip_network(DiscoveryService.normalize_scope(scope=scope))
        hosts = list(network.hosts()) or list(network)
        return [str(a) for a in hosts]

    # ---- running it (the Huey task reports through these) ------------------------------------------

    @staticmethod
    def start(*, task_id: int) -> DiscoveryTask | None:
        """Mark a pending run as running; None when it is not pending (run already, or cancelled before it began)."""
        now = timezone.now()
        with transaction.atomic():
            task = DiscoveryTask.objects.select_for_update().filter(pk=task_id).first()
            if task is None or task.status != DiscoveryTask.Status.PENDING:
                return None
            if task.cancel_requested:
                task.status, task.finished_at, task.phase = DiscoveryTask.Status.CANCELLED, now, "Cancelled"
                task.save(update_fields=["status", "finished_at", "phase", "updated_at"])
                return None
            task.status, task.started_at, task.phase = DiscoveryTask.Status.RUNNING, now, "Starting"
            task.save(update_fields=["status", "started_at", "phase", "updated_at"])
        return task

    @staticmethod
    def record_progress(*, task_id: int, done: int, total: int, phase: str) -> bool:
        """Store how far a run got. Returns True when the user asked to cancel it."""
        DiscoveryTask.objects.filter(pk=task_id).update(
            probes_done=done, probes_total=total, phase=_limited(phase, 64), updated_at=timezone.now()
        )
        return DiscoveryService.cancel_requested(task_id=task_id)

    @staticmethod
    def cancel_requested(*, task_id: int) -> bool:
        return DiscoveryTask.objects.filter(pk=task_id, cancel_requested=True).exists()

    @staticmethod
    def add_notes(*, task_id: int, notes: Iterable[str]) -> None:
        """Keep what the crew should know about a run (at most MAX_NOTES lines, the first ones)."""
        new = [_limited(n, 300) for n in notes]
        if not new:
            return
        with transaction.atomic():
            task = DiscoveryTask.objects.select_for_update().get(pk=task_id)
            kept = list(task.notes)
            task.notes = kept + [n for n in new if n not in kept][: max(0, MAX_NOTES - len(kept))]
            task.save(update_fields=["notes", "updated_at"])

    @staticmethod
    def finish(*, task_id: int, cancelled: bool = False, error: str = "") -> None:
        if error:
            status, phase = DiscoveryTask.Status.FAILED, "Failed"
        elif cancelled:
            status, phase = DiscoveryTask.Status.CANCELLED, "Cancelled"
        else:
            status, phase = DiscoveryTask.Status.DONE, "Done"
        DiscoveryTask.objects.filter(pk=task_id).update(
            status=status, phase=phase, error=_limited(error, 2000), finished_at=timezone.now(),
            updated_at=timezone.now(),
        )  # fmt: skip

    @staticmethod
    def cancel(*, task: DiscoveryTask) -> bool:
        """Ask a pending or running scan to stop (it checks between batches). Returns False when it had ended."""
        if task.finished:
            return False
        changed = DiscoveryTask.objects.filter(pk=task.pk).exclude(
            status__in=[DiscoveryTask.Status.DONE, DiscoveryTask.Status.CANCELLED, DiscoveryTask.Status.FAILED]
        )
        return bool(changed.update(cancel_requested=True, updated_at=timezone.now()))

    # ---- what it found --------------------------------------------------------------------------------

    @staticmethod
    def _match(found: Found | DiscoveredDevice) -> tuple[str, Receiver | None, str]:
        """(state, the receiver that is this device, its address) by identity, never by address."""
        if found.driver == SYSTEM_API:
            identity = {"remote_id": found.remote_id} if found.remote_id else None
        else:
            identity = {"device_id": found.device_id} if found.device_id else None
        receiver = None
        if identity is not None:
            receiver = Receiver.objects.filter(driver=found.driver, **identity).order_by("pk").first()
        if receiver is None:
            return DiscoveredDevice.State.NEW, None, ""
        try:
            here = resolved_addresses(found.host, timeout=_MATCH_TIMEOUT)
            there = resolved_addresses(receiver.host, timeout=_MATCH_TIMEOUT)
        except ConfigurationError:
            here, there = {found.host}, set()
        same = receiver.port == found.port and bool(here & there)
        return (DiscoveredDevice.State.KNOWN if same else DiscoveredDevice.State.MOVED), receiver, receiver.address

    @staticmethod
    def record_found(*, task_id: int, found: Found, source: str) -> DiscoveredDevice:
        """Store (or merge into the same run's row for the same device) what a probe identified."""
        found = replace(
            found, model=_limited(found.model, 32), device_id=_limited(found.device_id, 64),
            serial=_limited(found.serial, 64), name=_limited(found.name, 100), remote_id=_limited(found.remote_id, 64),
            firmware=_limited(found.firmware, 32), note=_limited(found.note, 255),
            channels=tuple((int(n), _limited(name, 64)) for n, name in found.channels[:16]),
        )  # fmt: skip
        state, receiver, address = DiscoveryService._match(found)
        values = {
            "driver": found.driver, "model": found.model, "host": found.host, "port": found.port,
            "device_id": found.device_id, "serial": found.serial, "name": found.name, "remote_id": found.remote_id,
            "firmware": found.firmware, "note": found.note, "channels": [list(c) for c in found.channels],
            "state": state, "receiver": receiver, "previous_address": address if state == "moved" else "",
        }  # fmt: skip
        with transaction.atomic():
            same = DiscoveredDevice.objects.select_for_update().filter(
                task_id=task_id, driver=found.driver, remote_id=values["remote_id"]
            )
            if found.device_id:
                same = same.filter(device_id=found.device_id)
            else:
                same = same.filter(host=found.host, port=found.port)
            row = same.first()
            if row is None:
                row = DiscoveredDevice.objects.create(task_id=task_id, source=source, **values)
                DiscoveryTask.objects.filter(pk=task_id).update(devices_found=F("devices_found") + 1)
                return row
            sources = [s for s in row.source.split(", ") if s]
            for key, value in values.items():
                setattr(row, key, value)
            row.source = ", ".join(dict.fromkeys([*sources, source]))[:32]
            row.save()
        return row

    @staticmethod
    def devices(*, task: DiscoveryTask) -> QuerySet[DiscoveredDevice]:
        """A run's finds, for the review list: new first, then moved, then known; by address."""
        return task.devices.select_related("receiver").order_by(
            "outcome", "-state", "host", "port", "remote_id"
        )  # "new" > "moved" > "known" descending

    # ---- review ---------------------------------------------------------------------------------------

    @staticmethod
    def _check_unreviewed(device: DiscoveredDevice) -> None:
        if device.outcome:
            raise DiscoveryError(f"{device.model} at {device.address}: {device.get_outcome_display().lower()} before.")

    @staticmethod
    def _reviewed(device: DiscoveredDevice, outcome: str, receiver: Receiver, user) -> None:
        device.outcome, device.receiver = outcome, receiver
        device.reviewed_by = user if getattr(user, "pk", None) else None
        device.reviewed_at = timezone.now()
        device.save(update_fields=["outcome", "receiver", "reviewed_by", "reviewed_at", "state", "previous_address"])

    @staticmethod
    @transaction.atomic
    def add_device(*, device: DiscoveredDevice, name: str = "", user=None) -> Receiver:
        """Create the receiver a new find is, with its channels (named as the device reports them).

        Raises:
            DiscoveryError: it was reviewed already, or it is (now) a known or moved receiver.
            ConfigurationError: a model micboard does not read, or an address DeviceService refuses.
        """
        locked = DiscoveredDevice.objects.select_for_update().select_related("task").get(pk=device.pk)
        DiscoveryService._check_unreviewed(locked)
        state, receiver, address = DiscoveryService._match(locked)  # a receiver may have been added since
        if state != DiscoveredDevice.State.NEW:
            locked.state, locked.receiver, locked.previous_address = state, receiver, address
            locked.save(update_fields=["state", "receiver", "previous_address"])
            hint = "update its address instead" if state == DiscoveredDevice.State.MOVED else "nothing to add"
            raise DiscoveryError(f"{locked.model} at {locked.address} is “{receiver.name}” already: {hint}.")
        options = locked.task.options if locked.driver == SYSTEM_API else {}
        receiver = DeviceService.create_receiver(
            name=_limited(name.strip() or locked.name or f"{locked.model} {locked.host}", 100),
            model=locked.model,
            host=locked.host,
            port=locked.port,
            driver=locked.driver,
            remote_id=locked.remote_id,
            device_id=locked.device_id,
            api_key=options.get("api_key", ""),
            tls_fingerprint=options.get("tls_fingerprint", ""),
        )
        for number, channel_name in locked.channels:
            Channel.objects.filter(receiver=receiver, number=number).update(name=_limited(channel_name, 64))
        DeviceService.request_poll(receivers=[receiver])
        DiscoveryService._reviewed(locked, DiscoveredDevice.Outcome.ADDED, receiver, user)
        return receiver

    @staticmethod
    @transaction.atomic
    def update_address(*, device: DiscoveredDevice, user=None) -> Receiver:
        """Move the receiver a moved find is to the address it was found at.

        Raises:
            DiscoveryError: it was reviewed already, or it is not (any more) a moved receiver.
            ConfigurationError: the new address is another receiver's device (DeviceService's checks).
        """
        locked = DiscoveredDevice.objects.select_for_update().get(pk=device.pk)
        DiscoveryService._check_unreviewed(locked)
        state, receiver, address = DiscoveryService._match(locked)
        if state != DiscoveredDevice.State.MOVED or receiver is None:
            locked.state, locked.receiver = state, receiver
            locked.save(update_fields=["state", "receiver"])
            what = f"is “{receiver.name}” at that address" if receiver else "is no receiver's device"
            raise DiscoveryError(f"{locked.model} at {locked.address} {what}: no address to update.")
        receiver = Receiver.objects.select_for_update().get(pk=receiver.pk)
        receiver.host, receiver.port = locked.host, locked.port
        DeviceService.update_receiver(receiver=receiver)
        DeviceService.request_poll(receivers=[receiver])
        locked.previous_address = address
        DiscoveryService._reviewed(locked, DiscoveredDevice.Outcome.UPDATED, receiver, user)
        return receiver

    @staticmethod
    def probe_options(*, task: DiscoveryTask) -> dict[str, str]:
        """What a run's probes get as ``options``: the task's extras and the System API CA file setting."""
        options = dict(task.options)
        ca_file = getattr(settings, "MICBOARD_SYSTEM_API_CA_FILE", "")
        if ca_file:
            options["ca_file"] = str(ca_file)
        return options
