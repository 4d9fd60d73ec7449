"""Admin for setup: pages render, actions call the services and say what they did."""

import re
from datetime import timedelta
from html import unescape

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from micboard.exceptions import ChannelRemovalError
from micboard.models import (
    Alert,
    AlertSubscription,
    Assignment,
    AuditEntry,
    Group,
    GroupSlot,
    RealTimeConnection,
    Receiver,
    Show,
    Webhook,
)
from micboard.services import (
    AssignmentService,
    DeviceService,
    DiscoveryService,
    GroupService,
    KioskService,
    LocationService,
    PollOutcome,
)
from micboard.services.notify import NotifyService
from micboard.status import ChannelStatus
from tests.factories import make_receiver, pack_on, reading

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver():
    rx = make_receiver(name="Band Rack", model="ULXD4D")
    DeviceService.record_poll_results(outcomes=[PollOutcome(rx.pk, reading=reading(pack_on(1, bars=2), pack_on(2)))])
    return rx


def action(client, model, name, ids, follow=True):
    url = reverse(f"admin:micboard_{model}_changelist")
    return client.post(url, {"action": name, "_selected_action": [str(i) for i in ids]}, follow=follow)


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


@pytest.fixture
def rig(receiver):
    """One object of every kind the admin lists, around the fixture's receiver."""
    LocationService.move_receivers(receivers=[receiver], location=LocationService.create_location(name="Stage Left"))
    AssignmentService.assign(channel=receiver.channels.get(number=1), performer="Maya")
    GroupService.set_tiles(name="Band", channels=[receiver.channels.get(number=1), None])
    DiscoveryService.request_discovery(scope="10.0.0.0/24")
    KioskService.create(name="FOH tablet", group=Group.objects.get(name="Band"))
    Show.objects.create(name="Summer Gala")
    Alert.objects.create(
        receiver=receiver, channel=receiver.channels.get(number=1), kind="battery", detail="Battery low: 1 bar",
        opened_at=timezone.now(),
    )
    hook = Webhook.objects.create(name="FOH chat", url="http://127.0.0.1:9/hook", secret="s" * 32)
    NotifyService.queue_test(webhook=hook)
    AlertSubscription.objects.create(user=User.objects.create_user("sam", email="sam@example.org"))
    return receiver


def result_rows(response) -> str:
    """The text a user reads in the changelist's result table (not its filters, actions or attributes)."""
    html = response.content.decode()
    start = html.index('<table id="result_list"')
    table = html[start : html.index("</table>", start)]
    return " ".join(unescape(re.sub(r"<[^>]*>", " ", table)).split())


# model -> (add page status, text the fixture's object shows in the changelist)
ADMIN_PAGES = {
    "manufacturer": (200, "Shure"),
    "location": (200, "Stage Left"),
    "receiver": (200, "Band Rack"),
    "channel": (403, "Band Rack ch1 (Ch 1)"),  # created with the receiver
    "performer": (200, "Maya"),
    "assignment": (200, "Maya"),
    "group": (200, "Band"),
    "realtimeconnection": (403, "Band Rack"),  # created with the receiver
    "discoverytask": (302, "10.0.0.0/24"),  # scans start on the discovery page
    "auditentry": (403, "Band Rack (ULXD4D)"),  # written by the system
    "kiosklink": (200, "FOH tablet Band Active"),
    "show": (403, "Summer Gala"),  # one row: added once, then edited
    "alert": (403, "Battery low: 1 bar"),  # opened and resolved by the alert rules
    "webhook": (200, "FOH chat"),
    "alertsubscription": (200, "sam@example.org"),
    "delivery": (403, "webhook FOH chat"),  # written by the alert transitions, the log of what was sent
}


@pytest.mark.parametrize(("model", "add_status", "shown"), [(m, *v) for m, v in ADMIN_PAGES.items()])
def test_every_changelist_and_add_page_renders(admin_client, rig, model, add_status, shown):
    changelist = admin_client.get(reverse(f"admin:micboard_{model}_changelist"))
    assert changelist.status_code == 200
    assert shown in result_rows(changelist)
    add = admin_client.get(reverse(f"admin:micboard_{model}_add"))
    assert add.status_code == add_status
    if add_status == 200:
        assert '<form' in add.content.decode() and 'name="_save"' in add.content.decode()


def test_admin_pages_cover_every_registered_model():
    registered = {m._meta.model_name for m in admin.site._registry if m._meta.app_label == "micboard"}
    assert registered == set(ADMIN_PAGES)


def test_receiver_list_shows_colour_coded_status_and_lowest_battery(admin_client, receiver):
    html = admin_client.get(reverse("admin:micboard_receiver_changelist")).content.decode()
    assert "online" in html and "#1a7f37" in html  # green badge
    assert "2/5" in html and "#b42318" in html  # critical battery in red


def test_poll_now_clears_back_off(admin_client, receiver):
    RealTimeConnection.objects.filter(receiver=receiver).update(next_attempt_at=timezone.now() + timedelta(hours=1))
    response = action(admin_client, "receiver", "poll_now", [receiver.pk])
    assert "1 receiver(s) are polled in the next cycle." in messages_of(response)
    assert [t.receiver_id for t in DeviceService.due_targets()] == [receiver.pk]


def test_mark_inactive_stops_polling_and_blanks_tiles(admin_client, receiver):
    response = action(admin_client, "receiver", "mark_inactive", [receiver.pk])
    assert "1 receiver(s) no longer polled." in messages_of(response)
    assert not Receiver.objects.get(pk=receiver.pk).active
    assert set(receiver.channels.values_list("status", flat=True)) == {ChannelStatus.UNASSIGNED}


def test_adding_a_receiver_in_admin_creates_its_channels(admin_client, receiver):
    response = admin_client.post(
        reverse("admin:micboard_receiver_add"),
        {
            "name": "New AD", "manufacturer": receiver.manufacturer_id, "model": "AD4Q", "driver": "shure_tcp",
            "host": "10.0.0.50", "port": 2202, "link": "push", "active": "on",
            "channels-TOTAL_FORMS": 0, "channels-INITIAL_FORMS": 0,
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Receiver.objects.get(name="New AD").channels.count() == 4


def test_duplicate_receiver_address_is_a_form_error(admin_client, receiver):
    response = admin_client.post(
        reverse("admin:micboard_receiver_add"),
        {
            "name": "Clash", "manufacturer": receiver.manufacturer_id, "model": "ULXD4", "driver": "shure_tcp",
            "host": receiver.host, "port": receiver.port, "link": receiver.link, "active": "on",
            "channels-TOTAL_FORMS": 0, "channels-INITIAL_FORMS": 0,
        },
    )
    assert response.status_code == 200
    assert f"is the same device as “{receiver.name}”" in response.content.decode()
    assert not Receiver.objects.filter(name="Clash").exists()


def test_bulk_enable_and_disable_alerts(admin_client, receiver):
    for channel in receiver.channels.all():
        AssignmentService.assign(channel=channel, performer=f"P{channel.number}")
    ids = list(Assignment.objects.values_list("pk", flat=True))
    response = action(admin_client, "assignment", "disable_alerts", ids)
    assert "Alerts disabled on 2 assignment(s)." in messages_of(response)
    assert not Assignment.objects.filter(alerts_enabled=True).exists()
    action(admin_client, "assignment", "enable_alerts", ids)
    assert Assignment.objects.filter(alerts_enabled=True).count() == 2


def test_assigning_a_taken_channel_is_refused(admin_client, receiver):
    channel = receiver.channels.get(number=1)
    AssignmentService.assign(channel=channel, performer="Maya")
    from micboard.models import Performer

    other = Performer.objects.create(name="Jonas")
    response = admin_client.post(
        reverse("admin:micboard_assignment_add"),
        {"performer": other.pk, "channel": channel.pk, "priority": 2, "alerts_enabled": "on"},
    )
    assert response.status_code == 200 and "already exists" in response.content.decode()
    assert channel.assignment.performer.name == "Maya"


def test_connection_check_health_and_reset(admin_client, receiver):
    dead = make_receiver(name="Dead Rack", model="ULXD4")
    DeviceService.record_poll_results(outcomes=[PollOutcome(dead.pk, error="connection refused")])
    ids = list(RealTimeConnection.objects.values_list("pk", flat=True))
    response = action(admin_client, "realtimeconnection", "check_health", ids)
    text = " ".join(messages_of(response))
    assert "Band Rack: answering" in text and "Dead Rack: 1 failed polls: connection refused" in text
    response = action(admin_client, "realtimeconnection", "reset", [dead.connection.pk])
    assert RealTimeConnection.objects.get(receiver=dead).consecutive_failures == 0


def test_manufacturer_sync_devices(admin_client, receiver):
    receiver.channels.filter(number=2).delete()
    response = action(admin_client, "manufacturer", "sync_devices", [receiver.manufacturer_id])
    assert "Synced 1 receiver(s)" in messages_of(response)[0]
    assert receiver.channels.count() == 2


def test_manufacturer_sync_never_removes_a_performers_channel(admin_client, receiver):
    """A model changed behind the admin's back: syncing adds what is missing and deletes nothing unasked."""
    channel = receiver.channels.get(number=2)
    AssignmentService.assign(channel=channel, performer="Maya")
    Receiver.objects.filter(pk=receiver.pk).update(model="ULXD4")  # one channel now
    action(admin_client, "manufacturer", "sync_devices", [receiver.manufacturer_id])
    assert Assignment.objects.get(channel=channel).performer.name == "Maya"


def test_group_editing_with_blank_spacers(admin_client, receiver):
    ch1, ch2 = receiver.channels.order_by("number")
    response = admin_client.post(
        reverse("admin:micboard_group_add"),
        {
            "name": "Band", "slug": "band", "position": 1,
            "slots-TOTAL_FORMS": 3, "slots-INITIAL_FORMS": 0,
            "slots-0-position": 1, "slots-0-channel": ch2.pk,
            "slots-1-position": 2, "slots-1-channel": "",
            "slots-2-position": 3, "slots-2-channel": ch1.pk,
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    group = Group.objects.get(slug="band")
    assert [s.channel_id for s in group.slots.all()] == [ch2.pk, None, ch1.pk]


def test_a_scan_is_started_on_the_discovery_page_and_reviewed_from_the_admin(admin_client):
    response = admin_client.get(reverse("admin:micboard_discoverytask_add"))
    assert response.status_code == 302 and response["Location"] == reverse("discovery")
    task = DiscoveryService.request_discovery(scope="10.0.0.0/24")
    page = admin_client.get(reverse("admin:micboard_discoverytask_change", args=[task.pk])).content.decode()
    assert reverse("discovery-task", args=[task.pk]) in page


# --- Changing a receiver's model (channels it no longer has go only when confirmed) ---


@pytest.fixture
def quad():
    """A ULXD4Q with Jonas on ch 1, Maya on ch 3, and a Band board using ch 1, 2, 3, 4 with a spacer."""
    rx = make_receiver(name="Rack A", model="ULXD4Q")
    ch = {c.number: c for c in rx.channels.all()}
    AssignmentService.assign(channel=ch[1], performer="Jonas")
    AssignmentService.assign(channel=ch[3], performer="Maya")
    GroupService.set_tiles(name="Band", channels=[ch[1], None, ch[2], ch[3], ch[4]])
    return rx


def receiver_form(receiver, **changes):
    """What the receiver's change page posts: its fields and the (read-only) channel inline."""
    channels = list(receiver.channels.order_by("number"))
    data = {
        "name": receiver.name, "manufacturer": receiver.manufacturer_id, "model": receiver.model,
        "driver": receiver.driver, "host": receiver.host, "port": receiver.port, "link": receiver.link,
        "location": receiver.location_id or "", "active": "on",
        "channels-TOTAL_FORMS": len(channels), "channels-INITIAL_FORMS": len(channels),
        "channels-MIN_NUM_FORMS": 0, "channels-MAX_NUM_FORMS": 1000,
    }
    for i, channel in enumerate(channels):
        data[f"channels-{i}-id"] = channel.pk
        data[f"channels-{i}-receiver"] = receiver.pk
    data.update(changes)
    return data


def board_of(receiver):
    """Who is on which channel number, and the Band board's tiles as channel numbers (None: spacer)."""
    performers = {a.channel.number: a.performer.name for a in Assignment.objects.filter(channel__receiver=receiver)}
    tiles = [s.channel.number if s.channel else None for s in GroupSlot.objects.filter(group__name="Band")]
    return performers, tiles


def change_receiver(client, receiver, **changes):
    url = reverse("admin:micboard_receiver_change", args=[receiver.pk])
    return client.post(url, receiver_form(receiver, **changes))


def test_model_change_that_removes_channels_asks_first_and_saves_nothing(admin_client, quad):
    audit_count = AuditEntry.objects.count()
    response = change_receiver(admin_client, quad, model="ULXD4D")

    assert response.status_code == 200  # the form again, not a redirect
    html = response.content.decode()
    assert "ch 3 (Maya), ch 4; tile 4 of Band, tile 5 of Band turn BLANK" in html
    assert 'type="checkbox" name="confirm_removal"' in html
    quad.refresh_from_db()
    assert quad.model == "ULXD4Q" and quad.channels.count() == 4
    assert board_of(quad) == ({1: "Jonas", 3: "Maya"}, [1, None, 2, 3, 4])
    assert AuditEntry.objects.count() == audit_count


def test_confirmed_model_change_removes_and_records_what_went(admin_client, quad):
    response = change_receiver(admin_client, quad, model="ULXD4D", confirm_removal="on")

    assert response.status_code == 302, response.content.decode()[:3000]
    quad.refresh_from_db()
    assert quad.model == "ULXD4D"
    assert list(quad.channels.values_list("number", flat=True)) == [1, 2]
    # What survives keeps its performer and tiles; the removed channels' tiles stay as BLANK spacers.
    assert board_of(quad) == ({1: "Jonas"}, [1, None, 2, None, None])
    summary = "Rack A: model ULXD4Q -> ULXD4D removed ch 3 (Maya), ch 4; tile 4 of Band, tile 5 of Band turn BLANK"
    assert AuditEntry.objects.filter(action="removed", summary=summary).count() == 1
    audit = admin_client.get(reverse("admin:micboard_auditentry_changelist"))
    assert summary in result_rows(audit)


@pytest.mark.parametrize(("before", "after"), [("ULXD4Q", "AD4Q"), ("ULXD4D", "ULXD4Q")])
def test_model_change_that_removes_nothing_needs_no_confirmation(admin_client, before, after):
    rx = make_receiver(name="Rack A", model=before)
    ch1, ch2 = rx.channels.order_by("number")[:2]
    AssignmentService.assign(channel=ch2, performer="Maya")
    GroupService.set_tiles(name="Band", channels=[ch2, None, ch1])
    page = admin_client.get(reverse("admin:micboard_receiver_change", args=[rx.pk])).content.decode()
    assert 'type="checkbox" name="confirm_removal"' not in page  # nothing to confirm, no checkbox

    response = change_receiver(admin_client, rx, model=after)

    assert response.status_code == 302, response.content.decode()[:3000]
    rx.refresh_from_db()
    assert rx.model == after and rx.channels.count() == rx.channel_count
    assert board_of(rx) == ({2: "Maya"}, [2, None, 1])
    assert rx.channels.get(number=2).pk == ch2.pk  # the same channel, not a new one
    assert not AuditEntry.objects.filter(action="removed").exists()


def test_service_refuses_an_unconfirmed_removal(quad):
    quad.model = "ULXD4"
    with pytest.raises(ChannelRemovalError) as err:
        DeviceService.update_receiver(receiver=quad)
    assert err.value.removed == "ch 2, ch 3 (Maya), ch 4; tile 3 of Band, tile 4 of Band, tile 5 of Band turn BLANK"
    assert Receiver.objects.get(pk=quad.pk).model == "ULXD4Q" and quad.channels.count() == 4


# --- Admin actions need the permission to do what they do ---


def staff_client(*codenames):
    user = User.objects.create_user(username="-".join(codenames) or "nobody", password="x", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="micboard", codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def actions_world(receiver):
    """A state every write action would change."""
    spare = make_receiver(name="Spare", model="ULXD4", active=False)
    dead = make_receiver(name="Dead Rack", model="ULXD4")
    DeviceService.record_poll_results(outcomes=[PollOutcome(dead.pk, error="connection refused")])
    RealTimeConnection.objects.filter(receiver=receiver).update(next_attempt_at=timezone.now() + timedelta(hours=1))
    receiver.channels.filter(number=2).delete()  # sync_devices brings it back
    a1 = AssignmentService.assign(channel=receiver.channels.get(number=1), performer="Maya")
    a2 = AssignmentService.assign(channel=spare.channels.get(number=1), performer="Jonas", alerts_enabled=False)
    return receiver, spare, dead, a1, a2


def world_state():
    return (
        sorted(Receiver.objects.values_list("name", "active")),
        sorted(RealTimeConnection.objects.values_list("receiver__name", "consecutive_failures", "next_attempt_at")),
        sorted(Assignment.objects.values_list("performer__name", "alerts_enabled")),
        Receiver.objects.get(name="Band Rack").channels.count(),
    )


# (admin, action) -> permissions that let a staff user run it, besides viewing the list
WRITE_ACTIONS = {
    ("manufacturer", "sync_devices"): ["view_manufacturer", "change_receiver"],
    ("receiver", "poll_now"): ["view_receiver", "change_receiver"],
    ("receiver", "mark_inactive"): ["view_receiver", "change_receiver"],
    ("receiver", "mark_active"): ["view_receiver", "change_receiver"],
    ("assignment", "enable_alerts"): ["view_assignment", "change_assignment"],
    ("assignment", "disable_alerts"): ["view_assignment", "change_assignment"],
    ("realtimeconnection", "reset"): ["view_realtimeconnection", "change_realtimeconnection"],
}
MODELS = {
    "manufacturer": "micboard.Manufacturer", "receiver": "micboard.Receiver", "assignment": "micboard.Assignment",
    "realtimeconnection": "micboard.RealTimeConnection",
}


def all_ids(model):
    from django.apps import apps

    return list(apps.get_model(MODELS[model]).objects.values_list("pk", flat=True))


def offered_actions(client, model):
    response = client.get(reverse(f"admin:micboard_{model}_changelist"))
    assert response.status_code == 200
    form = response.context.get("action_form")  # None when the user may run no action at all
    return {value for value, _ in form.fields["action"].choices} if form else set()


@pytest.mark.parametrize(("model", "name"), list(WRITE_ACTIONS))
def test_view_only_staff_cannot_run_write_actions(actions_world, model, name):
    viewer = staff_client(f"view_{model}", *([f"change_{model}"] if model == "manufacturer" else []))
    before = world_state()

    assert name not in offered_actions(viewer, model)
    action(viewer, model, name, all_ids(model))

    assert world_state() == before


@pytest.mark.parametrize(("model", "name"), list(WRITE_ACTIONS))
def test_staff_with_change_permission_can_run_write_actions(actions_world, model, name):
    operator = staff_client(*WRITE_ACTIONS[(model, name)])
    before = world_state()

    assert name in offered_actions(operator, model)
    action(operator, model, name, all_ids(model))

    assert world_state() != before


def test_view_only_staff_stays_unable_to_stop_monitoring(actions_world):
    receiver = actions_world[0]
    action(staff_client("view_receiver"), "receiver", "mark_inactive", [receiver.pk])
    assert Receiver.objects.get(pk=receiver.pk).active
    action(staff_client("view_receiver", "change_receiver"), "receiver", "mark_inactive", [receiver.pk])
    assert not Receiver.objects.get(pk=receiver.pk).active


def test_view_only_staff_can_check_health_but_not_reset(actions_world):
    dead = actions_world[2]
    viewer = staff_client("view_realtimeconnection")
    response = action(viewer, "realtimeconnection", "check_health", [dead.connection.pk])
    assert "Dead Rack: 1 failed polls: connection refused" in " ".join(messages_of(response))
    action(viewer, "realtimeconnection", "reset", [dead.connection.pk])
    assert RealTimeConnection.objects.get(receiver=dead).consecutive_failures == 1


def test_every_admin_action_declares_its_permission():
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label != "micboard":
            continue
        for name in model_admin.actions or ():
            func = getattr(model_admin, name) if isinstance(name, str) else name
            assert getattr(func, "allowed_permissions", None), f"{model_admin}.{name} declares no permission"
