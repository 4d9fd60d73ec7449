"""Sessions read from the cache, kept in the database: Django's ``cached_db`` engine, made safe when the cache fails.

A board refresh reads its session from the cache (Redis or the file cache), not from SQL. Unlike
Django's engine, a cache that is down never fails a request here: a read becomes a database read,
a write or a delete is skipped and logged. A cached copy lives at most ``CACHE_SECONDS`` (the
database row keeps the session's real expiry), so a copy left behind by a logout while the cache was
failing cannot outlive that once the cache is back.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.sessions.backends.cached_db import SessionStore as CachedDBStore
from django.contrib.sessions.backends.db import SessionStore as DBStore
from django.core.cache import caches

logger = logging.getLogger("web.sessions")

CACHE_SECONDS = 5 * 60


class SessionStore(CachedDBStore):
    """``cached_db`` sessions that fall back to the database whenever the cache fails."""

    def __init__(self, session_key: str | None = None):
        DBStore.__init__(self, session_key)  # the cache is reached on use, where its failures are caught

    @property
    def _cache(self):
        return caches[settings.SESSION_CACHE_ALIAS]  # a cache that cannot even be opened fails here

    def _cache_seconds(self, age: int) -> int:
        return max(0, min(age, CACHE_SECONDS))

    def load(self) -> dict:
        try:
            data = self._cache.get(self.cache_key)
        except Exception as exc:  # every backend has its own errors; the database has the session
            logger.warning("session cache unavailable, reading the database: %s", exc.__class__.__name__)
            data = None
        if data is not None:
            return data
        row = self._get_session_from_db()
        if row is None:
            return {}
        data = self.decode(row.session_data)
        self._cache_write(data, self.get_expiry_age(expiry=row.expire_date))
        return data

    def exists(self, session_key: str) -> bool:
        try:
            if session_key and (self.cache_key_prefix + session_key) in self._cache:
                return True
        except Exception as exc:
            logger.warning("session cache unavailable, asking the database: %s", exc.__class__.__name__)
        return DBStore.exists(self, session_key)

    def save(self, must_create: bool = False) -> None:
        DBStore.save(self, must_create)
        self._cache_write(self._session, self.get_expiry_age())

    def delete(self, session_key: str | None = None) -> None:
        DBStore.delete(self, session_key)
        session_key = session_key or self.session_key
        if session_key is None:
            return
        try:
            self._cache.delete(self.cache_key_prefix + session_key)
        except Exception as exc:
            logger.error("session cache unavailable, a deleted session's copy stays there: %s", exc.__class__.__name__)

    def _cache_write(self, data: dict, age: int) -> None:
        try:
            self._cache.set(self.cache_key, data, self._cache_seconds(age))
        except Exception as exc:
            logger.warning("session cache unavailable, not keeping the session there: %s", exc.__class__.__name__)
