"""The discovery page: who may use it, starting a scan, live progress, review actions (HTMX and plain)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from huey.contrib.djhuey import HUEY

from micboard.models import DiscoveryTask, Receiver
from micboard.services import DeviceService, DiscoveryService
from micboard.simulators.rig import rig_device
from tasks.discovery import ScanPlan, scan
from tests.factories import make_user, start_rig_at

pytestmark = pytest.mark.django_db

NET = "127.0.67"


@pytest.fixture
def admin(client):
    client.force_login(make_user("setup", role="admin"))
    return client


@pytest.fixture(scope="module")
def rig():
    sim, port = start_rig_at(["ulxd", "ad"], network=NET)
    yield sim, port
    sim.stop()


def scanned(scope: str, port: int) -> DiscoveryTask:
    task = DiscoveryService.request_discovery(scope=scope, families=["shure_tcp"], listen=False)
    plan = ScanPlan(addresses=tuple(DiscoveryService.addresses(scope=scope)), families=("shure_tcp",),
                    ports={"shure_tcp": port}, listen_seconds=0, timeout=1.0)  # fmt: skip
    scan(task.pk, plan=plan)  # as the Huey consumer does
    task.refresh_from_db()
    return task


def test_only_signed_in_setup_users_reach_discovery(client):
    url = reverse("discovery")
    assert client.get(url)["Location"].startswith(reverse("login"))
    client.force_login(make_user("crew", role="operator"))
    assert client.get(url).status_code == 403
    assert client.post(reverse("discovery-start"), {"scope": "127.0.0.0/30"}).status_code == 403
    assert not DiscoveryTask.objects.exists()


def test_a_scan_needs_the_csrf_token():
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(make_user("setup", role="admin"))
    assert strict.post(reverse("discovery-start"), {"scope": "127.0.0.0/30"}).status_code == 403
    assert not DiscoveryTask.objects.exists()


def test_the_form_refuses_a_range_it_cannot_scan(admin):
    response = admin.post(reverse("discovery-start"), {"scope": "10.0.0.0/8", "families": ["shure_tcp"]})
    assert response.status_code == 422
    assert "10.0.0.0/8 has 16777216 addresses; scan at most a /20" in response.content.decode()
    nothing_ticked = admin.post(reverse("discovery-start"), {"scope": "127.0.0.0/30"})
    assert nothing_ticked.status_code == 422
    assert "Tick at least one protocol to look for." in nothing_ticked.content.decode()
    assert not DiscoveryTask.objects.exists()


def test_starting_a_scan_records_it_queues_it_and_opens_its_page(admin, django_capture_on_commit_callbacks):
    HUEY.storage.flush_queue()
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(reverse("discovery-start"), {"scope": "127.0.0.9/29", "families": ["shure_tcp"]})
    task = DiscoveryTask.objects.get()
    assert response["Location"] == reverse("discovery-task", args=[task.pk])
    assert (task.scope, task.families, task.listen, task.status) == ("127.0.0.8/29", ["shure_tcp"], False, "pending")
    queued = [HUEY.deserialize_task(m) for m in HUEY.storage.enqueued_items()]
    assert [(t.name, t.args) for t in queued] == [("run_discovery", (task.pk,))]
    HUEY.storage.flush_queue()  # nothing runs it here: no consumer in this test
    page = admin.get(response["Location"]).content.decode()
    assert 'hx-trigger="every 1s"' in page and "Pending" in page


def test_a_finished_scan_stops_refreshing_and_lists_what_it_found(admin, rig):
    _sim, port = rig
    task = scanned(f"{NET}.8/29", port)  # .9-.14: the ULX-D (.11) and the AD4Q (.12)
    partial = admin.get(reverse("discovery-progress", args=[task.pk]))
    html = partial.content.decode()
    assert partial.status_code == 200 and "hx-trigger" not in html and "<html" not in html
    assert "2 devices found" in html and "6 of 6 probes" in html
    assert "1 Lead Vox · 2 BVox 1 · 3 BVox 2 · 4 Sax" in html
    assert "1 Romeo · 2 Juliet · 3 Nurse · 4 Friar" in html


def test_add_from_the_review_list_creates_the_receiver_and_says_so(admin, rig):
    _sim, port = rig
    task = scanned(f"{NET}.12/32", port)
    device = task.devices.get()
    response = admin.post(reverse("discovery-add", args=[device.pk]), {"name": "Axient Cast"}, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    receiver = Receiver.objects.get()
    assert (receiver.name, receiver.model, receiver.host, receiver.port) == ("Axient Cast", "AD4Q", f"{NET}.12", port)
    assert receiver.channels.count() == len(rig_device("ad").channels)
    assert f"“Axient Cast” is watched at {NET}.12:{port}" in html
    assert "Added" in html and 'action="/discovery/found/' not in html  # no second Add button
    again = admin.post(reverse("discovery-add", args=[device.pk]), {"name": "Twice"}, follow=True)
    assert "added before" in again.content.decode()
    assert Receiver.objects.count() == 1


def test_a_moved_receiver_is_shown_as_moved_and_its_address_updated(admin, rig):
    _sim, port = rig
    old = DeviceService.create_receiver(
        name="ULX-D Band", model="ULXD4Q", host=f"{NET}.111", port=port, device_id=rig_device("ulxd").device_id
    )
    task = scanned(f"{NET}.11/32", port)
    html = admin.get(reverse("discovery-task", args=[task.pk])).content.decode()
    assert "Moved" in html and f"“ULX-D Band” was at {NET}.111:{port}" in html and "Update address" in html
    device = task.devices.get()
    response = admin.post(reverse("discovery-update", args=[device.pk]), follow=True)
    assert f"“ULX-D Band” is watched at {NET}.11:{port}" in response.content.decode()
    old.refresh_from_db()
    assert (old.host, old.port) == (f"{NET}.11", port)


def test_cancel_from_the_page_asks_the_running_scan_to_stop(admin):
    task = DiscoveryService.request_discovery(scope="127.0.0.0/24", families=["shure_tcp"])
    response = admin.post(reverse("discovery-cancel", args=[task.pk]), HTTP_HX_REQUEST="true")
    task.refresh_from_db()
    assert task.cancel_requested
    assert "Stopping…" in response.content.decode()
