"""Simulated devices announce themselves the way real ones do, so discovery finds the demo rig.

* Shure command-string devices multicast an SLPv2 Attribute Reply carrying their model's DCID every
  ``every`` seconds to 239.255.254.253:8427 (protocols.md §3.1), each **from its own address**, since a
  listener takes the source address as the device's.
* Sennheiser SSC devices answer mDNS questions for ``_ssc._udp.local`` (§3.4): a PTR to their instance
  (named as ``/device/name``), with SRV (their port), TXT (``txtvers``, ``version``) and A records, sent
  from their own address. A question from a port other than 5353 (a "legacy unicast" query, RFC 6762
  §6.7, which is what micboard's browse sends) is answered straight back to its sender with the question
  echoed; one from 5353 is answered on the group.

Everything goes out on one interface (127.0.0.1 by default) with multicast TTL 0: nothing leaves the
machine. A device that is powered off (``powered`` False) stays quiet, as real gear does.

No Django imports here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from micboard.drivers.dcid import model_dcid
from micboard.drivers.mdns import (
    FLAG_RESPONSE,
    MDNS_GROUP,
    MDNS_PORT,
    SSC_SERVICE,
    TYPE_A,
    TYPE_ANY,
    TYPE_PTR,
    TYPE_SRV,
    TYPE_TXT,
    DnsMessage,
    Record,
    Srv,
    decode,
    encode,
    same_name,
    txt_strings,
)
from micboard.drivers.multicast import MAX_DATAGRAM, open_listener, open_sender
from micboard.drivers.slp import SLP_GROUP, SLP_PORT, device_attributes, encode_attribute_reply
from micboard.exceptions import DriverError, ProtocolError

logger = logging.getLogger("micboard.simulators.announce")

__all__ = ["Announcer", "AnnouncerThread", "ShureAnnouncement", "SscAnnouncement", "announcements_for"]

LEGACY_TTL = 10  # RFC 6762 §6.7: records in a legacy unicast answer carry TTL <= 10 s


def _always() -> bool:
    return True


@dataclass(frozen=True, slots=True)
class ShureAnnouncement:
    """A Shure device that multicasts SLP Attribute Replies."""

    host: str
    dcid: str
    name: str = ""  # its user-assigned name (acn-uacn)
    alive: Callable[[], bool] = field(default=_always, compare=False)


@dataclass(frozen=True, slots=True)
class SscAnnouncement:
    """A Sennheiser SSC device that answers mDNS questions for ``_ssc._udp.local``."""

    host: str
    port: int
    instance: str  # /device/name
    version: str = ""  # firmware, for the TXT record
    alive: Callable[[], bool] = field(default=_always, compare=False)

    @property
    def instance_name(self) -> tuple[str, ...]:
        return (self.instance, *SSC_SERVICE)

    @property
    def target(self) -> tuple[str, str]:
        label = re.sub(r"[^A-Za-z0-9-]+", "-", self.instance).strip("-")[:40] or "ssc"
        return (f"{label}-{self.host.replace('.', '-')}", "local")

    def records(self, ttl: int) -> tuple[Record, tuple[Record, ...]]:
        """The PTR answer and its SRV / TXT / A companions."""
        txt = {"txtvers": "1"}
        if self.version:
            txt["version"] = self.version
        ptr = Record(SSC_SERVICE, TYPE_PTR, self.instance_name, ttl=ttl)
        extra = (
            Record(self.instance_name, TYPE_SRV, Srv(0, 0, self.port, self.target), ttl=ttl, cache_flush=True),
            Record(self.instance_name, TYPE_TXT, txt_strings(txt), ttl=ttl, cache_flush=True),
            Record(self.target, TYPE_A, self.host, ttl=ttl, cache_flush=True),
        )
        return ptr, extra


def announcements_for(devices: Iterable[Any]) -> tuple[list[ShureAnnouncement], list[SscAnnouncement]]:
    """What each simulated device announces, by its rig entry's driver (``rig.driver``).

    Shure command-string devices announce the DCID of their model; SSC devices their ``/device/name``
    (``device_name``, else the rig's device id; firmware from ``firmware`` when the device has one) on their own
    port. Other families announce nothing
    (UHF-R's sNet and the System API keep their own lists, §3.3 and §4).
    """
    shure: list[ShureAnnouncement] = []
    ssc: list[SscAnnouncement] = []
    for device in devices:
        rig = device.rig
        driver = rig.driver
        host, port = device.address
        alive = _powered(device)
        if driver == "shure_tcp":
            dcid = model_dcid(rig.model)
            if dcid:
                shure.append(ShureAnnouncement(host=host, dcid=dcid, name=rig.device_id, alive=alive))
        elif driver == "sennheiser_ssc":
            name = getattr(device, "device_name", None) or rig.device_id
            version = str(getattr(device, "firmware", "") or "")
            ssc.append(SscAnnouncement(host=host, port=port, instance=name, version=version, alive=alive))
    return shure, ssc


def _powered(device: Any) -> Callable[[], bool]:
    return lambda: bool(getattr(device, "powered", True))


class _Responder(asyncio.DatagramProtocol):
    def __init__(self, announcer: Announcer) -> None:
        self.announcer = announcer

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.announcer._on_query(data[:MAX_DATAGRAM], (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        self.announcer.stats["errors"] += 1


class Announcer:
    """Sends the SLP announcements and answers the mDNS questions of a set of simulated devices.

    Args:
        shure / ssc: the devices (see :func:`announcements_for`).
        interface: the address of the interface every datagram uses (default the loopback).
        ttl: multicast TTL (0: never leaves this machine).
        slp_port / mdns_port: the ports of the two groups (tests pick free ones so runs never hear each other).
        every: seconds between two SLP announcements of a device.
    """

    def __init__(
        self,
        *,
        shure: Iterable[ShureAnnouncement] = (),
        ssc: Iterable[SscAnnouncement] = (),
        interface: str = "127.0.0.1",
        ttl: int = 0,
        slp_port: int = SLP_PORT,
        slp_group: str = SLP_GROUP,
        mdns_port: int = MDNS_PORT,
        mdns_group: str = MDNS_GROUP,
        every: float = 2.0,
    ) -> None:
        self.shure = list(shure)
        self.ssc = list(ssc)
        self.interface = interface
        self.ttl = ttl
        self.slp_port = slp_port
        self.slp_group = slp_group
        self.mdns_port = mdns_port
        self.mdns_group = mdns_group
        self.every = every
        self.stats = {"slp_sent": 0, "mdns_questions": 0, "mdns_answers": 0, "errors": 0}
        self._senders: dict[tuple[str, int], socket.socket] = {}
        self._listener: asyncio.DatagramTransport | None = None
        self._task: asyncio.Task | None = None

    def _sender(self, host: str, port: int = 0) -> socket.socket:
        """A socket sending from ``host`` (from ``port`` when it can be bound, else any port)."""
        key = (host, port)
        sock = self._senders.get(key)
        if sock is None:
            try:
                sock = open_sender(self.interface, self.ttl, bind=(host, port))
            except DriverError:
                if not port:
                    raise
                sock = open_sender(self.interface, self.ttl, bind=(host, 0))
            self._senders[key] = sock
        return sock

    async def start(self) -> None:
        """Open every socket, start announcing and answering.

        Raises:
            DriverError: a socket could not be opened (an address that is not on this machine, say).
        """
        try:
            for device in self.shure:
                self._sender(device.host)
            if self.ssc:
                for device in self.ssc:
                    self._sender(device.host, self.mdns_port)
                sock = open_listener(self.mdns_group, self.mdns_port, self.interface, self.ttl)
                loop = asyncio.get_running_loop()
                self._listener, _ = await loop.create_datagram_endpoint(lambda: _Responder(self), sock=sock)
        except BaseException:
            await self.stop()
            raise
        if self.shure:
            self._task = asyncio.create_task(self._announce_loop(), name="micboard-slp-announcer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for sock in self._senders.values():
            sock.close()
        self._senders.clear()

    def _send(self, sock: socket.socket, data: bytes, to: tuple[str, int]) -> bool:
        try:
            sock.sendto(data, to)
        except OSError:
            self.stats["errors"] += 1
            return False
        return True

    def announce_once(self) -> int:
        """One SLP announcement from every powered Shure device; returns how many went out."""
        sent = 0
        for device in self.shure:
            if not device.alive():
                continue
            data = encode_attribute_reply(device_attributes(dcid=device.dcid, name=device.name))
            if self._send(self._sender(device.host), data, (self.slp_group, self.slp_port)):
                sent += 1
        self.stats["slp_sent"] += sent
        return sent

    async def _announce_loop(self) -> None:
        while True:
            self.announce_once()
            await asyncio.sleep(self.every)

    def _wanted(self, message: DnsMessage, device: SscAnnouncement) -> bool:
        for question in message.questions:
            if question.qtype in (TYPE_PTR, TYPE_ANY) and same_name(question.name, SSC_SERVICE):
                return True
            if question.qtype in (TYPE_SRV, TYPE_TXT, TYPE_ANY) and same_name(question.name, device.instance_name):
                return True
        return False

    def _on_query(self, data: bytes, source: tuple[str, int]) -> None:
        try:
            message = decode(data)
        except ProtocolError:
            return
        if message.is_response or not message.questions:
            return
        self.stats["mdns_questions"] += 1
        legacy = source[1] != self.mdns_port
        for device in self.ssc:
            if not device.alive() or not self._wanted(message, device):
                continue
            ptr, extra = device.records(LEGACY_TTL if legacy else 120)
            if legacy:  # straight back to the asker, its id and question echoed (RFC 6762 §6.7)
                answer = DnsMessage(message.id, FLAG_RESPONSE, message.questions, (ptr,), (), extra)
                to = source
            else:
                answer = DnsMessage(0, FLAG_RESPONSE, (), (ptr,), (), extra)
                unicast = any(q.unicast for q in message.questions)
                to = source if unicast else (self.mdns_group, self.mdns_port)
            if self._send(self._sender(device.host, self.mdns_port), encode(answer), to):
                self.stats["mdns_answers"] += 1


class AnnouncerThread:
    """An :class:`Announcer` on an event loop of its own thread, for synchronous code (tests, e2e)."""

    def __init__(self, announcer: Announcer) -> None:
        self.announcer = announcer
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 5.0) -> AnnouncerThread:
        """Returns once every socket is open (re-raises the DriverError of one that could not be)."""
        loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name="micboard-announcer", daemon=True)
        self._thread.start()
        self._loop = loop
        try:
            asyncio.run_coroutine_threadsafe(self.announcer.start(), loop).result(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 5.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.announcer.stop(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        with contextlib.suppress(RuntimeError):  # still running: the daemon thread ends with the process
            loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> AnnouncerThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
