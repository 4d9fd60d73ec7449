"""Charts: path data from series (gaps stay gaps, values clamped, flat runs collapsed), ticks, the tile sparklines."""

import re
from datetime import UTC, datetime, timedelta

import pytest

from micboard.models import Channel, ChannelSample
from micboard.services import charts
from micboard.services.charts import Frame, SparklineService, line_path, sparkline
from tests.factories import make_receiver

FRAME = Frame(start=0, end=100, lo=0, hi=100, width=100, height=50)
PATH = re.compile(r"^(M-?[\d.]+ -?[\d.]+((L-?[\d.]+ -?[\d.]+)+|h[\d.]+))*$")


def test_a_line_maps_time_across_and_values_up():
    d = line_path([(0, 0), (50, 100), (100, 50)], frame=FRAME, gap=60)
    assert d == "M0 50L50 0L100 25"


def test_a_missing_value_or_a_missing_window_breaks_the_line_never_interpolates():
    with_none = line_path([(0, 10), (10, 20), (20, None), (30, 40), (40, 50)], frame=FRAME, gap=15)
    assert with_none.count("M") == 2 and "L20" not in with_none
    with_gap = line_path([(0, 10), (10, 20), (60, 40), (70, 50)], frame=FRAME, gap=15)
    assert with_gap.count("M") == 2
    assert with_gap.startswith("M0 45L10 40M60")


def test_values_are_clamped_to_the_chart_and_points_outside_the_time_span_are_left_out():
    d = line_path([(-10, 50), (0, -40), (50, 500), (100, 50), (130, 50)], frame=FRAME, gap=60)
    assert d == "M0 50L50 0L100 25"


def test_a_lone_point_draws_a_short_segment_one_window_wide():
    d = line_path([(10, 20), (40, None), (80, 60)], frame=FRAME, gap=15, step=5)
    assert d == "M10 40h5M80 20h5"
    assert line_path([(100, 20)], frame=FRAME, gap=15, step=5) == "M95 40h5", "kept inside the chart"


def test_flat_runs_keep_their_ends_so_a_steady_pack_draws_the_same_path_every_minute():
    d = line_path([(t, 80) for t in range(0, 101, 10)], frame=FRAME, gap=15)
    assert d == "M0 10L100 10"
    assert sparkline([80.0] * 30, lo=0, hi=100, width=60, height=15) == sparkline(
        [80.0] * 29 + [80.0], lo=0, hi=100, width=60, height=15
    )


def test_empty_and_unknown_series_draw_nothing():
    assert line_path([], frame=FRAME, gap=15) == ""
    assert line_path([(0, None), (10, None)], frame=FRAME, gap=15) == ""
    assert line_path([(0, float("nan"))], frame=FRAME, gap=15) == ""
    assert sparkline([], lo=0, hi=100, width=60, height=15) == ""
    assert sparkline([None, None], lo=0, hi=100, width=60, height=15) == ""


def test_path_data_is_only_commands_and_numbers():
    d = line_path([(t, (t * 37) % 130 - 10) for t in range(0, 101, 3)], frame=FRAME, gap=5, step=3)
    assert PATH.match(d), d
    assert Frame(start=0, end=0, lo=0, hi=0, width=10, height=10).x(5) == 0  # degenerate frames do not divide by 0


def test_display_resolution_bounds_the_points_of_a_line():
    assert charts.display_resolution(15 * 60) == 10
    assert charts.display_resolution(3600) == 10
    assert charts.display_resolution(6 * 3600) == 60
    assert charts.display_resolution(24 * 3600) == 300
    for span in (60, 900, 3600, 6 * 3600, 86400, 14 * 86400):
        assert span / charts.display_resolution(span) <= charts.MAX_POINTS


def test_time_ticks_fall_on_round_local_times_and_show_the_date_across_days(settings):
    settings.TIME_ZONE = "Europe/Berlin"  # UTC+2 in May
    start = datetime(2026, 5, 1, 18, 7, tzinfo=UTC)
    ticks = charts.time_ticks(start, start + timedelta(hours=1), width=960)
    assert [t.label for t in ticks][:2] == ["20:10", "20:20"]
    assert all(0 <= t.x <= 960 for t in ticks)
    across = charts.time_ticks(start, start + timedelta(hours=24), width=960)
    assert across[0].label.startswith("1 May") and any(t.label.startswith("2 May") for t in across)


def test_battery_is_the_packs_percent_else_bars_and_antennas_read_as_dbm():
    assert charts.battery_value(3, 57) == 57
    assert charts.battery_value(3, None) == 60
    assert charts.battery_value(None, None) is None
    assert charts.antenna_dbm("100,0") == (-40.0, -100.0)
    assert charts.antenna_dbm("7x,<b>") == ()


@pytest.mark.django_db
def test_tile_sparklines_come_from_one_query_a_minute_for_every_channel(settings, django_assert_num_queries):
    """The Huey task draws them (one query); a board build reads the cache, and never old paths."""
    settings.MICBOARD_HISTORY_RESOLUTION = 1
    receiver = make_receiver()
    first, second = Channel.objects.filter(receiver=receiver).order_by("number")[:2]
    now = datetime(2026, 5, 1, 19, 30, 30, tzinfo=UTC)
    until = now.replace(second=0)
    rows = []
    for minute in range(30):
        at = until - timedelta(minutes=30 - minute)
        for second_ in range(0, 60, 5):  # 5 s apart: the 10 s marks and the rows between them
            rows.append(
                ChannelSample(
                    channel=first,
                    at=at + timedelta(seconds=second_),
                    resolution=1,
                    battery_percent=90 - minute,
                    battery_bars=5,
                )
            )
        if minute < 10 or minute >= 20:  # the second pack was off for ten minutes
            rows.append(ChannelSample(channel=second, at=at, resolution=1, battery_bars=4))
    ChannelSample.objects.bulk_create(rows)
    with django_assert_num_queries(1):
        paths = SparklineService.compute(until=until)
    assert paths[first.pk].startswith("M0 ") and paths[first.pk].count("M") == 1
    assert paths[second.pk].count("M") == 2, "the ten minutes off are a gap"
    assert SparklineService.tile_paths(now=now) == {}, "nothing drawn yet"
    with django_assert_num_queries(1):
        assert SparklineService.refresh(now=now) == 2
    with django_assert_num_queries(0):
        assert SparklineService.tile_paths(now=now + timedelta(minutes=2)) == paths
    assert SparklineService.tile_paths(now=now + timedelta(minutes=10)) == {}, "no consumer: old paths would lie"
    settings.MICBOARD_TILE_SPARKLINES = False
    assert SparklineService.tile_paths(now=now) == {}
