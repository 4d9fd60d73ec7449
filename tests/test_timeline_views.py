"""The channel timeline page and the drawer's last hour: roles, ranges, what the SVG shows."""

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from micboard.models import Alert, ChannelSample
from micboard.services import AssignmentService, BoardService, DeviceService, KioskService, PollOutcome
from micboard.services.board import tile_state
from micboard.services.charts import SparklineService
from micboard.status import ChannelStatus as S
from tests.factories import make_receiver, make_user, pack_on, reading

EVIL = '<script>alert("x")</script>'


@pytest.fixture
def rack(db):
    receiver = make_receiver()
    channel = receiver.channels.get(number=1)
    AssignmentService.assign(channel=channel, performer=EVIL)
    DeviceService.record_poll_results(outcomes=[PollOutcome(receiver.pk, reading=reading(pack_on(1), pack_on(2)))])
    return receiver, channel


def url(channel, **query):
    base = reverse("channel-timeline", args=[channel.pk])
    return base + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def local(at: datetime) -> str:
    return timezone.localtime(at).strftime("%Y-%m-%dT%H:%M:%S")


def write_history(channel, *, minutes=30, end=None, every=10, gap=None, offline_from=None):
    """Rows every ``every`` seconds for ``minutes`` up to ``end``: battery draining, a gap, an offline spell."""
    end = end or timezone.now()
    end = datetime.fromtimestamp(int(end.timestamp()) // every * every, tz=UTC)  # windows start on the clock
    rows = []
    for i in range(minutes * 60 // every):
        at = end - timedelta(seconds=i * every)
        ago = (end - at).total_seconds() / 60
        if gap and gap[0] <= ago < gap[1]:
            continue
        if offline_from is not None and ago < offline_from:
            continue
        rows.append(
            ChannelSample(
                channel=channel,
                at=at,
                resolution=1,
                battery_bars=4,
                battery_percent=int(50 + ago),
                runtime_minutes=int(200 + ago),
                rf_dbm=-60,
                rf_antennas="70,55",
                audio_dbfs=-20,
                status=S.GOOD,
                tx_present=True,
            )
        )
    if offline_from is not None:
        rows.append(
            ChannelSample(
                channel=channel, at=end - timedelta(minutes=offline_from), resolution=1, status=S.RX_COM_ERROR
            )
        )
    ChannelSample.objects.bulk_create(rows)


# --- roles ----------------------------------------------------------------------------------------------


def test_a_viewer_sees_the_timeline_and_an_anonymous_visitor_is_sent_to_log_in(rack, client):
    _, channel = rack
    anonymous = client.get(url(channel))
    assert anonymous.status_code == 302 and anonymous["Location"].startswith(reverse("login"))
    client.force_login(make_user("vic", role="viewer"))
    page = client.get(url(channel))
    assert page.status_code == 200
    assert "<svg" in page.content.decode()


def test_a_user_without_a_role_is_refused(rack, client):
    _, channel = rack
    client.force_login(make_user("nobody", role=None))
    assert client.get(url(channel)).status_code == 403


def test_a_kiosk_screen_may_read_the_timeline_as_it_reads_the_channel_details(rack):
    _, channel = rack
    kiosk = Client()
    kiosk.get(KioskService.path(link=KioskService.create(name="FOH tablet"), destination="board"))
    assert kiosk.get(reverse("channel-detail", args=[channel.pk])).status_code == 200
    assert kiosk.get(url(channel)).status_code == 200
    assert kiosk.post(url(channel)).status_code in (403, 405)  # read-only, GET only


def test_an_unknown_channel_is_404(rack, client):
    client.force_login(make_user("vic", role="viewer"))
    assert client.get(reverse("channel-timeline", args=[999999])).status_code == 404


# --- ranges ----------------------------------------------------------------------------------------------


@pytest.fixture
def signed_in(rack, client):
    client.force_login(make_user("vic", role="viewer"))
    return client


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"start": "yesterday"}, "Enter a valid date/time."),
        ({"start": "2026-05-01T20:00:00", "end": "2026-05-01T19:00:00"}, "The end must be after the start."),
        ({"start": "2026-05-01T20:00:00", "end": "2026-05-01T20:00:30"}, "at least a minute"),
        ({"start": "2020-01-01T00:00:00", "end": "2026-05-01T20:00:00"}, "at most 14 days"),
        ({"start": "2999-01-01T00:00:00"}, "The start is in the future"),
        ({"end": "2026-05-01T20:00:00"}, "This field is required."),
        ({"range": "forever"}, "Unknown range"),
        ({"start": "<b>20:00</b>"}, "Enter a valid date/time."),
    ],
)
def test_a_bad_range_gets_a_clear_message_and_no_chart(signed_in, rack, query, message):
    _, channel = rack
    response = signed_in.get(url(channel, **query))
    html = response.content.decode()
    assert response.status_code == 400
    assert message in html and 'role="alert"' in html
    assert "<b>20:00</b>" not in html
    assert "chart-battery" not in html


def test_presets_and_the_form_choose_the_range_and_zoom_links_halve_and_double_it(signed_in, rack):
    _, channel = rack
    write_history(channel, minutes=30)
    page = signed_in.get(url(channel, range="15m")).content.decode()
    assert 'aria-current="true">Last 15 min' in page
    assert "one point per 10 s" in page
    now = timezone.now().replace(microsecond=0)
    start, end = now - timedelta(minutes=20), now - timedelta(minutes=10)
    page = signed_in.get(url(channel, start=local(start), end=local(end))).content.decode()
    assert f'value="{local(start)}"' in page and f'value="{local(end)}"' in page
    zoom_in = unquote(re.search(r'href="([^"]+)">Zoom in', page).group(1).replace("&amp;", "&"))
    zoom_out = unquote(re.search(r'href="([^"]+)">Zoom out', page).group(1).replace("&amp;", "&"))
    assert local(now - timedelta(minutes=17, seconds=30)) in zoom_in  # 5 minutes around the middle
    assert local(now - timedelta(minutes=25)) in zoom_out  # 20 minutes around it
    assert signed_in.get(zoom_in).status_code == 200 and signed_in.get(zoom_out).status_code == 200
    assert "Later" in page, "a range in the past can move on"


def test_a_day_long_range_stays_within_the_point_budget(signed_in, rack):
    _, channel = rack
    write_history(channel, minutes=120, every=60)
    page = signed_in.get(url(channel, range="24h")).content.decode()
    assert "one point per 300 s" in page
    for d in re.findall(r'<path class="chart-line[^"]*" d="([^"]*)"', page):
        assert d.count("L") + d.count("M") <= 600


# --- what the page shows --------------------------------------------------------------------------------


def test_the_charts_show_gaps_as_gaps_per_antenna_rf_and_an_offline_spell(signed_in, rack):
    _, channel = rack
    write_history(channel, minutes=60, gap=(30, 40), offline_from=10)
    page = signed_in.get(url(channel, range="1h")).content.decode()
    battery = re.search(r'<path class="chart-line line-battery" d="([^"]*)"', page).group(1)
    assert battery.count("M") == 2, "ten minutes without data break the line"
    assert "line-ant-0" in page and "line-ant-1" in page and "Antenna B" in page
    assert 'class="band band-offline"' in page and "Receiver offline" in page
    assert "Status: Receiver offline" in page
    assert EVIL not in page and "&lt;script&gt;" in page  # the performer's name, escaped
    assert "style=" not in page.split("<main", 1)[1]


def test_alerts_show_as_bands_and_markers_with_who_acknowledged(signed_in, rack):
    receiver, channel = rack
    now = timezone.now()
    alert = Alert.objects.create(
        receiver=receiver,
        channel=channel,
        kind="battery",
        detail="Battery low: 1 bar; swap the pack",
        opened_at=now - timedelta(minutes=20),
        state="resolved",
        acknowledged_at=now - timedelta(minutes=15),
        acknowledged_by=make_user("sam", role="operator"),
        acknowledged_from="FOH tablet",
        resolved_at=now - timedelta(minutes=5),
    )
    page = signed_in.get(url(channel, range="1h")).content.decode()
    # Drawn as the crew saw it while it was live: open for its first 5 minutes, then acknowledged.
    assert re.search(r'class="band alert-open"[^>]*>\s*<title>Battery low \(open\)', page)
    assert re.search(r'class="band alert-acknowledged"[^>]*>\s*<title>Battery low \(acknowledged\)', page)
    assert "alert-resolved" not in page.split("<table", 1)[0]
    assert "mark mark-opened" in page and "mark mark-acknowledged" in page and "mark mark-resolved" in page
    assert "Battery low acknowledged by sam from FOH tablet" in page
    assert f"{alert.get_kind_display()} resolved" in page
    before = signed_in.get(url(channel, start=local(now - timedelta(hours=3)), end=local(now - timedelta(hours=2))))
    assert "mark-opened" not in before.content.decode(), "an alert outside the range is not drawn"


def test_the_drawer_draws_the_last_hour_and_links_the_timeline(signed_in, rack):
    _, channel = rack
    write_history(channel, minutes=30)
    drawer = signed_in.get(reverse("channel-detail", args=[channel.pk])).content.decode()
    assert reverse("channel-timeline", args=[channel.pk]) in drawer
    assert re.search(r'class="spark spark-battery"[^>]*><path d="M[\d.]', drawer)
    part = signed_in.get(reverse("channel-sparklines", args=[channel.pk]), headers={"HX-Request": "true"})
    assert part.status_code == 200 and "spark-rf" in part.content.decode()
    empty = signed_in.get(reverse("channel-sparklines", args=[rack[0].channels.get(number=2).pk]))
    assert "No history recorded in the last hour." in empty.content.decode()


def test_a_tile_carries_its_sparkline_and_changes_only_when_the_sparkline_does(signed_in, rack):
    _, channel = rack
    write_history(channel, minutes=40, every=10)
    tiles = {t.channel_id: t for t in BoardService.build(group="", version="a").tiles}
    assert tiles[channel.pk].battery_spark == "", "nothing drawn yet"
    now = datetime.now(UTC)
    SparklineService.refresh(now=now)
    first = {t.channel_id: t for t in BoardService.build(group="", version="b").tiles}
    again = {t.channel_id: t for t in BoardService.build(group="", version="c").tiles}
    assert first[channel.pk].battery_spark.startswith("M0 ")
    assert tile_state(first[channel.pk]) != tile_state(tiles[channel.pk])
    assert [tile_state(t) for t in first.values()] == [tile_state(t) for t in again.values()]
    BoardService.bump_version()
    html = signed_in.get(reverse("board")).content.decode()
    assert 'class="tile-spark"' in html
