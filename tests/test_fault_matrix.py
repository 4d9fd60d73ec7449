"""Every family and every simulator fault, through the real path: simulator -> driver -> link holder -> models.

For each family of the demo rig (ULX-D, Axient Digital, QLX-D, SLX-D, PSM1000, UHF-R, System API, EW-DX),
one device runs in the simulator on an ephemeral loopback port and a link holder follows it (a live link
where the family has one, a poll every interval where it has not).
Each fault is switched on once the receiver is online; the board must show what the crew should see
within three poll intervals, and the receiver must come back by itself once the fault clears.

What the crew should see:
- a receiver that refuses connections, never answers, stops answering or cuts every reply in half
  delivers no reading: all its tiles turn RX_COM_ERROR;
- junk between good replies and replies that come late still deliver the readings: the tiles stay
  live and keep the names the receiver reports (no junk in them).
"""

from __future__ import annotations

import time

import pytest

from micboard.drivers import DRIVERS
from micboard.drivers.catalog import device_model
from micboard.models import Channel, Receiver
from micboard.simulators.engine import FAULTS
from micboard.simulators.rig import DEMO_RIG
from micboard.status import ChannelStatus as S
from tests.factories import Driven, receivers_for, start_simulator, use_fast_polls, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

INTERVAL = 1.5  # seconds between polls; a live link notices silence within 2.5 s, inside 3 intervals
FAULT_BUDGET = 3 * INTERVAL
RECOVERY_SECONDS = 12.0  # back-off capped at 1 s in tests, plus a fresh session and its first reading

OFFLINE = "offline"
LIVE = "live"
EXPECTED = {
    "refuse": OFFLINE,
    "silent": OFFLINE,
    "stop_answering": OFFLINE,
    "drop_mid_frame": OFFLINE,
    "garbage": LIVE,
    "slow": LIVE,
}


def _one_device_per_family() -> list[str]:
    keys: dict[str, str] = {}
    for device in DEMO_RIG:
        if device.driver in DRIVERS:
            keys.setdefault(device_model(device.model, driver=device.driver).family, device.key)
    return list(keys.values())


CASES = [(key, fault) for key in _one_device_per_family() for fault in FAULTS if fault in EXPECTED]


def test_the_matrix_covers_every_fault_of_the_engine():
    assert set(EXPECTED) == {f for f in FAULTS if f}, "a new fault needs its expected tile state here"


@pytest.fixture
def followed(settings, request):
    key = request.param
    use_fast_polls(settings, interval=INTERVAL)
    sim = start_simulator([key])
    receiver = receivers_for(sim, [key])[key]
    holder = Driven()
    yield sim, key, receiver
    holder.stop()
    sim.stop()


def _statuses(receiver: Receiver) -> list[str]:
    return [c.status for c in Channel.objects.filter(receiver=receiver).order_by("number")]


def _names(receiver: Receiver) -> list[str]:
    return [c.name for c in Channel.objects.filter(receiver=receiver).order_by("number")]


def _offline(receiver: Receiver) -> bool:
    return not Receiver.objects.get(pk=receiver.pk).online and set(_statuses(receiver)) == {S.RX_COM_ERROR}


def _live(receiver: Receiver) -> bool:
    return Receiver.objects.get(pk=receiver.pk).online and S.RX_COM_ERROR not in _statuses(receiver)


@pytest.mark.parametrize(("followed", "fault"), CASES, ids=[f"{k}-{f}" for k, f in CASES], indirect=["followed"])
def test_a_fault_shows_on_the_tiles_within_three_intervals_and_clears_by_itself(followed, fault):
    sim, key, receiver = followed
    wait_for(lambda: _live(receiver), 10, f"bring {key} online")
    names = _names(receiver)
    assert all(names), f"{key} reported no channel names"

    sim.set_fault(key, fault)
    started = time.monotonic()
    if EXPECTED[fault] == OFFLINE:
        wait_for(lambda: _offline(receiver), FAULT_BUDGET, f"show {key} offline under {fault}")
    else:
        # Readings keep arriving: the receiver stays live for three intervals, names intact.
        deadline = started + FAULT_BUDGET
        while time.monotonic() < deadline:
            assert _live(receiver), f"{key} went offline under {fault}"
            assert _names(receiver) == names, f"{key} under {fault} changed the names to {_names(receiver)}"
            time.sleep(0.1)

    sim.set_fault(key, None)
    wait_for(lambda: _live(receiver), RECOVERY_SECONDS, f"bring {key} back after {fault}")
    assert _names(receiver) == names
