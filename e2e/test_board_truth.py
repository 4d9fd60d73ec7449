"""The board never lies (issue 6, part 1), in Chromium at 1280x800 (tablet) and 1920x1080 (TV)."""

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from e2e.conftest import PollerThread, allow_console_errors, screenshot
from micboard.models import Group
from micboard.services import AssignmentService, BoardService, DeviceService, GroupService
from tests.factories import receivers_for, start_simulator

WITHIN_MS = 4000
ROOT = Path(__file__).resolve().parent.parent
LONG_NAME = "Maximilian Alexander von Hohenzollern-Sigmaringen"[:40]




def tile(page, receiver, number):
    channel = receiver.channels.get(number=number)
    return page.locator(f'article.tile[data-channel-id="{channel.pk}"]')


@pytest.fixture
def full_sim():
    sim = start_simulator(["ulxd", "ad", "qlxd", "slxd", "ad4d", "psm"])
    yield sim
    sim.stop()


@pytest.fixture
def full_rig(transactional_db, full_sim, e2e_settings):
    """The whole demo rig (15 channels) and one receiver nobody answers for: 16 tiles."""
    rig = receivers_for(full_sim, ["ulxd", "ad", "qlxd", "slxd", "ad4d", "psm"])
    rig["dead"] = DeviceService.create_receiver(name="Spare Rack", model="ULXD4", host="127.0.0.1", port=9)
    AssignmentService.assign(channel=rig["ulxd"].channels.get(number=2), performer=LONG_NAME)
    return rig


@pytest.fixture
def full_poller(full_rig, e2e_settings):
    thread = PollerThread()
    thread.start()
    yield thread
    thread.stop()


def settle(page, rig):
    expect(tile(page, rig["ulxd"], 1)).to_have_attribute("data-status", "GOOD", timeout=WITHIN_MS)
    expect(tile(page, rig["psm"], 2)).not_to_have_attribute("data-status", "RX_COM_ERROR", timeout=WITHIN_MS)
    expect(page.locator("article.tile")).to_have_count(16)


def test_16_tiles_fit_a_1280x800_tablet_without_scrolling(logged_in, full_poller, full_rig):
    page = logged_in
    settle(page, full_rig)
    page.reload()
    settle(page, full_rig)
    assert page.evaluate("document.scrollingElement.scrollHeight <= window.innerHeight")
    for box in (t.bounding_box() for t in page.locator("article.tile").all()):
        assert box is not None and box["y"] + box["height"] <= 800
    # A 40-character name stays on one line, ends in "…", and its row keeps the height of the others.
    title = tile(page, full_rig["ulxd"], 2).locator(".tile-title")
    expect(title).to_have_text(LONG_NAME)
    assert title.evaluate("e => e.scrollWidth > e.clientWidth")  # ellipsized
    line = title.evaluate("e => parseFloat(getComputedStyle(e).lineHeight)")
    assert title.bounding_box()["height"] < 1.6 * line
    heights = {round(t.bounding_box()["height"]) for t in page.locator("article.tile").all()}
    assert len(heights) == 1, heights
    screenshot(page, "board", readme=True)
    screenshot(page, "board-1280x800")


def test_tiles_grow_to_fill_a_1920x1080_tv(logged_in, full_poller, full_rig):
    page = logged_in
    settle(page, full_rig)
    small = tile(page, full_rig["ulxd"], 1).locator(".tile-title").evaluate(
        "e => parseFloat(getComputedStyle(e).fontSize)"
    )
    page.set_viewport_size({"width": 1920, "height": 1080})
    page.reload()
    settle(page, full_rig)
    assert page.evaluate("document.scrollingElement.scrollHeight <= window.innerHeight")
    bottom = page.evaluate("document.querySelector('.board-tiles').getBoundingClientRect().bottom")
    assert 1080 - 40 <= bottom <= 1080
    big = tile(page, full_rig["ulxd"], 1).locator(".tile-title").evaluate(
        "e => parseFloat(getComputedStyle(e).fontSize)"
    )
    assert big > small * 1.2  # larger type for the room
    screenshot(page, "board-tv", readme=True)
    screenshot(page, "board-1920x1080")


def test_stopped_poller_greys_every_tile_and_the_age_counts(logged_in, poller, rig):
    page = logged_in
    lead = tile(page, rig["ulxd"], 1)
    expect(lead).to_have_attribute("data-status", "GOOD", timeout=WITHIN_MS)
    runtime = lead.locator(".runtime").inner_text()
    poller.stop()
    banner = page.locator(".stale-banner")
    expect(banner).to_be_visible(timeout=15000)
    expect(page.locator("#board-grid")).to_have_class(re.compile(r"\bboard-stale\b"))
    for t in page.locator("article.tile").all():
        assert "grayscale" in t.evaluate("e => getComputedStyle(e).filter")
    expect(lead.locator(".runtime")).to_have_text(runtime)  # the last values stay, dimmed
    age = banner.locator(".stale-age")
    expect(age).to_contain_text(re.compile(r"no data for \d+:\d\d"))
    first = age.inner_text()
    expect(age).not_to_have_text(first, timeout=3000)  # and the age keeps counting
    screenshot(page, "board-stale")


def test_offline_receiver_keeps_its_last_battery_dimmed_with_last_seen(logged_in, poller, rig, simulator):
    page = logged_in
    romeo = tile(page, rig["ad"], 1)
    expect(romeo).to_have_attribute("data-status", "GOOD", timeout=WITHIN_MS)
    bars = romeo.locator(".battery").get_attribute("data-bars")
    simulator.power_off("ad")
    expect(romeo).to_have_attribute("data-status", "RX_COM_ERROR", timeout=WITHIN_MS)
    battery = romeo.locator(".battery")
    expect(battery).to_have_attribute("data-bars", bars)
    expect(battery).to_have_class(re.compile(r"\bbattery-stale\b"))
    assert float(battery.evaluate("e => getComputedStyle(e).opacity")) < 0.6
    expect(romeo.locator(".runtime")).to_have_text(re.compile(r"^\d+:\d\d$"))
    seen = romeo.locator(".tile-seen")
    expect(seen).to_have_text(re.compile(r"^last seen \d\d:\d\d$"))
    expect(seen.locator("time")).to_have_attribute("datetime", re.compile(r"^\d{4}-\d\d-\d\dT"))
    screenshot(page, "board-offline-receiver")


def test_adding_a_receiver_keeps_every_tile_number(logged_in, poller, rig):
    page = logged_in
    expect(tile(page, rig["ulxd"], 1)).to_have_attribute("data-status", "GOOD", timeout=WITHIN_MS)
    before = {t.get_attribute("data-channel-id"): t.locator(".tile-slot").inner_text()
              for t in page.locator("article.tile").all()}
    # A name that sorts first: until now it would have pushed every other tile down the board.
    DeviceService.create_receiver(name="Aaa Lecterns", model="ULXD4D", host="127.0.0.1", port=9)
    expect(page.locator("article.tile")).to_have_count(len(before) + 2, timeout=WITHIN_MS)
    after = {t.get_attribute("data-channel-id"): t.locator(".tile-slot").inner_text()
             for t in page.locator("article.tile").all()}
    assert {k: after[k] for k in before} == before
    assert sorted(int(v) for k, v in after.items() if k not in before) == [len(before) + 1, len(before) + 2]


def test_deleted_group_sends_the_screen_to_all_with_a_notice(logged_in, poller, rig):
    page = logged_in
    ch = list(rig["ad"].channels.order_by("number"))
    GroupService.set_tiles(name="Cast", channels=[ch[0], None, ch[1]])
    page.goto(page.url.split("?")[0] + "?group=cast")
    expect(page.locator("article.tile")).to_have_count(2)
    Group.objects.filter(slug="cast").delete()
    BoardService.bump_version()
    expect(page.locator(".crew-message")).to_contain_text("no longer exists", timeout=WITHIN_MS)
    assert "group=" not in page.url
    expect(page.locator("article.tile")).to_have_count(8)
    expect(page.locator("#connection-banner")).to_be_hidden()
    expect(page.locator("#group-tabs .tab-active")).to_contain_text("All")


def test_a_refused_refresh_is_not_called_unreachable(logged_in, poller, rig):
    page = logged_in
    allow_console_errors(page, "status of 429", "Error Code 429")  # the refused refreshes
    expect(tile(page, rig["ulxd"], 1)).to_have_attribute("data-status", "GOOD", timeout=WITHIN_MS)
    page.route("**/board/grid/**", lambda route: route.fulfill(status=429, body="slow down"))
    banner = page.locator("#connection-banner")
    expect(banner).to_be_visible(timeout=WITHIN_MS)
    expect(banner).to_contain_text("refused")
    expect(banner).not_to_contain_text("unreachable")
    page.unroute("**/board/grid/**")
    expect(banner).to_be_hidden(timeout=WITHIN_MS)
    # Signed out elsewhere (the session is gone): the screen goes to the login page, not to an outage.
    from django.contrib.sessions.models import Session

    Session.objects.all().delete()
    expect(page.locator("input[name=password]")).to_be_visible(timeout=WITHIN_MS)
    assert "/accounts/login/" in page.url and "next=" in page.url


def test_audio_peak_is_told_from_critical_without_motion(logged_in, poller, rig, simulator):
    page = logged_in
    page.emulate_media(reduced_motion="reduce")
    lead, sax = tile(page, rig["ulxd"], 1), tile(page, rig["ulxd"], 4)
    expect(sax).to_have_attribute("data-status", "CRITICAL", timeout=WITHIN_MS)
    simulator.peak("ulxd", 1)
    expect(lead).to_have_attribute("data-status", "AUDIO_PEAK", timeout=WITHIN_MS)
    expect(lead.locator(".tile-peak-badge")).to_have_text(re.compile("peak", re.I))
    expect(lead.locator(".tile-peak-badge")).to_be_visible()
    expect(sax.locator(".tile-peak-badge")).to_have_count(0)
    assert lead.evaluate("e => getComputedStyle(e).animationName") == "none"  # reduced motion: no flashing
    head = lead.locator("header").evaluate("e => getComputedStyle(e).backgroundImage")
    assert "conic-gradient" in head  # a pattern, not only a colour
    assert "gradient" not in sax.locator("header").evaluate("e => getComputedStyle(e).backgroundImage")
    screenshot(page, "board-peak")


def test_a_vanished_board_address_goes_to_all(logged_in, poller, rig):
    page = logged_in
    allow_console_errors(page, "status of 410", "Error Code 410")  # the refresh of the vanished address
    GroupService.set_tiles(name="Cast", channels=list(rig["ad"].channels.all()))
    page.goto(page.url.split("?")[0] + "?group=cast")
    expect(tile(page, rig["ad"], 1)).to_have_attribute("data-status", "GOOD", timeout=WITHIN_MS)
    with page.expect_navigation(timeout=WITHIN_MS):  # a new page is loaded, no outage announced
        page.route("**/board/grid/**", lambda route: route.fulfill(status=410, body="gone"))
    page.unroute("**/board/grid/**")
    expect(page.locator("#group-tabs .tab-active")).to_contain_text("All")
    assert "group=" not in page.url
    expect(page.locator("#connection-banner")).to_be_hidden()
