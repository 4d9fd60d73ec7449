"""Shure command-strings driver (TCP 2202): ULX-D, QLX-D, SLX-D, Axient Digital, PSM1000.

Framing, message parsing and the per-family property tables live in :mod:`micboard.drivers.shure_wire` (no
network); this module is the network side. :func:`poll` uses a **connect-per-poll** design: one short TCP
session per poll (connect, ``< GET 0 ALL >``, ``< SET 0 METER_RATE 0NNNN >``, read until every channel has
metered once or the deadline passes, ``< SET 0 METER_RATE 00000 >``, close). No connection is left open
between polls, so a vanished client can never strand a metering session (the QLX-D lock-up, §1.11), and the
device never holds more than one connection from us because the poll cycle never polls the same receiver twice
at once. TCP keepalive is enabled on the socket anyway, as §1.11 recommends.

End of a poll: the device answers in order, so the ``REP METER_RATE`` carrying the rate we asked for marks
the end of the ``GET 0 ALL`` reply. After it we wait for one SAMPLE per expected channel (PSM1000: one
``AUDIO_IN_LVL_L`` report per channel). Closing, we send ``< SET 0 METER_RATE 00000 >`` and read on until
its echo (at most until the poll deadline, and at least ``DRAIN_SECONDS``); being answered in order, that
echo also proves the whole ALL reply has been read. This matters when ALL itself reports the rate we asked
for (another client meters at the same rate, so its SAMPLEs may arrive mid-ALL): our first "echo" may then
be ALL's, and only the 00000 echo closes the reply. A later matching ``REP METER_RATE`` for a channel also
restarts the wait for that channel's SAMPLE, so normally the SAMPLE we keep follows our own SET.

Connecting: an IP address is used as it is; a host name is resolved by :func:`~micboard.drivers.resolver.resolve_host`
within the poll's timeout (never in the event loop's default executor, which ``asyncio.run`` would wait for),
then the resolved addresses are tried in order with what is left of the timeout.

Outcomes: host name not resolved in time -> :class:`AddressResolutionError`; no TCP connection ->
:class:`ConnectionTimeoutError`; connected but not one byte before the
deadline -> :class:`DeviceSilentError`; bytes but no valid frame -> :class:`ProtocolError`; valid frames
but missing SAMPLEs at the deadline -> the partial reading (those channels have ``metered=False``). If the
device closes the connection (or resets it) after the ALL reply was complete, i.e. after our METER_RATE was
confirmed, the reading so far is returned; if it closes before that, the reply is incomplete and the poll
raises :class:`ProtocolError`. Nothing but :class:`~micboard.exceptions.DriverError` subclasses escapes.

No Django imports here: drivers turn wire bytes into plain dataclasses.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Mapping
from typing import Any

from micboard.drivers.base import (
    ReceiverReading,
)
from micboard.drivers.resolver import resolve_host
from micboard.drivers.shure_spec import (
    clamp_meter_rate,
    shure_model,
)
from micboard.drivers.shure_wire import (
    VERB_REP,
    VERB_SAMPLE,
    FrameBuffer,
    Message,
    ShureState,
    parse_message,
    peak_threshold,
    wire_int,
)
from micboard.exceptions import (
    AddressResolutionError,
    ConnectionTimeoutError,
    DeviceSilentError,
    LinkDroppedError,
    ProtocolError,
)

__all__ = ["DEFAULT_PORT", "ShureLink", "enable_keepalive", "poll"]

DEFAULT_PORT = 2202

# --------------------------------------------------------------------------------------------------------
# Network: one short session per poll
# --------------------------------------------------------------------------------------------------------

DRAIN_SECONDS = 0.25  # after METER_RATE 00000: wait for its echo at least this long, even past the deadline
CLOSE_SECONDS = 0.5  # at most this long for the TCP close handshake
_MAX_METER_RATE = 65535
_SILENT_HINT = (
    "on SLX-D, enable third-party control in the receiver's advanced network settings; "
    "on other models, check that nothing else holds the control port"
)


def _command(text: str) -> bytes:
    return f"< {text} >\r\n".encode("ascii")


def enable_keepalive(sock: Any) -> None:
    """Turn on TCP keepalive (and short probe timers where the OS offers them); never raises."""
    if sock is None:
        return
    with contextlib.suppress(OSError, AttributeError, ValueError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, seconds in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
            option = getattr(socket, name, None)
            if option is not None:
                sock.setsockopt(socket.IPPROTO_TCP, option, seconds)


class _Session(asyncio.Protocol):
    """One poll's connection: frames in, state, end-of-poll detection.

    A plain :class:`asyncio.Protocol` rather than a StreamReader: every byte is parsed the moment it
    arrives, so data the device sent just before resetting the connection is never lost (a StreamReader
    raises the reset and drops what it had buffered).
    """

    def __init__(self, family: str, channels: int, rate: int, peak_dbfs: float) -> None:
        self.rate = rate
        self.expected = frozenset(range(1, channels + 1))
        self.state = ShureState(family, channels, peak_dbfs=peak_dbfs)
        self.frames = FrameBuffer()
        self.bytes_in = 0
        self.valid = 0
        self.invalid = 0
        self.first_byte_at: float | None = None
        self.eof = False  # the device closed or reset the connection
        self.closing = False  # we closed it (connection_lost is then not the device's doing)
        self.rate_confirmed = False  # our METER_RATE echo arrived: the ALL reply is complete
        self.sampled: set[int] = set()
        self.stopped: set[int] = set()  # channels whose METER_RATE 00000 echo arrived
        self.transport: asyncio.Transport | None = None
        self.last_byte_at = 0.0
        self.dirty = False  # a valid frame arrived since the last reading() of a link
        self._changed = asyncio.Event()
        self._lost = asyncio.get_running_loop().create_future()

    # asyncio.Protocol -------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.feed(data, asyncio.get_running_loop().time())
        self._changed.set()

    def eof_received(self) -> bool:
        self.eof = True
        self._changed.set()
        return False  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closing:
            self.eof = True
        self._changed.set()
        if not self._lost.done():
            self._lost.set_result(None)

    # Parsing ----------------------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.rate_confirmed and (self.rate == 0 or self.sampled >= self.expected)

    def feed(self, data: bytes, now: float) -> None:
        if self.first_byte_at is None:
            self.first_byte_at = now
        self.last_byte_at = now
        self.bytes_in += len(data)
        for frame in self.frames.feed(data):
            try:
                msg = parse_message(frame)
                self.state.apply(msg)
            except ProtocolError:
                self.invalid += 1
                continue
            self.valid += 1
            self.dirty = True
            self._track(msg)

    def _track(self, msg: Message) -> None:
        if msg.verb == VERB_REP and msg.prop == "METER_RATE" and msg.channel is not None:
            try:
                rate = wire_int(msg.value)
            except ProtocolError:
                return
            targets = self.expected if msg.channel == 0 else {msg.channel}
            if rate == 0:
                self.stopped |= targets
            if rate == self.rate:
                self.rate_confirmed = True
                self.sampled -= targets  # a SAMPLE counts only after our own SET was answered
            return
        if not self.rate_confirmed or msg.channel is None:
            return
        if msg.verb == VERB_SAMPLE or (msg.verb == VERB_REP and msg.prop == "AUDIO_IN_LVL_L"):
            self.sampled.add(msg.channel)

    # Conversation -----------------------------------------------------------------------------------

    def send(self, text: str) -> None:
        if self.transport is not None and not self.transport.is_closing() and not self.eof:
            self.transport.write(_command(text))

    async def wait(self, deadline: float, stop: Callable[[], bool]) -> None:
        """Return when ``stop()`` holds, the device closed, or the deadline passed."""
        loop = asyncio.get_running_loop()
        while not stop() and not self.eof:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._changed.clear()
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that
                # arrives as the event fires, and a cancelled link would keep running.
                async with asyncio.timeout(remaining):
                    await self._changed.wait()
            except TimeoutError:
                return

    async def stop_and_close(self, deadline: float) -> None:
        """Switch metering off (device state outlives us, §1.11), read on until its echo, close.

        Frames read meanwhile are applied too: the echo comes after the rest of the ALL reply. Waits until
        ``deadline`` or ``DRAIN_SECONDS`` from now, whichever is later. Raises nothing but a cancellation.
        """
        loop = asyncio.get_running_loop()
        if self.transport is None:
            return
        try:
            if not self.eof and not self.transport.is_closing():
                self.stopped.clear()
                self.send("SET 0 METER_RATE 00000")
                drain_until = max(deadline, loop.time() + DRAIN_SECONDS)
                await self.wait(drain_until, lambda: self.stopped >= self.expected)
        finally:  # even when the poll is cancelled meanwhile
            self.closing = True
            self.transport.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_SECONDS):
                await asyncio.shield(self._lost)
        if not self._lost.done():
            self.transport.abort()

    def outcome(self, where: str, timeout: float) -> None:
        """Raise the DriverError the session ended with, if any."""
        if self.bytes_in == 0:
            if self.eof:
                raise ConnectionTimeoutError(
                    f"{where}: accepted the connection, then closed it without sending anything "
                    "(too many control connections?)"
                )
            raise DeviceSilentError(
                f"{where}: accepted the connection but sent nothing within {timeout:g} s; {_SILENT_HINT}"
            )
        if self.valid == 0 and self.eof and self.invalid == 0 and self.frames.pending:
            raise ProtocolError(
                f"{where}: closed the connection in the middle of its first frame "
                f"({len(self.frames.pending)} characters received)"
            )
        if self.valid == 0:
            raise ProtocolError(
                f"{where}: sent {self.bytes_in} bytes but no valid Shure command-string frame "
                "(is this port really a Shure receiver?)"
            )
        if self.eof and not self.rate_confirmed:
            raise ProtocolError(
                f"{where}: closed the connection after {self.valid} frames, before its reply to GET 0 ALL was complete"
            )


async def _connect(host: str, port: int, timeout: float, deadline: float, session: _Session) -> None:
    """Resolve ``host`` (if it is a name) and connect to its addresses in turn, all before ``deadline``.

    Raises:
        AddressResolutionError: the name did not resolve within ``timeout``.
        ConnectionTimeoutError: no address took the connection.
    """
    where = f"{host}:{port}"
    loop = asyncio.get_running_loop()
    try:
        addresses = await resolve_host(host, timeout=timeout)
    except AddressResolutionError as exc:
        raise AddressResolutionError(f"{where}: {exc}") from None
    error: ConnectionTimeoutError | None = None
    for address in addresses:
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        try:
            async with asyncio.timeout(remaining):
                await loop.create_connection(lambda: session, address, port)
        except TimeoutError:
            error = None  # the deadline passed: reported below
            break
        except ConnectionRefusedError:
            error = ConnectionTimeoutError(
                f"{where}: connection refused (nothing listens on that port; is it a Shure receiver?)"
            )
        except OSError as exc:
            error = ConnectionTimeoutError(f"{where}: cannot connect: {exc.strerror or exc}")
        except (ValueError, OverflowError, UnicodeError) as exc:
            error = ConnectionTimeoutError(f"{where}: invalid address: {exc}")
        else:
            assert session.transport is not None
            enable_keepalive(session.transport.get_extra_info("socket"))
            return
    if error is not None:
        raise error
    raise ConnectionTimeoutError(
        f"{where}: no TCP connection within {timeout:g} s (device off, wrong address, or filtered)"
    )


async def poll(
    host: str,
    port: int,
    *,
    model: str,
    timeout: float = 3.0,
    meter_rate_ms: int = 1000,
    options: Mapping[str, str] | None = None,
) -> ReceiverReading:
    """Read one receiver in one short TCP session (see the module docstring).

    ``timeout`` bounds connecting, reading and waiting for the echo of ``METER_RATE 00000``; past it,
    closing takes at most ``DRAIN_SECONDS + CLOSE_SECONDS`` more. ``meter_rate_ms`` is clamped to the
    family's safe minimum (0 switches metering off; the poll then ends at the first ``METER_RATE 00000``
    echo, which may be the one inside the ALL reply, so use 0 only for quick identification).
    ``latency_ms`` of the reading is the time from starting to connect to the first byte received.
    ``options``: only ``peak_dbfs`` is read (the level at which a channel shows a peak; default the family's,
    -2 dBFS); command strings carry no credentials.

    Raises:
        AddressResolutionError: ``host`` is a name that did not resolve within ``timeout``.
        ConnectionTimeoutError: no TCP connection, or the device closed it without a word.
        DeviceSilentError: connected, but the device sent nothing before the deadline.
        ProtocolError: unsupported model, nothing valid received, or the connection dropped before the
            reply to ``GET 0 ALL`` was complete.
        DriverError: ``options["peak_dbfs"]`` is not a level in dBFS.
    """
    try:
        spec = shure_model(model)
    except KeyError:
        raise ProtocolError(f"{model!r} is not a Shure command-string model") from None
    rate = min(clamp_meter_rate(spec.family, meter_rate_ms), _MAX_METER_RATE)
    where = f"{host}:{port}"
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + timeout

    session = _Session(spec.family, spec.channels, rate, peak_threshold(spec.family, options))
    await _connect(host, port, timeout, deadline, session)
    try:
        session.send("GET 0 ALL")
        session.send(f"SET 0 METER_RATE {rate:05d}")
        await session.wait(deadline, lambda: session.done)
    except (OSError, UnicodeError, ValueError) as exc:
        raise ProtocolError(f"{where}: {exc}") from None
    finally:
        await session.stop_and_close(deadline)

    session.outcome(where, timeout)
    reading = session.state.reading()
    if session.first_byte_at is not None:
        reading.latency_ms = round((session.first_byte_at - started) * 1000, 1)
    return reading


# --------------------------------------------------------------------------------------------------------
# Network: a long-lived link that follows the device's reports
# --------------------------------------------------------------------------------------------------------

PROBE_AFTER_SECONDS = 1.0  # quiet this long: ask for DEVICE_ID, so a live but idle device answers something
SILENCE_SECONDS = 2.5  # quiet this long: the link is dead (the crew sees RX_COM_ERROR within 3 s)


class ShureLink:
    """One long-lived control connection: ``GET 0 ALL`` once, then the device's REPORTs and SAMPLEs.

    Shure devices send a REPORT for every value that changes and a SAMPLE per channel at METER_RATE
    (protocols.md §1.5), so after the first ALL the link only listens. :meth:`run` connects, reads the
    ALL reply, then follows until the device closes the link, goes quiet for ``silence_seconds`` (a
    ``GET 0 DEVICE_ID`` probe goes out after ``PROBE_AFTER_SECONDS`` of quiet, so an idle but living
    device always has something to say) or the task is cancelled. However it ends, metering is set back
    to 0 before the close (the QLX-D lock-up, §1.11) and TCP keepalive is on while it lives.

    The caller reads :meth:`take` whenever it likes (from the event loop's thread): the reading of
    everything reported so far, or None when nothing arrived since the previous one.
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
        options: Mapping[str, str] | None = None,
    ) -> None:
        try:
            spec = shure_model(model)
        except KeyError:
            raise ProtocolError(f"{model!r} is not a Shure command-string model") from None
        self.host, self.port, self.timeout = host, port, timeout
        self.where = f"{host}:{port}"
        self.family, self.channels = spec.family, spec.channels
        self.rate = min(clamp_meter_rate(spec.family, meter_rate_ms), _MAX_METER_RATE)
        self.peak_dbfs = peak_threshold(spec.family, options)
        self.silence_seconds = max(silence_seconds, PROBE_AFTER_SECONDS + 0.5)
        self.session: _Session | None = None
        self.latency_ms: float | None = None
        self.ready = False  # the ALL reply is complete: take() has a whole reading to give

    def take(self) -> ReceiverReading | None:
        """The reading so far if anything arrived since the last call (None otherwise, or before ALL is read)."""
        session = self.session
        if session is None or not self.ready or not session.dirty:
            return None
        session.dirty = False
        reading = session.state.reading()
        reading.latency_ms = self.latency_ms
        return reading

    async def run(self) -> None:
        """Connect, read ALL, follow the reports until the link fails; returns only when cancelled.

        Raises:
            AddressResolutionError, ConnectionTimeoutError: as :func:`poll` does, while connecting.
            DeviceSilentError: nothing at all within ``timeout`` of connecting, or silence for
                ``silence_seconds`` later on.
            ProtocolError: nothing valid, or the ALL reply cut short.
            LinkDroppedError: the device closed the link after it worked (a reboot, another client
                taking the last control slot, a network fault).
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self.timeout
        self.ready = False
        session = self.session = _Session(self.family, self.channels, self.rate, self.peak_dbfs)
        await _connect(self.host, self.port, self.timeout, deadline, session)
        try:
            session.send("GET 0 ALL")
            session.send(f"SET 0 METER_RATE {self.rate:05d}")
            await session.wait(deadline, lambda: session.rate_confirmed)
            session.outcome(self.where, self.timeout)
            if not session.rate_confirmed:
                raise DeviceSilentError(
                    f"{self.where}: did not finish its reply to GET 0 ALL within {self.timeout:g} s; {_SILENT_HINT}"
                )
            if session.first_byte_at is not None:
                self.latency_ms = round((session.first_byte_at - started) * 1000, 1)
            self.ready = True
            await self._follow(session)
        except (OSError, UnicodeError, ValueError) as exc:
            raise ProtocolError(f"{self.where}: {exc}") from None
        finally:
            await session.stop_and_close(loop.time())

    async def _follow(self, session: _Session) -> None:
        loop = asyncio.get_running_loop()
        probed_at = 0.0
        while True:
            quiet_since = session.last_byte_at

            def heard(since: float = quiet_since) -> bool:
                return session.last_byte_at != since

            await session.wait(quiet_since + PROBE_AFTER_SECONDS, heard)
            if session.eof:
                raise LinkDroppedError(f"{self.where}: closed the connection (device restarted or network fault?)")
            quiet = loop.time() - session.last_byte_at
            if quiet >= self.silence_seconds:
                raise DeviceSilentError(
                    f"{self.where}: sent nothing for {quiet:.1f} s on a live link (device hung or network fault)"
                )
            if quiet >= PROBE_AFTER_SECONDS:
                if probed_at <= session.last_byte_at:
                    session.send("GET 0 DEVICE_ID")
                    probed_at = loop.time()
                await session.wait(session.last_byte_at + self.silence_seconds, heard)
