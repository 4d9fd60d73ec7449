"""Roles and kiosk links: who sees the board, who may change things, and screens without accounts."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group as AuthGroup
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from micboard.models import Group, KioskLink, Scene
from micboard.services import (
    BoardService,
    DeviceService,
    DiscoveryService,
    GroupService,
    KioskService,
    PollOutcome,
    RoleService,
    SceneService,
)
from tests.factories import make_receiver, make_user, pack_on, reading

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}
NO_ROLE = "Ask your production manager for a role"


@pytest.fixture
def rig():
    rx = make_receiver(name="Band Rack", model="ULXD4Q")
    DeviceService.record_poll_results(
        outcomes=[PollOutcome(rx.pk, reading=reading(pack_on(1, name="Lead Vox"), pack_on(2, name="Bass")))]
    )
    channels = list(rx.channels.order_by("number"))
    GroupService.set_tiles(name="Band", channels=channels[:1])
    GroupService.set_tiles(name="Cast", channels=channels[1:2])
    BoardService.bump_version()
    BoardService.record_heartbeat()
    return rx


def client_for(role, **fields):
    """A browser signed in as a new user with ``role`` ("none": signed in without a role)."""
    client = Client()
    client.force_login(make_user(f"user-{role}", role=None if role == "none" else role, **fields))
    return client


def grid(client, group=""):
    return client.get(reverse("board-grid") + (f"?group={group}" if group else ""), headers=HX)


def open_kiosk(link, destination="board", client=None):
    client = client or Client()
    response = client.get(KioskService.path(link=link, destination=destination))
    return client, response


# --- roles -----------------------------------------------------------------------------------------


def test_migration_creates_the_three_roles_with_their_permissions():
    def codenames(role):
        return set(AuthGroup.objects.get(name=role).permissions.values_list("codename", flat=True))

    viewer, operator, admin = codenames("viewer"), codenames("operator"), codenames("admin")
    assert "view_channel" in viewer and all(c.startswith("view_") for c in viewer)
    assert viewer < operator < admin
    assert {"add_assignment", "change_assignment", "delete_assignment", "change_performer", "add_group",
            "change_group", "delete_group", "change_groupslot", "add_kiosklink"} <= operator
    assert not {"change_receiver", "delete_receiver", "revoke_kiosklink", "change_kiosklink"} & operator
    every = set(Permission.objects.filter(content_type__app_label="micboard").values_list("codename", flat=True))
    tokens = {f"{a}_{m}" for m in ("token", "tokenproxy") for a in ("add", "change", "delete", "view")}
    lockouts = {"view_accessattempt", "delete_accessattempt", "view_accesslog"}  # django-axes: lift a lock-out
    assert admin == every | tokens | lockouts and "revoke_kiosklink" in admin  # admins also manage API tokens


def test_micboard_roles_command_restores_the_roles_and_grants(capsys):
    operator = AuthGroup.objects.get(name="operator")
    operator.permissions.remove(Permission.objects.get(codename="change_assignment"))
    operator.permissions.add(Permission.objects.get(codename="delete_receiver"))
    AuthGroup.objects.get(name="viewer").delete()
    user = make_user("sam", role=None)
    call_command("micboard_roles")
    call_command("micboard_roles", "--grant", "admin", "sam")  # and again: nothing doubles
    perms = set(AuthGroup.objects.get(name="operator").permissions.values_list("codename", flat=True))
    assert "change_assignment" in perms and "delete_receiver" not in perms
    assert AuthGroup.objects.filter(name="viewer").count() == 1
    user.refresh_from_db()
    assert RoleService.role_of(user=user) == "admin" and user.is_staff
    call_command("micboard_roles", "--grant", "viewer", "sam")
    user.refresh_from_db()
    assert RoleService.role_of(user=user) == "viewer" and not user.is_staff
    assert "sam is now viewer" in capsys.readouterr().out
    with pytest.raises(CommandError, match="Unknown role 'boss'"):
        call_command("micboard_roles", "--grant", "boss", "sam")
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        call_command("micboard_roles", "--grant", "viewer", "nobody")


# (role, board page, grid refresh, phone page, admin index) status codes
ROLE_MATRIX = {
    "anonymous": (302, 200, 302, 302),  # the grid answers HX-Redirect (200) to the login page
    "none": (403, 403, 403, 302),
    "viewer": (200, 200, 403, 302),
    "operator": (200, 200, 200, 302),
    "admin": (200, 200, 200, 200),
}


@pytest.mark.parametrize("role", ROLE_MATRIX)
def test_each_role_gets_what_it_may_and_is_refused_the_rest(rig, role):
    client = Client() if role == "anonymous" else client_for(role)
    board, grid_status, phone, admin_index = ROLE_MATRIX[role]
    assert client.get(reverse("board")).status_code == board
    assert grid(client).status_code == grid_status
    assert client.get(reverse("phone")).status_code == phone
    assert client.get(reverse("admin:index")).status_code == admin_index
    assert client.get(reverse("healthz")).status_code == 200  # monitoring stays public
    created = client.post(reverse("phone"), {"name": f"{role} phone", "group": "", "valid_for": "12h"})
    assert created.status_code == (302 if phone == 200 else phone)
    assert KioskLink.objects.filter(name=f"{role} phone").exists() == (phone == 200)
    if role == "anonymous":
        assert grid(client).headers["HX-Redirect"].startswith(reverse("login"))


def test_signed_in_without_a_role_gets_a_page_saying_whom_to_ask(rig):
    response = client_for("none").get(reverse("board"))
    html = response.content.decode()
    assert response.status_code == 403 and NO_ROLE in html and "Lead Vox" not in html
    assert 'id="access-refused"' in html and "Log out" in html


def test_staff_without_a_role_and_superusers_see_the_board(rig, admin_client):
    assert client_for("none", is_staff=True).get(reverse("board")).status_code == 200
    assert admin_client.get(reverse("board")).status_code == 200
    assert admin_client.get(reverse("phone")).status_code == 200


def test_operator_controls_show_only_to_operators(rig):
    phone = f'href="{reverse("phone")}"'
    assert phone not in client_for("viewer").get(reverse("board")).content.decode()
    assert phone in client_for("operator").get(reverse("board")).content.decode()


def test_viewer_cannot_reach_setup_in_the_admin(rig):
    viewer = client_for("viewer")
    assert viewer.get(reverse("admin:micboard_receiver_changelist")).status_code == 302
    operator = client_for("operator")
    assert operator.get(reverse("admin:micboard_assignment_changelist")).status_code == 302  # not staff


def test_removing_a_role_stops_the_next_grid_refresh(rig):
    user = make_user("wrangler", role="viewer")
    client = Client()
    client.force_login(user)
    assert grid(client).status_code == 200
    RoleService.grant(user=user, role=None)
    refused = grid(client)
    assert refused.status_code == 403 and NO_ROLE in refused.content.decode()


# --- kiosk links -----------------------------------------------------------------------------------


def test_kiosk_link_shows_the_board_without_an_account(rig):
    link = KioskService.create(name="FOH tablet")
    client, opened = open_kiosk(link)
    assert opened.status_code == 302 and opened["Location"] == reverse("board")
    page = client.get(reverse("board"))
    html = page.content.decode()
    assert page.status_code == 200 and "Lead Vox" in html and "Kiosk · FOH tablet" in html
    assert f'href="{reverse("phone")}"' not in html and "Log out" not in html
    assert grid(client).status_code == 200
    assert "_auth_user_id" not in client.session


def test_kiosk_link_lands_on_the_phone_view_and_ignores_other_targets(rig):
    link = KioskService.create(name="Sam's phone")
    assert open_kiosk(link, "battery")[1]["Location"] == "/battery/"
    tampered_next = Client().get(KioskService.path(link=link) + "?next=https://evil.example/")
    assert tampered_next["Location"] == reverse("board")


def test_scoped_kiosk_sees_only_its_group(rig):
    band = rig.channels.get(number=1).group_slots.get().group
    client, _ = open_kiosk(KioskService.create(name="Band tablet", group=band))
    to_band = client.get(reverse("board"))
    assert to_band.status_code == 302 and to_band["Location"] == f"{reverse('board')}?group=band"
    html = client.get(to_band["Location"]).content.decode()
    assert "Lead Vox" in html and "Bass" not in html
    tabs = html.split('id="group-tabs"')[1].split("</nav>")[0]
    assert "Band" in tabs and "Cast" not in tabs and "All</a>" not in tabs
    assert grid(client, "band").status_code == 200
    assert grid(client, "cast").status_code == 403 and grid(client).status_code == 403
    assert client.get(f"{reverse('board')}?group=cast")["Location"].endswith("?group=band")


def test_deleting_the_scoped_group_refuses_its_kiosk_instead_of_widening_it(rig):
    band = rig.channels.get(number=1).group_slots.get().group
    client, _ = open_kiosk(KioskService.create(name="Band tablet", group=band))
    band.delete()
    response = client.get(reverse("board"))
    assert response.status_code == 403 and "no longer exists" in response.content.decode()


def test_revoked_mid_session_the_next_refresh_is_refused(rig):
    link = KioskService.create(name="FOH tablet")
    client, _ = open_kiosk(link)
    assert grid(client).status_code == 200
    assert KioskService.revoke(links=[link]) == 1
    refused = grid(client)
    assert refused.status_code == 403 and "This kiosk link was revoked" in refused.content.decode()
    page = client.get(reverse("board"))
    assert page.status_code == 403 and "This kiosk link was revoked" in page.content.decode()
    assert "Lead Vox" not in page.content.decode()
    assert open_kiosk(link)[1].status_code == 403  # and the link itself no longer opens


def test_expired_link_is_refused_when_opened_and_mid_session(rig):
    past = KioskService.create(name="Old", valid_for=timedelta(hours=1))
    KioskLink.objects.filter(pk=past.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = open_kiosk(past)[1]
    assert response.status_code == 403 and "This kiosk link has expired" in response.content.decode()
    link = KioskService.create(name="Tonight", valid_for=timedelta(hours=6))
    client, _ = open_kiosk(link)
    assert grid(client).status_code == 200
    KioskLink.objects.filter(pk=link.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert grid(client).status_code == 403


def test_tampered_or_unknown_tokens_are_refused(rig):
    link = KioskService.create(name="FOH tablet")
    token = KioskService.token(link=link)
    token_id, signature = token.split(":")
    for bad in (f"{token_id}x:{signature}", f"{token_id}:{signature[:-2]}AA", token_id, "garbage"):
        response = Client().get(reverse("kiosk-open", kwargs={"token": bad}))
        assert response.status_code == 400 and "not valid" in response.content.decode()
        assert response["Content-Security-Policy"]
    link.delete()
    assert Client().get(reverse("kiosk-open", kwargs={"token": token})).status_code == 403


def test_the_database_holds_no_working_link(rig):
    link = KioskService.create(name="FOH tablet")
    signature = KioskService.token(link=link).split(":")[1]
    stored = KioskLink.objects.filter(pk=link.pk).values().get()
    assert signature not in " ".join(str(v) for v in stored.values())
    assert Client().get(reverse("kiosk-open", kwargs={"token": link.token_id})).status_code == 400


def test_kiosk_sessions_cannot_post_or_operate(rig):
    client, _ = open_kiosk(KioskService.create(name="FOH tablet"))
    refused = client.post(reverse("phone"), {"name": "sneaky", "valid_for": "never"})
    assert refused.status_code == 403 and "read-only" in refused.content.decode()
    assert client.post(reverse("logout")).status_code == 403
    assert client.get(reverse("phone")).status_code == 403
    assert not KioskLink.objects.filter(name="sneaky").exists()


def test_signing_in_on_a_kiosk_screen_ends_the_kiosk(rig):
    make_user("crew", role=None, password="pw-123-crew")
    client, _ = open_kiosk(KioskService.create(name="FOH tablet"))
    client.post(reverse("login"), {"username": "crew", "password": "pw-123-crew"})
    assert "micboard_kiosk" not in client.session
    assert client.get(reverse("board")).status_code == 403  # now the board asks for a role, as for crew


def test_opening_a_kiosk_link_signs_out_the_user_of_that_browser(rig):
    client = client_for("operator")
    open_kiosk(KioskService.create(name="FOH tablet"), client=client)
    assert "_auth_user_id" not in client.session
    assert client.get(reverse("phone")).status_code == 403


def test_hostile_kiosk_names_stay_inert(rig):
    evil = "<img src=x onerror=alert(1)>"
    client, _ = open_kiosk(KioskService.create(name=evil))
    html = client.get(reverse("board")).content.decode()
    assert evil not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    operator = client_for("operator")
    phone = operator.get(f"{reverse('phone')}?link={KioskLink.objects.get().pk}").content.decode()
    assert evil not in phone


def test_kiosk_use_is_noted_at_most_once_a_minute(rig):
    link = KioskService.create(name="FOH tablet")
    client, _ = open_kiosk(link)
    link.refresh_from_db()
    first = link.last_used_at
    assert first is not None
    grid(client)
    link.refresh_from_db()
    assert link.last_used_at == first


# --- QR code and the phone page --------------------------------------------------------------------


def test_operator_creates_a_phone_link_and_gets_its_qr_code(rig):
    operator = client_for("operator")
    created = operator.post(reverse("phone"), {"name": "Sam's phone", "group": "band", "valid_for": "12h"})
    link = KioskLink.objects.get(name="Sam's phone")
    assert created["Location"] == f"{reverse('phone')}?link={link.pk}"
    assert link.group.slug == "band" and link.created_by.username == "user-operator"
    assert timedelta(hours=11) < link.expires_at - timezone.now() <= timedelta(hours=12)
    html = operator.get(created["Location"]).content.decode()
    url = f"http://testserver{KioskService.path(link=link, destination='battery')}"
    assert url.replace("&", "&amp;") in html or url in html
    qr_src = f"{reverse('kiosk-qr', args=[link.pk])}?to=battery"
    assert f'src="{qr_src}"' in html
    svg = operator.get(qr_src)
    assert svg.status_code == 200 and svg["Content-Type"] == "image/svg+xml"
    body = svg.content.decode()
    assert body.startswith("<svg") and "<script" not in body and "style=" not in body
    assert "no-store" in svg["Cache-Control"]
    assert 'id="loopback-warning"' not in html  # testserver is a name phones could reach
    local = operator.get(created["Location"], headers={"host": "127.0.0.1:8000"}).content.decode()
    assert 'id="loopback-warning"' in local and "a phone cannot open a code made here" in local


def test_phone_form_rejects_bad_input_and_stores_nothing(rig):
    operator = client_for("operator")
    for data, message in (
        ({"name": "  ", "group": "", "valid_for": "12h"}, "needs a name"),
        ({"name": "x" * 101, "group": "", "valid_for": "12h"}, "too long"),
        ({"name": "Phone", "group": "nope", "valid_for": "12h"}, "does not exist"),
        ({"name": "Phone", "group": "", "valid_for": "forever"}, "how long"),
    ):
        response = operator.post(reverse("phone"), data)
        assert response.status_code == 400 and message in response.content.decode()
    assert not KioskLink.objects.exists()


def test_phone_page_offers_existing_links_and_refuses_dead_ones(rig):
    live = KioskService.create(name="Wrangler phone")
    dead = KioskService.create(name="Lost phone")
    KioskService.revoke(links=[dead])
    operator = client_for("operator")
    html = operator.get(reverse("phone")).content.decode()
    assert "Wrangler phone" in html and "Lost phone" not in html
    assert "revoked or has expired" in operator.get(f"{reverse('phone')}?link={dead.pk}").content.decode()
    assert operator.get(reverse("kiosk-qr", args=[dead.pk])).status_code == 404
    assert operator.get(reverse("kiosk-qr", args=[live.pk])).status_code == 200
    assert client_for("viewer").get(reverse("kiosk-qr", args=[live.pk])).status_code == 403
    kiosk, _ = open_kiosk(live)
    assert kiosk.get(reverse("kiosk-qr", args=[live.pk])).status_code == 302  # no user: to the login page


# --- admin -----------------------------------------------------------------------------------------


def test_admin_creates_a_link_and_shows_its_url_and_qr_code(admin_client, rig):
    response = admin_client.post(
        reverse("admin:micboard_kiosklink_add"),
        {"name": "FOH tablet", "group": "", "expires_at_0": "", "expires_at_1": ""},
        follow=True,
    )
    link = KioskLink.objects.get()
    assert response.redirect_chain[-1][0] == reverse("admin:micboard_kiosklink_change", args=[link.pk])
    html = response.content.decode()
    assert KioskService.token(link=link) in html and "created" in html
    assert f'src="{reverse("kiosk-qr", args=[link.pk])}?to=battery"' in html
    assert link.token_id and link.created_by.is_superuser


def test_admin_refuses_an_expiry_in_the_past(admin_client):
    past = timezone.localtime() - timedelta(days=1)
    response = admin_client.post(reverse("admin:micboard_kiosklink_add"), {
        "name": "Old", "group": "", "expires_at_0": past.strftime("%Y-%m-%d"), "expires_at_1": "10:00:00",
    })
    assert response.status_code == 200 and "The expiry must be in the future" in response.content.decode()
    assert not KioskLink.objects.exists()


def test_admin_revoke_action_needs_its_permission(admin_client, rig):
    link = KioskService.create(name="FOH tablet")
    url = reverse("admin:micboard_kiosklink_changelist")
    staff = make_user("tech", role=None, is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_kiosklink", "change_kiosklink"]))
    limited = Client()
    limited.force_login(staff)
    assert "Revoke" not in limited.get(url).content.decode()
    limited.post(url, {"action": "revoke", "_selected_action": [str(link.pk)]})
    link.refresh_from_db()
    assert link.revoked_at is None
    response = admin_client.post(url, {"action": "revoke", "_selected_action": [str(link.pk)]}, follow=True)
    link.refresh_from_db()
    assert link.revoked_at is not None and "Revoked 1 kiosk link" in response.content.decode()
    change = admin_client.get(reverse("admin:micboard_kiosklink_change", args=[link.pk])).content.decode()
    assert "Revoked" in change and KioskService.token(link=link) not in change


# --- every view, every role ---------------------------------------------------------------------------

# "metrics": Prometheus scrapes it without a session; it is protected by the metrics token or the
# allow-listed addresses (tests/test_metrics.py), not by roles.
PUBLIC_URLS = {"healthz", "manifest", "favicon", "login", "logout", "kiosk-open", "metrics"}
# A signed-in user's own settings: a viewer writes these for themselves only (tests/test_subscription_views.py).
OWN_ACCOUNT_URLS = {"alert-subscription", "alert-subscription-test", "alert-subscription-delete"}


def crew_urls(ids: dict[str, int]):
    """Every named URL of micboard's own views (the admin has its own checks), for real objects.

    ``ids`` maps a URL name's first word (channel, scene, group, slot, kiosk) to the pk to use.
    """
    from web.urls import urlpatterns

    out = []
    for pattern in urlpatterns:
        name = getattr(pattern, "name", None)
        if name and name not in PUBLIC_URLS:
            kwargs = {key: 1 if key == "slot" else ids[name.split("-")[0]] for key in pattern.pattern.converters}
            out.append((name, reverse(name, kwargs=kwargs)))
    return out


def test_every_crew_view_refuses_strangers_and_every_write_refuses_viewers_and_kiosks(rig):
    """Roles are enforced on every view and partial: a view added without a decorator fails here."""
    link = KioskService.create(name="Wall")
    scene = SceneService.create_scene(name="Act 1")
    band = rig.channels.get(number=1).group_slots.get().group
    scan = DiscoveryService.request_discovery(scope="127.0.0.0/30")
    urls = crew_urls({"channel": rig.channels.get(number=1).pk, "scene": scene.pk, "group": band.pk,
                      "slot": band.pk, "kiosk": link.pk, "discovery": scan.pk, "alert": 1})
    assert len(urls) > 20
    anonymous, no_role, viewer = Client(), client_for("none"), client_for("viewer")
    kiosk, _ = open_kiosk(link)
    for name, url in urls:
        page = anonymous.get(url)
        if page.status_code == 405:  # a POST-only action: refused before anything else
            assert no_role.get(url).status_code == 405, name
        else:
            assert page.status_code == 302 and page["Location"].startswith(reverse("login")), name
            htmx = anonymous.get(url, headers=HX)
            assert "login" in (htmx.get("HX-Redirect") or htmx.get("Location", "")), name
            assert no_role.get(url).status_code == 403, name
        post = anonymous.post(url, {"name": "Mallory"})
        assert post.status_code == 405 or post["Location"].startswith(reverse("login")), name
        for client in (kiosk, no_role) if name in OWN_ACCOUNT_URLS else (viewer, kiosk, no_role):
            assert client.post(url, {"name": "Mallory"}).status_code in (403, 405), name
    assert not KioskLink.objects.exclude(pk=link.pk).exists() and KioskLink.objects.get().revoked_at is None
    assert [s.name for s in Scene.objects.all()] == ["Act 1"] and Group.objects.count() == 2
    assert BoardService.board().tiles[0].performer == ""  # nobody's POST changed a name
