"""A crew member's own alert e-mail (/alerts/subscription/): saving, refusing, the test message, who may.

The test e-mail goes the whole way: queued by the page after the commit, run by Huey in immediate mode,
sent by ``NotifyService`` to Django's in-memory outbox.
"""

import re
from datetime import time as clock

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.test import Client
from django.urls import reverse
from huey.contrib.djhuey import HUEY

from micboard.models import AlertSubscription, AuditEntry, Delivery, Group
from micboard.services import KioskService
from tests.factories import make_user

pytestmark = pytest.mark.django_db

URL = reverse("alert-subscription")
TEST_URL = reverse("alert-subscription-test")
DELETE_URL = reverse("alert-subscription-delete")


@pytest.fixture
def boards():
    return Group.objects.create(name="Band", position=1), Group.objects.create(name="Cast", position=2)


@pytest.fixture
def immediate():
    """Huey runs a task the moment it is queued (its own in-memory queue, restored after)."""
    HUEY.immediate = True
    yield HUEY
    HUEY.immediate = False


def crew(username="sam", role="viewer", **fields):
    client = Client()
    user = make_user(username, role=role, email=fields.pop("email", f"{username}@example.org"), **fields)
    client.force_login(user)
    return client, user


def form(**fields):
    data = {"active": "on", "email": "sam@example.org", "events": ["opened"], "quiet_start": "", "quiet_end": ""}
    return data | fields


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def test_a_viewer_creates_and_edits_their_own_subscription(boards):
    band, _cast = boards
    client, user = crew()
    page = client.get(URL)
    html = page.content.decode()
    assert page.status_code == 200 and page["Cache-Control"] == "no-store"
    assert "You get no alert e-mail yet" in html and 'value="sam@example.org"' in html
    assert "Band" in html and "Cast" in html and 'name="csrfmiddlewaretoken"' in html

    data = form(events=["opened", "resolved"], priorities=["3", "4"], groups=[str(band.pk)])
    data |= {"quiet_start": "22:00", "quiet_end": "07:00", "email": "Sam.Lead@Example.ORG"}
    saved = client.post(URL, data, follow=True)
    assert saved.redirect_chain == [(URL, 302)]
    assert "Your alert e-mail to Sam.Lead@example.org is saved and on." in messages_of(saved)
    sub = AlertSubscription.objects.get(user=user)
    assert (sub.active, sub.events, sub.priorities) == (True, ["opened", "resolved"], [3, 4])
    assert [g.name for g in sub.groups.all()] == ["Band"]
    assert (sub.quiet_start, sub.quiet_end) == (clock(22, 0), clock(7, 0))  # spans midnight
    user.refresh_from_db()
    assert user.email == "Sam.Lead@example.org"
    assert AuditEntry.objects.filter(model="alert subscription", action="created", object_id=str(sub.pk)).exists()
    assert "Alert e-mail is <strong>on</strong>" in saved.content.decode()

    # Edit: switched off, every priority, every board, no quiet hours; still one row, now "changed".
    off = client.post(URL, form(active="", email="sam.lead@example.org", events=["acknowledged"]), follow=True)
    assert "is saved and off (saved, nothing is sent)." in messages_of(off)[0]
    sub.refresh_from_db()
    assert (sub.active, sub.events, sub.priorities, list(sub.groups.all())) == (False, ["acknowledged"], [], [])
    assert (sub.quiet_start, sub.quiet_end) == (None, None)
    assert AlertSubscription.objects.count() == 1
    assert AuditEntry.objects.filter(model="alert subscription", action="changed").exists()

    # Removed: no more e-mail, the address stays on the account.
    gone = client.post(DELETE_URL, follow=True)
    assert "Your alert e-mail subscription is removed: no more alert e-mail." in messages_of(gone)
    assert not AlertSubscription.objects.exists()
    assert AuditEntry.objects.filter(model="alert subscription", action="deleted").exists()
    assert User.objects.get(pk=user.pk).email == "sam.lead@example.org"


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"quiet_start": "22:00"}, "Quiet hours need both a start and an end (or neither)."),
        ({"quiet_end": "07:00"}, "Quiet hours need both a start and an end (or neither)."),
        ({"quiet_start": "22:00", "quiet_end": "22:00"}, "Quiet hours that start when they end are empty"),
        ({"quiet_start": "25:00", "quiet_end": "07:00"}, "Enter a valid time."),
        ({"email": "not an address"}, "Enter a valid email address."),
        ({"email": ""}, "This field is required."),
        ({"email": "x" * 250 + "@example.org"}, "Ensure this value has at most 254 characters"),
        ({"groups": ["999999"]}, "Select a valid choice. 999999 is not one of the available choices."),
        ({"groups": ["band"]}, "“band” is not a valid value."),
        ({"priorities": ["9"]}, "Select a valid choice. 9 is not one of the available choices."),
        ({"events": ["exploded"]}, "Select a valid choice. exploded is not one of the available choices."),
        ({"events": []}, "Tick at least one event."),
    ],
)
def test_a_refused_value_is_said_and_nothing_is_saved(boards, change, error):
    client, user = crew()
    response = client.post(URL, form(**change))
    assert response.status_code == 422
    html = response.content.decode()
    assert error.replace("“", "&ldquo;").replace("”", "&rdquo;") in html or error in html
    assert "Nothing was saved" in html or 'role="alert"' in html
    assert not AlertSubscription.objects.exists()
    assert User.objects.get(pk=user.pk).email == "sam@example.org"


def test_a_refused_edit_keeps_the_saved_subscription(boards):
    client, user = crew()
    assert client.post(URL, form(priorities=["4"])).status_code == 302
    assert client.post(URL, form(priorities=["2"], email="sam@@", quiet_start="23:00")).status_code == 422
    sub = AlertSubscription.objects.get(user=user)
    assert (sub.priorities, sub.quiet_start) == ([4], None)


def test_a_user_only_ever_reaches_their_own_subscription(boards):
    other = make_user("kim", role="viewer", email="kim@example.org")
    AlertSubscription.objects.create(user=other, priorities=[4])
    client, user = crew()
    html = client.get(URL).content.decode()
    assert "kim@example.org" not in html and "You get no alert e-mail yet" in html
    assert client.post(URL, form(user=str(other.pk), priorities=["1"])).status_code == 302
    assert AlertSubscription.objects.get(user=other).priorities == [4]
    assert AlertSubscription.objects.get(user=user).priorities == [1]
    assert client.post(DELETE_URL).status_code == 302
    assert AlertSubscription.objects.filter(user=other).exists()
    assert client.get(URL + "999/").status_code == 404


def test_kiosk_screens_anonymous_and_users_without_a_role_are_refused(boards):
    kiosk = Client()
    kiosk.get(KioskService.path(link=KioskService.create(name="FOH"), destination="board"))
    for response in (kiosk.get(URL), kiosk.post(URL, form()), kiosk.post(TEST_URL), kiosk.post(DELETE_URL)):
        assert response.status_code == 403
        assert "kiosk link" in response.content.decode()
    scoped = Client()
    scoped.get(KioskService.path(link=KioskService.create(name="Band", group=boards[0]), destination="board"))
    assert scoped.get(URL).status_code == 403  # refused, not sent to ?group=band first

    anonymous = Client()
    for response in (anonymous.get(URL), anonymous.post(URL, form()), anonymous.post(TEST_URL)):
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))

    nobody, _ = crew("lee", role=None)
    assert nobody.get(URL).status_code == 403
    assert nobody.post(URL, form(email="lee@example.org")).status_code == 403
    assert not AlertSubscription.objects.exists() and not Delivery.objects.exists()

    client, _ = crew()
    assert client.get(TEST_URL).status_code == 405 and client.get(DELETE_URL).status_code == 405
    assert client.put(URL).status_code == 405


def test_saving_needs_the_csrf_token(boards):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(make_user("sam", role="viewer", email="sam@example.org"))
    assert browser.post(URL, form()).status_code == 403
    assert browser.post(TEST_URL).status_code == 403
    assert not AlertSubscription.objects.exists() and not Delivery.objects.exists()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', browser.get(URL).content.decode()).group(1)
    assert browser.post(URL, form(csrfmiddlewaretoken=token)).status_code == 302
    assert AlertSubscription.objects.count() == 1


def test_the_test_email_is_queued_sent_by_the_task_and_limited_to_one_a_minute(
    immediate, django_capture_on_commit_callbacks
):
    client, user = crew(role="operator")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(TEST_URL, follow=True)
    assert "Test e-mail queued to sam@example.org; it leaves within seconds." in messages_of(response)
    delivery = Delivery.objects.get(user=user, event="test")
    assert delivery.state == "sent" and delivery.attempts == 1
    [message] = mail.outbox
    assert (message.to, message.subject) == (["sam@example.org"], "[micboard] Test message")
    assert "sam's alert e-mail address" in message.body
    assert "Last test e-mail: queued at" in response.content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        again = client.post(TEST_URL, follow=True)
    [refusal] = messages_of(again)
    assert re.fullmatch(
        r"No test e-mail queued: A test e-mail was sent less than a minute ago; try again in \d+ s\.", refusal
    )
    assert Delivery.objects.filter(event="test").count() == 1 and len(mail.outbox) == 1

    Delivery.objects.filter(pk=delivery.pk).update(created_at=delivery.created_at.replace(year=2020))
    with django_capture_on_commit_callbacks(execute=True):
        client.post(TEST_URL)
    assert len(mail.outbox) == 2


def test_the_test_email_is_only_queued_in_the_request(django_capture_on_commit_callbacks):
    HUEY.flush()
    client, user = crew()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(TEST_URL)
    assert Delivery.objects.get(user=user).state == "queued" and mail.outbox == []
    assert len(HUEY) == 1  # the Huey task that sends it
    HUEY.flush()


def test_a_user_without_an_address_is_told_to_save_one_first():
    client, _ = crew(email="")
    html = client.get(URL).content.decode()
    assert "Save an address first to send a test e-mail." in html
    response = client.post(TEST_URL, follow=True)
    assert "No test e-mail queued: sam has no e-mail address: add one to the user first." in messages_of(response)
    assert not Delivery.objects.exists()


def test_the_board_and_the_alert_list_link_the_page_for_signed_in_users_only(boards):
    client, _ = crew()
    for name in ("board", "alerts"):
        assert f'href="{URL}"' in client.get(reverse(name)).content.decode()
    kiosk = Client()
    kiosk.get(KioskService.path(link=KioskService.create(name="FOH"), destination="board"))
    for name in ("board", "alerts"):
        assert f'href="{URL}"' not in kiosk.get(reverse(name)).content.decode()


def test_the_admins_form_and_action_keep_the_same_rules(admin_client, immediate, django_capture_on_commit_callbacks):
    user = make_user("kim", role="viewer", email="kim@example.org")
    add = reverse("admin:micboard_alertsubscription_add")
    base = {"user": user.pk, "active": "on", "events": ["opened"]}
    half = admin_client.post(add, base | {"quiet_end": "07:00"}).content.decode()
    assert "Quiet hours need both a start and an end (or neither)." in half
    assert admin_client.post(add, base | {"events": []}).status_code == 200
    nomail = make_user("lee", role="viewer")
    refused = admin_client.post(add, base | {"user": nomail.pk}).content.decode()
    assert "lee has no e-mail address: add one to the user first." in refused
    assert not AlertSubscription.objects.exists()
    assert admin_client.post(add, base).status_code == 302

    changelist = reverse("admin:micboard_alertsubscription_changelist")
    sub = AlertSubscription.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        done = admin_client.post(changelist, {"action": "send_test", "_selected_action": [sub.pk]}, follow=True)
    assert "Test e-mail queued for 1 subscriber(s)" in done.content.decode()
    assert [m.to for m in mail.outbox] == [["kim@example.org"]]
    # The same limit as the crew's own page: one test e-mail a minute per user, whoever asks.
    kim = Client()
    kim.force_login(user)
    told = kim.post(TEST_URL, follow=True)
    assert "try again in" in messages_of(told)[0] and len(mail.outbox) == 1
