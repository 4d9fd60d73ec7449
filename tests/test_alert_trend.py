"""The runtime-trend alert: a pack whose runtime falls faster than the clock, judged from the show history.

The rule functions are pure; the service tests write history rows at fixed times; the last test drains a
simulated pack fast (the simulator's drain factor) under a driven link holder.
"""

from datetime import UTC, datetime, timedelta

import pytest

from micboard import alerts as rules
from micboard.alerts import AlertKind, Rules
from micboard.models import Alert, AlertRule, ChannelSample
from micboard.services import AssignmentService, DeviceService, PollOutcome
from micboard.services.alerts import AlertService, RuntimeTrends
from micboard.simulators import make_device
from micboard.simulators.engine import SimulatorThread
from micboard.simulators.rig import rig_device
from tests.factories import Driven, make_receiver, pack_off, pack_on, reading, receivers_for, use_fast_polls, wait_for

NOW = datetime(2026, 11, 28, 21, 0, tzinfo=UTC)
ON = Rules()


def at(minutes: float) -> datetime:
    return NOW - timedelta(minutes=minutes)


# --- the rule functions ----------------------------------------------------------------------------------


def test_the_drop_is_measured_since_the_last_swap_skipping_unknown_runtimes():
    steady = [(at(12 - m), 300 - m, True) for m in range(13)]
    assert rules.runtime_drop(steady)[:2] == (12, 12.0)
    with_unknown = [(at(12), 300, True), (at(8), None, True), (at(0), 290, True)]
    assert rules.runtime_drop(with_unknown)[:2] == (10, 12.0)
    swapped = [(at(12), 40, True), (at(6), 20, True), (at(5), 480, True), (at(0), 470, True)]
    assert rules.runtime_drop(swapped)[:2] == (10, 5.0), "the old pack is never compared with the fresh one"
    off_and_on = [(at(12), 100, True), (at(6), None, False), (at(5), 98, True), (at(0), 90, True)]
    assert rules.runtime_drop(off_and_on)[:2] == (8, 5.0)
    jitter = [(at(10), 300, True), (at(5), 302, True), (at(0), 295, True)]
    assert rules.runtime_drop(jitter)[:2] == (5, 10.0), "a rise within SWAP_RISE is noise, not a swap"
    assert rules.runtime_drop([(at(0), 300, True)]) is None
    assert rules.runtime_drop([]) is None


@pytest.mark.parametrize(
    ("dropped", "elapsed", "fires"),
    [
        (30, 10.0, True),  # three times the clock
        (16, 10.0, False),  # 1.5 x 10 = 15, and one minute is rounding
        (17, 10.0, True),
        (60, 9.5, False),  # not ten minutes of history yet
        (None, None, False),
        (-5, 10.0, False),  # rising
    ],
)
def test_a_runtime_falling_faster_than_the_factor_over_enough_history_fires(dropped, elapsed, fires):
    hit = rules.runtime_trend(rules=ON, tx_present=True, dropped=dropped, elapsed_minutes=elapsed)
    assert (hit is not None) == fires
    if hit:
        assert hit.detail.startswith(f"Battery draining fast: runtime fell {dropped} min in 10 min")


@pytest.mark.parametrize(
    ("dropped", "holding", "fires"),
    [
        (17, False, True),  # 1.6 x the clock: opens
        (14, False, False),  # 1.4: does not open ...
        (14, True, True),  # ... but holds an open alert (13 after a minute of rounding: over 1.25 x 10)
        (13, True, False),  # 12 is under 12.5: the fall slowed, it resolves
    ],
)
def test_an_open_alert_holds_until_the_fall_slows_well_below_the_factor(dropped, holding, fires):
    """Hysteresis: a pack draining right at the factor must not open and resolve it minute after minute."""
    hit = rules.runtime_trend(rules=ON, tx_present=True, dropped=dropped, elapsed_minutes=10.0, holding=holding)
    assert (hit is not None) == fires


def test_a_pack_draining_near_the_factor_keeps_one_alert_for_the_whole_battery(rack):
    """A pack at 1.6x judged every minute for an hour: one alert, open until the swap (no flapping)."""
    receiver, ch = rack
    start = NOW - timedelta(minutes=60)
    runtimes = [480 - int(1.6 * m) for m in range(61)]  # whole minutes, as the pack reports them
    history(ch[1], runtimes, step=60)
    for m in range(10, 61):
        now = start + timedelta(minutes=m)
        record(receiver, pack_on(1, minutes=runtimes[m]), pack_on(2), now=now)
        AlertService.evaluate(now=now)
    assert len(trend_alerts()) == 1
    assert trend_alerts(state="open")


def test_a_switched_off_pack_or_the_kind_switched_off_never_fires():
    assert rules.runtime_trend(rules=ON, tx_present=False, dropped=60, elapsed_minutes=10) is None
    off = Rules(kinds=frozenset({"battery"}))
    assert rules.runtime_trend(rules=off, tx_present=True, dropped=60, elapsed_minutes=10) is None
    assert rules.hold_seconds(AlertKind.RUNTIME_TREND, ON) == 0


# --- the service, with history written at fixed times -----------------------------------------------------


@pytest.fixture
def rack(db):
    receiver = make_receiver()
    ch = {c.number: c for c in receiver.channels.all()}
    AssignmentService.assign(channel=ch[1], performer="Lead Vocal")
    AssignmentService.assign(channel=ch[2], performer="Keys")
    return receiver, ch


def record(receiver, *channels, now=NOW):
    DeviceService.record_poll_results(outcomes=[PollOutcome(receiver.pk, reading=reading(*channels))], now=now)


def history(channel, runtimes, *, step=10, end=NOW):
    """Rows every ``step`` seconds up to ``end`` with the given runtimes (oldest first), as the holders write them."""
    rows = [
        ChannelSample(
            channel=channel,
            at=end - timedelta(seconds=step * (len(runtimes) - 1 - i)),
            resolution=1,
            runtime_minutes=r,
            tx_present=r is not None,
            battery_bars=4,
        )
        for i, r in enumerate(runtimes)
    ]
    ChannelSample.objects.bulk_create(rows)


def trend_alerts(**filters):
    return list(Alert.objects.filter(kind="runtime_trend", **filters))


def test_a_pack_losing_runtime_three_times_faster_than_the_clock_alerts_and_a_swap_resolves_it(rack):
    receiver, ch = rack
    # One row a minute (the stretch since the last swap is read, up to an hour): lead loses 3 min a minute,
    # keys 1 (healthy).
    history(ch[1], [300 - 3 * m for m in range(13)], step=60)
    history(ch[2], [300 - m for m in range(13)], step=60)
    record(receiver, pack_on(1, minutes=264), pack_on(2, minutes=288))
    assert AlertService.evaluate(now=NOW).opened == 1
    [alert] = trend_alerts(state="open")
    assert alert.channel == ch[1]
    assert (
        alert.detail
        == "Battery draining fast: runtime fell 36 min in 12 min; check the pack and have a fresh one ready"
    )

    # A fresh pack: the runtime jumps up, the stretch starts again and is too short to judge.
    later = NOW + timedelta(minutes=2)
    history(ch[1], [480, 479], step=60, end=later)
    record(receiver, pack_on(1, minutes=479), pack_on(2, minutes=286), now=later)
    assert AlertService.evaluate(now=later).resolved == 1
    assert trend_alerts(state="resolved") == [alert]


def test_a_swap_within_the_minute_the_figures_are_kept_does_not_reopen_the_alert(rack):
    """The figures are read once a minute: a fresh pack seen meanwhile is not judged by its predecessor's."""
    receiver, ch = rack
    history(ch[1], [300 - 3 * m for m in range(13)], step=60)
    record(receiver, pack_on(1, minutes=264), pack_on(2))
    assert AlertService.evaluate(now=NOW).opened == 1
    swap = NOW + timedelta(seconds=20)  # off for the swap (the alert resolves), on again with a fresh battery
    record(receiver, pack_off(1), pack_on(2), now=swap)
    assert AlertService.evaluate(now=swap).resolved == 1
    fresh = swap + timedelta(seconds=20)  # the figures of NOW are still kept
    record(receiver, pack_on(1, minutes=480), pack_on(2), now=fresh)
    assert AlertService.evaluate(now=fresh).opened == 0
    assert not trend_alerts(state="open")


def test_an_assignment_can_allow_a_faster_fall_and_the_setting_sets_the_default(rack, settings):
    receiver, ch = rack
    history(ch[1], [300 - 2 * m for m in range(13)], step=60)  # twice the clock
    record(receiver, pack_on(1, minutes=276))
    AlertRule.objects.create(assignment=ch[1].assignment, trend_factor=2.5)
    assert AlertService.evaluate(now=NOW).opened == 0
    AlertRule.objects.filter(assignment=ch[1].assignment).update(trend_factor=None)
    settings.MICBOARD_ALERT_TREND_FACTOR = 3.0
    assert AlertService.evaluate(now=NOW + timedelta(seconds=1)).opened == 0
    settings.MICBOARD_ALERT_TREND_FACTOR = 1.5
    assert AlertService.evaluate(now=NOW + timedelta(seconds=2)).opened == 1


def test_the_history_is_read_once_a_minute_for_all_channels_of_an_evaluator(rack, django_assert_num_queries):
    _, ch = rack
    history(ch[1], [300 - 3 * m for m in range(13)], step=60)
    ids = [ch[1].pk, ch[2].pk]
    with django_assert_num_queries(1):
        assert RuntimeTrends.figures(channel_ids=ids, now=NOW, minutes=10) == {ch[1].pk: (36, 12.0, 264)}
    with django_assert_num_queries(0):
        RuntimeTrends.figures(channel_ids=ids, now=NOW + timedelta(seconds=59), minutes=10)
    with django_assert_num_queries(1):
        RuntimeTrends.figures(channel_ids=ids, now=NOW + timedelta(seconds=60), minutes=10)
    with django_assert_num_queries(1):  # another evaluator (other channels) reads its own
        RuntimeTrends.figures(channel_ids=ids[:1], now=NOW + timedelta(seconds=61), minutes=10)


def test_rows_between_the_minute_marks_are_not_read(rack):
    _, ch = rack
    # One row a second, with runtimes off the marks that would look like a crash if they were read.
    rows = [
        ChannelSample(
            channel=ch[1],
            at=NOW - timedelta(seconds=s),
            resolution=1,
            runtime_minutes=(300 - (660 - s) // 60) if s % 10 == 0 else 1,
            tx_present=True,
        )
        for s in range(0, 661)
    ]
    ChannelSample.objects.bulk_create(rows)
    dropped, elapsed, _ = RuntimeTrends.read(channel_ids=[ch[1].pk], now=NOW, minutes=10)[ch[1].pk]
    assert dropped == 11 and elapsed == pytest.approx(11.0)


# --- a simulated pack draining fast ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_simulated_pack_draining_fast_raises_the_alert_and_its_healthy_neighbour_does_not(settings):
    use_fast_polls(settings)
    settings.MICBOARD_LINK_LEASE = 3.0
    settings.MICBOARD_HISTORY_RESOLUTION = 1
    settings.MICBOARD_ALERT_TREND_MINUTES = 0.1  # six seconds of history (read every 1.5 s)
    settings.MICBOARD_ALERT_KINDS = ("runtime_trend",)
    device = make_device(
        rig_device("ulxd"), host="127.0.0.1", port=0, seed=7, calculating_seconds=0, pack_events_per_hour=0
    )
    sim = SimulatorThread([device]).start()
    driven = None
    try:
        receiver = receivers_for(sim, ["ulxd"])["ulxd"]
        ch = {c.number: c for c in receiver.channels.all()}
        AssignmentService.assign(channel=ch[1], performer="Lead Vocal")
        AssignmentService.assign(channel=ch[2], performer="Keys")
        sim.set_battery("ulxd", 1, 100)
        sim.set_battery("ulxd", 2, 100)
        sim.set_drain("ulxd", 1, 240)  # 4 runtime minutes gone every second
        driven = Driven()
        alert = wait_for(lambda: Alert.objects.filter(kind="runtime_trend").first(), 20, "see the pack drain fast")
        assert alert.channel_id == ch[1].pk and alert.detail.startswith("Battery draining fast: runtime fell")
        assert not Alert.objects.filter(kind="runtime_trend", channel=ch[2]).exists()
    finally:
        if driven is not None:
            driven.stop()
        sim.stop()
