"""Post-show report: its figures on hand-written history at 1 s, 10 s and 60 s, its CSV, and its pages."""

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from micboard.exceptions import ReportError
from micboard.models import Alert, Channel, ChannelSample
from micboard.services import AssignmentService
from micboard.services.alerts import AlertService
from micboard.services.history import HistoryService
from micboard.services.report import ReportService
from tests.factories import make_receiver, make_user

T0 = datetime(2026, 5, 1, 19, 0, 0, tzinfo=UTC)  # on a whole minute, so 10 s and 60 s windows align
END = T0 + timedelta(minutes=10)


def _row(channel, second, *, bars=None, percent=None, minutes=None, rf=-50, present=True):
    return ChannelSample(
        channel=channel, at=T0 + timedelta(seconds=second), resolution=1, battery_bars=bars,
        battery_percent=percent, runtime_minutes=minutes, rf_dbm=rf, status="GOOD" if present else "PREV_GOOD",
        tx_present=present,
    )  # fmt: skip


def _show(channel):
    """Ten minutes at 1 s: battery A on 3 min, off 1 min, battery B on 3 min (a 5 s dropout), off 1 min, B again.

    Runtime falls a minute every 10 s (fast, so that the figures move in ten minutes).
    """
    rows = []
    for s in range(600):
        if 180 <= s < 240 or 420 <= s < 480:
            rows.append(_row(channel, s, rf=-108, present=False))
        elif s < 180:
            rows.append(_row(channel, s, bars=2, percent=30, minutes=100 - s // 10))
        elif s < 420:
            rf = -100 if 300 <= s < 305 else -50
            rows.append(_row(channel, s, bars=5, percent=100, minutes=480 - (s - 240) // 10, rf=rf))
        else:
            rows.append(_row(channel, s, bars=5, percent=99, minutes=462 - (s - 480) // 10))
    HistoryService.write_samples(samples=rows)


@pytest.fixture
def pack():
    receiver = make_receiver(name="Rack A", model="ULXD4Q")
    channel = receiver.channels.get(number=1)
    AssignmentService.assign(channel=channel, performer="Maya Chen")
    _show(channel)
    return channel


def _pack_report(channel):
    report = ReportService.build(start=T0, end=END)
    return report, next(p for p in report.packs if p.channel_id == channel.pk)


@pytest.mark.django_db
def test_one_second_history_gives_swaps_runtime_lowest_battery_and_dropouts_exactly(pack):
    report, p = _pack_report(pack)
    assert p.swaps == 1, "battery B after the first off is a swap; on again with B after the second is not"
    assert p.runtime_used_minutes == (100 - 83) + (480 - 451)
    assert p.on_seconds == 480 and p.on_hm == "0:08"
    assert (p.lowest_bars, p.lowest_percent, p.lowest_minutes) == (2, 30, 83)
    assert (p.dropouts, p.dropout_seconds) == (1, 5), "an off pack's noise floor is no dropout"
    assert p.performer == "Maya Chen" and report.resolutions == (1,)
    person = report.performers[0]
    assert (person.name, person.swaps, person.runtime_used_minutes, person.dropouts) == ("Maya Chen", 1, 46, 1)


@pytest.mark.django_db
def test_folded_to_ten_seconds_the_figures_stay_and_dropouts_count_whole_rows(pack):
    HistoryService.downsample(source=1, target=10, older_than=END + timedelta(days=1))
    report, p = _pack_report(pack)
    assert report.resolutions == (10,) and p.rows == 60
    assert (p.swaps, p.runtime_used_minutes, p.on_seconds) == (1, 46, 480)
    assert (p.dropouts, p.dropout_seconds) == (1, 10)


@pytest.mark.django_db
def test_folded_to_sixty_seconds_runtime_loses_at_most_a_row_of_drain_per_battery(pack):
    HistoryService.downsample(source=1, target=10, older_than=END + timedelta(days=1))
    HistoryService.downsample(source=10, target=60, older_than=END + timedelta(days=1))
    report, p = _pack_report(pack)
    assert report.resolutions == (60,) and p.rows == 10
    assert p.swaps == 1 and p.on_seconds == 480
    # Each battery's first 60 s row holds that minute's lowest runtime (95, 475), not the 100 and 480 it started with.
    assert p.runtime_used_minutes == (95 - 83) + (475 - 451)
    assert (p.dropouts, p.dropout_seconds) == (1, 60)
    assert (p.lowest_bars, p.lowest_percent, p.lowest_minutes) == (2, 30, 83)


@pytest.mark.django_db
def test_off_and_on_with_the_same_battery_is_no_swap_and_uses_no_runtime():
    channel = make_receiver().channels.get(number=2)
    rows = [_row(channel, s, bars=4, percent=70, minutes=300) for s in range(60)]
    rows += [_row(channel, s, rf=-108, present=False) for s in range(60, 300)]
    rows += [_row(channel, s, bars=4, percent=70, minutes=300 if s < 302 else 299) for s in range(300, 360)]
    HistoryService.write_samples(samples=rows)
    _, p = _pack_report(channel)
    assert (p.swaps, p.runtime_used_minutes, p.on_seconds, p.dropouts) == (0, 1, 120, 0)


@pytest.mark.django_db
def test_packs_not_to_trust_are_the_fast_draining_one_and_the_one_with_most_dropouts():
    receiver = make_receiver(model="ULXD4Q")
    rows = []
    for channel in receiver.channels.order_by("number"):
        rate = 1.5 if channel.number == 3 else 1.0  # runtime minutes lost per minute on
        for m in range(120):
            rf = -99 if channel.number == 2 and m in (10, 40, 41, 90) else -50
            rows.append(
                ChannelSample(
                    channel=channel, at=T0 + timedelta(minutes=m), resolution=60, battery_bars=5,
                    battery_percent=90, runtime_minutes=int(400 - rate * m), rf_dbm=rf, tx_present=True,
                )
            )  # fmt: skip
    HistoryService.write_samples(samples=rows)
    report = ReportService.build(start=T0, end=T0 + timedelta(hours=2))
    flagged = {p.number: p.flags for p in report.untrusted}
    assert set(flagged) == {2, 3}
    assert "1.5 times the median" in flagged[3][0]
    assert flagged[2] == ["most dropouts: 3 (240 s)"]


@pytest.mark.django_db
def test_alerts_in_the_range_with_who_acknowledged_from_where_and_when_they_resolved(pack):
    crew = make_user("sam", role="operator")
    live = Alert.objects.create(
        receiver=pack.receiver,
        channel=pack,
        kind="battery",
        detail="1 bar, 0:20 left",
        opened_at=T0 + timedelta(minutes=2),
    )
    AlertService.acknowledge(alert=live, user=crew, screen="Phone (Sam)")
    Alert.objects.filter(pk=live.pk).update(state="resolved", resolved_at=T0 + timedelta(minutes=4))
    Alert.objects.create(  # resolved before the show: not in the report
        receiver=pack.receiver, channel=pack, kind="dropout", detail="old", state="resolved",
        opened_at=T0 - timedelta(hours=3), resolved_at=T0 - timedelta(hours=2),
    )  # fmt: skip
    report, p = _pack_report(pack)
    assert p.alerts == 1 and len(report.alerts) == 1
    row = report.alerts[0]
    assert (row.performer, row.acknowledged_by, row.acknowledged_from) == ("Maya Chen", "sam", "Phone (Sam)")
    assert row.acknowledged_at is not None and row.state == "Resolved"
    assert row.resolved_at == T0 + timedelta(minutes=4) and row.where.startswith("Rack A 1")


@pytest.mark.django_db
def test_a_range_that_ends_before_it_starts_or_is_too_long_is_refused():
    with pytest.raises(ReportError):
        ReportService.build(start=END, end=T0)
    with pytest.raises(ReportError):
        ReportService.build(start=T0, end=T0 + timedelta(days=40))


@pytest.mark.django_db
def test_the_csv_keeps_names_from_turning_into_formulas(pack):
    Channel.objects.filter(pk=pack.pk).update(name="+SUM(A1)")
    AssignmentService.assign(channel=pack, performer='=HYPERLINK("http://x","y")', replace=True)
    text = ReportService.csv_text(report=ReportService.build(start=T0, end=END))
    cells = [c for row in csv.reader(io.StringIO(text)) for c in row]
    assert '\'=HYPERLINK("http://x","y")' in cells and "'+SUM(A1)" in cells
    assert not any(c.startswith(("=", "+", "@")) or (c.startswith("-") and not c.lstrip("-").isdigit()) for c in cells)
    assert ["Packs"] in list(csv.reader(io.StringIO(text)))


# --- the pages ---------------------------------------------------------------------------------------------


def _query(start=T0, end=END):
    fmt = "%Y-%m-%dT%H:%M"
    from django.utils import timezone

    return {"start": timezone.localtime(start).strftime(fmt), "end": timezone.localtime(end).strftime(fmt)}


@pytest.mark.django_db
def test_anonymous_goes_to_login_and_a_user_without_a_role_is_refused(client):
    response = client.get(reverse("report"))
    assert response.status_code == 302 and reverse("login") in response["Location"]
    assert client.get(reverse("report-csv")).status_code == 302
    client.force_login(make_user("nobody", role=None))
    assert client.get(reverse("report")).status_code == 403
    assert client.get(reverse("report-csv")).status_code == 403


@pytest.mark.django_db
def test_a_viewer_sees_both_tables_the_print_css_and_the_csv_link(client, pack):
    client.force_login(make_user("val", role="viewer"))
    response = client.get(reverse("report"), _query())
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="report-packs"' in html and 'id="report-performers"' in html and "Maya Chen" in html
    assert "css/report.css" in html and "css/print.css" in html
    assert reverse("report-csv") + "?start=" in html
    assert "46 min" in html
    # Each pack links to its timeline over the same range ("when did it start dropping out?").
    query = _query()
    timeline = reverse("channel-timeline", args=[pack.pk]) + f"?start={query['start']}&amp;end={query['end']}"
    assert timeline.replace(":", "%3A") in html
    assert client.post(reverse("report"), _query()).status_code == 405


@pytest.mark.django_db
def test_the_default_range_is_the_last_day(client):
    client.force_login(make_user("val", role="viewer"))
    response = client.get(reverse("report"))
    assert response.status_code == 200
    form = response.context["form"]
    start, end = form.cleaned_data["start"], form.cleaned_data["end"]
    assert end - start == timedelta(hours=24)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query, message",
    [
        ({"start": "2026-05-01T20:00", "end": "2026-05-01T19:00"}, "must be after its start"),
        ({"start": "yesterday", "end": "2026-05-01T19:00"}, "Enter a valid date/time"),
        ({"start": "2026-01-01T00:00", "end": "2026-03-01T00:00"}, "at most 31 days"),
        ({"end": "2026-05-01T19:00"}, "This field is required"),
    ],
)
def test_a_bad_range_is_said_with_a_400_and_no_report(client, query, message):
    client.force_login(make_user("val", role="viewer"))
    response = client.get(reverse("report"), query)
    assert response.status_code == 400
    assert message in response.content.decode() and 'id="report-packs"' not in response.content.decode()
    assert client.get(reverse("report-csv"), query).status_code == 400


@pytest.mark.django_db
def test_the_csv_download_is_an_attachment(client, pack):
    client.force_login(make_user("val", role="viewer"))
    response = client.get(reverse("report-csv"), _query())
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="micboard-report-')
    assert "Maya Chen" in response.content.decode("utf-8-sig")
