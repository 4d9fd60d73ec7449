"""Shure System API driver (HTTPS REST on a SystemAPI Server, protocols.md §4).

A Receiver row is one device on a SystemAPI Server: ``host:port`` is the server, ``options["remote_id"]``
the device's ``hardwareIdentity.deviceId``, ``options["api_key"]`` the server's shared secret (sent as
``x-api-key`` on every request). A reading is the device list, page by page until the device is found,
then the device's resources and its audio channels' resources concurrently, over at most
``MAX_CONNECTIONS`` keep-alive connections of one ``httpx.AsyncClient``. :func:`poll` makes one reading and
closes (connect per poll); :class:`SystemApiLink` keeps its session and reads every second, and its first
reading that fails ends the link (the holder shows the receiver offline at once). The server's own push,
WebSocket events, is [U] (§4) and not used.

What a reading holds: model, firmware and device id from the list's node; the device name; the device's
audio mute; per audio channel its name, mute and activity (CLIPPING -> ``audio_peak``); for a device with
a battery (a pack or handheld: one channel) its percentage, bars and runtime (``timeToTargetState`` as an
ISO-8601 duration while discharging). The System API has no RF, frequency, antenna or audio level in dB
[U], so those stay None: the tile shows nothing rather than an invented value. Resources a device does not
list in ``capabilities[]`` are not asked for; a 404 / 405 on one it lists reads as unknown.

TLS is always verified, one of three ways: the pinned certificate (``options["tls_fingerprint"]``, the
SHA-256 of the server's DER certificate, compared right after the handshake, before any request and its
API key is written), else the CA file (``options["ca_file"]``, from ``MICBOARD_SYSTEM_API_CA_FILE``), else
the system's CA store. A self-signed server (the install default) without a pin or CA file fails with a
message giving the certificate's fingerprint to check against the server and enter.

Bounded: every answer is read raw (``Accept-Encoding: identity``) and cut at ``MAX_RESPONSE_BYTES``; at most
``MAX_LIST_PAGES`` pages and ``MAX_CHANNELS`` channels; the whole poll ends within ``timeout``. Host names
are resolved by :func:`~micboard.drivers.resolver.resolve_host`. Nothing but
:class:`~micboard.exceptions.DriverError` subclasses escapes. No Django imports here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpcore
import httpx

from micboard.drivers import system_api_spec as spec
from micboard.drivers.base import ReceiverReading
from micboard.drivers.catalog import device_model
from micboard.drivers.probes import Found
from micboard.drivers.resolver import resolve_host
from micboard.drivers.system_api_wire import (
    CONTROL_CHARS,
    ChannelAnswers,
    InventoryDevice,
    activity,
    battery,
    build_reading,
    channel_numbers,
    clean_text,
    device_nodes,
    flag,
    format_fingerprint,
    next_cursor,
    node_capabilities,
    node_device,
    parse_fingerprint,
)
from micboard.exceptions import (
    ConnectionTimeoutError,
    DeviceSilentError,
    DriverConfigurationError,
    DriverError,
    ProtocolError,
)

__all__ = ["DEFAULT_PORT", "InventoryDevice", "SystemApiLink", "inventory", "poll", "probe"]

DEFAULT_PORT = spec.DEFAULT_PORT
MAX_RESPONSE_BYTES = 1 << 20  # one answer; a device list page of a few hundred devices fits easily
MAX_LIST_PAGES = 50
MAX_DEVICES = 500  # inventory: devices listed at most
MAX_CHANNELS = 16  # audio channels read per device (an ANX4 lists 12 [U])
MAX_CONNECTIONS = 4  # concurrent HTTPS connections to one server per poll
READ_EVERY_SECONDS = 1.0  # a live link's pause between two readings
_CLOSE_SECONDS = 0.5


# --------------------------------------------------------------------------------------------------------
# TLS: a network backend that checks the pinned certificate between the handshake and the first request
# --------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _verifying_context(ca_file: str | None, _mtime_ns: int) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _pinning_context() -> ssl.SSLContext:
    # The chain is not checked because the certificate itself is: its SHA-256 must equal the pin, compared in
    # _Stream.start_tls before a byte of HTTP is written. Also used to read a presented certificate's
    # fingerprint for an error message, on a connection that then closes without a request.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _tls_settings(options: Mapping[str, str], where: str) -> tuple[ssl.SSLContext, bytes | None]:
    """The SSL context and pin for a receiver's options (a pin wins over the CA file: it names the server)."""
    pin_text = (options.get("tls_fingerprint") or "").strip()
    if pin_text:
        try:
            return _pinning_context(), parse_fingerprint(pin_text)
        except DriverConfigurationError as exc:
            raise DriverConfigurationError(f"{where}: {exc}") from None
    ca_file = (options.get("ca_file") or "").strip() or None
    try:
        mtime = os.stat(ca_file).st_mtime_ns if ca_file else 0
        return _verifying_context(ca_file, mtime), None
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise DriverConfigurationError(
            f"{where}: cannot use the CA file {ca_file} (MICBOARD_SYSTEM_API_CA_FILE): {exc}; "
            "point it at a readable PEM file holding the certificate that signed the SystemAPI server's"
        ) from None


class _Backend(httpcore.AsyncNetworkBackend):
    """httpcore's own backend, plus micboard's resolver, the pin check and what the error messages need."""

    def __init__(self, *, where: str, pin: bytes | None, timeout: float) -> None:
        self.inner = httpcore.AnyIOBackend()
        self.where = where
        self.pin = pin
        self.timeout = timeout
        self.connected = False  # a TCP connection was made (a silent server is then silent, not absent)
        self.address: tuple[str, int] | None = None
        self.presented: bytes | None = None  # fingerprint of an untrusted certificate, for the message

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await resolve_host(host, timeout=timeout or self.timeout)
        failure: Exception | None = None
        for address in addresses:
            try:
                stream = await self.inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
                continue
            self.connected = True
            self.address = (address, port)
            return _Stream(stream, self)
        assert failure is not None
        raise failure

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)

    async def peek_fingerprint(self, server_hostname: str | None, timeout: float | None) -> None:
        """Handshake once more without checking, only to read the certificate's fingerprint; sends nothing."""
        if self.address is None:
            return
        with contextlib.suppress(httpcore.NetworkError, httpcore.TimeoutException, OSError, ssl.SSLError):
            stream = await self.inner.connect_tcp(*self.address, timeout=timeout)
            try:
                stream = await stream.start_tls(_pinning_context(), server_hostname, timeout)
                self.presented = _peer_fingerprint(stream)
            finally:
                await stream.aclose()


def _peer_fingerprint(stream: httpcore.AsyncNetworkStream) -> bytes | None:
    ssl_object = stream.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return hashlib.sha256(der).digest() if der else None


def _cause(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 10:
        if isinstance(current, kind):
            return current
        current = current.__cause__ or current.__context__
        seen += 1
    return None


class _Stream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream, backend: _Backend) -> None:
        self.inner = inner
        self.backend = backend

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self.inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self.inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def get_extra_info(self, info: str) -> Any:
        return self.inner.get_extra_info(info)

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        try:
            tls = await self.inner.start_tls(ssl_context, server_hostname, timeout)
        except httpcore.ConnectError as exc:
            if _cause(exc, ssl.SSLCertVerificationError) is not None:
                await self.backend.peek_fingerprint(server_hostname, timeout)
            raise
        pin = self.backend.pin
        if pin is not None:
            presented = _peer_fingerprint(tls)
            if presented != pin:
                await tls.aclose()
                shown = format_fingerprint(presented, short=True) if presented else "no certificate"
                raise DriverConfigurationError(
                    f"{self.backend.where}: the server's certificate does not match the pinned one (pinned "
                    f"{format_fingerprint(pin, short=True)}, server presents {shown}); if the SystemAPI server "
                    "was reinstalled or its certificate renewed, enter the new fingerprint in the receiver's "
                    "settings; otherwise check that this address is really the SystemAPI server"
                )
        return tls


class _Transport(httpx.AsyncHTTPTransport):
    def __init__(self, context: ssl.SSLContext, backend: _Backend) -> None:
        limits = httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS)
        super().__init__(verify=context, trust_env=False, limits=limits)
        # httpx offers no way to hand its connection pool a network backend, and the pin must be checked after
        # the handshake but before the request (carrying the API key) is written: so the pool is rebuilt with
        # the same settings and ours. tests/test_system_api.py fails loudly if httpx changes this.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=context,
            max_connections=MAX_CONNECTIONS,
            max_keepalive_connections=MAX_CONNECTIONS,
            network_backend=backend,
        )


# --------------------------------------------------------------------------------------------------------
# Network: one client per driver call
# --------------------------------------------------------------------------------------------------------


class _Api:
    """One poll's (or inventory's) conversation with a SystemAPI Server."""

    def __init__(
        self, host: str, port: int, *, options: Mapping[str, str], timeout: float, require_key: bool = True
    ) -> None:
        self.where = f"{host}:{port}"
        self.port = port
        self.timeout = timeout
        api_key = (options.get("api_key") or "").strip()
        if not api_key and require_key:
            raise DriverConfigurationError(
                f"{self.where}: no API key: enter the SystemAPI server's shared secret (set when the server "
                "was installed) as the receiver's API key"
            )
        if any(ord(char) < 0x21 or ord(char) > 0x7E for char in api_key):
            raise DriverConfigurationError(
                f"{self.where}: the API key holds spaces or characters an HTTP header cannot carry; "
                "enter it again as the SystemAPI server shows it"
            )
        self.context, pin = _tls_settings(options, self.where)
        self.backend = _Backend(where=self.where, pin=pin, timeout=timeout)
        url_host = f"[{host}]" if ":" in host else host
        self.base = f"https://{url_host}:{port}{spec.API_BASE}/"
        self.headers = {"Accept": "application/json", "Accept-Encoding": "identity"}
        if api_key:
            self.headers[spec.API_KEY_HEADER] = api_key
        self.client: httpx.AsyncClient | None = None
        self.started = self.deadline = 0.0
        self.first_answer_ms: float | None = None

    def start_clock(self) -> None:
        """A new conversation (one reading) starts: it has ``timeout`` from now."""
        self.started = asyncio.get_running_loop().time()
        self.deadline = self.started + self.timeout
        self.first_answer_ms = None

    async def __aenter__(self) -> _Api:
        self.start_clock()
        self.client = httpx.AsyncClient(
            transport=_Transport(self.context, self.backend),
            headers=self.headers,
            timeout=self.timeout,
            follow_redirects=False,
            trust_env=False,
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.client.aclose(), _CLOSE_SECONDS)

    def _remaining(self) -> float:
        return max(0.05, self.deadline - asyncio.get_running_loop().time())

    async def get(self, path: str, *, params: Mapping[str, str] | None = None, optional: bool = False) -> Any:
        """GET ``/api/v1/<path>`` -> its JSON (None for an empty answer, or a 404 / 405 when ``optional``).

        Only headers and a bounded raw body; never ``Content-Type`` (a bodyless request must not carry
        ``application/json``, §4). Raises a DriverError for everything else.
        """
        what = f"GET {spec.API_BASE}/{path}"
        assert self.client is not None, "use the _Api as an async context manager"
        try:
            async with self.client.stream("GET", self.base + path, params=params, timeout=self._remaining()) as answer:
                if self.first_answer_ms is None:
                    self.first_answer_ms = round((asyncio.get_running_loop().time() - self.started) * 1000, 1)
                if answer.status_code in (404, 405) and optional:
                    return None
                self._check_status(answer.status_code, what)
                declared = answer.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
                    raise self._too_big(what)
                body = bytearray()
                async for chunk in answer.aiter_raw():
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise self._too_big(what)
        except httpx.HTTPError as exc:
            raise self._translate(exc, what) from None
        except (httpx.InvalidURL, UnicodeError, ValueError) as exc:
            raise DriverConfigurationError(f"{self.where}: not a usable address ({exc})") from None
        if not body.strip():
            return None
        try:
            return json.loads(bytes(body))
        except (ValueError, RecursionError):
            start = bytes(body[:24]).decode("ascii", "replace").translate(CONTROL_CHARS)
            raise ProtocolError(
                f"{self.where}: answered {what} with something that is not JSON ({start!r}…); "
                f"is port {self.port} the SystemAPI server's?"
            ) from None

    def _too_big(self, what: str) -> ProtocolError:
        return ProtocolError(f"{self.where}: the answer to {what} is larger than {MAX_RESPONSE_BYTES} bytes")

    def _check_status(self, status: int, what: str) -> None:
        if 200 <= status < 300:
            return
        if status in (401, 403) and spec.API_KEY_HEADER not in self.headers:
            raise DriverConfigurationError(
                f"{self.where}: a SystemAPI server answers here (HTTP {status} without a key): enter its shared "
                "secret as the API key to list its devices"
            )
        if status in (401, 403):
            raise DriverConfigurationError(
                f"{self.where}: the SystemAPI server refused the API key (HTTP {status}): check the receiver's "
                "API key against the server's shared secret"
            )
        if status == 429:
            raise DriverError(f"{self.where}: the SystemAPI server asks for fewer requests (HTTP 429) on {what}")
        if status >= 500:
            raise ProtocolError(f"{self.where}: the SystemAPI server failed on {what} (HTTP {status})")
        raise ProtocolError(
            f"{self.where}: {what} answered HTTP {status}; is port {self.port} the SystemAPI server's HTTPS port?"
        )

    def _translate(self, exc: httpx.HTTPError, what: str) -> DriverError:
        where, timeout = self.where, self.timeout
        if isinstance(exc, httpx.ConnectTimeout):
            if self.backend.connected:
                return DeviceSilentError(
                    f"{where}: accepted the connection but did not complete the TLS handshake within {timeout:g} s "
                    "(server hung, or not an HTTPS port?)"
                )
            return ConnectionTimeoutError(
                f"{where}: no TCP connection within {timeout:g} s (server off, wrong address, or filtered)"
            )
        if isinstance(exc, httpx.TimeoutException):
            return DeviceSilentError(
                f"{where}: sent no answer to {what} within {timeout:g} s (server hung or overloaded?)"
            )
        if isinstance(exc, httpx.ConnectError):
            return self._connect_error(exc)
        if isinstance(exc, httpx.RemoteProtocolError):
            text = str(exc)
            if "disconnected" in text or "closed connection" in text or "incomplete" in text:
                return ProtocolError(f"{where}: closed the connection in the middle of its answer to {what}")
            return ProtocolError(
                f"{where}: answered {what} with something that is not HTTP; "
                f"is port {self.port} the SystemAPI server's HTTPS port?"
            )
        if isinstance(exc, httpx.NetworkError):
            return ProtocolError(f"{where}: the connection dropped during {what} ({exc or type(exc).__name__})")
        return ProtocolError(f"{where}: {what} failed: {exc or type(exc).__name__}")

    def _connect_error(self, exc: httpx.ConnectError) -> DriverError:
        where = self.where
        verification = _cause(exc, ssl.SSLCertVerificationError)
        if verification is not None:
            reason = getattr(verification, "verify_message", "") or str(verification)
            presented = (
                f" (it presents SHA-256 {format_fingerprint(self.backend.presented)})" if self.backend.presented else ""
            )
            return DriverConfigurationError(
                f"{where}: the server's TLS certificate is not trusted: {reason}{presented}; enter the fingerprint "
                "of the SystemAPI server's certificate in the receiver's settings (compare it on the server first), "
                "or set MICBOARD_SYSTEM_API_CA_FILE to the CA that signed it"
            )
        tls_failure = _cause(exc, ssl.SSLError)
        if tls_failure is not None:
            return ProtocolError(
                f"{where}: the TLS handshake failed ({getattr(tls_failure, 'reason', None) or tls_failure}); "
                f"is port {self.port} the SystemAPI server's HTTPS port?"
            )
        if _cause(exc, ConnectionRefusedError) is not None or "refused" in str(exc).lower():
            return ConnectionTimeoutError(
                f"{where}: connection refused (nothing listens on port {self.port}: is the SystemAPI Server "
                "running, and is this the port chosen at its install, 10000 by default?)"
            )
        if self.backend.connected:
            return ProtocolError(f"{where}: closed the connection during the TLS handshake")
        return ConnectionTimeoutError(f"{where}: cannot connect: {exc or type(exc).__name__}")

    async def pages(self, *, stop: str | None = None) -> list[dict[str, Any]]:
        """Device nodes, page by page (at most MAX_LIST_PAGES); stops at the page holding device ``stop``."""
        nodes: list[dict[str, Any]] = []
        params: dict[str, str] | None = None
        seen: set[str] = set()
        for _ in range(MAX_LIST_PAGES):
            payload = await self.get(spec.DEVICES, params=params)
            try:
                page = device_nodes(payload)
            except ProtocolError as exc:
                raise ProtocolError(f"{self.where}: {exc}") from None
            nodes.extend(page)
            if stop is not None and any(_node_id(node) == stop for node in page):
                break
            cursor = next_cursor(payload)
            if cursor is None or cursor in seen or len(nodes) >= MAX_DEVICES:
                break
            seen.add(cursor)
            params = {spec.PAGE_AFTER_PARAM: cursor}
        return nodes[:MAX_DEVICES]

    async def gather(self, *requests: Any) -> list[Any]:
        """Run requests concurrently; the first failure cancels the rest and is raised."""
        tasks = [asyncio.ensure_future(request) for request in requests]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise


def _node_id(node: Mapping[str, Any]) -> str | None:
    identity = node_device(node)
    return identity.device_id.lower() if identity else None


async def _none() -> None:
    return None


async def _read_device(api: _Api, node: dict[str, Any]) -> ReceiverReading:
    identity = node_device(node)
    assert identity is not None
    device = quote(identity.device_id, safe="")
    capabilities = node_capabilities(node)

    def asks(name: str) -> bool:
        return capabilities is None or name in capabilities

    def resource(name: str) -> Any:
        return api.get(f"{spec.DEVICES}/{device}/{name}", optional=True) if asks(name) else _none()

    name, mute, level, channel_list = await api.gather(
        resource(spec.NAME), resource(spec.AUDIO_MUTE), resource(spec.BATTERY_LEVEL), resource(spec.AUDIO_CHANNELS)
    )
    entries: list[dict[str, Any]] = []
    if channel_list is not None:
        try:
            listed = device_nodes(channel_list)
        except ProtocolError:
            raise ProtocolError(f"{api.where}: the audio channel list of {identity.device_id} is not a list") from None
        # Entries without an id are not channels: left out before numbering, so they cannot shift the others.
        entries = [entry for entry in listed if isinstance(entry.get("id"), str) and entry["id"]][:MAX_CHANNELS]
    ids = [entry["id"] for entry in entries]
    channels = [ChannelAnswers(number) for number in channel_numbers(ids)]
    requests = []
    for channel, entry, channel_id in zip(channels, entries, ids, strict=True):
        listed = entry.get("capabilities")
        path = f"{spec.DEVICES}/{device}/{spec.AUDIO_CHANNELS}/{quote(channel_id, safe='')}"
        for key in (spec.CHANNEL_NAME, spec.CHANNEL_MUTE, spec.CHANNEL_ACTIVITY):
            if not isinstance(listed, list) or key in listed:
                requests.append((channel, key, api.get(f"{path}/{key}", optional=True)))
    answers = await api.gather(*(request for _, _, request in requests))
    for (channel, key, _), answer in zip(requests, answers, strict=True):
        if key == spec.CHANNEL_NAME:
            channel.name = clean_text(answer.get("name")) if isinstance(answer, dict) else None
        elif key == spec.CHANNEL_MUTE:
            channel.muted = flag(answer, "muted")
        else:
            channel.activity = activity(answer)
    device_name = clean_text(name.get("name")) if isinstance(name, dict) else None
    # A device without a battery-level resource (or with no percentage in it) is not a pack [U].
    pack = battery(level) if isinstance(level, dict) else None
    return build_reading(node, name=device_name, muted=flag(mute, "muted"), level=pack, channels=channels)


@contextlib.asynccontextmanager
async def _within(api: _Api):
    """Bound one conversation: httpx bounds each step with what is left; this catches the rest."""
    try:
        async with asyncio.timeout_at(api.deadline + 0.25):
            yield
    except TimeoutError:
        raise ConnectionTimeoutError(
            f"{api.where}: the SystemAPI server did not finish within {api.timeout:g} s"
        ) from None


def _remote_id(options: Mapping[str, str], where: str) -> str:
    remote_id = (options.get("remote_id") or "").strip()
    if not remote_id:
        raise DriverConfigurationError(
            f"{where}: no device id: enter the device's id on the SystemAPI server in the receiver's "
            "settings (discovery fills it in; it is the device's hardwareIdentity.deviceId)"
        )
    return remote_id


async def _read(api: _Api, remote_id: str, model: str) -> ReceiverReading:
    """One reading of the device on an open session, within ``timeout`` from now."""
    api.start_clock()
    async with _within(api):
        nodes = await api.pages(stop=remote_id.lower())
        node = next((node for node in nodes if _node_id(node) == remote_id.lower()), None)
        if node is None:
            raise DriverConfigurationError(
                f"{api.where}: the SystemAPI server does not list device {remote_id} ({len(nodes)} devices listed); "
                "check the receiver's device id, and that the device is in the server's discovery list"
            )
        state = node_device(node).state  # type: ignore[union-attr]
        if state != spec.STATE_ONLINE:
            raise DriverError(
                f"{api.where}: the System API server reports the device offline ({state or 'no state'}); "
                f"check {model} {remote_id}'s power and its network link to the server"
            )
        reading = await _read_device(api, node)
    reading.latency_ms = api.first_answer_ms
    return reading


async def poll(
    host: str,
    port: int,
    *,
    model: str,
    timeout: float = 3.0,
    meter_rate_ms: int = 1000,
    options: Mapping[str, str] | None = None,
) -> ReceiverReading:
    """Read one device of a SystemAPI Server (see the module docstring). ``meter_rate_ms`` is not used: the
    System API has no meter rate. ``latency_ms`` is the time to the server's first answer.

    Raises:
        DriverConfigurationError: no API key or device id, the key refused, a certificate not trusted or not
            matching the pin, an unusable CA file, or the device id not on the server.
        AddressResolutionError / ConnectionTimeoutError: the server cannot be reached in time.
        DeviceSilentError: connected, but no handshake or answer in time.
        ProtocolError: not HTTPS, not HTTP, not JSON, an answer cut short or too large, a server error.
        DriverError: the server reports the device offline, or rate-limits micboard.
    """
    options = options or {}
    api = _Api(host, port, options=options, timeout=timeout)
    remote_id = _remote_id(options, api.where)
    async with api:
        return await _read(api, remote_id, model)


class SystemApiLink:
    """A live link to one device: a kept-alive HTTPS session that reads the device every ``read_every`` s.

    The server's own push (WebSocket events, §4) is [U], so the link polls, but over connections it keeps
    (no handshake per reading) and it fails at once: the first reading that does not come within
    ``timeout`` ends :meth:`run` with the DriverError :func:`poll` would raise, so the holder shows the
    receiver offline without waiting for more failed polls. :meth:`take` gives each new reading once.
    Receivers set to "Connect per poll" use :func:`poll` every poll interval instead (fewer requests).
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
        read_every: float = READ_EVERY_SECONDS,
    ) -> None:
        options = options or {}
        self.model = model
        self.read_every = read_every
        self.api = _Api(host, port, options=options, timeout=timeout)
        self.remote_id = _remote_id(options, self.api.where)
        self.ready = False  # a first reading arrived
        self._reading: ReceiverReading | None = None

    def take(self) -> ReceiverReading | None:
        """The latest reading if it was not taken yet, else None."""
        reading, self._reading = self._reading, None
        return reading

    async def run(self) -> None:
        """Read, wait, read again, until a reading fails (raised) or the task is cancelled (sessions closed)."""
        self.ready = False
        async with self.api:
            while True:
                self._reading = await _read(self.api, self.remote_id, self.model)
                self.ready = True
                await asyncio.sleep(self.read_every)


async def inventory(
    host: str, port: int, *, timeout: float = 3.0, options: Mapping[str, str] | None = None
) -> list[InventoryDevice]:
    """Every device a SystemAPI Server lists (at most MAX_DEVICES), with the names of the online ones.

    For discovery: the caller decides what to add. Raises what :func:`poll` raises while listing; without an
    API key it still asks, so that a server there is told apart from nothing there (DriverConfigurationError
    saying a key is needed, against ConnectionTimeoutError).
    """
    api = _Api(host, port, options=options or {}, timeout=timeout, require_key=False)
    async with api, _within(api):
        nodes = await api.pages()

        async def named(node: dict[str, Any], device: InventoryDevice) -> InventoryDevice:
            capabilities = node_capabilities(node)
            if device.state != spec.STATE_ONLINE or (capabilities is not None and spec.NAME not in capabilities):
                return device
            answer = await api.get(f"{spec.DEVICES}/{quote(device.device_id, safe='')}/{spec.NAME}", optional=True)
            return dataclasses.replace(
                device, name=clean_text(answer.get("name")) if isinstance(answer, dict) else None
            )

        pairs = [(node, device) for node in nodes if (device := node_device(node)) is not None]
        return await api.gather(*(named(node, device) for node, device in pairs))


async def probe(host: str, port: int, *, timeout: float = 1.5, options: Mapping[str, str] | None = None) -> list[Found]:
    """Discovery (:mod:`micboard.drivers.probes`): every device a SystemAPI Server at ``host:port`` lists, as
    finds for review, each named by its device id on the server (``remote_id``).

    The scan's ``options`` carry the API key and the certificate pin; without them the server is still told
    apart from nothing listening (a DriverConfigurationError saying what to enter, where an empty address is
    a plain ConnectionTimeoutError).
    """
    finds = []
    for device in await inventory(host, port, timeout=timeout, options=options):
        notes = []
        try:
            entry = device_model(device.model or "", driver=spec.DRIVER)
        except KeyError:
            model, channels = device.model or "", ()
            notes.append(f"{model or 'a device without a model'} is not a model micboard reads through the System API")
        else:
            model = entry.model
            channels = ((1, device.name),) if entry.channels == 1 and device.name else ()
        if device.state != spec.STATE_ONLINE:
            notes.append(f"the server lists it {device.state or 'without a state'}")
        finds.append(
            Found(
                driver=spec.DRIVER,
                model=model,
                host=host,
                port=port,
                device_id=device.device_id,
                serial=device.serial or "",
                name=device.name or "",
                channels=channels,
                remote_id=device.device_id,
                firmware=device.firmware or "",
                note="; ".join(notes),
            )
        )
    return finds
