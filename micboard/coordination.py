"""State the link holders and the web processes coordinate through: atomic, and never evicted.

The board version, the poller's heartbeat, the receivers' leases and the holders' seats must survive
whatever a cache does to its entries (Django's file cache culls a third of them when it is full; a
cache may evict under memory pressure). They live in a small store of their own instead:

* with ``REDIS_URL``: plain Redis keys under ``MICBOARD_KEY_PREFIX`` (no TTL except the leases'; a
  lease is taken with ``SET NX PX`` and renewed / released by its owner only, in Lua);
* on the embedded default: ``coordination.sqlite3`` in the data directory, one SQLite transaction
  (``BEGIN IMMEDIATE``) per operation, so two processes never both take a lease.

A lease records its owner as ``host/boot:pid:start:nonce``. A process on the same machine may take over
a lease whose owner process is gone (a consumer killed and restarted takes over at once); a holder on
another machine is waited for until its lease expires (it is renewed every second while held).

Every failure of the store raises :class:`CoordinationError`; callers decide what degrades.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
import uuid
from functools import cache
from pathlib import Path

from django.conf import settings

from micboard.exceptions import CoordinationError


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


@cache
def machine_id() -> str:
    """This machine (and boot): host name plus the kernel's boot id where there is one."""
    boot = _read("/proc/sys/kernel/random/boot_id")
    return f"{socket.gethostname()}/{boot}" if boot else socket.gethostname()


def _process_start(pid: int) -> tuple[str, str] | None:
    """(state, start time) of a process from /proc, None when it is gone or /proc is unavailable."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # the command name may hold spaces and brackets
    return (fields[0], fields[19]) if len(fields) > 19 else None


def new_owner() -> str:
    """A unique lock owner naming this process, so others on this machine can tell when it died."""
    pid = os.getpid()
    info = _process_start(pid)
    start = info[1] if info else ""
    return f"{machine_id()}:{pid}:{start}:{uuid.uuid4().hex[:12]}"


def owner_is_dead(owner: str) -> bool:
    """True when ``owner`` names a process of this machine that no longer runs (or is a zombie)."""
    parts = owner.rsplit(":", 3)
    if len(parts) != 4 or parts[0] != machine_id() or not parts[1].isdigit():
        return False  # another machine's process: its lock expires unless it is renewed
    pid, start = int(parts[1]), parts[2]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, owned by another user
    info = _process_start(pid)
    if info is None:
        return False  # no /proc: the signal says it exists
    state, started = info
    return state == "Z" or (bool(start) and started != start)  # zombie, or the pid was reused


class SqliteCoordination:
    """The embedded default: one table in its own SQLite file (WAL), shared by every process."""

    def __init__(self, path: Path | str):
        self.path = str(path)
        self._local = threading.local()

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None or self._local.pid != os.getpid():
            db = sqlite3.connect(self.path, timeout=5, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS coordination (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires REAL)"
            )
            self._local.db, self._local.pid = db, os.getpid()
        return db

    def _run(self, fn):
        try:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                result = fn(db, time.time())
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return result
        except sqlite3.Error as exc:
            self._local.db = None  # reopen next time (the file may have been replaced)
            raise CoordinationError(f"coordination store {self.path}: {exc}") from exc

    @staticmethod
    def _current(db: sqlite3.Connection, key: str, now: float) -> str | None:
        row = db.execute("SELECT value, expires FROM coordination WHERE key = ?", (key,)).fetchone()
        if row is None or (row[1] is not None and row[1] <= now):
            return None
        return row[0]

    def get(self, key: str) -> str | None:
        try:
            row = self._db().execute("SELECT value, expires FROM coordination WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            self._local.db = None
            raise CoordinationError(f"coordination store {self.path}: {exc}") from exc
        if row is None or (row[1] is not None and row[1] <= time.time()):
            return None
        return row[0]

    def get_many(self, keys: list[str]) -> list[str | None]:
        """The values of ``keys`` in order (None where absent or expired), in one read."""
        return self._run(lambda db, now: [self._current(db, key, now) for key in keys]) if keys else []

    def set(self, key: str, value: str) -> None:
        self._run(lambda db, now: db.execute("REPLACE INTO coordination VALUES (?, ?, NULL)", (key, value)))

    def add(self, key: str, value: str) -> bool:
        def add(db, now):
            if self._current(db, key, now) is not None:
                return False
            db.execute("REPLACE INTO coordination VALUES (?, ?, NULL)", (key, value))
            return True

        return self._run(add)

    def acquire(self, key: str, owner: str, ttl: float) -> bool:
        def acquire(db, now):
            holder = self._current(db, key, now)
            if holder is not None and holder != owner and not owner_is_dead(holder):
                return False
            db.execute("REPLACE INTO coordination VALUES (?, ?, ?)", (key, owner, now + ttl))
            return True

        return self._run(acquire)

    def renew(self, key: str, owner: str, ttl: float) -> bool:
        def renew(db, now):
            if self._current(db, key, now) != owner:
                return False
            db.execute("UPDATE coordination SET expires = ? WHERE key = ?", (now + ttl, key))
            return True

        return self._run(renew)

    def renew_many(self, keys: list[str], owner: str, ttl: float) -> list[bool]:
        """:meth:`renew` of each key in one transaction; False where the lock is no longer ours."""

        def renew(db, now):
            held = [self._current(db, key, now) == owner for key in keys]
            renewed = [(now + ttl, key) for key, ours in zip(keys, held, strict=True) if ours]
            db.executemany("UPDATE coordination SET expires = ? WHERE key = ?", renewed)
            return held

        return self._run(renew) if keys else []

    def release(self, key: str, owner: str) -> bool:
        return self._run(
            lambda db, now: (
                db.execute("DELETE FROM coordination WHERE key = ? AND value = ?", (key, owner)).rowcount > 0
            )
        )

    def delete(self, key: str) -> None:
        self._run(lambda db, now: db.execute("DELETE FROM coordination WHERE key = ?", (key,)))

    def clear(self) -> None:
        """Forget everything (tests: the file is theirs alone)."""
        self._run(lambda db, now: db.execute("DELETE FROM coordination"))


# Lua: act on the lock only while it is still ours.
_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
_TAKE_OVER = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3]) end "
    "return false"
)


class RedisCoordination:
    """Redis keys under a prefix; with short socket time-outs so a hung Redis cannot hang a caller."""

    def __init__(self, url: str, *, prefix: str, timeout: float = 1.0):
        import redis

        self._errors = (redis.RedisError, OSError)
        self.prefix = f"{prefix}:coordination:"
        self.client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True
        )
        self._renew = self.client.register_script(_RENEW)
        self._release = self.client.register_script(_RELEASE)
        self._take_over = self.client.register_script(_TAKE_OVER)

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except self._errors as exc:
            raise CoordinationError(f"coordination store (Redis): {exc}") from exc

    def get(self, key: str) -> str | None:
        return self._call(self.client.get, self.prefix + key)

    def get_many(self, keys: list[str]) -> list[str | None]:
        return self._call(self.client.mget, [self.prefix + k for k in keys]) if keys else []

    def set(self, key: str, value: str) -> None:
        self._call(self.client.set, self.prefix + key, value)

    def add(self, key: str, value: str) -> bool:
        return bool(self._call(self.client.set, self.prefix + key, value, nx=True))

    def acquire(self, key: str, owner: str, ttl: float) -> bool:
        name, ms = self.prefix + key, max(1, int(ttl * 1000))
        if self._call(self.client.set, name, owner, nx=True, px=ms):
            return True
        holder = self._call(self.client.get, name)
        if holder == owner:
            return bool(self._call(self._renew, keys=[name], args=[owner, ms]))
        if holder is not None and owner_is_dead(holder):
            return bool(self._call(self._take_over, keys=[name], args=[holder, owner, ms]))
        if holder is None:  # expired between the two calls
            return bool(self._call(self.client.set, name, owner, nx=True, px=ms))
        return False

    def renew(self, key: str, owner: str, ttl: float) -> bool:
        return bool(self._call(self._renew, keys=[self.prefix + key], args=[owner, max(1, int(ttl * 1000))]))

    def renew_many(self, keys: list[str], owner: str, ttl: float) -> list[bool]:
        if not keys:
            return []
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            self._renew(keys=[self.prefix + key], args=[owner, max(1, int(ttl * 1000))], client=pipe)
        return [bool(r) for r in self._call(pipe.execute)]

    def release(self, key: str, owner: str) -> bool:
        return bool(self._call(self._release, keys=[self.prefix + key], args=[owner]))

    def delete(self, key: str) -> None:
        self._call(self.client.delete, self.prefix + key)

    def clear(self) -> None:
        """Forget every key of this prefix (tests: nothing else is touched)."""
        keys = list(self._call(self.client.scan_iter, match=self.prefix + "*", count=500))
        if keys:
            self._call(self.client.delete, *keys)


_store_lock = threading.Lock()
_stores: dict[tuple, SqliteCoordination | RedisCoordination] = {}


def store() -> SqliteCoordination | RedisCoordination:
    """The configured store (Redis with ``REDIS_URL``, else the SQLite file in the data directory)."""
    if settings.REDIS_URL:
        key = ("redis", settings.REDIS_URL, settings.MICBOARD_KEY_PREFIX)
    else:
        key = ("sqlite", str(settings.DATA_DIR / "coordination.sqlite3"))
    found = _stores.get(key)
    if found is None:
        with _store_lock:
            found = _stores.get(key)
            if found is None:
                if key[0] == "redis":
                    found = RedisCoordination(settings.REDIS_URL, prefix=settings.MICBOARD_KEY_PREFIX)
                else:
                    found = SqliteCoordination(key[1])
                _stores[key] = found
    return found
