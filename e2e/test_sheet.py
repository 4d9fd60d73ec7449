"""Channel sheets printed to PDF in Chromium (A4 and Letter), and the board's print stylesheet."""

import datetime
import io
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect
from pypdf import PdfReader

from e2e.conftest import SHOTS, screenshot
from micboard.models import Show
from micboard.services import AssignmentService

WITHIN_MS = 4000
HYPERLINK = '=HYPERLINK("http://x","y")'
IMG = "<img src=x onerror=alert(1)>"
PAGE_SIZES = {"A4": (595, 842), "Letter": (612, 792)}  # points


def squash(text: str) -> str:
    """PDF text without whitespace: a table cell may wrap anywhere."""
    return re.sub(r"\s+", "", text)


@pytest.fixture
def cast(rig):
    ad = rig["ad"]
    for number, name in ((1, "Sam Okafor"), (2, HYPERLINK), (3, IMG), (4, "Tom Weiss")):
        AssignmentService.assign(channel=ad.channels.get(number=number), performer=name)
    Show.objects.create(name="Romeo and Juliet", venue="Grand Hall", date=datetime.date(2026, 7, 14))
    return rig


@pytest.mark.parametrize("paper", ["A4", "Letter"])
def test_sheet_prints_to_pdf_with_header_names_and_statuses(logged_in, live_server, poller, cast, paper):
    page = logged_in
    page.goto(f"{live_server.url}/")
    expect(page.locator('article.tile[data-status="CRITICAL"]').first).to_be_visible(timeout=WITHIN_MS)
    page.goto(f"{live_server.url}/sheet/")
    expect(page.locator("tr.sheet-row")).to_have_count(8)
    version = page.locator(".sheet-version").inner_text()
    page.emulate_media(media="print")
    # The table fits the printable width of A4 (210 mm - 2 x 10 mm margins = 718 CSS px), narrower than Letter's.
    page.set_viewport_size({"width": 718, "height": 1000})
    assert page.locator("table.sheet-table").evaluate("t => t.getBoundingClientRect().right") <= 718
    assert page.evaluate("document.documentElement.scrollWidth") <= 718
    pdf = page.pdf(format=paper, print_background=False)
    reader = PdfReader(io.BytesIO(pdf))
    size = tuple(float(v) for v in reader.pages[0].mediabox.upper_right)
    assert size == pytest.approx(PAGE_SIZES[paper], abs=1.5)
    text = squash("\n".join(p.extract_text() for p in reader.pages))
    for expected in ("Romeo and Juliet", "Grand Hall", "2026-07-14", version, "Frequency(MHz)", "Batterytype",
                     "Sam Okafor", "Tom Weiss", "Critical", "Good", HYPERLINK, IMG):
        assert squash(expected) in text, expected
    # Every row is whole on one page: each performer's row text sits on a single page.
    per_page = [squash(p.extract_text()) for p in reader.pages]
    for name in ("SamOkafor", "TomWeiss"):
        assert sum(name in t for t in per_page) == 1

    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / f"sheet-{paper}.pdf").write_bytes(pdf)
    if paper == "A4":
        page.set_viewport_size({"width": 718, "height": 560})  # A4's printable width
        screenshot(page, "sheet-print")
        screenshot(page, "sheet", readme=True)


def test_long_sheet_never_splits_a_row_across_pages(logged_in, live_server, cast):
    from micboard.services import DeviceService, PollOutcome
    from tests.factories import make_receiver, pack_on, reading

    long_note = "Spare pack in the blue case, check the antenna cable before doors " * 2
    for n in range(10):
        rx = make_receiver(name=f"Rack {n:02d}", model="AD4Q")
        DeviceService.record_poll_results(
            outcomes=[PollOutcome(rx.pk, reading=reading(*(pack_on(c) for c in range(1, 5)), family="axient"))]
        )
        for channel in rx.channels.all():
            assignment = AssignmentService.assign(channel=channel, performer=f"Performer {n:02d}-{channel.number}")
            assignment.notes = long_note
            assignment.save()
    page = logged_in
    page.goto(f"{live_server.url}/sheet/")
    page.emulate_media(media="print")
    for paper in PAGE_SIZES:
        pdf = page.pdf(format=paper)
        pages = [squash(p.extract_text()) for p in PdfReader(io.BytesIO(pdf)).pages]
        assert len(pages) > 1
        for n in range(10):
            for c in range(1, 5):
                row = f"Performer{n:02d}-{c}"
                holders = [i for i, t in enumerate(pages) if row in t]
                assert len(holders) == 1, (paper, row, holders)
                # The row's last cell (its notes) is on the same page as its performer.
                after = pages[holders[0]].split(row, 1)[1]
                assert squash(long_note) in after, (paper, row)
        assert all("Performer" in t for t in pages[1:])  # the column header repeats on each page


def test_csv_download_from_the_sheet(logged_in, live_server, cast):
    page = logged_in
    page.goto(f"{live_server.url}/sheet/")
    with page.expect_download() as info:
        page.get_by_role("link", name="Download CSV").click()
    body = Path(info.value.path()).read_bytes().decode("utf-8")
    assert body.startswith("\ufeff#,Channel,Performer")
    assert "'" + HYPERLINK.replace('"', '""') in body


def test_board_prints_black_on_white_with_battery_as_text(logged_in, live_server, poller, cast):
    page = logged_in
    page.goto(f"{live_server.url}/")
    expect(page.locator('article.tile[data-status="GOOD"]').first).to_be_visible(timeout=WITHIN_MS)
    page.emulate_media(media="print")
    expect(page.locator(".app-bar")).to_be_hidden()
    expect(page.locator("#group-tabs")).to_be_hidden()
    tile = page.locator('article.tile[data-status="GOOD"]').first
    colours = tile.evaluate(
        "e => [getComputedStyle(e).backgroundColor, getComputedStyle(e.querySelector('.tile-title')).color]"
    )
    assert colours == ["rgb(255, 255, 255)", "rgb(0, 0, 0)"]
    pdf = page.pdf(format="A4")
    text = squash("\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages))
    # Battery as text: "4/5 bars, 3:12 left" (the words come from the print stylesheet).
    battery, runtime = tile.locator(".battery"), tile.locator(".runtime")
    bars = battery.get_attribute("data-bars")
    assert battery.evaluate("e => getComputedStyle(e, '::after').content") == f'"{bars}/5 bars"'
    assert runtime.evaluate("e => getComputedStyle(e, '::before').content") == '", "'
    assert runtime.evaluate("e => getComputedStyle(e, '::after').content") == '" left"'
    assert f"{bars}/5bars" in text and re.search(r"\d:\d\dleft", text), text[:500]
    assert "GOOD" in text and "CRITICAL" in text and "Logout" not in text  # statuses as words
    screenshot(page, "board-print", full_page=True)
