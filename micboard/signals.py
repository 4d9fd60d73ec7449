"""Signal handlers: the audit trail of configuration changes, and the invalidation of cached access.

``web.access`` keeps what it decided about a session (a user's role and session hash, a kiosk link)
in the sessions' cache (``SESSION_CACHE_ALIAS``), under the ``access`` namespace (``micboard.caching``
versions: the version lives in the coordination store, so every process sees a bump). Every change
that could alter such a decision bumps that version, so the very next request decides again from
the database:

- a user saved or deleted (is_active, is_staff, is_superuser, a new password: a new session hash),
  except a save of ``last_login`` alone (signing in);
- a user's groups changed (either side of the relation), a group's permissions changed, an auth
  group saved or deleted (a role is a group's name);
- a session row deleted (signed out elsewhere): its cached copy is dropped as well;
- a kiosk link saved, deleted or updated in bulk (revocation and expiry go through
  ``KioskLinkQuerySet.update``), a board group saved that a link is scoped to (deleting a group
  deletes its scoped links).

A bump happens at once and again after the transaction commits: a reader between the two that
cached what it read before the commit is dropped by the second one. The changed user's or link's own
entry is also deleted, in case the coordination store cannot be written.
"""

from __future__ import annotations

import hashlib
import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group as AuthGroup
from django.contrib.sessions.backends.cached_db import KEY_PREFIX as SESSION_KEY_PREFIX
from django.contrib.sessions.models import Session
from django.core.cache import caches
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver

from micboard.caching import cache_key, invalidate_cache, invalidate_cache_on_commit
from micboard.models import (
    AlertRule,
    AlertSubscription,
    Assignment,
    AuditEntry,
    Group,
    KioskLink,
    Location,
    Performer,
    Receiver,
    Webhook,
)

logger = logging.getLogger("micboard.access")

AUDITED = (Receiver, Assignment, Group, Location, Performer, AlertRule, Webhook, AlertSubscription)
ACCESS_NAMESPACE = "access"
USER_BOOKKEEPING = frozenset({"last_login"})


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


# ------------------------------------------------------------------------------- cached access


def user_grant_key(user_id) -> str:
    """The cache key of what web.access decided for a user (by primary key, as the session holds it)."""
    return cache_key(ACCESS_NAMESPACE, "user", str(user_id))


def kiosk_grant_key(token_id: str) -> str:
    """The cache key of a kiosk link's check (by a digest of its token_id)."""
    return cache_key(ACCESS_NAMESPACE, "kiosk", hashlib.sha256(str(token_id).encode()).hexdigest()[:32])


def grant_cache():
    """The cache of sessions and access decisions (``SESSION_CACHE_ALIAS``), apart from the shared board renders.

    Raises:
        Exception: whatever the backend raises when it cannot be reached or opened.
    """
    return caches[settings.SESSION_CACHE_ALIAS]


def invalidate_access(*keys: str) -> None:
    """Make every cached access decision stale now and after the commit; drop ``keys`` as well."""
    for key in keys:
        try:
            grant_cache().delete(key)
        except Exception as exc:  # the version bump below still ends the entry
            logger.warning("access cache unavailable, could not drop %s: %s", key, exc.__class__.__name__)
    invalidate_cache(ACCESS_NAMESPACE)
    invalidate_cache_on_commit(ACCESS_NAMESPACE)


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="micboard-access-user-saved")
@receiver(post_delete, sender=settings.AUTH_USER_MODEL, dispatch_uid="micboard-access-user-deleted")
def user_changed(sender, instance, update_fields=None, **kwargs):
    if update_fields is not None and set(update_fields) <= USER_BOOKKEEPING:
        return  # signing in notes the time: nothing a decision depends on
    invalidate_access(user_grant_key(instance.pk))


@receiver(m2m_changed, sender=get_user_model().groups.through, dispatch_uid="micboard-access-user-groups")
def user_groups_changed(sender, instance, action, reverse, pk_set, **kwargs):
    if action.startswith("post_"):
        users = [instance.pk] if not reverse else list(pk_set or ())
        invalidate_access(*(user_grant_key(pk) for pk in users))


@receiver(m2m_changed, sender=AuthGroup.permissions.through, dispatch_uid="micboard-access-group-permissions")
def group_permissions_changed(sender, action, **kwargs):
    if action.startswith("post_"):
        invalidate_access()


@receiver(post_save, sender=AuthGroup, dispatch_uid="micboard-access-role-saved")
@receiver(post_delete, sender=AuthGroup, dispatch_uid="micboard-access-role-deleted")
def role_group_changed(sender, **kwargs):
    invalidate_access()


@receiver(post_save, sender=Group, dispatch_uid="micboard-access-board-group-saved")
def board_group_changed(sender, instance, raw=False, **kwargs):
    # A kiosk link scoped to the group keeps its name and slug (deleting the group deletes its links).
    if not raw and KioskLink.objects.filter(group=instance).exists():
        invalidate_access()


@receiver(post_save, sender=KioskLink, dispatch_uid="micboard-access-kiosk-saved")
@receiver(post_delete, sender=KioskLink, dispatch_uid="micboard-access-kiosk-deleted")
def kiosk_link_changed(sender, instance, **kwargs):
    invalidate_access(kiosk_grant_key(instance.token_id))


def _drop_cached_session(key: str) -> None:
    try:
        grant_cache().delete(key)
    except Exception as exc:  # its copy there lives at most web.sessions.CACHE_SECONDS
        logger.warning("session cache unavailable, a deleted session's copy stays there: %s", exc.__class__.__name__)


@receiver(post_delete, sender=Session, dispatch_uid="micboard-access-session-deleted")
def session_deleted(sender, instance, **kwargs):
    """A session deleted in the database (signed out elsewhere, cleared) is gone from the cache too."""
    key = SESSION_KEY_PREFIX + instance.session_key
    _drop_cached_session(key)
    transaction.on_commit(lambda: _drop_cached_session(key))  # a reader may have cached it before the commit
