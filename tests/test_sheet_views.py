"""Channel sheets over HTTP: header, columns, group sheets, the Excel-safe CSV and a constant query count."""

import csv
import datetime
import io

import pytest
from django.urls import reverse

from micboard.models import Show
from micboard.query_optimization import QueryAnalyzer
from micboard.services import AssignmentService, BoardService, DeviceService, GroupService, PollOutcome
from micboard.services.sheet import excel_safe
from tests.factories import make_receiver, pack_off, pack_on, reading

pytestmark = pytest.mark.django_db

HYPERLINK = '=HYPERLINK("http://x","y")'
SCRIPT = "<script>alert(1)</script>"


@pytest.fixture
def rig():
    rx = make_receiver(name="Band Rack", model="ULXD4Q")
    DeviceService.record_poll_results(
        outcomes=[PollOutcome(rx.pk, reading=reading(pack_on(1, bars=5, name="Lead Vox"), pack_on(2, bars=1),
                                                     pack_on(3, bars=3), pack_off(4)))]
    )
    AssignmentService.assign(channel=rx.channels.get(number=1), performer="Maria Lead")
    Show.objects.create(name="Summer Gala", venue="Grand Hall", date=datetime.date(2026, 7, 14))
    BoardService.bump_version()
    return rx


def sheet(client, query=""):
    return client.get(reverse("sheet") + query)


def csv_rows(response) -> list[list[str]]:
    body = response.content.decode("utf-8")
    assert body.startswith("\ufeff")
    return list(csv.reader(io.StringIO(body[1:])))


def test_sheet_requires_login(client, rig):
    response = sheet(client)
    assert response.status_code == 302 and reverse("login") in response["Location"]
    assert sheet(client, "?format=csv").status_code == 302


def test_sheet_has_the_show_header_and_every_column(admin_client, rig):
    html = sheet(admin_client).content.decode()
    assert "Summer Gala" in html and "Grand Hall" in html and '<time datetime="2026-07-14">' in html
    assert BoardService.version() in html
    for column in ("Channel", "Performer", "Receiver", "Model", "Band", "Frequency (MHz)", "Group,&#8203;channel",
                   "TX model", "Battery type", "Status", "Notes"):
        assert f">{column}</th>" in html
    assert "Maria Lead" in html and "578.125" in html and "ULXD4Q" in html and "LION" in html
    # Statuses as words, never colours alone.
    assert ">Good</td>" in html and ">Critical</td>" in html and ">Replace</td>" in html
    assert ">No transmitter</td>" in html
    assert 'media="print"' in html and "css/print.css" in html


def test_group_sheet_lists_that_groups_channels_numbered_as_its_tiles(admin_client, rig):
    ch = list(rig.channels.order_by("number"))
    GroupService.set_tiles(name="Vocals", channels=[ch[2], None, ch[0]])
    html = sheet(admin_client, "?group=vocals").content.decode()
    assert "Vocals" in html
    assert html.count('class="sheet-row"') == 2
    body = html.split("<tbody>")[1]
    assert body.index(">Replace</td>") < body.index("Maria Lead")
    assert '<td class="col-num">3</td>' in body  # the blank keeps its number
    assert sheet(admin_client, "?group=nope").status_code == 404
    rows = csv_rows(sheet(admin_client, "?group=vocals&format=csv"))
    assert [r[0] for r in rows[1:]] == ["1", "3"]


def test_sheet_numbers_rows_as_the_board_numbers_its_tiles(admin_client, rig):
    """"Check tile 7" means the same pack on the board and on paper, after receivers come and go."""
    temp = make_receiver(name="Temp Rack", model="ULXD4D")
    make_receiver(name="AAA Spare", model="ULXD4D")  # sorts first by name, added last
    temp.delete()  # leaves a gap: the spare's tiles keep their numbers
    BoardService.bump_version()
    board = [t.slot for t in BoardService.board().tiles]
    assert board == [1, 2, 3, 4, 7, 8]
    rows = csv_rows(sheet(admin_client, "?format=csv"))[1:]
    assert [int(r[0]) for r in rows] == board
    assert "AAA Spare" in " ".join(rows[-1])


def test_csv_has_the_same_rows_excel_safe_with_bom(admin_client, rig):
    response = sheet(admin_client, "?format=csv")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="summer-gala-channels.csv"'
    rows = csv_rows(response)
    assert rows[0][:4] == ["#", "Channel", "Performer", "Receiver"]
    assert len(rows) == 5
    assert rows[1][1:3] == ["Lead Vox", "Maria Lead"] and rows[1][10] == "Good"


def test_hostile_names_stay_inert_in_html_and_csv(admin_client, rig):
    DeviceService.record_poll_results(
        outcomes=[PollOutcome(rig.pk, reading=reading(pack_on(2, name="+cmd|' /C calc'!A0"),
                                                     pack_on(3, name="@SUM(1)")))]
    )
    AssignmentService.assign(channel=rig.channels.get(number=2), performer=HYPERLINK)
    AssignmentService.assign(channel=rig.channels.get(number=3), performer=SCRIPT)
    AssignmentService.assign(channel=rig.channels.get(number=4), performer="-2+3")
    html = sheet(admin_client).content.decode()
    assert SCRIPT not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "=HYPERLINK(&quot;http://x&quot;,&quot;y&quot;)" in html
    rows = csv_rows(sheet(admin_client, "?format=csv"))
    cells = [cell for row in rows for cell in row]
    assert "'" + HYPERLINK in cells and HYPERLINK not in cells
    assert "'+cmd|' /C calc'!A0" in cells and "'@SUM(1)" in cells and "'-2+3" in cells
    assert SCRIPT in cells  # not a formula: kept as written (a CSV is not HTML)
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]


@pytest.mark.parametrize("value", ["=1+1", "+1", "-1", "@A1", "\t=1", "\r=1"])
def test_excel_safe_prefixes_every_formula_start(value):
    assert excel_safe(value) == "'" + value


def test_query_count_is_constant(admin_client, rig):
    def count(query):
        BoardService.bump_version()  # a changed board: the rows are read from the database again
        with QueryAnalyzer() as queries:
            assert sheet(admin_client, query).status_code == 200
        assert not queries.n_plus_one(), queries.report()
        return queries.count

    small = {q: count(q) for q in ("", "?format=csv")}
    extra = []
    for n in range(5):
        rx = make_receiver(name=f"Extra {n}", model="AD4Q")
        DeviceService.record_poll_results(
            outcomes=[PollOutcome(rx.pk, reading=reading(*(pack_on(c) for c in range(1, 5)), family="axient"))]
        )
        for c in rx.channels.all():
            AssignmentService.assign(channel=c, performer=f"P {rx.pk}-{c.number}")
            extra.append(c)
    assert {q: count(q) for q in ("", "?format=csv")} == small
    GroupService.set_tiles(name="Band", channels=[*rig.channels.all(), None])
    grouped = count("?group=band")
    GroupService.set_tiles(name="Band", channels=[*rig.channels.all(), None, *extra])
    assert count("?group=band") == grouped


def test_show_is_added_in_the_admin_when_there_is_none(admin_client):
    assert admin_client.get(reverse("admin:micboard_show_add")).status_code == 200
    form = {"name": "Gala", "venue": "", "date": "2026-07-14"}
    response = admin_client.post(reverse("admin:micboard_show_add"), form)
    assert response.status_code == 302 and Show.current().date == datetime.date(2026, 7, 14)
    assert "Gala" in sheet(admin_client).content.decode()


def test_show_is_edited_in_the_admin_once(admin_client, rig):
    assert admin_client.get(reverse("admin:micboard_show_add")).status_code == 403
    show = Show.objects.get()
    response = admin_client.post(
        reverse("admin:micboard_show_change", args=[show.pk]), {"name": "Winter Gala", "venue": "Hall B", "date": ""}
    )
    assert response.status_code == 302
    assert "Winter Gala" in sheet(admin_client).content.decode()


def test_board_print_stylesheet_prints_batteries_as_text(admin_client, rig):
    html = admin_client.get(reverse("board")).content.decode()
    assert 'href="/static/css/print.css" media="print"' in html
    assert 'href="/sheet/"' in html
