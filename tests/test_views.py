"""The board over HTTP: login, tiles, the 304 path, constant queries, escaping, staleness."""

from html.parser import HTMLParser

import pytest
from django.urls import reverse

from micboard.query_optimization import QueryAnalyzer
from micboard.services import BoardService, DeviceService, GroupService, PollOutcome
from tests.factories import make_receiver, make_user, pack_off, pack_on, reading

pytestmark = pytest.mark.django_db


@pytest.fixture
def rig():
    rx = make_receiver(name="Band Rack", model="ULXD4Q")
    DeviceService.record_poll_results(
        outcomes=[PollOutcome(rx.pk, reading=reading(pack_on(1, bars=5, minutes=312, name="Lead Vox"),
                                                     pack_on(2, bars=3), pack_on(3, bars=1), pack_off(4)))]
    )
    BoardService.bump_version()
    BoardService.record_heartbeat()
    return rx


def grid(client, etag=None, group=""):
    headers = {"HX-Request": "true"}
    if etag:
        headers["If-None-Match"] = etag
    url = reverse("board-grid") + (f"?group={group}" if group else "")
    return client.get(url, headers=headers)


def test_board_requires_login(client, rig):
    response = client.get(reverse("board"))
    assert response.status_code == 302 and reverse("login") in response["Location"]
    htmx = client.get(reverse("board-grid"), headers={"HX-Request": "true"})
    assert htmx.headers.get("HX-Redirect", "").startswith(reverse("login"))


def test_board_renders_a_tile_per_channel_with_status_and_runtime(admin_client, rig):
    html = admin_client.get(reverse("board")).content.decode()
    assert 'id="board-grid"' in html
    assert html.count('data-status="GOOD"') == 1
    assert 'data-status="REPLACE"' in html and 'data-status="CRITICAL"' in html
    assert 'data-status="TX_COM_ERROR"' in html  # pack 4 never seen on
    assert "Lead Vox" in html and "5:12" in html and "578.125" in html


def test_grid_refresh_answers_304_when_nothing_changed(admin_client, rig):
    first = grid(admin_client)
    assert first.status_code == 200 and first["ETag"]
    again = grid(admin_client, etag=first["ETag"])
    assert again.status_code == 304 and again.content == b""
    BoardService.bump_version()
    changed = grid(admin_client, etag=first["ETag"])
    assert changed.status_code == 200 and changed["ETag"] != first["ETag"]


def test_304_path_runs_no_sql(admin_client, rig):
    etag = grid(admin_client)["ETag"]
    admin_client.get(reverse("board"))  # warm the session
    with QueryAnalyzer() as queries:
        assert grid(admin_client, etag=etag).status_code == 304
    # Only the session and user lookups of the login check remain.
    assert queries.touching("micboard_") == []


def _refresh_query_count(client):
    BoardService.bump_version()  # a changed board: the tiles are rebuilt from the database
    with QueryAnalyzer() as queries:
        assert grid(client).status_code == 200
    assert not queries.n_plus_one() and not queries.duplicates(), queries.report()
    return queries.count


def test_board_refresh_query_count_does_not_grow_with_channels(admin_client, rig):
    small = _refresh_query_count(admin_client)
    for n in range(6):
        rx = make_receiver(name=f"Extra {n}", model="AD4Q")
        DeviceService.record_poll_results(
            outcomes=[PollOutcome(rx.pk, reading=reading(*(pack_on(c) for c in range(1, 5)), family="axient"))]
        )
    assert _refresh_query_count(admin_client) == small
    group_channels = [*rig.channels.all(), None, *rx.channels.all()]
    GroupService.set_tiles(name="Band", channels=group_channels)
    BoardService.bump_version()
    with QueryAnalyzer() as queries:
        assert grid(admin_client, group="band").status_code == 200
    assert queries.count == small and not queries.n_plus_one(), queries.report()


def test_group_tab_shows_its_tiles_in_order_with_blanks(admin_client, rig):
    ch = list(rig.channels.order_by("number"))
    GroupService.set_tiles(name="Band", channels=[ch[2], None, ch[0]])
    BoardService.bump_version()
    html = admin_client.get(reverse("board") + "?group=band").content.decode()
    assert html.index('data-status="CRITICAL"') < html.index("tile-blank") < html.index('data-status="GOOD"')
    assert "REPLACE" not in html.split('id="board-grid"')[1].split("</section>")[0]


def test_unknown_group_goes_to_all_with_a_notice(admin_client, rig):
    response = admin_client.get(reverse("board") + "?group=nope", follow=True)
    assert response.redirect_chain == [(reverse("board"), 302)]
    assert "no longer exists" in response.content.decode()


def test_hostile_names_from_devices_are_escaped(admin_client):
    rx = make_receiver(name="Rack", model="ULXD4")
    evil = "<img src=x onerror=alert(1)>"
    DeviceService.record_poll_results(outcomes=[PollOutcome(rx.pk, reading=reading(pack_on(1, name=evil)))])
    BoardService.bump_version()
    html = admin_client.get(reverse("board")).content.decode()
    assert evil not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_stopped_poller_is_announced_and_changes_the_etag(admin_client, rig):
    fresh = grid(admin_client)
    assert "stale" not in fresh.content.decode().lower()
    BoardService.record_heartbeat(at=1_700_000_000.0)
    stale = grid(admin_client, etag=fresh["ETag"])
    assert stale.status_code == 200 and stale["ETag"] != fresh["ETag"]
    html = stale.content.decode()
    assert "no data from the poller since" in html and 'data-since="2023-11-14T22:13:20+00:00"' in html
    # Nothing in the shared render ages: the browser counts the age from data-since.
    assert " s ago" not in html
    assert grid(admin_client, etag=stale["ETag"]).status_code == 304


def test_shared_grid_holds_nothing_user_specific(client):
    """A staff user's render of an empty board must not reach other screens with its admin link."""
    screens = {}
    for name, staff in (("tech", True), ("wrangler", False)):
        screen = type(client)()
        screen.force_login(make_user(name, is_staff=staff))
        screens[name] = screen
    BoardService.record_heartbeat()
    staff_grid = grid(screens["tech"]).content.decode()
    crew_grid = grid(screens["wrangler"]).content.decode()
    assert staff_grid == crew_grid and "No channels to show" in crew_grid
    assert "/admin/" not in crew_grid
    # The page itself (never shared) shows staff where to set up.
    assert "/admin/" in screens["tech"].get(reverse("board")).content.decode().split('id="board-grid"')[0]
    assert "/admin/" not in screens["wrangler"].get(reverse("board")).content.decode()


def test_receiver_offline_tile_says_why(admin_client):
    rx = make_receiver(name="Dead", model="ULXD4")
    DeviceService.record_poll_results(outcomes=[PollOutcome(rx.pk, error="127.0.0.9:2202 refused the connection")])
    DeviceService.record_poll_results(outcomes=[PollOutcome(rx.pk, error="127.0.0.9:2202 refused the connection")])
    BoardService.bump_version()
    html = admin_client.get(reverse("board")).content.decode()
    assert 'data-status="RX_COM_ERROR"' in html and "refused the connection" in html


def test_healthz_reports_poller_state(client, rig):
    healthy = client.get(reverse("healthz"))
    assert healthy.status_code == 200 and healthy.json()["status"] == "ok"
    assert "online" not in healthy.json() and "receivers" not in healthy.json()  # no counts for strangers
    client.force_login(make_user("watcher", role="viewer"))
    assert client.get(reverse("healthz")).json()["online"] == 1
    BoardService.record_heartbeat(at=0)
    response = client.get(reverse("healthz"))
    assert response.status_code == 503 and response.json()["failing"] == ["poller"]
    assert "stopped" in response.json()["checks"]["poller"]


def test_board_views_are_get_only(admin_client, rig):
    assert admin_client.post(reverse("board")).status_code == 405


def test_setup_changes_through_services_reach_the_board_at_once(
    admin_client, rig, django_capture_on_commit_callbacks
):
    from micboard.services import AssignmentService

    etag = grid(admin_client)["ETag"]
    with django_capture_on_commit_callbacks(execute=True):
        AssignmentService.assign(channel=rig.channels.get(number=2), performer="Priya Nair")
    response = grid(admin_client, etag=etag)
    assert response.status_code == 200 and "Priya Nair" in response.content.decode()


BOARD_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def test_board_pages_send_a_strict_content_security_policy(admin_client, rig):
    """django-csp sends the board's policy, directive for directive; the admin (inline code) is left out."""
    csp = admin_client.get(reverse("board"))["Content-Security-Policy"]
    assert sorted(csp.split("; ")) == sorted(BOARD_CSP.split("; "))
    grid_csp = admin_client.get(reverse("board-grid"), headers={"HX-Request": "true"})["Content-Security-Policy"]
    assert grid_csp == csp
    assert "Content-Security-Policy" not in admin_client.get(reverse("admin:index"))


def test_security_headers_come_from_djangos_security_middleware(client):
    response = client.get(reverse("login"))
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]


def test_every_screen_shares_one_render_per_board_version(client, rig, monkeypatch):
    from django.template.loader import render_to_string

    from web import views

    renders = []

    def counting_render(*args, **kwargs):  # a spy on Django's renderer, which still does the work
        renders.append(args[0])
        return render_to_string(*args, **kwargs)

    monkeypatch.setattr(views, "render_to_string", counting_render)
    screens = []
    for name in ("foh", "monitors"):
        screen = type(client)()
        screen.force_login(make_user(name))
        screens.append(screen)
    first, second = (grid(s) for s in screens)
    assert first.content == second.content and first["ETag"] == second["ETag"]
    assert renders == ["micboard/board.html#grid"]
    BoardService.bump_version()
    assert grid(screens[1]).status_code == 200 and grid(screens[0]).status_code == 200
    assert len(renders) == 2  # one render per board version, not per screen


class _TileMeters(HTMLParser):
    """The meters of one tile as a screen reader announces them: (aria-label, aria-valuenow)."""

    def __init__(self, channel_id):
        super().__init__()
        self.channel_id = str(channel_id)
        self.inside = False
        self.meters = []
        self.levels = []  # the lvl-N class of each meter that has one (its drawn length, N = 5 % steps)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "article":
            self.inside = attrs.get("data-channel-id") == self.channel_id
        elif self.inside and attrs.get("role") == "meter":
            self.meters.append((attrs.get("aria-label"), attrs.get("aria-valuenow")))
            self.levels += [c for c in (attrs.get("class") or "").split() if c.startswith("lvl-")]

    def handle_endtag(self, tag):
        if tag == "article":
            self.inside = False


def tile_parser(html, channel):
    parser = _TileMeters(channel.pk)
    parser.feed(html)
    return parser


def tile_meters(html, channel):
    return tile_parser(html, channel).meters


def test_axient_tile_shows_one_rf_meter_per_antenna(admin_client, rig):
    ad = make_receiver(name="Axient Cast", model="AD4D")
    DeviceService.record_poll_results(outcomes=[PollOutcome(ad.pk, reading=reading(
        pack_on(1, antenna_dbm=(-57.0, -61.0), antennas="AI"), family="axient"
    ))])
    BoardService.bump_version()
    html = admin_client.get(reverse("board")).content.decode()
    tile = tile_parser(html, ad.channels.get(number=1))
    # Levels as drawn (5 % steps, half up: the transmitter said 72 % and 65 %), read out as drawn.
    assert tile.meters == [("RF antenna A, active", "70"), ("RF antenna B, inactive", "65"), ("Audio level", "80")]
    assert tile.levels == ["lvl-14", "lvl-13", "lvl-16"]
    # A family with one RF figure keeps its single meter.
    assert tile_meters(html, rig.channels.get(number=1))[0] == ("RF level", "75")


def test_antenna_meters_go_with_the_receiver(admin_client):
    ad = make_receiver(name="Axient Cast", model="AD4D")
    outcome = PollOutcome(ad.pk, reading=reading(pack_on(1, antenna_dbm=(-57.0, -61.0)), family="axient"))
    DeviceService.record_poll_results(outcomes=[outcome])
    for _ in range(2):  # MICBOARD_OFFLINE_AFTER failures in a row
        DeviceService.record_poll_results(outcomes=[PollOutcome(ad.pk, error="timed out")])
    BoardService.bump_version()
    html = admin_client.get(reverse("board")).content.decode()
    assert tile_meters(html, ad.channels.get(number=1)) == [("RF level unknown", None), ("Audio level unknown", None)]


def cache_entries(settings) -> int:
    from django.core.cache import cache

    if settings.REDIS_URL:
        client = cache._cache.get_client()
        return sum(1 for _ in client.scan_iter(match=f"{settings.CACHES['default']['KEY_PREFIX']}:1:*", count=500))
    from pathlib import Path

    return len(list(Path(settings.CACHES["default"]["LOCATION"]).glob("*.djcache")))


def test_rendered_boards_do_not_grow_with_versions(admin_client, rig, settings):
    """Three screens on three groups through hundreds of versions: one cached board and grid per group."""
    channels = list(rig.channels.order_by("number"))
    for name in ("Band", "Cast"):
        GroupService.set_tiles(name=name, channels=channels[:2])
    for _ in range(150):
        BoardService.bump_version()
        for group in ("", "band", "cast"):
            assert grid(admin_client, group=group).status_code == 200
    # Besides a board, a grid and the recent snapshots (web/board_tiles.py) per group: this process's
    # service metrics, the list of processes with metrics, and the receivers' health summary (one
    # entry each, whatever the version).
    assert cache_entries(settings) <= 3 * 3 + 3
    assert BoardService.staleness() == ""  # and the poller's own state is where it was
