"""Discovery runs against simulated devices on loopback: scan, announcements, review, moved devices, cancel.

Every device sits on an address of its own in 127.0.66.0/24 (one per rig entry, as at a venue) on one free
port, which the scan probes instead of 2202; announcements go to free ports on the loopback interface.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from micboard.drivers.probes import Found
from micboard.exceptions import ConfigurationError, DiscoveryError
from micboard.models import Channel, DiscoveredDevice, DiscoveryTask, Receiver
from micboard.services import DeviceService, DiscoveryService
from micboard.simulators.announce import Announcer, AnnouncerThread, announcements_for
from micboard.simulators.rig import DEMO_RIG, rig_device
from tasks.discovery import ScanPlan, plan_for, scan
from tests.factories import start_rig_at, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

NET = "127.0.66"
KEYS = [d.key for d in DEMO_RIG if d.driver == "shure_tcp"]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def rig():
    sim, port = start_rig_at(KEYS, network=NET)
    yield sim, port
    sim.stop()


@pytest.fixture
def announced(rig):
    """The rig's SLP announcements on a free port of the loopback interface, every 0.2 s."""
    sim, _port = rig
    shure, ssc = announcements_for(sim.hub.devices.values())
    announcer = Announcer(shure=shure, ssc=ssc, slp_port=free_udp_port(), mdns_port=free_udp_port(), every=0.2)
    with AnnouncerThread(announcer):
        yield announcer


def plan(task: DiscoveryTask, port: int, announcer: Announcer | None = None, **changes) -> ScanPlan:
    values = {
        "addresses": tuple(DiscoveryService.addresses(scope=task.scope)),
        "families": tuple(task.families),
        "ports": {"shure_tcp": port},
        "listen_seconds": 0.8 if announcer else 0.0,
        "slp_port": announcer.slp_port if announcer else 1,
        "mdns_port": announcer.mdns_port if announcer else 1,
        "concurrency": 16,
        "timeout": 1.0,
    }
    values.update(changes)
    return ScanPlan(**values)


def run(scope: str, port: int, announcer=None, **changes) -> DiscoveryTask:
    task = DiscoveryService.request_discovery(scope=scope, families=["shure_tcp"], listen=announcer is not None)
    scan(task.pk, plan=plan(task, port, announcer, **changes))
    task.refresh_from_db()
    return task


def test_a_scan_of_the_range_finds_every_device_with_its_model_and_channels(rig):
    _sim, port = rig
    task = run(f"{NET}.0/27", port)
    assert task.status == DiscoveryTask.Status.DONE
    assert (task.probes_done, task.probes_total, task.devices_found) == (30, 30, len(KEYS))
    found = {d.device_id: d for d in task.devices.all()}
    for key in KEYS:
        rig_entry = rig_device(key)
        device = found[rig_entry.device_id]
        assert (device.host, device.port, device.driver) == (f"{NET}.{rig_entry.octet}", port, "shure_tcp")
        assert device.channels == [[n, c.name] for n, c in enumerate(rig_entry.channels, start=1)]
        assert (device.state, device.source, device.outcome) == ("new", "scan", "")
        assert device.model == rig_entry.model


def test_announced_devices_are_found_even_outside_the_range_and_say_how(rig, announced):
    _sim, port = rig
    task = run(f"{NET}.11/32", port, announced)  # only the ULX-D's address is scanned
    sources = {d.device_id: d.source for d in task.devices.all()}
    assert sources == {rig_device(k).device_id: "SLP" for k in KEYS}
    assert task.probes_total == len(KEYS)  # the scanned address was heard too: probed once


def test_a_silent_announced_device_is_a_note_not_a_find(rig, announced):
    sim, port = rig
    sim.set_fault("slxd", "silent")
    try:
        task = run(f"{NET}.11/32", port, announced, timeout=0.4)
    finally:
        sim.set_fault("slxd", None)
    assert rig_device("slxd").device_id not in {d.device_id for d in task.devices.all()}
    assert any(
        note.startswith(f"{NET}.14 announced itself (SLP as SLXD4D) but did not answer on port {port}: ")
        and "enable third-party control" in note
        for note in task.notes
    ), task.notes


def test_review_adds_the_receiver_with_its_channels_once(rig):
    _sim, port = rig
    task = run(f"{NET}.12/32", port)
    (device,) = task.devices.all()
    receiver = DiscoveryService.add_device(device=device, name="Axient Cast")
    assert (receiver.name, receiver.model, receiver.host, receiver.port) == ("Axient Cast", "AD4Q", f"{NET}.12", port)
    assert receiver.device_id == rig_device("ad").device_id
    names = list(Channel.objects.filter(receiver=receiver).order_by("number").values_list("name", flat=True))
    assert names == [c.name for c in rig_device("ad").channels]
    device.refresh_from_db()
    assert (device.outcome, device.receiver) == ("added", receiver)
    with pytest.raises(DiscoveryError, match="added before"):
        DiscoveryService.add_device(device=device)
    again = run(f"{NET}.12/32", port).devices.get()
    assert (again.state, again.receiver) == ("known", receiver)
    with pytest.raises(DiscoveryError, match="is “Axient Cast” already: nothing to add"):
        DiscoveryService.add_device(device=again)
    assert Receiver.objects.count() == 1


def test_a_receiver_found_at_another_address_is_moved_and_its_address_updated(rig):
    _sim, port = rig
    ulxd = rig_device("ulxd")
    old = DeviceService.create_receiver(
        name="ULX-D Band", model="ULXD4Q", host=f"{NET}.200", port=port, device_id=ulxd.device_id
    )
    device = run(f"{NET}.11/32", port).devices.get()
    assert (device.state, device.receiver, device.previous_address) == ("moved", old, f"{NET}.200:{port}")
    with pytest.raises(DiscoveryError, match="update its address instead"):
        DiscoveryService.add_device(device=device)
    moved = DiscoveryService.update_address(device=device)
    assert (moved.pk, moved.host, moved.port) == (old.pk, f"{NET}.11", port)
    device.refresh_from_db()
    assert device.outcome == "updated"
    assert run(f"{NET}.11/32", port).devices.get().state == "known"


def test_adding_a_device_at_an_address_another_receiver_has_is_refused_by_the_host_checks(rig):
    _sim, port = rig
    DeviceService.create_receiver(name="Typed by hand", model="QLXD4", host=f"{NET}.13", port=port)  # no id yet
    device = run(f"{NET}.13/32", port).devices.get()
    assert device.state == "new"  # never matched by address
    with pytest.raises(ConfigurationError, match="is the same device as “Typed by hand”"):
        DiscoveryService.add_device(device=device)
    device.refresh_from_db()
    assert device.outcome == ""


def test_cancel_stops_a_scan_between_probes(rig):
    sim, port = rig
    for key in KEYS:
        sim.set_fault(key, "silent")  # every probe waits its whole time-out
    try:
        task = DiscoveryService.request_discovery(scope=f"{NET}.0/27", families=["shure_tcp"], listen=False)
        slow = plan(task, port, concurrency=1, timeout=0.5)
        thread = threading.Thread(target=scan, args=(task.pk,), kwargs={"plan": slow}, daemon=True)
        thread.start()
        wait_for(lambda: DiscoveryTask.objects.get(pk=task.pk).probes_done >= 1, 10, "probe an address")
        assert DiscoveryService.cancel(task=DiscoveryTask.objects.get(pk=task.pk))
        asked = time.monotonic()
        thread.join(10)
        stopped = time.monotonic() - asked
    finally:
        for key in KEYS:
            sim.set_fault(key, None)
    task.refresh_from_db()
    assert task.status == DiscoveryTask.Status.CANCELLED
    assert task.probes_done < task.probes_total == 30
    assert stopped < 2.0, f"the scan took {stopped:.1f} s to stop"
    assert not DiscoveryService.cancel(task=task)  # it has ended


def test_a_cancel_before_the_run_starts_means_it_never_probes(rig):
    _sim, port = rig
    task = DiscoveryService.request_discovery(scope=f"{NET}.0/27", families=["shure_tcp"])
    DiscoveryService.cancel(task=task)
    scan(task.pk, plan=plan(task, port))
    task.refresh_from_db()
    assert (task.status, task.probes_done, task.devices.count()) == ("cancelled", 0, 0)


def test_a_stored_run_is_planned_from_the_settings(settings):
    settings.MICBOARD_DISCOVERY_PORTS = {"shure_tcp": 12202}
    settings.MICBOARD_DISCOVERY_LISTEN_SECONDS = 2.5
    task = DiscoveryService.request_discovery(scope="127.0.66.0/30", families=["shure_tcp"], listen=True)
    stored = plan_for(task)
    assert stored.addresses == ("127.0.66.1", "127.0.66.2")
    assert (stored.ports, stored.listen_seconds, stored.interface, stored.ttl) == (
        {"shure_tcp": 12202},
        2.5,
        "127.0.0.1",
        0,
    )
    with pytest.raises(DiscoveryError, match="Cannot scan for nope"):
        DiscoveryService.request_discovery(scope="127.0.66.0/30", families=["nope"])
    assert DiscoveredDevice.objects.count() == 0


def test_what_a_device_says_is_stored_without_control_characters_and_cut_to_its_column():
    task = DiscoveryService.request_discovery(scope=f"{NET}.0/30", families=["shure_tcp"], listen=False)
    found = Found(
        driver="shure_tcp", model="ULXD4", host=f"{NET}.1", port=2202, device_id="RACK\x00A", name="N" * 300,
        channels=((1, "Vox\x00 1"),),
    )  # fmt: skip
    row = DiscoveryService.record_found(task_id=task.pk, found=found, source="scan")
    DiscoveryService.add_notes(task_id=task.pk, notes=["said \x00nothing"])
    row.refresh_from_db()
    task.refresh_from_db()
    assert (row.device_id, len(row.name), row.channels) == ("RACKA", 100, [[1, "Vox 1"]])
    assert task.notes == ["said nothing"]
