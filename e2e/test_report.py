"""The post-show report in Chromium: seeded history, both tables, the CSV link and the print stylesheet."""

from datetime import timedelta

from django.utils import timezone
from playwright.sync_api import expect

from e2e.conftest import allow_console_errors
from micboard.models import ChannelSample
from micboard.services import AssignmentService
from micboard.services.history import HistoryService
from tests.factories import make_receiver

IMG = "<img src=x onerror=alert(1)>"


def _seed():
    """Twenty minutes of 1 s history ending now: a swap after ten minutes, a 5 s dropout, a pack named like HTML."""
    receiver = make_receiver(name="Rack A", model="ULXD4Q")
    first, second = receiver.channels.get(number=1), receiver.channels.get(number=2)
    AssignmentService.assign(channel=first, performer="Maya Chen")
    AssignmentService.assign(channel=second, performer=IMG)
    start = timezone.now().replace(microsecond=0) - timedelta(minutes=20)
    rows = []
    for s in range(1200):
        at = start + timedelta(seconds=s)
        off = 600 <= s < 660
        if off:
            battery, rf = {}, -108
        elif s < 600:
            battery, rf = {"battery_bars": 1, "runtime_minutes": 40 - s // 60}, -50
        else:
            battery, rf = {"battery_bars": 5, "runtime_minutes": 480 - (s - 660) // 60}, -99 if 900 <= s < 905 else -50
        rows.append(ChannelSample(channel=first, at=at, resolution=1, tx_present=not off, rf_dbm=rf, **battery))
        rows.append(
            ChannelSample(
                channel=second, at=at, resolution=1, tx_present=True, rf_dbm=-55, battery_bars=4, runtime_minutes=300
            )
        )
    HistoryService.write_samples(samples=rows)


def test_report_shows_tables_a_csv_link_and_prints_without_controls(logged_in, live_server):
    _seed()
    page = logged_in
    page.click("text=Show report")
    expect(page.locator("#report-packs tbody tr")).to_have_count(2)
    packs = page.locator("#report-packs")
    expect(packs.locator("tr", has_text="Rack A 1")).to_contain_text("Maya Chen")
    row = packs.locator("tr", has_text="Rack A 1").locator("td")
    expect(row.nth(4)).to_have_text("1")  # one swap
    expect(row.nth(6)).to_have_text("1 (5 s)")  # one dropout of 5 s
    expect(page.locator("#report-performers")).to_contain_text(IMG)  # shown as text, never as markup
    assert page.locator("#report-performers img").count() == 0
    csv_link = page.locator("a", has_text="Download CSV")
    href = csv_link.get_attribute("href")
    assert href.startswith("/report.csv?start=")
    with page.expect_download() as download:
        csv_link.click()
    assert download.value.suggested_filename.startswith("micboard-report-")
    expect(page.locator(".report-controls")).to_be_visible()
    page.emulate_media(media="print")
    expect(page.locator(".report-controls")).to_be_hidden()
    expect(page.locator(".app-bar")).to_be_hidden()
    expect(page.locator("#report-packs")).to_be_visible()
    page.set_viewport_size({"width": 718, "height": 1000})  # A4's printable width in CSS px
    assert page.evaluate("document.documentElement.scrollWidth") <= 718


def test_a_bad_range_says_so(logged_in, live_server):
    page = logged_in
    allow_console_errors(page, r"status of 400")  # the page itself answers 400 Bad Request
    page.goto(f"{live_server.url}/report/?start=2026-05-01T20:00&end=2026-05-01T19:00")
    expect(page.locator(".report-errors")).to_contain_text("must be after its start")
    assert page.locator("#report-packs").count() == 0
