"""Sennheiser SSC v1 driver (JSON over UDP, port 45): EW-DX EM 2 / EM 2 Dante / EM 4 Dante, SpeechLine DW.

Messages, error objects and normalisation live in :mod:`micboard.drivers.ssc_wire`, the models and the leaves
read in :mod:`micboard.drivers.ssc_spec`; this module is the network side (protocols.md §5.1-§5.4).

Transport: one UDP/IPv4 socket per device, **connected** to ``host:port``, so the kernel passes on only
datagrams sent from the device's port 45 (§5.1: ignore anything else) and reports an ICMP "port unreachable"
as a refused connection. Datagrams are read whole (asyncio reads up to 256 KiB, §5.1 asks for >= 64 KiB).
Every request is small (a few leaves, §5.1) and carries ``/osc/xid``; a request is answered when its xid
comes back or every leaf it asked for got a value or an error code. UDP may lose datagrams, so a request
still unanswered after ``RESEND_SECONDS`` is sent again (at most ``MAX_TRIES`` times).

:func:`poll` reads everything once: the GETs of :func:`~micboard.drivers.ssc_spec.read_groups` and, for the
meters (best subscribed to, §5.5), a short subscription per channel whose initial notification carries them;
the subscriptions are cancelled before the socket closes. :class:`SscLink` subscribes to everything with
``lifetime`` 10 s and renews every ``lifetime / 2`` (meters throttled by ``max`` = the meter rate, refreshed
by ``min`` at least every half second, so a living device is never quiet for long); a 310 (subscription
terminated) is renewed at once. A link that hears nothing for ``PROBE_AFTER_SECONDS`` sends ``/osc/ping``, so a
device that closed its port is noticed by its ICMP answer, not only by the silence that follows.

Outcomes: host name not resolved -> :class:`AddressResolutionError`; ICMP port unreachable ->
:class:`ConnectionTimeoutError` (a link that worked: :class:`LinkDroppedError`); not one datagram ->
:class:`DeviceSilentError` (EW-DX firmware 4+ ships with third-party access off, and a disabled unit is
silent [U]); datagrams but no valid JSON -> :class:`ProtocolError`; 401/403 -> :class:`ProtocolError`
naming the access setting; a channel the device does not have (404 on its name) -> :class:`ProtocolError`
naming the model it reports. No Django imports here.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from micboard.drivers.base import ReceiverReading
from micboard.drivers.probes import Found
from micboard.drivers.resolver import resolve_host
from micboard.drivers.ssc_spec import (
    CODE_NOT_FOUND,
    CODE_NOT_FOUND_ALT,
    DEFAULT_PORT,
    DRIVER,
    IDENTITY,
    METER_REFRESH_MS,
    MIN_METER_RATE_MS,
    SSC_MODELS,
    SUBSCRIPTION_LIFETIME,
    Path,
    SscModel,
    meter_paths,
    model_from_product,
    read_groups,
    ssc_model,
    subscription_groups,
)
from micboard.drivers.ssc_wire import (
    SscState,
    clean_text,
    decode,
    encode,
    get_request,
    peak_level,
    subscribe_request,
    xid_of,
)
from micboard.exceptions import (
    AddressResolutionError,
    ConnectionTimeoutError,
    DeviceSilentError,
    LinkDroppedError,
    ProtocolError,
)

__all__ = ["DEFAULT_PORT", "SscLink", "poll", "probe"]

RESEND_SECONDS = 0.5  # a request unanswered this long is sent again (UDP loses datagrams)
MAX_TRIES = 3
RECEIVE_BUFFER = 256 * 1024  # socket buffer: a burst of notifications from an EM 4 fits
PROBE_AFTER_SECONDS = 1.0  # a link quiet this long sends /osc/ping (a closed port then shows as ICMP unreachable)
SILENCE_SECONDS = 2.5  # a link that hears nothing valid this long is dead (the crew sees RX_COM_ERROR within 3 s)
_SILENT_HINT = (
    "check the address, and that third-party access is enabled in SSC v1 ('Legacy') mode in Control Cockpit "
    "or WSM (EW-DX firmware 4 and later ship with it switched off)"
)


def _spec(model: str) -> SscModel:
    try:
        return ssc_model(model)
    except KeyError:
        raise ProtocolError(f"{model!r} is not a Sennheiser SSC model; known: {', '.join(SSC_MODELS)}") from None


def clamp_meter_rate(rate_ms: int) -> int:
    """The ``max`` throttle of meter subscriptions: never below 100 ms (0 asks for the default, 250 ms)."""
    return max(int(rate_ms) if rate_ms > 0 else 250, MIN_METER_RATE_MS)


@dataclass(eq=False)
class _Request:
    xid: int
    message: dict[str, Any]
    paths: frozenset[Path]
    pending: set[Path]
    sent_at: float
    tries: int = 1
    answered: bool = False


@dataclass(eq=False)
class _Subscription:
    paths: tuple[Path, ...]
    min_ms: int = 0
    max_ms: int = 0
    request: _Request | None = None


@dataclass
class _Counters:
    datagrams: int = 0
    valid: int = 0
    invalid: int = 0
    last_invalid: str = ""


class _Session(asyncio.DatagramProtocol):
    """One device's socket: datagrams in, state, requests and their answers."""

    def __init__(self, spec: SscModel, where: str, peak_dbfs: float) -> None:
        self.state = SscState(spec, peak_dbfs=peak_dbfs)
        self.where = where
        self.transport: asyncio.DatagramTransport | None = None
        self.peer: tuple[str, int] | None = None
        self.counts = _Counters()
        self.first_at: float | None = None
        self.last_valid_at = 0.0
        self.invalid_since_valid = 0
        self.refused = False
        self.requests: dict[int, _Request] = {}
        self.subscriptions: list[_Subscription] = []
        self._xids = itertools.count(1)
        self._changed = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    # asyncio.DatagramProtocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  (a datagram transport, whatever its class)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.peer is not None and tuple(addr[:2]) != self.peer:
            return  # not from the device's port 45 (§5.1); a connected socket filters these anyway
        now = self._loop.time()
        self.counts.datagrams += 1
        if self.first_at is None:
            self.first_at = now
        try:
            message = decode(data)
        except ProtocolError as exc:
            self.counts.invalid += 1
            self.invalid_since_valid += 1
            self.counts.last_invalid = str(exc)
            self._changed.set()
            return
        self.counts.valid += 1
        self.invalid_since_valid = 0
        self.last_valid_at = now
        answered = self.state.apply(message)
        xid = xid_of(message)
        for request in list(self.requests.values()):
            request.pending -= answered
            if request.xid == xid or not request.pending:
                request.answered = True
                del self.requests[request.xid]
        self._changed.set()

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, ConnectionRefusedError):
            self.refused = True
        self._changed.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self._changed.set()

    # Requests ---------------------------------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(encode(message))

    def _track(self, message: dict[str, Any], xid: int, paths: tuple[Path, ...]) -> _Request:
        request = _Request(xid, message, frozenset(paths), set(paths), self._loop.time())
        self.requests[xid] = request
        self._send(message)
        return request

    def get(self, paths: tuple[Path, ...]) -> _Request:
        xid = next(self._xids)
        return self._track(get_request(paths, xid=xid), xid, paths)

    def subscribe(self, sub: _Subscription, lifetime: int) -> None:
        """Make (or renew: the same request again, §5.3) a subscription."""
        if sub.request is not None:
            self.requests.pop(sub.request.xid, None)
        xid = next(self._xids)
        message = subscribe_request(sub.paths, xid=xid, lifetime=lifetime, min_ms=sub.min_ms, max_ms=sub.max_ms)
        sub.request = self._track(message, xid, sub.paths)
        if sub not in self.subscriptions:
            self.subscriptions.append(sub)

    def ping(self) -> None:
        """``/osc/ping``: a living device answers it; a closed port answers with ICMP unreachable."""
        self._send({"osc": {"ping": None}})

    def cancel_subscriptions(self) -> None:
        """Tell the device to stop notifying us (shape [U], see :func:`subscribe_request`); never raises."""
        for sub in self.subscriptions:
            with contextlib.suppress(OSError, RuntimeError):
                self._send(subscribe_request(sub.paths, xid=next(self._xids), lifetime=0, cancel=True))
        self.subscriptions.clear()

    def resend_overdue(self) -> None:
        now = self._loop.time()
        for request in self.requests.values():
            if request.tries < MAX_TRIES and now - request.sent_at >= RESEND_SECONDS:
                request.tries += 1
                request.sent_at = now
                self._send(request.message)

    async def wait(self, deadline: float, stop: Callable[[], bool]) -> None:
        """Return when ``stop()`` holds, the device refused or said no, or the deadline passed; resends meanwhile."""
        state = self.state
        while not stop() and not self.refused and state.denied is None and state.subscribe_refused is None:
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                return
            self._changed.clear()
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that arrives as
            # the event is set (gh-86296), and a link cancelled then would follow the device forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, RESEND_SECONDS / 2)):
                    await self._changed.wait()
            self.resend_overdue()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # Outcome ----------------------------------------------------------------------------------------

    @staticmethod
    def reads_done(reads: list[_Request]) -> bool:
        return all(r.answered for r in reads)

    def meters_done(self) -> bool:
        spec, state = self.state.spec, self.state
        return all(
            p in state.values or p in state.failed for n in range(1, spec.channels + 1) for p in meter_paths(spec, n)
        )

    def check(self, timeout: float, reads: list[_Request]) -> None:
        """Raise the DriverError the exchange so far (``reads``: the GETs that make a reading) amounts to."""
        where, counts, state = self.where, self.counts, self.state
        reads_done = self.reads_done(reads)
        if self.refused and (counts.valid == 0 or not reads_done):
            raise ConnectionTimeoutError(
                f"{where}: refused (ICMP port unreachable): nothing listens on that UDP port; "
                "is it a Sennheiser SSC receiver, switched on?"
            )
        if state.denied is not None:
            raise ProtocolError(f"{where}: refused access ({state.denied}); {_SILENT_HINT}")
        if state.subscribe_refused is not None:
            raise ProtocolError(
                f"{where}: refused a subscription ({state.subscribe_refused}); too many clients may follow "
                "this receiver (SSC allows 8): close the other control software"
            )
        if counts.datagrams == 0:
            raise DeviceSilentError(f"{where}: no reply within {timeout:g} s; {_SILENT_HINT}")
        if counts.valid == 0:
            raise ProtocolError(
                f"{where}: sent {counts.datagrams} datagrams but none was a valid SSC message "
                f"({counts.last_invalid}); is this port really a Sennheiser SSC receiver?"
            )
        spec = state.spec
        product = clean_text(state.value(("device", "identity", "product")))
        found = model_from_product(product or "")
        if found is not None and (found.dialect, found.channels) != (spec.dialect, spec.channels):
            raise ProtocolError(
                f"{where}: says it is {product} ({found.model}) but the receiver is set to {spec.model}; "
                "change its model"
            )
        for n in range(1, spec.channels + 1):
            if state.failed.get((f"rx{n}", "name")) in (CODE_NOT_FOUND, CODE_NOT_FOUND_ALT):
                says = clean_text(state.value(("device", "identity", "product"))) or "another model"
                raise ProtocolError(
                    f"{where}: has no channel {n} (it says it is {says}); check the receiver's model "
                    f"(set to {spec.model})"
                )
        if not reads_done:
            missing = sum(1 for r in reads if not r.answered)
            raise ConnectionTimeoutError(
                f"{where}: {missing} of {len(reads)} requests still unanswered after {timeout:g} s "
                "(datagrams lost on the network, or the device overloaded)"
            )


async def _open(host: str, port: int, spec: SscModel, timeout: float, peak_dbfs: float = -2.0) -> _Session:
    """Resolve ``host`` (IPv4, §5.1) and open a UDP socket connected to it.

    Raises:
        AddressResolutionError: the name did not resolve within ``timeout``.
        ConnectionTimeoutError: no IPv4 address, or no socket could be opened.
    """
    where = f"{host}:{port}"
    try:
        addresses = await resolve_host(host, timeout=timeout)
    except AddressResolutionError as exc:
        raise AddressResolutionError(f"{where}: {exc}") from None
    ipv4 = [a for a in addresses if _is_ipv4(a)]
    if not ipv4:
        raise ConnectionTimeoutError(f"{where}: has no IPv4 address (SSC v1 is read over UDP/IPv4)")
    loop = asyncio.get_running_loop()
    session = _Session(spec, where, peak_dbfs)
    try:
        await loop.create_datagram_endpoint(lambda: session, remote_addr=(ipv4[0], port), family=socket.AF_INET)
    except (OSError, ValueError, OverflowError) as exc:
        raise ConnectionTimeoutError(f"{where}: cannot open a UDP socket to it: {exc}") from None
    session.peer = (ipv4[0], port)
    return session


def _is_ipv4(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).version == 4
    except ValueError:
        return False


async def poll(
    host: str,
    port: int,
    *,
    model: str,
    timeout: float = 3.0,
    meter_rate_ms: int = 1000,
    options: Mapping[str, str] | None = None,
) -> ReceiverReading:
    """Read one SSC receiver once (see the module docstring).

    ``options``: only ``peak_dbfs`` is read (the AF level from which a channel shows a peak; default -2 dBFS);
    SSC v1 has no login.

    Returns a partial reading (channels without meters have ``metered=False``) when every GET was answered
    but some meters had not arrived by the deadline. ``latency_ms`` is the time to the first datagram.

    Raises:
        AddressResolutionError, ConnectionTimeoutError, DeviceSilentError, ProtocolError: see the module.
        DriverError: ``options["peak_dbfs"]`` is not a level in dBFS.
    """
    spec = _spec(model)
    peak_dbfs = peak_level(options)
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + timeout
    session = await _open(host, port, spec, timeout, peak_dbfs)
    try:
        reads = [session.get(group) for group in read_groups(spec)]
        lifetime = max(2, int(timeout) + 2)  # outlives the poll even if the cancel is ignored, not much more
        for n in range(1, spec.channels + 1):
            session.subscribe(_Subscription(meter_paths(spec, n), max_ms=clamp_meter_rate(meter_rate_ms)), lifetime)
        await session.wait(deadline, lambda: session.reads_done(reads) and session.meters_done())
    finally:
        session.cancel_subscriptions()
        session.close()
    session.check(timeout, reads)
    reading = session.state.reading()
    if session.first_at is not None:
        reading.latency_ms = round((session.first_at - started) * 1000, 1)
    return reading


class SscLink:
    """A live link: subscriptions to every leaf read, renewed before they lapse (protocols.md §5.3).

    :meth:`run` reads everything once (as :func:`poll` does), then follows the notifications until the
    device goes quiet for ``silence_seconds``, refuses, or the task is cancelled; however it ends, the
    subscriptions are cancelled before the socket closes. :meth:`take` gives the reading of everything
    heard so far, or None when nothing arrived since the previous call (or before the first reading).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        model: str,
        meter_rate_ms: int = 1000,
        timeout: float = 3.0,
        silence_seconds: float = SILENCE_SECONDS,
        lifetime: int = SUBSCRIPTION_LIFETIME,
        options: Mapping[str, str] | None = None,
    ) -> None:
        self.spec = _spec(model)
        self.peak_dbfs = peak_level(options)
        self.host, self.port, self.timeout = host, port, timeout
        self.where = f"{host}:{port}"
        self.rate = clamp_meter_rate(meter_rate_ms)
        self.silence_seconds = silence_seconds
        self.lifetime = max(2, lifetime)
        self.session: _Session | None = None
        self.latency_ms: float | None = None
        self.ready = False
        self.renewals = 0

    def take(self) -> ReceiverReading | None:
        session = self.session
        if session is None or not self.ready or not session.state.dirty:
            return None
        session.state.dirty = False
        reading = session.state.reading()
        reading.latency_ms = self.latency_ms
        return reading

    async def run(self) -> None:
        """Read, subscribe, follow until the link fails; returns only when cancelled.

        Raises:
            AddressResolutionError, ConnectionTimeoutError, DeviceSilentError, ProtocolError: as :func:`poll`,
                while the first reading is made.
            LinkDroppedError: the device refused (ICMP port unreachable) after the link worked.
            DeviceSilentError: nothing for ``silence_seconds`` on a working link.
            ProtocolError: only invalid datagrams for ``silence_seconds``, or access refused.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.ready = False
        session = self.session = await _open(self.host, self.port, self.spec, self.timeout, self.peak_dbfs)
        try:
            reads = [session.get(group) for group in read_groups(self.spec)]
            subs = [_Subscription(group) for group in subscription_groups(self.spec)]
            subs += [
                _Subscription(meter_paths(self.spec, n), min_ms=METER_REFRESH_MS, max_ms=self.rate)
                for n in range(1, self.spec.channels + 1)
            ]
            for sub in subs:
                session.subscribe(sub, self.lifetime)
            await session.wait(started + self.timeout, lambda: session.reads_done(reads) and session.meters_done())
            session.check(self.timeout, reads)
            if session.first_at is not None:
                self.latency_ms = round((session.first_at - started) * 1000, 1)
            self.ready = True
            await self._follow(session, subs)
        finally:
            session.cancel_subscriptions()
            session.close()

    async def _follow(self, session: _Session, subs: list[_Subscription]) -> None:
        loop = asyncio.get_running_loop()
        renew_every = self.lifetime / 2
        next_renewal = loop.time() + renew_every
        probed_at = 0.0
        while True:
            heard = session.last_valid_at

            def news(since: float = heard) -> bool:
                return session.last_valid_at != since or bool(session.state.terminated)

            wake = min(next_renewal, heard + self.silence_seconds)
            if probed_at <= heard:
                wake = min(wake, heard + PROBE_AFTER_SECONDS)
            await session.wait(wake, news)
            now = loop.time()
            if session.refused:
                raise LinkDroppedError(f"{self.where}: stopped listening (ICMP port unreachable; device restarting?)")
            if session.state.denied is not None or session.state.subscribe_refused is not None:
                session.check(self.timeout, [])
            quiet = now - session.last_valid_at
            if quiet >= self.silence_seconds:
                if session.invalid_since_valid:
                    raise ProtocolError(
                        f"{self.where}: sent {session.invalid_since_valid} invalid datagrams and nothing valid for "
                        f"{quiet:.1f} s ({session.counts.last_invalid})"
                    )
                raise DeviceSilentError(
                    f"{self.where}: sent nothing for {quiet:.1f} s on a live link (device off, hung, or "
                    "third-party access switched off)"
                )
            if quiet >= PROBE_AFTER_SECONDS and probed_at <= session.last_valid_at:
                session.ping()
                probed_at = now
            if session.state.terminated:  # 310: a subscription ended; make it again at once
                ended = session.state.terminated
                session.state.terminated = set()
                for sub in subs:
                    if ended & set(sub.paths):
                        session.subscribe(sub, self.lifetime)
            if now >= next_renewal:
                for sub in subs:
                    session.subscribe(sub, self.lifetime)
                self.renewals += 1
                next_renewal = now + renew_every


async def probe(
    host: str, port: int = DEFAULT_PORT, *, timeout: float = 1.5, options: Mapping[str, str] | None = None
) -> list[Found]:
    """Discovery (:mod:`micboard.drivers.probes`): who the device is (``/device/identity/*``, ``/device/name``),
    then its channels' names, as one find. ``options`` are not needed (SSC v1 has no login).

    Raises:
        ConnectionTimeoutError: nothing answered (over UDP, silence is all an empty address ever says; the
            message names the access setting for an announced unit), or the port is closed (ICMP unreachable).
        AddressResolutionError, ProtocolError: as :func:`poll` (something answered, but not as SSC).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    session = await _open(host, port, SSC_MODELS["EM4-DANTE"], timeout)  # any model: identity is common
    try:
        first = [session.get(IDENTITY)]
        await session.wait(deadline, lambda: session.reads_done(first))
        try:
            session.check(timeout, first)
        except DeviceSilentError:
            raise ConnectionTimeoutError(
                f"{session.where}: no SSC answer within {timeout:g} s; {_SILENT_HINT}"
            ) from None
        said = session.state
        product = clean_text(said.value(("device", "identity", "product"))) or ""
        spec = model_from_product(product)
        channels: tuple[tuple[int, str], ...] = ()
        if spec is not None:
            session.state = SscState(spec)
            paths = tuple((f"rx{n}", "name") for n in range(1, spec.channels + 1))
            second = [session.get(paths)]
            await session.wait(deadline, lambda: session.reads_done(second))
            channels = tuple((n, clean_text(session.state.value(p), 32) or "") for n, p in enumerate(paths, start=1))
        serial = clean_text(said.value(("device", "identity", "serial"))) or ""
        return [
            Found(
                driver=DRIVER,
                model=spec.model if spec else product,
                host=host,
                port=port,
                device_id=serial,
                serial=serial,
                name=clean_text(said.value(("device", "name"))) or "",
                channels=channels,
                firmware=clean_text(said.value(("device", "identity", "version")), 32) or "",
                note=""
                if spec
                else f"{product or 'a device that names no product'} is not a model micboard reads over SSC",
            )
        ]
    finally:
        session.close()
