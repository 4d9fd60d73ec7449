"""Shure command-string families and the models that belong to them.

Shared by the driver (which SAMPLE layout and scaling to expect), the
simulator (what to emulate) and the domain (how many channels a model has).
"""

from __future__ import annotations

from dataclasses import dataclass

from micboard.drivers.catalog import DeviceModel

ULXD = "ulxd"
QLXD = "qlxd"
SLXD = "slxd"
AXIENT = "axient"
PSM1000 = "psm1000"

FAMILIES = (ULXD, QLXD, SLXD, AXIENT, PSM1000)

# protocols.md §1.11: never below 100 ms; QLX-D never below 1000 ms (lock-up risk).
MIN_METER_RATE_MS = {ULXD: 100, QLXD: 1000, SLXD: 100, AXIENT: 100, PSM1000: 1000}


@dataclass(frozen=True, slots=True)
class ShureModel:
    model: str
    family: str
    channels: int
    is_iem: bool = False


SHURE_MODELS: dict[str, ShureModel] = {
    m.model: m
    for m in (
        ShureModel("ULXD4", ULXD, 1),
        ShureModel("ULXD4D", ULXD, 2),
        ShureModel("ULXD4Q", ULXD, 4),
        ShureModel("QLXD4", QLXD, 1),
        ShureModel("SLXD4", SLXD, 1),
        ShureModel("SLXD4D", SLXD, 2),
        ShureModel("SLXD4Q+", SLXD, 4),
        ShureModel("AD4D", AXIENT, 2),
        ShureModel("AD4Q", AXIENT, 4),
        ShureModel("P10T", PSM1000, 2, is_iem=True),
    )
}


_LABELS = {
    ULXD: "Shure ULX-D",
    QLXD: "Shure QLX-D",
    SLXD: "Shure SLX-D",
    AXIENT: "Shure Axient Digital",
    PSM1000: "Shure PSM1000",
}

# The catalog's view (micboard.drivers.catalog): every model above, read by the command-strings driver.
MODELS = tuple(
    DeviceModel(
        model=m.model,
        manufacturer="Shure",
        driver="shure_tcp",
        family=m.family,
        channels=m.channels,
        default_port=2202,
        is_iem=m.is_iem,
        label=f"{_LABELS[m.family]} {m.model}",
    )
    for m in SHURE_MODELS.values()
)


def shure_model(model: str) -> ShureModel:
    """Look up a model name (case-insensitive; AD suffixes like ``AD4Q-A`` allowed).

    Raises:
        KeyError: the model is not a supported Shure command-string model.
    """
    key = model.strip().upper()
    if key in SHURE_MODELS:
        return SHURE_MODELS[key]
    base = key.split("-")[0]
    if base in SHURE_MODELS:
        return SHURE_MODELS[base]
    if key in ("PSM1000", "P10T"):
        return SHURE_MODELS["P10T"]
    raise KeyError(model)


def clamp_meter_rate(family: str, rate_ms: int) -> int:
    """Return a safe METER_RATE for the family (0 stays 0 = metering off)."""
    if rate_ms <= 0:
        return 0
    return max(rate_ms, MIN_METER_RATE_MS[family], 100)
