"""Fixtures every test shares: each test run owns its state and cleans up only what it created.

web/settings.py gives a test run its own data directory (SQLite database, file cache, Huey queue,
coordination file) and its own key prefix in Redis (cache, queue and coordination keys). Between
tests only that state is cleared; nothing here ever flushes a Redis database.
"""

import os
import shutil

import pytest


def _drop_entries(alias: str) -> None:
    """Drop every entry this run keeps in one cache: its Redis entries (not the coordination keys), or its folder."""
    from django.conf import settings
    from django.core.cache import caches

    cache = caches[alias]
    if settings.REDIS_URL:
        client = cache._cache.get_client(write=True)
        keys = list(client.scan_iter(match=f"{settings.CACHES[alias]['KEY_PREFIX']}:1:*", count=500))
        if keys:
            client.delete(*keys)
    else:
        cache.clear()  # a folder in this run's own directory


def drop_cache_entries() -> None:
    """Drop every cache entry of this run, as culling or eviction would (coordination keys are not entries)."""
    _drop_entries("default")


def clear_own_state() -> None:
    """Forget the board cache, the access cache and the coordination keys of this run, and nothing else."""
    from micboard import coordination

    drop_cache_entries()
    _drop_entries("access")  # cached sessions and access decisions
    coordination.store().clear()


@pytest.fixture(autouse=True)
def _own_state():
    """Board versions, heartbeats, poll locks and cached tiles must not leak between tests."""
    clear_own_state()
    yield
    clear_own_state()


def pytest_sessionfinish(session, exitstatus):
    from django.conf import settings

    if settings.REDIS_URL:
        from huey.contrib.djhuey import HUEY

        clear_own_state()
        HUEY.storage.flush_all()  # this run's queue, schedule and results (its name is the run's prefix)
    data_dir = str(settings.DATA_DIR)
    if os.path.basename(data_dir).startswith("micboard-test-") and os.environ.get("MICBOARD_TEST_RUN", "") in data_dir:
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """The test database, dropped at the end even when a thread of a test still holds a connection to it.

    On PostgreSQL a connection left open by a worker thread would make DROP DATABASE fail and leave
    this run's database behind; the run ends those sessions of its own database first.
    """
    yield
    from django.db import connection

    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
