"""Shure UHF-R driver (UR4S / UR4D): UDP 2202, ``* ... *`` messages (protocols.md §2, §6).

Two halves. The wire half (no network) splits a datagram into messages (:func:`split_datagram`), parses one
(:func:`parse_message`, :func:`parse_sample`) and keeps a receiver's state (:class:`UhfrState`), which builds a
normalized :class:`~micboard.drivers.base.ReceiverReading`. The network half talks to the receiver:

* :func:`poll`: one short exchange. A fresh UDP socket sends ``* GET n PROP *`` for every channel and property
  of ``READ_PROPS`` and ``* METER n ALL rrr *``, waits for the REPORTs and one SAMPLE per channel, then sends
  ``* METER n ALL STOP *`` and closes. UDP may lose datagrams: the GETs still unanswered (and the METER of a
  channel not yet sampled) are sent again every third of the timeout. The poll ends early when every property
  answered, or when the essential ones did and the device has been quiet for ``SETTLE_SECONDS`` (a firmware
  that ignores an uncertain property must not cost every poll its whole timeout).
* :class:`UhfrLink`: the same socket kept open. METER at the meter rate, the GETs again every
  ``REFRESH_SECONDS``; quiet for ``PROBE_AFTER_SECONDS`` sends METER again, quiet for ``SILENCE_SECONDS`` ends
  the link. METER ... STOP goes out however the link ends.

UDP has no connection, so liveness is "data seen recently": any datagram from the receiver's address counts
[M]. Replies are matched by source address, never by source port, whose value is uncertain [U]; the socket is
therefore not connected, and on Linux it asks for ICMP errors (``IP_RECVERR``) so that a port nobody listens
on is reported at once instead of timing out.

Outcomes: name not resolved -> :class:`AddressResolutionError`; ICMP port unreachable or nothing from the
receiver within the timeout -> :class:`ConnectionTimeoutError` naming what to check; datagrams but no valid
message -> :class:`ProtocolError`; valid messages but an incomplete answer at the deadline -> the partial
reading (unsampled channels have ``metered=False``). Nothing but DriverError subclasses escapes. No Django.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from micboard.drivers import uhfr_spec as spec
from micboard.drivers.base import (
    ANTENNA_ACTIVE,
    ANTENNA_INACTIVE,
    ANTENNA_OFF,
    RUNTIME_CALCULATING,
    RUNTIME_WARNING,
    ChannelReading,
    ReceiverReading,
    rf_percent_from_dbm,
)
from micboard.drivers.catalog import device_model
from micboard.drivers.resolver import resolve_host
from micboard.exceptions import (
    AddressResolutionError,
    ConnectionTimeoutError,
    DeviceSilentError,
    LinkDroppedError,
    ProtocolError,
)

__all__ = ["Message", "Sample", "UhfrLink", "UhfrState", "parse_message", "parse_sample", "poll", "split_datagram"]

_PROP_RE = re.compile(r"[A-Z][A-Z0-9_]*\Z")
_DIGITS_RE = re.compile(r"[0-9]{1,7}\Z")
_CONTROL_CHARS = dict.fromkeys([*range(0x20), 0x7F])

# --------------------------------------------------------------------------------------------------------
# The wire: datagrams, messages, values (no network)
# --------------------------------------------------------------------------------------------------------


def split_datagram(data: bytes) -> tuple[list[str], int]:
    """The messages of one datagram (the text between each pair of ``*``) and the count of pieces that are not.

    A device sends one message per datagram [M]; several are accepted. Only the first ``MAX_DATAGRAM`` bytes are
    read. Text outside a pair of stars (junk, a message cut short) counts as one broken piece each; a datagram
    never continues another, so nothing is carried over.
    """
    text = data[: spec.MAX_DATAGRAM].decode("ascii", errors="replace").replace("\r", " ").replace("\n", " ")
    messages: list[str] = []
    broken = 0
    position = 0
    while True:
        start = text.find("*", position)
        if start < 0:
            break
        if text[position:start].strip():
            broken += 1  # junk before a message
        end = text.find("*", start + 1)
        if end < 0:
            position = start
            break
        body = text[start + 1 : end].strip()
        if body:
            messages.append(body)
        position = end + 1
    if text[position:].strip():
        broken += 1  # junk after the last message, or a message without its closing star
    return messages, broken


@dataclass(frozen=True, slots=True)
class Message:
    """One device message: ``REPORT`` (``value`` = the value tokens joined by one space) or ``SAMPLE``
    (``tokens`` = the fields after ``ALL``). Device-level REPORTs have ``channel`` None."""

    verb: str
    channel: int | None
    prop: str
    value: str = ""
    tokens: tuple[str, ...] = ()


def _channel_number(token: str) -> int | None:
    return int(token) if token.isdigit() and len(token) <= 2 else None


def parse_message(body: str) -> Message:
    """Parse the text between the stars of one message.

    Raises:
        ProtocolError: not a REPORT or SAMPLE, or malformed.
    """
    tokens = body.split()
    if not tokens:
        raise ProtocolError("empty UHF-R message")
    verb, rest = tokens[0], tokens[1:]
    if verb == spec.VERB_REPORT:
        channel = _channel_number(rest[0]) if rest else None
        if channel is not None:
            rest = rest[1:]
        if not rest or not _PROP_RE.match(rest[0]):
            raise ProtocolError(f"REPORT without a property name: {body[:80]!r}")
        return Message(spec.VERB_REPORT, channel, rest[0], " ".join(rest[1:]))
    if verb == spec.VERB_SAMPLE:
        channel = _channel_number(rest[0]) if rest else None
        if channel is None or len(rest) < 2 or rest[1] != spec.METER_ALL:
            raise ProtocolError(f"malformed SAMPLE {body[:80]!r}")
        return Message(spec.VERB_SAMPLE, channel, spec.METER_ALL, tokens=tuple(rest[2:]))
    raise ProtocolError(f"not a UHF-R device message (verb {verb[:20]!r}): {body[:80]!r}")


def _number(value: str, what: str) -> int:
    if not _DIGITS_RE.match(value):
        raise ProtocolError(f"{what}: expected a number, got {value[:20]!r}")
    return int(value)


def _bars(value: str) -> int | None:
    """TX_BAT and the SAMPLE battery field: 1-5 bars, ``U`` unknown (no transmitter) [M]; 0 tolerated."""
    text = value.strip().upper()
    if text in (spec.BATTERY_UNKNOWN, spec.UNKNOWN):
        return None
    if len(text) == 1 and text in "012345":
        return int(text)
    raise ProtocolError(f"battery: expected 1-5 or U, got {value[:20]!r}")


def _antennas(code: str) -> str:
    """AX: A in use, XB: B in use, AB: both, XX: none (protocols.md §2, positional)."""
    if code not in spec.ANTENNA_CODES:
        raise ProtocolError(f"antenna: expected AX, XB, AB or XX, got {code[:20]!r}")
    if code == "XX":
        return ANTENNA_OFF * 2
    return "".join(ANTENNA_INACTIVE if letter == "X" else ANTENNA_ACTIVE for letter in code)


def _rf_dbm(value: str) -> float:
    """An RF field as dBm: the magnitude of a negative dBm (082 -> -82 dBm); see uhfr_spec for why [U]."""
    return -float(_number(value, "RF level"))


def audio_percent_from_bitmap(bitmap: int) -> int:
    """Segments lit of the 8-LED bitmap x 12.5 %, rounded up (micboard's reading) [U]; 0 = silence."""
    return min(100, -(-bitmap.bit_length() * 100 // spec.AUDIO_LEDS))


@dataclass(frozen=True, slots=True)
class Sample:
    """One ``SAMPLE n ALL`` on port 2202: antenna states (A then B), RF of each antenna, bars, audio bitmap."""

    antennas: str
    rf_dbm: tuple[float, float]
    battery_bars: int | None
    audio_bitmap: int


def parse_sample(tokens: tuple[str, ...]) -> Sample:
    """Decode ``antenna rfA rfB battery audio`` (positional [M]).

    Raises:
        ProtocolError: wrong field count or a malformed field.
    """
    if len(tokens) != spec.SAMPLE_FIELDS:
        raise ProtocolError(f"UHF-R SAMPLE needs {spec.SAMPLE_FIELDS} fields, got {len(tokens)}")
    bitmap = _number(tokens[4], "audio")
    if bitmap > 0xFF:
        raise ProtocolError(f"audio bitmap out of range: {bitmap}")
    return Sample(
        antennas=_antennas(tokens[0]),
        rf_dbm=(_rf_dbm(tokens[1]), _rf_dbm(tokens[2])),
        battery_bars=_bars(tokens[3]),
        audio_bitmap=bitmap,
    )


def _text(value: str) -> str | None:
    return value.translate(_CONTROL_CHARS).strip() or None


def _name(value: str) -> str | None:
    """CHAN_NAME travels with ``_`` for each space [M]."""
    return _text(value.replace(spec.NAME_SPACE, " "))


def _word(value: str) -> str | None:
    text = _text(value)
    return None if text is None or text.upper() in (spec.UNKNOWN, "UNKN") else text


def _frequency(value: str) -> int | None:
    """6-digit kHz [M]; 0 read as "not set" [U]."""
    return _number(value.strip(), "frequency") or None


def _group_channel(value: str) -> str | None:
    """``gg cc`` -> ``gg,cc`` (the form the other Shure families use); ``-- --`` = none [M]."""
    parts = value.split()
    if not parts or any("-" in part for part in parts):
        return None
    return ",".join(parts)


def _runtime(value: str) -> tuple[int | None, str | None]:
    """TX_BAT_MINS [U]: minutes; usually UNKNOWN. Numbers from 65533 read as on the other Shure families."""
    text = value.strip()
    if not text.isdigit():
        return None, None
    minutes = int(text)
    if minutes <= 65532:
        return minutes, None
    return None, {65533: RUNTIME_WARNING, 65534: RUNTIME_CALCULATING}.get(minutes)


def _battery_type(value: str) -> str | None:
    text = _word(value)
    return None if text is None else spec.BATTERY_TYPES.get(text.upper(), text)


def _on_off(value: str) -> bool | None:
    return {"ON": True, "OFF": False}.get(value.strip().upper())


# REPORT property -> (fact, converter). Everything else is answered but not read (gains, squelch, locks).
CHANNEL_FACTS: dict[str, tuple[str, Callable[[str], Any]]] = {
    spec.CHAN_NAME: ("name", _name),
    spec.FREQUENCY: ("frequency_khz", _frequency),
    spec.GROUP_CHAN: ("group_channel", _group_channel),
    spec.TX_TYPE: ("tx_model", _word),
    spec.TX_BAT: ("battery_bars", _bars),
    spec.TX_BAT_MINS: ("runtime", _runtime),
    spec.TX_BAT_TYPE: ("battery_type", _battery_type),
    spec.MUTE: ("audio_muted", _on_off),
}
# Device-level REPORTs are seen only over sNet (UDP 2201) [U]; asked once per exchange and read if a unit
# answers them here, never waited for. MAC_ADDR, when answered, is the unit's identity (discovery matches a
# moved receiver by it).
DEVICE_FACTS = {"MODEL_NAME": "model", "SW_VERSION": "firmware", "FREQ_BAND": "rf_band", "MAC_ADDR": "device_id"}


@dataclass(slots=True)
class _Facts:
    values: dict[str, Any] = field(default_factory=dict)
    antennas: str | None = None
    rf_dbm: tuple[float, float] | None = None
    audio_bitmap: int | None = None
    peaked: bool = False  # a SAMPLE since the last reading() lit the peak LED
    metered: bool = False  # a SAMPLE arrived


class UhfrState:
    """Apply messages of one receiver and build a :class:`ReceiverReading`.

    ``answered`` holds the (channel, property) pairs REPORTed and ``sampled`` the channels SAMPLEd, so the
    network side knows when an exchange is complete. Messages for channels the model lacks are counted in
    ``ignored``.
    """

    def __init__(self, channels: int) -> None:
        self.channel_count = channels
        self.device: dict[str, str | None] = {}
        self.answered: set[tuple[int, str]] = set()
        self.sampled: set[int] = set()
        self.ignored = 0
        self._facts = {n: _Facts() for n in range(1, channels + 1)}

    def apply(self, msg: Message) -> None:
        """Apply one message. Raises: ProtocolError for a malformed value (the state is then unchanged)."""
        if msg.channel is None:
            attr = DEVICE_FACTS.get(msg.prop)
            if attr is not None:
                self.device[attr] = _text(msg.value)
            return
        facts = self._facts.get(msg.channel)
        if facts is None:
            self.ignored += 1
            return
        if msg.verb == spec.VERB_SAMPLE:
            sample = parse_sample(msg.tokens)
            facts.antennas, facts.rf_dbm, facts.audio_bitmap = sample.antennas, sample.rf_dbm, sample.audio_bitmap
            facts.values["battery_bars"] = sample.battery_bars
            facts.peaked = facts.peaked or bool(sample.audio_bitmap & spec.AUDIO_PEAK_BIT)
            facts.metered = True
            self.sampled.add(msg.channel)
            return
        entry = CHANNEL_FACTS.get(msg.prop)
        if entry is not None:
            fact, convert = entry
            facts.values[fact] = convert(msg.value)
        self.answered.add((msg.channel, msg.prop))

    def reading(self) -> ReceiverReading:
        """A fresh reading of everything applied so far; a peak since the previous reading shows once."""
        reading = ReceiverReading(
            family=spec.FAMILY,
            device_id=self.device.get("device_id"),
            model=self.device.get("model"),
            firmware=self.device.get("firmware"),
            rf_band=self.device.get("rf_band"),
            channels={n: self._channel(n, facts) for n, facts in self._facts.items()},
        )
        for facts in self._facts.values():
            facts.peaked = False
        return reading

    @staticmethod
    def _channel(number: int, facts: _Facts) -> ChannelReading:
        values = facts.values
        # A transmitter is present when the battery says so (TX_BAT or the SAMPLE's battery field is not U,
        # protocols.md §6); TX_TYPE decides only before any battery field arrived. Without a transmitter,
        # whatever a REPORT said about one (model, runtime, chemistry) describes no pack and is left out.
        if "battery_bars" in values:
            present: bool | None = values["battery_bars"] is not None
        elif "tx_model" in values:
            present = values["tx_model"] is not None
        else:
            present = None
        pack = present is not False
        runtime_min, runtime_state = values.get("runtime", (None, None)) if pack else (None, None)
        rf = facts.rf_dbm
        bitmap = facts.audio_bitmap
        return ChannelReading(
            number=number,
            name=values.get("name"),
            frequency_khz=values.get("frequency_khz"),
            group_channel=values.get("group_channel"),
            tx_present=present,
            tx_model=values.get("tx_model") if pack else None,
            battery_bars=values.get("battery_bars"),
            battery_runtime_min=runtime_min,
            battery_runtime_state=runtime_state,
            battery_type=values.get("battery_type") if pack else None,
            audio_muted=values.get("audio_muted"),
            rf_dbm=max(rf) if rf else None,
            rf_percent=rf_percent_from_dbm(max(rf)) if rf else None,
            rf_antenna_percents=tuple(rf_percent_from_dbm(dbm) for dbm in rf) if rf else None,
            antennas=facts.antennas,
            audio_percent=audio_percent_from_bitmap(bitmap) if bitmap is not None else None,
            audio_peak=facts.peaked or bool(bitmap is not None and bitmap & spec.AUDIO_PEAK_BIT),
            metered=facts.metered,
        )


# --------------------------------------------------------------------------------------------------------
# The network: one UDP socket per poll or link
# --------------------------------------------------------------------------------------------------------

SETTLE_SECONDS = 0.3  # essential properties in and quiet this long: a poll need not wait for the others
RESENDS = 2  # a poll asks again for what is missing at 1/3 and 2/3 of its timeout
PROBE_AFTER_SECONDS = 1.0  # a link quiet this long sends METER again
SILENCE_SECONDS = 2.5  # a link quiet this long is dead (the crew sees RX_COM_ERROR within 3 s)
REFRESH_SECONDS = 10.0  # a link asks for every property again this often (REPORTs on change are [U])
# Linux reports ICMP errors (port unreachable) on an unconnected UDP socket only with IP_RECVERR.
_RECVERR = {socket.AF_INET: (socket.IPPROTO_IP, 11), socket.AF_INET6: (socket.IPPROTO_IPV6, 25)}


def _network_hint(port: int) -> str:
    return (
        "check the receiver's network settings (IP address and subnet mask in its network menu), "
        f"that it is switched on, and that nothing filters UDP port {port}"
    )


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class _Endpoint(asyncio.DatagramProtocol):
    """One socket's conversation with one receiver: datagrams from its address in, state, liveness."""

    def __init__(self, address: str, port: int, channels: int) -> None:
        self.destination = (address, port)
        self.peer = _ip(address)
        self.state = UhfrState(channels)
        self.datagrams = 0  # from the receiver's address
        self.foreign = 0  # from any other address: ignored
        self.valid = 0
        self.broken = 0
        self.first_at: float | None = None
        self.last_at = 0.0  # any datagram from the receiver
        self.last_valid_at = 0.0
        self.last_report_at = 0.0
        self.refused: OSError | None = None
        self.dirty = False  # a valid message arrived since a link's last take()
        self.sock: socket.socket | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self._waiter: asyncio.Future | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if _ip(str(addr[0])) != self.peer:
            self.foreign += 1
            return
        now = asyncio.get_running_loop().time()
        self.datagrams += 1
        self.first_at = self.first_at if self.first_at is not None else now
        self.last_at = now
        messages, broken = split_datagram(data)
        self.broken += broken
        for body in messages:
            try:
                msg = parse_message(body)
                self.state.apply(msg)
            except ProtocolError:
                self.broken += 1
                continue
            self.valid += 1
            self.last_valid_at = now
            self.dirty = True
            if msg.verb == spec.VERB_REPORT:
                self.last_report_at = now
        self._wake()

    def error_received(self, exc: Exception) -> None:
        # One destination per socket: any ICMP error is about the receiver. Drain the error queue, or the
        # socket would keep polling readable.
        if self.sock is not None:
            with contextlib.suppress(OSError, AttributeError):
                for _ in range(16):
                    self.sock.recvmsg(512, 0, socket.MSG_ERRQUEUE)
        if isinstance(exc, OSError) and self.refused is None:
            self.refused = exc
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def send(self, text: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(f"{spec.MESSAGE_START}{text}{spec.MESSAGE_END}".encode("ascii"), self.destination)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def wait(self, until: float, stop: Callable[[], bool]) -> None:
        """Return when ``stop()`` holds, an ICMP error arrived, or the loop's clock reaches ``until``."""
        loop = asyncio.get_running_loop()
        while not stop() and self.refused is None:
            remaining = until - loop.time()
            if remaining <= 0:
                return
            # A bare future and a timer, not asyncio.wait_for: on Python 3.11 wait_for swallows a cancellation
            # that arrives as the awaited event fires, and datagrams arrive many times a second.
            waiter = self._waiter = loop.create_future()
            timer = loop.call_later(remaining, self._wake)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None

    def refused_error(self, where: str) -> ConnectionTimeoutError:
        reason = self.refused.strerror if self.refused is not None and self.refused.strerror else "refused"
        return ConnectionTimeoutError(
            f"{where}: nothing answers on UDP port {self.destination[1]} there ({reason.lower()}: ICMP error); "
            "is it a UHF-R receiver, switched on?"
        )

    def outcome(self, where: str, timeout: float) -> None:
        """Raise the DriverError an exchange that did not complete ended with (nothing when it has valid data)."""
        if self.valid:
            return
        if self.refused is not None and not self.datagrams:
            raise self.refused_error(where)
        if not self.datagrams:
            elsewhere = (
                f" ({self.foreign} datagrams came from other addresses and were ignored)" if self.foreign else ""
            )
            raise ConnectionTimeoutError(
                f"{where}: no reply within {timeout:g} s{elsewhere}; {_network_hint(self.destination[1])}"
            )
        raise ProtocolError(
            f"{where}: sent {self.datagrams} datagrams but no complete UHF-R message "
            "(messages cut short, or is this port really a UHF-R receiver?)"
        )


def _channels(model: str) -> int:
    try:
        return device_model(model, driver=spec.DRIVER).channels
    except KeyError:
        raise ProtocolError(f"{model!r} is not a UHF-R model (UR4S, UR4D)") from None


async def _open(host: str, port: int, timeout: float, channels: int) -> _Endpoint:
    """Resolve ``host`` and open an unconnected UDP socket towards it.

    Raises:
        AddressResolutionError: the name did not resolve within ``timeout``.
        ConnectionTimeoutError: a port out of range, or no socket could be opened.
    """
    where = f"{host}:{port}"
    if not 0 < port < 65536:
        raise ConnectionTimeoutError(f"{where}: invalid port")
    try:
        addresses = await resolve_host(host, timeout=timeout)
    except AddressResolutionError as exc:
        raise AddressResolutionError(f"{where}: {exc}") from None
    # UDP cannot tell which address answers; UHF-R units speak IPv4, so an IPv4 address goes first.
    address = sorted(addresses, key=lambda a: ":" in a)[0]
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    endpoint = _Endpoint(address, port, channels)
    try:
        sock = socket.socket(family, socket.SOCK_DGRAM)
    except OSError as exc:
        raise ConnectionTimeoutError(f"{where}: cannot open a UDP socket: {exc.strerror or exc}") from None
    try:
        sock.setblocking(False)
        if sys.platform.startswith("linux"):
            with contextlib.suppress(OSError):
                sock.setsockopt(*_RECVERR[family], 1)
        endpoint.sock = sock
        await asyncio.get_running_loop().create_datagram_endpoint(lambda: endpoint, sock=sock)
    except OSError as exc:
        sock.close()
        raise ConnectionTimeoutError(f"{where}: cannot open a UDP socket: {exc.strerror or exc}") from None
    return endpoint


class _Exchange:
    """What one socket asked and how to tell that the answer is complete."""

    def __init__(self, endpoint: _Endpoint, channels: int, units: int) -> None:
        self.endpoint = endpoint
        self.channels = range(1, channels + 1)
        self.units = units  # METER units; 0 = no metering

    def ask(self, *, missing_only: bool = False) -> None:
        state = self.endpoint.state
        if not missing_only:
            for prop in DEVICE_FACTS:
                self.endpoint.send(f"{spec.VERB_GET} {prop}")
        for n in self.channels:
            for prop in spec.READ_PROPS:
                if not (missing_only and (n, prop) in state.answered):
                    self.endpoint.send(f"{spec.VERB_GET} {n} {prop}")
        self.meter(missing_only=missing_only)

    def meter(self, *, missing_only: bool = False) -> None:
        if self.units:
            for n in self.channels:
                if not (missing_only and n in self.endpoint.state.sampled):
                    self.endpoint.send(f"{spec.VERB_METER} {n} {spec.METER_ALL} {self.units:03d}")

    def stop_metering(self) -> None:
        if self.units:
            for n in self.channels:
                self.endpoint.send(f"{spec.VERB_METER} {n} {spec.METER_ALL} {spec.METER_STOP}")

    def essential(self) -> bool:
        state = self.endpoint.state
        return all((n, prop) in state.answered for n in self.channels for prop in spec.ESSENTIAL_PROPS) and (
            not self.units or all(n in state.sampled for n in self.channels)
        )

    def complete(self) -> bool:
        answered = self.endpoint.state.answered
        return self.essential() and all((n, prop) in answered for n in self.channels for prop in spec.READ_PROPS)

    async def run(self, deadline: float, timeout: float) -> None:
        """Ask, then wait until complete (or essential and settled), asking again for what is missing."""
        loop = asyncio.get_running_loop()
        endpoint = self.endpoint
        self.ask()
        resend_at = [loop.time() + timeout * k / (RESENDS + 1) for k in range(1, RESENDS + 1)]
        while not self.complete() and endpoint.refused is None:
            now = loop.time()
            if now >= deadline:
                return
            if self.essential() and now >= endpoint.last_report_at + SETTLE_SECONDS:
                return
            wake = min([deadline, *resend_at])
            if self.essential():
                wake = min(wake, endpoint.last_report_at + SETTLE_SECONDS)
            await endpoint.wait(wake, lambda seen=endpoint.valid: endpoint.valid != seen)
            if resend_at and loop.time() >= resend_at[0]:
                resend_at.pop(0)
                self.ask(missing_only=True)


async def poll(
    host: str,
    port: int,
    *,
    model: str,
    timeout: float = 3.0,
    meter_rate_ms: int = 1000,
    options: Mapping[str, str] | None = None,
) -> ReceiverReading:
    """Read one UHF-R receiver in one short UDP exchange (see the module docstring).

    ``meter_rate_ms`` sets the METER rate (units of 30 ms, at least one); 0 reads no meters. ``options`` are
    ignored: UHF-R has no credentials, and its peak is the receiver's own clip LED (bit 7 of the audio bitmap),
    which has no dBFS to compare with ``peak_dbfs``. ``latency_ms``: from the first GET to the first datagram.

    Raises:
        AddressResolutionError: ``host`` is a name that did not resolve within ``timeout``.
        ConnectionTimeoutError: nothing from the receiver within ``timeout``, or an ICMP error (no one listens).
        ProtocolError: an unknown model, or datagrams but no valid message.
    """
    channels = _channels(model)
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + timeout
    endpoint = await _open(host, port, timeout, channels)
    exchange = _Exchange(endpoint, channels, spec.meter_units(meter_rate_ms) if meter_rate_ms > 0 else 0)
    try:
        await exchange.run(deadline, timeout)
    finally:  # even when cancelled: the receiver meters per sender until told to stop
        exchange.stop_metering()
        endpoint.close()
    endpoint.outcome(f"{host}:{port}", timeout)
    reading = endpoint.state.reading()
    if endpoint.first_at is not None:
        reading.latency_ms = round((endpoint.first_at - started) * 1000, 1)
    return reading


class UhfrLink:
    """One UDP socket kept open: METER at the meter rate, the receiver's REPORTs and SAMPLEs followed.

    :meth:`run` asks for everything, waits for the essential answers (``ready``), then follows until the
    receiver goes quiet for ``silence_seconds`` (METER is sent again after ``PROBE_AFTER_SECONDS`` of quiet, so a
    receiver that forgot us starts metering again), sends only broken messages that long, or an ICMP error
    says nobody listens any more. The GETs go out again every ``REFRESH_SECONDS``. However it ends, METER ...
    STOP is sent and the socket closed. :meth:`take` gives the reading so far, or None when nothing new arrived.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        model: str,
        meter_rate_ms: int = 1000,
        timeout: float = 3.0,
        options: Mapping[str, str] | None = None,
        silence_seconds: float = SILENCE_SECONDS,
        refresh_seconds: float = REFRESH_SECONDS,
    ) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.where = f"{host}:{port}"
        self.channels = _channels(model)
        self.units = spec.meter_units(meter_rate_ms)
        # A slow meter rate must not look like silence: wait at least two SAMPLE periods before probing.
        self.probe_after = max(PROBE_AFTER_SECONDS, 2 * self.units * spec.METER_UNIT_MS / 1000)
        self.silence_seconds = max(silence_seconds, self.probe_after + 0.5)
        self.refresh_seconds = refresh_seconds
        self.endpoint: _Endpoint | None = None
        self.latency_ms: float | None = None
        self.ready = False

    def take(self) -> ReceiverReading | None:
        """The reading so far if anything arrived since the last call (None otherwise, or before ``ready``)."""
        endpoint = self.endpoint
        if endpoint is None or not self.ready or not endpoint.dirty:
            return None
        endpoint.dirty = False
        reading = endpoint.state.reading()
        reading.latency_ms = self.latency_ms
        return reading

    async def run(self) -> None:
        """Follow the receiver until the link fails; returns only when cancelled.

        Raises:
            AddressResolutionError, ConnectionTimeoutError, ProtocolError: as :func:`poll`, while starting.
            DeviceSilentError: quiet for ``silence_seconds`` once running.
            ProtocolError: only broken messages for ``silence_seconds``.
            LinkDroppedError: an ICMP error once running (the receiver stopped listening: restarting?).
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.ready = False
        endpoint = self.endpoint = await _open(self.host, self.port, self.timeout, self.channels)
        exchange = _Exchange(endpoint, self.channels, self.units)
        try:
            await exchange.run(started + self.timeout, self.timeout)
            endpoint.outcome(self.where, self.timeout)
            if not endpoint.state.answered:
                raise ConnectionTimeoutError(
                    f"{self.where}: answered none of its GETs within {self.timeout:g} s; {_network_hint(self.port)}"
                )
            if endpoint.first_at is not None:
                self.latency_ms = round((endpoint.first_at - started) * 1000, 1)
            self.ready = True
            await self._follow(endpoint, exchange)
        finally:
            exchange.stop_metering()
            endpoint.close()

    def _silent(self, quiet: float) -> DeviceSilentError:
        return DeviceSilentError(
            f"{self.where}: sent nothing for {quiet:.1f} s on a live link; {_network_hint(self.port)}"
        )

    async def _follow(self, endpoint: _Endpoint, exchange: _Exchange) -> None:
        loop = asyncio.get_running_loop()
        refreshed_at = loop.time()
        probed_at = 0.0
        while True:
            heard_at = endpoint.last_at
            quiet_until = heard_at + (self.probe_after if probed_at <= heard_at else self.silence_seconds)
            wake = min(quiet_until, refreshed_at + self.refresh_seconds)
            await endpoint.wait(wake, lambda since=heard_at: endpoint.last_at != since)
            if endpoint.refused is not None:
                raise LinkDroppedError(
                    f"{self.where}: stopped listening on UDP port {self.port} (ICMP error: receiver restarting?)"
                )
            now = loop.time()
            if now - endpoint.last_at >= self.silence_seconds:
                raise self._silent(now - endpoint.last_at)
            if now - endpoint.last_valid_at >= self.silence_seconds:
                raise ProtocolError(
                    f"{self.where}: sent only broken messages for {now - endpoint.last_valid_at:.1f} s on a live link"
                )
            if now - endpoint.last_at >= self.probe_after and probed_at <= endpoint.last_at:
                exchange.meter()
                probed_at = now
            if now - refreshed_at >= self.refresh_seconds:
                exchange.ask()
                refreshed_at = now
