"""Minimal DNS message codec and DNS-SD browsing over multicast DNS (RFC 1035, 6762, 6763).

Enough for Sennheiser SSC discovery (protocols.md §3.4): ask for ``_ssc._udp.local`` PTR records and read
the answer's PTR -> SRV (port, target) / TXT (``txtvers``, ``version``) / A records. The instance name
is the device's ``/device/name``; the port comes from SRV, never assumed to be 45.

Names are tuples of labels (an instance name may contain dots or spaces, so a dotted string cannot hold
it); comparisons ignore ASCII case, as DNS does. Decoding is bounded: at most ``MAX_RECORDS`` records,
255 bytes per name, and compression pointers that only point backwards (no loops). Encoding never
compresses (always allowed).

:func:`browse` sends the question from an ephemeral port, which makes it a "legacy unicast" query
(RFC 6762 §6.7): responders answer straight back to that port, so no listener on 5353 is needed and
another mDNS stack on the machine is undisturbed. The host of a found service is the address its answer
came from (the one micboard can reach), as with SLP; the A record is kept beside it.

No Django imports here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
import struct
from dataclasses import dataclass, field

from micboard.drivers.multicast import MAX_DATAGRAM, check_interface, open_sender
from micboard.exceptions import DriverError, ProtocolError

__all__ = [
    "MDNS_GROUP",
    "MDNS_PORT",
    "SSC_SERVICE",
    "DnsMessage",
    "DnsSdService",
    "Question",
    "Record",
    "Srv",
    "browse",
    "decode",
    "encode",
    "services_in",
]

MDNS_GROUP = "224.0.0.251"
MDNS_PORT = 5353
SSC_SERVICE = ("_ssc", "_udp", "local")

TYPE_A, TYPE_PTR, TYPE_TXT, TYPE_AAAA, TYPE_SRV, TYPE_ANY = 1, 12, 16, 28, 33, 255
CLASS_IN = 1
_CLASS_TOP_BIT = 0x8000  # question: unicast response wanted (QU); record: cache flush
FLAG_RESPONSE = 0x8400  # QR + AA: an authoritative answer

MAX_RECORDS = 64  # per section and message: a device answers with a handful
MAX_NAME = 255
MAX_POINTER_HOPS = 32
MAX_SERVICES = 1024  # distinct services kept by one browse

Name = tuple[str, ...]
_HEADER = struct.Struct("!HHHHHH")
_CONTROL = dict.fromkeys([*range(0x20), 0x7F])


@dataclass(frozen=True, slots=True)
class Question:
    name: Name
    qtype: int = TYPE_PTR
    unicast: bool = False  # the QU bit


@dataclass(frozen=True, slots=True)
class Srv:
    priority: int
    weight: int
    port: int
    target: Name


@dataclass(frozen=True, slots=True)
class Record:
    """A resource record; ``data`` is a str (A, AAAA), a Name (PTR), a Srv, a tuple of bytes (TXT) or bytes."""

    name: Name
    rtype: int
    data: object
    ttl: int = 120
    cache_flush: bool = False


@dataclass(frozen=True, slots=True)
class DnsMessage:
    id: int = 0
    flags: int = 0
    questions: tuple[Question, ...] = ()
    answers: tuple[Record, ...] = ()
    authorities: tuple[Record, ...] = ()
    additionals: tuple[Record, ...] = ()

    @property
    def is_response(self) -> bool:
        return bool(self.flags & 0x8000)

    @property
    def records(self) -> tuple[Record, ...]:
        return self.answers + self.authorities + self.additionals


@dataclass(frozen=True, slots=True)
class DnsSdService:
    """One DNS-SD service instance as found: where to reach it and what its TXT record says."""

    instance: str  # the instance label, e.g. the SSC /device/name
    host: str  # the address the answer came from
    port: int
    target: str = ""  # the SRV target host name, e.g. "EM4-1234.local"
    address: str = ""  # the A record of the target, when the answer carried one
    txt: dict[str, str] = field(default_factory=dict)


def same_name(a: Name, b: Name) -> bool:
    return len(a) == len(b) and all(x.lower() == y.lower() for x, y in zip(a, b, strict=True))


def name_text(name: Name) -> str:
    return ".".join(name)


# ------------------------------------------------------------------------------------------------ encode


def _encode_name(name: Name) -> bytes:
    out = bytearray()
    for label in name:
        raw = label.encode("utf-8")
        if not 1 <= len(raw) <= 63:
            raise ProtocolError(f"a DNS label is 1..63 bytes, {label!r} is {len(raw)}")
        out += bytes([len(raw)]) + raw
    out += b"\x00"
    if len(out) > MAX_NAME:
        raise ProtocolError(f"the DNS name {name_text(name)!r} is longer than {MAX_NAME} bytes")
    return bytes(out)


def _encode_rdata(record: Record) -> bytes:
    data = record.data
    if record.rtype == TYPE_A:
        return socket.inet_aton(str(data))
    if record.rtype == TYPE_AAAA:
        return ipaddress.IPv6Address(str(data)).packed
    if record.rtype == TYPE_PTR:
        return _encode_name(data)  # type: ignore[arg-type]
    if record.rtype == TYPE_SRV:
        assert isinstance(data, Srv)
        return struct.pack("!HHH", data.priority, data.weight, data.port) + _encode_name(data.target)
    if record.rtype == TYPE_TXT:
        strings = tuple(data) or (b"",)  # type: ignore[arg-type]
        out = b""
        for item in strings:
            if len(item) > 255:
                raise ProtocolError("a TXT string is at most 255 bytes")
            out += bytes([len(item)]) + item
        return out
    return bytes(data)  # type: ignore[arg-type]


def _encode_record(record: Record) -> bytes:
    rdata = _encode_rdata(record)
    rclass = CLASS_IN | (_CLASS_TOP_BIT if record.cache_flush else 0)
    return _encode_name(record.name) + struct.pack("!HHIH", record.rtype, rclass, record.ttl, len(rdata)) + rdata


def encode(message: DnsMessage) -> bytes:
    """The wire form of a message (names uncompressed)."""
    out = bytearray(
        _HEADER.pack(
            message.id & 0xFFFF,
            message.flags & 0xFFFF,
            len(message.questions),
            len(message.answers),
            len(message.authorities),
            len(message.additionals),
        )
    )
    for question in message.questions:
        qclass = CLASS_IN | (_CLASS_TOP_BIT if question.unicast else 0)
        out += _encode_name(question.name) + struct.pack("!HH", question.qtype, qclass)
    for record in message.records:
        out += _encode_record(record)
    return bytes(out)


def txt_strings(values: dict[str, str]) -> tuple[bytes, ...]:
    """TXT strings ``key=value`` (RFC 6763 §6), in the order given."""
    return tuple(f"{k}={v}".encode()[:255] for k, v in values.items())


# ------------------------------------------------------------------------------------------------ decode


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def take(self, count: int) -> bytes:
        end = self.offset + count
        if count < 0 or end > len(self.data):
            raise ProtocolError(f"DNS message truncated at byte {self.offset} (needs {count} more)")
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def unpack(self, fmt: struct.Struct) -> tuple:
        return fmt.unpack(self.take(fmt.size))

    def name(self) -> Name:
        """Read a name at the current offset, following compression pointers (backwards only)."""
        labels: list[str] = []
        total = 0
        position = self.offset
        resume: int | None = None
        hops = 0
        while True:
            if position >= len(self.data):
                raise ProtocolError("DNS name runs past the end of the message")
            length = self.data[position]
            if length & 0xC0 == 0xC0:
                if position + 1 >= len(self.data):
                    raise ProtocolError("DNS compression pointer truncated")
                target = ((length & 0x3F) << 8) | self.data[position + 1]
                if target >= position:
                    raise ProtocolError("DNS compression pointer does not point backwards")
                hops += 1
                if hops > MAX_POINTER_HOPS:
                    raise ProtocolError("too many DNS compression pointers in one name")
                if resume is None:
                    resume = position + 2
                position = target
                continue
            if length & 0xC0:
                raise ProtocolError(f"unknown DNS label type 0x{length:02x}")
            position += 1
            if length == 0:
                break
            total += length + 1
            if total > MAX_NAME:
                raise ProtocolError(f"DNS name longer than {MAX_NAME} bytes")
            if position + length > len(self.data):
                raise ProtocolError("DNS label runs past the end of the message")
            raw = self.data[position : position + length]
            labels.append(raw.decode("utf-8", errors="replace").translate(_CONTROL))
            position += length
        self.offset = resume if resume is not None else position
        return tuple(labels)


_RR = struct.Struct("!HHIH")
_Q = struct.Struct("!HH")
_SRV = struct.Struct("!HHH")


def _record(reader: _Reader) -> Record:
    name = reader.name()
    rtype, rclass, ttl, length = reader.unpack(_RR)
    end = reader.offset + length
    if end > len(reader.data):
        raise ProtocolError("DNS record data runs past the end of the message")
    data: object
    if rtype == TYPE_A and length == 4:
        data = socket.inet_ntoa(reader.take(4))
    elif rtype == TYPE_AAAA and length == 16:
        data = str(ipaddress.IPv6Address(reader.take(16)))
    elif rtype == TYPE_PTR:
        data = reader.name()
    elif rtype == TYPE_SRV and length >= _SRV.size + 1:
        priority, weight, port = reader.unpack(_SRV)
        data = Srv(priority, weight, port, reader.name())
    elif rtype == TYPE_TXT:
        strings = []
        while reader.offset < end:
            size = reader.take(1)[0]
            strings.append(reader.take(min(size, end - reader.offset)))
        data = tuple(strings)
    else:
        data = reader.take(length)
    if reader.offset != end:
        raise ProtocolError(f"DNS record {name_text(name)[:80]!r}: its data does not match its length ({length})")
    return Record(name=name, rtype=rtype, data=data, ttl=ttl, cache_flush=bool(rclass & _CLASS_TOP_BIT))


def decode(data: bytes) -> DnsMessage:
    """Decode one DNS message.

    Raises:
        ProtocolError: truncated, looping or oversized names, more than MAX_RECORDS records in a section.
    """
    if len(data) > MAX_DATAGRAM:
        raise ProtocolError(f"DNS message of {len(data)} bytes is larger than {MAX_DATAGRAM}")
    reader = _Reader(data)
    qid, flags, qd, an, ns, ar = reader.unpack(_HEADER)
    if max(qd, an, ns, ar) > MAX_RECORDS:
        raise ProtocolError(f"DNS message claims more than {MAX_RECORDS} entries in a section")
    questions = []
    for _ in range(qd):
        name = reader.name()
        qtype, qclass = reader.unpack(_Q)
        questions.append(Question(name, qtype, bool(qclass & _CLASS_TOP_BIT)))
    sections = [tuple(_record(reader) for _ in range(count)) for count in (an, ns, ar)]
    return DnsMessage(qid, flags, tuple(questions), *sections)


def _txt_dict(strings: tuple[bytes, ...]) -> dict[str, str]:
    """RFC 6763 §6.4: ``key=value``, keys case-insensitive, the first occurrence wins; bounded."""
    out: dict[str, str] = {}
    for raw in strings[:32]:
        text = raw.decode("utf-8", errors="replace").translate(_CONTROL)
        key, _, value = text.partition("=")
        key = key.strip().lower()
        if key and key not in out:
            out[key[:32]] = value[:128]
    return out


def services_in(message: DnsMessage, *, source: str, service: Name = SSC_SERVICE) -> list[DnsSdService]:
    """The instances of ``service`` a response announces, joined PTR -> SRV / TXT -> A (no SRV: skipped)."""
    if not message.is_response:
        return []
    records = message.records
    found = []
    for ptr in records:
        if ptr.rtype != TYPE_PTR or not same_name(ptr.name, service):
            continue
        instance: Name = ptr.data  # type: ignore[assignment]
        srv = next((r.data for r in records if r.rtype == TYPE_SRV and same_name(r.name, instance)), None)
        if not isinstance(srv, Srv) or not instance or srv.port == 0:
            continue
        txt = next((r.data for r in records if r.rtype == TYPE_TXT and same_name(r.name, instance)), ())
        address = next((r.data for r in records if r.rtype == TYPE_A and same_name(r.name, srv.target)), "")
        found.append(
            DnsSdService(
                instance=instance[0][:63],
                host=source,
                port=srv.port,
                target=name_text(srv.target)[:255],
                address=str(address),
                txt=_txt_dict(txt),  # type: ignore[arg-type]
            )
        )
    return found


# ------------------------------------------------------------------------------------------------ browse


class _Browser(asyncio.DatagramProtocol):
    def __init__(self, service: Name, qid: int, limit: int) -> None:
        self.service = service
        self.qid = qid
        self.limit = limit
        self.found: dict[tuple[str, int, str], DnsSdService] = {}
        self.ignored = 0

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        try:
            message = decode(data)
        except ProtocolError:
            self.ignored += 1
            return
        for service in services_in(message, source=str(addr[0]), service=self.service):
            key = (service.host, service.port, service.instance.lower())
            if key in self.found or len(self.found) < self.limit:
                self.found[key] = service

    def error_received(self, exc: Exception) -> None:
        self.ignored += 1


def browse_query(service: Name = SSC_SERVICE, *, qid: int = 0) -> bytes:
    """The question a browse sends: PTR records of ``service``."""
    return encode(DnsMessage(id=qid, questions=(Question(service, TYPE_PTR),)))


async def browse(
    service: Name = SSC_SERVICE,
    *,
    seconds: float,
    interface: str,
    ttl: int = 0,
    port: int = MDNS_PORT,
    group: str = MDNS_GROUP,
    every: float = 1.0,
    limit: int = MAX_SERVICES,
) -> list[DnsSdService]:
    """Ask for ``service`` on ``interface`` (again every ``every`` s) and collect the answers for ``seconds``.

    Raises:
        DriverError: the query socket cannot be opened on that interface.
    """
    interface, ttl = check_interface(interface, ttl)
    sock = open_sender(interface, ttl)
    qid = random.randrange(1, 0x10000)
    loop = asyncio.get_running_loop()
    try:
        transport, browser = await loop.create_datagram_endpoint(lambda: _Browser(service, qid, limit), sock=sock)
    except OSError as exc:
        sock.close()
        raise DriverError(f"cannot browse mDNS on {interface}: {exc.strerror or exc}") from None
    query = browse_query(service, qid=qid)
    deadline = loop.time() + max(0.0, seconds)
    try:
        while True:
            transport.sendto(query, (group, port))
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            await asyncio.sleep(min(every, remaining))
            if loop.time() >= deadline:
                break
    finally:
        transport.close()
    return sorted(browser.found.values(), key=lambda s: (ipaddress.ip_address(s.host), s.port, s.instance))
