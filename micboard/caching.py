"""Caching helpers: safe keys, versioned namespaces, cached service results, querysets and properties.

Invalidation works by versions, never by key scans, so it behaves the same on Redis and on the file
cache. Each namespace ("board", ...) has a version kept in :mod:`micboard.coordination` (never culled
nor evicted) under ``<namespace>:version``; the "board" namespace's version IS the board version the
ETags carry. ``invalidate_cache(namespace)`` writes a new version, and every entry cached under an
older one is never served again.

The version goes into the entry, not into its key: an entry is ``(version, value)`` in one slot per
key, and a reader that finds another version than the current one rebuilds and overwrites the slot.
So the cache holds one entry per distinct call, however often the version moves on (the board's
version moves with every poll that changed something), and it never grows with versions.

Every call here tolerates a broken cache (Redis down, an unwritable cache folder) and a coordination
store that is down: a read becomes a miss, a write is skipped, and the caller gets a value computed
from the database. A cache can cost speed, never an answer.
"""

from __future__ import annotations

import copy
import enum
import functools
import hashlib
import logging
import re
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from django.core.cache import cache
from django.db import models, transaction

from micboard import coordination
from micboard.exceptions import CoordinationError

logger = logging.getLogger("micboard.caching")

# Preset timeouts, in seconds.
SHORT = 30  # search results, lists typed against
MEDIUM = 5 * 60  # service reads whose namespace is invalidated on change anyway
LONG = 60 * 60  # rarely changing setup
DAY = 24 * 3600  # entries whose version decides whether they are current (the board's tiles and grids)

KEY_PREFIX = "micboard"
KEY_MAX = 200  # characters; longer keys end in a hash (memcached refuses > 250, Django warns)
_NAMESPACE = re.compile(r"[a-z][a-z0-9_.-]{0,47}")


# ------------------------------------------------------------------------------------------- keys


def _part(value: Any) -> str:
    """One key part as text: a stable ``repr``-like form (model instances as ``<app.model:pk>``).

    Raises:
        TypeError: a value with no stable text (an arbitrary object, a queryset).
    """
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, bool | int | float | Decimal | date | datetime | dtime | timedelta):
        return repr(value)
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    if isinstance(value, models.Model):
        if value.pk is None:
            raise TypeError(f"an unsaved {value._meta.label} has no cache key")
        return f"<{value._meta.label_lower}:{value.pk!r}>"
    if isinstance(value, list | tuple):
        return "(" + ",".join(_arg(v) for v in value) + ")"
    if isinstance(value, set | frozenset):
        return "{" + ",".join(sorted(_arg(v) for v in value)) + "}"
    if isinstance(value, dict):
        return "{" + ",".join(sorted(f"{_arg(k)}={_arg(v)}" for k, v in value.items())) + "}"
    raise TypeError(f"no stable cache key for a {type(value).__name__}")


def _arg(value: Any) -> str:
    """An argument's text; strings are quoted so that ``"1"`` and ``1`` (or ``"None"`` and None) differ."""
    return repr(value) if isinstance(value, str) else _part(value)


def cache_key(*parts: Any) -> str:
    """A stable cache key from ``parts``: ``micboard:<part>:<part>...``.

    Each part is escaped to safe characters (letters, digits, ``._-~`` and ``%XX``), so a ``:`` inside
    a part can never be mistaken for a separator and no key holds spaces or control characters. A
    key longer than ``KEY_MAX`` keeps its beginning and ends in a SHA-256 of the whole.

    Raises:
        TypeError: a part with no stable text (see ``_part``).
    """
    key = ":".join([KEY_PREFIX, *(quote(_part(p), safe="") for p in parts)])
    if len(key) <= KEY_MAX:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{key[: KEY_MAX - len(digest) - 1]}#{digest}"


# ------------------------------------------------------------------------ a cache that may be down


def cache_get(key: str, default: Any = None) -> Any:
    """A cache read that a broken cache (Redis down, unwritable folder) turns into a miss."""
    try:
        return cache.get(key, default)
    except Exception as exc:  # every backend has its own errors; a miss is always safe here
        logger.warning("cache unavailable, reading %s from the database: %s", key, exc)
        return default


def cache_set(key: str, value: Any, timeout: float | None) -> None:
    """A cache write that a broken cache skips (the next reader rebuilds)."""
    try:
        cache.set(key, value, timeout=timeout)
    except Exception as exc:
        logger.warning("cache unavailable, not keeping %s: %s", key, exc)


def cache_delete(key: str) -> None:
    """Forget one entry; a broken cache is logged (its entries are out of reach anyway)."""
    try:
        cache.delete(key)
    except Exception as exc:
        logger.warning("cache unavailable, could not drop %s: %s", key, exc)


# ---------------------------------------------------------------------------- versioned namespaces


def namespace_version_key(namespace: str) -> str:
    """The coordination key of a namespace's version (``board`` -> ``board:version``)."""
    if not _NAMESPACE.fullmatch(namespace):
        raise ValueError(f"not a cache namespace: {namespace!r}")
    return f"{namespace}:version"


def namespace_version(namespace: str) -> str:
    """The current version of a namespace, created on first use.

    Raises:
        CoordinationError: the coordination store is unreachable.
    """
    store = coordination.store()
    key = namespace_version_key(namespace)
    version = store.get(key)
    if version is None:
        store.add(key, str(time.time_ns()))
        version = store.get(key) or ""
    return version


def bump_namespace(namespace: str) -> str:
    """Give a namespace a new version (every entry cached under an older one is never served again).

    The new version is a fresh nanosecond time, never a counter: two processes bumping at once both
    end on a version no entry holds yet.

    Raises:
        CoordinationError: the coordination store is unreachable.
    """
    version = str(time.time_ns())
    coordination.store().set(namespace_version_key(namespace), version)
    return version


def invalidate_cache(namespace: str) -> bool:
    """Invalidate every entry of a namespace at once, on any backend, with no key scan.

    Returns:
        True when the version moved on; False when the coordination store is down (logged: while it
        is down no entry of the namespace is served either, since no version can be read).
    """
    try:
        bump_namespace(namespace)
    except CoordinationError as exc:
        logger.warning("cache namespace %s not invalidated: %s", namespace, exc)
        return False
    return True


def invalidate_cache_on_commit(namespace: str) -> None:
    """``invalidate_cache(namespace)`` once the current transaction (if any) has committed.

    After the commit, not before: a reader between the bump and the commit would otherwise cache
    the old rows under the new version.
    """
    transaction.on_commit(lambda: invalidate_cache(namespace))


def versioned_get(key: str, *, version: str) -> tuple[bool, Any]:
    """Read the slot at ``key``, accepting it only if it was stored for ``version``.

    Returns:
        ``(True, value)`` on a hit, ``(False, None)`` on a miss (no entry, another version, or a
        broken cache).
    """
    entry = cache_get(key)
    if isinstance(entry, tuple) and len(entry) == 2 and entry[0] == version:
        return True, entry[1]
    return False, None


def versioned_set(key: str, value: Any, *, version: str, timeout: float | None) -> None:
    """Keep ``value`` at ``key`` for ``version``, replacing whatever version the slot held."""
    cache_set(key, (version, value), timeout)


def versioned(key: str, build: Callable[[], Any], *, version: str, timeout: float | None) -> Any:
    """The value at ``key`` for ``version``, built (and kept) on a miss."""
    hit, value = versioned_get(key, version=version)
    if not hit:
        value = build()
        versioned_set(key, value, version=version, timeout=timeout)
    return value


def _current_version(namespace: str | None) -> str | None:
    """The namespace's version ("" without a namespace); None when it cannot be read (store down)."""
    if namespace is None:
        return ""
    try:
        return namespace_version(namespace)
    except CoordinationError as exc:
        logger.warning("cache namespace %s unavailable, computing from the database: %s", namespace, exc)
        return None


# ------------------------------------------------------------------------------------- decorators


def _function_id(fn: Callable) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def cache_service_result(*, timeout: float | None, namespace: str | None = None):
    """Cache what a service method returns, keyed by the method and its keyword arguments.

    Put it under ``@staticmethod``. The result must pickle; exceptions are not cached. With a
    namespace, ``invalidate_cache(namespace)`` drops every result at once; without one, only the
    timeout ends an entry. The decorated function keeps the original as ``.uncached`` and tells its
    key with ``.key_for(**kwargs)``.

    Args:
        timeout: seconds an entry lives (see SHORT, MEDIUM, LONG, DAY); None for no expiry.
        namespace: the namespace whose version the entries carry.
    Raises:
        TypeError: (at call time) positional arguments, or an argument with no stable key.
    """
    if namespace is not None:
        namespace_version_key(namespace)  # a bad name fails at import, not at the first call

    def decorate(fn):
        fid = _function_id(fn)

        def key_for(**kwargs) -> str:
            return cache_key(namespace or "-", fid, *(f"{name}={_arg(kwargs[name])}" for name in sorted(kwargs)))

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if args:
                raise TypeError(f"{fid} is cached by its keyword arguments; call it with keywords only")
            key = key_for(**kwargs)
            version = _current_version(namespace)
            if version is None:
                return fn(**kwargs)
            return versioned(key, lambda: fn(**kwargs), version=version, timeout=timeout)

        wrapper.uncached = fn
        wrapper.key_for = key_for
        return wrapper

    return decorate


def _fresh_queryset(queryset: models.QuerySet, pks: list) -> models.QuerySet:
    """A new queryset of exactly these rows, in this order, loading the same relations as ``queryset``."""
    model = queryset.model
    if not pks:
        return model._default_manager.none()
    fresh = model._default_manager.filter(pk__in=pks)
    related = queryset.query.select_related
    if related is True:
        fresh = fresh.select_related()
    elif related:
        fresh.query.select_related = copy.deepcopy(related)  # the nested dict Django built for the original
    if queryset._prefetch_related_lookups:
        fresh = fresh.prefetch_related(*queryset._prefetch_related_lookups)
    order = models.Case(*(models.When(pk=pk, then=models.Value(i)) for i, pk in enumerate(pks)))
    return fresh.order_by(order)


def cache_queryset(*, timeout: float | None, namespace: str | None = None):
    """Cache which rows a queryset-returning service method finds, never the rows themselves.

    The primary keys (in order) are cached; every call returns a FRESH queryset of those rows in
    that order, with the original's ``select_related`` / ``prefetch_related``, so the values shown
    are always current while the costly filtering (joins, searches) runs once per namespace version.
    Annotations, ``only()`` and ``defer()`` of the original are not carried over.

    Args:
        timeout: seconds the primary keys are kept; None for no expiry.
        namespace: the namespace whose invalidation drops them (e.g. "board").
    Raises:
        TypeError: (at call time) positional arguments, an argument with no stable key, or a
            function that returned something else than a queryset.
    """
    if namespace is not None:
        namespace_version_key(namespace)

    def decorate(fn):
        keyed = cache_service_result(timeout=timeout, namespace=namespace)

        def primary_keys(**kwargs) -> list:
            return list(_as_queryset(fn(**kwargs)).values_list("pk", flat=True))

        primary_keys.__module__, primary_keys.__qualname__ = fn.__module__, fn.__qualname__
        cached_keys = keyed(primary_keys)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if args:
                raise TypeError(f"{_function_id(fn)} is cached by its keyword arguments; call it with keywords only")
            pks = cached_keys(**kwargs)
            return _fresh_queryset(_as_queryset(fn(**kwargs)), pks)  # fn(...) is lazy: no query here

        wrapper.uncached = fn
        wrapper.key_for = cached_keys.key_for
        return wrapper

    return decorate


def _as_queryset(value: Any) -> models.QuerySet:
    if not isinstance(value, models.QuerySet):
        raise TypeError(f"cache_queryset wraps functions returning a QuerySet, not a {type(value).__name__}")
    return value


class CachedProperty:
    """A read-only property of a model instance whose value lives in the cache, keyed by model and pk.

    ``Channel.board_groups = CachedProperty(fn, timeout=MEDIUM, namespace="board")`` computes ``fn(channel)``
    once per namespace version and instance, across requests and processes (unlike Django's
    ``cached_property``, which lives as long as one instance). An unsaved instance, a broken cache or
    a coordination store that is down compute the value every time. Use as a decorator through
    ``cached_property_with_ttl(timeout=, namespace=)``.
    """

    def __init__(self, fn: Callable[[Any], Any], *, timeout: float | None, namespace: str | None = None):
        if namespace is not None:
            namespace_version_key(namespace)
        self.fn = fn
        self.timeout = timeout
        self.namespace = namespace
        self.name = fn.__name__
        functools.update_wrapper(self, fn)

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def key_for(self, instance: models.Model) -> str:
        return cache_key(self.namespace or "-", "property", instance, self.name)

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        if instance.pk is None:
            return self.fn(instance)
        version = _current_version(self.namespace)
        if version is None:
            return self.fn(instance)
        return versioned(self.key_for(instance), lambda: self.fn(instance), version=version, timeout=self.timeout)

    def __set__(self, instance, value) -> None:
        raise AttributeError(f"{self.name} is computed; it cannot be set")


def cached_property_with_ttl(*, timeout: float | None, namespace: str | None = None):
    """Decorator form of :class:`CachedProperty`."""
    return lambda fn: CachedProperty(fn, timeout=timeout, namespace=namespace)
