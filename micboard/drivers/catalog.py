"""Every receiver model micboard can monitor, across protocols.

Each protocol's spec module declares ``MODELS``: the models it speaks for, with the driver that reads
them, the channel count and the port the device listens on by default. The domain (model choices,
channel rows), discovery and the demo rig read this one table; drivers and simulators read their own
spec for the wire details. No Django here: the simulators read it too.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True, slots=True)
class DeviceModel:
    model: str  # as the device names itself, e.g. "ULXD4Q", "EM4-DANTE", "UR4D"
    manufacturer: str  # "Shure" / "Sennheiser"
    driver: str  # key in micboard.drivers.DRIVERS
    family: str  # e.g. "ulxd", "ewdx", "uhfr", "system_api"
    channels: int
    default_port: int
    is_iem: bool = False
    label: str = ""  # human name, e.g. "Sennheiser EW-DX EM 4 Dante"
    transport: str = "tcp"  # "tcp" or "udp": what the device listens on (port checks, discovery)


SPEC_MODULES: tuple[str, ...] = (
    "micboard.drivers.shure_spec",
    "micboard.drivers.uhfr_spec",
    "micboard.drivers.system_api_spec",
    "micboard.drivers.ssc_spec",
)


@cache
def _models() -> dict[tuple[str, str], DeviceModel]:
    table: dict[tuple[str, str], DeviceModel] = {}
    for path in SPEC_MODULES:
        for entry in importlib.import_module(path).MODELS:
            table[(entry.driver, entry.model.upper())] = entry
    return table


def all_models() -> list[DeviceModel]:
    """Every known model, grouped by driver in SPEC_MODULES order."""
    return list(_models().values())


def device_model(model: str, *, driver: str) -> DeviceModel:
    """The catalog entry of a model as one driver reads it (case-insensitive; ``AD4Q-A`` finds AD4Q).

    Raises:
        KeyError: the driver does not read such a model.
    """
    key = (model or "").strip().upper()
    table = _models()
    found = table.get((driver, key)) or table.get((driver, key.split("-")[0]))
    if found is None:
        raise KeyError(model)
    return found


def drivers() -> list[str]:
    """Driver keys that read at least one model, in catalog order."""
    return list(dict.fromkeys(entry.driver for entry in _models().values()))
