"""End-to-end fixtures: Chromium via Playwright, the live server, the simulator and a poller thread."""

import os
import re
import shutil
import threading
from pathlib import Path

import pytest
from django.db import connections

from tasks.links import LinkHolder
from tests.factories import make_user, receivers_for, start_simulator, use_fast_polls

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parent.parent / "var" / "screenshots"
README_SHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


def screenshot(page, name: str, *, readme: bool = False, **kwargs) -> Path:
    """Save ``var/screenshots/<name>.png`` (a test artefact, git-ignored) and return its path.

    With ``readme=True`` and ``MICBOARD_README_SHOTS=1`` in the environment (``make screenshots``) it
    also replaces the README's picture ``docs/screenshots/<name>.png``; ordinary runs leave the
    committed pictures alone.
    """
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), **kwargs)
    if readme and os.environ.get("MICBOARD_README_SHOTS") == "1":
        README_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, README_SHOTS / f"{name}.png")
    return path
PASSWORD = "e2e-pass-123"


def pytest_collection_modifyitems(items):
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


# Module scope: pytest-django runs live-server tests after the others, and Playwright's event loop
# must be gone before any later test calls asyncio.run().
@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (make test does it as root)")
    # Playwright's sync API runs an event loop in this thread while the browser lives; the ORM calls
    # of these tests (and the database flush after each) are still synchronous.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-component-update"],
            )
            yield browser
            browser.close()
    finally:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # Console errors: CSP violations ("Refused to ..."), resources that failed to load, script errors.
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    yield page
    context.close()
    allowed = _ALLOWED_CONSOLE.pop(id(page), ())
    unexpected = [e for e in errors if not any(re.search(pattern, e) for pattern in allowed)]
    assert not unexpected, f"JavaScript, CSP or console errors on the page: {unexpected}"


_ALLOWED_CONSOLE: dict[int, tuple[str, ...]] = {}


def allow_console_errors(page, *patterns: str) -> None:
    """A test that provokes failed requests on purpose (a refused or aborted refresh) names them here.

    Chromium logs every failed request on the console; anything else still fails the test, CSP
    violations included (a pattern never matches "Refused to").
    """
    assert not any("Refused" in p for p in patterns)
    _ALLOWED_CONSOLE[id(page)] = _ALLOWED_CONSOLE.get(id(page), ()) + patterns


@pytest.fixture
def e2e_settings(settings):
    use_fast_polls(settings, interval=0.5)
    settings.MICBOARD_POLL_TIMEOUT = 1.5
    return settings


@pytest.fixture
def simulator():
    sim = start_simulator(["ulxd", "ad"])
    yield sim
    sim.stop()


@pytest.fixture
def rig(transactional_db, simulator):
    return receivers_for(simulator, ["ulxd", "ad"])


class PollerThread(threading.Thread):
    """Drives a real link holder, as a consumer's Huey shift does (links follow the simulator live)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.holder = LinkHolder()
        self.halt = threading.Event()

    def run(self):
        assert self.holder.begin()
        try:
            self.holder.drive(seconds=3600, stop=self.halt)
        finally:
            self.holder.end()
            connections.close_all()

    def stop(self):
        self.halt.set()
        self.join(timeout=10)
        self.holder.close()


@pytest.fixture
def poller(rig, e2e_settings, caplog):
    thread = PollerThread()
    thread.start()
    yield thread
    thread.stop()
    failures = [r.getMessage() for r in caplog.records if r.name == "tasks.links" and r.levelname == "ERROR"]
    assert not failures, failures


@pytest.fixture
def logged_in(page, live_server, transactional_db):
    make_user("crew", role="viewer", password=PASSWORD)  # the board needs a role (web/access.py)
    page.goto(f"{live_server.url}/")
    page.fill("input[name=username]", "crew")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_selector("#board-grid")
    return page
