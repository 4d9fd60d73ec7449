"""Alerts on the screens in Chromium, raised by the simulator through a real link holder (issue 10, acceptance).

A pack drains past the battery threshold: its tile flashes on the FOH board, the badge counts it and the
phone lists it; an operator acknowledges it on the phone and both screens say who did, from where; a
battery swap resolves it and it leaves both. An RF fade raises a dropout on the board that clears when RF
returns. The optional sound plays once for a new open alert.
"""

import re

import pytest
from playwright.sync_api import expect

from e2e.conftest import PASSWORD, screenshot
from micboard.models import Alert
from micboard.services import AssignmentService
from tests.factories import make_user, wait_for

WITHIN_MS = 5000  # a poll, an evaluation (every second) and a refresh, with a margin for a loaded machine
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1"
)


@pytest.fixture
def alert_settings(e2e_settings):
    e2e_settings.MICBOARD_ALERT_RF_SECONDS = 1
    return e2e_settings


@pytest.fixture
def phone(browser):
    """A second screen: a phone (iPhone user agent, portrait), failing on any console or CSP error."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, user_agent=IPHONE, is_mobile=True)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    yield page
    context.close()
    assert not errors, f"JavaScript, CSP or console errors on the phone: {errors}"


def sign_in(page, live_server, username, role, path="/"):
    make_user(username, role=role, password=PASSWORD)
    page.goto(f"{live_server.url}{path}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit], input[type=submit]")


def tile(page, channel):
    return page.locator(f'article.tile[data-channel-id="{channel.pk}"]')


def test_a_drained_pack_alerts_on_board_and_phone_is_acknowledged_on_the_phone_and_resolves_with_a_swap(
    logged_in, phone, live_server, poller, rig, simulator, alert_settings
):
    board = logged_in
    channel = rig["ulxd"].channels.get(number=1)
    AssignmentService.assign(channel=channel, performer="Lead Vocal")
    board.goto(f"{live_server.url}/")
    expect(tile(board, channel)).to_have_attribute("data-status", "GOOD", timeout=WITHIN_MS)
    expect(board.locator("#alerts-badge")).to_have_text("No alerts")
    sign_in(phone, live_server, "alex", "operator", path="/battery/")
    expect(phone.locator("#alerts-badge")).to_have_text("No alerts")
    expect(phone.locator("#alerts-panel")).to_be_hidden()  # nothing to list: the badge alone says so

    # The FOH tablet turns the sound on (a click: the browser lets the page make sound from then on).
    sound = board.locator("#alerts-sound")
    expect(sound).to_have_text("Sound off")
    sound.click()
    expect(sound).to_have_attribute("aria-pressed", "true")
    expect(sound).to_have_text("Sound on")
    assert board.evaluate("localStorage.getItem('micboard.alertSound')") == "on"

    for percent in (60, 35, 15):  # the pack drains: one bar left is past the threshold
        simulator.set_battery("ulxd", 1, percent)
    flashing = tile(board, channel)
    expect(flashing).to_have_class(re.compile(r"\btile-alert-open\b"), timeout=WITHIN_MS)
    expect(flashing.locator(".tile-alert-text")).to_have_text("Battery low")
    assert flashing.evaluate("e => getComputedStyle(e).animationName") == "alert-flash"
    expect(board.locator("#alerts-badge")).to_have_attribute("data-open", "1")
    expect(board.locator("#alerts-badge")).to_contain_text("1 open")
    expect(sound).to_have_attribute("data-played", "1", timeout=WITHIN_MS)  # one tone for the new alert

    item = phone.locator("#alerts-list li.alert-item").filter(has_text="Lead Vocal")
    expect(item).to_have_attribute("data-state", "open", timeout=WITHIN_MS)
    expect(item).to_contain_text("Battery low: 1 bar")
    expect(item.locator(".alert-age")).to_have_text(re.compile(r"^\d+ s ago$"))  # counted in the browser
    expect(phone.locator("#alerts-badge")).to_contain_text("1 open")
    screenshot(phone, "alerts-phone")
    item.get_by_role("button", name="Acknowledge").click()
    expect(phone.locator(".alerts-notice")).to_have_text("Acknowledged: Battery low on Lead Vocal.")
    expect(item).to_have_attribute("data-state", "acknowledged")
    expect(item.locator(".alert-state")).to_contain_text("Acknowledged by alex from phone · Safari on iPhone")
    expect(phone.locator("#alerts-badge")).to_contain_text("1 acknowledged")

    expect(flashing).to_have_class(re.compile(r"\btile-alert-acknowledged\b"), timeout=WITHIN_MS)
    assert flashing.evaluate("e => getComputedStyle(e).animationName") == "none"  # marked, no longer flashing
    expect(board.locator("#alerts-badge")).to_have_attribute("data-acknowledged", "1", timeout=WITHIN_MS)
    board.locator("#alerts-badge").click()  # opens the list in place
    board_item = board.locator("#alerts-panel li.alert-item").filter(has_text="Lead Vocal")
    expect(board_item).to_be_visible()
    expect(board_item.locator(".alert-state")).to_contain_text("Acknowledged by alex from phone · Safari on iPhone")
    screenshot(board, "alerts-board")
    assert sound.get_attribute("data-played") == "1"  # acknowledged: no second tone

    simulator.set_battery("ulxd", 1, 100)  # a fresh pack
    expect(tile(board, channel)).not_to_have_class(re.compile(r"\btile-alert\b"), timeout=WITHIN_MS)
    expect(board.locator("#alerts-panel .alert-none")).to_be_visible(timeout=WITHIN_MS)
    expect(board.locator("#alerts-badge")).to_have_text("No alerts")
    expect(phone.locator("#alerts-list .alert-none")).to_be_attached(timeout=WITHIN_MS)
    expect(phone.locator("#alerts-badge")).to_have_text("No alerts")
    expect(phone.locator("#alerts-panel")).to_be_hidden()


def test_an_rf_fade_raises_a_dropout_on_the_board_that_clears_when_rf_returns(
    logged_in, live_server, poller, rig, simulator, alert_settings
):
    board = logged_in
    channel = rig["ulxd"].channels.get(number=2)
    AssignmentService.assign(channel=channel, performer="Guitar")
    board.goto(f"{live_server.url}/")
    expect(tile(board, channel)).to_have_attribute("data-status", "GOOD", timeout=WITHIN_MS)
    simulator.rf_loss("ulxd", 2)
    expect(tile(board, channel)).to_have_class(re.compile(r"\btile-alert-open\b"), timeout=WITHIN_MS)
    expect(tile(board, channel).locator(".tile-alert-text")).to_have_text("RF dropout")
    expect(board.locator("#alerts-badge")).to_contain_text("1 open")
    board.emulate_media(reduced_motion="reduce")  # a screen that asks for no motion: steady, not flashing
    assert tile(board, channel).evaluate("e => getComputedStyle(e).animationName") == "none"
    assert "5px" in tile(board, channel).evaluate("e => getComputedStyle(e).boxShadow")
    board.locator("#alerts-badge").click()
    expect(board.locator("#alerts-panel li.alert-item")).to_contain_text("Guitar")
    expect(board.locator("#alerts-panel li.alert-item")).to_contain_text("below -85 dBm")
    simulator.rf_loss("ulxd", 2, on=False)
    expect(tile(board, channel)).not_to_have_class(re.compile(r"\btile-alert\b"), timeout=WITHIN_MS)
    expect(board.locator("#alerts-badge")).to_have_text("No alerts", timeout=WITHIN_MS)


def test_without_javascript_the_badge_leads_to_the_list_and_an_operator_acknowledges_there(
    browser, live_server, poller, rig, simulator, alert_settings
):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    channel = rig["ulxd"].channels.get(number=3)
    AssignmentService.assign(channel=channel, performer="Choir")
    sign_in(page, live_server, "sam", "operator")
    simulator.set_battery("ulxd", 3, 10)
    wait_for(lambda: Alert.objects.filter(channel=channel, state="open").exists(), 5, "open the alert")
    page.goto(f"{live_server.url}/")  # no refreshes without JavaScript: the page as it loads now
    expect(page.locator("#alerts-badge")).to_contain_text("1 open")
    page.locator("#alerts-badge").click()
    expect(page).to_have_url(f"{live_server.url}/alerts/")
    page.get_by_role("button", name="Acknowledge").click()
    expect(page).to_have_url(f"{live_server.url}/alerts/")
    expect(page.locator(".crew-message")).to_have_text("Acknowledged: Battery low on Choir.")
    expect(page.locator("li.alert-item .alert-state")).to_contain_text("Acknowledged by sam from alert list")
    context.close()
