"""Signal handlers: they only write the audit trail of configuration changes."""

from __future__ import annotations

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from micboard.models import Assignment, AuditEntry, Group, Location, Performer, Receiver

AUDITED = (Receiver, Assignment, Group, Location, Performer)


def _write(action: str, instance) -> None:
    AuditEntry.objects.create(
        action=action,
        model=instance._meta.verbose_name,
        object_id=str(instance.pk),
        summary=str(instance)[:255],
    )


@receiver(post_save)
def audit_save(sender, instance, created, raw=False, update_fields=None, **kwargs):
    # Saves limited to update_fields come from the services' bookkeeping, not from setup changes.
    if sender in AUDITED and not raw and update_fields is None:
        _write("created" if created else "changed", instance)


@receiver(post_delete)
def audit_delete(sender, instance, **kwargs):
    if sender in AUDITED:
        _write("deleted", instance)
