"""Sennheiser Sound Control Protocol v1 (SSC): the models and the addresses micboard reads (data only).

Shared by the driver (:mod:`micboard.drivers.ssc`, which requests these leaves and reads the replies) and the
simulator (:mod:`micboard.simulators.ssc`, which serves a tree with exactly these leaves). See protocols.md
§5 (wire facts), §6 (normalisation) and §7.5 (what a simulator must do).

Three dialects answer on the same transport (one JSON object per UDP datagram, port 45) but name their leaves
differently (§5.5, §5.6):

* ``ewdx``: EW-DX EM 2 / EM 2 Dante / EM 4 Dante. Nested battery leaves (``/mates/txN/battery/gauge``,
  lifetime in minutes), meters under ``/m/rxN``, ``/mates/active`` lists the linked mates, ``NoLink`` warning.
* ``speechline_rack``: the SpeechLine Digital Wireless rack receiver (one channel). Flat battery leaves
  (``bat_gauge``, ``bat_lifetime`` in **seconds**), ``/mates/active`` as ``["tx1"]``, ``mute_mode`` a number.
* ``speechline_mcr``: the SpeechLine multi-channel receiver (2 or 4 channels). Flat battery leaves, mates per
  channel at ``/rxN/mates`` (``["mates/tx1"]``), ``mute_mode`` a string, the ``"No Link"`` warning.

A path is a tuple of keys: ``("mates", "tx1", "battery", "gauge")`` is ``/mates/tx1/battery/gauge``.
No Django imports here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from micboard.drivers.catalog import DeviceModel

__all__ = [
    "DEFAULT_PORT",
    "DIALECTS",
    "MODELS",
    "SSC_MODELS",
    "Path",
    "SscModel",
    "meter_paths",
    "model_from_product",
    "read_groups",
    "ssc_model",
    "subscription_groups",
]

Path = tuple[str, ...]

DRIVER = "sennheiser_ssc"
DEFAULT_PORT = 45
MAX_DATAGRAM = 65535  # receive buffer per datagram (§5.1 asks for >= 64 KiB)

EWDX = "ewdx"
SPEECHLINE_RACK = "speechline_rack"
SPEECHLINE_MCR = "speechline_mcr"
DIALECTS = (EWDX, SPEECHLINE_RACK, SPEECHLINE_MCR)

# Error codes (§5.4).
CODE_BAD_REQUEST = 400
CODE_UNAUTHORIZED = 401
CODE_FORBIDDEN = 403
CODE_NOT_FOUND = 404
CODE_FAILED_DEPENDENCY = 424  # /mates/txN/*: no transmitter (or no valid data from it)
CODE_TERMINATED = 310  # a subscription ended (lifetime over or count used up)
CODE_NOT_FOUND_ALT = 454  # SpeechLine's "parameter address not found"; EW-DX may use it instead of 404 [U]
CODE_TOO_LONG = 450

# Subscriptions (§5.3): lifetime 10 s, renewed every lifetime / 2.
SUBSCRIPTION_LIFETIME = 10
METER_REFRESH_MS = 500  # `min` of meter subscriptions: a notification at least this often, even unchanged
MIN_METER_RATE_MS = 100


@dataclass(frozen=True, slots=True)
class SscModel:
    model: str  # micboard's model key, e.g. "EM4-DANTE"
    label: str  # the product as the crew knows it
    dialect: str  # EWDX / SPEECHLINE_RACK / SPEECHLINE_MCR
    channels: int
    product: str  # what /device/identity/product says (exact vendor strings undocumented [U])

    @property
    def family(self) -> str:
        return EWDX if self.dialect == EWDX else "speechline"


SSC_MODELS: dict[str, SscModel] = {
    m.model: m
    for m in (
        SscModel("EM2", "Sennheiser EW-DX EM 2", EWDX, 2, "EW-DX EM 2"),
        SscModel("EM2-DANTE", "Sennheiser EW-DX EM 2 Dante", EWDX, 2, "EW-DX EM 2 Dante"),
        SscModel("EM4-DANTE", "Sennheiser EW-DX EM 4 Dante", EWDX, 4, "EW-DX EM 4 Dante"),
        SscModel("SL-RACK-DW", "Sennheiser SpeechLine DW rack receiver", SPEECHLINE_RACK, 1, "SL Rack Receiver DW"),
        SscModel("SL-MCR2-DW", "Sennheiser SpeechLine DW multi-channel receiver (2)", SPEECHLINE_MCR, 2, "SL MCR 2 DW"),
        SscModel("SL-MCR4-DW", "Sennheiser SpeechLine DW multi-channel receiver (4)", SPEECHLINE_MCR, 4, "SL MCR 4 DW"),
    )
}

MODELS: tuple[DeviceModel, ...] = tuple(
    DeviceModel(
        model=m.model,
        manufacturer="Sennheiser",
        driver=DRIVER,
        family=m.family,
        channels=m.channels,
        default_port=DEFAULT_PORT,
        label=m.label,
        transport="udp",
    )
    for m in SSC_MODELS.values()
)


def ssc_model(model: str) -> SscModel:
    """Look up a model key (case-insensitive; spaces and underscores read as dashes).

    Raises:
        KeyError: not an SSC model micboard knows.
    """
    key = re.sub(r"[\s_]+", "-", model.strip().upper())
    return SSC_MODELS[key]


def model_from_product(product: str) -> SscModel | None:
    """The model a ``/device/identity/product`` string names, or None.

    The exact product strings are not documented [U]: match on the letters and digits only, so that
    "EW-DX EM 4 Dante", "EWDX EM4 DANTE" and "EM 4 DANTE" all name EM4-DANTE.
    """
    key = re.sub(r"[^A-Z0-9]", "", product.upper())
    if "MCR4" in key:
        return SSC_MODELS["SL-MCR4-DW"]
    if "MCR" in key:
        return SSC_MODELS["SL-MCR2-DW"]
    if "SL" in key and ("RACK" in key or "DW" in key):
        return SSC_MODELS["SL-RACK-DW"]
    if "EM4" in key:
        return SSC_MODELS["EM4-DANTE"]
    if "EM2" in key:
        return SSC_MODELS["EM2-DANTE" if "DANTE" in key else "EM2"]
    return None


# --------------------------------------------------------------------------------------------------------
# The leaves read, per dialect. Each group is one request: small (§5.1: a few leaves each).
# --------------------------------------------------------------------------------------------------------

IDENTITY: tuple[Path, ...] = (
    ("device", "identity", "product"),
    ("device", "identity", "serial"),
    ("device", "identity", "version"),
    ("device", "name"),
)
EWDX_DEVICE: tuple[Path, ...] = (("device", "frequency_code"),)  # the RF band, e.g. "Q1-9" [M]


def _rx(n: int, *leaves: str) -> tuple[Path, ...]:
    return tuple((f"rx{n}", leaf) for leaf in leaves)


def _tx(n: int, *leaves: str) -> tuple[Path, ...]:
    return tuple(("mates", f"tx{n}", *leaf.split("/")) for leaf in leaves)


def rx_paths(spec: SscModel, n: int) -> tuple[Path, ...]:
    """Channel ``n``'s receiver settings: name, mute (EW-DX: frequency and warnings; the MCR: warnings, mates).

    Only the MCR raises RX warnings on SpeechLine (``"No Link"``, §5.6); the rack receiver has none to read.

    SpeechLine's ``mute_state`` is the state the mic's mute switch set under the receiver's ``mute_mode``
    (a number on the rack receiver, a string on the MCR, §5.6); the state is what the crew needs, so the
    mode itself is not read.
    """
    if spec.dialect == EWDX:
        return _rx(n, "name", "frequency", "mute", "warnings")
    if spec.dialect == SPEECHLINE_MCR:
        return _rx(n, "name", "mute_state", "warnings", "mates")
    return _rx(n, "name", "mute_state")


def battery_paths(spec: SscModel, n: int) -> tuple[Path, ...]:
    if spec.dialect == EWDX:
        return _tx(n, "battery/gauge", "battery/lifetime", "battery/type")
    return _tx(n, "bat_gauge", "bat_bars", "bat_lifetime", "bat_type")


def tx_paths(spec: SscModel, n: int) -> tuple[Path, ...]:
    """The transmitter's identity and switches; its type leaf doubles as the presence test (424 = absent)."""
    if spec.dialect == EWDX:
        return _tx(n, "type", "mute", "warnings")
    return _tx(n, "device_type", "warnings")


def type_path(spec: SscModel, n: int) -> Path:
    return ("mates", f"tx{n}", "type" if spec.dialect == EWDX else "device_type")


def meter_paths(spec: SscModel, n: int) -> tuple[Path, ...]:
    """Meters: EW-DX /m/rxN/{rssi,rsqi,divi,af}; SpeechLine reports only /rxN/rf_quality (%, DECT) [U]."""
    if spec.dialect == EWDX:
        return tuple(("m", f"rx{n}", leaf) for leaf in ("rssi", "rsqi", "divi", "af"))
    return _rx(n, "rf_quality")


ACTIVE: Path = ("mates", "active")  # EW-DX and the SpeechLine rack receiver (the MCR lists /rxN/mates)


def read_groups(spec: SscModel) -> list[tuple[Path, ...]]:
    """Every GET of a complete reading but the meters, one request each."""
    groups: list[tuple[Path, ...]] = [IDENTITY]
    if spec.dialect == EWDX:
        groups.append(EWDX_DEVICE)
    if spec.dialect != SPEECHLINE_MCR:
        groups.append((ACTIVE,))
    for n in range(1, spec.channels + 1):
        groups += [rx_paths(spec, n), battery_paths(spec, n), tx_paths(spec, n)]
    return groups


def subscription_groups(spec: SscModel) -> list[tuple[Path, ...]]:
    """What a live link subscribes to on change (identity is read once; meters have their own groups)."""
    groups: list[tuple[Path, ...]] = [(("device", "name"),)]
    if spec.dialect != SPEECHLINE_MCR:
        groups.append((ACTIVE,))
    for n in range(1, spec.channels + 1):
        groups += [rx_paths(spec, n), battery_paths(spec, n), tx_paths(spec, n)]
    return groups
