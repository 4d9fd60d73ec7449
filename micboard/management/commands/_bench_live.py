"""The live sections of ``make bench``: the link holder's CPU, device change to Chromium, and load.

Kept apart from ``benchmark.py`` (the poll cycle and board-render figures) because these run the
product as it runs in a show: a :class:`~tasks.links.LinkHolder` following the simulated receivers,
and for the browser and load figures a web server in a process of its own.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx
from django.conf import settings
from django.core.management.base import CommandError
from django.db import connections

from micboard.services import PollOutcome
from tasks.links import LinkHolder


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def p95(values: Sequence[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]


class DrivenHolder:
    """A LinkHolder driven from a thread of this process, as a consumer's Huey shift drives one."""

    def __init__(self) -> None:
        self.flush_seconds: list[float] = []
        self.outcomes = 0
        self.errors = 0
        self.holder = LinkHolder(on_flush=self._flushed)
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bench-holder", daemon=True)

    def _flushed(self, outcomes: list[PollOutcome], seconds: float) -> None:
        self.flush_seconds.append(seconds)
        self.outcomes += len(outcomes)
        self.errors += sum(1 for o in outcomes if o.error)

    def _run(self) -> None:
        if not self.holder.begin():
            return
        try:
            self.holder.drive(seconds=24 * 3600, stop=self.halt)
        finally:
            self.holder.end()
            connections.close_all()

    def start(self) -> DrivenHolder:
        self.thread.start()
        return self

    def reset(self) -> None:
        self.flush_seconds.clear()
        self.outcomes = self.errors = 0

    def stop(self) -> None:
        self.halt.set()
        self.thread.join(30)
        self.holder.close()


def all_held(receiver_ids: list[int]) -> bool:
    """Whether a link holder (the served consumer's) holds every one of these receivers."""
    from micboard import coordination
    from tasks.links import LEASE_PREFIX

    return all(coordination.store().get_many([LEASE_PREFIX + str(rid) for rid in receiver_ids]))


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"did not {what} within {timeout:g} s")
        time.sleep(0.05)


def link_figures(holder: DrivenHolder, *, receivers: int, seconds: float) -> dict[str, float]:
    """CPU of this process per second of show while ``holder`` follows ``receivers`` receivers.

    The simulator runs in another process and nothing else runs here meanwhile, so the process's CPU
    time is the holder's: its event loop (parsing every REPORT and SAMPLE) and its driving thread
    (snapshots, database writes, leases, heartbeat, statuses).
    """
    wait_until(lambda: len(holder.holder.held) >= receivers, 30, f"hold {receivers} receivers")
    time.sleep(2.0)  # every link past its GET 0 ALL and first writes
    holder.reset()
    cpu, wall = time.process_time(), time.monotonic()
    time.sleep(seconds)
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    flushes = list(holder.flush_seconds)
    return {
        "cpu_ms_per_s": 1000 * cpu / wall,
        "flush_p50_ms": 1000 * median(flushes),
        "flush_p95_ms": 1000 * p95(flushes),
        "flushes_per_s": len(flushes) / wall,
        "readings_per_s": holder.outcomes / wall,
        "errors": holder.errors,
    }


# --- device change -> visible in Chromium ---------------------------------------------------------------

EVENTS = ("pack off", "power off", "name change", "RF loss")
_TILE = "document.querySelector(`article.tile[data-channel-id=\"${pk}\"]`)"
_STATUS_JS = f"([pk, prefix]) => {{ const t = {_TILE}; return !!t && (t.dataset.status || '').startsWith(prefix); }}"
_LIVE = "['GOOD', 'REPLACE', 'CRITICAL', 'AUDIO_PEAK', 'BATTERY_UNKNOWN']"  # a pack switched on, receiver online
_LIVE_JS = f"([pk]) => {{ const t = {_TILE}; return !!t && {_LIVE}.includes(t.dataset.status); }}"
_TEXT_JS = f"([pk, text]) => {{ const t = {_TILE}; return !!t && t.textContent.includes(text); }}"
_RF_ZERO_JS = (
    f"([pk]) => {{ const t = {_TILE}; const m = t && t.querySelector('.meter-rf');"
    " return !!m && m.getAttribute('aria-valuenow') === '0'; }"
)
_CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-dev-shm-usage"]


def device_to_screen(
    *,
    base_url: str,
    username: str,
    password: str,
    control: Callable[[dict], dict],
    tiles: dict[tuple[str, int], int],
    trials: int,
    timeout: float = 10.0,
) -> dict[str, list[float]]:
    """Seconds from a change made in the simulator to the board in Chromium showing it, per event.

    Args:
        base_url: the web server (loopback).
        control: sends one simulator control request (the simulator's JSON-lines control server).
        tiles: (device key, channel) -> the channel's pk (its tile is ``[data-channel-id=pk]``), for the
            receivers that take part; each trial uses the next one in turn.
        trials: changes per event.
    Returns:
        The delays of each event, in seconds (a change not shown within ``timeout`` counts as ``timeout``).
    """
    from playwright.sync_api import sync_playwright

    delays: dict[str, list[float]] = {event: [] for event in EVENTS}
    jitter = random.Random()  # timing jitter and names, not security
    run = f"{jitter.randrange(256):02x}"
    order = list(tiles.items())
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=_CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
            page.goto(f"{base_url}/accounts/login/?next=/")
            page.fill("input[name=username]", username)
            page.fill("input[name=password]", password)
            page.click("button[type=submit], input[type=submit]")
            page.wait_for_selector("#board-grid article.tile", timeout=timeout * 1000)

            def change(request: dict, condition: str, arg) -> float:
                """Make the change, then wait for the page to show it; seconds from before the request.

                A change waits a random part of a second first: in a show, changes come at any moment of
                the refresh cycle, not right after the swap that showed the previous one.
                """
                time.sleep(jitter.uniform(0.0, 1.0))
                started = time.monotonic()
                control(request)
                try:
                    page.wait_for_function(condition, arg=arg, polling="raf", timeout=timeout * 1000)
                except Exception:  # a Playwright time-out: counted as the whole time-out, never hidden
                    return timeout
                return time.monotonic() - started

            def settle(pk: int, wait: float = timeout) -> None:
                """Wait for the tile to show its pack live again (a battery status) before the next change."""
                page.wait_for_function(_LIVE_JS, arg=[pk], timeout=wait * 1000)

            for n in range(trials):
                (key, number), pk = order[n % len(order)]
                settle(pk)
                off = {"device": key, "action": "pack_off", "channel": number}
                delays["pack off"].append(change(off, _STATUS_JS, [pk, "PREV"]))
                control({"device": key, "action": "pack_on", "channel": number})
                settle(pk)
                name = f"{run}{n:02d}C{number}"  # new on every trial of every run (names stay on the device)
                rename = {"device": key, "action": "set_name", "channel": number, "name": name}
                delays["name change"].append(change(rename, _TEXT_JS, [pk, name]))
                lost = {"device": key, "action": "rf_loss", "channel": number, "on": True}
                delays["RF loss"].append(change(lost, _RF_ZERO_JS, [pk]))
                control({"device": key, "action": "rf_loss", "channel": number, "on": False})
                power = {"device": key, "action": "power_off"}
                delays["power off"].append(change(power, _STATUS_JS, [pk, "RX_COM_ERROR"]))
                control({"device": key, "action": "power_on"})
                settle(pk, 3 * timeout)
        finally:
            browser.close()
    return delays


def latency_line(channels: int, refresh: float, delays: dict[str, list[float]]) -> str:
    """One row: channels, refresh interval, p50/p95 per event, and p95 over every change."""
    every = [d for values in delays.values() for d in values]
    cells = "  ".join(f"{event} {median(v):.2f}/{p95(v):.2f}" for event, v in delays.items())
    return f"  {channels:>4} ch  refresh {refresh:g} s  {cells}  all p95 {p95(every):.2f} s ({len(every)} changes)"


SERVED_NOTES = """\
  latency: seconds from the simulator's change (pack off, receiver power off, channel renamed, pack out of RF
    range) to Chromium showing it on the board, median/p95 per kind; targets: all p95 <= 1.5 s at a 1 s refresh,
    <= 1.0 s at 0.5 s. The path: the receiver's REPORT or SAMPLE, the consumer's link, a flush (<= 0.25 s),
    the board version, the next refresh (changed tiles only), the swap.
  load: manage.py loadtest, each screen its own viewer session refreshing like board.js (If-None-Match and
    snapshot id); targets: 0 errors, p95 <= 100 ms; RSS of the server's processes sampled over the run"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code in (200, 503)
    except httpx.TransportError:
        return False


@contextlib.contextmanager
def served(*, env: dict[str, str]) -> Iterator[str]:
    """``manage.py serve`` (gunicorn with 2 workers and the Huey consumer) over this run's database.

    On a free loopback port, with ``env`` added to this process's environment; stopped with SIGTERM (the
    supervisor stops gunicorn and the consumer, whose holder closes its links) when the block ends.
    Yields the server's base URL.
    """
    port = _free_port()
    manage = str(settings.BASE_DIR / "manage.py")
    full_env = {k: v for k, v in os.environ.items() if k != "PYTEST_VERSION"} | env
    with tempfile.TemporaryDirectory(prefix="micboard-served-") as tmp:
        log_path = Path(tmp) / "serve.log"
        with open(log_path, "w") as log:
            server = subprocess.Popen(  # noqa: S603 (our own argv)
                [sys.executable, manage, "serve", "--port", str(port), "--workers", "2"],
                env=full_env, stdout=log, stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + 90
            while not _answers(f"http://127.0.0.1:{port}/healthz"):
                if server.poll() is not None or time.monotonic() > deadline:
                    tail = log_path.read_text().strip().splitlines()[-3:] or ["no output"]
                    raise CommandError("manage.py serve did not start: " + " | ".join(tail))
                time.sleep(0.2)
            yield f"http://127.0.0.1:{port}"
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def load(url: str, *, seconds: float, screens: int) -> list[str]:
    """The lines ``manage.py loadtest`` prints against ``url`` (its RSS of the server's processes included)."""
    manage = str(settings.BASE_DIR / "manage.py")
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_VERSION"}
    done = subprocess.run(  # noqa: S603 (our own argv)
        [sys.executable, manage, "loadtest", "--url", url, "--screens", str(screens), "--seconds", str(seconds),
         "--rss-every", "10"],
        env=env, capture_output=True, text=True, check=False,
    )
    lines = done.stdout.splitlines()
    if done.returncode:
        lines.append(f"loadtest failed: {done.stderr.strip()[-300:]}")
    return lines
