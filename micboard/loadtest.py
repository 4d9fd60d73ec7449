"""A bounded load client for the board refresh (``manage.py loadtest``, ``make bench``'s load figure).

N simulated screens, each signed in as a viewer with a session of its own, refresh the board's grid as
board.js does: once per interval, with htmx's headers and ``If-None-Match`` set to the ETag of the copy
they hold (a 304 keeps it, a 200 replaces it). Screens are spread evenly over the interval, as screens
switched on at different times are. The client aims only at loopback (127.0.0.0/8, ::1, localhost),
stops by itself after at most ``MAX_SECONDS``, and reports requests, errors by status, latency
percentiles, 200 vs 304 and bytes. ``RssSampler`` follows the resident memory of the server's processes
(gunicorn's master and workers, the Huey consumer) from /proc while it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import ipaddress
import math
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import import_module
from urllib.parse import urlencode, urlsplit

import httpx

from micboard.exceptions import LoadTestError
from micboard.procfs import command_line, descendants, parent, port_holder, rss_kb

_META = re.compile(r'<div id="board-meta"[^>]*>')  # what board.js reads: templates/micboard/board.html#meta
_ATTR_ETAG = re.compile(r'data-etag="([^"]*)"')
_ATTR_STATE = re.compile(r'data-state="([^"]*)"')
MAX_SCREENS = 1000
MAX_SECONDS = 3600.0
REQUEST_TIMEOUT = 10.0  # htmx's time-out on the board (base.html's htmx-config)


def loopback_url(url: str) -> str:
    """``url`` without a trailing slash, or LoadTestError when its host is not on this machine's loopback."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LoadTestError(f"{url!r} is not an http(s) URL")
    host = parts.hostname
    if host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise LoadTestError(f"refusing {host}: the load client aims only at loopback (127.0.0.0/8, ::1, localhost)")
    return url.rstrip("/")


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0-100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@dataclass
class LoadResult:
    """What the screens saw: one latency per answered refresh, answers by status, failures by kind."""

    screens: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)  # transport errors by exception name, HX-Redirect
    body_bytes: int = 0  # uncompressed
    wire_bytes: int = 0  # as sent (gzip: the grid is compressed for clients that accept it, as browsers do)
    late: int = 0  # refreshes skipped because the screen's previous one was still running

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + sum(self.failures.values())

    @property
    def errors(self) -> Counter:
        """Everything but 200 and 304, by status (or exception name)."""
        errors = Counter({str(s): n for s, n in self.statuses.items() if s not in (200, 304)})
        errors.update(self.failures)
        return errors

    def lines(self) -> list[str]:
        errors = self.errors
        rate = self.requests / self.seconds if self.seconds else 0.0
        by_kind = ", ".join(f"{kind}: {n}" for kind, n in sorted(errors.items())) or "none"
        ms = self.latencies_ms
        return [
            f"screens {self.screens}, {self.seconds:.0f} s, {self.requests} refreshes ({rate:.1f}/s)",
            f"errors {sum(errors.values())} ({by_kind}); late (skipped) {self.late}",
            f"200 {self.statuses.get(200, 0)}, 304 {self.statuses.get(304, 0)}; "
            f"body bytes {self.body_bytes} ({self.body_bytes / max(1, self.requests):.0f} per refresh), "
            f"sent {self.wire_bytes} ({self.wire_bytes / max(1, self.requests):.0f} per refresh, gzip)",
            f"latency ms p50 {percentile(ms, 50):.1f}, p95 {percentile(ms, 95):.1f}, "
            f"p99 {percentile(ms, 99):.1f}, max {max(ms) if ms else math.nan:.1f}",
        ]


class _Screen:
    """One board screen: its own connection and session cookie, and the ETag of the copy it holds."""

    def __init__(self, base: str, session_cookie: tuple[str, str], group: str) -> None:
        self.client = httpx.AsyncClient(  # one keep-alive connection per screen, as a browser tab holds
            base_url=base, timeout=REQUEST_TIMEOUT, headers={"Cookie": "=".join(session_cookie)},
            limits=httpx.Limits(max_connections=1), follow_redirects=False,
        )
        self.page = f"{base}/" + (f"?{urlencode({'group': group})}" if group else "")
        self.grid = "/board/grid/" + (f"?{urlencode({'group': group})}" if group else "")
        self.etag = ""
        self.state = ""  # the snapshot id of the tiles this screen shows (the server sends only changes since)

    async def refresh(self, result: LoadResult) -> None:
        headers = {"HX-Request": "true", "HX-Current-URL": self.page, "HX-Target": "board-grid",
                   "HX-Trigger": "board-grid"}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.state:
            headers["X-Board-State"] = self.state
        start = time.perf_counter()
        try:
            response = await self.client.get(self.grid, headers=headers)
        except httpx.HTTPError as exc:
            result.failures[type(exc).__name__] += 1
            return
        result.latencies_ms.append((time.perf_counter() - start) * 1000)
        if "HX-Redirect" in response.headers:  # htmx's way of sending a signed-out screen to the login page
            result.failures["HX-Redirect"] += 1
            return
        result.statuses[response.status_code] += 1
        result.body_bytes += len(response.content)
        result.wire_bytes += response.num_bytes_downloaded
        if response.status_code == 200:  # what board.js keeps: the ETag and snapshot id of #board-meta
            tag = _META.search(response.text)
            etag = _ATTR_ETAG.search(tag[0]) if tag else None
            state = _ATTR_STATE.search(tag[0]) if tag else None
            self.etag = html.unescape(etag[1]) if etag else response.headers.get("ETag", "")
            self.state = html.unescape(state[1]) if state else ""


async def _run_screen(screen: _Screen, result: LoadResult, *, first: float, interval: float, end: float) -> None:
    due = first
    while due < end:
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        await screen.refresh(result)
        due += interval
        now = time.monotonic()
        if now > due:  # the refresh took longer than the interval: like htmx, skip the missed ticks
            missed = math.ceil((now - due) / interval)
            result.late += missed
            due += missed * interval


async def _load(base: str, cookies: list[tuple[str, str]], *, seconds: float, interval: float, group: str):
    result = LoadResult(screens=len(cookies), seconds=seconds)
    screens = [_Screen(base, cookie, group) for cookie in cookies]
    start = time.monotonic()
    end = start + seconds
    try:
        await asyncio.gather(*(
            _run_screen(screen, result, first=start + interval * i / len(screens), interval=interval, end=end)
            for i, screen in enumerate(screens)
        ))
    finally:
        await asyncio.gather(*(screen.client.aclose() for screen in screens), return_exceptions=True)
    result.seconds = time.monotonic() - start
    return result


def run_load(
    url: str, session_cookies: list[tuple[str, str]], *, seconds: float = 300.0, interval: float = 1.0, group: str = ""
) -> LoadResult:
    """Refresh the board grid at ``url`` (loopback only) from one screen per session cookie, for ``seconds``."""
    base = loopback_url(url)
    if not 1 <= len(session_cookies) <= MAX_SCREENS:
        raise LoadTestError(f"screens must be between 1 and {MAX_SCREENS}, got {len(session_cookies)}")
    if not 0 < seconds <= MAX_SECONDS:
        raise LoadTestError(f"the duration must be above 0 and at most {MAX_SECONDS:g} s, got {seconds:g}")
    if not 0.1 <= interval <= 60:
        raise LoadTestError(f"the interval must be between 0.1 and 60 s, got {interval:g}")
    return asyncio.run(_load(base, session_cookies, seconds=seconds, interval=interval, group=group))


@contextlib.contextmanager
def viewer_sessions(count: int) -> Iterator[list[tuple[str, str]]]:
    """A throwaway viewer with ``count`` sessions of its own, as (cookie name, value); all removed afterwards.

    The sessions are made in the session store the server reads (run in the server's environment), so
    screens skip the login form: its password hashing would be measured instead of the board.
    """
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model

    from micboard.services import RoleService
    from micboard.services.roles import VIEWER

    if not 1 <= count <= MAX_SCREENS:
        raise LoadTestError(f"screens must be between 1 and {MAX_SCREENS}, got {count}")
    store = import_module(settings.SESSION_ENGINE).SessionStore
    user = get_user_model().objects.create_user(f"loadtest-{uuid.uuid4().hex[:12]}", password=None)
    keys: list[str] = []
    try:
        RoleService.grant(user=user, role=VIEWER)
        for _ in range(count):
            session = store()
            session[SESSION_KEY] = user._meta.pk.value_to_string(user)
            session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
            session[HASH_SESSION_KEY] = user.get_session_auth_hash()
            session.save()
            keys.append(session.session_key)
        yield [(settings.SESSION_COOKIE_NAME, key) for key in keys]
    finally:
        for key in keys:
            store(session_key=key).delete()
        user.delete()


def server_root(port: int) -> int | None:
    """The pid whose process tree is the server on ``port``: ``manage.py serve``'s supervisor when it runs one."""
    holder = port_holder(port)
    if holder is None:
        return None
    above = parent(holder.pid)
    if above and " serve" in command_line(above) and "manage.py" in command_line(above):
        return above
    return holder.pid


def role_of(pid: int, root: int) -> str:
    command = command_line(pid)
    if "gunicorn" in command:
        return "web worker" if "gunicorn" in command_line(parent(pid) or 0) else "web master"
    for needle, role in (("run_huey", "consumer"), ("simulate", "simulator"), (" serve", "supervisor")):
        if needle in command:
            return role
    return "server" if pid == root else "other"


@dataclass
class RssTrack:
    role: str
    first_kb: int
    last_kb: int
    peak_kb: int


class RssSampler(threading.Thread):
    """Samples the resident memory of ``root`` and every process below it every ``every`` seconds."""

    def __init__(self, root: int, *, every: float = 5.0) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.root = root
        self.every = every
        self.tracks: dict[int, RssTrack] = {}
        self.halt = threading.Event()

    def sample(self) -> None:
        for pid in [self.root, *descendants(self.root)]:
            kb = rss_kb(pid)
            if kb is None:
                continue
            track = self.tracks.get(pid)
            if track is None:
                self.tracks[pid] = RssTrack(role_of(pid, self.root), kb, kb, kb)
            else:
                track.last_kb, track.peak_kb = kb, max(track.peak_kb, kb)

    def run(self) -> None:
        while True:
            self.sample()
            if self.halt.wait(self.every):
                return

    def stop(self) -> None:
        self.halt.set()
        self.join()
        self.sample()  # the figure at the end of the run

    def lines(self) -> list[str]:
        return [
            f"{track.role:<11} pid {pid:<7} RSS MB first {track.first_kb / 1024:6.1f}, "
            f"last {track.last_kb / 1024:6.1f}, peak {track.peak_kb / 1024:6.1f}"
            for pid, track in sorted(self.tracks.items(), key=lambda item: (item[1].role, item[0]))
        ]
