"""Changed tiles only (issue 8 §3): a refresh sends the tiles that changed since the client's grid."""

import gzip
import re

import pytest
from django.urls import reverse

from micboard.query_optimization import QueryAnalyzer
from micboard.services import BoardService, DeviceService, GroupService, PollOutcome
from micboard.services.board import level, whole_dbm
from tests.factories import make_receiver, make_user, pack_off, pack_on, reading
from web.board_tiles import RING_SIZE, TileRenders

pytestmark = pytest.mark.django_db

TILE = re.compile(r"<(article|div) ([^>]*)>")


@pytest.fixture
def rig():
    rx = make_receiver(name="Band Rack", model="ULXD4Q")
    poll(rx, pack_on(1, name="Lead Vox"), pack_on(2, bars=3), pack_on(3, bars=1), pack_off(4))
    BoardService.record_heartbeat()
    return rx


def poll(rx, *channels):
    """One poll's readings for ``rx``, then the version bump the poll cycle does when something changed."""
    DeviceService.record_poll_results(outcomes=[PollOutcome(rx.pk, reading=reading(*channels))])
    BoardService.bump_version()


class Screen:
    """A board screen that refreshes as static/js/board.js does: it sends back its ETag and snapshot id."""

    def __init__(self, client, group=""):
        self.client = client
        self.group = group
        self.etag = self.state = ""

    def refresh(self, *, htmx=True):
        headers = {"HX-Request": "true"} if htmx else {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.state:
            headers["X-Board-State"] = self.state
        url = reverse("board-grid") + (f"?group={self.group}" if self.group else "")
        response = self.client.get(url, headers=headers)
        if response.status_code == 200:
            meta = re.search(r'<div id="board-meta"[^>]*>', response.content.decode()).group(0)
            self.etag = re.search(r'data-etag="([^"]*)"', meta).group(1).replace("&quot;", '"')
            self.state = re.search(r'data-state="([^"]*)"', meta).group(1)
            assert self.etag == response["ETag"]
        return response


def is_whole_grid(response) -> bool:
    return 'id="board-grid"' in response.content.decode() and "HX-Reswap" not in response


def swapped_tiles(response) -> list[str]:
    """The ids of the tiles an answer swaps out of band."""
    return [
        re.search(r'id="(tile-\d+)"', attrs).group(1)
        for _, attrs in TILE.findall(response.content.decode())
        if 'hx-swap-oob="true"' in attrs and 'id="tile-' in attrs
    ]


def slot(rx, number):
    return f"tile-{rx.channels.get(number=number).board_position}"


def test_a_refresh_sends_only_the_tiles_that_changed(admin_client, rig):
    screen = Screen(admin_client)
    assert is_whole_grid(screen.refresh())
    poll(rig, pack_on(1, name="Lead Vox"), pack_on(2, bars=1), pack_on(3, bars=1), pack_off(4))
    changed = screen.refresh()
    assert changed.status_code == 200 and changed["HX-Reswap"] == "none"
    assert swapped_tiles(changed) == [slot(rig, 2)]  # the one tile whose battery fell, nothing else
    body = changed.content.decode()
    assert 'data-status="CRITICAL"' in body and "Lead Vox" not in body and 'id="board-grid"' not in body
    assert 'id="board-meta" hx-swap-oob="true"' in body  # the next ETag and state travel with it
    assert "board-banners" not in body  # unchanged banners are not sent (a role=alert would speak again)
    assert screen.refresh().status_code == 304  # and the screen is current again


def test_values_are_compared_as_the_tile_shows_them(admin_client, rig):
    """A meter moving inside its 5 % step or the RF level inside its whole dBm changes nothing on screen."""
    assert level(72) == 70 and level(73) == 75 and whole_dbm(-55.3) == -55.0
    screen = Screen(admin_client)
    screen.refresh()
    poll(rig, pack_on(1, name="Lead Vox", rf_dbm=-55.3, audio_dbfs=-19.0), pack_on(2, bars=3), pack_on(3, bars=1),
         pack_off(4))
    same = screen.refresh()
    assert same.status_code == 200 and swapped_tiles(same) == []  # a new version, the same screen
    poll(rig, pack_on(1, name="Lead Vox", audio_dbfs=-10.0), pack_on(2, bars=3), pack_on(3, bars=1), pack_off(4))
    louder = screen.refresh()
    assert swapped_tiles(louder) == [slot(rig, 1)] and 'aria-valuenow="90"' in louder.content.decode()


def test_the_whole_grid_when_the_client_is_behind_or_elsewhere(admin_client, rig):
    screen = Screen(admin_client)
    screen.refresh()
    first_state = screen.state
    poll(rig, pack_on(1, name="Lead Vox"), pack_on(2, bars=1), pack_on(3, bars=1), pack_off(4))
    assert not is_whole_grid(screen.refresh())

    # A snapshot nobody knows (or one evicted long ago): the whole grid.
    screen.state = "0123456789abcdef"
    poll(rig, pack_on(1, name="Lead Vox"), pack_on(2, bars=2), pack_on(3, bars=1), pack_off(4))
    assert is_whole_grid(screen.refresh())

    # Too far behind: RING_SIZE newer screens later, the first one is forgotten.
    for minutes in range(RING_SIZE + 1):
        poll(rig, pack_on(1, name="Lead Vox", minutes=100 + minutes), pack_on(2, bars=2), pack_on(3, bars=1),
             pack_off(4))
        assert screen.refresh().status_code == 200
    screen.state = first_state
    BoardService.bump_version()
    assert is_whole_grid(screen.refresh())

    # Without htmx (no JavaScript): always the whole grid.
    BoardService.bump_version()
    assert is_whole_grid(screen.refresh(htmx=False))


def test_another_group_or_another_layout_gets_the_whole_grid(admin_client, rig):
    channels = list(rig.channels.order_by("number"))
    GroupService.set_tiles(name="Band", channels=channels[:2])
    everything = Screen(admin_client)
    everything.refresh()
    band = Screen(admin_client, group="band")
    band.etag, band.state = everything.etag, everything.state  # a screen that just switched groups
    BoardService.bump_version()
    switched = band.refresh()
    assert is_whole_grid(switched) and switched.content.decode().count("<article") == 2

    # A receiver added: tiles appear, so the grid is sent whole (no tile moves out of its place).
    make_receiver(name="Extra", model="ULXD4D")
    BoardService.bump_version()
    grown = everything.refresh()
    assert is_whole_grid(grown) and grown.content.decode().count("<article") == 6


def test_more_than_half_the_tiles_changed_sends_the_shared_grid(admin_client, rig):
    screen = Screen(admin_client)
    screen.refresh()
    poll(rig, pack_on(1, name="Lead Vox", bars=1), pack_on(2, bars=1), pack_on(3, bars=5), pack_off(4))
    assert is_whole_grid(screen.refresh())


def test_a_stopped_poller_sends_the_whole_grid_greyed(admin_client, rig):
    screen = Screen(admin_client)
    screen.refresh()
    BoardService.record_heartbeat(at=1_700_000_000.0)
    stale = screen.refresh()
    assert is_whole_grid(stale) and "board-stale" in stale.content.decode()
    BoardService.record_heartbeat()
    fresh = screen.refresh()
    assert is_whole_grid(fresh) and "board-stale" not in fresh.content.decode()


def test_a_receiver_that_stops_answering_brings_its_banner_with_its_tiles(admin_client, rig):
    other = make_receiver(name="Drum Rack", model="ULXD4D")
    poll(other, pack_on(1), pack_on(2))
    screen = Screen(admin_client)
    screen.refresh()
    for _ in range(2):  # MICBOARD_OFFLINE_AFTER failures in a row
        DeviceService.record_poll_results(outcomes=[PollOutcome(other.pk, error="timed out")])
    BoardService.bump_version()
    down = screen.refresh()
    assert sorted(swapped_tiles(down)) == sorted([slot(other, 1), slot(other, 2)])
    body = down.content.decode()
    assert 'id="board-banners" class="board-banners" hx-swap-oob="true"' in body
    assert "1 receiver not answering: Drum Rack" in body


def test_the_first_refresh_after_the_page_loads_is_already_a_delta(admin_client, rig):
    page = admin_client.get(reverse("board")).content.decode()
    screen = Screen(admin_client)
    screen.state = re.search(r'<div id="board-meta"[^>]*data-state="([^"]+)"', page).group(1)
    screen.etag = re.search(r'<div id="board-meta"[^>]*data-etag="([^"]+)"', page).group(1).replace("&quot;", '"')
    assert screen.refresh().status_code == 304
    poll(rig, pack_on(1, name="Lead Vox"), pack_on(2, bars=1), pack_on(3, bars=1), pack_off(4))
    assert swapped_tiles(screen.refresh()) == [slot(rig, 2)]


def test_a_changed_board_costs_one_build_and_unchanged_tiles_are_not_rendered_again(client, rig, monkeypatch):
    """Two screens and several refreshes share one render per displayed state."""
    from django.template.backends.django import Template

    renders = []
    render = Template.render

    def counting_render(self, context=None, request=None):  # a spy on Django's renderer, which still renders
        renders.append(self.template.name)
        return render(self, context, request)

    TileRenders.clear()
    monkeypatch.setattr(Template, "render", counting_render)
    screens = []
    for name in ("foh", "monitors"):
        c = type(client)()
        c.force_login(make_user(name))
        screens.append(Screen(c))
    for s in screens:
        s.refresh()
    assert renders.count("tile") == 4  # four tiles, four states, two screens
    second = slot(rig, 2)
    poll(rig, pack_on(1, name="Lead Vox"), pack_on(2, bars=1), pack_on(3, bars=1), pack_off(4))
    with QueryAnalyzer() as queries:
        assert swapped_tiles(screens[0].refresh()) == [second]
    assert queries.touching("micboard_channel")  # the changed board was built once, from the database
    with QueryAnalyzer() as queries:
        assert swapped_tiles(screens[1].refresh()) == [second]
    assert queries.touching("micboard_") == []  # the other screen's answer came from the cache
    assert renders.count("tile") == 5  # only the changed tile's new state was rendered


def test_a_browser_gets_the_grid_compressed_and_still_its_304(admin_client, rig):
    """Tablets on venue Wi-Fi get the grid gzipped; the ETag turns weak then and must still match."""
    url = reverse("board-grid")
    first = admin_client.get(url, headers={"HX-Request": "true", "Accept-Encoding": "gzip"})
    assert first["Content-Encoding"] == "gzip" and "Accept-Encoding" in first["Vary"]
    html = gzip.decompress(first.content).decode()
    assert 'id="board-grid"' in html and len(first.content) < len(html) / 3
    weak = first["ETag"]
    assert weak.startswith('W/"b-')
    again = admin_client.get(url, headers={"HX-Request": "true", "Accept-Encoding": "gzip", "If-None-Match": weak})
    assert again.status_code == 304
    strong = re.search(r'data-etag="([^"]*)"', html).group(1).replace("&quot;", '"')
    assert admin_client.get(url, headers={"HX-Request": "true", "If-None-Match": strong}).status_code == 304
