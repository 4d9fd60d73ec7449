"""Performers and scenes in Chromium: the channel drawer, a scene switch seen by a second screen, group editing."""

import re

import pytest
from playwright.sync_api import expect

from e2e.conftest import screenshot
from micboard.models import Channel, Scene
from micboard.services import AssignmentService, GroupService, SceneService
from tests import factories

PASSWORD = "e2e-pass-123"
WITHIN_MS = 4000




def login(page, live_server, username):
    page.goto(f"{live_server.url}/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_selector("#board-grid")
    return page


def make_user(username, role):
    return factories.make_user(username, role=role, password=PASSWORD)


@pytest.fixture
def operator(page, live_server, transactional_db, django_user_model):
    make_user("operator", "operator")
    return login(page, live_server, "operator")


@pytest.fixture
def second_screen(browser, live_server, transactional_db, django_user_model):
    """Another browser (its own context and session) showing the board, failing on any JS or CSP error."""
    make_user("foh", "viewer")
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    screen = context.new_page()
    errors = []
    screen.on("pageerror", lambda exc: errors.append(str(exc)))
    screen.on("console", lambda msg: errors.append(msg.text) if msg.text.startswith("Refused to") else None)
    yield login(screen, live_server, "foh")
    context.close()
    assert not errors, f"JavaScript or CSP errors on the second screen: {errors}"


def tile(page, channel):
    return page.locator(f'article.tile[data-channel-id="{channel.pk}"]')


def test_drawer_opens_from_a_tile_assigns_a_performer_and_survives_refreshes(operator, poller, rig):
    page = operator
    lead = rig["ulxd"].channels.get(number=1)
    AssignmentService.assign(channel=rig["ulxd"].channels.get(number=2), performer="Jonas Berg")
    expect(tile(page, lead)).to_have_attribute("data-status", "GOOD", timeout=WITHIN_MS)
    tile(page, lead).click()
    drawer = page.locator("#channel-drawer")
    expect(drawer).to_be_visible()
    expect(drawer.locator(".drawer-title")).to_have_text("No performer")
    expect(drawer).to_contain_text("ULX-D Band")
    expect(drawer).to_contain_text(rig["ulxd"].address)
    expect(drawer.locator(".reading-status")).to_have_text("Good")
    expect(drawer).to_contain_text("of 5 bars")
    drawer.get_by_label("Assign a performer").fill("Ada Lovelace")
    with page.expect_response(lambda r: "/board/grid/" in r.url and r.status == 200, timeout=WITHIN_MS):
        drawer.get_by_role("button", name="Assign").click()
        expect(drawer.locator(".drawer-notice")).to_have_text("Ada Lovelace is on this channel now.")
    expect(tile(page, lead).locator(".tile-title")).to_have_text("Ada Lovelace", timeout=WITHIN_MS)
    # The grid was swapped (new board version); the drawer stays open and keeps the form's answer.
    expect(drawer).to_be_visible()
    expect(drawer.locator(".drawer-title")).to_have_text("Ada Lovelace")
    expect(tile(page, lead)).to_have_class(re.compile(r"\btile-selected\b"))
    screenshot(page, "drawer", readme=True)
    # A taken channel: the form says who has it and stores nothing.
    tile(page, rig["ulxd"].channels.get(number=3)).click()
    expect(drawer.locator(".drawer-title")).to_have_text("No performer")
    AssignmentService.assign(channel=rig["ulxd"].channels.get(number=3), performer="Priya Nair")  # another operator
    drawer.get_by_label("Assign a performer").fill("Ada Lovelace")
    drawer.get_by_role("button", name="Assign").click()
    expect(drawer.get_by_role("alert")).to_contain_text("is already taken by Priya Nair")
    screenshot(page, "drawer-conflict")
    page.keyboard.press("Escape")
    expect(drawer).to_be_hidden()


def test_a_scene_switch_reaches_a_second_screen_within_one_refresh(
    operator, second_screen, rig, e2e_settings, live_server
):
    channels = list(Channel.objects.filter(receiver__in=rig.values()).order_by("board_position"))  # board order
    for n, channel in enumerate(channels, start=1):
        AssignmentService.assign(channel=channel, performer=f"Act one {n}")
    act1 = SceneService.create_scene(name="Act 1", notes="overture to the interval")
    act2 = SceneService.create_scene(name="Act 2", notes="after the interval")
    SceneService.update_scene(
        scene=act2, name="Act 2", notes="after the interval",
        performers={c.pk: f"Act two {n}" for n, c in enumerate(channels, start=1)},
    )
    SceneService.activate(scene=act1)
    board = second_screen
    board.reload()
    titles = board.locator("article.tile .tile-title")
    expect(titles).to_have_text([f"Act one {n}" for n in range(1, len(channels) + 1)])

    page = operator
    page.goto(f"{live_server.url}/scenes/")
    expect(page.locator(".scene-active")).to_contain_text("Act 1")
    page.get_by_role("button", name="Activate Act 2").click()
    expect(page.get_by_role("status")).to_contain_text("Act 2 is active: 8 channel(s) changed")
    expect(page.locator(".scene-active")).to_contain_text("Act 2")
    screenshot(page, "scenes", readme=True, full_page=True)

    # One refresh interval plus the request's own time; every name changes in the same swap.
    refresh_ms = e2e_settings.MICBOARD_REFRESH_INTERVAL * 1000
    expect(titles.first).to_have_text("Act two 1", timeout=2 * refresh_ms + 1500)
    assert titles.all_inner_texts() == [f"Act two {n}" for n in range(1, len(channels) + 1)]
    screenshot(board, "scene-switch-second-screen")
    assert Scene.objects.get(active=True) == act2


def test_scene_list_prints_black_on_white_without_buttons(operator, rig, live_server):
    SceneService.create_scene(name="Act 1")
    page = operator
    page.goto(f"{live_server.url}/scenes/")
    page.emulate_media(media="print")
    expect(page.get_by_role("button", name="Activate Act 1")).to_be_hidden()
    expect(page.locator(".app-bar")).to_be_hidden()
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(255, 255, 255)"
    expect(page.locator(".scene-sheet")).to_contain_text("ULX-D Band ch 1")


def test_operator_reorders_a_group_and_adds_a_channel_found_by_performer(operator, rig, live_server):
    ulxd = list(rig["ulxd"].channels.order_by("number"))
    romeo = rig["ad"].channels.get(number=1)
    AssignmentService.assign(channel=romeo, performer="Romeo Montague")
    GroupService.set_tiles(name="Band", channels=[ulxd[0], None, ulxd[1]])
    page = operator
    page.goto(f"{live_server.url}/groups/")
    page.get_by_role("link", name="Band").click()
    slots = page.locator("#slot-list > li")
    expect(slots).to_have_count(3)
    page.get_by_role("button", name="Move tile 1 down").click()
    expect(slots.nth(0)).to_contain_text("BLANK")
    expect(slots.nth(1)).to_contain_text("ULX-D Band ch 1")
    page.get_by_label("Search channels, receivers or performers").fill("romeo")
    results = page.locator("#channel-results li")
    expect(results).to_have_count(1)
    expect(results.first).to_contain_text("Romeo Montague")
    results.first.get_by_role("button", name="Add").click()
    expect(slots).to_have_count(4)
    expect(slots.nth(3)).to_contain_text("Romeo Montague")
    screenshot(page, "groups", full_page=True)
    page.get_by_role("link", name="Show on the board").click()
    grid = page.locator("#board-grid")
    expect(grid.locator(".tile").nth(0)).to_have_class("tile tile-blank")
    expect(tile(page, ulxd[0])).to_have_attribute("id", "tile-2")
    expect(tile(page, romeo)).to_have_attribute("id", "tile-4")
