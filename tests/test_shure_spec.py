"""The one Shure spec: the catalog, the driver and the simulator agree because they read the same data."""

from __future__ import annotations

import asyncio

import pytest

from micboard.drivers.catalog import device_model
from micboard.drivers.shure import poll
from micboard.drivers.shure_spec import FAMILIES, SPECS, clamp_meter_rate, shure_model
from micboard.drivers.shure_wire import CHANNEL_PROPS
from micboard.simulators import make_device
from micboard.simulators.engine import SimulatorThread
from micboard.simulators.rig import DEMO_RIG

SHURE_RIG = [rig for rig in DEMO_RIG if rig.driver == "shure_tcp"]  # the command-string devices of the rig


@pytest.mark.parametrize(
    ("model", "channels", "family"),
    [
        ("ULXD4Q", 4, "ulxd"),
        ("QLXD4", 1, "qlxd"),
        ("SLXD4Q+", 4, "slxd"),
        ("AD4Q-A", 4, "axient"),
        ("ad4d", 2, "axient"),
        ("P10T", 2, "psm1000"),
    ],
)
def test_the_catalog_and_the_driver_see_the_same_models(model, channels, family):
    entry = device_model(model, driver="shure_tcp")
    assert (entry.channels, entry.family, entry.default_port) == (channels, family, 2202)
    assert (shure_model(model).channels, shure_model(model).family) == (channels, family)
    assert entry.label.startswith("Shure ")


def test_an_unknown_model_is_not_in_the_catalog():
    with pytest.raises(KeyError):
        device_model("UR4D", driver="shure_tcp")
    with pytest.raises(KeyError):
        shure_model("SKM 300")


def test_every_property_name_of_the_spec_is_one_the_driver_reads():
    for family in FAMILIES:
        spec = SPECS[family]
        names = [
            spec.group_channel_prop,
            spec.tx_model_prop,
            spec.battery_bars_prop,
            spec.battery_percent_prop,
            spec.battery_runtime_prop,
            spec.battery_type_prop,
            spec.tx_offset_prop,
            spec.tx_mute_prop,
            spec.audio_mute_prop,
        ]
        assert {n for n in names if n} <= set(CHANNEL_PROPS[family]), family


def test_the_qlxd_meter_rate_floor_comes_from_the_spec():
    assert clamp_meter_rate("qlxd", 100) == 1000
    assert clamp_meter_rate("ulxd", 100) == 100
    assert clamp_meter_rate("ulxd", 0) == 0


def test_the_simulator_writes_what_the_spec_says_and_the_driver_reads_it_back():
    """Every demo family: names, transmitter model and battery arrive through the spec's property names."""
    devices = [make_device(rig, host="127.0.0.1", port=0, dynamics=False, chaos=True, seed=5) for rig in SHURE_RIG]
    with SimulatorThread(devices) as sim:
        readings = {
            rig.key: asyncio.run(poll(*sim.address(rig.key), model=rig.model, timeout=2.0, meter_rate_ms=1000))
            for rig in SHURE_RIG
        }
    for rig in SHURE_RIG:
        reading = readings[rig.key]
        spec = SPECS[shure_model(rig.model).family]
        for number, wanted in enumerate(rig.channels, start=1):
            got = reading.channels[number]
            assert got.name == wanted.name
            assert got.frequency_khz == wanted.frequency_khz
            if spec.tx_model_prop:
                assert got.tx_model == wanted.tx_model
                assert got.battery_bars == -(-wanted.battery_percent // 20)
            else:
                assert got.tx_model is None and got.battery_bars is None
