"""Asyncio simulator of Sennheiser SSC v1 receivers (JSON over UDP): EW-DX EM 2 / EM 4, SpeechLine DW.

A faithful other end for :mod:`micboard.drivers.ssc` (protocols.md §5, §7.5): one JSON object per datagram,
replies from the device's port to the sender's, strict JSON (malformed -> 400, nothing executed), the address
tree walked (``null`` reads, a value writes with validation and is echoed, unknown address 404, writing a
read-only leaf 403, a bad value 406), ``/mates/txN/*`` answering 424 while the transmitter is off, and
subscriptions per client address with ``min`` / ``max`` / ``lifetime`` / ``count`` / ``cancel``, an initial
notification, the union of a client's requests, 310 on expiry and at most 8 subscribing clients. Meters run at
≈10 Hz (``meter_ms``) while anyone subscribes to them [U: no source for the real rate].

The dynamics, control API, faults and hub come from :mod:`micboard.simulators.engine`. Faults on UDP:
``refuse`` closes the socket (the kernel answers ICMP port unreachable), ``silent`` / ``stop_answering`` /
``third_party_disabled`` drop every packet (EW-DX with third-party access off, §5.1 [U]), ``garbage`` sends
junk datagrams before some replies, ``drop_mid_frame`` cuts every datagram short (invalid JSON), ``slow`` holds
every datagram back 1.5 s. A transmitter that is off or out of range (``rf_loss``) has no link: RSQI 0,
diversity 0, RSSI at the floor, AF at -138 dBFS, the ``NoLink`` warning, no active mates, 424 for its leaves.
The family action ``end_subscriptions`` ends every subscription with 310 at once. No Django imports.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from micboard.drivers.ssc_spec import EWDX, SPEECHLINE_MCR, SPEECHLINE_RACK, Path, ssc_model
from micboard.simulators.engine import ChannelState, SimulatedDevice, SimulatorBindError, SimulatorError
from micboard.simulators.rig import RigDevice

__all__ = ["SimulatedSscDevice"]

MAX_CLIENTS = 8  # subscribing clients (documented for the SpeechLine MCR, §5.3)
METER_MS = 100  # meter cadence while subscribed (≈10 Hz, §7.5 [U])
HOUSEKEEPING_SECONDS = 0.1  # expiry, count, `min` refresh and throttled changes are checked this often
PEAK_HOLD_SECONDS = 1.5  # the AfPeak warning stays up this long after a clip
MAX_REPLY = 8192  # a longer answer is refused with 450 ("answer too long")
_GARBAGE_P = 0.35  # garbage fault: chance that a datagram is preceded by junk
_DEFAULT_TX = {EWDX: "SKM", SPEECHLINE_RACK: "SL HH DW", SPEECHLINE_MCR: "SL BP DW"}
# EW-DX frequency codes and their ranges in kHz [M].
_BANDS = {"Q1-9": (470200, 550000), "R1-9": (520000, 607800), "S1-10": (606200, 693800)}
_EWDX_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -_.+/#*&()")
_SPEECHLINE_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_SPEECHLINE_DEVICE_TYPES = {"HH": 0, "BP": 1, "TS": 2, "BL": 3}  # from the rig's model name, e.g. "SL HH DW"
_OFF = object()  # a /mates leaf of a transmitter with no link: answered with 424


@dataclass
class SscChannel(ChannelState):
    peak_until: float = 0.0  # loop time until which the AfPeak warning shows


@dataclass(frozen=True, slots=True)
class _Leaf:
    get: Callable[[], Any]
    set: Callable[[Any], None] | None = None  # None: read-only (a write is answered with 403)
    channel: SscChannel | None = None  # /mates leaf of this channel's transmitter: 424 without a link
    meter: int = 0  # channel number of a meter leaf


@dataclass(eq=False)
class _Sub:
    """One subscribed leaf of one client."""

    min_ms: int
    max_ms: int
    expires: float
    count: int
    sent_at: float = -math.inf
    sent: str | None = None  # the value last notified (JSON)
    pending: bool = False  # changed since, held back by `max`


@dataclass(eq=False)
class _Client:
    addr: tuple[str, int]
    session: list
    leaves: dict[Path, _Sub] = field(default_factory=dict)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, device: SimulatedSscDevice) -> None:
        self.device = device

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.device._on_datagram(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:  # an ICMP error about a client that went away
        self.device.stats["icmp_errors"] += 1


def _strict_json(data: bytes) -> dict[str, Any]:
    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    message = json.loads(data.decode("utf-8"), parse_constant=constant)
    if not isinstance(message, dict):
        raise ValueError("an SSC message is a JSON object")
    return message


def _nest(root: dict[str, Any], path: Path, value: Any) -> None:
    node = root
    for key in path[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            return
        node = child
    node[path[-1]] = value


def _error_tree(errors: list[tuple[Path, int]]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path, code in errors:
        _nest(tree, path, [code])
    return tree


class SimulatedSscDevice(SimulatedDevice):
    """One simulated SSC v1 receiver listening on UDP (the rig's address; ``port=0`` for an ephemeral one).

    Args (beyond :class:`~micboard.simulators.engine.SimulatedDevice`'s):
        max_clients: subscribing clients allowed at once (the next one gets a 503 error).
        meter_ms: meter cadence while anyone subscribes to meters.
    """

    extra_faults: ClassVar[tuple[str, ...]] = ("third_party_disabled",)
    mute_faults: ClassVar[tuple[str, ...]] = ("silent", "stop_answering", "third_party_disabled")
    actions: ClassVar[dict[str, tuple[tuple[str, ...], frozenset[str]]]] = {"end_subscriptions": ((), frozenset())}
    channel_class: ClassVar[type[ChannelState]] = SscChannel

    def __init__(self, rig: RigDevice, *, max_clients: int = MAX_CLIENTS, meter_ms: int = METER_MS, **options: Any):
        try:
            self.spec = ssc_model(rig.model)
        except KeyError:
            raise SimulatorError(f"{rig.key}: {rig.model!r} is not an SSC model") from None
        super().__init__(
            rig,
            channels=self.spec.channels,
            family=self.spec.family,
            default_tx=_DEFAULT_TX[self.spec.dialect],
            **options,
        )
        self.dialect = self.spec.dialect
        self.max_clients = max_clients
        self.meter_ms = meter_ms
        self.name_width = 8
        self.name_chars = _EWDX_NAME_CHARS if self.dialect == EWDX else _SPEECHLINE_NAME_CHARS
        self.audio_floor = (-138.0, -138.0)
        self.device_name = rig.name[:18]
        self.firmware = "4.1.0" if self.dialect == EWDX else "2.0.4"
        self.frequency_code = self._place_in_band() if self.dialect == EWDX else ""
        self.stats.update(
            requests=0, bad_requests=0, subscribes=0, cancels=0, expired=0, notifications=0, refused_clients=0
        )
        self.stats.update(garbage_datagrams=0, cut_datagrams=0, icmp_errors=0, dropped_requests=0)
        self._net_rng = random.Random(self._dseed ^ 0x55C)
        self._transport: asyncio.DatagramTransport | None = None
        self._housekeeping: asyncio.Task | None = None
        self._clients: dict[tuple[str, int], _Client] = {}
        self._leaves: dict[Path, _Leaf] = self._schema()
        self._branches = {p[:i] for p in self._leaves for i in range(1, len(p))}

    # ------------------------------------------------------------ the address tree

    def _place_in_band(self) -> str:
        """The frequency code whose range holds the rig's frequencies; others are moved into it."""
        wanted = [ch.frequency_khz for ch in self.channels]
        code = next((c for c, (lo, hi) in _BANDS.items() if all(lo <= f <= hi for f in wanted)), "Q1-9")
        lo, hi = _BANDS[code]
        for ch in self.channels:
            if not lo <= ch.frequency_khz <= hi:
                steps = (hi - lo) // 25
                ch.frequency_khz = lo + 25 * (zlib.crc32(f"{self.key}{ch.number}".encode()) % steps)
        return code

    def _linked(self, ch: SscChannel) -> bool:
        return ch.tx_on and not ch.rf_lost

    def _schema(self) -> dict[Path, _Leaf]:
        leaves: dict[Path, _Leaf] = {
            ("device", "name"): _Leaf(lambda: self.device_name, self._set_device_name),
            ("device", "identity", "product"): _Leaf(lambda: self.spec.product),
            ("device", "identity", "serial"): _Leaf(lambda: self.device_id),
            ("device", "identity", "version"): _Leaf(lambda: self.firmware),
            ("device", "identity", "vendor"): _Leaf(lambda: "Sennheiser"),
        }
        if self.dialect == EWDX:
            leaves[("device", "frequency_code")] = _Leaf(lambda: self.frequency_code)
            leaves[("mates", "active")] = _Leaf(
                lambda: [f"mates/tx{c.number}" for c in self.channels if self._linked(c)]
            )
        elif self.dialect == SPEECHLINE_RACK:
            leaves[("mates", "active")] = _Leaf(lambda: [f"tx{c.number}" for c in self.channels if self._linked(c)])
        for ch in self.channels:
            leaves.update(self._ewdx_leaves(ch) if self.dialect == EWDX else self._speechline_leaves(ch))
        return leaves

    def _ewdx_leaves(self, ch: SscChannel) -> dict[Path, _Leaf]:
        rx, tx, m, n = f"rx{ch.number}", ("mates", f"tx{ch.number}"), ("m", f"rx{ch.number}"), ch.number
        minutes = self._minutes
        return {
            (rx, "name"): _Leaf(lambda: ch.name, lambda v: self._set_rx_name(ch, v)),
            (rx, "frequency"): _Leaf(lambda: ch.frequency_khz, lambda v: self._set_frequency(ch, v)),
            (rx, "mute"): _Leaf(lambda: ch.audio_mute, lambda v: setattr(ch, "audio_mute", self._bool(v))),
            (rx, "gain"): _Leaf(lambda: ch.audio_gain, lambda v: self._set_gain(ch, v)),
            (rx, "warnings"): _Leaf(lambda: self._rx_warnings(ch, "NoLink")),
            (*tx, "battery", "gauge"): _Leaf(lambda: round(ch.battery_pct), channel=ch),
            (*tx, "battery", "lifetime"): _Leaf(lambda: minutes(ch), channel=ch),
            (*tx, "battery", "type"): _Leaf(
                lambda: "Battery" if ch.battery_type == "LION" else "Primary Cell", channel=ch
            ),
            (*tx, "type"): _Leaf(lambda: ch.tx_model, channel=ch),
            (*tx, "name"): _Leaf(lambda: ch.name, channel=ch),
            (*tx, "mute"): _Leaf(lambda: ch.tx_muted, channel=ch),
            (*tx, "warnings"): _Leaf(lambda: ["LowBattery"] if ch.battery_pct <= 10 else [], channel=ch),
            (*m, "rssi"): _Leaf(lambda: self._meters(ch)["rssi"], meter=n),
            (*m, "rsqi"): _Leaf(lambda: self._meters(ch)["rsqi"], meter=n),
            (*m, "divi"): _Leaf(lambda: self._meters(ch)["divi"], meter=n),
            (*m, "af"): _Leaf(lambda: self._meters(ch)["af"], meter=n),
        }

    def _speechline_leaves(self, ch: SscChannel) -> dict[Path, _Leaf]:
        rx, tx, n = f"rx{ch.number}", ("mates", f"tx{ch.number}"), ch.number
        mcr = self.dialect == SPEECHLINE_MCR
        code = next((c for k, c in _SPEECHLINE_DEVICE_TYPES.items() if k in (ch.tx_model or "").upper()), 0)
        leaves = {
            (rx, "name"): _Leaf(lambda: ch.name, lambda v: self._set_rx_name(ch, v)),
            (rx, "mute_state"): _Leaf(lambda: ch.tx_muted),
            # The rack receiver gives the mute mode as a number, the MCR as a string (§5.6) [U: the values].
            (rx, "mute_mode"): _Leaf(lambda: "push_to_mute" if mcr else 1),
            (rx, "rf_quality"): _Leaf(lambda: self._meters(ch)["rsqi"], meter=n),
            (*tx, "bat_gauge"): _Leaf(lambda: round(ch.battery_pct), channel=ch),
            (*tx, "bat_bars"): _Leaf(lambda: self._bars(ch.battery_pct), channel=ch),
            (*tx, "bat_lifetime"): _Leaf(
                lambda: None if self._minutes(ch) is None else self._minutes(ch) * 60, channel=ch
            ),
            (*tx, "bat_health"): _Leaf(lambda: ch.health, channel=ch),
            (*tx, "bat_cycles"): _Leaf(lambda: ch.cycle_count, channel=ch),
            (*tx, "bat_type"): _Leaf(lambda: 1 if ch.battery_type == "LION" else 0, channel=ch),
            (*tx, "bat_charging"): _Leaf(lambda: False, channel=ch),
            (*tx, "device_type"): _Leaf(lambda: code, channel=ch),
            (*tx, "switch1", "state"): _Leaf(lambda: ch.tx_muted, channel=ch),
            (*tx, "warnings"): _Leaf(lambda: "Low Bat" if ch.battery_pct <= 10 else "", channel=ch),
        }
        if mcr:
            leaves[(rx, "warnings")] = _Leaf(lambda: self._rx_warnings(ch, "No Link"))
            leaves[(rx, "mates")] = _Leaf(lambda: [f"mates/tx{n}"] if self._linked(ch) else [])
        return leaves

    def _minutes(self, ch: SscChannel) -> int | None:
        minutes, calculating = self._runtime(ch)
        return None if calculating else minutes

    def _rx_warnings(self, ch: SscChannel, no_link: str) -> list[str]:
        warnings = [] if self._linked(ch) else [no_link]
        if self._loop is not None and (ch.clip_samples > 0 or self._now() < ch.peak_until):
            warnings.append("AfPeak")
        return warnings

    def _meters(self, ch: SscChannel, *, consume_clip: bool = False) -> dict[str, Any]:
        meter = self._meter(ch, consume_clip=consume_clip)
        best = max(meter.rssi) if meter.rssi else -105.0
        if not self._linked(ch):
            return {"rssi": round(min(best, -105.0), 1), "rsqi": 0, "divi": 0, "af": -138.0}
        af = meter.peak if meter.peak >= -2.0 else meter.rms
        if meter.peak >= -2.0:
            ch.peak_until = self._now() + PEAK_HOLD_SECONDS
        rsqi = max(1, min(100, round((best + 100.0) * 2.5)))
        return {"rssi": round(best, 1), "rsqi": rsqi, "divi": (meter.active or 0) + 1, "af": round(af, 1)}

    # Writes (validated; SimulatorError -> 406) ------------------------------------------------------

    @staticmethod
    def _bool(value: Any) -> bool:
        if not isinstance(value, bool):
            raise SimulatorError("expected true or false")
        return value

    def _set_device_name(self, value: Any) -> None:
        if not isinstance(value, str) or not 1 <= len(value) <= 18 or any(c not in self.name_chars for c in value):
            raise SimulatorError("device name: 1-18 characters")
        self.device_name = value

    def _set_rx_name(self, ch: SscChannel, value: Any) -> None:
        if not isinstance(value, str):
            raise SimulatorError("name: a string")
        name = value.upper() if self.dialect == EWDX else value
        if not 1 <= len(name) <= self.name_width or any(c not in self.name_chars for c in name):
            raise SimulatorError(f"name: 1-{self.name_width} allowed characters")
        ch.name = name

    def _set_frequency(self, ch: SscChannel, value: Any) -> None:
        lo, hi = _BANDS[self.frequency_code]
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi or value % 25:
            raise SimulatorError(f"frequency: {lo}-{hi} kHz in 25 kHz steps")
        ch.frequency_khz = value

    def _set_gain(self, ch: SscChannel, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not -3 <= value <= 42 or value % 3:
            raise SimulatorError("gain: -3 to 42 dB in 3 dB steps")
        ch.audio_gain = value

    async def set_name(self, channel: int, name: str) -> None:
        """Rename a channel on the front panel (EW-DX keeps names in upper case)."""
        if isinstance(name, str) and self.dialect == EWDX:
            name = name.upper()
        await super().set_name(channel, name)

    async def end_subscriptions(self) -> None:
        """End every subscription now with 310, as when their lifetime or count runs out."""
        for client in list(self._clients.values()):
            self._terminate(client, list(client.leaves))

    async def peak(self, channel: int, samples: int = 3) -> None:
        """A clip: the next meters near 0 dBFS and the AfPeak warning for PEAK_HOLD_SECONDS."""
        await super().peak(channel, samples)
        self._channel(channel).peak_until = self._now() + PEAK_HOLD_SECONDS
        self._publish_changes()

    # ------------------------------------------------------------ engine hooks

    @property
    def listening(self) -> bool:
        return self._transport is not None

    @property
    def client_count(self) -> int:
        return len(self._clients)

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Protocol(self), local_addr=(self.host, self.port)
            )
        except OSError as exc:
            raise SimulatorBindError(
                f"{self.key} ({self.rig.model}): cannot listen on UDP {self.host}:{self.port}: {exc.strerror or exc}"
            ) from exc
        self._transport = transport
        if self.port == 0:
            self.port = transport.get_extra_info("sockname")[1]
        self._housekeeping = loop.create_task(self._housekeeping_loop(), name=f"sim-{self.key}-ssc")

    async def _unlisten(self) -> None:
        """Close the socket: datagrams now get ICMP port unreachable; subscriptions end with it."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
            self._housekeeping = None
        await self._disconnect_all()

    async def _disconnect_all(self) -> None:
        for addr in list(self._clients):
            self._drop_client(addr)

    def _reported_values(self) -> dict[tuple[int, str], str]:
        return {(0, "/".join(path)): self._encoded(path) for path, leaf in self._leaves.items() if not leaf.meter}

    def _emit_changes(self, changes: list[tuple[int, str, str]]) -> None:
        for _, key, _ in changes:
            path = tuple(key.split("/"))
            for client in self._clients.values():
                sub = client.leaves.get(path)
                if sub is not None:
                    sub.pending = True
        self._flush()

    def _emit_meter(self, ch: ChannelState) -> None:
        assert isinstance(ch, SscChannel)
        values = self._meters(ch, consume_clip=True)
        now = self._now()
        for client in list(self._clients.values()):
            due: dict[Path, Any] = {}
            for path, sub in client.leaves.items():
                leaf = self._leaves[path]
                if leaf.meter != ch.number:
                    continue
                value = values[path[-1] if path[-1] != "rf_quality" else "rsqi"]
                if self._due(sub, json.dumps(value), now):
                    due[path] = value
            self._notify(client, due, now)

    def _on_boot(self) -> None:
        for ch in self.channels:
            ch.peak_until = 0.0

    def _snapshot_channel(self, ch: ChannelState) -> dict[str, Any]:
        assert isinstance(ch, SscChannel)
        snap = super()._snapshot_channel(ch)
        snap["linked"] = self._linked(ch)
        return snap

    def snapshot(self) -> dict[str, Any]:
        snap = super().snapshot()
        snap["subscribers"] = {
            f"{a[0]}:{a[1]}": {"leaves": len(c.leaves), "meters": sum(1 for p in c.leaves if self._leaves[p].meter)}
            for a, c in self._clients.items()
        }
        return snap

    # ------------------------------------------------------------ the wire

    def _encoded(self, path: Path) -> str:
        leaf = self._leaves[path]
        if leaf.channel is not None and not self._linked(leaf.channel):
            return "424"
        return json.dumps(leaf.get())

    def _send(self, addr: tuple[str, int], data: bytes) -> None:
        if self._transport is None or not self.output_enabled:
            return
        if self.fault == "drop_mid_frame":
            data = data[: max(1, len(data) // 2)]
            self.stats["cut_datagrams"] += 1
        datagrams = [data]
        if self.fault == "garbage" and self._net_rng.random() < _GARBAGE_P:
            datagrams.insert(0, self._garbage())
            self.stats["garbage_datagrams"] += 1
        delay = self.reply_delay
        for datagram in datagrams:
            if delay:
                asyncio.get_running_loop().call_later(delay, self._sendto, datagram, addr)
            else:
                self._sendto(datagram, addr)

    def _sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._transport is not None and self.output_enabled:
            with contextlib.suppress(OSError):
                self._transport.sendto(data, addr)

    def _garbage(self) -> bytes:
        rng = self._net_rng
        choice = rng.randrange(4)
        if choice == 0:
            return bytes(rng.randrange(256) for _ in range(rng.randint(1, 40)))
        if choice == 1:
            return b'{"rx1":{"name":"' + bytes(rng.randrange(65, 91) for _ in range(5))
        return rng.choice((b"[1,2,3]", b"null", b'"osc"', b"{}}", b'{"m":{"rx1":{"af":NaN}}}', b"\xef\xbb\xbf{"))

    def _on_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        self.stats["requests"] += 1
        if not self.output_enabled:
            self.stats["dropped_requests"] += 1
            return
        try:
            message = _strict_json(data)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            self.stats["bad_requests"] += 1
            desc = f"message not understood: {exc.__class__.__name__}"
            self._reply(addr, {}, {"error": [{"osc": [400, {"desc": desc}]}]})
            return
        values: dict[str, Any] = {}
        errors: list[tuple[Path, int]] = []
        osc: dict[str, Any] = {}
        wrote = False
        after: list[Callable[[], None]] = []
        for key, node in message.items():
            if key == "osc":
                self._osc(addr, node, osc, errors, after)
            else:
                wrote |= self._walk((key,), node, values, errors)
        if errors:
            osc["error"] = [_error_tree(errors)]
        self._reply(addr, values, osc)
        for step in after:  # initial notifications follow the subscription's echo
            step()
        if wrote:
            self._publish_changes()

    def _reply(self, addr: tuple[str, int], values: dict[str, Any], osc: dict[str, Any]) -> None:
        body = json.dumps(values, separators=(",", ":"))[1:-1]
        parts = [body] if body else []
        if "xid" in osc and len(osc) > 1:  # two "osc" members, as in the vendor's example (§5.2)
            rest = {k: v for k, v in osc.items() if k != "xid"}
            parts += [f'"osc":{json.dumps({"xid": osc["xid"]})}', f'"osc":{json.dumps(rest, separators=(",", ":"))}']
        elif osc:
            parts.append(f'"osc":{json.dumps(osc, separators=(",", ":"))}')
        data = ("{" + ",".join(parts) + "}").encode()
        if len(data) > MAX_REPLY:
            data = json.dumps({"osc": {"error": [{"osc": [450, {"desc": "answer too long"}]}]}}).encode()
        self._send(addr, data)

    def _walk(self, path: Path, node: Any, out: dict[str, Any], errors: list[tuple[Path, int]]) -> bool:
        """Read or write ``node`` at ``path``; return True when something was written."""
        leaf = self._leaves.get(path)
        if leaf is None:
            if path not in self._branches:
                errors.append((path, 404))
                return False
            if node is None:  # a branch read with null: every leaf below it
                for p in self._leaves:
                    if p[: len(path)] == path:
                        self._read(p, out, errors)
                return False
            if not isinstance(node, dict):
                errors.append((path, 400))
                return False
            wrote = False
            for key, child in node.items():
                wrote |= self._walk((*path, key), child, out, errors)
            return wrote
        if node is None:
            self._read(path, out, errors)
            return False
        if leaf.set is None:
            errors.append((path, 403))
            return False
        try:
            leaf.set(node)
        except SimulatorError:
            errors.append((path, 406))
            return False
        _nest(out, path, leaf.get())  # the echo: the value now set
        return True

    def _read(self, path: Path, out: dict[str, Any], errors: list[tuple[Path, int]]) -> None:
        encoded = self._encoded(path)
        if encoded == "424":
            errors.append((path, 424))
        else:
            _nest(out, path, json.loads(encoded))

    # ------------------------------------------------------------ /osc: xid, ping, subscriptions

    def _osc(
        self,
        addr: tuple[str, int],
        node: Any,
        osc: dict[str, Any],
        errors: list[tuple[Path, int]],
        after: list[Callable[[], None]],
    ) -> None:
        if not isinstance(node, dict):
            errors.append((("osc",), 400))
            return
        for key, value in node.items():
            if key == "xid":
                osc["xid"] = value
            elif key == "ping":
                osc["ping"] = None
            elif key == "version":
                osc["version"] = "1.0"
            elif key == "state" and isinstance(value, dict) and set(value) == {"subscribe"}:
                echoed = self._subscribe(addr, value["subscribe"], errors, after)
                if echoed is not None:
                    osc["state"] = {"subscribe": echoed}
            else:
                errors.append((("osc", key), 404))

    def _leaves_of(self, tree: dict[str, Any], errors: list[tuple[Path, int]]) -> list[Path]:
        found: list[Path] = []

        def walk(path: Path, node: Any) -> None:
            if path in self._leaves:
                found.append(path)
            elif path in self._branches and node is None:
                found.extend(p for p in self._leaves if p[: len(path)] == path)
            elif path in self._branches and isinstance(node, dict):
                for key, child in node.items():
                    walk((*path, key), child)
            else:
                errors.append((path, 404))

        for key, node in tree.items():
            walk((key,), node)
        return found

    def _subscribe(
        self, addr: tuple[str, int], entries: Any, errors: list[tuple[Path, int]], after: list[Callable[[], None]]
    ) -> list[dict[str, Any]] | None:
        where = ("osc", "state", "subscribe")
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            errors.append((where, 400))
            return None
        if addr not in self._clients and len(self._clients) >= self.max_clients:
            self.stats["refused_clients"] += 1
            errors.append((where, 503))
            return None
        echoed = []
        for entry in entries:
            params = entry.get("#", {})
            tree = {k: v for k, v in entry.items() if k != "#"}
            paths = self._leaves_of(tree, errors)
            if not isinstance(params, dict):
                errors.append((where, 406))
                continue
            if params.get("cancel") is True:
                self.stats["cancels"] += 1
                self._cancel(addr, paths if tree else None)
                echoed.append({"#": {"cancel": True}, **tree})
                continue
            try:
                lifetime, count, min_ms, max_ms = (
                    self._param(params, name, default)
                    for name, default in (("lifetime", 10), ("count", 1000), ("min", 0), ("max", 0))
                )
            except SimulatorError:
                errors.append((where, 406))
                continue
            if not paths:
                continue
            self.stats["subscribes"] += 1
            client = self._clients.get(addr)
            if client is None:
                client = self._clients[addr] = _Client(addr, self._open_session())
            expires = self._now() + lifetime
            for path in paths:
                client.leaves[path] = _Sub(min_ms, max_ms, expires, max(1, count))
            echoed.append({"#": {"min": min_ms, "max": max_ms, "count": count, "lifetime": lifetime}, **tree})
            after.append(lambda c=client, ps=tuple(paths): self._initial(c, ps))
        self._sync_meters()
        return echoed

    @staticmethod
    def _param(params: dict[str, Any], name: str, default: int) -> int:
        value = params.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 3_600_000:
            raise SimulatorError(f"{name}: a non-negative integer")
        return value

    def _initial(self, client: _Client, paths: tuple[Path, ...]) -> None:
        if self._clients.get(client.addr) is not client:
            return
        now = self._now()
        due = {p: None for p in paths if p in client.leaves}
        self._notify(client, due, now, fresh=True)

    def _cancel(self, addr: tuple[str, int], paths: list[Path] | None) -> None:
        client = self._clients.get(addr)
        if client is None:
            return
        for path in client.leaves.copy() if paths is None else paths:
            client.leaves.pop(path, None)
        if not client.leaves:
            self._drop_client(addr)
        self._sync_meters()

    def _drop_client(self, addr: tuple[str, int]) -> None:
        client = self._clients.pop(addr, None)
        if client is not None:
            client.session[1] = time.time()
        self._sync_meters()

    def _sync_meters(self) -> None:
        wanted = {self._leaves[p].meter for c in self._clients.values() for p in c.leaves}
        for ch in self.channels:
            self._set_meter_rate(ch, self.meter_ms if ch.number in wanted else 0)

    def _due(self, sub: _Sub, value: str, now: float) -> bool:
        elapsed = (now - sub.sent_at) * 1000
        if value != sub.sent or sub.pending:
            return elapsed >= sub.max_ms
        return sub.min_ms > 0 and elapsed >= sub.min_ms

    def _notify(self, client: _Client, due: dict[Path, Any], now: float, *, fresh: bool = False) -> None:
        """Send ``due`` leaves to a client (values computed now unless given), count them, end spent ones."""
        if not due:
            return
        values: dict[str, Any] = {}
        errors: list[tuple[Path, int]] = []
        spent: list[Path] = []
        for path, given in due.items():
            sub = client.leaves[path]
            encoded = json.dumps(given) if given is not None else self._encoded(path)
            if encoded == "424":
                errors.append((path, 424))
            else:
                _nest(values, path, json.loads(encoded))
            sub.sent, sub.sent_at, sub.pending = encoded, now, False
            if not fresh:
                sub.count -= 1
                if sub.count <= 0:
                    spent.append(path)
        self.stats["notifications"] += 1
        self._reply(client.addr, values, {"error": [_error_tree(errors)]} if errors else {})
        if spent:
            self._terminate(client, spent)

    def _terminate(self, client: _Client, paths: list[Path]) -> None:
        """310: these subscriptions ended (lifetime over or count used up)."""
        for path in paths:
            client.leaves.pop(path, None)
        self.stats["expired"] += len(paths)
        error = {"error": [_error_tree([(p, 310) for p in paths]), {"desc": "subscription terminates"}]}
        self._reply(client.addr, {}, error)
        if not client.leaves:
            self._drop_client(client.addr)
        else:
            self._sync_meters()

    def _flush(self) -> None:
        """Changed (and `min`-refreshed) non-meter leaves to their subscribers, honouring `max`."""
        if self._loop is None:
            return
        now = self._now()
        cache: dict[Path, str] = {}
        for client in list(self._clients.values()):
            due: dict[Path, Any] = {}
            for path, sub in client.leaves.items():
                if self._leaves[path].meter:
                    continue
                encoded = cache.get(path) or cache.setdefault(path, self._encoded(path))
                if self._due(sub, encoded, now):
                    due[path] = None
            self._notify(client, due, now)

    async def _housekeeping_loop(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_SECONDS)
            now = self._now()
            for client in list(self._clients.values()):
                ended = [p for p, sub in client.leaves.items() if sub.expires <= now]
                if ended:
                    self._terminate(client, ended)
            self._flush()
