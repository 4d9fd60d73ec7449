"""A pack is present when the receiver says so (TX type / model), not when it reports battery bars.

A pack that is on but reports no bars (BATT_BARS 255) is neither "No transmitter" nor "Off (was good)":
the tile says "Battery unknown", shows the pack's model and audio, and audio peaks show on it. Through the
real driver and services, against the simulator (its property override injects the missing bars).
"""

from __future__ import annotations

import pytest

from micboard.services import BoardService
from micboard.simulators.rig import rig_device
from tasks.polling import run_poll_cycle
from tests.factories import receivers_for, start_simulator, use_fast_polls

pytestmark = pytest.mark.django_db


def tile(receiver, number):
    channel = receiver.channels.get(number=number)
    return next(t for t in BoardService.board().tiles if t.channel_id == channel.pk)


@pytest.mark.parametrize(("key", "bars_prop", "number"), [("ulxd", "BATT_BARS", 2), ("ad", "TX_BATT_BARS", 1)])
def test_pack_on_without_battery_bars_shows_battery_unknown_with_its_model_audio_and_peaks(
    settings, key, bars_prop, number
):
    use_fast_polls(settings)
    sim = start_simulator([key])
    try:
        receiver = receivers_for(sim, [key])[key]
        run_poll_cycle()  # bars known first: the pack has a last battery (the "Off (was good)" trap)
        assert tile(receiver, number).status in ("GOOD", "REPLACE", "CRITICAL")
        sim.override(key, bars_prop, "255", channel=number)
        run_poll_cycle()
        unknown = tile(receiver, number)
        sim.peak(key, number)
        run_poll_cycle()
        peaking = tile(receiver, number)
    finally:
        sim.stop()
    assert (unknown.status, unknown.status_label) == ("BATTERY_UNKNOWN", "Battery unknown")
    assert unknown.battery_bars is None and not unknown.prev
    assert unknown.tx_model == rig_device(key).channels[number - 1].tx_model and unknown.audio_percent is not None
    assert peaking.status == "AUDIO_PEAK"

