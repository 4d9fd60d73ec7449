"""Shure System API answers -> plain values and readings (protocols.md §4; no network).

The JSON side of :mod:`micboard.drivers.system_api`: the device list in its three shapes and its Relay
cursor, ISO-8601 durations, audio channel ids, battery, activity and mute answers, certificate fingerprints,
and the reading built from one poll's answers. Everything marked [U] in §4 is read tolerantly: an unknown
shape or a missing field is None ("unknown"), never 0. No Django imports here.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from micboard.drivers import system_api_spec as spec
from micboard.drivers.base import (
    RUNTIME_CALCULATING,
    ChannelReading,
    ReceiverReading,
    bars_from_percent,
)
from micboard.exceptions import DriverConfigurationError, ProtocolError

MAX_RUNTIME_MINUTES = 65532  # ChannelReading.battery_runtime_min range

# C0 control characters, DEL and lone surrogates (JSON can carry them; PostgreSQL cannot store them).
CONTROL_CHARS = dict.fromkeys([*range(0x20), 0x7F, *range(0xD800, 0xE000)])
_DURATION_RE = re.compile(
    r"P(?:(?P<d>\d+(?:[.,]\d+)?)D)?(?:T(?:(?P<h>\d+(?:[.,]\d+)?)H)?(?:(?P<m>\d+(?:[.,]\d+)?)M)?(?:(?P<s>\d+(?:[.,]\d+)?)S)?)?"
)
_HEX_RE = re.compile(r"[0-9a-f]{64}")


def clean_text(value: Any) -> str | None:
    """A device string: control characters dropped, trimmed; anything but a non-empty string is unknown."""
    if not isinstance(value, str):
        return None
    return value.translate(CONTROL_CHARS).strip()[:200] or None


def device_nodes(payload: Any) -> list[dict[str, Any]]:
    """The device nodes of one ``GET /devices`` answer in any of its shapes (§4, [U] which one a server sends).

    Relay ``{pageInfo, edges: [{cursor, node}]}`` (the v1.8 spec), a bare array (the Getting Started guide),
    or ``{items: [...]}``. Entries that are not objects are skipped.

    Raises:
        ProtocolError: the answer is none of these shapes.
    """
    if isinstance(payload, list):
        entries = payload
    elif isinstance(payload, dict) and isinstance(payload.get("edges"), list):
        entries = [edge.get("node") for edge in payload["edges"] if isinstance(edge, dict)]
    elif isinstance(payload, dict) and isinstance(payload.get("items"), list):
        entries = payload["items"]
    else:
        raise ProtocolError("the device list is neither a list, {items: [...]} nor {pageInfo, edges: [...]}")
    return [entry for entry in entries if isinstance(entry, dict)]


def next_cursor(payload: Any) -> str | None:
    """The cursor of the next page of a Relay answer (None: last page, or not paginated)."""
    if not isinstance(payload, dict):
        return None
    info = payload.get("pageInfo")
    if not isinstance(info, dict) or info.get("hasNextPage") is not True:
        return None
    cursor = info.get("endCursor")
    if not isinstance(cursor, str) or not cursor:
        edges = payload.get("edges")
        last = edges[-1] if isinstance(edges, list) and edges else None
        cursor = last.get("cursor") if isinstance(last, dict) else None
    return cursor if isinstance(cursor, str) and cursor else None


def iso_duration_minutes(value: Any) -> int | None:
    """Whole minutes of an ISO-8601 duration (``PT853M``, ``PT14H13M``, ``P1DT2H``, ``PT30S``); None if not one.

    Tolerant [U: only ``PTnM`` has been seen]: days, hours, minutes and seconds in any combination,
    decimal fractions (``PT1.5H``), lower case. Years, months and weeks are refused (no battery lasts them).
    """
    if not isinstance(value, str) or len(value) > 64:
        return None
    text = value.strip().upper()
    match = _DURATION_RE.fullmatch(text)
    if match is None or text in ("P", "PT") or text.endswith("T"):
        return None
    parts = {key: float(number.replace(",", ".")) for key, number in match.groupdict().items() if number}
    minutes = parts.get("d", 0) * 1440 + parts.get("h", 0) * 60 + parts.get("m", 0) + parts.get("s", 0) / 60
    return round(minutes)


def channel_index(channel_id: Any) -> int | None:
    """The 0-based index inside an audio channel id: base64 of JSON with ``i`` (ADTQ) or ``index`` [U]."""
    if not isinstance(channel_id, str) or not channel_id or len(channel_id) > 1024:
        return None
    text = channel_id.strip()
    padded = text + "=" * (-len(text) % 4)
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            descriptor = json.loads(decode(padded))
        except (ValueError, binascii.Error, RecursionError):
            continue
        if isinstance(descriptor, dict):
            for key in spec.CHANNEL_INDEX_KEYS:
                index = descriptor.get(key)
                if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < 1000:
                    return index
        return None
    return None


def channel_numbers(channel_ids: list[Any]) -> list[int]:
    """Channel numbers (1-based) for the listed channels: their decoded indexes + 1 when every id decodes to a
    distinct index, else their places in the list [U: the id's format is the server's business]."""
    indexes = [channel_index(channel_id) for channel_id in channel_ids]
    if None not in indexes and len(set(indexes)) == len(indexes):
        return [index + 1 for index in indexes]  # type: ignore[operator]
    return list(range(1, len(channel_ids) + 1))


def _percent(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:  # NaN
        return None
    return round(value) if 0 <= value <= 100 else None


@dataclass(frozen=True, slots=True)
class Battery:
    """A ``battery-level`` answer: percentage, and the runtime when the pack is discharging."""

    percent: int | None
    runtime_min: int | None
    runtime_state: str | None  # RUNTIME_CALCULATING while the device says CALCULATING
    state: str | None


def battery(payload: Any) -> Battery:
    """Read ``{percentage, status: {currentState, targetState, timeToTargetState}}`` (§4; states [U]).

    ``timeToTargetState`` is runtime only on the way to EMPTY: while charging it is the time to FULL, which no
    crew should read as minutes left, so it is dropped. A missing or null field is unknown, never 0.
    """
    if not isinstance(payload, dict):
        return Battery(None, None, None, None)
    status = payload.get("status") if isinstance(payload.get("status"), dict) else {}
    current = clean_text(status.get("currentState"))
    target = clean_text(status.get("targetState"))
    current = current.upper() if current else None
    target = target.upper() if target else None
    runtime = None
    discharging = current == spec.BATTERY_DISCHARGING or (current is None and target == spec.BATTERY_EMPTY)
    if discharging and target in (None, spec.BATTERY_EMPTY):
        runtime = iso_duration_minutes(status.get("timeToTargetState"))
        if runtime is not None and not 0 <= runtime <= MAX_RUNTIME_MINUTES:
            runtime = None
    state = RUNTIME_CALCULATING if current == spec.BATTERY_CALCULATING else None
    return Battery(_percent(payload.get("percentage")), runtime, state, current)


def activity(payload: Any) -> str | None:
    """LOW / GOOD / CLIPPING from an ``activity`` answer (field name [U]); anything else is unknown."""
    if isinstance(payload, dict):
        for key in spec.ACTIVITY_FIELDS:
            value = clean_text(payload.get(key))
            if value and value.upper() in spec.ACTIVITIES:
                return value.upper()
    return None


def flag(payload: Any, key: str) -> bool | None:
    """``{"muted": true}`` -> True; a missing or non-boolean field is unknown."""
    value = payload.get(key) if isinstance(payload, dict) else None
    return value if isinstance(value, bool) else None


def parse_fingerprint(text: str) -> bytes:
    """A SHA-256 fingerprint as crews copy it (hex, any case, with or without colons or spaces) -> 32 bytes.

    Raises:
        DriverConfigurationError: not 64 hex digits.
    """
    digits = re.sub(r"[\s:]", "", text).lower()
    if not _HEX_RE.fullmatch(digits):
        raise DriverConfigurationError(
            "the receiver's certificate fingerprint is not a SHA-256 fingerprint (64 hex digits, colons allowed); "
            "copy it again from the SystemAPI server's certificate"
        )
    return bytes.fromhex(digits)


def format_fingerprint(digest: bytes, *, short: bool = False) -> str:
    """``AB:CD:…`` (all 32 bytes, or the first 8 followed by ``…`` when ``short``)."""
    shown = digest[:8] if short else digest
    return ":".join(f"{byte:02X}" for byte in shown) + ("…" if short else "")


@dataclass(frozen=True, slots=True)
class InventoryDevice:
    """One device a SystemAPI Server lists (what discovery shows for review)."""

    device_id: str
    model: str | None
    serial: str | None
    firmware: str | None
    state: str | None  # ONLINE / OFFLINE / … as the server says
    address: str | None  # the device's own address on the Shure network, as the server reports it
    name: str | None = None


def node_device(node: Mapping[str, Any]) -> InventoryDevice | None:
    """The identity of a device node; None when it has no device id."""
    hardware = node.get("hardwareIdentity") if isinstance(node.get("hardwareIdentity"), dict) else {}
    software = node.get("softwareIdentity") if isinstance(node.get("softwareIdentity"), dict) else {}
    protocol = node.get("communicationProtocol") if isinstance(node.get("communicationProtocol"), dict) else {}
    device_id = clean_text(hardware.get("deviceId"))
    if device_id is None:
        return None
    state = clean_text(node.get("deviceState"))
    return InventoryDevice(
        device_id=device_id,
        model=clean_text(software.get("model")),
        serial=clean_text(hardware.get("serialNumber")),
        firmware=clean_text(software.get("firmwareVersion")),
        state=state.upper() if state else None,
        address=clean_text(protocol.get("address")),
    )


def node_capabilities(node: Mapping[str, Any]) -> frozenset[str] | None:
    """The capability names a node lists; None when it lists none (then every resource is tried)."""
    capabilities = node.get("capabilities")
    if not isinstance(capabilities, list):
        return None
    return frozenset(name for name in capabilities if isinstance(name, str))


@dataclass(slots=True)
class ChannelAnswers:
    number: int
    name: str | None = None
    muted: bool | None = None
    activity: str | None = None


def build_reading(
    node: Mapping[str, Any],
    *,
    name: str | None,
    muted: bool | None,
    level: Battery | None,
    channels: list[ChannelAnswers],
) -> ReceiverReading:
    """A reading from what one poll read.

    A device with a battery is a pack (bodypack, handheld): a present transmitter, itself, with the battery,
    and its ``audio-mute`` is the transmitter's mute. Otherwise ``audio-mute`` is the receiver's and a channel's
    own ``mute`` wins over it. A device without audio channels reads as one channel named as the device.
    """
    identity = node_device(node)
    model = identity.model if identity else None
    reading = ReceiverReading(
        family=spec.FAMILY,
        device_id=identity.device_id if identity else None,
        model=model,
        firmware=identity.firmware if identity else None,
    )
    if not channels:
        channels = [ChannelAnswers(1, name=name)]
    for channel in channels:
        ch = ChannelReading(number=channel.number, name=channel.name)
        ch.audio_muted = channel.muted if channel.muted is not None or level is not None else muted
        if channel.activity is not None:
            ch.metered = True  # activity is the only meter there is; no RF, no dB level [U]
            ch.audio_peak = channel.activity == spec.ACTIVITY_CLIPPING
        if level is not None:
            # [U] Whether a device with audio channels ever reports a battery is unknown; if one does, the
            # battery is the device's and every channel depends on it.
            ch.tx_present = True
            ch.tx_model = model
            ch.tx_muted = muted
            ch.battery_percent = level.percent
            ch.battery_bars = bars_from_percent(level.percent)
            ch.battery_runtime_min = level.runtime_min
            ch.battery_runtime_state = level.runtime_state
        reading.channels[channel.number] = ch
    return reading
