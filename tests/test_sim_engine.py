"""The simulator engine as the families use it: make_device, the hub's family actions, the ``slow`` fault.

Drivers against the simulator over real loopback sockets.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from micboard.drivers.catalog import device_model
from micboard.drivers.shure import ShureLink, poll
from micboard.exceptions import DeviceSilentError
from micboard.simulators import make_device, simulator_class
from micboard.simulators.engine import FAULTS, SLOW_REPLY_SECONDS, SimulatorError, SimulatorHub, SimulatorThread
from micboard.simulators.rig import DEMO_RIG, rig_device
from micboard.simulators.shure_tcp import SimulatedShureDevice


def _device(key: str, **options) -> SimulatedShureDevice:
    settings = {"dynamics": False, "chaos": False, "seed": 3, "calculating_seconds": 0, **options}
    return make_device(rig_device(key), host="127.0.0.1", port=0, **settings)


def test_make_device_builds_the_simulator_the_rig_entry_names():
    devices = [make_device(rig, host="127.0.0.1", port=0) for rig in DEMO_RIG]
    assert [type(d) for d in devices] == [simulator_class(rig.driver) for rig in DEMO_RIG]
    assert [len(d.channels) for d in devices] == [device_model(r.model, driver=r.driver).channels for r in DEMO_RIG]
    unknown = dataclasses.replace(rig_device("ulxd"), driver="no_such_protocol")
    with pytest.raises(ValueError, match="no simulator for driver 'no_such_protocol'"):
        make_device(unknown)


def test_every_engine_fault_is_accepted_and_cleared_and_family_faults_are_added():
    async def scenario() -> list[str | None]:
        device = _device("slxd")
        hub = SimulatorHub([device])
        await hub.start()
        seen = []
        try:
            for kind in (*FAULTS[1:], "third_party_disabled"):
                seen.append((await hub.call("slxd", "fault", kind=kind))["fault"])
            seen.append((await hub.call("slxd", "fault", kind="none"))["fault"])
            with pytest.raises(SimulatorError, match=r"unknown fault 'melted'.*slow.*third_party_disabled"):
                await hub.call("slxd", "fault", kind="melted")
        finally:
            await hub.stop()
        return seen

    assert asyncio.run(scenario()) == [
        "refuse",
        "silent",
        "stop_answering",
        "garbage",
        "drop_mid_frame",
        "slow",
        "third_party_disabled",
        None,
    ]


def test_the_hub_offers_a_familys_own_actions_and_checks_their_arguments():
    with SimulatorThread([_device("ulxd")]) as sim:
        assert "override" in sim.hub.action_names()
        snap = sim.call("ulxd", "override", prop="TX_OFFSET", value="021", channel=1)
        assert snap["overrides"] == [{"channel": 1, "prop": "TX_OFFSET", "value": "021"}]
        with pytest.raises(SimulatorError, match="override needs: prop"):
            sim.call("ulxd", "override", value="1")
        with pytest.raises(SimulatorError, match="unknown action 'explode'"):
            sim.call("ulxd", "explode")


def test_a_slow_device_still_answers_a_poll_within_a_two_second_timeout():
    with SimulatorThread([_device("ulxd")]) as sim:
        host, port = sim.address("ulxd")
        quick_started = time.monotonic()
        quick = asyncio.run(poll(host, port, model="ULXD4Q", timeout=2.0, meter_rate_ms=100))
        quick_took = time.monotonic() - quick_started
        sim.set_fault("ulxd", "slow")
        started = time.monotonic()
        reading = asyncio.run(poll(host, port, model="ULXD4Q", timeout=2.0, meter_rate_ms=100))
        took = time.monotonic() - started
    assert quick_took < 1.0
    assert SLOW_REPLY_SECONDS <= took < 2.0 + 0.5
    names = ["Lead Vox", "BVox 1", "BVox 2", "Sax"]
    assert [c.name for c in reading.channels.values()] == [c.name for c in quick.channels.values()] == names
    assert reading.channels[1].battery_bars == 5


def test_a_live_link_to_a_slow_device_stays_up_and_follows_its_reports():
    async def scenario() -> tuple[bool, str | None, float]:
        device = _device("ulxd")
        device.fault = "slow"
        hub = SimulatorHub([device])
        await hub.start()
        link = ShureLink("127.0.0.1", device.port, model="ULXD4Q", meter_rate_ms=200, timeout=2.0)
        task = asyncio.create_task(link.run())
        try:
            started = asyncio.get_running_loop().time()
            while not link.ready and not task.done():
                await asyncio.sleep(0.02)
            ready_after = asyncio.get_running_loop().time() - started
            await hub.call("ulxd", "set_name", channel=2, name="SLOWPOKE")
            name = None
            for _ in range(150):  # 3 s: renamed at once (unsolicited REPs are not replies), and no silence error
                await asyncio.sleep(0.02)
                reading = link.take()
                if reading is not None and reading.channels[2].name == "SLOWPOKE":
                    name = reading.channels[2].name
            alive = not task.done()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await hub.stop()
        return alive, name, ready_after

    alive, name, ready_after = asyncio.run(scenario())
    assert alive, "the link to a slow but living device was declared dead"
    assert name == "SLOWPOKE"
    assert SLOW_REPLY_SECONDS <= ready_after < 2.0


def test_a_silent_device_is_still_told_apart_from_a_slow_one():
    with SimulatorThread([_device("qlxd")]) as sim:
        host, port = sim.address("qlxd")
        sim.set_fault("qlxd", "silent")
        with pytest.raises(DeviceSilentError):
            asyncio.run(poll(host, port, model="QLXD4", timeout=1.0))
        sim.set_fault("qlxd", None)
        started = time.monotonic()
        reading = asyncio.run(poll(host, port, model="QLXD4", timeout=2.0, meter_rate_ms=0))
        assert time.monotonic() - started < 1.0
        assert reading.channels[1].name == "Spare HH"
