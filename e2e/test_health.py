"""The operator health page and the receivers' health signal on the board, in Chromium under the strict CSP."""

from playwright.sync_api import expect

from e2e.conftest import screenshot
from e2e.test_access import sign_in

WITHIN_MS = 6000  # a receiver declared offline: two failed polls, then a refresh


def test_a_receiver_that_stops_answering_shows_on_the_board_and_the_health_page(page, live_server, poller, rig,
                                                                                  simulator):
    sign_in(page, live_server, "rf", "operator")
    page.wait_for_selector("#board-grid")
    expect(page.locator(".receivers-banner")).to_have_count(0)
    simulator.power_off("ad")
    banner = page.locator(".receivers-banner")
    expect(banner).to_contain_text("1 receiver not answering", timeout=WITHIN_MS)
    expect(banner).to_contain_text(rig["ad"].name)
    with page.expect_response(lambda r: r.url.endswith("/health/")) as info:
        page.click("a[href='/health/']")
    assert info.value.status == 200 and info.value.headers["x-micboard-receivers"] == "1 of 2 unhealthy"
    expect(page.locator("#poller-state")).to_contain_text("Running: last heartbeat")
    bad = page.locator("#links tr.health-bad")
    expect(bad).to_have_count(1)
    expect(bad).to_contain_text(rig["ad"].name)
    expect(page.locator("#links tr.health-good")).to_contain_text(rig["ulxd"].name)
    expect(page.locator("#statistics")).to_contain_text("DeviceService.record_poll_results")
    expect(page.locator("#statistics")).to_contain_text("links.flush")
    screenshot(page, "health", readme=True, full_page=True)
    simulator.power_on("ad")
    page.goto(f"{live_server.url}/")
    expect(page.locator(".receivers-banner")).to_have_count(0, timeout=WITHIN_MS)
