"""Shure command strings on the wire: framing, messages and per-family normalization (no network).

Three layers, each usable on its own (see protocols.md §1 and §6):

* :class:`FrameBuffer` turns a byte stream into ``< ... >`` frames, whatever the TCP segmentation.
* :func:`parse_message` turns one frame into a :class:`Message` (``REP`` / ``REPORT`` / ``SAMPLE`` /
  ``REP ERR``); :func:`parse_sample` decodes a SAMPLE's fields for one family.
* :class:`ShureState` applies messages for one family and builds a normalized
  :class:`~micboard.drivers.base.ReceiverReading`; per-family property tables say which property fills which
  field and how its value is converted.

:mod:`micboard.drivers.shure` is the network side that feeds them. No Django imports here.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from micboard.drivers.base import (
    ANTENNA_ACTIVE,
    ANTENNA_ALERT,
    ANTENNA_INACTIVE,
    ANTENNA_OFF,
    RUNTIME_CALCULATING,
    RUNTIME_WARNING,
    ChannelReading,
    ReceiverReading,
    rf_percent_from_dbm,
)
from micboard.drivers.shure_spec import (
    AXIENT,
    FAMILIES,
    PSM1000,
    QLXD,
    SLXD,
    SPECS,
    ULXD,
)
from micboard.drivers.shure_spec import audio_percent as family_audio_percent
from micboard.exceptions import DriverError, ProtocolError

__all__ = [
    "MAX_FRAME",
    "FrameBuffer",
    "Message",
    "SampleValues",
    "ShureState",
    "parse_message",
    "parse_sample",
    "peak_threshold",
    "psm_level_percent",
    "wire_int",
]

MAX_FRAME = 1024  # characters; the longest real frame (AD FD-C SAMPLE, 31-char names) is < 100

VERB_REP = "REP"
VERB_SAMPLE = "SAMPLE"
VERB_ERR = "ERR"

_PROP_RE = re.compile(r"[A-Z][A-Z0-9_]*\Z")
_NUMBER_RE = re.compile(r"[0-9]{1,10}\Z")  # PSM1000 meters are large linear integers
_SMALL_RE = re.compile(r"[0-9]{1,2}\Z")  # channel numbers and sub-indexes
# C0 control characters and DEL: dropped from device strings (NUL cannot even be stored by PostgreSQL).
_CONTROL_CHARS = dict.fromkeys([*range(0x20), 0x7F])

# Properties whose name is followed by a sub-index (antenna 1-4, slot 1-8) before the value (§1.3).
_INDEXED_PROPS = frozenset({"RSSI", "RSSI_LED_BITMAP"})
_INDEXED_PREFIXES = ("SLOT_",)


# --------------------------------------------------------------------------------------------------------
# Framing
# --------------------------------------------------------------------------------------------------------


class FrameBuffer:
    """Reassemble ``< ... >`` frames from arbitrary TCP reads (§1.1).

    Cuts at each ``>``, keeps the text from the last ``<`` before it, keeps the incomplete tail for the
    next read and discards a ``>`` that has no ``<``. CR and LF may appear anywhere and are treated as
    spaces. The buffer never holds more than ``max_frame`` characters of unterminated text: an overlong tail
    is dropped (and counted), so a device spewing garbage cannot grow memory.
    """

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self.dropped = 0  # overlong frames or tails thrown away
        self.stray = 0  # ">" seen with no "<" before it
        self._tail = ""

    @property
    def pending(self) -> str:
        """Unterminated text kept for the next read."""
        return self._tail

    def feed(self, data: bytes) -> list[str]:
        """Add one read's bytes; return the complete frames, each ``"< ... >"``."""
        text = data.decode("ascii", errors="replace").replace("\r", " ").replace("\n", " ")
        buf = self._tail + text
        frames: list[str] = []
        start_of_rest = 0
        while True:
            end = buf.find(">", start_of_rest)
            if end < 0:
                break
            chunk = buf[start_of_rest:end]
            start_of_rest = end + 1
            opening = chunk.rfind("<")
            if opening < 0:
                self.stray += 1
                continue
            frame = chunk[opening:] + ">"
            if len(frame) > self.max_frame:
                self.dropped += 1
                continue
            frames.append(frame)
        tail = buf[start_of_rest:]
        opening = tail.rfind("<")
        # Text before the last "<" can never become part of a frame: keep only a possible frame start.
        tail = tail[opening:] if opening >= 0 else ""
        if len(tail) > self.max_frame:
            self.dropped += 1
            tail = ""
        self._tail = tail
        return frames


# --------------------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """One parsed frame.

    ``verb`` is ``REP`` (also for PSM1000's ``REPORT``), ``SAMPLE`` or ``ERR`` (``< REP ERR >``).
    Device-level properties have ``channel`` None. ``value`` is the braced string with its right padding
    trimmed (empty braces give ``""``) or the unbraced value tokens joined by one space. ``tokens`` holds
    a SAMPLE's fields after ``ALL``.
    """

    verb: str
    channel: int | None = None
    prop: str | None = None
    index: int | None = None
    value: str | None = None
    tokens: tuple[str, ...] = ()


def _is_small(token: str) -> bool:
    return _SMALL_RE.match(token) is not None


def _takes_index(prop: str) -> bool:
    return prop in _INDEXED_PROPS or prop.startswith(_INDEXED_PREFIXES)


def parse_message(frame: str) -> Message:
    """Parse one ``< ... >`` frame.

    Raises:
        ProtocolError: the frame is not a device message (bad verb, bad channel, unbalanced braces ...).
    """
    text = frame.strip()
    if len(text) < 3 or not (text.startswith("<") and text.endswith(">")):
        raise ProtocolError(f"not a command-string frame: {frame[:80]!r}")
    body = text[1:-1]

    # Braced strings may contain spaces: cut them out before splitting on whitespace (§1.1, §1.4).
    braced: str | None = None
    opening = body.find("{")
    if opening >= 0:
        closing = body.rfind("}")
        if closing < opening:
            raise ProtocolError(f"unbalanced braces in {frame[:80]!r}")
        if body[closing + 1 :].strip():
            raise ProtocolError(f"text after the braced value in {frame[:80]!r}")
        braced = body[opening + 1 : closing].rstrip()
        body = body[:opening]
    elif "}" in body:
        raise ProtocolError(f"unbalanced braces in {frame[:80]!r}")

    tokens = body.split()
    if not tokens:
        raise ProtocolError(f"empty frame {frame[:80]!r}")
    verb, rest = tokens[0], tokens[1:]

    if verb in ("REP", "REPORT"):
        return _parse_rep(rest, braced, frame)
    if verb == "SAMPLE":
        if braced is not None:
            raise ProtocolError(f"braces in a SAMPLE: {frame[:80]!r}")
        if len(rest) < 3 or not _is_small(rest[0]) or not _PROP_RE.match(rest[1]):
            raise ProtocolError(f"malformed SAMPLE {frame[:80]!r}")
        return Message(VERB_SAMPLE, channel=int(rest[0]), prop=rest[1], tokens=tuple(rest[2:]))
    raise ProtocolError(f"unknown message type {verb[:20]!r} in {frame[:80]!r}")


def _parse_rep(rest: list[str], braced: str | None, frame: str) -> Message:
    channel: int | None = None
    if rest and _is_small(rest[0]):
        channel = int(rest[0])
        rest = rest[1:]
    if not rest:
        raise ProtocolError(f"REP without a property: {frame[:80]!r}")
    prop, rest = rest[0], rest[1:]
    if prop == "ERR" and not rest and braced is None:
        return Message(VERB_ERR, channel=channel)
    if not _PROP_RE.match(prop):
        raise ProtocolError(f"bad property name {prop[:40]!r} in {frame[:80]!r}")
    index: int | None = None
    if _takes_index(prop) and rest and _is_small(rest[0]) and (len(rest) > 1 or braced is not None):
        index = int(rest[0])
        rest = rest[1:]
    if braced is not None:
        if rest:
            raise ProtocolError(f"unexpected tokens before the braced value in {frame[:80]!r}")
        value: str | None = braced
    else:
        value = " ".join(rest) if rest else None
    return Message(VERB_REP, channel=channel, prop=prop, index=index, value=value)


# --------------------------------------------------------------------------------------------------------
# Value converters (every vendor sentinel becomes None, §1.10)
# --------------------------------------------------------------------------------------------------------


def wire_int(value: str | None) -> int:
    """A device's decimal integer (up to 10 digits). Raises: ProtocolError."""
    if value is None or not _NUMBER_RE.match(value.strip()):
        raise ProtocolError(f"expected a number, got {value!r}")
    return int(value.strip())


def _text(value: str | None) -> str | None:
    """Names and ids: control characters dropped, trimmed; empty means unknown."""
    if value is None:
        return None
    return value.translate(_CONTROL_CHARS).strip() or None


def _word(value: str | None) -> str | None:
    """Enumerations (models, battery types): UNKN / UNKNOWN / empty mean unknown."""
    text = _text(value)
    if text is None or text.upper() in ("UNKN", "UNKNOWN"):
        return None
    return text


def _gauge(limit: int) -> Callable[[str | None], int | None]:
    """3-digit gauge 0..limit; 255 (or anything out of range) is unknown."""

    def convert(value: str | None) -> int | None:
        number = wire_int(value)
        return number if number <= limit else None

    return convert


def _offset_db(offset: int, limit: int) -> Callable[[str | None], int | None]:
    """Gauge 0..limit shown as dB = v - offset; 255 is unknown."""

    def convert(value: str | None) -> int | None:
        number = wire_int(value)
        return number - offset if number <= limit else None

    return convert


def _frequency(value: str | None) -> int | None:
    """kHz, 6 digits (ULX/QLX/PSM) or 7 digits (AD/SLX); 0 marks "unset" [U]."""
    number = wire_int(value)
    return number or None


def _group_channel(value: str | None) -> str | None:
    text = _text(value)
    if text is None or text.replace(" ", "") == "--,--":
        return None
    return text


def _runtime(value: str | None) -> tuple[int | None, str | None]:
    """Minutes 0..65532; 65533 warning, 65534 calculating, 65535 unknown (§1.10)."""
    number = wire_int(value)
    if number <= 65532:
        return number, None
    if number == 65533:
        return None, RUNTIME_WARNING
    if number == 65534:
        return None, RUNTIME_CALCULATING
    return None, None


def _on_off(value: str | None) -> bool | None:
    """ON/OFF, and PSM1000's 1/0 (its page documents RF_MUTE as 1/0 [C], format [U])."""
    text = (_text(value) or "").upper()
    if text in ("ON", "1"):
        return True
    if text in ("OFF", "0"):
        return False
    return None


def _ad_tx_mute(value: str | None) -> bool | None:
    """TX_MUTE_MODE_STATUS: Companion reads ON as "not muted" and MUTE as muted [U]."""
    text = (_text(value) or "").upper()
    if text == "MUTE":
        return True
    if text in ("ON", "OFF"):
        return False
    return None


def _minus(offset: int) -> Callable[[str | None], float]:
    def convert(value: str | None) -> float:
        return float(wire_int(value) - offset)

    return convert


def _ad_antennas(value: str | None) -> str | None:
    """AD letters per antenna: B (blue) active, R (red) alert, X off (§1.8)."""
    text = _text(value)
    if text is None:
        return None
    return _map_ad_antennas(text)


def _map_ad_antennas(text: str) -> str:
    mapping = {"B": ANTENNA_ACTIVE, "R": ANTENNA_ALERT, "X": ANTENNA_OFF}
    if not text or any(letter not in mapping for letter in text.upper()):
        raise ProtocolError(f"bad antenna status {text!r}")
    return "".join(mapping[letter] for letter in text.upper())


def _map_ulx_antennas(text: str) -> str:
    """ULX/QLX positional letters: ``AX`` A active, ``XB`` B active, ``XX`` no signal (§1.6)."""
    if len(text) != 2 or text[0] not in "AX" or text[1] not in "BX":
        raise ProtocolError(f"bad antenna field {text!r}")
    if text == "XX":
        return ANTENNA_OFF * 2
    return "".join(ANTENNA_INACTIVE if letter == "X" else ANTENNA_ACTIVE for letter in text)


# PSM1000 audio meters: linear integers with no documented scale [U]; micboard's LED ladder, roughly
# -58 ... -10 dB (§1.9), is the only known reading of them.
PSM_LEVEL_THRESHOLDS = (10272, 23728, 85488, 246260, 641928, 1588744, 2157767, 2502970)


def psm_level_percent(value: str | None) -> int:
    """Bucket a PSM1000 linear meter value to 0..80 % in steps of 10."""
    number = wire_int(value)
    return 10 * sum(1 for threshold in PSM_LEVEL_THRESHOLDS if number >= threshold)


# --------------------------------------------------------------------------------------------------------
# Per-family property tables: property -> (fact, converter)
#
# A "fact" is a ChannelReading field name, or one of the helper facts below that ShureState combines:
#   runtime     -> battery_runtime_min + battery_runtime_state
#   rssi        -> per-antenna dBm (sub-index; 0 when the REP gives none); rf_dbm is the strongest, and the
#                  indexed ones (antennas 1..n) also give rf_antenna_percents
#   audio_peak_dbfs, audio_bitmap -> audio_peak
#   level_l, level_r -> PSM1000 meter percent; audio_percent is the louder side
# --------------------------------------------------------------------------------------------------------

Converter = Callable[[str | None], Any]


def _channel_props(family: str, extras: dict[str, tuple[str, Converter]]) -> dict[str, tuple[str, Converter]]:
    """The family's property names from its spec, each with the fact it fills and its converter."""
    spec = SPECS[family]
    named: list[tuple[str | None, str, Converter]] = [
        ("CHAN_NAME", "name", _text),  # PSM1000: unbraced on the vendor page; real units may brace it [U]
        ("FREQUENCY", "frequency_khz", _frequency),
        (spec.group_channel_prop, "group_channel", _group_channel),
        (spec.tx_model_prop, "tx_model", _word),
        (spec.battery_bars_prop, "battery_bars", _gauge(5)),
        (spec.battery_percent_prop, "battery_percent", _gauge(100)),
        (spec.battery_runtime_prop, "runtime", _runtime),
        (spec.battery_type_prop, "battery_type", _word),
        (spec.audio_mute_prop, "audio_muted", _on_off),
        (spec.tx_mute_prop, "tx_muted", _on_off),
    ]
    if spec.tx_offset_prop:
        named.append((spec.tx_offset_prop, "tx_offset_db", _offset_db(spec.tx_offset_zero, max(spec.tx_offset_values))))
    props = {prop: (fact, convert) for prop, fact, convert in named if prop}
    props.update(extras)
    return props


_AD_METERS: dict[str, tuple[str, Converter]] = {
    "RSSI": ("rssi", _minus(120)),  # SLX-D: with or without the antenna index [U]
    "AUDIO_LEVEL_PEAK": ("audio_peak_dbfs", _minus(120)),
    "AUDIO_LEVEL_RMS": ("audio_dbfs", _minus(120)),
}

CHANNEL_PROPS: dict[str, dict[str, tuple[str, Converter]]] = {
    ULXD: _channel_props(ULXD, {}),
    QLXD: _channel_props(QLXD, {"AUDIO_MUTE": ("audio_muted", _on_off)}),  # not documented on QLX-D: harmless
    SLXD: _channel_props(SLXD, _AD_METERS),
    AXIENT: _channel_props(
        AXIENT,
        {
            **_AD_METERS,
            "CHAN_QUALITY": ("quality", _gauge(5)),
            "TX_MUTE_MODE_STATUS": ("tx_muted", _ad_tx_mute),
            "ANTENNA_STATUS": ("antennas", _ad_antennas),
            "AUDIO_LED_BITMAP": ("audio_bitmap", wire_int),
            # SLOT_* (8 transmitter slots) and everything else unlisted is ignored.
        },
    ),
    PSM1000: _channel_props(
        PSM1000,
        {"AUDIO_IN_LVL_L": ("level_l", psm_level_percent), "AUDIO_IN_LVL_R": ("level_r", psm_level_percent)},
    ),
}

DEVICE_PROPS: dict[str, str] = {
    "DEVICE_ID": "device_id",
    "DEVICE_NAME": "device_id",  # PSM1000 names itself with DEVICE_NAME
    "MODEL": "model",
    "FW_VER": "firmware",  # a trailing "*" (failed self-test) is kept
    "RF_BAND": "rf_band",
}

# Reports that count as a channel's meter reading (besides SAMPLE).
METER_PROPS: dict[str, frozenset[str]] = {family: spec.meter_props for family, spec in SPECS.items()}

# Facts that tell whether a transmitter is on (§6): present if any of them holds a real value.
TX_PRESENCE_FACTS: dict[str, tuple[str, ...]] = {
    ULXD: ("tx_model", "battery_bars"),
    QLXD: ("tx_model", "battery_bars"),
    SLXD: ("tx_model",),
    AXIENT: ("tx_model",),
    PSM1000: (),  # an IEM transmitter cannot tell whether a pack listens
}

_AUDIO_BITMAP_PEAK = 0x80  # AD / UHF-R bitmap bit 7


# --------------------------------------------------------------------------------------------------------
# SAMPLE layouts
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SampleValues:
    """What one SAMPLE says about its channel.

    ``rssi_dbm`` holds every RSSI the SAMPLE carries, in wire order (AD FD-C: both RF sections);
    ``antenna_dbm`` holds one level per antenna (A, B, ...) when the layout reports them separately (AD, the
    5-field SLX-D variant), else it is empty.
    """

    rssi_dbm: tuple[float, ...]
    audio_dbfs: float | None
    audio_peak_dbfs: float | None = None
    audio_bitmap: int | None = None
    antennas: str | None = None
    quality: int | None = None
    antenna_dbm: tuple[float, ...] = ()


def _sample_ulx(tokens: tuple[str, ...]) -> SampleValues:
    # < SAMPLE 1 ALL AX 092 031 >: antenna, RF aaa (dBm = aaa - 128), audio eee 000-050 with no documented
    # unit [U]. We follow the one outside reading, Companion's dBFS = eee - 50 (protocols.md §1.6, §6); the
    # meter still runs from empty at silence (eee 000) to full at eee 050 (the spec's audio_empty_dbfs, -50),
    # i.e. micboard's 2 % per step. A value above 050 (micboard's docs show 098) is read as full scale.
    if len(tokens) != 3:
        raise ProtocolError(f"ULX/QLX SAMPLE needs 3 fields, got {len(tokens)}")
    dbfs = float(min(wire_int(tokens[2]), 50) - 50)
    return SampleValues(
        rssi_dbm=(float(wire_int(tokens[1]) - 128),),
        audio_dbfs=dbfs,
        audio_peak_dbfs=dbfs,
        antennas=_map_ulx_antennas(tokens[0]),
    )


def _sample_slx(tokens: tuple[str, ...]) -> SampleValues:
    # < SAMPLE 1 ALL 102 102 086 >: audPeak audRms rfRssi, all minus 120 [C]. A third-party mock emits
    # peak rms rssi1 rssi2 antenna [U]: accepted by field count, its antenna letter ignored. Only that variant
    # gives a level per antenna; the documented one gives a single figure.
    if len(tokens) == 3:
        rssi = (tokens[2],)
    elif len(tokens) == 5:
        rssi = (tokens[2], tokens[3])
    else:
        raise ProtocolError(f"SLX-D SAMPLE needs 3 (or 5) fields, got {len(tokens)}")
    rssi_dbm = tuple(float(wire_int(v) - 120) for v in rssi)
    return SampleValues(
        rssi_dbm=rssi_dbm,
        audio_dbfs=float(wire_int(tokens[1]) - 120),
        audio_peak_dbfs=float(wire_int(tokens[0]) - 120),
        antenna_dbm=rssi_dbm if len(rssi_dbm) > 1 else (),
    )


def _sample_ad(tokens: tuple[str, ...]) -> SampleValues:
    # < SAMPLE 1 ALL qual audBitmap audPeak audRms rfAntStats (rfBitmap rfRssi) x N >, N = len(rfAntStats);
    # FD-C appends a second "rfAntStats (bitmap rssi) x N" section, parsed only if complete [M]. Both sections
    # describe the same antennas (one per carrier), so an antenna's level is the stronger of its two [U].
    if len(tokens) < 5:
        raise ProtocolError(f"AD SAMPLE needs at least 5 fields, got {len(tokens)}")
    quality_raw = wire_int(tokens[0])
    antennas = _map_ad_antennas(tokens[4])
    sections = [_ad_rf_section(tokens, 4)]
    second_start = 5 + 2 * len(tokens[4])
    if len(tokens) > second_start:
        with contextlib.suppress(ProtocolError):
            sections.append(_ad_rf_section(tokens, second_start))
    per_antenna = tuple(max(section[i] for section in sections if i < len(section)) for i in range(len(sections[0])))
    return SampleValues(
        rssi_dbm=tuple(dbm for section in sections for dbm in section),
        audio_dbfs=float(wire_int(tokens[3]) - 120),
        audio_peak_dbfs=float(wire_int(tokens[2]) - 120),
        audio_bitmap=wire_int(tokens[1]),
        antennas=antennas,
        quality=quality_raw if quality_raw <= 5 else None,
        antenna_dbm=per_antenna,
    )


def _ad_rf_section(tokens: tuple[str, ...], start: int) -> tuple[float, ...]:
    count = len(_map_ad_antennas(tokens[start]))
    pairs = tokens[start + 1 : start + 1 + 2 * count]
    if len(pairs) != 2 * count:
        raise ProtocolError(f"AD SAMPLE announces {count} antennas but carries {len(pairs) // 2}")
    return tuple(float(wire_int(rssi) - 120) for rssi in pairs[1::2])


_SAMPLE_PARSERS: dict[str, Callable[[tuple[str, ...]], SampleValues]] = {
    ULXD: _sample_ulx,
    QLXD: _sample_ulx,
    SLXD: _sample_slx,
    AXIENT: _sample_ad,
}


def parse_sample(family: str, tokens: tuple[str, ...]) -> SampleValues:
    """Decode a SAMPLE's fields (after ``ALL``) for a family.

    Raises:
        ProtocolError: wrong field count or a non-numeric field; PSM1000 sends no SAMPLE.
    """
    parser = _SAMPLE_PARSERS.get(family)
    if parser is None:
        raise ProtocolError(f"family {family!r} sends no SAMPLE")
    return parser(tokens)


# --------------------------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------------------------


def _is_peak(peak_dbfs: float | None, bitmap: int | None, threshold: float) -> bool:
    return bool(
        (peak_dbfs is not None and peak_dbfs >= threshold) or (bitmap is not None and bitmap & _AUDIO_BITMAP_PEAK)
    )


def peak_threshold(family: str, options: Mapping[str, str] | None) -> float:
    """The dBFS at which a channel shows a peak: ``options["peak_dbfs"]`` (the lead's per-family setting) or the
    family's default from the spec (-2 dBFS, protocols.md §6).

    Raises:
        DriverError: the option is not a number of dBFS between -60 and 0.
    """
    raw = (options or {}).get("peak_dbfs")
    if raw is None or str(raw).strip() == "":
        return SPECS[family].peak_dbfs
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if not -60.0 <= value <= 0.0:  # also refuses NaN
        raise DriverError(f"peak_dbfs must be a level in dBFS between -60 and 0 (e.g. -2), got {raw!r}")
    return value


@dataclass(slots=True)
class _ChannelFacts:
    values: dict[str, Any] = field(default_factory=dict)  # fact -> value; absent = never reported
    rssi: dict[int, float] = field(default_factory=dict)  # antenna (0 = unspecified) -> dBm
    antenna_dbm: dict[int, float] = field(default_factory=dict)  # antenna 1..n -> dBm, when reported apart
    metered: bool = False
    peaked: bool = False  # a SAMPLE since the last reading() carried a peak (a link reads between SAMPLEs)


class ShureState:
    """Apply messages for one family and build a :class:`ReceiverReading`.

    Channels 1..``channels`` always appear in the reading; messages for other channels are ignored and
    counted in :attr:`ignored`. Unknown properties are ignored silently (devices report far more than the
    reading needs).
    """

    def __init__(self, family: str, channels: int, *, peak_dbfs: float | None = None) -> None:
        if family not in FAMILIES:
            raise ProtocolError(f"unknown Shure family {family!r}")
        self.family = family
        self.peak_dbfs = SPECS[family].peak_dbfs if peak_dbfs is None else peak_dbfs
        self.channel_count = channels
        self.device: dict[str, str | None] = {}
        self.error_replies = 0
        self.ignored = 0
        self._channels = {n: _ChannelFacts() for n in range(1, channels + 1)}
        self._props = CHANNEL_PROPS[family]
        self._meter_props = METER_PROPS[family]

    def apply(self, msg: Message) -> None:
        """Apply one message.

        Raises:
            ProtocolError: a known property or a SAMPLE carries a malformed value; the state is unchanged.
        """
        if msg.verb == VERB_ERR:
            self.error_replies += 1
            return
        if msg.channel is None:
            attr = DEVICE_PROPS.get(msg.prop or "")
            if attr is not None:
                self.device[attr] = _text(msg.value)
            return
        facts = self._channels.get(msg.channel)
        if facts is None:
            self.ignored += 1
            return
        if msg.verb == VERB_SAMPLE:
            self._apply_sample(facts, parse_sample(self.family, msg.tokens))
            return
        entry = self._props.get(msg.prop or "")
        if entry is None:
            return
        fact, convert = entry
        converted = convert(msg.value)
        if fact == "rssi":
            facts.rssi[msg.index or 0] = converted
            if msg.index:
                facts.antenna_dbm[msg.index] = converted
        else:
            facts.values[fact] = converted
        if msg.prop in self._meter_props:
            facts.metered = True

    def _apply_sample(self, facts: _ChannelFacts, sample: SampleValues) -> None:
        facts.rssi = dict(enumerate(sample.rssi_dbm, start=1))
        # A single-figure SAMPLE (SLX-D's documented layout) keeps the per-antenna RSSI REPs of this session's
        # GET ALL: on SLX-D they are the only per-antenna figures, at most one meter interval old (§1.7).
        if sample.antenna_dbm:
            facts.antenna_dbm = dict(enumerate(sample.antenna_dbm, start=1))
        facts.values["audio_dbfs"] = sample.audio_dbfs
        facts.values["audio_peak_dbfs"] = sample.audio_peak_dbfs
        facts.values["audio_bitmap"] = sample.audio_bitmap
        if sample.antennas is not None:
            facts.values["antennas"] = sample.antennas
        if self.family == AXIENT:  # the only layout with a quality field; 255 there means unknown
            facts.values["quality"] = sample.quality
        facts.metered = True
        facts.peaked = facts.peaked or _is_peak(sample.audio_peak_dbfs, sample.audio_bitmap, self.peak_dbfs)

    def reading(self) -> ReceiverReading:
        """A fresh :class:`ReceiverReading` of everything applied so far.

        A channel shows a peak when any SAMPLE since the previous reading carried one, so a link that
        reads a few times a second never misses a peak between two readings.
        """
        reading = ReceiverReading(
            family=self.family,
            device_id=self.device.get("device_id"),
            model=self.device.get("model"),
            firmware=self.device.get("firmware"),
            rf_band=self.device.get("rf_band"),
            channels={n: self._channel(n, facts) for n, facts in self._channels.items()},
            error_replies=self.error_replies,
        )
        for facts in self._channels.values():
            facts.peaked = False
        return reading

    def _channel(self, number: int, facts: _ChannelFacts) -> ChannelReading:
        values = facts.values
        runtime_min, runtime_state = values.get("runtime", (None, None))
        rf_dbm = max(facts.rssi.values()) if facts.rssi else None
        antennas_dbm = facts.antenna_dbm
        rf_antenna_percents = None
        if len(antennas_dbm) >= 2 and antennas_dbm.keys() == set(range(1, len(antennas_dbm) + 1)):
            rf_antenna_percents = tuple(rf_percent_from_dbm(antennas_dbm[a]) for a in sorted(antennas_dbm))
        audio_dbfs = values.get("audio_dbfs")
        if audio_dbfs is not None:
            audio_percent = family_audio_percent(self.family, audio_dbfs)
        else:
            levels = [values[k] for k in ("level_l", "level_r") if values.get(k) is not None]
            audio_percent = max(levels) if levels else None
        peak_dbfs = values.get("audio_peak_dbfs")
        bitmap = values.get("audio_bitmap")
        presence = TX_PRESENCE_FACTS[self.family]
        reported = [f for f in presence if f in values]
        tx_present = any(values[f] is not None for f in reported) if reported else None
        return ChannelReading(
            number=number,
            name=values.get("name"),
            frequency_khz=values.get("frequency_khz"),
            group_channel=values.get("group_channel"),
            tx_present=tx_present,
            tx_model=values.get("tx_model"),
            battery_bars=values.get("battery_bars"),
            battery_percent=values.get("battery_percent"),
            battery_runtime_min=runtime_min,
            battery_runtime_state=runtime_state,
            battery_type=values.get("battery_type"),
            tx_offset_db=values.get("tx_offset_db"),
            tx_muted=values.get("tx_muted"),
            audio_muted=values.get("audio_muted"),
            rf_dbm=rf_dbm,
            rf_percent=rf_percent_from_dbm(rf_dbm),
            rf_antenna_percents=rf_antenna_percents,
            antennas=values.get("antennas"),
            audio_dbfs=audio_dbfs,
            audio_percent=audio_percent,
            audio_peak=facts.peaked or _is_peak(peak_dbfs, bitmap, self.peak_dbfs),
            quality=values.get("quality"),
            metered=facts.metered,
        )
