"""Shure SLP discovery (protocols.md §3.1): SLPv2 Attribute Replies multicast to 239.255.254.253:8427.

ACN-era Shure devices (ULX-D, QLX-D, Axient Digital, PSM1000 ...) announce themselves every few seconds
with an SLPv2 (RFC 2608) Attribute Reply (function-id 7) whose attribute list holds
``(csl-esta.dmp=...cd:<DCID>...)``; the DCID names the model (:mod:`micboard.drivers.dcid`) and the
datagram's **source address** is the device's address. Nothing else in the reply is relied on: an
``acn-uacn`` attribute (the user-assigned name of ACN EPI 19) is read when present [U: not confirmed on
Shure hardware].

:func:`encode_attribute_reply` / :func:`decode_attribute_reply` are the wire codec (bounded: the lengths in
the header must agree with the datagram), :func:`listen` collects announcements for a few seconds on one
interface. No Django imports here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import struct
from dataclasses import dataclass

from micboard.drivers.dcid import dcid_model
from micboard.drivers.multicast import MAX_DATAGRAM, open_listener
from micboard.exceptions import DriverError, ProtocolError

__all__ = [
    "SLP_GROUP",
    "SLP_PORT",
    "AttributeReply",
    "SlpAnnouncement",
    "announcement_from",
    "decode_attribute_reply",
    "encode_attribute_reply",
    "listen",
]

SLP_GROUP = "239.255.254.253"
SLP_PORT = 8427
SLP_VERSION = 2
FUNCTION_ATTR_REPLY = 7
MAX_ANNOUNCERS = 4096  # distinct source addresses kept by one listen (a /20 holds 4096)

_HEADER = struct.Struct("!BB3sH3sHH")  # version, function, length(24), flags, next-ext(24), xid, lang-tag length
_DCID_RE = re.compile(r"cd:([0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})")
_ATTR_RE = re.compile(r"\(([^()=]{1,64})=([^()]{0,512})\)")
_CONTROL = dict.fromkeys([*range(0x20), 0x7F])


@dataclass(frozen=True, slots=True)
class AttributeReply:
    """One decoded SLPv2 Attribute Reply."""

    xid: int
    language: str
    error: int
    attributes: str  # the attr-list as sent, e.g. "(csl-esta.dmp=...),(acn-uacn=Rack1)"

    def attribute(self, tag: str) -> str | None:
        """The value of ``(tag=value)`` in the list (first occurrence, SLP escapes undone), or None."""
        for name, value in _ATTR_RE.findall(self.attributes):
            if name.strip().lower() == tag.lower():
                return _unescape(value)
        return None

    @property
    def dcid(self) -> str | None:
        match = _DCID_RE.search(self.attributes)
        return match.group(1).upper() if match else None


@dataclass(frozen=True, slots=True)
class SlpAnnouncement:
    """What one device's announcement tells: where it is and, through its DCID, what it is."""

    host: str  # the datagram's source address
    dcid: str
    model: str | None  # None: a DCID micboard does not know (another Shure product, or a map not loaded)
    name: str  # acn-uacn when present, else ""


def _unescape(value: str) -> str:
    """RFC 2608 §5: ``\\HH`` escapes in attribute values; control characters dropped."""
    text = re.sub(r"\\([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), value)
    return text.translate(_CONTROL).strip()


def _escape(value: str) -> str:
    return "".join(f"\\{ord(c):02X}" if c in "(),\\!<=>~;*+" or ord(c) < 0x20 else c for c in value)


def encode_attribute_reply(attributes: str, *, xid: int = 0, language: str = "en", error: int = 0) -> bytes:
    """An SLPv2 Attribute Reply datagram carrying ``attributes`` (an attr-list, already formatted)."""
    lang = language.encode("ascii")
    attrs = attributes.encode("utf-8")
    body = struct.pack("!HH", error, len(attrs)) + attrs + b"\x00"  # no attribute authentication blocks
    length = _HEADER.size + len(lang) + len(body)
    header = _HEADER.pack(
        SLP_VERSION, FUNCTION_ATTR_REPLY, length.to_bytes(3, "big"), 0, b"\x00\x00\x00", xid & 0xFFFF, len(lang)
    )
    return header + lang + body


def device_attributes(*, dcid: str, name: str = "") -> str:
    """The attr-list a Shure device announces: its DCID (and its user-assigned name, when it has one)."""
    parts = [f"(csl-esta.dmp=t:ESTA.DMP/1.0;cd:{dcid})"]
    if name:
        parts.append(f"(acn-uacn={_escape(name)})")
    return ",".join(parts)


def decode_attribute_reply(data: bytes) -> AttributeReply | None:
    """Decode one datagram; None when it is valid SLPv2 but not an Attribute Reply (a request, say).

    Raises:
        ProtocolError: not SLPv2, or lengths that disagree with the datagram.
    """
    if len(data) < _HEADER.size:
        raise ProtocolError(f"an SLP header needs {_HEADER.size} bytes, got {len(data)}")
    version, function, raw_length, _flags, _next, xid, lang_len = _HEADER.unpack_from(data)
    if version != SLP_VERSION:
        raise ProtocolError(f"SLP version {version}, expected 2")
    length = int.from_bytes(raw_length, "big")
    if length != len(data):
        raise ProtocolError(f"SLP length field says {length} bytes, the datagram has {len(data)}")
    if function != FUNCTION_ATTR_REPLY:
        return None
    offset = _HEADER.size
    if offset + lang_len + 4 > length:
        raise ProtocolError("SLP language tag runs past the end of the datagram")
    language = data[offset : offset + lang_len].decode("ascii", errors="replace")
    offset += lang_len
    error, attr_len = struct.unpack_from("!HH", data, offset)
    offset += 4
    if offset + attr_len > length:
        raise ProtocolError("SLP attribute list runs past the end of the datagram")
    attributes = data[offset : offset + attr_len].decode("utf-8", errors="replace")
    return AttributeReply(xid=xid, language=language, error=error, attributes=attributes)


def announcement_from(data: bytes, source: str) -> SlpAnnouncement | None:
    """The announcement in a datagram from ``source``, or None (not an Attribute Reply, no DCID, an error)."""
    try:
        reply = decode_attribute_reply(data)
    except ProtocolError:
        return None
    if reply is None or reply.error or reply.dcid is None:
        return None
    name = reply.attribute("acn-uacn") or ""
    return SlpAnnouncement(host=source, dcid=reply.dcid, model=dcid_model(reply.dcid), name=name[:64])


class _Collector(asyncio.DatagramProtocol):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.found: dict[str, SlpAnnouncement] = {}
        self.ignored = 0

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        found = announcement_from(data[:MAX_DATAGRAM], str(addr[0]))
        if found is None or (found.host not in self.found and len(self.found) >= self.limit):
            self.ignored += 1
            return
        self.found[found.host] = found  # the latest announcement of each address

    def error_received(self, exc: Exception) -> None:
        self.ignored += 1


async def listen(
    *, seconds: float, interface: str, port: int = SLP_PORT, group: str = SLP_GROUP, limit: int = MAX_ANNOUNCERS
) -> list[SlpAnnouncement]:
    """Every Shure device heard announcing on ``interface`` within ``seconds``, one per source address.

    Raises:
        DriverError: the group cannot be joined on that interface (the message says what to check).
    """
    sock = open_listener(group, port, interface)
    loop = asyncio.get_running_loop()
    try:
        transport, collector = await loop.create_datagram_endpoint(lambda: _Collector(limit), sock=sock)
    except OSError as exc:
        sock.close()
        raise DriverError(f"cannot listen for SLP on {interface}: {exc.strerror or exc}") from None
    try:
        await asyncio.sleep(max(0.0, seconds))
    finally:
        transport.close()
    return sorted(collector.found.values(), key=lambda a: ipaddress.ip_address(a.host))
