"""The live sections of ``make bench``: the link holder's CPU, device change to Chromium, and load.

Kept apart from ``benchmark.py`` (the poll cycle and board-render figures) because these run the
product as it runs in a show: a :class:`~tasks.links.LinkHolder` following the simulated receivers,
and for the browser and load figures a web server in a process of its own.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Sequence

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
_LIVE_JS = (
    f"([pk]) => {{ const t = {_TILE}; return !!t && ['GOOD', 'REPLACE', 'CRITICAL'].includes(t.dataset.status); }}"
)
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
                """Make the change, then wait for the page to show it; seconds from before the request."""
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
                name = f"T{n:03d}C{number}"
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
