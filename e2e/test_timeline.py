"""The channel timeline in Chromium: opened from the drawer, zoomed, under the strict CSP (no console errors)."""

import re

from playwright.sync_api import expect

from e2e.conftest import allow_console_errors, screenshot
from micboard.models import ChannelSample
from tests.factories import wait_for

WITHIN_MS = 5000


def test_the_timeline_opens_from_the_drawer_and_zooms(logged_in, poller, rig):
    page = logged_in
    lead = rig["ulxd"].channels.get(number=1)
    wait_for(lambda: ChannelSample.objects.filter(channel=lead).count() >= 3, 10, "record a few seconds of history")

    page.locator(f'article.tile[data-channel-id="{lead.pk}"] a.tile-link').click()
    drawer = page.locator("#channel-drawer")
    expect(drawer).to_be_visible(timeout=WITHIN_MS)
    expect(drawer.locator(".spark-battery path")).to_have_count(1, timeout=WITHIN_MS)
    drawer.get_by_role("link", name="Open the timeline").click()

    expect(page).to_have_url(re.compile(rf"/channels/{lead.pk}/timeline/$"))
    expect(page.locator(".chart-battery path.line-battery")).to_have_count(1)
    expect(page.locator('.range-presets a[aria-current="true"]')).to_have_text("Last 1 h")
    ticks_before = page.locator(".chart-battery .chart-axis text").all_text_contents()

    page.get_by_role("link", name="Last 15 min").click()
    expect(page.locator('.range-presets a[aria-current="true"]')).to_have_text("Last 15 min")
    expect(page.locator(".timeline-meta").first).to_contain_text("one point per 10 s")
    assert page.locator(".chart-battery .chart-axis text").all_text_contents() != ticks_before

    page.get_by_role("link", name="Zoom in").click()
    expect(page).to_have_url(re.compile(r"start=.*&end="))
    start = page.locator("#range-start").input_value()
    end = page.locator("#range-end").input_value()
    assert start < end

    # A range typed in the form: an end before the start is refused with a message (a 400), not a server error.
    allow_console_errors(page, r"status of 400 \(Bad Request\)")
    page.fill("#range-end", start)
    page.fill("#range-start", end)
    page.get_by_role("button", name="Show").click()
    expect(page.locator(".range-error")).to_have_text("The end must be after the start.")
    screenshot(page, "timeline-bad-range")

    page.get_by_role("link", name="Last 1 h").click()
    expect(page.locator(".chart-rf path.line-rf")).to_have_count(1)
    screenshot(page, "timeline", full_page=True)


def test_tile_sparklines_never_push_the_meters_off_a_tile(logged_in, rig):
    """Every tile keeps readable RF and AF meters at every screen size; the sparkline gives way when tight."""
    from datetime import timedelta

    from django.utils import timezone

    from micboard.models import Channel
    from micboard.services import BoardService
    from micboard.services.charts import SparklineService

    page = logged_in
    now = timezone.now().replace(second=0, microsecond=0)
    rows = [
        ChannelSample(channel=channel, at=now - timedelta(seconds=s), resolution=1, battery_bars=4,
                      battery_percent=60 + s // 60, tx_present=True)
        for channel in Channel.objects.filter(receiver__in=rig.values())
        for s in range(0, 1800, 10)
    ]  # fmt: skip
    ChannelSample.objects.bulk_create(rows)
    assert SparklineService.refresh(now=now + timedelta(seconds=5)) == 8
    BoardService.bump_version()
    shown = 0
    for width, height in ((1920, 1080), (1400, 1000), (1600, 560), (1280, 480)):
        page.set_viewport_size({"width": width, "height": height})
        page.goto(page.url.split("?")[0])
        expect(page.locator("article.tile .tile-spark")).to_have_count(8)
        for meter in page.locator("article.tile .meter-af").all():
            box = meter.bounding_box()
            assert box is not None and box["width"] >= 64, f"AF meter squeezed to {box} at {width}x{height}"
        shown += page.locator("article.tile .tile-spark:visible").count()
    assert shown > 0, "the sparkline shows where the tile has room"
    screenshot(page, "board-sparklines")
