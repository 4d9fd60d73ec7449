"""Show history: samples written by a driven link holder, folded as they age, pruned, read back as a series."""

import logging
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from micboard.models import Channel, ChannelSample
from micboard.services import PollOutcome
from micboard.services.history import HistoryService, SampleRecorder
from micboard.status import ChannelStatus as S
from tasks.history import fold_history, prune_history_now
from tests.factories import (
    Driven,
    make_receiver,
    pack_off,
    pack_on,
    reading,
    receivers_for,
    start_simulator,
    use_fast_polls,
    wait_for,
)

T0 = datetime(2026, 5, 1, 19, 0, 0, tzinfo=UTC)  # a show's start, on a whole minute


def samples(channel, resolution=None):
    rows = ChannelSample.objects.filter(channel=channel).order_by("at", "pk")
    return list(rows if resolution is None else rows.filter(resolution=resolution))


class _TableGone:
    """The samples table renamed away: every insert into it fails in the database itself."""

    def __enter__(self):
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE micboard_channelsample RENAME TO micboard_channelsample_away")

    def __exit__(self, *exc):
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE micboard_channelsample_away RENAME TO micboard_channelsample")


@pytest.fixture
def rig(settings):
    use_fast_polls(settings)
    settings.MICBOARD_LINK_LEASE = 3.0
    settings.MICBOARD_HISTORY_RESOLUTION = 1
    sim = start_simulator(["ulxd"])
    receiver = receivers_for(sim, ["ulxd"])["ulxd"]
    driven = None

    def drive():
        nonlocal driven
        driven = Driven()
        return driven

    yield sim, receiver, drive
    if driven is not None:
        driven.stop()
    sim.stop()


@pytest.mark.django_db(transaction=True)
def test_a_driven_holder_writes_one_sample_per_channel_and_second_with_what_the_board_shows(rig):
    sim, receiver, drive = rig
    drive()
    first = Channel.objects.get(receiver=receiver, number=1)
    wait_for(lambda: len(samples(first)) >= 4, 8, "write four seconds of history")
    rows = samples(first)
    assert {r.resolution for r in rows} == {1}
    assert all(r.at.microsecond == 0 for r in rows), "windows start on whole seconds"
    assert max(Counter(r.at for r in rows).values()) == 1, "two rows for one second"
    tx = Channel.objects.select_related("transmitter").get(pk=first.pk).transmitter
    last = rows[-1]
    assert (last.battery_bars, last.runtime_minutes, last.tx_present) == (tx.battery_bars, tx.runtime_minutes, True)
    assert last.rf_dbm == round(tx.rf_dbm) and last.audio_dbfs == round(tx.audio_dbfs)
    assert last.status == Channel.objects.get(pk=first.pk).status

    second = Channel.objects.get(receiver=receiver, number=2)
    sim.pack_off("ulxd", 2)
    wait_for(
        lambda: [r for r in samples(second) if r.tx_present is False and r.status == S.PREV_GOOD],
        5,
        "record the pack switched off",
    )
    # The second it went off still holds its last battery (the lowest of the window); a whole second
    # later the battery is unknown, never 0 or the last value.
    wait_for(
        lambda: [r for r in samples(second) if r.tx_present is False and r.battery_bars is None],
        3,
        "record a whole second without the pack",
    )


@pytest.mark.django_db(transaction=True)
def test_a_failing_insert_keeps_the_holder_going_and_the_samples_for_later(rig, caplog):
    sim, receiver, drive = rig
    first = Channel.objects.get(receiver=receiver, number=1)
    driven = drive()
    wait_for(lambda: samples(first), 8, "write a first sample")
    with _TableGone(), caplog.at_level(logging.WARNING, logger="micboard.history"):
        gone_at = timezone.now()
        wait_for(lambda: "samples not written" in caplog.text, 5, "fail an insert")
        sim.set_name("ulxd", 1, "OUTAGE")
        wait_for(lambda: Channel.objects.get(pk=first.pk).name == "OUTAGE", 3, "go on updating the board")
        wait_for(lambda: len(driven.holder.history.pending) >= 8, 5, "keep the samples of two seconds")
        back_at = timezone.now()
    after = ChannelSample.objects.filter(channel=first, at__gte=back_at.replace(microsecond=0))
    wait_for(lambda: after.count() >= 1, 5, "write again once the table is back")
    first_second = gone_at.replace(microsecond=0)
    outage = {first_second + timedelta(seconds=n) for n in range(int((back_at - first_second).total_seconds()))}
    assert outage <= {r.at for r in samples(first)}, "the outage left a hole in the history"
    assert driven.thread.is_alive()


@pytest.mark.django_db
def test_the_recorder_writes_at_its_resolution_and_folds_each_window():
    receiver = make_receiver()
    one, two = (Channel.objects.get(receiver=receiver, number=n) for n in (1, 2))
    recorder = SampleRecorder(resolution=10, cap=1000)

    def feed(second, *channels):
        recorder.observe([PollOutcome(receiver.pk, reading=reading(*channels))], now=T0 + timedelta(seconds=second))

    feed(1, pack_on(1, bars=4, minutes=200, rf_dbm=-50, audio_dbfs=-30), pack_on(2))
    feed(4, pack_on(1, bars=3, minutes=190, rf_dbm=-81, audio_dbfs=-3), pack_on(2))
    feed(9, pack_on(1, bars=4, minutes=195, rf_dbm=-60, audio_dbfs=-25), pack_off(2))
    assert recorder.write(now=T0 + timedelta(seconds=9.9), receiver_ids=[receiver.pk]) == 0, "window not ended"
    feed(12, pack_on(1, bars=4, minutes=180, rf_dbm=-55, audio_dbfs=-20))
    assert recorder.write(now=T0 + timedelta(seconds=10.1), receiver_ids=[receiver.pk]) == 4

    row = samples(one)[0]
    assert (row.at, row.resolution) == (T0, 10)
    assert (row.battery_bars, row.runtime_minutes, row.rf_dbm, row.audio_dbfs) == (3, 190, -81, -3)
    assert samples(two)[0].tx_present is False
    assert recorder.write(now=T0 + timedelta(seconds=20), receiver_ids=[receiver.pk]) == 1
    assert [r.at for r in samples(one)] == [T0, T0 + timedelta(seconds=10)]


@pytest.mark.django_db(transaction=True)
def test_the_buffer_keeps_at_most_its_cap_dropping_the_oldest_with_a_count(caplog):
    receiver = make_receiver()
    first = Channel.objects.get(receiver=receiver, number=1)
    recorder = SampleRecorder(resolution=1, cap=10)
    with _TableGone(), caplog.at_level(logging.WARNING, logger="micboard.history"):
        for second in range(5):  # 4 channels a second: 20 rows for a buffer of 10
            recorder.observe(
                [PollOutcome(receiver.pk, reading=reading(*(pack_on(n, minutes=300 - second) for n in range(1, 5))))],
                now=T0 + timedelta(seconds=second),
            )
            recorder.write(now=T0 + timedelta(seconds=second + 1), receiver_ids=[receiver.pk])
        assert len(recorder.pending) == 10
        assert recorder.dropped == 10
        assert "dropped the 4 oldest (10 since start)" in caplog.text
    assert recorder.write(now=T0 + timedelta(seconds=6), receiver_ids=[receiver.pk]) == 10
    assert [r.runtime_minutes for r in samples(first)] == [297, 296], "the newest seconds were kept"


def _raw_minutes(channel, *, start, seconds):
    """One 1 s row per second: battery falls one bar a minute, RF dips at :07, audio peaks at :33."""
    ChannelSample.objects.bulk_create(
        ChannelSample(
            channel=channel,
            at=start + timedelta(seconds=s),
            resolution=1,
            battery_bars=5 - s // 60,
            runtime_minutes=300 - s // 10,
            rf_dbm=-90 if s % 60 == 7 else -50,
            rf_antennas="20,70" if s % 60 == 7 else "80,75",
            audio_dbfs=-1 if s % 60 == 33 else -30,
            status=S.GOOD if s < 95 else S.REPLACE,
            tx_present=True,
        )
        for s in range(seconds)
    )


@pytest.mark.django_db
@pytest.mark.parametrize("batch_rows", [7, 5000])
def test_downsampling_folds_old_rows_keeping_the_lowest_battery_and_rf_and_the_loudest_audio(batch_rows):
    channel = Channel.objects.get(receiver=make_receiver(), number=1)
    _raw_minutes(channel, start=T0, seconds=180)
    folded = HistoryService.downsample(
        source=1, target=10, older_than=T0 + timedelta(seconds=125), batch_rows=batch_rows
    )
    assert folded == 120, "a window is folded only once it lies wholly before the cutoff"
    tens = samples(channel, 10)
    assert [r.at for r in tens] == [T0 + timedelta(seconds=10 * i) for i in range(12)]
    assert [(r.rf_dbm, r.rf_antennas) for r in tens[:2]] == [(-90, "20,70"), (-50, "80,75")]
    assert [r.audio_dbfs for r in tens[3:5]] == [-1, -30]
    assert tens[5].runtime_minutes == 295
    assert [r.status for r in tens[8:10]] == [S.GOOD, S.REPLACE], "the last status of a window"
    assert len(samples(channel, 1)) == 60

    HistoryService.downsample(source=10, target=60, older_than=T0 + timedelta(hours=1), batch_rows=batch_rows)
    minutes = samples(channel, 60)
    assert [(r.at, r.battery_bars, r.rf_dbm, r.audio_dbfs) for r in minutes] == [
        (T0, 5, -90, -1),
        (T0 + timedelta(minutes=1), 4, -90, -1),
    ]
    assert not samples(channel, 10)


@pytest.mark.django_db
def test_the_periodic_tasks_fold_by_age_and_prune_after_the_retention(settings):
    settings.MICBOARD_HISTORY_RAW_MINUTES = 60
    settings.MICBOARD_HISTORY_TEN_SECOND_HOURS = 24
    settings.MICBOARD_HISTORY_RETENTION_DAYS = 14
    channel = Channel.objects.get(receiver=make_receiver(), number=1)
    now = timezone.now()
    fresh = now.replace(second=0, microsecond=0) - timedelta(minutes=5)
    hour_old = fresh - timedelta(hours=2)
    day_old = fresh - timedelta(days=2)
    too_old = fresh - timedelta(days=15)
    for start in (fresh, hour_old, day_old, too_old):
        _raw_minutes(channel, start=start, seconds=60)
    assert fold_history() == (180, 12), "three raw minutes fold to 10 s; the two older than a day on to 60 s"
    kept = Counter((r.resolution, r.at >= fresh) for r in samples(channel))
    assert kept == {(1, True): 60, (10, False): 6, (60, False): 2}
    assert prune_history_now() == 1
    assert min(r.at for r in samples(channel)) == day_old


@pytest.mark.django_db
def test_a_series_is_at_the_finest_resolution_still_kept_and_even(settings):
    settings.MICBOARD_HISTORY_RAW_MINUTES = 60
    channel = Channel.objects.get(receiver=make_receiver(), number=1)
    now = T0 + timedelta(hours=3)
    _raw_minutes(channel, start=now - timedelta(minutes=2), seconds=60)  # still raw
    _raw_minutes(channel, start=now - timedelta(hours=2), seconds=60)
    HistoryService.downsample(source=1, target=10, older_than=now - timedelta(hours=1))

    resolution, recent = HistoryService.series(channel=channel, start=now - timedelta(minutes=10), end=now, now=now)
    assert resolution == 1 and len(recent) == 60
    assert recent[7].rf_dbm == -90

    resolution, show = HistoryService.series(channel=channel, start=now - timedelta(hours=3), end=now, now=now)
    assert resolution == 10
    assert len(show) == 12, "the raw minute comes folded to 10 s windows, like the older one"
    assert [r.rf_dbm for r in show[6:]] == [-90, -50, -50, -50, -50, -50]
    assert {r.resolution for r in show} == {10}
    assert HistoryService.series(channel=channel, start=now, end=now - timedelta(hours=1), now=now)[1] == []


@pytest.mark.django_db
def test_the_periodic_tasks_leave_the_work_to_the_consumer_holding_the_lock(settings):
    from huey.contrib.djhuey import HUEY

    from tasks.history import downsample_history, prune_history

    settings.MICBOARD_HISTORY_RAW_MINUTES = 60
    channel = Channel.objects.get(receiver=make_receiver(), number=1)
    _raw_minutes(channel, start=timezone.now().replace(second=0, microsecond=0) - timedelta(days=20), seconds=60)
    with HUEY.lock_task("history-downsample"), HUEY.lock_task("history-prune"):  # another consumer is at it
        downsample_history.call_local()
        prune_history.call_local()
        assert len(samples(channel, 1)) == 60
    downsample_history.call_local()
    assert len(samples(channel, 60)) == 1
    prune_history.call_local()
    assert not samples(channel)


def test_a_resolution_the_folds_cannot_use_is_refused_and_0_switches_history_off(db):
    from tests.test_configuration import _settings_of

    bad = _settings_of({"MICBOARD_HISTORY_RESOLUTION": "5"}, "pass")
    assert bad.returncode != 0 and "MICBOARD_HISTORY_RESOLUTION must be 0 (off), 1, 10 or 60, got 5" in bad.stderr
    receiver = make_receiver()
    recorder = SampleRecorder(resolution=0)
    recorder.observe([PollOutcome(receiver.pk, reading=reading(pack_on(1)))], now=T0)
    assert recorder.write(now=T0 + timedelta(minutes=1), receiver_ids=[receiver.pk]) == 0
    assert not ChannelSample.objects.exists()


@pytest.mark.django_db
def test_history_size_states_bytes_per_channel_hour_and_leaves_nothing_behind():
    import re
    from io import StringIO

    from django.core.management import call_command

    from micboard.models import Receiver

    out = StringIO()
    call_command("history_size", channels=4, stdout=out)
    figures = re.search(r"14400 rows of 1 s samples, (\d+) bytes on disk .*: (\d+) bytes a row", out.getvalue())
    assert figures, out.getvalue()
    assert 30 <= int(figures[2]) <= 400, "a sample row is a few dozen bytes, not a few kilobytes"
    assert not Receiver.objects.exists() and not ChannelSample.objects.exists()
