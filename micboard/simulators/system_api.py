"""Asyncio simulator of a Shure SystemAPI Server (HTTPS REST, protocols.md §4 and §7.7).

A :class:`SimulatedSystemApiDevice` is one Shure device behind a SystemAPI Server; the devices built for
the same ``host:port`` share one :class:`SystemApiServer` (one HTTPS listener on loopback), as the devices a
real server relays do. Each device is a demo-rig entry of its own (a Receiver row in micboard, named by its
device id), with the engine's dynamics: a pack (ULXD6, ULXD8, ADXR) is one channel whose battery drains and
whose switching off takes the device OFFLINE on the server; an Axient Digital PSM transmitter (ADTQ, ADTD)
or receiver (AD4Q, AD4D) is audio channels whose activity (LOW / GOOD / CLIPPING) follows the engine's audio.

The server speaks what §4 describes: ``x-api-key`` on every request (401 JSON otherwise), the device list
Relay-paginated (``page_size`` nodes a page, 2 by default so paging is exercised; ``list_shape`` "array" or
"items" for the other shapes), per-device and per-audio-channel resources by capability, 405 for a resource
a device lacks, no RF resources at all, and 400 for ``Content-Type: application/json`` on an empty body.
The WebSocket event path of §7.7 is not served: micboard polls this family. The certificate is generated at
start (EC P-256, self-signed), or kept in ``tls_dir`` per host and reused, so a pinned fingerprint survives
restarts; :meth:`SimulatedSystemApiDevice.snapshot` gives its SHA-256 and PEM path.

Faults are the server's (its devices share its listener): the first fault set on any of its devices applies
to every connection. ``refuse`` closes the listener; ``silent`` accepts and never answers the TLS handshake;
``stop_answering`` reads requests and answers none; ``garbage`` mixes junk into every answer's JSON (list
entries that are no device or channel, unknown fields, control characters around names), all of which a
reader of §4's tolerant shapes must step over;
``drop_mid_frame`` sends half an answer and closes; ``slow`` holds back the first page of the device list
by ``SLOW_REPLY_SECONDS`` (a server slow to enumerate its network) and every other answer by 1/30 of it,
which a poll still survives. No Django imports.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import ipaddress
import json
import logging
import os
import random
import ssl
import tempfile
import time
import weakref
import zlib
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

from micboard.drivers import system_api_spec as spec
from micboard.drivers.catalog import device_model
from micboard.simulators.engine import (
    SLOW_REPLY_SECONDS,
    ChannelState,
    SimulatedDevice,
    SimulatorBindError,
    SimulatorError,
)
from micboard.simulators.rig import RigDevice

logger = logging.getLogger(__name__)

__all__ = [
    "DEMO_API_KEY",
    "TLS_FOLDER",
    "ServerCertificate",
    "SimulatedSystemApiDevice",
    "SystemApiServer",
    "receiver_options",
    "server_certificate",
]

DEMO_API_KEY = "micboard-demo-system-api-key"  # the demo's shared secret (seed_demo puts it on the receivers)
TLS_FOLDER = "simulator-tls"  # in the data directory: where the demo's server certificates are kept
LIST_SHAPES = ("relay", "array", "items")
PACK_MODELS = frozenset({"ADXR", "ULXD6", "ULXD8"})  # battery devices, one channel each [U]
_FIRMWARE = {"ADTQ": "1.2.1.1", "ADTD": "1.2.1.1", "ADXR": "1.2.1.1", "AD4Q": "2.1.42.0", "AD4D": "2.1.42.0"}
# What each kind of device advertises. ADTQ/ADTD as one implementer saw them on a real server (no audio-mute,
# channels without mute); receivers' channels with mute as an ANX4's [U]; packs as inferred from the paths [U].
_DEVICE_CAPABILITIES = ("audio-channels", "identify", "name", "reboot", "uptime")
_RECEIVER_CAPABILITIES = (*_DEVICE_CAPABILITIES, "audio-mute")
_PACK_CAPABILITIES = ("audio-mute", "battery-health", "battery-level", "identify", "name", "uptime")
_IEM_CHANNEL_CAPABILITIES = ("activity", "gain", "name")
_RECEIVER_CHANNEL_CAPABILITIES = ("activity", "gain", "mute", "name")
_MAX_HEAD = 16 * 1024
_MAX_BODY = 64 * 1024
_MAX_CONNECTIONS = 64  # more at once are closed on arrival (a real server's limit is unknown)
_HANDSHAKE_SECONDS = 10.0
_IDLE_SECONDS = 30.0
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed"}


# --------------------------------------------------------------------------------------------------------
# Certificates
# --------------------------------------------------------------------------------------------------------


class ServerCertificate:
    """A server certificate on disk: PEM paths and the SHA-256 of its DER form (what micboard pins)."""

    def __init__(self, cert_path: Path, key_path: Path) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        self.cert_path = cert_path
        self.key_path = key_path
        der = x509.load_pem_x509_certificate(cert_path.read_bytes()).public_bytes(Encoding.DER)
        self.sha256 = hashlib.sha256(der).hexdigest().upper()

    @property
    def fingerprint(self) -> str:
        """``AB:CD:…``, as the receiver's settings take it."""
        return ":".join(self.sha256[i : i + 2] for i in range(0, 64, 2))

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_path, self.key_path)
        return context


def server_certificate(directory: Path | str | None, host: str) -> ServerCertificate:
    """The certificate of the simulated server on ``host``: read from ``directory`` when it is there, else made
    (self-signed, EC P-256, for ``host``, 127.0.0.1, ::1 and localhost) and written there (a fresh temporary
    folder when ``directory`` is None). The demo seeds its fingerprint before the simulator starts."""
    folder = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="micboard-sysapi-tls-"))
    stem = "system-api-" + "".join(c if c.isalnum() or c in ".-" else "_" for c in host)
    cert_path, key_path = folder / f"{stem}.pem", folder / f"{stem}.key"
    if not (cert_path.exists() and key_path.exists()):
        folder.mkdir(parents=True, exist_ok=True)
        cert_pem, key_pem = _make_certificate(host)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key_pem)
        cert_path.write_bytes(cert_pem)
    return ServerCertificate(cert_path, key_path)


def receiver_options(rig: RigDevice, *, tls_dir: Path | str | None) -> dict[str, str]:
    """What a Receiver row needs to read ``rig`` on its simulated server: its device id, the server's API key and
    the pin of the server's certificate (made now in ``tls_dir`` when it is not there yet)."""
    return {
        "remote_id": rig.device_id,
        "api_key": DEMO_API_KEY,
        "tls_fingerprint": server_certificate(tls_dir, rig.host).fingerprint,
    }


def _make_certificate(host: str) -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    for address in dict.fromkeys(("127.0.0.1", "::1", host)):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(address)))
        except ValueError:
            names.append(x509.DNSName(address))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"SystemAPI {host} (micboard simulator)")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


# --------------------------------------------------------------------------------------------------------
# The server: one HTTPS listener for every device on host:port
# --------------------------------------------------------------------------------------------------------

_servers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, int], SystemApiServer]] = (
    weakref.WeakKeyDictionary()
)


class _Reply(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class SystemApiServer:
    """One SystemAPI Server: the listener, its connections and the devices it relays (in attach order)."""

    def __init__(
        self, host: str, port: int, *, api_key: str, page_size: int, list_shape: str, tls_dir: Path | str | None
    ) -> None:
        self.host, self.port = host, port
        self.api_key = api_key
        self.page_size = max(1, page_size)
        self.list_shape = list_shape
        self.certificate = server_certificate(tls_dir, host)
        self._context = self.certificate.ssl_context()
        self.members: list[SimulatedSystemApiDevice] = []
        self._server: asyncio.Server | None = None
        self._kind: str | None = None  # "tls", or "plain" under the silent fault
        self._connections: set[asyncio.StreamWriter] = set()
        self.requests = 0

    @classmethod
    def for_device(cls, device: SimulatedSystemApiDevice) -> SystemApiServer:
        """The server ``device`` belongs on (made when it is the first one there)."""
        servers = _servers.setdefault(asyncio.get_running_loop(), {})
        key = (device.host, device.requested_port)
        server = servers.get(key)
        if server is None:
            server = servers[key] = cls(
                device.host,
                device.requested_port,
                api_key=device.api_key,
                page_size=device.page_size,
                list_shape=device.shape,
                tls_dir=device.tls_dir,
            )
        elif server.api_key != device.api_key:
            raise SimulatorError(
                f"{device.key}: the server at {device.host}:{device.requested_port} has another API key"
            )
        return server

    @property
    def listening(self) -> bool:
        return self._server is not None

    @property
    def connections(self) -> int:
        return len(self._connections)

    @property
    def fault(self) -> str | None:
        return next((member.fault for member in self.members if member.fault), None)

    async def sync(self) -> None:
        """Listen while a member runs (powered or not: the server is a PC of its own) and none refuses.

        The listener speaks TLS, except under ``silent``: then a plain one takes the port and accepts
        connections without ever answering their handshake (asyncio cannot hold back a TLS listener's).
        """
        wanted = any(member.running for member in self.members) and self.fault != "refuse"
        kind = None if not wanted else "plain" if self.fault == "silent" else "tls"
        if kind != self._kind and self._server is not None:
            self._server.close()
            self._server, self._kind = None, None
            if kind is None and (self.fault == "refuse" or not self.members):
                self.disconnect_all()
        if kind is not None and self._server is None:
            try:
                if kind == "tls":
                    self._server = await asyncio.start_server(
                        self._on_connection,
                        self.host,
                        self.port,
                        ssl=self._context,
                        ssl_handshake_timeout=_HANDSHAKE_SECONDS,
                        limit=_MAX_HEAD,
                    )
                else:
                    self._server = await asyncio.start_server(self._on_silent, self.host, self.port)
            except OSError as exc:
                raise SimulatorBindError(
                    f"SystemAPI server: cannot listen on {self.host}:{self.port}: {exc.strerror or exc}"
                ) from exc
            self._kind = kind
            self.port = self._server.sockets[0].getsockname()[1]
            for member in self.members:
                member.port = self.port
        if not self.members:
            servers = _servers.get(asyncio.get_running_loop(), {})
            for key, server in list(servers.items()):
                if server is self:
                    del servers[key]

    def disconnect_all(self) -> None:
        for writer in list(self._connections):
            writer.transport.abort()
        self._connections.clear()

    def device(self, device_id: str) -> SimulatedSystemApiDevice | None:
        wanted = device_id.lower()
        return next((member for member in self.members if member.device_id.lower() == wanted), None)

    # Connections --------------------------------------------------------------------------------------

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One TLS connection (handshake done): requests answered in turn while it lives."""
        if len(self._connections) >= _MAX_CONNECTIONS:
            writer.transport.abort()
            return
        self._connections.add(writer)
        sessions = [member._open_session() for member in self.members]
        try:
            while await self._exchange(reader, writer):
                pass
        except (OSError, ssl.SSLError, EOFError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away, or never finished its request
        finally:
            self._connections.discard(writer)
            writer.transport.abort()
            for session in sessions:
                session[1] = time.time()

    async def _on_silent(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The ``silent`` fault: the connection is taken, its TLS handshake never answered."""
        if len(self._connections) >= _MAX_CONNECTIONS:
            writer.transport.abort()
            return
        self._connections.add(writer)
        try:
            await self._swallow(reader)
        except OSError:
            pass
        finally:
            self._connections.discard(writer)
            writer.transport.abort()

    @staticmethod
    async def _swallow(reader: asyncio.StreamReader) -> None:
        while await reader.read(4096):
            pass

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read one request and answer it (or not, as the fault says); False when the connection is done."""
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _IDLE_SECONDS)
        lines = head.decode("latin-1").split("\r\n")
        method, _, rest = lines[0].partition(" ")
        target, _, version = rest.rpartition(" ")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        length = headers.get("content-length", "0")
        if "transfer-encoding" in headers or not length.isdigit() or int(length) > _MAX_BODY:
            await self._send(writer, 400, {"message": "Send a Content-Length body of at most 64 KB"}, close=True)
            return False
        body = await reader.readexactly(int(length)) if int(length) else b""
        self.requests += 1
        fault = self.fault
        if fault in ("silent", "stop_answering"):
            await self._swallow(reader)  # the request was read; no answer ever comes
            return False
        url = urlsplit(target)
        query = parse_qs(url.query)
        status, payload = self._answer(method, url.path, query, headers, body)
        if fault == "garbage":
            payload = _with_junk(payload)
        if fault == "slow":
            first_page = url.path.rstrip("/").endswith(f"/{spec.DEVICES}") and spec.PAGE_AFTER_PARAM not in query
            await asyncio.sleep(SLOW_REPLY_SECONDS if first_page else SLOW_REPLY_SECONDS / 30)
        close = headers.get("connection", "").lower() == "close" or version != "HTTP/1.1"
        await self._send(writer, status, payload, close=close, cut=fault == "drop_mid_frame")
        return not close and fault != "drop_mid_frame"

    async def _send(
        self, writer: asyncio.StreamWriter, status: int, payload: Any, *, close: bool, cut: bool = False
    ) -> None:
        body = json.dumps(payload).encode()
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            "Content-Type: application/json; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"Connection: {'close' if close or cut else 'keep-alive'}\r\n\r\n"
        ).encode()
        writer.write(head + (body[: len(body) // 2] if cut else body))
        await writer.drain()

    # Requests -----------------------------------------------------------------------------------------

    def _answer(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> tuple[int, Any]:
        if headers.get(spec.API_KEY_HEADER) != self.api_key:
            return 401, {"message": "Invalid or missing x-api-key"}
        if headers.get("content-type", "").lower().startswith("application/json") and not body:
            # The real server's answer to a bodyless request that declares JSON (§4).
            return 400, {"message": "Body cannot be empty when content-type is set to 'application/json'"}
        parts = [unquote(part) for part in path.split("/") if part]
        if parts[:2] != ["api", "v1"] or len(parts) < 3 or parts[2] != spec.DEVICES:
            return 404, {"message": "Not found"}
        if method != "GET":
            return 405, {"message": f"{method} is not offered by this simulator"}
        try:
            if len(parts) == 3:
                return 200, self._device_list(query.get(spec.PAGE_AFTER_PARAM, [""])[0])
            device = self.device(parts[3])
            if device is None:
                return 404, {"message": "Device not found"}
            return 200, device.resource(parts[4:])
        except _Reply as reply:
            return reply.status, {"message": str(reply)}

    def _device_list(self, after: str) -> Any:
        nodes = [member.node() for member in self.members]
        if self.list_shape == "array":
            return nodes
        if self.list_shape == "items":
            return {"items": nodes}
        start = 0
        if after:
            try:
                start = int(json.loads(base64.urlsafe_b64decode(after + "=" * (-len(after) % 4)))["o"])
            except (ValueError, KeyError, TypeError):
                raise _Reply(400, "Invalid cursor") from None
        page = nodes[start : start + self.page_size]

        def cursor(offset: int) -> str:
            return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")

        edges = [{"cursor": cursor(start + i + 1), "node": node} for i, node in enumerate(page)]
        end = start + len(page)
        return {
            "pageInfo": {
                "hasNextPage": end < len(nodes),
                "hasPreviousPage": start > 0,
                "startCursor": edges[0]["cursor"] if edges else "",
                "endCursor": edges[-1]["cursor"] if edges else "",
            },
            "edges": edges,
        }


def _with_junk(payload: Any) -> Any:
    """The ``garbage`` fault's answer: the same data with junk a tolerant reader skips (see the docstring)."""
    junk_entries: list[Any] = ["\x1b[2J", 17, None, {"note": "not a device"}, {"id": None, "capabilities": "?"}]
    if isinstance(payload, list):
        return [*junk_entries[:2], *(_with_junk(item) for item in payload), *junk_entries[2:]]
    if not isinstance(payload, dict):
        return payload
    out = {key: _with_junk(value) for key, value in payload.items()}
    if isinstance(out.get("name"), str):
        out["name"] = f"\x00\x07{out['name']}\x1b"
    if isinstance(out.get("edges"), list):
        out["edges"] = [{"cursor": "junk"}, {"node": "junk"}, {"node": {"softwareIdentity": {}}}, *out["edges"]]
    out["\u0000junk"] = "\ufffd\x7f"
    return out


# --------------------------------------------------------------------------------------------------------
# One device on the server
# --------------------------------------------------------------------------------------------------------


class SimulatedSystemApiDevice(SimulatedDevice):
    """One Shure device behind a simulated SystemAPI Server (see the module docstring).

    Args (besides the engine's):
        api_key: the server's shared secret (every device of one server must agree).
        page_size / list_shape: how the server pages its device list ("relay", "array" or "items").
        tls_dir: where the server's certificate is kept and reused (None: a new one in a temporary folder).
    """

    actions: ClassVar[dict[str, tuple[tuple[str, ...], frozenset[str]]]] = {
        "audio_mute": (("channel",), frozenset({"on"})),
        "list_shape": (("shape",), frozenset()),
    }

    def __init__(
        self,
        rig: RigDevice,
        *,
        api_key: str = DEMO_API_KEY,
        page_size: int = 2,
        list_shape: str = "relay",
        tls_dir: Path | str | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            entry = device_model(rig.model, driver=spec.DRIVER)
        except KeyError:
            raise SimulatorError(f"{rig.key}: {rig.model!r} is not a System API model") from None
        if list_shape not in LIST_SHAPES:
            raise SimulatorError(f"list_shape must be one of {', '.join(LIST_SHAPES)}")
        self.model = entry.model
        self.is_pack = entry.model in PACK_MODELS
        default_tx = entry.model if self.is_pack else (None if entry.is_iem else "AD2")
        super().__init__(
            rig, channels=entry.channels, family=spec.FAMILY, default_tx=default_tx, is_iem=entry.is_iem, **kwargs
        )
        self.requested_port = self.port
        self.api_key, self.page_size, self.shape, self.tls_dir = api_key, page_size, list_shape, tls_dir
        self.name_width = 31
        self.server: SystemApiServer | None = None
        self.wants_listener = False
        crc = zlib.crc32(rig.device_id.encode())
        self.serial = f"3TJ{crc % 1_000_000:06d}"
        self.cycle_count = random.Random(crc).randint(5, 300)

    # Engine hooks -------------------------------------------------------------------------------------

    async def _listen(self) -> None:
        server = self.server or SystemApiServer.for_device(self)
        if self not in server.members:
            server.members.append(self)
        self.server = server
        self.wants_listener = True
        try:
            await server.sync()
        except SimulatorBindError:
            self.wants_listener = False
            raise
        self.port = server.port  # the bound port when it was 0

    async def _unlisten(self) -> None:
        # Powered off: still listed, OFFLINE. Stopped: gone from the server, which closes when it is empty.
        self.wants_listener = False
        if self.server is not None:
            if not self._running and self in self.server.members:
                self.server.members.remove(self)
            await self.server.sync()

    async def _disconnect_all(self) -> None:
        if self.server is not None and not self.server.members:
            self.server.disconnect_all()

    @property
    def listening(self) -> bool:
        return self.wants_listener and self.server is not None and self.server.listening

    @property
    def client_count(self) -> int:
        return self.server.connections if self.server is not None else 0

    def _reported_values(self) -> dict[tuple[int, str], str]:
        values = {(0, "state"): self.state}
        for ch in self.channels:
            values[(ch.number, "name")] = ch.name
            if self.is_pack:
                values[(ch.number, "battery")] = str(round(ch.battery_pct))
        return values

    def _emit_changes(self, changes: list[tuple[int, str, str]]) -> None:
        """Nobody is told: the server's WebSocket events are not simulated (micboard polls this family)."""

    def _emit_meter(self, ch: ChannelState) -> None:
        """No meter stream exists in the System API; activity is read on request."""

    @property
    def running(self) -> bool:
        return self._running

    async def set_fault(self, kind: str | None) -> None:
        """As the engine's; the fault is the server's, so its listener follows every device on it."""
        await super().set_fault(kind)
        if self.server is not None and self._running:
            await self.server.sync()

    # What the server says about this device -----------------------------------------------------------

    @property
    def state(self) -> str:
        """ONLINE while powered (a pack: while switched on too), else OFFLINE."""
        online = self.powered and (not self.is_pack or self.channels[0].tx_on)
        return spec.STATE_ONLINE if online else spec.STATE_OFFLINE

    def capabilities(self) -> list[str]:
        if self.is_pack:
            return list(_PACK_CAPABILITIES)
        return list(_DEVICE_CAPABILITIES if self.is_iem else _RECEIVER_CAPABILITIES)

    def node(self) -> dict[str, Any]:
        return {
            "hardwareIdentity": {"deviceId": self.device_id, "serialNumber": self.serial},
            "softwareIdentity": {"model": self.model, "firmwareVersion": _FIRMWARE.get(self.model, "2.7.6.0")},
            "deviceState": self.state,
            "compatibility": "COMPATIBLE_LATEST",
            "communicationProtocol": {"address": self.host, "name": "ESTA.DMP"},
            "capabilities": self.capabilities(),
        }

    def channel_id(self, ch: ChannelState) -> str:
        descriptor = {"t": "AudioChannel", "c": self.model, "v": 131088, "s": "CH", "i": ch.number - 1}
        return base64.b64encode(json.dumps(descriptor, separators=(",", ":")).encode()).decode()

    def resource(self, parts: list[str]) -> Any:
        """The answer to ``GET …/devices/{id}/<parts>``; raises _Reply for an error answer."""
        if not parts:
            return self.node()
        if self.state != spec.STATE_ONLINE:
            raise _Reply(404, "Device is offline")
        name, rest = parts[0], parts[1:]
        if name not in self.capabilities():
            raise _Reply(405, "Capability not supported")
        if name == spec.AUDIO_CHANNELS:
            return self._channel_resource(rest) if rest else self._channel_list()
        if rest:
            raise _Reply(404, "Not found")
        first = self.channels[0]
        if name == spec.NAME:
            return {"name": first.name if self.is_pack else self.rig.name}
        if name == spec.IDENTIFY:
            return {"identifying": False}
        if name == spec.AUDIO_MUTE:
            return {"muted": first.tx_muted if self.is_pack else all(ch.audio_mute for ch in self.channels)}
        if name == spec.BATTERY_LEVEL:
            return self._battery_level(first)
        if name == spec.BATTERY_HEALTH:
            return {"percentage": first.health, "cycleCount": self.cycle_count}
        raise _Reply(404, "Not found")  # capabilities without a readable resource (reboot, uptime)

    def _battery_level(self, ch: ChannelState) -> dict[str, Any]:
        minutes, calculating = self._runtime(ch)
        if calculating:
            status = {"currentState": spec.BATTERY_CALCULATING, "targetState": None, "timeToTargetState": None}
        else:
            status = {
                "currentState": spec.BATTERY_DISCHARGING,
                "targetState": spec.BATTERY_EMPTY,
                "timeToTargetState": f"PT{minutes}M",
            }
        return {"percentage": round(ch.battery_pct), "status": status}

    def _channel_list(self) -> list[dict[str, Any]]:
        capabilities = list(_IEM_CHANNEL_CAPABILITIES if self.is_iem else _RECEIVER_CHANNEL_CAPABILITIES)
        return [
            {"id": self.channel_id(ch), "role": "SOURCE", "group": "GENERIC", "capabilities": capabilities}
            for ch in self.channels
        ]

    def _channel_resource(self, rest: list[str]) -> Any:
        ch = next((ch for ch in self.channels if self.channel_id(ch) == rest[0]), None)
        if ch is None or len(rest) != 2:
            raise _Reply(404, "Channel not found")
        item = rest[1]
        if item == spec.CHANNEL_NAME:
            return {"name": ch.name}
        if item == spec.CHANNEL_ACTIVITY:
            return {"audioLevel": self.activity(ch)}
        if item == spec.CHANNEL_GAIN:
            return {"gain": ch.audio_gain - 18}
        if item == spec.CHANNEL_MUTE and not self.is_iem:
            return {"muted": ch.audio_mute}
        raise _Reply(405 if item == spec.CHANNEL_MUTE else 404, "Not found")

    def activity(self, ch: ChannelState) -> str:
        """LOW / GOOD / CLIPPING from the engine's audio now (a pending clip is used up)."""
        meter = self._meter(ch, consume_clip=True)
        if meter.peak >= -1.0:
            return spec.ACTIVITY_CLIPPING
        return spec.ACTIVITY_GOOD if meter.rms >= -45.0 else spec.ACTIVITY_LOW

    # Control ------------------------------------------------------------------------------------------

    async def audio_mute(self, channel: int, on: bool = True) -> None:
        """Mute a receiver channel (its ``mute`` resource; an ADTQ's channels have none)."""
        self._channel(channel).audio_mute = bool(on)

    async def list_shape(self, shape: str) -> None:
        """Serve the server's device list as "relay" pages, a bare "array" or "items"."""
        if shape not in LIST_SHAPES:
            raise SimulatorError(f"shape must be one of {', '.join(LIST_SHAPES)}")
        self.shape = shape
        if self.server is not None:
            self.server.list_shape = shape

    def receiver_options(self) -> dict[str, str]:
        """The Receiver row's extras for this device (its server must have started)."""
        assert self.server is not None, "start the device first"
        return {
            "remote_id": self.device_id,
            "api_key": self.api_key,
            "tls_fingerprint": self.server.certificate.fingerprint,
        }

    def snapshot(self) -> dict[str, Any]:
        data = super().snapshot()
        server = self.server
        data.update(
            {
                "state": self.state,
                "api_key": self.api_key,
                "list_shape": server.list_shape if server else self.shape,
                "server_fault": server.fault if server else None,
                "requests": server.requests if server else 0,
                "tls_sha256": server.certificate.sha256 if server else None,
                "tls_fingerprint": server.certificate.fingerprint if server else None,
                "tls_cert_path": str(server.certificate.cert_path) if server else None,
            }
        )
        return data
