"""The board in Chromium: changes made in the simulator appear on the tiles."""

from playwright.sync_api import expect

from e2e.conftest import allow_console_errors
from micboard.services import GroupService

# 3 poll intervals of 0.5 s plus a refresh and a poll's own time: the board must follow within this.
WITHIN_MS = 4000


def tile(page, receiver, number):
    channel = receiver.channels.get(number=number)
    return page.locator(f'article.tile[data-channel-id="{channel.pk}"]')


def test_login_page_guards_the_board(page, live_server, transactional_db):
    page.goto(f"{live_server.url}/")
    expect(page.locator("input[name=password]")).to_be_visible()
    expect(page.locator("#board-grid")).to_have_count(0)


def test_pack_switched_off_in_the_simulator_turns_the_tile_prev_then_back(logged_in, poller, rig, simulator):
    page = logged_in
    lead = tile(page, rig["ulxd"], 1)
    expect(lead).to_have_attribute("data-status", "GOOD", timeout=WITHIN_MS)
    expect(lead).to_contain_text("Lead Vox")
    simulator.pack_off("ulxd", 1)
    expect(lead).to_have_attribute("data-status", "PREV_GOOD", timeout=WITHIN_MS)
    simulator.pack_on("ulxd", 1)
    expect(lead).to_have_attribute("data-status", "GOOD", timeout=WITHIN_MS)


def test_stopped_receiver_shows_rx_com_error_and_recovers(logged_in, poller, rig, simulator):
    page = logged_in
    ad_tiles = [tile(page, rig["ad"], n) for n in range(1, 5)]
    expect(ad_tiles[0]).to_have_attribute("data-status", "GOOD", timeout=WITHIN_MS)
    simulator.power_off("ad")
    for t in ad_tiles:
        expect(t).to_have_attribute("data-status", "RX_COM_ERROR", timeout=WITHIN_MS)
    expect(tile(page, rig["ulxd"], 1)).to_have_attribute("data-status", "GOOD")  # the others carry on
    simulator.power_on("ad")
    # Back-off is capped at 1 s in these settings; the tiles must come back by themselves.
    expect(ad_tiles[0]).to_have_attribute("data-status", "GOOD", timeout=WITHIN_MS + 2000)


def test_axient_tile_shows_a_rf_bar_per_antenna(logged_in, poller, rig):
    page = logged_in
    romeo, lead = tile(page, rig["ad"], 1), tile(page, rig["ulxd"], 1)
    bars = romeo.get_by_role("meter", name="RF antenna")
    expect(bars).to_have_count(2, timeout=WITHIN_MS)
    expect(bars.first).to_have_accessible_name("RF antenna A, active")
    expect(bars.nth(1)).to_be_visible()
    expect(romeo.get_by_role("meter", name="RF level")).to_have_count(0)
    expect(lead.get_by_role("meter", name="RF antenna")).to_have_count(0)  # ULX-D: one RF figure
    expect(lead.get_by_role("meter", name="RF level", exact=True)).to_be_visible()
    box = romeo.locator(".meter-row").first.bounding_box()
    assert box is not None and box["height"] == lead.locator(".meter-row").first.bounding_box()["height"]


def test_hostile_channel_name_from_a_device_is_shown_as_text(logged_in, poller, rig, simulator):
    page = logged_in
    # Receivers refuse < and > in names, but allow quotes and &: an unescaped page would show "'& here.
    simulator.set_name("ulxd", 2, "\"'&amp;")
    title = tile(page, rig["ulxd"], 2).locator(".tile-channel, .tile-title")
    expect(title.first).to_contain_text("\"'&amp;", timeout=WITHIN_MS)


def test_unchanged_board_is_not_re_rendered(logged_in, poller, rig, simulator):
    page = logged_in
    expect(tile(page, rig["ulxd"], 1)).to_have_attribute("data-status", "GOOD", timeout=WITHIN_MS)

    def not_modified(response):
        return "/board/grid/" in response.url and response.status == 304

    with page.expect_response(not_modified, timeout=WITHIN_MS):  # the board settled on one version
        pass
    page.evaluate("document.getElementById('board-grid').dataset.marker = 'kept'")
    with page.expect_response(not_modified, timeout=WITHIN_MS):  # another refresh came and went
        pass
    expect(page.locator("#board-grid")).to_have_attribute("data-marker", "kept")


def test_group_tabs_switch_boards_and_keep_blanks(logged_in, poller, rig):
    page = logged_in
    ch = list(rig["ad"].channels.order_by("number"))
    GroupService.set_tiles(name="Cast", channels=[ch[1], None, ch[0]])
    page.reload()
    page.keyboard.press("1")
    expect(page).to_have_url(f"{page.url.split('?')[0]}?group=cast")
    grid = page.locator("#board-grid")
    expect(grid.locator("article.tile")).to_have_count(2)
    expect(grid.locator(".tile-blank")).to_have_count(1)


def test_unreachable_server_is_announced(logged_in, poller, rig):
    page = logged_in
    allow_console_errors(page, "net::ERR_FAILED", "htmx:sendError", "htmx:afterRequest")  # the aborted refreshes
    banner = page.locator("#connection-banner")
    expect(banner).to_be_hidden()
    page.route("**/board/grid/**", lambda route: route.abort())
    expect(banner).to_be_visible(timeout=WITHIN_MS)
    page.unroute("**/board/grid/**")
    expect(banner).to_be_hidden(timeout=WITHIN_MS)


def test_stopped_poller_is_announced_on_the_board(logged_in, poller, rig):
    page = logged_in
    expect(tile(page, rig["ulxd"], 1)).to_have_attribute("data-status", "GOOD", timeout=WITHIN_MS)
    poller.stop()
    # Stale after a lease (6 s) + the poll timeout (1.5 s) + 3 s = 10.5 s here.
    banner = page.locator(".stale-banner")
    expect(banner).to_be_visible(timeout=15000)
    expect(banner).to_contain_text("no data from the poller since")
    age = banner.locator(".stale-age")
    expect(age).to_contain_text("no data for 0:")
    first = age.inner_text()
    expect(age).not_to_have_text(first, timeout=3000)  # the age keeps counting between refreshes


def test_a_refresh_replaces_only_the_tile_that_changed(logged_in, poller, rig, simulator):
    """Changed tiles only: the grid and every unchanged tile keep their DOM elements (and JS state)."""
    page = logged_in
    lead, second = tile(page, rig["ulxd"], 1), tile(page, rig["ulxd"], 2)
    expect(lead).to_have_attribute("data-status", "GOOD", timeout=WITHIN_MS)
    expect(second).to_have_attribute("data-status", "GOOD")

    def not_modified(response):
        return "/board/grid/" in response.url and response.status == 304

    with page.expect_response(not_modified, timeout=WITHIN_MS):  # the board settled: the marks go on a current grid
        pass
    page.evaluate("document.getElementById('board-grid').micboardMark = 'grid'")
    lead.evaluate("element => { element.micboardMark = 'lead' }")
    second.evaluate("element => { element.micboardMark = 'second' }")

    def changed_tiles(response):
        return "/board/grid/" in response.url and response.status == 200 and response.headers.get("hx-reswap") == "none"

    with page.expect_response(changed_tiles, timeout=WITHIN_MS) as answer:
        simulator.pack_off("ulxd", 1)
    assert 'id="board-grid"' not in answer.value.text()
    expect(lead).to_have_attribute("data-status", "PREV_GOOD", timeout=WITHIN_MS)
    expect(lead).to_contain_text("Lead Vox")
    assert lead.evaluate("element => element.micboardMark === undefined")  # the changed tile is a new element
    assert second.evaluate("element => element.micboardMark") == "second"  # the others were not touched
    assert page.evaluate("document.getElementById('board-grid').micboardMark") == "grid"
    expect(page.locator("article.tile")).to_have_count(8)
    with page.expect_response(not_modified, timeout=WITHIN_MS):  # and the screen is current again
        pass
