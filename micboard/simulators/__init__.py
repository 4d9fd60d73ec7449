"""Simulated receivers that speak the real wire protocols over loopback (no Django imports).

:func:`make_device` builds the simulator for a rig entry by its driver key; a protocol module
registers its :class:`~micboard.simulators.engine.SimulatedDevice` subclass in :data:`SIMULATORS`.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from micboard.simulators.engine import SimulatedDevice
    from micboard.simulators.rig import RigDevice

# driver key (micboard.drivers.DRIVERS) -> "module.Class" of its simulator
SIMULATORS: dict[str, str] = {
    "shure_tcp": "micboard.simulators.shure_tcp.SimulatedShureDevice",
    "shure_uhfr": "micboard.simulators.uhfr.SimulatedUhfrDevice",
    "shure_system_api": "micboard.simulators.system_api.SimulatedSystemApiDevice",
    "sennheiser_ssc": "micboard.simulators.ssc.SimulatedSscDevice",
}


def simulator_class(driver: str) -> type[SimulatedDevice]:
    """The simulator class for a driver key. Raises KeyError when no simulator speaks that protocol."""
    module, _, name = SIMULATORS[driver].rpartition(".")
    return getattr(import_module(module), name)


def make_device(rig: RigDevice, **kwargs: Any) -> SimulatedDevice:
    """A simulated device for ``rig``, of the class its ``rig.driver`` names (kwargs as that class takes)."""
    try:
        cls = simulator_class(rig.driver)
    except KeyError:
        known = ", ".join(sorted(SIMULATORS))
        raise ValueError(f"{rig.key}: no simulator for driver {rig.driver!r} (known: {known})") from None
    return cls(rig, **kwargs)
