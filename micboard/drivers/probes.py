"""Active discovery probes: ask one address "what are you?" in a family's own protocol.

A probe is ``async def probe(host, port, *, timeout, options) -> list[Found]``, registered in
:data:`PROBES` under its driver key (as a dotted path, like ``DRIVERS``). It returns what answers at that
address (a System API server answers for many devices: hence a list), ``[]`` when the answer says
nothing is there for this family, and raises only :class:`~micboard.exceptions.DriverError` subclasses:

* :class:`~micboard.exceptions.ConnectionTimeoutError` (plain): nothing listens there, or no answer in
  time. A scan passes over it without a word.
* :class:`~micboard.exceptions.DeviceSilentError` / :class:`~micboard.exceptions.ProtocolError`:
  something is there but did not identify itself; the message tells the crew what to check, and the scan
  shows it beside its results.

A probe is short and polite: one connection (or a few datagrams), a handful of reads, nothing written to
the device. The port probed defaults to the catalog's ``default_port`` of the driver's models.

No Django imports here.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from micboard.drivers import uhfr, uhfr_spec
from micboard.drivers.catalog import all_models, device_model
from micboard.drivers.resolver import resolve_host
from micboard.drivers.shure_wire import VERB_ERR, VERB_REP, FrameBuffer, parse_message
from micboard.exceptions import (
    AddressResolutionError,
    ConfigurationError,
    ConnectionTimeoutError,
    DeviceSilentError,
    ProtocolError,
)

__all__ = ["PROBES", "Found", "ProbeFunction", "get_probe", "probe_port", "probe_shure_tcp", "probe_shure_uhfr"]


@dataclass(frozen=True, slots=True)
class Found:
    """One device a probe (or an announcement confirmed by a probe) found."""

    driver: str  # the key the receiver would be polled with
    model: str  # as the catalog names it when known, else as the device said
    host: str
    port: int
    device_id: str = ""  # stable identity: Shure DEVICE_ID (PSM1000: DEVICE_NAME) / SSC serial / System API deviceId
    serial: str = ""
    name: str = ""  # the device's own name, when it has one apart from its id
    channels: tuple[tuple[int, str], ...] = ()  # (number, name) as the device reports them
    remote_id: str = ""  # System API: the device's id on the server
    firmware: str = ""
    note: str = ""  # what the crew should know (a model guessed from the channel count, say)


ProbeFunction = Callable[..., Awaitable[list[Found]]]

PROBES: dict[str, str] = {
    "shure_tcp": "micboard.drivers.probes.probe_shure_tcp",
    "shure_uhfr": "micboard.drivers.probes.probe_shure_uhfr",
    "shure_system_api": "micboard.drivers.system_api.probe",
    "sennheiser_ssc": "micboard.drivers.ssc.probe",
}


def get_probe(key: str) -> ProbeFunction:
    """Raises: ConfigurationError for a driver without a probe."""
    try:
        module, _, name = PROBES[key].rpartition(".")
    except KeyError:
        raise ConfigurationError(f"No discovery probe for {key!r}; probes: {', '.join(sorted(PROBES))}") from None
    return getattr(importlib.import_module(module), name)


def probe_port(key: str) -> int:
    """The port a probe of this driver asks by default: its models' ``default_port`` in the catalog.

    Raises:
        ConfigurationError: the catalog has no model for this driver.
    """
    for entry in all_models():
        if entry.driver == key:
            return entry.default_port
    raise ConfigurationError(f"The catalog has no model read by {key!r}")


# --------------------------------------------------------------------------------------------------------
# Shure command strings, TCP 2202 (protocols.md §1.5, §3.4)
# --------------------------------------------------------------------------------------------------------

SHURE_DRIVER = "shure_tcp"
SHURE_CHANNELS = 4  # the most channels a command-strings device has (ULXD4Q, SLXD4Q+, AD4Q)
QUIET_SECONDS = 0.3  # no answer this long after the last one: the device has said all it will
MAX_PROBE_BYTES = 16_384  # what a probe reads at most; the answers are a few hundred bytes

_QUERIES = (
    "GET DEVICE_ID",
    "GET DEVICE_NAME",  # PSM1000 names itself with DEVICE_NAME (and answers nothing to DEVICE_ID)
    "GET MODEL",  # SLX-D and AD answer; ULX-D / QLX-D reportedly do not [U]
    "GET FW_VER",
    *(f"GET {n} CHAN_NAME" for n in range(1, SHURE_CHANNELS + 1)),
    "GET 1 TX_TYPE",  # ULX-D / QLX-D packs say QLXD* or ULXD*: tells a QLXD4 from a ULXD4 while a pack is on
)
_CONTROL = dict.fromkeys([*range(0x20), 0x7F])  # dropped from device strings (PostgreSQL refuses NUL)
_ASKED = frozenset({"DEVICE_ID", "DEVICE_NAME", "MODEL", "FW_VER", "CHAN_NAME", "TX_TYPE"})
_BY_CHANNELS = {1: "ULXD4", 2: "ULXD4D", 4: "ULXD4Q"}


def _shure_model(facts: dict, channels: int, report_keyword: bool) -> tuple[str, str]:
    """(model, note) from what a device answered. ULX-D and QLX-D do not name themselves [U]: their model
    is inferred from the channels that answer and the pack type, and the note says so."""
    said = facts.get("MODEL", "")
    if said:
        try:
            return device_model(said, driver=SHURE_DRIVER).model, ""
        except KeyError:
            return said, f"{said} is not a model micboard reads over command strings"
    if report_keyword:  # only PSM1000 answers REPORT instead of REP (§1.2)
        return "P10T", ""
    tx = facts.get("TX_TYPE", "")
    if channels == 1 and tx.startswith("QLXD"):
        return "QLXD4", "model inferred from its QLX-D pack"
    if channels in _BY_CHANNELS:
        model = _BY_CHANNELS[channels]
        if channels == 1 and not tx.startswith("ULXD"):
            return model, "it does not name its model: ULXD4 or QLXD4, check before adding"
        return model, f"it does not name its model: inferred from its {channels} channel(s)"
    return "", f"it answers for {channels} channel(s), which no command-strings model has"


async def _open(host: str, port: int, timeout: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    where = f"{host}:{port}"
    try:
        address = (await resolve_host(host, timeout=timeout))[0]
    except AddressResolutionError as exc:
        raise ConnectionTimeoutError(f"{where}: {exc}") from None
    try:
        return await asyncio.wait_for(asyncio.open_connection(address, port), timeout)
    except TimeoutError:
        raise ConnectionTimeoutError(f"{where}: no TCP connection within {timeout:g} s") from None
    except ConnectionRefusedError:
        raise ConnectionTimeoutError(f"{where}: connection refused") from None
    except (OSError, ValueError, UnicodeError) as exc:
        raise ConnectionTimeoutError(f"{where}: cannot connect: {getattr(exc, 'strerror', None) or exc}") from None


async def probe_shure_tcp(
    host: str, port: int, *, timeout: float = 1.5, options: Mapping[str, str] | None = None
) -> list[Found]:
    """Ask a Shure command-strings device for DEVICE_ID, MODEL, FW_VER and its channel names.

    Only a well-formed REP identifies a device (§3.4): an open port that answers nothing is a
    :class:`DeviceSilentError` (SLX-D with third-party control off does that), bytes that are not command
    strings a :class:`ProtocolError`.
    """
    where = f"{host}:{port}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    reader, writer = await _open(host, port, timeout)
    frames = FrameBuffer()
    facts: dict[str, str] = {}
    names: dict[int, str] = {}
    answers = received = 0
    report_keyword = False
    last_answer: float | None = None
    try:
        writer.write("".join(f"< {q} >\r\n" for q in _QUERIES).encode("ascii"))
        while answers < len(_QUERIES):
            now = loop.time()
            wait = deadline - now
            if last_answer is not None:
                wait = min(wait, last_answer + QUIET_SECONDS - now)
            if wait <= 0:
                break
            try:
                data = await asyncio.wait_for(reader.read(4096), wait)
            except TimeoutError:
                break
            if not data:
                break
            received += len(data)
            if received > MAX_PROBE_BYTES:
                break
            for frame in frames.feed(data):
                try:
                    message = parse_message(frame)
                except ProtocolError:
                    continue
                if message.verb == VERB_ERR:
                    answers += 1
                    last_answer = loop.time()
                elif message.verb == VERB_REP and message.prop in _ASKED:
                    answers += 1
                    last_answer = loop.time()
                    report_keyword |= frame.lstrip("< ").startswith("REPORT")
                    value = (message.value or "").translate(_CONTROL).strip()[:64]
                    if message.prop == "CHAN_NAME" and message.channel:
                        names[message.channel] = value
                    elif message.channel in (None, 1):
                        facts.setdefault(message.prop, value)
    except (ConnectionError, OSError) as exc:
        if not answers:
            raise ConnectionTimeoutError(f"{where}: the connection dropped: {exc.strerror or exc}") from None
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 0.5)

    identified = {k: v for k, v in facts.items() if k != "TX_TYPE"}
    if not identified and not names:
        if not received:
            raise DeviceSilentError(
                f"{where} accepted a connection but answered nothing: on SLX-D, enable third-party control "
                "in the receiver's advanced network settings"
            )
        raise ProtocolError(f"{where} answered, but not in Shure command strings: is it a Shure receiver?")
    count = 0
    while count + 1 in names:
        count += 1
    model, note = _shure_model(facts, count, report_keyword)
    device_id = facts.get("DEVICE_ID") or facts.get("DEVICE_NAME") or ""
    return [
        Found(
            driver=SHURE_DRIVER,
            model=model,
            host=host,
            port=port,
            device_id=device_id,
            name=device_id,
            channels=tuple((n, names[n]) for n in range(1, count + 1)),
            firmware=facts.get("FW_VER", "").rstrip("*").strip()[:32],
            note=note,
        )
    ]


# --------------------------------------------------------------------------------------------------------
# Shure UHF-R, UDP 2202 (protocols.md §2)
# --------------------------------------------------------------------------------------------------------

UHFR_DRIVER = uhfr_spec.DRIVER
# The device-level GETs are seen only over sNet [U]: a unit that ignores them on 2202 is still identified by
# its channel names, its model then inferred from how many answer. MAC_ADDR, when answered, is its identity.
_UHFR_QUERIES = ("GET MODEL_NAME", "GET SW_VERSION", "GET MAC_ADDR", "GET 1 CHAN_NAME", "GET 2 CHAN_NAME")
_UHFR_BY_CHANNELS = {1: "UR4S", 2: "UR4D"}
_IP_RECVERR = 11  # Linux: ICMP errors (port unreachable) reported on an unconnected UDP socket


class _UdpAnswers(asyncio.DatagramProtocol):
    """Datagrams from one address (replies are matched by source address, never by port [U]), bounded."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.datagrams: list[bytes] = []
        self.received = 0
        self.refused: OSError | None = None
        self.arrived = asyncio.Event()

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if addr[0] != self.address or self.received > MAX_PROBE_BYTES:
            return
        self.received += len(data)
        self.datagrams.append(data)
        self.arrived.set()

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, OSError):
            self.refused = exc
        self.arrived.set()


async def probe_shure_uhfr(
    host: str, port: int, *, timeout: float = 1.5, options: Mapping[str, str] | None = None
) -> list[Found]:
    """Ask a UHF-R receiver for its model, firmware, MAC address and channel names, one datagram each.

    UDP cannot tell a silent unit from an empty address: no answer is a plain ConnectionTimeoutError.
    """
    where = f"{host}:{port}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        address = sorted(await resolve_host(host, timeout=timeout), key=lambda a: ":" in a)[0]
    except AddressResolutionError as exc:
        raise ConnectionTimeoutError(f"{where}: {exc}") from None
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    if sys.platform.startswith("linux") and family == socket.AF_INET:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_IP, _IP_RECVERR, 1)
    try:
        transport, answers = await loop.create_datagram_endpoint(lambda: _UdpAnswers(address), sock=sock)
    except OSError as exc:
        sock.close()
        raise ConnectionTimeoutError(f"{where}: cannot open a UDP socket: {exc.strerror or exc}") from None
    facts: dict[str, str] = {}
    names: dict[int, str] = {}
    last: float | None = None
    try:
        for query in _UHFR_QUERIES:
            transport.sendto(f"* {query} *".encode("ascii"), (address, port))
        while len(facts) + len(names) < len(_UHFR_QUERIES) and answers.refused is None:
            now = loop.time()
            wait = deadline - now if last is None else min(deadline, last + QUIET_SECONDS) - now
            if wait <= 0:
                break
            answers.arrived.clear()
            try:
                await asyncio.wait_for(answers.arrived.wait(), wait)
            except TimeoutError:
                break
            while answers.datagrams:
                for body in uhfr.split_datagram(answers.datagrams.pop(0))[0]:
                    try:
                        message = uhfr.parse_message(body)
                    except ProtocolError:
                        continue
                    if message.verb != uhfr_spec.VERB_REPORT:
                        continue
                    last = loop.time()
                    value = message.value.translate(_CONTROL).strip()[:64]
                    if message.prop == uhfr_spec.CHAN_NAME and message.channel in (1, 2):
                        names[message.channel] = value.replace(uhfr_spec.NAME_SPACE, " ").strip()
                    elif message.channel is None:
                        facts.setdefault(message.prop, value)
    finally:
        transport.close()
    if not facts and not names:
        if answers.received:
            raise ProtocolError(f"{where} answered on UDP, but not in UHF-R strings: is it a UHF-R receiver?")
        reason = "nothing listens there" if answers.refused is not None else f"no answer within {timeout:g} s"
        raise ConnectionTimeoutError(f"{where}: {reason}")
    count = 2 if 2 in names else 1 if 1 in names else 0
    said = facts.get("MODEL_NAME", "")
    try:
        model, note = device_model(said, driver=UHFR_DRIVER).model, ""
    except KeyError:
        model = _UHFR_BY_CHANNELS.get(count, said)
        note = f"it does not name its model: inferred from its {count} channel(s)" if not said else ""
    mac = facts.get("MAC_ADDR", "")
    if not mac:
        note = "; ".join(filter(None, [note, "UHF-R gives no device id here: a receiver already added shows as new"]))
    return [
        Found(
            driver=UHFR_DRIVER,
            model=model,
            host=host,
            port=port,
            device_id=mac,
            name=said or model,
            channels=tuple((n, names[n]) for n in range(1, count + 1) if n in names),
            firmware=facts.get("SW_VERSION", "")[:32],
            note=note,
        )
    ]
