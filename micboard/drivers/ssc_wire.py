"""Sennheiser SSC v1 on the wire: JSON messages, error objects and normalisation (no network).

* :func:`decode` turns one datagram into a message (a JSON object), strictly: invalid UTF-8 or JSON, a
  top level that is not an object, NaN/Infinity or absurd nesting raise :class:`ProtocolError`. A repeated
  key merges with the earlier one instead of replacing it (§5.2: a vendor example has two ``"osc"`` members).
* :func:`get_request` / :func:`subscribe_request` build requests: ``null`` leaves read (§5.2), subscriptions
  carry their ``#`` parameters (§5.3).
* :func:`leaves` and :func:`error_entries` flatten a message into (path, value) and (path, code) pairs.
* :class:`SscState` applies messages for one model and builds a normalised
  :class:`~micboard.drivers.base.ReceiverReading` (§6).

:mod:`micboard.drivers.ssc` is the network side. No Django imports here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from micboard.drivers.base import (
    ANTENNA_ACTIVE,
    ANTENNA_INACTIVE,
    ANTENNA_OFF,
    ChannelReading,
    ReceiverReading,
    audio_percent_from_dbfs,
    bars_from_percent,
    rf_percent_from_dbm,
)
from micboard.drivers.ssc_spec import (
    ACTIVE,
    CODE_FAILED_DEPENDENCY,
    CODE_TERMINATED,
    EWDX,
    EWDX_DEVICE,
    IDENTITY,
    SPEECHLINE_MCR,
    Path,
    SscModel,
    battery_paths,
    meter_paths,
    rx_paths,
    tx_paths,
    type_path,
)
from micboard.exceptions import DriverError, ProtocolError

__all__ = [
    "SscError",
    "SscState",
    "decode",
    "encode",
    "error_entries",
    "get_request",
    "leaves",
    "peak_level",
    "subscribe_request",
    "tree",
]

MAX_DEPTH = 32  # deeper than any SSC address; a deeper message is refused
PEAK_DBFS = -2.0  # §6: a peak at or above -2 dBFS (or the AfPeak warning)
_CONTROL_CHARS = dict.fromkeys([*range(0x20), 0x7F])
# Battery types as the board shows them (Transmitter.battery_type holds 8 characters).
_EWDX_BATTERY_TYPES = {"battery": "LION", "primary cell": "AA"}  # "Battery" is the BA 70 Li-ion pack [M]
_SPEECHLINE_BATTERY_TYPES = {0: "PRIMARY", 1: "LION"}  # bat_type 0 battery, 1 rechargeable (§5.6) [U]
_SPEECHLINE_DEVICE_TYPES = {0: "Handheld", 1: "Bodypack", 2: "Tablestand", 3: "Boundary"}
_DIVERSITY = {0: ANTENNA_OFF * 2, 1: ANTENNA_ACTIVE + ANTENNA_INACTIVE, 2: ANTENNA_INACTIVE + ANTENNA_ACTIVE}
_RUNTIME_MAX = 65532


# --------------------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------------------


def _merge(old: Any, new: Any) -> Any:
    """A repeated key: objects merge (recursively), arrays concatenate, anything else: the later wins."""
    if isinstance(old, dict) and isinstance(new, dict):
        merged = dict(old)
        for key, value in new.items():
            merged[key] = _merge(merged[key], value) if key in merged else value
        return merged
    if isinstance(old, list) and isinstance(new, list):
        return old + new
    return new


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        result[key] = _merge(result[key], value) if key in result else value
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level)
    return level


def decode(data: bytes) -> dict[str, Any]:
    """One datagram -> one message.

    Raises:
        ProtocolError: not UTF-8, not JSON, not an object, or nested deeper than any SSC address.
    """
    try:
        message = json.loads(data.decode("utf-8"), object_pairs_hook=_pairs, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"not SSC JSON ({exc.__class__.__name__}: {str(exc)[:80]})") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"not an SSC message: a JSON {type(message).__name__}, not an object")
    if _depth(message) > MAX_DEPTH:
        raise ProtocolError(f"not an SSC message: nested deeper than {MAX_DEPTH} levels")
    return message


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), allow_nan=False).encode("utf-8")


def tree(paths: Iterable[Path], value: Any = None) -> dict[str, Any]:
    """The nested object addressing ``paths``, every leaf set to ``value`` (None: a read)."""
    root: dict[str, Any] = {}
    for path in paths:
        node = root
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return root


def get_request(paths: Iterable[Path], *, xid: int) -> dict[str, Any]:
    """A read of ``paths`` (``null`` leaves) tagged with ``/osc/xid`` so the reply can be matched."""
    message = tree(paths)
    message["osc"] = {"xid": xid}
    return message


def subscribe_request(
    paths: Iterable[Path],
    *,
    xid: int,
    lifetime: int,
    min_ms: int = 0,
    max_ms: int = 0,
    cancel: bool = False,
) -> dict[str, Any]:
    """A subscription to ``paths`` (§5.3); renewing is sending the same request again.

    ``cancel``: the same request with ``"#": {"cancel": true}``. How a cancel must be shaped is not documented
    [U]; this one names the subscription exactly as it was made, which a server can match whichever way it
    keeps subscriptions (per request or per leaf), and it expires with its lifetime if the server ignores it.
    """
    params: dict[str, Any] = {"cancel": True} if cancel else {"lifetime": lifetime, "min": min_ms, "max": max_ms}
    entry = {"#": params, **tree(paths)}
    return {"osc": {"xid": xid, "state": {"subscribe": [entry]}}}


def leaves(message: Any, prefix: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every leaf of a message as (path, value); arrays and null are values. The ``osc`` subtree is skipped."""
    if not isinstance(message, dict):
        yield prefix, message
        return
    for key, value in message.items():
        if not prefix and key == "osc":
            continue
        if isinstance(value, dict) and value:
            yield from leaves(value, (*prefix, key))
        else:
            yield (*prefix, key), value


@dataclass(frozen=True, slots=True)
class SscError:
    path: Path
    code: int
    desc: str = ""


def _error_leaves(node: Any, prefix: Path) -> Iterator[SscError]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _error_leaves(value, (*prefix, str(key)))
        return
    code: Any = node
    desc = ""
    if isinstance(node, list) and node:
        code = node[0]
        extra = node[1] if len(node) > 1 else None
        if isinstance(extra, dict) and isinstance(extra.get("desc"), str):
            desc = extra["desc"][:200]
    if isinstance(code, int) and not isinstance(code, bool):
        yield SscError(prefix, code, desc)


def error_entries(message: dict[str, Any]) -> list[SscError]:
    """The error objects of a message: ``{"osc":{"error":[{<tree>:[code, {"desc":…}]}]}}`` (§5.4).

    A top-level ``{"desc": …}`` entry after a tree (§5.3's 310 example) describes the entries before it.
    """
    osc = message.get("osc")
    raw = osc.get("error") if isinstance(osc, dict) else None
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list):
        return []
    found: list[SscError] = []
    for entry in raw:
        if isinstance(entry, dict) and set(entry) == {"desc"} and found:
            found = [SscError(e.path, e.code, e.desc or str(entry["desc"])[:200]) for e in found]
            continue
        found.extend(_error_leaves(entry, ()))
    return found


def xid_of(message: dict[str, Any]) -> int | None:
    osc = message.get("osc")
    xid = osc.get("xid") if isinstance(osc, dict) else None
    return xid if isinstance(xid, int) and not isinstance(xid, bool) else None


# --------------------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------------------


def peak_level(options: Mapping[str, str] | None) -> float:
    """The dBFS from which the AF meter shows a peak: ``options["peak_dbfs"]`` (MICBOARD_PEAK_DBFS) or -2.

    Raises:
        DriverError: the option is not a level between -60 and 0 dBFS.
    """
    raw = (options or {}).get("peak_dbfs")
    if raw is None or str(raw).strip() == "":
        return PEAK_DBFS
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if not -60.0 <= value <= 0.0:  # also refuses NaN
        raise DriverError(f"peak_dbfs must be a level in dBFS between -60 and 0 (e.g. -2), got {raw!r}")
    return value


def clean_text(value: Any, limit: int = 64) -> str | None:
    """A device string without control characters, trimmed; None for anything that is not a string."""
    if not isinstance(value, str):
        return None
    text = value.translate(_CONTROL_CHARS).strip()[:limit]
    return text or None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _int_in(value: Any, lo: int, hi: int) -> int | None:
    number = _number(value)
    if number is None or not lo <= number <= hi:
        return None
    return round(number)


def _flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):  # SpeechLine may answer 0/1 [U]
        return bool(value)
    return None


def _words(value: Any) -> set[str]:
    """Warnings as a set of lower-case words without spaces: ["NoLink"] and "No Link" both give {"nolink"}."""
    items = value if isinstance(value, list) else [value]
    return {"".join(ch for ch in item.lower() if ch.isalnum()) for item in items if isinstance(item, str)} - {""}


def _mate_names(value: Any) -> set[str] | None:
    """``["mates/tx1"]``, ``["tx1"]`` or ``["/mates/tx1"]`` -> {"tx1"}; None when not a list [U: format]."""
    if not isinstance(value, list):
        return None
    return {item.rstrip("/").rsplit("/", 1)[-1] for item in value if isinstance(item, str)}


class SscState:
    """What one model's device said so far, and the normalised reading of it.

    Only the leaves micboard asks for are kept (a device cannot grow memory by sending others). A leaf whose
    last answer was an error code holds no value. 310 (subscription terminated) is collected in
    :attr:`terminated` for the link to renew; 401/403 in :attr:`denied`.
    """

    def __init__(self, spec: SscModel, *, peak_dbfs: float = PEAK_DBFS) -> None:
        self.spec = spec
        self.peak_dbfs = peak_dbfs
        self.known: frozenset[Path] = frozenset(self._all_paths())
        self.values: dict[Path, Any] = {}
        self.failed: dict[Path, int] = {}
        self.terminated: set[Path] = set()
        self.denied: int | None = None
        self.subscribe_refused: str | None = None  # why the device took no subscription (e.g. 8 clients already)
        self.error_replies = 0  # error codes other than 424 (no transmitter) and 310 (renew)
        self.dirty = False
        self.peaked: set[int] = set()  # channels whose AF reached the peak level since the last reading

    def _all_paths(self) -> Iterator[Path]:
        spec = self.spec
        yield from IDENTITY
        yield from EWDX_DEVICE
        yield ACTIVE
        for n in range(1, spec.channels + 1):
            for group in (rx_paths, battery_paths, tx_paths, meter_paths):
                yield from group(spec, n)

    def _expand(self, path: Path) -> list[Path]:
        if path in self.known:
            return [path]
        return [p for p in self.known if p[: len(path)] == path]  # an error on a branch covers its leaves

    def apply(self, message: dict[str, Any]) -> set[Path]:
        """Take in one message; return the known leaves it answered (with a value or an error)."""
        answered: set[Path] = set()
        for path, value in leaves(message):
            if path in self.known:
                self.values[path] = value
                self.failed.pop(path, None)
                answered.add(path)
                level = _number(value) if path[0] == "m" and path[-1] == "af" else None
                if level is not None and self.peak_dbfs <= level <= 20:
                    self.peaked.add(int(path[1][2:]))  # a clip between two readings is not lost
        for error in error_entries(message):
            targets = self._expand(error.path)
            if error.code == CODE_TERMINATED:
                self.terminated.update(targets)
                continue
            if error.code in (401, 403):
                self.denied = error.code
            if error.path[:3] == ("osc", "state", "subscribe"):
                self.subscribe_refused = f"{error.code}" + (f" {error.desc}" if error.desc else "")
            if error.code != CODE_FAILED_DEPENDENCY:
                self.error_replies += 1
            for path in targets:
                self.values.pop(path, None)
                self.failed[path] = error.code
                answered.add(path)
        if answered:
            self.dirty = True
        return answered

    def value(self, path: Path) -> Any:
        return self.values.get(path)

    # Normalisation (§6) ----------------------------------------------------------------------------

    def tx_present(self, n: int) -> bool | None:
        """§6 "no 424, rsqi > 0", with every other signal of the dialect (§5.5, §5.6, §7.5).

        Absent: the transmitter's type leaf answered 424; the receiver warns NoLink / "No Link"; the list of
        active mates leaves it out; the link quality is 0. Present: a type, a link quality above 0, or a
        listing among the active mates. Unknown (None) until one of these was read.
        """
        spec = self.spec
        quality = _number(self.value(("m", f"rx{n}", "rsqi") if spec.dialect == EWDX else (f"rx{n}", "rf_quality")))
        if spec.dialect == SPEECHLINE_MCR:
            mates = _mate_names(self.value((f"rx{n}", "mates")))
            listed = None if mates is None else bool(mates)
        else:
            mates = _mate_names(self.value(ACTIVE))
            listed = None if mates is None else f"tx{n}" in mates
        warnings = _words(self.value((f"rx{n}", "warnings")))
        if (
            self.failed.get(type_path(spec, n)) == CODE_FAILED_DEPENDENCY
            or "nolink" in warnings
            or listed is False
            or quality == 0
        ):
            return False
        if self.value(type_path(spec, n)) is not None or (quality is not None and quality > 0) or listed:
            return True
        return None

    def channel(self, n: int) -> ChannelReading:
        spec = self.spec
        ch = ChannelReading(number=n, name=clean_text(self.value((f"rx{n}", "name")), 32))
        ch.tx_present = self.tx_present(n)
        warnings = _words(self.value((f"rx{n}", "warnings"))) | _words(self.value(("mates", f"tx{n}", "warnings")))
        if spec.dialect == EWDX:
            self._ewdx(ch, n)
        else:
            self._speechline(ch, n)
        ch.battery_bars = bars_from_percent(ch.battery_percent) if ch.battery_percent is not None else ch.battery_bars
        ch.audio_peak = "afpeak" in warnings or n in self.peaked
        return ch

    def _ewdx(self, ch: ChannelReading, n: int) -> None:
        rx, tx, m = f"rx{n}", ("mates", f"tx{n}"), ("m", f"rx{n}")
        ch.frequency_khz = _int_in(self.value((rx, "frequency")), 1_000, 10_000_000)
        ch.audio_muted = _flag(self.value((rx, "mute")))
        ch.tx_model = clean_text(self.value((*tx, "type")), 32)
        ch.tx_muted = _flag(self.value((*tx, "mute")))
        ch.battery_percent = _int_in(self.value((*tx, "battery", "gauge")), 0, 100)
        lifetime = _int_in(self.value((*tx, "battery", "lifetime")), 0, 10_000_000)
        # Minutes per the public clients [M]; §6 leaves the unit open [U]. No pack runs a day, so a value
        # above 1440 can only be seconds.
        if lifetime is not None and lifetime > 1440:
            lifetime //= 60
        ch.battery_runtime_min = lifetime if lifetime is not None and lifetime <= _RUNTIME_MAX else None
        kind = clean_text(self.value((*tx, "battery", "type")), 32)
        ch.battery_type = _EWDX_BATTERY_TYPES.get(kind.lower(), kind.upper()[:8]) if kind else None
        rssi = _number(self.value((*m, "rssi")))
        rssi = rssi if rssi is not None and -150 <= rssi <= 20 else None
        af = _number(self.value((*m, "af")))
        af = af if af is not None and -200 <= af <= 20 else None
        rsqi = _int_in(self.value((*m, "rsqi")), 0, 100)
        divi = _int_in(self.value((*m, "divi")), 0, 2)
        ch.rf_dbm, ch.rf_percent = rssi, rf_percent_from_dbm(rssi)
        ch.audio_dbfs, ch.audio_percent = af, audio_percent_from_dbfs(af)
        ch.antennas = _DIVERSITY.get(divi) if divi is not None else None
        ch.quality = bars_from_percent(rsqi)  # RSQI % shown as 0-5 quality dots, like Axient's quality
        ch.metered = any(p in self.values for p in meter_paths(self.spec, n))

    def _speechline(self, ch: ChannelReading, n: int) -> None:
        rx, tx = f"rx{n}", ("mates", f"tx{n}")
        ch.tx_muted = _flag(self.value((rx, "mute_state")))
        kind = self.value((*tx, "device_type"))
        code = _int_in(kind, 0, 99)
        ch.tx_model = _SPEECHLINE_DEVICE_TYPES.get(code, f"type {code}") if code is not None else clean_text(kind, 32)
        ch.battery_percent = _int_in(self.value((*tx, "bat_gauge")), 0, 100)
        ch.battery_bars = _int_in(self.value((*tx, "bat_bars")), 0, 5)  # used only without a gauge [U: scale]
        seconds = _int_in(self.value((*tx, "bat_lifetime")), 0, 10_000_000)  # seconds on SpeechLine (§5.6)
        minutes = seconds // 60 if seconds is not None else None
        ch.battery_runtime_min = minutes if minutes is not None and minutes <= _RUNTIME_MAX else None
        ch.battery_type = _SPEECHLINE_BATTERY_TYPES.get(_int_in(self.value((*tx, "bat_type")), 0, 1))
        quality = _int_in(self.value((rx, "rf_quality")), 0, 100)
        # DECT link quality in %: the RF meter shows it as it is (no dBm is reported) [U].
        ch.rf_percent = quality
        ch.quality = bars_from_percent(quality)
        ch.metered = quality is not None

    def reading(self) -> ReceiverReading:
        """The reading of everything heard so far; peaks seen since the previous reading are reported once."""
        spec = self.spec
        reading = ReceiverReading(
            family=spec.family,
            device_id=clean_text(self.value(("device", "identity", "serial"))),
            model=clean_text(self.value(("device", "identity", "product")), 32),
            firmware=clean_text(self.value(("device", "identity", "version")), 32),
            rf_band=clean_text(self.value(("device", "frequency_code")), 16) if spec.dialect == EWDX else None,
            channels={n: self.channel(n) for n in range(1, spec.channels + 1)},
            error_replies=self.error_replies,
        )
        self.peaked.clear()
        return reading
