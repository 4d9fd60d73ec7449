"""Cached sessions and access decisions: a board refresh does no SQL, and no change outlives its request.

A screen refreshes its grid every second or so; the session, the user, the role and the kiosk link
come from the cache (``web.sessions``, ``web.access``). Every change that matters to who may see the
board is refused on the very next request, exactly as without a cache, and a cache or coordination
store that is down means the database decides.
"""

import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group as AuthGroup
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from micboard.services import (
    BoardService,
    DeviceService,
    GroupEditService,
    GroupService,
    KioskService,
    PollOutcome,
    RoleService,
)
from tests.factories import make_receiver, make_user, pack_on, reading

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}
NO_ROLE = "Ask your production manager for a role"
DEAD_REDIS = "redis://127.0.0.1:1/0"  # loopback, nothing listens: connection refused at once


@pytest.fixture
def rig():
    rx = make_receiver(name="Band Rack", model="ULXD4Q")
    DeviceService.record_poll_results(
        outcomes=[PollOutcome(rx.pk, reading=reading(pack_on(1, name="Lead Vox"), pack_on(2, name="Bass")))]
    )
    GroupService.set_tiles(name="Band", channels=list(rx.channels.order_by("number"))[:1])
    BoardService.bump_version()
    BoardService.record_heartbeat()
    return rx


def grid(client, etag="", group=""):
    headers = {**HX, "If-None-Match": etag} if etag else HX
    return client.get(reverse("board-grid") + (f"?group={group}" if group else ""), headers=headers)


def refresh_without_sql(client, group=""):
    """Load the grid, then refresh it unchanged: the 304 must not touch the database at all."""
    first = grid(client, group=group)
    assert first.status_code == 200 and "Lead Vox" in first.content.decode()
    with CaptureQueriesContext(connection) as queries:
        again = grid(client, first["ETag"], group=group)
    assert again.status_code == 304, again.content.decode()[:300]
    assert [q["sql"] for q in queries.captured_queries] == []
    return first["ETag"]


def signed_in(user):
    client = Client()
    client.force_login(user)
    return client


def open_kiosk(link):
    client = Client()
    assert client.get(KioskService.path(link=link)).status_code == 302
    return client


def to_login(response):
    return response.status_code == 200 and response["HX-Redirect"].startswith(reverse("login"))


# --- no SQL on a refresh ---------------------------------------------------------------------------


def test_unchanged_refresh_of_a_signed_in_viewer_does_no_sql(rig):
    client = signed_in(make_user("wrangler", role="viewer"))
    etag = refresh_without_sql(client)
    with CaptureQueriesContext(connection) as queries:  # and it stays so
        for _ in range(3):
            assert grid(client, etag).status_code == 304
    assert len(queries) == 0


def test_the_first_refresh_after_signing_in_through_the_form_does_no_user_or_role_query(rig):
    make_user("crew", role="operator", password="pw-123-crew")
    client = Client()
    assert client.post(reverse("login"), {"username": "crew", "password": "pw-123-crew"}).status_code == 302
    with CaptureQueriesContext(connection) as queries:
        assert grid(client).status_code == 200
    sql = " ".join(q["sql"] for q in queries.captured_queries)
    assert "auth_user" not in sql and "auth_group" not in sql and "django_session" not in sql
    refresh_without_sql(client)


def test_unchanged_refresh_of_a_kiosk_screen_does_no_sql(rig):
    client = open_kiosk(KioskService.create(name="FOH tablet"))
    refresh_without_sql(client)


def test_unchanged_refresh_of_a_scoped_kiosk_does_no_sql_and_stays_in_its_group(rig):
    band = rig.channels.get(number=1).group_slots.get().group
    client = open_kiosk(KioskService.create(name="Band tablet", group=band))
    refresh_without_sql(client, group="band")
    assert grid(client).status_code == 403 and grid(client, group="cast").status_code == 403


# --- the next request after a change ---------------------------------------------------------------


def test_role_taken_away_refuses_the_next_refresh(rig):
    user = make_user("wrangler", role="viewer")
    client = signed_in(user)
    etag = refresh_without_sql(client)
    user.groups.clear()
    refused = grid(client, etag)
    assert refused.status_code == 403 and NO_ROLE in refused.content.decode()


def test_role_given_by_adding_the_user_to_the_group_from_its_side_takes_effect_at_once(rig):
    user = make_user("wrangler", role=None)
    client = signed_in(user)
    assert grid(client).status_code == 403
    AuthGroup.objects.get(name="viewer").user_set.add(user)
    assert grid(client).status_code == 200
    refresh_without_sql(client)
    AuthGroup.objects.get(name="viewer").user_set.remove(user)
    assert grid(client).status_code == 403


def test_a_renamed_role_group_no_longer_grants_its_role(rig):
    client = signed_in(make_user("wrangler", role="viewer"))
    etag = refresh_without_sql(client)
    viewer = AuthGroup.objects.get(name="viewer")
    viewer.name = "former viewers"
    viewer.save()
    assert grid(client, etag).status_code == 403


def test_demoted_operator_loses_the_operator_pages_at_once(rig):
    user = make_user("stage", role="operator")
    client = signed_in(user)
    assert client.get(reverse("phone")).status_code == 200
    refresh_without_sql(client)
    RoleService.grant(user=user, role="viewer")
    assert client.get(reverse("phone")).status_code == 403
    assert grid(client).status_code == 200


def test_deactivated_user_is_sent_to_log_in_on_the_next_refresh(rig):
    user = make_user("wrangler", role="viewer")
    client = signed_in(user)
    etag = refresh_without_sql(client)
    user.is_active = False
    user.save()
    assert to_login(grid(client, etag))


def test_superuser_flag_taken_away_takes_effect_at_once(rig, django_user_model):
    boss = django_user_model.objects.create_superuser("boss", password=None)
    client = signed_in(boss)
    refresh_without_sql(client)
    boss.is_superuser = False
    boss.is_staff = False
    boss.save()
    assert grid(client).status_code == 403


def test_changed_password_signs_out_every_session_on_its_next_refresh(rig):
    user = make_user("wrangler", role="viewer")
    client = signed_in(user)
    etag = refresh_without_sql(client)
    user.set_password("a-new-secret-42")
    user.save()
    assert to_login(grid(client, etag))
    assert "_auth_user_id" not in client.session


def test_deleted_user_is_sent_to_log_in(rig):
    user = make_user("wrangler", role="viewer")
    client = signed_in(user)
    etag = refresh_without_sql(client)
    user.delete()
    assert to_login(grid(client, etag))


def test_session_deleted_elsewhere_is_signed_out_on_the_next_refresh(rig):
    from django.contrib.sessions.models import Session

    client = signed_in(make_user("wrangler", role="viewer"))
    etag = refresh_without_sql(client)
    Session.objects.all().delete()
    assert to_login(grid(client, etag))


def test_revoked_kiosk_is_refused_on_the_next_refresh(rig):
    link = KioskService.create(name="FOH tablet")
    client = open_kiosk(link)
    etag = refresh_without_sql(client)
    KioskService.revoke(links=[link])
    refused = grid(client, etag)
    assert refused.status_code == 403 and "This kiosk link was revoked" in refused.content.decode()


def test_deleted_kiosk_link_is_refused_on_the_next_refresh(rig):
    link = KioskService.create(name="FOH tablet")
    client = open_kiosk(link)
    etag = refresh_without_sql(client)
    link.delete()
    refused = grid(client, etag)
    assert refused.status_code == 403 and "no longer exists" in refused.content.decode()


def test_kiosk_expiry_moved_into_the_past_is_refused_on_the_next_refresh(rig):
    link = KioskService.create(name="FOH tablet", valid_for=timedelta(hours=6))
    client = open_kiosk(link)
    etag = refresh_without_sql(client)
    link.expires_at = link.created_at
    link.save()
    refused = grid(client, etag)
    assert refused.status_code == 403 and "This kiosk link has expired" in refused.content.decode()


def test_kiosk_expiring_by_the_clock_is_not_shown_a_moment_longer(rig):
    link = KioskService.create(name="Tonight", valid_for=timedelta(seconds=2))
    client = open_kiosk(link)
    etag = refresh_without_sql(client)
    deadline = time.monotonic() + 10
    while KioskService.state(link=link) != "expired" and time.monotonic() < deadline:
        time.sleep(0.05)  # waiting on the clock itself: the link's expiry is the condition
    # The kiosk session ends with its link (as without a cache): the screen is sent away, never served.
    refused = grid(client, etag)
    assert to_login(refused) and "Lead Vox" not in refused.content.decode()
    assert client.get(reverse("board")).status_code == 302


def test_a_scoped_kiosk_follows_its_group_being_renamed(rig):
    band = rig.channels.get(number=1).group_slots.get().group
    client = open_kiosk(KioskService.create(name="Band tablet", group=band))
    refresh_without_sql(client, group="band")
    GroupEditService.rename_group(group=band, name="Horns")
    refused = grid(client, group="cast")
    assert refused.status_code == 403 and "shows only Horns" in refused.content.decode()


# --- a cache or coordination store that is down -----------------------------------------------------


@pytest.fixture
def cache_down(settings):
    dead = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": DEAD_REDIS,
        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    }
    settings.CACHES = {"default": dead, "access": dead}  # board renders, sessions and access decisions
    return settings


@pytest.fixture
def cache_folder_unusable(settings, tmp_path):
    """The embedded default's cache folder turned into a file: every cache call fails."""
    blocked = tmp_path / "cache"
    blocked.write_text("not a directory")
    unusable = {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": str(blocked)}
    settings.CACHES = {"default": unusable, "access": unusable}
    return settings


@pytest.fixture
def everything_down(cache_down):
    cache_down.REDIS_URL = DEAD_REDIS  # the coordination store too
    return cache_down


@pytest.mark.parametrize("outage", ["cache_down", "cache_folder_unusable", "everything_down"])
def test_with_the_cache_down_the_database_grants_and_refuses(rig, outage, request):
    user = make_user("wrangler", role="viewer")
    viewer = signed_in(user)
    stranger = signed_in(make_user("stranger", role=None))
    link = KioskService.create(name="FOH tablet")
    kiosk = open_kiosk(link)
    assert grid(viewer).status_code == 200 and grid(kiosk).status_code == 200  # kept while the cache worked
    request.getfixturevalue(outage)
    assert grid(viewer).status_code == 200 and grid(kiosk).status_code == 200
    assert grid(stranger).status_code == 403 and to_login(grid(Client()))
    user.groups.clear()
    KioskService.revoke(links=[link])
    assert grid(viewer).status_code == 403
    assert grid(kiosk).status_code == 403
    user.is_active = False
    user.save()
    assert to_login(grid(viewer))
    assert to_login(grid(signed_in(user)))
