"""The JSON API under /api/: roles, tokens, throttling, the error shape, listings and the board's ETag."""

from __future__ import annotations

import json

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.authtoken.models import Token

from micboard.exceptions import (
    AssignmentConflictError,
    ConfigurationError,
    DeviceNotFoundError,
    DeviceOfflineError,
    InvalidReadingError,
)
from micboard.models import Assignment, Location, Manufacturer, RealTimeConnection, Receiver
from micboard.services import (
    AssignmentService,
    BoardService,
    DeviceService,
    GroupService,
    KioskService,
    LocationService,
    PollOutcome,
)
from tests.factories import make_receiver, make_user, pack_off, pack_on, reading

pytestmark = pytest.mark.django_db

HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture
def rig():
    """A polled quad receiver: GOOD, REPLACE, CRITICAL and a pack switched off; Lead Vox on channel 1."""
    rx = make_receiver(name="Band Rack", model="ULXD4Q")
    DeviceService.record_poll_results(
        outcomes=[PollOutcome(rx.pk, reading=reading(pack_on(1, bars=5, minutes=312, name="Lead Vox"),
                                                     pack_on(2, bars=3), pack_on(3, bars=1), pack_off(4)))]
    )
    AssignmentService.assign(channel=rx.channels.get(number=1), performer="Maya")
    GroupService.set_tiles(name="Band", channels=[rx.channels.get(number=1), None, rx.channels.get(number=3)])
    BoardService.bump_version()
    BoardService.record_heartbeat()
    return rx


def client_for(role: str | None, *, token: bool = False) -> Client:
    """A client signed in (session) with ``role``, or sending a token of such a user."""
    user = make_user(f"{role or 'none'}-{'token' if token else 'session'}", role=role)
    client = Client()
    if token:
        client.defaults["HTTP_AUTHORIZATION"] = f"Token {Token.objects.create(user=user).key}"
    else:
        client.force_login(user)
    return client


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "fields"}, body
    return body["error"]


def api(client: Client, method: str, url: str, body=None, **headers):
    data = json.dumps(body) if body is not None else None
    return getattr(client, method)(url, data=data, content_type="application/json", headers=headers)


# --- every endpoint, every role -------------------------------------------------------------------


def endpoints(rig) -> list[tuple[str, str, dict | None]]:
    ch2 = rig.channels.get(number=2)
    assignment = Assignment.objects.get()
    location = LocationService.create_location(name="Stage Left")
    rx, tx, conn = rig.pk, rig.channels.get(number=1).transmitter.pk, rig.connection.pk
    return [
        ("get", "/api/receivers/", None),
        ("get", f"/api/receivers/{rx}/", None),
        ("get", "/api/receivers/online/", None),
        ("get", "/api/receivers/low_battery/?threshold=3", None),
        ("post", f"/api/receivers/{rx}/sync_status/", None),
        ("get", "/api/transmitters/", None),
        ("get", f"/api/transmitters/{tx}/", None),
        ("get", "/api/transmitters/low_battery/", None),
        ("get", "/api/assignments/", None),
        ("post", "/api/assignments/", {"channel": ch2.pk, "performer": "Ola"}),
        ("get", f"/api/assignments/{assignment.pk}/", None),
        ("patch", f"/api/assignments/{assignment.pk}/", {"notes": "spare in case"}),
        ("put", f"/api/assignments/{assignment.pk}/",
         {"channel": assignment.channel_id, "performer": "Maya", "priority": 3, "alerts_enabled": True, "notes": ""}),
        ("get", "/api/locations/", None),
        ("post", "/api/locations/", {"name": "FOH", "description": "front of house rack"}),
        ("get", f"/api/locations/{location.pk}/", None),
        ("put", f"/api/locations/{location.pk}/", {"name": "Stage Left", "description": "SL wing"}),
        ("patch", f"/api/locations/{location.pk}/", {"description": "SL wing, upstage"}),
        ("post", f"/api/locations/{location.pk}/receivers/", {"receivers": [rx]}),
        ("get", "/api/connections/", None),
        ("get", "/api/connections/unhealthy/", None),
        ("post", f"/api/connections/{conn}/heartbeat/", None),
        ("get", "/api/board/", None),
        ("get", "/api/board/?group=band", None),
        ("get", "/api/schema/", None),
        ("delete", f"/api/assignments/{assignment.pk}/", None),
        ("delete", f"/api/locations/{location.pk}/", None),
    ]


WRITES = {"post", "put", "patch", "delete"}


def test_anonymous_and_kiosk_get_401_and_no_data_on_every_endpoint(rig):
    link = KioskService.create(name="Wall")
    kiosk = Client()
    assert kiosk.get(KioskService.path(link=link)).status_code == 302  # a kiosk screen now
    for method, url, body in endpoints(rig):
        response = api(Client(), method, url, body)
        assert response.status_code == 401, (method, url, response.status_code)
        assert response["WWW-Authenticate"] == "Token"
        assert error_of(response)["code"] == "not_authenticated"
        assert response["X-API-Version"] == "1"
        # A kiosk screen is read-only and has no API access: 401 to reads, and its writes are refused
        # (403) by the kiosk middleware before they reach the API.
        screen = api(kiosk, method, url, body)
        assert screen.status_code == (403 if method in WRITES else 401), (method, url, screen.status_code)
        for answer in (response, screen):
            assert "Band Rack" not in answer.content.decode() and "Maya" not in answer.content.decode()
    assert Assignment.objects.count() == 1 and Location.objects.count() == 1


@pytest.mark.parametrize("token", [False, True], ids=["session", "token"])
def test_a_user_without_a_role_is_refused_everywhere(rig, token):
    client = client_for(None, token=token)
    for method, url, body in endpoints(rig):
        response = api(client, method, url, body)
        assert response.status_code == 403, (method, url)
        assert "no role" in error_of(response)["message"]
    assert Assignment.objects.get().performer.name == "Maya"


@pytest.mark.parametrize("token", [False, True], ids=["session", "token"])
def test_a_viewer_reads_everything_and_writes_nothing(rig, token):
    client = client_for("viewer", token=token)
    version = BoardService.version()
    for method, url, body in endpoints(rig):
        response = api(client, method, url, body)
        if method in WRITES:
            assert response.status_code == 403, (method, url)
            assert error_of(response)["code"] == "permission_denied"
            assert "operator role" in error_of(response)["message"]
        else:
            assert response.status_code == 200, (method, url, response.content[:300])
    assert Assignment.objects.get().notes == "" and Location.objects.get().name == "Stage Left"
    assert BoardService.version() == version


@pytest.mark.parametrize(
    ("role", "token"), [("operator", False), ("operator", True), ("admin", False), ("admin", True)],
    ids=["operator-session", "operator-token", "admin-session", "admin-token"],
)
def test_operators_and_admins_read_and_write_every_endpoint(rig, role, token):
    client = client_for(role, token=token)
    expected = {"post": {200, 201, 202}, "put": {200}, "patch": {200}, "delete": {204}, "get": {200}}
    for method, url, body in endpoints(rig):
        response = api(client, method, url, body)
        assert response.status_code in expected[method], (method, url, response.status_code, response.content[:300])
        assert response["X-API-Version"] == "1"
    assert [a.performer.name for a in Assignment.objects.all()] == ["Ola"]  # Ola added on ch 2, Maya's deleted
    assert Location.objects.get().name == "FOH"
    assert Receiver.objects.get().location is None  # moved to Stage Left, which was then deleted


def test_session_writes_need_the_csrf_token(rig):
    user = make_user("op", role="operator")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = api(client, "post", "/api/locations/", {"name": "FOH"})
    assert response.status_code == 403 and "CSRF" in error_of(response)["message"]
    assert not Location.objects.exists()
    client.get("/accounts/login/")  # sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    assert api(client, "post", "/api/locations/", {"name": "FOH"}, **{"X-CSRFToken": token}).status_code == 201


def test_tokens_revoked_in_the_admin_stop_working(rig):
    client = client_for("operator", token=True)
    assert client.get("/api/receivers/").status_code == 200
    user = Token.objects.get().user
    admin = Client()
    admin.force_login(make_user("boss", role="admin"))
    page = admin.get(f"/admin/authtoken/tokenproxy/{user.pk}/delete/")
    assert page.status_code == 200
    assert admin.post(f"/admin/authtoken/tokenproxy/{user.pk}/delete/", {"post": "yes"}).status_code == 302
    refused = client.get("/api/receivers/")
    assert refused.status_code == 401 and error_of(refused)["code"] == "authentication_failed"


def test_admins_create_tokens_in_the_admin(rig):
    user = make_user("script", role="viewer")
    admin = Client()
    admin.force_login(make_user("boss", role="admin"))
    assert admin.post("/admin/authtoken/tokenproxy/add/", {"user": user.pk}).status_code == 302
    key = Token.objects.get(user=user).key
    assert Client().get("/api/receivers/", headers={"Authorization": f"Token {key}"}).status_code == 200


# --- what the endpoints say and do ------------------------------------------------------------------


def test_receivers_list_shows_channels_performers_and_link(rig):
    body = client_for("viewer").get("/api/receivers/").json()
    assert body["count"] == 1
    rx = body["results"][0]
    assert rx["name"] == "Band Rack" and rx["online"] is True and rx["manufacturer"]["slug"] == "shure"
    assert rx["connection"]["status"] == "connected"
    assert [c["status"] for c in rx["channels"]] == ["GOOD", "REPLACE", "CRITICAL", "TX_COM_ERROR"]
    assert rx["channels"][0]["performer"] == "Maya"


def test_low_battery_lists_follow_the_threshold_and_refuse_a_bad_one(rig):
    client = client_for("viewer")
    quiet = make_receiver(name="Spare Rack", model="ULXD4D")
    DeviceService.record_poll_results(outcomes=[PollOutcome(quiet.pk, reading=reading(pack_on(1, bars=5)))])
    assert [r["name"] for r in client.get("/api/receivers/low_battery/").json()["results"]] == ["Band Rack"]
    assert client.get("/api/receivers/low_battery/?threshold=0").json()["count"] == 0
    packs = client.get("/api/transmitters/low_battery/").json()["results"]
    assert [(p["channel_number"], p["battery_bars"]) for p in packs] == [(3, 1)]
    assert [p["battery_bars"] for p in client.get("/api/transmitters/low_battery/?threshold=3").json()["results"]] \
        == [3, 1]
    bad = client.get("/api/receivers/low_battery/?threshold=9")
    assert bad.status_code == 400 and error_of(bad)["fields"] == {"threshold": [
        "A whole number of battery bars from 0 to 5."]}
    assert client.get("/api/receivers/online/").json()["count"] == 2


def test_sync_status_asks_the_poller_and_never_talks_to_the_device(rig):
    conn = rig.connection
    conn.next_attempt_at = timezone.now() + timezone.timedelta(minutes=5)
    conn.save()
    response = api(client_for("operator"), "post", f"/api/receivers/{rig.pk}/sync_status/")
    assert response.status_code == 202 and response.json()["poll_requested"] is True
    conn.refresh_from_db()
    assert conn.next_attempt_at is None  # due in the next cycle
    assert [t.receiver_id for t in DeviceService.due_targets()] == [rig.pk]
    DeviceService.set_active(receivers=[rig], active=False)
    off = api(client_for("admin"), "post", f"/api/receivers/{rig.pk}/sync_status/")
    assert off.status_code == 503 and error_of(off)["code"] == "device_offline"


def test_unhealthy_connections_and_heartbeat(rig):
    client = client_for("operator")
    assert client.get("/api/connections/unhealthy/").json()["count"] == 0
    DeviceService.record_poll_results(outcomes=[PollOutcome(rig.pk, error="connection refused")])
    rows = client.get("/api/connections/unhealthy/").json()["results"]
    assert [(r["receiver_name"], r["consecutive_failures"], r["last_error"]) for r in rows] == [
        ("Band Rack", 1, "connection refused")]
    RealTimeConnection.objects.update(next_attempt_at=timezone.now() + timezone.timedelta(minutes=5))
    beat = api(client, "post", f"/api/connections/{rig.connection.pk}/heartbeat/").json()
    assert beat["healthy"] is False and beat["poll_requested"] is True and "connection refused" in beat["message"]
    assert RealTimeConnection.objects.get().next_attempt_at is None


def test_assignment_writes_go_through_the_services_and_update_the_board(rig, django_capture_on_commit_callbacks):
    client = client_for("operator")
    ch2 = rig.channels.get(number=2)
    before = BoardService.version()
    with django_capture_on_commit_callbacks(execute=True):
        created = api(client, "post", "/api/assignments/", {"channel": ch2.pk, "performer": HOSTILE, "priority": 4})
    assert created.status_code == 201 and created.json()["performer"] == HOSTILE
    assert BoardService.version() != before
    tile = next(t for t in client.get("/api/board/").json()["tiles"] if t["channel_id"] == ch2.pk)
    assert tile["performer"] == HOSTILE and tile["title"] == HOSTILE  # JSON carries it as text
    taken = api(client, "post", "/api/assignments/", {"channel": ch2.pk, "performer": "Ola"})
    assert taken.status_code == 409 and error_of(taken)["code"] == "conflict"
    assert "already assigned" in error_of(taken)["message"]
    pk = created.json()["id"]
    moved = api(client, "patch", f"/api/assignments/{pk}/", {"channel": rig.channels.get(number=1).pk})
    assert moved.status_code == 409  # Maya is on channel 1
    same = api(client, "patch", f"/api/assignments/{pk}/", {"performer": "maya"})
    assert same.status_code == 200 and same.json()["performer"] == "Maya"  # existing performer, ignoring case
    assert api(client, "delete", f"/api/assignments/{pk}/").status_code == 204
    assert not Assignment.objects.filter(channel=ch2).exists()


def test_validation_errors_name_the_field(rig):
    client = client_for("operator")
    missing = api(client, "post", "/api/assignments/", {"channel": rig.channels.get(number=2).pk})
    assert missing.status_code == 400 and list(error_of(missing)["fields"]) == ["performer"]
    blank = api(client, "post", "/api/locations/", {"name": "  "})
    assert blank.status_code == 400 and "name" in error_of(blank)["fields"]
    unknown = api(client, "post", "/api/assignments/", {"channel": 99999, "performer": "Ola"})
    assert unknown.status_code == 400 and "channel" in error_of(unknown)["fields"]
    LocationService.create_location(name="FOH")
    dup = api(client, "post", "/api/locations/", {"name": "foh"})
    assert dup.status_code == 400 and "exists already" in error_of(dup)["message"]
    assert Location.objects.count() == 1 and Assignment.objects.count() == 1


def test_moving_receivers_is_all_or_nothing(rig):
    client = client_for("operator")
    other = make_receiver(name="IEM Rack", model="P10T")
    sl = LocationService.create_location(name="Stage Left")
    bad = api(client, "post", f"/api/locations/{sl.pk}/receivers/", {"receivers": [rig.pk, 424242]})
    assert bad.status_code == 404 and "424242" in error_of(bad)["message"]
    assert not Receiver.objects.filter(location=sl).exists()
    ok = api(client, "post", f"/api/locations/{sl.pk}/receivers/", {"receivers": [rig.pk, other.pk]})
    assert ok.status_code == 200 and ok.json()["receiver_count"] == 2
    names = [r["name"] for r in client.get(f"/api/receivers/?location={sl.pk}").json()["results"]]
    assert names == ["Band Rack", "IEM Rack"]


def test_errors_have_one_shape(rig):
    client = client_for("viewer")
    missing = client.get("/api/receivers/999999/")
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"
    nowhere = client.get("/api/nowhere/")
    assert nowhere.status_code == 404 and error_of(nowhere)["code"] == "not_found"
    assert nowhere["X-API-Version"] == "1"
    method = api(client_for("operator"), "delete", f"/api/receivers/{rig.pk}/")
    assert method.status_code == 405 and error_of(method)["code"] == "method_not_allowed"
    group = client.get("/api/board/?group=gone")
    assert group.status_code == 404 and error_of(group)["code"] == "not_found"


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (DeviceNotFoundError("No receiver 7"), 404, "not_found"),
        (AssignmentConflictError("taken"), 409, "conflict"),
        (InvalidReadingError("impossible"), 422, "invalid_reading"),
        (DeviceOfflineError("offline"), 503, "device_offline"),
        (ConfigurationError("bad"), 400, "invalid"),
    ],
)
def test_domain_exceptions_map_to_http_codes(exc, status, code):
    from web.api.exceptions import api_exception_handler

    response = api_exception_handler(exc, {})
    assert response.status_code == status
    assert response.data == {"error": {"code": code, "message": str(exc), "fields": {}}}


# --- pagination, filters, ordering, query counts --------------------------------------------------


@pytest.fixture
def many(rig):
    sennheiser = Manufacturer.objects.create(name="Sennheiser", slug="sennheiser")
    sl = LocationService.create_location(name="Stage Left")
    LocationService.create_location(name="FOH")
    for n in range(6):
        rx = make_receiver(name=f"Rack {n}", model="ULXD4D", manufacturer=sennheiser if n % 2 else None,
                           location=sl if n < 3 else None)
        if n < 4:
            DeviceService.record_poll_results(outcomes=[PollOutcome(rx.pk, reading=reading(pack_on(1), pack_on(2)))])
    return sl


def test_pagination_filters_and_ordering(many):
    client = client_for("viewer")
    page = client.get("/api/receivers/?page_size=3&ordering=-name").json()
    assert page["count"] == 7 and [r["name"] for r in page["results"]] == ["Rack 5", "Rack 4", "Rack 3"]
    assert "page=2" in page["next"]
    second = client.get(page["next"]).json()
    assert [r["name"] for r in second["results"]] == ["Rack 2", "Rack 1", "Rack 0"]
    names = lambda q: [r["name"] for r in client.get(f"/api/receivers/?{q}").json()["results"]]  # noqa: E731
    assert names("manufacturer=sennheiser") == ["Rack 1", "Rack 3", "Rack 5"]
    assert names("location=stage%20left") == ["Rack 0", "Rack 1", "Rack 2"]
    assert names(f"location={many.pk}&online=true") == ["Rack 0", "Rack 1", "Rack 2"]
    assert names("online=false") == ["Rack 4", "Rack 5"]
    assert names("ordering=online,name")[:2] == ["Rack 4", "Rack 5"]
    bad = client.get("/api/receivers/?online=maybe")
    assert bad.status_code == 400 and list(error_of(bad)["fields"]) == ["online"]
    packs = client.get("/api/transmitters/?manufacturer=sennheiser&online=true&ordering=id").json()
    assert packs["count"] == 4  # Rack 1 and Rack 3, two channels each


@pytest.mark.parametrize(
    "url", ["/api/receivers/", "/api/transmitters/", "/api/assignments/", "/api/connections/", "/api/locations/"]
)
def test_query_count_does_not_depend_on_page_size(many, url, django_assert_num_queries):
    for n in range(3):
        AssignmentService.assign(channel=Receiver.objects.get(name=f"Rack {n}").channels.get(number=1),
                                 performer=f"Singer {n}")
    client = client_for("viewer", token=True)
    with CaptureQueriesContext(connection) as small:
        assert len(client.get(f"{url}?page_size=1").json()["results"]) == 1
    with django_assert_num_queries(len(small.captured_queries)):
        assert len(client.get(f"{url}?page_size=200").json()["results"]) > 1


# --- the board --------------------------------------------------------------------------------------


def test_board_returns_what_the_board_shows(rig):
    body = client_for("viewer", token=True).get("/api/board/?group=band").json()
    board = BoardService.board(group="band")
    assert body["version"] == board.version and body["group"] == "band"
    assert [(t["kind"], t["slot"], t["title"], t["status"]) for t in body["tiles"]] == [
        (t.kind, t.slot, t.title, t.status) for t in board.tiles]
    first = body["tiles"][0]
    shown = (first["title"], first["battery_bars"], first["runtime_text"], first["status"])
    assert shown == ("Maya", 5, "5:12", "GOOD")
    assert body["tiles"][1]["kind"] == "blank"
    assert [g["slug"] for g in body["groups"]] == ["band"]


def test_board_etag_answers_304_without_sql(rig):
    client = client_for("viewer", token=True)
    first = client.get("/api/board/")
    assert first.status_code == 200 and first["ETag"]
    with CaptureQueriesContext(connection) as ctx:
        again = client.get("/api/board/", headers={"If-None-Match": first["ETag"]})
    assert again.status_code == 304 and again.content == b"" and again["X-API-Version"] == "1"
    assert [q["sql"] for q in ctx.captured_queries if "micboard_" in q["sql"]] == []
    BoardService.bump_version()
    changed = client.get("/api/board/", headers={"If-None-Match": first["ETag"]})
    assert changed.status_code == 200 and changed["ETag"] != first["ETag"]
    other_group = client.get("/api/board/?group=band", headers={"If-None-Match": changed["ETag"]})
    assert other_group.status_code == 200


# --- throttling ---------------------------------------------------------------------------------------


def rates(user: str, anon: str):
    return override_settings(
        REST_FRAMEWORK={**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"user": user, "anon": anon}}
    )


def test_users_are_throttled_with_retry_after(rig):
    client = client_for("viewer", token=True)
    other = client_for("operator")
    with rates("3/minute", "100/minute"):
        assert [client.get("/api/receivers/").status_code for _ in range(3)] == [200, 200, 200]
        throttled = client.get("/api/board/")
        assert throttled.status_code == 429 and error_of(throttled)["code"] == "throttled"
        assert 0 < int(throttled["Retry-After"]) <= 60 and throttled["X-API-Version"] == "1"
        assert other.get("/api/receivers/").status_code == 200  # per user


def test_anonymous_clients_are_throttled(rig):
    with rates("100/minute", "2/minute"):
        assert [Client().get("/api/receivers/").status_code for _ in range(2)] == [401, 401]
        throttled = Client().get("/api/receivers/", headers={"X-Forwarded-For": "10.9.8.7"})  # no dodging it
        assert throttled.status_code == 429 and "Retry-After" in throttled
        assert client_for("viewer").get("/api/receivers/").status_code == 200


# --- schema and docs ------------------------------------------------------------------------------------


def test_schema_and_docs_are_served_locally_to_viewers(rig):
    assert Client().get("/api/schema/").status_code == 401
    client = client_for("viewer")
    schema = client.get("/api/schema/?format=json")
    assert schema.status_code == 200 and schema.json()["openapi"].startswith("3.")
    assert "/api/receivers/{id}/sync_status/" in schema.json()["paths"]
    docs = client.get("/api/docs/")
    html = docs.content.decode()
    assert docs.status_code == 200 and "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
    assert "<style" not in html and "<script>" not in html and "//cdn" not in html
    assert "unsafe-inline" not in docs["Content-Security-Policy"]
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200 and "/api/schema/" in script.content.decode()
    assert Client().get("/api/docs/").status_code == 401


def test_schema_validates(tmp_path):
    from django.core.management import call_command

    out = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    text = out.read_text()
    assert "/api/board/:" in text and "ErrorDetail" in text


def test_heartbeat_of_a_healthy_link_asks_for_nothing(rig):
    beat = api(client_for("operator", token=True), "post", f"/api/connections/{rig.connection.pk}/heartbeat/").json()
    assert beat == {"receiver": "Band Rack", "healthy": True, "message": "answering, 3 ms", "poll_requested": False}
