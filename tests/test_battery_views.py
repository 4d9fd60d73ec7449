"""The phone battery check over HTTP: urgency order, group filter, the shared 304 path, the manifest and icons."""

import json
import re
import struct
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from micboard.services import AssignmentService, BoardService, DeviceService, GroupService, PollOutcome
from micboard.services.battery import BatteryService
from micboard.services.board import BoardData, Tile
from tests.factories import make_receiver, make_user, pack_off, pack_on, reading

pytestmark = pytest.mark.django_db


@pytest.fixture
def rig():
    band = make_receiver(name="Band Rack", model="ULXD4Q")
    cast = make_receiver(name="Cast Rack", model="ULXD4D")
    DeviceService.record_poll_results(
        outcomes=[
            PollOutcome(band.pk, reading=reading(pack_on(1, bars=5, minutes=312, name="Lead Vox"),
                                                 pack_on(2, bars=3, minutes=95), pack_on(3, bars=1, minutes=41),
                                                 pack_off(4))),
            PollOutcome(cast.pk, reading=reading(pack_on(1, bars=2, minutes=12, name="Romeo"),
                                                 pack_on(2, bars=4, minutes=200, name="Juliet"))),
        ]
    )
    AssignmentService.assign(channel=cast.channels.get(number=1), performer="Anna Romeo")
    BoardService.bump_version()
    BoardService.record_heartbeat()
    return {"band": band, "cast": cast}


def statuses_in_order(html: str) -> list[str]:
    return re.findall(r'<li class="pack [^"]*" data-status="([A-Z_]+)"', html)


def listing(client, etag=None, group=""):
    headers = {"HX-Request": "true"}
    if etag:
        headers["If-None-Match"] = etag
    url = reverse("battery-list") + (f"?group={group}" if group else "")
    return client.get(url, headers=headers)


def test_battery_check_requires_login(client, rig):
    response = client.get(reverse("battery"))
    assert response.status_code == 302 and reverse("login") in response["Location"]
    htmx = client.get(reverse("battery-list"), headers={"HX-Request": "true"})
    assert htmx.headers.get("HX-Redirect", "").startswith(reverse("login"))


def test_packs_are_sorted_critical_first_then_by_minutes_left(admin_client, rig):
    html = admin_client.get(reverse("battery")).content.decode()
    # Critical: 0:12 (Anna Romeo) before 0:41; then Replace, then the pack that is off, then the good ones.
    assert statuses_in_order(html) == ["CRITICAL", "CRITICAL", "REPLACE", "TX_COM_ERROR", "GOOD", "GOOD"]
    assert html.index("Anna Romeo") < html.index("0:41") < html.index("1:35") < html.index("3:20") < html.index("5:12")
    assert "Battery 2 of 5 bars" in html and ">Critical<" in html


def test_a_pack_switched_off_shows_when_it_was_last_seen_as_a_fixed_time(admin_client, rig, settings):
    settings.TIME_ZONE = "UTC"
    band = rig["band"]
    DeviceService.record_poll_results(outcomes=[PollOutcome(band.pk, reading=reading(pack_off(1, name="Lead Vox")))])
    BoardService.bump_version()
    html = admin_client.get(reverse("battery")).content.decode()
    seen = band.channels.get(number=1).transmitter.last_seen
    row = html.split('data-status="PREV_GOOD"')[1].split("</li>")[0]
    assert f'last seen <time datetime="{seen.isoformat(timespec="seconds")}">{seen:%H:%M}</time>' in row
    assert "5:12" in row  # the last known runtime stays
    assert " ago" not in html  # nothing relative in a shared render


def test_group_filter_shows_only_that_groups_packs_and_links_work_without_js(admin_client, rig):
    cast = list(rig["cast"].channels.order_by("number"))
    GroupService.set_tiles(name="Cast", channels=[cast[1], None, cast[0]])
    BoardService.bump_version()
    html = admin_client.get(reverse("battery") + "?group=cast").content.decode()
    assert statuses_in_order(html) == ["CRITICAL", "GOOD"]
    assert "Lead Vox" not in html
    assert 'href="/battery/?group=cast" aria-current="page"' in html
    assert 'href="/battery/"' in html  # back to every pack
    gone = admin_client.get(reverse("battery") + "?group=nope", follow=True)  # a deleted group: back to All
    assert gone.redirect_chain == [(reverse("battery"), 302)] and "no longer exists" in gone.content.decode()


def test_refresh_answers_304_when_nothing_changed_and_runs_no_sql(admin_client, rig):
    first = listing(admin_client)
    assert first.status_code == 200 and first["ETag"].startswith('"bat-')
    admin_client.get(reverse("battery"))
    with CaptureQueriesContext(connection) as ctx:
        again = listing(admin_client, etag=first["ETag"])
    assert again.status_code == 304 and again.content == b""
    assert not [q for q in ctx.captured_queries if "micboard_" in q["sql"]]
    band = rig["band"]
    DeviceService.record_poll_results(outcomes=[PollOutcome(band.pk, reading=reading(pack_on(1, bars=1, minutes=5)))])
    BoardService.bump_version()
    changed = listing(admin_client, etag=first["ETag"])
    assert changed.status_code == 200 and changed["ETag"] != first["ETag"]
    assert statuses_in_order(changed.content.decode())[:3] == ["CRITICAL", "CRITICAL", "CRITICAL"]


def test_every_screen_shares_one_render_per_version(admin_client, client, django_user_model, rig):
    client.force_login(make_user("phone"))
    listing(admin_client)
    with CaptureQueriesContext(connection) as ctx:
        assert listing(client).status_code == 200
    assert not [q for q in ctx.captured_queries if "micboard_" in q["sql"]]


def test_the_board_links_the_phone_view(admin_client, rig):
    html = admin_client.get(reverse("board")).content.decode()
    assert 'href="/battery/"' in html


def test_hostile_names_are_escaped(admin_client):
    rx = make_receiver(name="Rack", model="ULXD4")
    evil = "<img src=x onerror=alert(1)>"
    DeviceService.record_poll_results(outcomes=[PollOutcome(rx.pk, reading=reading(pack_on(1, name=evil)))])
    AssignmentService.assign(channel=rx.channels.get(number=1), performer='<script>alert("p")</script>')
    BoardService.bump_version()
    html = admin_client.get(reverse("battery")).content.decode()
    assert evil not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<script>alert" not in html and "&lt;script&gt;alert(&quot;p&quot;)&lt;/script&gt;" in html


def _tile(slot, status, *, minutes=None, bars=None, runtime="", iem=False):
    return Tile(kind="channel", slot=slot, channel_id=slot, status=status, battery_bars=bars,
                runtime_minutes=minutes, runtime_text=runtime, is_iem=iem)


def test_urgency_order_of_every_status():
    tiles = (
        _tile(1, "GOOD", minutes=30, bars=4, runtime="0:30"),
        _tile(2, "PREV_CRITICAL", minutes=10, bars=1, runtime="0:10"),
        _tile(3, "RX_COM_ERROR"),
        _tile(4, "AUDIO_PEAK", minutes=50, bars=3, runtime="0:50"),  # a peak is ranked by its bars: REPLACE
        _tile(5, "REPLACE", minutes=90, bars=3, runtime="1:30"),
        _tile(6, "CRITICAL", runtime="warn", bars=1),  # a runtime warning counts as nothing left
        _tile(7, "CRITICAL", minutes=20, bars=2, runtime="0:20"),
        _tile(8, "GOOD", iem=True),  # in-ear monitor: no pack to swap
        _tile(9, "UNASSIGNED"),
        _tile(10, "BATTERY_UNKNOWN"),
        Tile(kind="blank", slot=11),
    )
    board = BoardData(version="1", group="", groups=(), tiles=tiles, updated_at="")
    rows = BatteryService.rows(board=board)
    assert [r.tile.slot for r in rows] == [6, 7, 4, 5, 2, 3, 10, 1]
    assert [r.urgency for r in rows] == ["critical"] * 2 + ["replace"] * 2 + ["check"] * 3 + ["good"]


def test_manifest_and_icons_make_it_installable(client):
    response = client.get(reverse("manifest"))
    assert response.status_code == 200 and response["Content-Type"] == "application/manifest+json"
    manifest = json.loads(response.content)
    assert manifest["start_url"] == "/battery/" and manifest["display"] == "standalone"
    assert manifest["theme_color"].startswith("#")
    for icon in manifest["icons"]:
        size = int(icon["sizes"].split("x")[0])
        data = (Path(settings.BASE_DIR) / "static" / icon["src"].split("/static/", 1)[1]).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">II", data[16:24]) == (size, size)
        assert client.get(icon["src"]).status_code == 200
    assert {i["sizes"] for i in manifest["icons"]} == {"192x192", "512x512"}


def test_battery_page_links_the_manifest(admin_client, rig):
    html = admin_client.get(reverse("battery")).content.decode()
    assert '<link rel="manifest" href="/manifest.webmanifest">' in html
    assert 'name="theme-color"' in html


def test_stopped_poller_is_announced_on_the_phone_with_a_fixed_time(admin_client, rig):
    fresh = listing(admin_client)
    assert "stale-banner" not in fresh.content.decode()
    BoardService.record_heartbeat(at=1_700_000_000.0)
    stale = listing(admin_client, etag=fresh["ETag"])
    html = stale.content.decode()
    assert stale.status_code == 200 and stale["ETag"] != fresh["ETag"]
    assert 'data-since="2023-11-14T22:13:20+00:00"' in html and "no data from the poller since" in html
