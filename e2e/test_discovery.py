"""Discovery in Chromium: the demo rig is found, one receiver is added and goes live, a moved one is recognised.

Every entry of the demo rig runs in the simulator on an address of its own (127.0.68.<its octet>) and one
free port that the scan probes for every family, and announces itself on loopback (TTL 0, free ports).
Scans run in a thread that takes queued discovery tasks as the Huey consumer does; the board follows
receivers through a real link holder (e2e.conftest.PollerThread).
"""

from __future__ import annotations

import re
import socket
import threading

import pytest
from django.db import connections
from playwright.sync_api import expect

from e2e.conftest import PASSWORD, PollerThread, screenshot
from micboard.drivers.probes import PROBES
from micboard.models import DiscoveryTask, Receiver
from micboard.services import DeviceService
from micboard.simulators.announce import Announcer, AnnouncerThread, announcements_for
from micboard.simulators.rig import DEMO_RIG, rig_device
from tasks.discovery import scan
from tests.factories import make_user, start_rig_at

NET = "127.0.68"
SCOPE = f"{NET}.0/27"  # every rig octet (11-16, 21-23) is in it
SCAN_MS = 20_000
LIVE_MS = 6_000


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DiscoveryWorker(threading.Thread):
    """Runs queued discovery tasks one after another, as a Huey consumer does."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.halt = threading.Event()

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                pending = DiscoveryTask.objects.filter(status="pending").order_by("pk").first()
                if pending is None:
                    self.halt.wait(0.2)
                else:
                    scan(pending.pk)
        finally:
            connections.close_all()

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=15)


@pytest.fixture
def demo_rig(transactional_db, e2e_settings):
    sim, port = start_rig_at([d.key for d in DEMO_RIG], network=NET)
    shure, ssc = announcements_for(sim.hub.devices.values())
    announcer = Announcer(shure=shure, ssc=ssc, slp_port=free_udp_port(), mdns_port=free_udp_port(), every=0.5)
    e2e_settings.MICBOARD_DISCOVERY_PORTS = dict.fromkeys(PROBES, port)
    e2e_settings.MICBOARD_DISCOVERY_SLP_PORT = announcer.slp_port
    e2e_settings.MICBOARD_DISCOVERY_MDNS_PORT = announcer.mdns_port
    e2e_settings.MICBOARD_DISCOVERY_LISTEN_SECONDS = 1.5
    e2e_settings.MICBOARD_DISCOVERY_TIMEOUT = 1.0
    worker = DiscoveryWorker()
    with AnnouncerThread(announcer):
        worker.start()
        try:
            yield sim, port
        finally:
            worker.stop()
            sim.stop()


@pytest.fixture
def setup_user(page, live_server):
    make_user("setup", role="admin", password=PASSWORD)
    page.goto(f"{live_server.url}/discovery/")
    page.fill("input[name=username]", "setup")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit], input[type=submit]")
    expect(page.get_by_role("heading", name="Discovery")).to_be_visible()
    return page


def run_scan(page, scope: str, **system_api):
    page.fill("input[name=scope]", scope)
    for field, value in system_api.items():  # api_key, tls_fingerprint: what a System API server asks for
        page.fill(f"input[name={field}]", value)
    page.get_by_role("button", name="Scan").click()
    expect(page.locator("#scan-state")).to_have_text("Done", timeout=SCAN_MS)
    return page.locator("#scan-devices")


def found_row(page, octet: int, port: int):
    return page.locator("#scan-devices tr.found", has_text=f"{NET}.{octet}:{port}")


def test_discovery_finds_the_whole_rig_and_an_added_receiver_goes_live(setup_user, demo_rig, live_server):
    page = setup_user
    sim, port = demo_rig
    server = sim.device("keynote").receiver_options()  # the demo SystemAPI server's key and certificate pin
    run_scan(page, SCOPE, api_key=server["api_key"], tls_fingerprint=server["tls_fingerprint"])
    for entry in DEMO_RIG:
        row = found_row(page, entry.octet, port).filter(has_text=entry.model)  # one server lists several devices
        expect(row).to_have_count(1)
        expect(row).to_contain_text(entry.model)
        expect(row.locator(".badge")).to_have_text("New")
    expect(page.locator("#scan-counts")).to_contain_text(f"{len(DEMO_RIG)} devices found")
    screenshot(page, "discovery", readme=True, full_page=True)

    ulxd = rig_device("ulxd")
    row = found_row(page, ulxd.octet, port)
    expect(row).to_contain_text(" · ".join(f"{n} {c.name}" for n, c in enumerate(ulxd.channels, start=1)))
    row.locator("input[name=name]").fill("ULX-D Band")
    row.get_by_role("button", name="Add").click()
    expect(found_row(page, ulxd.octet, port)).to_contain_text("Added: “ULX-D Band”")
    expect(page.get_by_role("status")).to_contain_text(f"“ULX-D Band” is watched at {NET}.{ulxd.octet}:{port}")

    receiver = Receiver.objects.get(name="ULX-D Band")
    assert (receiver.host, receiver.port, receiver.model) == (f"{NET}.{ulxd.octet}", port, "ULXD4Q")
    poller = PollerThread()
    poller.start()
    try:
        page.goto(f"{live_server.url}/")
        for number, channel in enumerate(ulxd.channels, start=1):
            tile = page.locator(f'article.tile[data-channel-id="{receiver.channels.get(number=number).pk}"]')
            expect(tile).to_contain_text(channel.name, timeout=LIVE_MS)
            battery = tile.get_by_role("img", name=re.compile(r"^Battery \d of 5 bars$"))
            expect(battery).to_be_visible(timeout=LIVE_MS)  # read from the simulator: the tile is live
            expect(tile).not_to_have_attribute("data-status", "RX_COM_ERROR")
    finally:
        poller.stop()


def test_a_receiver_found_at_a_new_address_is_recognised_as_moved(setup_user, demo_rig):
    page = setup_user
    _sim, port = demo_rig
    ad = rig_device("ad")
    DeviceService.create_receiver(
        name="Axient Cast", model=ad.model, host=f"{NET}.200", port=port, device_id=ad.device_id
    )
    run_scan(page, f"{NET}.{ad.octet}/32")
    row = found_row(page, ad.octet, port)
    expect(row.locator(".badge")).to_have_text("Moved")
    expect(row).to_contain_text(f"“Axient Cast” was at {NET}.200:{port}")
    row.get_by_role("button", name="Update the address of Axient Cast").click()
    expect(found_row(page, ad.octet, port)).to_contain_text("Address updated: “Axient Cast”")
    moved = Receiver.objects.get(name="Axient Cast")
    assert (moved.host, moved.port) == (f"{NET}.{ad.octet}", port)
