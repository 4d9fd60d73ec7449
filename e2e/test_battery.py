"""The phone battery check in Chromium at phone sizes: one column by urgency, no sideways scroll, 304 refreshes."""

import re

import pytest
from playwright.sync_api import expect

from e2e.conftest import screenshot

WITHIN_MS = 4000
RANK = {"critical": 0, "replace": 1, "check": 2, "good": 3}


def rows(page):
    return page.locator("#battery-list li.pack")


@pytest.mark.parametrize("size", [(390, 844), (360, 640)], ids=["390x844", "360x640"])
def test_phone_view_lists_packs_by_urgency_without_sideways_scroll(
    logged_in, live_server, poller, rig, simulator, size
):
    page = logged_in
    width, height = size
    page.set_viewport_size({"width": width, "height": height})
    page.goto(f"{live_server.url}/battery/")
    expect(rows(page)).to_have_count(8, timeout=WITHIN_MS)  # ULX-D 4 + Axient 4 channels
    bvox = rows(page).filter(has_text="BVox 1")
    expect(bvox).to_have_attribute("data-status", "GOOD", timeout=WITHIN_MS)
    simulator.pack_off("ulxd", 2)  # a pack switched off: PREV_*, with the time it was last seen
    expect(bvox).to_have_attribute("data-status", re.compile("^PREV_"), timeout=WITHIN_MS)
    expect(rows(page).filter(has=page.locator("time"))).to_have_count(1)
    expect(page.locator('li.pack[data-status="RX_COM_ERROR"]')).to_have_count(0, timeout=WITHIN_MS)

    urgencies = rows(page).evaluate_all("els => els.map(e => e.dataset.urgency)")
    assert [RANK[u] for u in urgencies] == sorted(RANK[u] for u in urgencies), urgencies
    assert urgencies[0] == "critical" and urgencies[-1] == "good"
    # The order is what the eye sees: each row sits below the one before it, in one column.
    boxes = [rows(page).nth(i).bounding_box() for i in range(3)]
    assert boxes[0]["y"] < boxes[1]["y"] < boxes[2]["y"] and boxes[0]["x"] == boxes[1]["x"]
    expect(rows(page).first).to_be_in_viewport()
    expect(rows(page).filter(has=page.locator("time")).first).to_contain_text("last seen")
    # Big type: the name and the runtime read at arm's length.
    name_px = float(rows(page).first.locator(".pack-name").evaluate("e => parseFloat(getComputedStyle(e).fontSize)"))
    runtime_px = float(
        rows(page).first.locator(".pack-runtime").evaluate("e => parseFloat(getComputedStyle(e).fontSize)")
    )
    assert name_px >= 22 and runtime_px >= 28

    assert page.evaluate("document.documentElement.scrollWidth") <= width
    # One-handed: the group links sit at the bottom edge, every tap target at least 48 px.
    nav = page.locator("nav.battery-nav")
    expect(nav).to_be_in_viewport()
    nav_box = nav.bounding_box()
    assert nav_box["y"] + nav_box["height"] == pytest.approx(height, abs=1)
    for i in range(nav.locator("a").count()):
        box = nav.locator("a").nth(i).bounding_box()
        assert box["height"] >= 48 and box["width"] >= 48

    screenshot(page, f"battery-{width}x{height}")
    # Scrolled to the end, the last pack is whole above the group bar (the bar never covers a row).
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    last = rows(page).last.bounding_box()
    assert last["y"] + last["height"] <= nav.bounding_box()["y"] + 0.5
    assert nav.bounding_box()["y"] + nav.bounding_box()["height"] == pytest.approx(height, abs=1)
    if size == (390, 844):
        page.evaluate("window.scrollTo(0, 0)")
        screenshot(page, "battery", readme=True)


def test_phone_view_refresh_answers_304_when_nothing_changed(logged_in, live_server, poller, rig, simulator):
    page = logged_in
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server.url}/battery/")
    expect(rows(page).first).to_have_attribute("data-urgency", "critical", timeout=WITHIN_MS)

    def not_modified(response):
        return "/battery/list/" in response.url and response.status == 304

    with page.expect_response(not_modified, timeout=WITHIN_MS):  # settled on one board version
        pass
    page.evaluate("document.getElementById('battery-list').dataset.marker = 'kept'")
    with page.expect_response(not_modified, timeout=WITHIN_MS):
        pass
    expect(page.locator("#battery-list")).to_have_attribute("data-marker", "kept")
    # A change reaches the phone with the next refresh: the pack switched off drops out of GOOD.
    romeo = rows(page).filter(has_text="Romeo")
    expect(romeo).to_have_attribute("data-status", "GOOD")
    simulator.pack_off("ad", 1)
    expect(romeo).to_have_attribute("data-status", "PREV_GOOD", timeout=WITHIN_MS)
    expect(page.locator("#battery-list")).not_to_have_attribute("data-marker", "kept")


def test_group_filter_links_work(logged_in, live_server, poller, rig):
    from micboard.services import GroupService

    page = logged_in
    ch = list(rig["ad"].channels.order_by("number"))
    GroupService.set_tiles(name="Cast", channels=[ch[0], None, ch[3]])
    page.set_viewport_size({"width": 360, "height": 640})
    page.goto(f"{live_server.url}/")
    page.get_by_role("link", name="Phone battery check").click()
    expect(rows(page)).to_have_count(8, timeout=WITHIN_MS)
    page.locator("nav.battery-nav").get_by_role("link", name="Cast").click()
    expect(page).to_have_url(f"{page.url.split('?')[0]}?group=cast")
    expect(rows(page)).to_have_count(2)
    expect(page.locator("nav.battery-nav a[aria-current=page]")).to_have_text("Cast")
    box = page.locator("nav.battery-nav").bounding_box()  # a short list: the bar still sits at the bottom edge
    assert box["y"] + box["height"] == pytest.approx(640, abs=1)


def test_manifest_is_served_and_linked(logged_in, live_server):
    page = logged_in
    page.goto(f"{live_server.url}/battery/")
    href = page.locator("link[rel=manifest]").get_attribute("href")
    response = page.request.get(f"{live_server.url}{href}")
    assert response.ok and response.headers["content-type"] == "application/manifest+json"
    for icon in response.json()["icons"]:
        assert page.request.get(f"{live_server.url}{icon['src']}").headers["content-type"] == "image/png"
