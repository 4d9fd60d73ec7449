"""Asyncio simulator of Shure command-string receivers (TCP 2202).

Emulates ULX-D, QLX-D, SLX-D, Axient Digital (AD4D/AD4Q) and PSM1000 (P10T) closely enough to
exercise a real driver: family-correct property names, padding and SAMPLE layouts, REP on every
non-metered change to every client, METER_RATE as device state, transmitter on/off sentinels,
chaotic TCP segmentation and switchable faults. See protocols.md §1 and §7.1-7.3, §7.8.

No Django imports: tests, ``manage.py simulate`` and anything else can use it directly.

* :class:`SimulatedShureDevice` - one receiver (or P10T) with an async control API.
* :class:`SimulatorHub` - many devices plus an optional JSON-lines control server.
* :class:`SimulatorThread` - a hub running in a background thread, for synchronous code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from micboard.drivers.shure_models import AXIENT, PSM1000, QLXD, SLXD, ULXD, shure_model
from micboard.simulators.rig import RigDevice

logger = logging.getLogger(__name__)

FAULTS = (None, "refuse", "silent", "third_party_disabled", "stop_answering", "drop_mid_frame", "garbage")
_MUTE_FAULTS = ("silent", "third_party_disabled", "stop_answering")

UNKNOWN_GROUP_CHANNEL = "--,--"
DEFAULT_CONTROL_PORT = 2299

# Characters a SET string may carry (protocols.md §1.4), minus the framing characters { } < >.
_ALLOWED_SET_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 !\"#$%&'()*+,-./:;=?@[\\]^_`~"
)

_TICK_SECONDS = 0.25  # dynamics / unsolicited-REP cadence (real time)
_COALESCE_P = 0.2  # chaos: chance that one write carries every frame already queued
_SPLIT_P = 0.08  # chaos: chance that one write is cut inside a frame and sent in two parts
_GARBAGE_P = 0.35  # garbage fault: chance that a write is preceded by junk
_INPUT_BUFFER_CAP = 4096
_MASK64 = (1 << 64) - 1

# Per-family vocabulary.
_REP_KEYWORD = {ULXD: "REP", QLXD: "REP", SLXD: "REP", AXIENT: "REP", PSM1000: "REPORT"}
_GC_NAME = {
    ULXD: "GROUP_CHAN",
    QLXD: "GROUP_CHAN",
    SLXD: "GROUP_CHANNEL",
    AXIENT: "GROUP_CHANNEL",
    PSM1000: "GROUP_CHAN",
}
_NAME_WIDTH = {ULXD: 8, QLXD: 8, SLXD: 31, AXIENT: 31, PSM1000: 8}
_NAME_SET_MAX = {ULXD: 8, QLXD: 8, SLXD: 8, AXIENT: 31, PSM1000: 8}
_DEVICE_ID_WIDTH = {ULXD: 8, QLXD: 8, SLXD: 8, AXIENT: 31, PSM1000: 8}
_FREQ_DIGITS = {ULXD: 6, QLXD: 6, SLXD: 7, AXIENT: 7, PSM1000: 6}
_FW_VER = {ULXD: ("2.7.6.0", 18), QLXD: ("2.6.10.0", 18), SLXD: ("2.0.15.2", 24), AXIENT: ("2.1.42.0", 24)}
_RF_BAND = {SLXD: "G55", AXIENT: "G57"}
_DEFAULT_TX = {ULXD: "ULXD2", QLXD: "QLXD2", SLXD: "SLXD2", AXIENT: "ADX2"}
_SUBINDEXED = {"RSSI": 2, "RSSI_LED_BITMAP": 2, "SLOT_STATUS": 8}
_SETTABLE = {
    ULXD: {"CHAN_NAME", "FREQUENCY", "GROUP_CHAN", "AUDIO_GAIN", "AUDIO_MUTE", "METER_RATE"},
    QLXD: {"CHAN_NAME", "FREQUENCY", "GROUP_CHAN", "AUDIO_GAIN", "METER_RATE"},
    SLXD: {"CHAN_NAME", "FREQUENCY", "GROUP_CHANNEL", "AUDIO_GAIN", "METER_RATE", "FLASH"},
    AXIENT: {"CHAN_NAME", "FREQUENCY", "GROUP_CHANNEL", "AUDIO_GAIN", "AUDIO_MUTE", "METER_RATE", "FLASH"},
    PSM1000: {
        "CHAN_NAME",
        "FREQUENCY",
        "GROUP_CHAN",
        "RF_TX_LVL",
        "RF_MUTE",
        "AUDIO_TX_MODE",
        "AUDIO_IN_LINE_LVL",
        "AUDIO_IN_LVL",
        "METER_RATE",
    },
}
_DEVICE_SETTABLE = {
    ULXD: {"DEVICE_ID", "FLASH"},
    QLXD: {"DEVICE_ID"},
    SLXD: {"DEVICE_ID", "FLASH"},
    AXIENT: {"DEVICE_ID", "FLASH"},
    PSM1000: {"DEVICE_NAME"},
}
_PSM_CHOICES = {"RF_TX_LVL": (10, 50, 100), "RF_MUTE": (0, 1), "AUDIO_TX_MODE": (1, 2, 3), "AUDIO_IN_LINE_LVL": (0, 1)}

# Audio floors (dBFS) with no transmitter / muted transmitter (protocols.md §7.2).
_AUDIO_FLOOR = {
    ULXD: (-60.0, -60.0),
    QLXD: (-60.0, -60.0),
    SLXD: (-100.0, -100.0),
    AXIENT: (-115.0, -95.0),
    PSM1000: (-90.0, -90.0),
}
# PSM1000 meters are large linear integers; this scale puts the micboard LED ladder at ≈ -58…-10 dB.
_PSM_LINEAR_FULL_SCALE = 7_900_000
_AUDIO_LED_THRESHOLDS = (-60.0, -50.0, -40.0, -30.0, -20.0, -10.0, -3.0)  # AD AUDIO_LED_BITMAP bits 0-6
_RF_LED_THRESHOLDS = (-90.0, -80.0, -70.0, -60.0, -50.0)  # AD RSSI_LED_BITMAP bits 0-4


class SimulatorError(RuntimeError):
    """A control request the simulator cannot carry out."""


class SimulatorBindError(SimulatorError):
    """A listener could not be opened (address in use, no such interface, ...)."""


class _CommandError(Exception):
    """A command the device answers with ``REP ERR``."""


def _hash01(*parts: int) -> float:
    """Deterministic uniform [0, 1) from integers (splitmix64-style mixing)."""
    x = 0x9E3779B97F4A7C15
    for part in parts:
        x = ((x ^ (part & _MASK64)) * 0xBF58476D1CE4E5B9) & _MASK64
        x ^= x >> 31
        x = (x * 0x94D049BB133111EB) & _MASK64
        x ^= x >> 29
    return (x >> 11) / float(1 << 53)


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _clamp(value: float, lo: float, hi: float) -> float:
    return lo if value < lo else hi if value > hi else value


def _num(value: float, width: int) -> str:
    return f"{int(value):0{width}d}"


def _braced(text: str, width: int | None) -> str:
    if width is None:
        return "{" + text + "}"
    return "{" + text[:width].ljust(width) + "}"


def _bits(level: float, thresholds: tuple[float, ...]) -> int:
    value = 0
    for bit, threshold in enumerate(thresholds):
        if level >= threshold:
            value |= 1 << bit
    return value


def _split_frames(buffer: str) -> tuple[list[str], str]:
    """Cut complete ``< ... >`` frames out of ``buffer``; return their bodies and the tail."""
    frames: list[str] = []
    while True:
        end = buffer.find(">")
        if end < 0:
            break
        start = buffer.rfind("<", 0, end)
        if start >= 0:
            frames.append(buffer[start + 1 : end])
        buffer = buffer[end + 1 :]
    if len(buffer) > _INPUT_BUFFER_CAP:
        start = buffer.rfind("<")
        buffer = buffer[start:] if start >= 0 and len(buffer) - start <= _INPUT_BUFFER_CAP else ""
    return frames, buffer


@dataclass
class _Meter:
    tx_on: bool
    rssi: list[float]  # dBm per antenna
    active: int | None  # index of the selected antenna (ULX/QLX), None with no transmitter
    peak: float  # dBFS
    rms: float  # dBFS
    quality: int | None  # AD 0-5, None with no transmitter
    psm_left: float = -90.0
    psm_right: float = -90.0


@dataclass
class _Channel:
    number: int
    name: str
    frequency_khz: int
    tx_model: str | None
    battery_type: str
    battery_pct: float
    tx_on: bool
    group_chan: str = UNKNOWN_GROUP_CHANNEL
    audio_gain: int = 18
    audio_mute: bool = False
    tx_muted: bool = False
    meter_rate: int = 0
    meter_task: asyncio.Task | None = None
    calc_until: float = 0.0  # loop time until which runtime reads 65534 (calculating)
    flash_until: float = 0.0
    clip_samples: int = 0
    rf_lost: bool = False  # the pack is out of range: RF at the noise floor, audio gone (a dropout)
    active_antenna: int = 0
    auto_on_at: float | None = None  # simulated time at which an auto-switched-off pack returns
    swap_on_return: bool = False
    # Per-channel random parameters (seeded).
    rf_base: float = -55.0
    ant_offset: tuple[float, float] = (0.0, -2.0)
    wander_period: float = 40.0
    wander_phase: float = 0.0
    multipath_period: tuple[float, float] = (7.0, 11.0)
    multipath_phase: tuple[float, float] = (0.0, 1.0)
    syllable_hz: float = 4.0
    syllable_phase: float = 0.0
    cycle_count: int = 50
    health: int = 96
    # PSM1000 only.
    rf_tx_lvl: int = 50
    rf_mute: int = 0
    audio_tx_mode: int = 3
    audio_in_line_lvl: int = 1
    audio_in_lvl: int = -6


@dataclass(eq=False)
class _Client:
    writer: asyncio.StreamWriter
    queue: asyncio.Queue
    peer: str
    task: asyncio.Task | None = None
    closed: bool = False
    buffer: str = field(default="")


class SimulatedShureDevice:
    """One simulated Shure command-strings device listening on TCP.

    Args:
        rig: the demo-rig entry to emulate (model, names, transmitters, batteries, frequencies).
        host / port: listen address; default ``rig.host`` / ``rig.port``. ``port=0`` binds an
            ephemeral port, readable from :attr:`port` after :meth:`start`.
        seed: makes the dynamics (RF, audio, random pack events) reproducible.
        speed: clock factor for battery drain, runtime and the calculating period.
        dynamics: when False every value stays exactly as set (meters still emit at METER_RATE).
        chaos: occasionally coalesce frames into one write and split a frame across two writes.
        line_ending: appended to each frame; ``None`` = family default ("" / PSM1000 "\\r\\n").
        runtime_hours: full-pack runtime used for drain and runtime minutes.
        calculating_seconds: how long a freshly switched-on pack reports runtime 65534
            (simulated seconds, so divided by ``speed``); 0 disables it.
        flash_seconds: how long FLASH ON lasts before the device reports FLASH OFF.
        queue_limit: frames buffered per client before that client is dropped.
        pack_events_per_hour: with dynamics, how often (per transmitter per simulated hour) a
            performer switches the pack off for 20-120 simulated seconds (a low pack comes back
            fresh, as after a battery swap); packs under 10 % do it six times as often.
    """

    def __init__(
        self,
        rig: RigDevice,
        *,
        host: str | None = None,
        port: int | None = None,
        seed: int | None = None,
        speed: float = 1.0,
        dynamics: bool = True,
        chaos: bool = True,
        line_ending: str | None = None,
        runtime_hours: float = 8.0,
        calculating_seconds: float = 5.0,
        flash_seconds: float = 10.0,
        queue_limit: int = 4096,
        pack_events_per_hour: float = 1.0,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.rig = rig
        self.key = rig.key
        self.model = shure_model(rig.model)
        self.family = self.model.family
        self.host = host if host is not None else rig.host
        self.port = port if port is not None else rig.port
        self.speed = float(speed)
        self.dynamics = dynamics
        self.chaos = chaos
        self.line_ending = line_ending if line_ending is not None else ("\r\n" if self.family == PSM1000 else "")
        self.runtime_minutes = runtime_hours * 60.0
        self.calculating_seconds = calculating_seconds
        self.flash_seconds = flash_seconds
        self.queue_limit = queue_limit
        self.pack_events_per_hour = pack_events_per_hour
        self.seed = seed if seed is not None else random.randrange(1 << 32)
        self._dseed = (self.seed * 1_000_003 + zlib.crc32(self.key.encode())) & _MASK64
        self._rng = random.Random(self._dseed)
        self._net_rng = random.Random(self._dseed ^ 0x5BD1E995)
        self.fault: str | None = None
        self.sessions: deque[list] = deque(maxlen=2000)  # [opened, closed or None] per connection, wall clock
        # Fault injection: (channel, property) -> raw value sent instead of the real one (channel 0: device).
        self.overrides: dict[tuple[int, str], str] = {}
        self.powered = False
        self.stats = {
            "writes": 0,
            "coalesced_writes": 0,
            "split_writes": 0,
            "garbage_writes": 0,
            "dropped_clients": 0,
            "connections": 0,
        }
        self.device_id = rig.device_id
        self.flash_until = 0.0
        self.channels = self._initial_channels()
        self._clients: set[_Client] = set()
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._t0 = 0.0
        self._sim_time = 0.0
        self._tick_task: asyncio.Task | None = None
        self._running = False
        self._last_reported: dict[int, dict[str, str]] = {}
        self._last_device: dict[str, str] = {}
        self._last_tx_on: dict[int, bool] = {}
        self._channel_props = {key.split()[0] for key, _ in self._render_channel(self.channels[0], True)}
        self._device_props = {key for key, _ in self._render_device()}
        self._device_props.update(_DEVICE_SETTABLE[self.family])

    # ------------------------------------------------------------------ setup

    def _initial_channels(self) -> list[_Channel]:
        channels = []
        for number in range(1, self.model.channels + 1):
            spec = self.rig.channels[number - 1] if number <= len(self.rig.channels) else None
            crng = random.Random(self._dseed + number)
            freq = (
                spec.frequency_khz
                if spec and spec.frequency_khz
                else (470000 + 25 * (zlib.crc32(f"{self.key}{number}".encode()) % 19000))
            )
            tx_model = None
            if self.family != PSM1000:
                tx_model = (spec.tx_model if spec else None) or _DEFAULT_TX[self.family]
            pct = float(spec.battery_percent) if spec and tx_model else 0.0
            ch = _Channel(
                number=number,
                name=spec.name if spec else f"CH {number}",
                frequency_khz=freq,
                tx_model=tx_model,
                battery_type=(spec.battery_type if spec and spec.battery_type else "LION"),
                battery_pct=pct,
                tx_on=bool(tx_model) and pct > 0,
                rf_base=crng.uniform(-70.0, -45.0),
                ant_offset=(crng.uniform(-1.5, 1.5), crng.uniform(-4.0, 0.0)),
                wander_period=crng.uniform(25.0, 70.0),
                wander_phase=crng.uniform(0, 2 * math.pi),
                multipath_period=(crng.uniform(5.0, 15.0), crng.uniform(5.0, 15.0)),
                multipath_phase=(crng.uniform(0, 2 * math.pi), crng.uniform(0, 2 * math.pi)),
                syllable_hz=crng.uniform(3.0, 6.0),
                syllable_phase=crng.uniform(0, math.pi),
                cycle_count=crng.randint(5, 300),
                health=crng.randint(85, 100),
            )
            channels.append(ch)
        return channels

    # ------------------------------------------------------------ lifecycle

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def listening(self) -> bool:
        return self._server is not None

    @property
    def client_count(self) -> int:
        return len(self._clients)

    async def start(self) -> None:
        """Bind the listener and start the dynamics clock. Raises SimulatorBindError."""
        if self._running:
            return
        self._loop = asyncio.get_running_loop()
        self._t0 = self._loop.time()
        self._running = True
        self.powered = True
        try:
            await self._sync_listener()
        except SimulatorBindError:
            self._running = False
            self.powered = False
            raise
        self._remember_reported()
        self._tick_task = asyncio.create_task(self._tick_loop(), name=f"sim-{self.key}-tick")

    async def stop(self) -> None:
        """Close the listener and every connection and stop all timers."""
        self._running = False
        if self._tick_task:
            self._tick_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick_task
            self._tick_task = None
        self._stop_meters()
        await self._sync_listener()
        await self._close_clients()

    async def _sync_listener(self) -> None:
        want = self._running and self.powered and self.fault != "refuse"
        if want and self._server is None:
            try:
                self._server = await asyncio.start_server(self._on_connect, self.host, self.port)
            except OSError as exc:
                raise SimulatorBindError(
                    f"{self.key} ({self.rig.model}): cannot listen on {self.host}:{self.port}: {exc.strerror or exc}"
                ) from exc
            if self.port == 0:
                self.port = self._server.sockets[0].getsockname()[1]
        elif not want and self._server is not None:
            self._server.close()  # closes the listening socket now; open connections are untouched
            self._server = None

    async def _close_clients(self) -> None:
        clients = list(self._clients)
        for client in clients:
            self._drop(client, abort=True)
        for client in clients:
            if client.task:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await client.task

    def _stop_meters(self) -> None:
        for ch in self.channels:
            if ch.meter_task:
                ch.meter_task.cancel()
                ch.meter_task = None

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    # ------------------------------------------------------------ networking

    def _output_enabled(self) -> bool:
        return self.powered and self.fault not in _MUTE_FAULTS

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not (self._running and self.powered and self.fault != "refuse"):
            writer.transport.abort()
            return
        peer = writer.get_extra_info("peername")
        client = _Client(writer=writer, queue=asyncio.Queue(self.queue_limit), peer=f"{peer}")
        client.task = asyncio.create_task(self._writer_loop(client), name=f"sim-{self.key}-writer")
        self._clients.add(client)
        self.stats["connections"] += 1
        session = [time.time(), None]  # wall-clock open / close, for tests that watch who polls when
        self.sessions.append(session)
        try:
            while not client.closed:
                data = await reader.read(4096)
                if not data:
                    break
                if not self.powered or self.fault in _MUTE_FAULTS:
                    continue  # read and ignore everything
                frames, client.buffer = _split_frames(client.buffer + data.decode("latin-1"))
                for body in frames:
                    self._handle_command(client, body)
        except (ConnectionError, OSError):
            pass
        finally:
            self._drop(client, abort=False)
            session[1] = time.time()

    def _drop(self, client: _Client, *, abort: bool) -> None:
        if client.closed:
            return
        client.closed = True
        self._clients.discard(client)
        if client.task and client.task is not asyncio.current_task():
            client.task.cancel()
        transport = client.writer.transport
        if abort:
            transport.abort()
        else:
            client.writer.close()

    def _enqueue(self, client: _Client, frames: list[str]) -> None:
        if client.closed or not self._output_enabled():
            return
        for frame in frames:
            try:
                client.queue.put_nowait(frame.encode("latin-1", "replace"))
            except asyncio.QueueFull:
                logger.warning("simulator %s: dropping client %s (output queue full)", self.key, client.peer)
                self.stats["dropped_clients"] += 1
                self._drop(client, abort=True)
                return

    def _broadcast(self, frames: list[str]) -> None:
        if frames:
            for client in list(self._clients):
                self._enqueue(client, frames)

    def _clear_queues(self) -> None:
        for client in self._clients:
            while not client.queue.empty():
                client.queue.get_nowait()

    async def _writer_loop(self, client: _Client) -> None:
        writer = client.writer
        rng = self._net_rng
        try:
            while True:
                first = await client.queue.get()
                if self.fault == "drop_mid_frame":
                    writer.write(first[: max(1, len(first) // 2)])
                    await writer.drain()
                    self.stats["dropped_clients"] += 1
                    self._drop(client, abort=False)
                    return
                parts = [first]
                if self.chaos and rng.random() < _COALESCE_P and not client.queue.empty():
                    while len(parts) < 16 and not client.queue.empty():
                        parts.append(client.queue.get_nowait())
                    self.stats["coalesced_writes"] += 1
                real = list(range(len(parts)))
                if self.fault == "garbage" and rng.random() < _GARBAGE_P:
                    at = rng.randrange(len(parts) + 1)
                    parts.insert(at, self._garbage())
                    real = [i if i < at else i + 1 for i in real]
                    self.stats["garbage_writes"] += 1
                self.stats["writes"] += 1
                if self.chaos and rng.random() < _SPLIT_P:
                    k = rng.choice(real)
                    cut = rng.randrange(1, max(2, len(parts[k]) - 1))
                    writer.write(b"".join(parts[:k]) + parts[k][:cut])
                    await writer.drain()
                    await asyncio.sleep(rng.uniform(0.002, 0.01))
                    writer.write(parts[k][cut:] + b"".join(parts[k + 1 :]))
                    self.stats["split_writes"] += 1
                else:
                    writer.write(b"".join(parts))
                await writer.drain()
        except asyncio.CancelledError:
            raise
        except (ConnectionError, OSError):
            self._drop(client, abort=True)

    def _garbage(self) -> bytes:
        rng = self._net_rng
        choice = rng.randrange(4)
        if choice == 0:
            return bytes(rng.choice(b"\x00\x01\x07\x1b\x7f\x80\x9c\xff#~|") for _ in range(rng.randint(1, 24)))
        if choice == 1:
            return bytes(rng.randrange(32, 127) for _ in range(rng.randint(1, 24))).replace(b"<", b"(")
        malformed = (
            b"< REP >",
            b"< >",
            b"< SAMPLE >",
            b"<REP1>",
            b"< REP 1 >",
            b"> stray",
            b"<<<",
            b"< REP 9 CHAN_NAME {unterminated >",
            b"\r\n\r\n",
            b"< \x00\xff >",
        )
        return rng.choice(malformed)

    # ------------------------------------------------------------ formatting

    @property
    def _keyword(self) -> str:
        return _REP_KEYWORD[self.family]

    def _frame(self, body: str) -> str:
        return f"< {body} >{self.line_ending}"

    def _err(self) -> str:
        return self._frame(f"{self._keyword} ERR")

    def _rep_channel(self, number: int, key: str, value: str) -> str:
        return self._frame(f"{self._keyword} {number} {key} {value}")

    def _rep_device(self, key: str, value: str) -> str:
        return self._frame(f"{self._keyword} {key} {value}")

    def _runtime(self, ch: _Channel) -> tuple[int, bool]:
        """(minutes, calculating)."""
        calculating = self._loop is not None and self._now() < ch.calc_until
        return int(ch.battery_pct * self.runtime_minutes / 100.0), calculating

    @staticmethod
    def _bars(pct: float) -> int:
        return 0 if pct <= 0 else min(5, math.ceil(pct / 20.0))

    def _group_chan_value(self, ch: _Channel) -> str:
        gc = ch.group_chan
        if self.family == PSM1000:
            if gc == UNKNOWN_GROUP_CHANNEL:
                return gc
            g, c = gc.split(",")
            return f"{int(g):02d},{int(c):02d}"
        return _braced(gc, 10 if self.family in (SLXD, AXIENT) else None)

    def _render_device(self) -> list[tuple[str, str]]:
        fam = self.family
        flash = "ON" if self._loop is not None and self._now() < self.flash_until else "OFF"
        if fam == PSM1000:
            return [("DEVICE_NAME", _braced(self.device_id, 8))]
        fw, fw_width = _FW_VER[fam]
        props: list[tuple[str, str]] = []
        if fam in (SLXD, AXIENT):
            model = f"{self.model.model}-A" if fam == AXIENT else self.model.model
            props.append(("MODEL", _braced(model, 32)))
        props.append(("DEVICE_ID", _braced(self.device_id, _DEVICE_ID_WIDTH[fam])))
        props.append(("FW_VER", _braced(fw, fw_width)))
        if fam in (SLXD, AXIENT):
            props.append(("RF_BAND", _braced(_RF_BAND[fam], 8)))
        if fam == ULXD:
            props.append(("ENCRYPTION", "OFF"))
            props.append(("FLASH", flash))
            if self.model.channels > 1:
                props += [("HIGH_DENSITY", "OFF"), ("AUDIO_SUMMING_MODE", "OFF"), ("FREQUENCY_DIVERSITY_MODE", "OFF")]
        elif fam == QLXD:
            props.append(("ENCRYPTION", "OFF"))
        elif fam == SLXD:
            props += [("LOCK_STATUS", "OFF"), ("FLASH", flash)]
        else:
            props += [
                ("ENCRYPTION_MODE", "OFF"),
                ("FLASH", flash),
                ("QUADVERSITY_MODE", "OFF"),
                ("TRANSMISSION_MODE", "STANDARD"),
            ]
        return self._overridden(0, props)

    def _render_channel(self, ch: _Channel, metered: bool, meter: _Meter | None = None) -> list[tuple[str, str]]:
        """Every channel property in ALL order; metered ones only when ``metered``."""
        fam = self.family
        props: list[tuple[str, str]] = []
        name = ("CHAN_NAME", _braced(ch.name, _NAME_WIDTH[fam]))
        freq = ("FREQUENCY", _num(ch.frequency_khz, _FREQ_DIGITS[fam]))
        gc = (_GC_NAME[fam], self._group_chan_value(ch))
        rate = ("METER_RATE", _num(ch.meter_rate, 5))
        on = ch.tx_on
        lion = ch.battery_type == "LION"
        minutes, calculating = self._runtime(ch)
        runtime = _num(65534 if calculating else minutes, 5) if on else "65535"
        bars = _num(self._bars(ch.battery_pct), 3) if on else "255"
        charge = _num(math.ceil(ch.battery_pct), 3) if on and lion else "255"
        flash = "ON" if self._loop is not None and self._now() < ch.flash_until else "OFF"
        if meter is None and metered:
            meter = self._meter(ch)
        if fam in (ULXD, QLXD):
            props += [name, freq, gc, ("AUDIO_GAIN", _num(ch.audio_gain, 3))]
            if fam == ULXD:
                props.append(("AUDIO_MUTE", "ON" if ch.audio_mute else "OFF"))
            props += [
                rate,
                ("TX_TYPE", ch.tx_model if on and ch.tx_model else "UNKN"),
                ("TX_OFFSET", "000" if on else "255"),
                ("TX_RF_PWR", "NORMAL" if on else "UNKN"),
                ("TX_MUTE_STATUS", ("ON" if ch.tx_muted else "OFF") if on else "UNKN"),
                ("TX_PWR_LOCK", "OFF" if on else "UNKN"),
                ("TX_MENU_LOCK", "OFF" if on else "UNKN"),
            ]
            if fam == ULXD:
                props += [
                    ("TX_MUTE_BUTTON_STATUS", "RELEASED" if on else "UNKN"),
                    ("TX_POWER_SOURCE", "BATTERY" if on else "UNKN"),
                ]
            props += [
                ("BATT_TYPE", ch.battery_type if on else "UNKN"),
                ("BATT_BARS", bars),
                ("BATT_CHARGE", charge),
                ("BATT_RUN_TIME", runtime),
                ("BATT_CYCLE", _num(ch.cycle_count, 5) if on and lion else "65535"),
                ("BATT_HEALTH", _num(ch.health, 3) if on and lion else "255"),
                ("BATT_TEMP_C", "065" if on and lion else "255"),
                ("BATT_TEMP_F", "117" if on and lion else "255"),
            ]
            if fam == ULXD:
                props.append(("RF_INT_DET", "NONE"))
            props.append(("ENCRYPTION_WARNING", "OFF"))
            if metered and meter is not None:
                props += [
                    ("RF_ANTENNA", self._ulx_antenna(meter)),
                    ("RX_RF_LVL", _num(self._ulx_rf(meter), 3)),
                    ("AUDIO_LVL", _num(self._ulx_audio(meter), 3)),
                ]
        elif fam == SLXD:
            props += [
                name,
                ("AUDIO_GAIN", _num(ch.audio_gain, 3)),
                ("AUDIO_OUT_LVL_SWITCH", "MIC"),
                gc,
                freq,
                rate,
                ("FLASH", flash),
                ("TX_MODEL", ch.tx_model if on and ch.tx_model else "UNKNOWN"),
                ("TX_BATT_BARS", bars),
                ("TX_BATT_MINS", runtime),
            ]
            if metered and meter is not None:
                props += [
                    ("AUDIO_LEVEL_PEAK", _num(self._dbfs120(meter.peak), 3)),
                    ("AUDIO_LEVEL_RMS", _num(self._dbfs120(meter.rms), 3)),
                ]
                props += [(f"RSSI {a + 1}", _num(self._dbm120(v), 3)) for a, v in enumerate(meter.rssi)]
        elif fam == AXIENT:
            props += [
                name,
                freq,
                gc,
                ("AUDIO_GAIN", _num(ch.audio_gain, 3)),
                ("AUDIO_MUTE", "ON" if ch.audio_mute else "OFF"),
                rate,
                ("FLASH", flash),
                ("FD_MODE", "OFF"),
                ("INTERFERENCE_STATUS", "NONE"),
                ("ENCRYPTION_STATUS", "OK"),
                ("UNREGISTERED_TX_STATUS", "OK"),
                ("TX_MODEL", ch.tx_model if on and ch.tx_model else "UNKNOWN"),
                ("TX_DEVICE_ID", _braced(ch.name if on else "", 31)),
                ("TX_BATT_TYPE", ch.battery_type if on else "UNKN"),
                ("TX_BATT_BARS", bars),
                ("TX_BATT_CHARGE_PERCENT", charge),
                ("TX_BATT_HEALTH_PERCENT", _num(ch.health, 3) if on and lion else "255"),
                ("TX_BATT_MINS", runtime),
                ("TX_BATT_CYCLE_COUNT", _num(ch.cycle_count, 5) if on and lion else "65535"),
                ("TX_BATT_TEMP_C", "065" if on and lion else "255"),
                ("TX_BATT_TEMP_F", "117" if on and lion else "255"),
                ("TX_OFFSET", "012" if on else "255"),
                ("TX_INPUT_PAD", "012" if on else "255"),
                ("TX_POWER_LEVEL", "010" if on else "255"),
                ("TX_MUTE_MODE_STATUS", ("MUTE" if ch.tx_muted else "ON") if on else "UNKNOWN"),
                ("TX_LOCK", "NONE" if on else "UNKNOWN"),
                ("TX_POLARITY", "POSITIVE" if on else "UNKNOWN"),
            ]
            for slot in range(1, 9):
                status = "EMPTY"
                if slot == 1:
                    status = "LINKED.ACTIVE" if on else "LINKED.INACTIVE"
                props.append((f"SLOT_STATUS {slot}", status))
            if metered and meter is not None:
                props += [
                    ("AUDIO_LEVEL_PEAK", _num(self._dbfs120(meter.peak), 3)),
                    ("AUDIO_LEVEL_RMS", _num(self._dbfs120(meter.rms), 3)),
                    ("AUDIO_LED_BITMAP", _num(self._audio_bitmap(meter), 3)),
                    ("CHAN_QUALITY", _num(meter.quality, 3) if meter.quality is not None else "255"),
                    ("ANTENNA_STATUS", self._ad_antennas(meter)),
                ]
                props += [(f"RSSI {a + 1}", _num(self._dbm120(v), 3)) for a, v in enumerate(meter.rssi)]
                props += [(f"RSSI_LED_BITMAP {a + 1}", _num(self._rf_bitmap(v), 2)) for a, v in enumerate(meter.rssi)]
        else:  # PSM1000
            props += [
                name,
                freq,
                gc,
                ("RF_TX_LVL", str(ch.rf_tx_lvl)),
                ("RF_MUTE", str(ch.rf_mute)),
                ("AUDIO_TX_MODE", str(ch.audio_tx_mode)),
                ("AUDIO_IN_LINE_LVL", str(ch.audio_in_line_lvl)),
                ("AUDIO_IN_LVL", str(ch.audio_in_lvl)),
                rate,
            ]
            if metered and meter is not None:
                props += [
                    ("AUDIO_IN_LVL_L", str(self._psm_linear(meter.psm_left))),
                    ("AUDIO_IN_LVL_R", str(self._psm_linear(meter.psm_right))),
                ]
        return self._overridden(ch.number, props)

    def _overridden(self, number: int, props: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Apply :meth:`override` values; only properties the device really reports are replaced."""
        if not self.overrides:
            return props
        return [(key, self.overrides.get((number, key), value)) for key, value in props]

    # Meter scalings (protocols.md §1.6-1.9).
    @staticmethod
    def _dbfs120(dbfs: float) -> int:
        return round(_clamp(dbfs + 120.0, 0, 120))

    @staticmethod
    def _dbm120(dbm: float) -> int:
        return round(_clamp(dbm + 120.0, 0, 120))

    @staticmethod
    def _ulx_rf(meter: _Meter) -> int:
        return round(_clamp(max(meter.rssi) + 128.0, 0, 115))

    @staticmethod
    def _ulx_audio(meter: _Meter) -> int:
        # eee 000-050 has no documented unit [U]; like the driver we read it as 2 dB steps (dBFS = 2*eee - 100).
        if meter.active is None:
            return 0  # no transmitter: ULX-D/QLX-D report 000 (protocols.md §7.2)
        return round(_clamp((meter.peak + 100.0) / 2, 0, 50))

    @staticmethod
    def _ulx_antenna(meter: _Meter) -> str:
        if meter.active is None:
            return "XX"
        return "AX" if meter.active == 0 else "XB"

    @staticmethod
    def _ad_antennas(meter: _Meter) -> str:
        if not meter.tx_on:
            return "X" * len(meter.rssi)
        return "".join("B" if v >= -95.0 else "X" for v in meter.rssi)

    @staticmethod
    def _audio_bitmap(meter: _Meter) -> int:
        if not meter.tx_on:
            return 0
        value = _bits(meter.peak, _AUDIO_LED_THRESHOLDS)
        return value | 0x80 if meter.peak >= -1.0 else value

    @staticmethod
    def _rf_bitmap(dbm: float) -> int:
        return _bits(dbm, _RF_LED_THRESHOLDS)

    @staticmethod
    def _psm_linear(dbfs: float) -> int:
        return int(_PSM_LINEAR_FULL_SCALE * 10 ** (_clamp(dbfs, -120.0, 0.0) / 20.0))

    def _sample_frames(self, ch: _Channel) -> list[str]:
        meter = self._meter(ch, consume_clip=True)
        n = ch.number
        if self.family in (ULXD, QLXD):
            body = f"SAMPLE {n} ALL {self._ulx_antenna(meter)} {self._ulx_rf(meter):03d} {self._ulx_audio(meter):03d}"
        elif self.family == SLXD:
            body = (
                f"SAMPLE {n} ALL {self._dbfs120(meter.peak):03d} {self._dbfs120(meter.rms):03d} "
                f"{self._dbm120(max(meter.rssi)):03d}"
            )
        elif self.family == AXIENT:
            quality = f"{meter.quality:03d}" if meter.quality is not None else "255"
            rf = " ".join(f"{self._rf_bitmap(v):02d} {self._dbm120(v):03d}" for v in meter.rssi)
            body = (
                f"SAMPLE {n} ALL {quality} {self._audio_bitmap(meter):03d} {self._dbfs120(meter.peak):03d} "
                f"{self._dbfs120(meter.rms):03d} {self._ad_antennas(meter)} {rf}"
            )
        else:
            return [
                self._rep_channel(n, "AUDIO_IN_LVL_L", str(self._psm_linear(meter.psm_left))),
                self._rep_channel(n, "AUDIO_IN_LVL_R", str(self._psm_linear(meter.psm_right))),
            ]
        return [self._frame(body)]

    # ------------------------------------------------------------ dynamics

    def _h(self, *parts: int) -> float:
        return _hash01(self._dseed, *parts)

    def _meter(self, ch: _Channel, *, consume_clip: bool = False) -> _Meter:
        t = self._now() - self._t0 if self._loop is not None else 0.0
        n = ch.number
        floor_peak, floor_rms = _AUDIO_FLOOR[self.family]
        if self.family == PSM1000:
            left, right = self._program_audio(ch, t) if self.dynamics else (-18.0, -19.0)
            if ch.clip_samples > 0:
                left = right = 0.0
                if consume_clip:
                    ch.clip_samples -= 1
            return _Meter(True, [], None, max(left, right), max(left, right) - 8, None, left, right)
        if not ch.tx_on:
            if self.dynamics:
                rssi = [-110.0 + 5.0 * self._h(n, 60 + a, int(t * 2)) for a in range(2)]
                rms = -100.0 + 13.0 * self._h(n, 62, int(t * 2)) if self.family == AXIENT else floor_rms
            else:
                rssi, rms = [-109.0, -108.0], floor_rms
            return _Meter(False, rssi, None, floor_peak, rms, None)
        rssi = [self._rf(ch, a, t) for a in range(2)] if self.dynamics else [-50.0, -54.0]
        if ch.rf_lost:
            rssi = [-110.0, -111.0]
        other = 1 - ch.active_antenna
        if rssi[other] > rssi[ch.active_antenna] + 2.0:  # ≈2 dB hysteresis
            ch.active_antenna = other
        best = max(rssi)
        if best >= -80.0:
            quality = 5
        elif best >= -88.0:
            quality = 4
        elif best >= -95.0:
            quality = 3
        else:
            quality = 2 if best >= -100.0 else 1
        dropout = best < -95.0
        if dropout or ch.tx_muted:
            peak, rms = floor_peak, floor_rms
        elif self.dynamics:
            peak, rms = self._speech(ch, t)
        else:
            peak, rms = -14.0, -24.0
        if ch.clip_samples > 0 and not (dropout or ch.tx_muted):
            peak, rms = 0.0, max(rms, -10.0)
            if consume_clip:
                ch.clip_samples -= 1
        return _Meter(True, rssi, ch.active_antenna, peak, rms, quality)

    def _rf(self, ch: _Channel, antenna: int, t: float) -> float:
        n = ch.number
        level = ch.rf_base + ch.ant_offset[antenna]
        level += 3.0 * math.sin(2 * math.pi * t / ch.wander_period + ch.wander_phase)
        level += 3.0 * math.sin(2 * math.pi * t / ch.multipath_period[antenna] + ch.multipath_phase[antenna])
        level += 2.0 * (self._h(n, 10 + antenna, int(t * 10)) - 0.5)
        window = 10.0
        idx = int(t // window)
        fade = 0.0
        for k in (idx - 1, idx):  # a fade may start in the previous window and spill over
            if self._h(n, 20 + antenna, k) < 0.5:  # ≈3 fades a minute per antenna
                start = k * window + window * self._h(n, 30 + antenna, k)
                duration = 0.05 + 0.45 * self._h(n, 40 + antenna, k)
                if start <= t < start + duration:
                    depth = 10.0 + 15.0 * self._h(n, 50 + antenna, k)
                    fade = max(fade, depth * math.sin(math.pi * (t - start) / duration))
        return level - fade

    def _speech(self, ch: _Channel, t: float) -> tuple[float, float]:
        n = ch.number
        phrase = int(t / 2.5)
        if self._h(n, 1, phrase) < 0.2:  # a pause between phrases
            rms = -80.0 + 20.0 * self._h(n, 2, int(t * 4))
            return rms + 4.0, rms
        loudness = -35.0 + 20.0 * self._h(n, 3, phrase)
        syllable = abs(math.sin(math.pi * ch.syllable_hz * t + ch.syllable_phase))
        rms = _clamp(loudness - 6.0 + 9.0 * syllable, -40.0, -12.0)
        peak = rms + 6.0 + 6.0 * self._h(n, 4, int(t * 10))
        if self._h(n, 5, int(t)) < 0.02:  # an occasional clip
            peak = -1.0 + self._h(n, 6, int(t))
        return min(peak, 0.0), rms

    def _program_audio(self, ch: _Channel, t: float) -> tuple[float, float]:
        n = ch.number
        if self._h(n, 7, int(t / 8.0)) < 0.05:  # a break between songs
            level = -75.0 + 10.0 * self._h(n, 8, int(t * 4))
            return level, level - 1.0
        base = -20.0 + 6.0 * self._h(n, 9, int(t / 4.0))
        beat = 4.0 * abs(math.sin(math.pi * 2.0 * t + ch.syllable_phase))
        left = base + beat + 2.0 * self._h(n, 11, int(t * 10))
        right = base + beat + 2.0 * self._h(n, 12, int(t * 10)) - 1.0
        return min(left, 0.0), min(right, 0.0)

    async def _tick_loop(self) -> None:
        assert self._loop is not None
        last = self._now()
        while True:
            await asyncio.sleep(_TICK_SECONDS)
            now = self._now()
            dt, last = now - last, now
            try:
                self._tick(dt * self.speed)
            except Exception:
                logger.exception("simulator %s: dynamics tick failed", self.key)

    def _tick(self, sim_dt: float) -> None:
        self._sim_time += sim_dt
        if self.dynamics:
            runtime_s = self.runtime_minutes * 60.0
            for ch in self.channels:
                if ch.tx_model is None:
                    continue
                if ch.tx_on:
                    ch.battery_pct = max(0.0, ch.battery_pct - 100.0 * sim_dt / runtime_s)
                    if ch.battery_pct <= 0.0:
                        self._switch_off(ch)
                        continue
                    # Demo realism: now and then a performer switches off (battery swap when low).
                    rate = self.pack_events_per_hour / 3600.0 * (6.0 if ch.battery_pct < 10.0 else 1.0)
                    if rate and self._rng.random() < rate * sim_dt:
                        self._switch_off(ch)
                        ch.swap_on_return = ch.battery_pct < 25.0
                        ch.auto_on_at = self._sim_time + self._rng.uniform(20.0, 120.0)
                elif ch.auto_on_at is not None and self._sim_time >= ch.auto_on_at:
                    if ch.swap_on_return:
                        ch.battery_pct = 100.0
                    self._switch_on(ch)
        self._publish_changes()

    def _switch_off(self, ch: _Channel) -> None:
        ch.tx_on = False
        ch.auto_on_at = None
        ch.swap_on_return = False

    def _switch_on(self, ch: _Channel) -> None:
        if ch.battery_pct <= 0.0:
            ch.battery_pct = 100.0  # a fresh pack
        ch.tx_on = True
        ch.auto_on_at = None
        ch.swap_on_return = False
        ch.calc_until = self._now() + self.calculating_seconds / self.speed if self.calculating_seconds else 0.0

    def _remember_reported(self) -> None:
        self._last_device = dict(self._render_device())
        for ch in self.channels:
            self._last_reported[ch.number] = dict(self._render_channel(ch, False))
            self._last_tx_on[ch.number] = ch.tx_on

    def _publish_changes(self) -> None:
        """Broadcast a REP for every non-metered value that changed since it was last reported."""
        frames: list[str] = []
        for key, value in self._render_device():
            if self._last_device.get(key) != value:
                self._last_device[key] = value
                frames.append(self._rep_device(key, value))
        for ch in self.channels:
            last = self._last_reported.setdefault(ch.number, {})
            for key, value in self._render_channel(ch, False):
                if last.get(key) != value:
                    last[key] = value
                    frames.append(self._rep_channel(ch.number, key, value))
            if self._last_tx_on.get(ch.number) != ch.tx_on:
                self._last_tx_on[ch.number] = ch.tx_on
                if self.family == AXIENT:
                    meter = self._meter(ch)
                    quality = _num(meter.quality, 3) if meter.quality is not None else "255"
                    frames.append(self._rep_channel(ch.number, "CHAN_QUALITY", quality))
        self._broadcast(frames)

    # ------------------------------------------------------------ metering

    def _set_meter_rate(self, ch: _Channel, rate: int) -> None:
        if rate == ch.meter_rate and (rate == 0 or ch.meter_task is not None):
            return
        ch.meter_rate = rate
        if ch.meter_task:
            ch.meter_task.cancel()
            ch.meter_task = None
        if rate > 0 and self._running:
            ch.meter_task = asyncio.create_task(self._meter_loop(ch, rate), name=f"sim-{self.key}-meter")

    async def _meter_loop(self, ch: _Channel, rate: int) -> None:
        period = rate / 1000.0
        due = self._now() + period
        while True:
            await asyncio.sleep(max(0.0, due - self._now()))
            try:
                self._broadcast(self._sample_frames(ch))
            except Exception:
                logger.exception("simulator %s: meter emission failed", self.key)
            due += period
            if due < self._now():
                due = self._now() + period

    # ------------------------------------------------------------ commands

    def _handle_command(self, client: _Client, body: str) -> None:
        try:
            self._execute(client, body)
        except _CommandError:
            self._enqueue(client, [self._err()])
        except Exception:
            logger.exception("simulator %s: command %r failed", self.key, body)
            self._enqueue(client, [self._err()])

    def _execute(self, client: _Client, body: str) -> None:
        braced: str | None = None
        if "{" in body or "}" in body:
            start, end = body.find("{"), body.rfind("}")
            if start < 0 or end < start:
                raise _CommandError
            braced = body[start + 1 : end]
            if "{" in braced or "}" in braced or body[end + 1 :].strip():
                raise _CommandError
            tokens = body[:start].split()
        else:
            tokens = body.split()
        if len(tokens) < 2 or tokens[0] not in ("GET", "SET"):
            raise _CommandError
        verb = tokens[0]
        index: int | None = None
        rest = tokens[1:]
        if _digits(rest[0]):
            index = int(rest[0])
            rest = rest[1:]
            if index > self.model.channels:
                raise _CommandError
        if not rest:
            raise _CommandError
        prop, args = rest[0], rest[1:]
        if verb == "GET":
            if braced is not None:
                raise _CommandError
            self._get(client, index, prop, args)
        else:
            self._set(client, index, prop, args, braced)

    def _targets(self, index: int) -> list[_Channel]:
        return list(self.channels) if index == 0 else [self.channels[index - 1]]

    def _is_device_prop(self, prop: str, index: int | None) -> bool:
        """FLASH is both (device identify / channel identify on SLX-D and AD)."""
        if index is None:
            if prop in self._device_props:
                return True
            raise _CommandError  # channel property without an index, or unknown
        if prop in self._channel_props:
            return False
        raise _CommandError  # device property with an index, or unknown

    def _get(self, client: _Client, index: int | None, prop: str, args: list[str]) -> None:
        if prop == "ALL":
            if index is None or args:
                raise _CommandError
            frames = [self._rep_device(k, v) for k, v in self._render_device()]
            for ch in self._targets(index):
                frames += [self._rep_channel(ch.number, k, v) for k, v in self._render_channel(ch, True)]
            self._enqueue(client, frames)
            return
        if self._is_device_prop(prop, index):
            if args:
                raise _CommandError
            values = dict(self._render_device())
            if prop not in values:
                raise _CommandError
            self._enqueue(client, [self._rep_device(prop, values[prop])])
            return
        assert index is not None
        if prop in _SUBINDEXED:
            if len(args) > 1 or (args and not (_digits(args[0]) and 1 <= int(args[0]) <= _SUBINDEXED[prop])):
                raise _CommandError
            wanted = {f"{prop} {int(args[0])}"} if args else {f"{prop} {i}" for i in range(1, 9)}
        elif args:
            raise _CommandError
        else:
            wanted = {prop}
        frames = []
        for ch in self._targets(index):
            frames += [self._rep_channel(ch.number, k, v) for k, v in self._render_channel(ch, True) if k in wanted]
        if not frames:
            raise _CommandError
        self._enqueue(client, frames)

    def _set(self, client: _Client, index: int | None, prop: str, args: list[str], braced: str | None) -> None:
        fam = self.family
        if self._is_device_prop(prop, index):
            if prop not in _DEVICE_SETTABLE[fam]:
                raise _CommandError
            if prop in ("DEVICE_ID", "DEVICE_NAME"):
                value = self._string_arg(args, braced, _DEVICE_ID_WIDTH[fam])
                changed = value != self.device_id
                self.device_id = value
            else:  # FLASH
                state = self._choice_arg(args, braced, ("ON", "OFF"))
                was = self._now() < self.flash_until
                self.flash_until = self._now() + self.flash_seconds if state == "ON" else 0.0
                changed = was != (state == "ON")
            values = dict(self._render_device())
            frame = self._rep_device(prop, values[prop])
            if changed:
                self._last_device[prop] = values[prop]
                self._broadcast([frame])
            else:
                self._enqueue(client, [frame])
            return
        if prop not in _SETTABLE[fam]:
            raise _CommandError
        assert index is not None
        apply = self._channel_setter(prop, args, braced)
        for ch in self._targets(index):
            changed, keys = apply(ch)
            rendered = dict(self._render_channel(ch, False))
            frames = [self._rep_channel(ch.number, k, rendered[k]) for k in keys]
            if changed:
                last = self._last_reported.setdefault(ch.number, {})
                for k in keys:
                    last[k] = rendered[k]
                self._broadcast(frames)
            else:
                self._enqueue(client, frames)

    def _channel_setter(self, prop: str, args: list[str], braced: str | None):
        """Validate a channel SET fully, then return a function applying it to one channel."""
        fam = self.family
        gc_name = _GC_NAME[fam]
        if prop == "CHAN_NAME":
            name = self._string_arg(args, braced, _NAME_SET_MAX[fam])

            def set_name(ch: _Channel) -> tuple[bool, list[str]]:
                changed = ch.name != name
                ch.name = name
                return changed, ["CHAN_NAME"]

            return set_name
        if braced is not None and prop != gc_name:
            raise _CommandError
        if prop == "METER_RATE":
            rate = self._int_arg(args)
            if 0 < rate < 100 or rate > 65535:
                raise _CommandError

            def set_rate(ch: _Channel) -> tuple[bool, list[str]]:
                changed = ch.meter_rate != rate
                self._set_meter_rate(ch, rate)
                return changed, ["METER_RATE"]

            return set_rate
        if prop in ("AUDIO_GAIN", "AUDIO_IN_LVL"):
            lo, hi, attr = (0, 60, "audio_gain") if prop == "AUDIO_GAIN" else (-67, 0, "audio_in_lvl")
            if len(args) == 2 and args[0] in ("INC", "DEC"):
                step = self._int_arg(args[1:])
                delta = step if args[0] == "INC" else -step
                absolute = None
            else:
                absolute = self._int_arg(args, signed=prop == "AUDIO_IN_LVL")
                if not lo <= absolute <= hi:
                    raise _CommandError
                delta = 0

            def set_gain(ch: _Channel) -> tuple[bool, list[str]]:
                old = getattr(ch, attr)
                new = absolute if absolute is not None else int(_clamp(old + delta, lo, hi))
                setattr(ch, attr, new)
                return new != old, [prop]

            return set_gain
        if prop == "AUDIO_MUTE":
            state = self._choice_arg(args, None, ("ON", "OFF", "TOGGLE"))

            def set_mute(ch: _Channel) -> tuple[bool, list[str]]:
                old = ch.audio_mute
                ch.audio_mute = (not old) if state == "TOGGLE" else state == "ON"
                return ch.audio_mute != old, ["AUDIO_MUTE"]

            return set_mute
        if prop == "FREQUENCY":
            if len(args) != 1 or not _digits(args[0]) or len(args[0]) not in (6, 7):
                raise _CommandError
            khz = int(args[0])
            if not 470000 <= khz <= 960000 or khz % 25:
                raise _CommandError

            def set_freq(ch: _Channel) -> tuple[bool, list[str]]:
                changed = ch.frequency_khz != khz or ch.group_chan != UNKNOWN_GROUP_CHANNEL
                ch.frequency_khz = khz
                ch.group_chan = UNKNOWN_GROUP_CHANNEL
                return changed, [gc_name, "FREQUENCY"]

            return set_freq
        if prop == gc_name:
            raw = braced if braced is not None else (args[0] if len(args) == 1 else "")
            if braced is not None and args:
                raise _CommandError
            parts = raw.strip().split(",")
            if len(parts) != 2 or not all(_digits(p) for p in parts):
                raise _CommandError  # includes "--,--", which cannot be SET
            group, chan = int(parts[0]), int(parts[1])
            if not (1 <= group <= 99 and 1 <= chan <= 999):
                raise _CommandError
            khz = 470000 + ((group * 1000 + chan) * 25) % 490000  # synthetic group/channel plan

            def set_gc(ch: _Channel) -> tuple[bool, list[str]]:
                value = f"{group},{chan}"
                changed = ch.group_chan != value or ch.frequency_khz != khz
                ch.group_chan = value
                ch.frequency_khz = khz
                return changed, ["FREQUENCY", gc_name]

            return set_gc
        if prop == "FLASH":
            state = self._choice_arg(args, None, ("ON", "OFF"))

            def set_flash(ch: _Channel) -> tuple[bool, list[str]]:
                was = self._now() < ch.flash_until
                ch.flash_until = self._now() + self.flash_seconds if state == "ON" else 0.0
                return was != (state == "ON"), ["FLASH"]

            return set_flash
        if prop in _PSM_CHOICES:
            value = self._int_arg(args)
            if value not in _PSM_CHOICES[prop]:
                raise _CommandError
            attr = prop.lower()

            def set_choice(ch: _Channel) -> tuple[bool, list[str]]:
                changed = getattr(ch, attr) != value
                setattr(ch, attr, value)
                return changed, [prop]

            return set_choice
        raise _CommandError

    @staticmethod
    def _string_arg(args: list[str], braced: str | None, max_len: int) -> str:
        if braced is not None:
            if args:
                raise _CommandError
            value = braced
        elif len(args) == 1:
            value = args[0]
        else:
            raise _CommandError
        if not 1 <= len(value) <= max_len or any(c not in _ALLOWED_SET_CHARS for c in value):
            raise _CommandError
        return value

    @staticmethod
    def _choice_arg(args: list[str], braced: str | None, choices: tuple[str, ...]) -> str:
        if braced is not None or len(args) != 1 or args[0] not in choices:
            raise _CommandError
        return args[0]

    @staticmethod
    def _int_arg(args: list[str], *, signed: bool = False) -> int:
        if len(args) != 1:
            raise _CommandError
        text = args[0]
        digits = text[1:] if signed and text[:1] in "+-" and len(text) > 1 else text
        if not _digits(digits) or len(digits) > 5:
            raise _CommandError
        return int(text)

    # ------------------------------------------------------------ control API

    def _channel(self, channel: Any) -> _Channel:
        if isinstance(channel, bool):
            raise SimulatorError(f"channel must be a number, got {channel!r}")
        try:
            number = int(channel)
        except (TypeError, ValueError):
            raise SimulatorError(f"channel must be a number, got {channel!r}") from None
        if not 1 <= number <= len(self.channels):
            raise SimulatorError(f"{self.key} ({self.rig.model}) has channels 1-{len(self.channels)}, not {number}")
        return self.channels[number - 1]

    def _mic_channel(self, channel: Any) -> _Channel:
        ch = self._channel(channel)
        if ch.tx_model is None:
            raise SimulatorError(f"{self.key} ({self.rig.model}) has no transmitter on channel {ch.number}")
        return ch

    async def pack_off(self, channel: int) -> None:
        """Switch the transmitter off: sentinel REPs now, SAMPLEs at the noise floor."""
        ch = self._mic_channel(channel)
        self._switch_off(ch)
        self._publish_changes()

    async def pack_on(self, channel: int) -> None:
        """Switch the transmitter on (a fresh pack if the battery was flat)."""
        ch = self._mic_channel(channel)
        if not ch.tx_on:
            self._switch_on(ch)
        self._publish_changes()

    async def set_battery(self, channel: int, percent: float) -> None:
        """Set the pack's charge; 0 switches it off, like a flat battery."""
        ch = self._mic_channel(channel)
        if isinstance(percent, bool):
            raise SimulatorError("percent must be a number")
        try:
            value = float(percent)
        except (TypeError, ValueError):
            raise SimulatorError(f"percent must be a number, got {percent!r}") from None
        if not 0.0 <= value <= 100.0:
            raise SimulatorError(f"percent must be 0-100, got {percent!r}")
        ch.battery_pct = value
        if value == 0.0 and ch.tx_on:
            self._switch_off(ch)
        self._publish_changes()

    async def set_name(self, channel: int, name: str) -> None:
        """Rename a channel "on the front panel" (unsolicited REP to every client)."""
        ch = self._channel(channel)
        width = _NAME_WIDTH[self.family]
        if not isinstance(name, str) or not 1 <= len(name) <= width:
            raise SimulatorError(f"name must be 1-{width} characters")
        if any(c not in _ALLOWED_SET_CHARS for c in name):
            raise SimulatorError("name contains characters the receiver does not allow ({ } < > or non-ASCII)")
        ch.name = name
        self._publish_changes()

    async def tx_mute(self, channel: int, on: bool = True) -> None:
        """Mute or unmute the transmitter (its audio drops to the floor)."""
        ch = self._mic_channel(channel)
        ch.tx_muted = bool(on)
        self._publish_changes()

    async def rf_loss(self, channel: int, on: bool = True) -> None:
        """Take a pack out of RF range (RF at the noise floor, no audio) or bring it back; it stays switched on."""
        ch = self._mic_channel(channel)
        ch.rf_lost = bool(on)

    async def peak(self, channel: int, samples: int = 3) -> None:
        """Make the next few meter readings of a channel show a clip near 0 dBFS."""
        ch = self._channel(channel)
        ch.clip_samples = max(1, int(samples))

    async def set_fault(self, kind: str | None) -> None:
        """Switch a fault on (see FAULTS) or off (None / "none")."""
        if isinstance(kind, str) and kind.strip().lower() in ("", "none", "off", "null"):
            kind = None
        if kind not in FAULTS:
            names = ", ".join(str(k).lower() if k else "none" for k in FAULTS)
            raise SimulatorError(f"unknown fault {kind!r}; choose one of: {names}")
        self.fault = kind
        if kind in _MUTE_FAULTS:
            self._clear_queues()
        if self._running:
            await self._sync_listener()

    async def override(self, prop: str, value: str | None, channel: int = 0) -> None:
        """Fault injection: report ``value`` verbatim (as it follows the property name on the wire, braces
        included) instead of the real value of ``prop``; ``channel`` 0 means a device property. ``None``
        restores the real value. Clients see it in ALL replies, GETs and unsolicited REPs, like a real change.
        Only properties the device reports can be overridden (``RSSI 1``: with its sub-index).
        """
        if not isinstance(prop, str) or not isinstance(channel, int) or isinstance(channel, bool):
            raise SimulatorError("override needs a property name and a channel number")
        if value is not None and (not isinstance(value, str) or not value or "<" in value or ">" in value):
            raise SimulatorError("override value must be a non-empty string without < or >")
        if channel == 0:
            known = {key for key, _ in self._render_device()}
        else:
            known = {key for key, _ in self._render_channel(self._channel(channel), True)}
        if prop not in known:
            raise SimulatorError(f"{self.key} does not report {prop!r} on channel {channel}")
        if value is None:
            self.overrides.pop((channel, prop), None)
        else:
            self.overrides[(channel, prop)] = value
        self._publish_changes()

    async def power_off(self) -> None:
        """A dead receiver: listener and every connection closed, metering stopped."""
        self.powered = False
        self._stop_meters()
        await self._sync_listener()
        await self._close_clients()

    async def power_on(self) -> None:
        """Boot again: listen, metering off (power-on default), runtimes recalculating."""
        if self.powered:
            return
        self.powered = True
        for ch in self.channels:
            ch.meter_rate = 0
            ch.flash_until = 0.0
            if ch.tx_on and self.calculating_seconds:
                ch.calc_until = self._now() + self.calculating_seconds / self.speed
        self.flash_until = 0.0
        try:
            await self._sync_listener()
        except SimulatorBindError:
            self.powered = False
            raise
        self._remember_reported()

    def snapshot(self) -> dict[str, Any]:
        """Plain JSON-able state for assertions and ``simctl``."""
        channels = []
        for ch in self.channels:
            minutes, calculating = self._runtime(ch)
            has_tx = ch.tx_model is not None
            channels.append(
                {
                    "channel": ch.number,
                    "name": ch.name,
                    "frequency_khz": ch.frequency_khz,
                    "group_channel": ch.group_chan,
                    "meter_rate": ch.meter_rate,
                    "tx_model": ch.tx_model,
                    "tx_on": ch.tx_on if has_tx else None,
                    "tx_muted": ch.tx_muted if has_tx else None,
                    "battery_type": ch.battery_type if has_tx else None,
                    "battery_percent": round(ch.battery_pct, 3) if has_tx else None,
                    "battery_bars": self._bars(ch.battery_pct) if has_tx else None,
                    "battery_minutes": minutes if has_tx else None,
                    "runtime_calculating": calculating if has_tx and ch.tx_on else False,
                    "audio_gain": ch.audio_gain,
                    "audio_muted": ch.audio_mute,
                    "clip_pending": ch.clip_samples,
                }
            )
        return {
            "key": self.key,
            "model": self.rig.model,
            "family": self.family,
            "host": self.host,
            "port": self.port,
            "device_id": self.device_id,
            "powered": self.powered,
            "listening": self.listening,
            "fault": self.fault,
            "overrides": [{"channel": c, "prop": p, "value": v} for (c, p), v in sorted(self.overrides.items())],
            "clients": len(self._clients),
            "dynamics": self.dynamics,
            "chaos": self.chaos,
            "speed": self.speed,
            "stats": dict(self.stats),
            "channels": channels,
        }


# ---------------------------------------------------------------- hub / control server

_ACTIONS: dict[str, tuple[str, ...]] = {
    "pack_off": ("channel",),
    "pack_on": ("channel",),
    "set_battery": ("channel", "percent"),
    "set_name": ("channel", "name"),
    "set_fault": ("kind",),
    "power_off": (),
    "power_on": (),
    "peak": ("channel",),
    "tx_mute": ("channel", "on"),
    "rf_loss": ("channel", "on"),
    "override": ("prop", "value"),
    "snapshot": (),
}
_OPTIONAL_ARGS = {"tx_mute": {"on"}, "rf_loss": {"on"}, "peak": {"samples"}, "override": {"channel"}}
_ALIASES = {"battery": "set_battery", "name": "set_name", "rename": "set_name", "fault": "set_fault", "mute": "tx_mute"}
ACTIONS = ("list", *_ACTIONS)


def _action_name(action: str) -> str:
    name = str(action).strip().lower().replace("-", "_")
    return _ALIASES.get(name, name)


class SimulatorHub:
    """Starts and stops many devices; optionally serves JSON-lines control on ``control_port``.

    Control protocol: one JSON object per line, e.g. ``{"device": "ulxd", "action": "pack_off",
    "channel": 2}``, answered by ``{"ok": true, "device": "ulxd", "action": "pack_off", "result": {...}}``
    (the device snapshot) or ``{"ok": false, "error": "..."}``. ``{"action": "list"}`` returns every
    snapshot. ``control_port=0`` binds an ephemeral port (see :attr:`control_address`).
    """

    def __init__(
        self,
        devices: Iterable[SimulatedShureDevice],
        *,
        control_port: int | None = None,
        control_host: str = "127.0.0.1",
    ) -> None:
        self.devices: dict[str, SimulatedShureDevice] = {}
        for device in devices:
            if device.key in self.devices:
                raise ValueError(f"duplicate device key {device.key!r}")
            self.devices[device.key] = device
        self.control_host = control_host
        self.control_port = control_port
        self._control_server: asyncio.Server | None = None
        self._control_clients: set[asyncio.StreamWriter] = set()

    @property
    def control_address(self) -> tuple[str, int] | None:
        if self.control_port is None:
            return None
        return (self.control_host, self.control_port)

    def device(self, key: str) -> SimulatedShureDevice:
        try:
            return self.devices[key]
        except KeyError:
            known = ", ".join(self.devices) or "none"
            raise SimulatorError(f"no simulated device {key!r} (known: {known})") from None

    async def start(self) -> None:
        started: list[SimulatedShureDevice] = []
        try:
            for device in self.devices.values():
                await device.start()
                started.append(device)
            if self.control_port is not None:
                try:
                    self._control_server = await asyncio.start_server(
                        self._on_control, self.control_host, self.control_port
                    )
                except OSError as exc:
                    raise SimulatorBindError(
                        f"control server: cannot listen on {self.control_host}:{self.control_port}: "
                        f"{exc.strerror or exc}"
                    ) from exc
                self.control_port = self._control_server.sockets[0].getsockname()[1]
        except BaseException:
            for device in started:
                await device.stop()
            raise

    async def stop(self) -> None:
        if self._control_server is not None:
            self._control_server.close()
            self._control_server = None
        for writer in list(self._control_clients):
            writer.transport.abort()
        self._control_clients.clear()
        for device in self.devices.values():
            await device.stop()

    async def call(self, key: str | None, action: str, **kwargs: Any) -> Any:
        """Run one control action; returns the device snapshot (``list``: all snapshots)."""
        name = _action_name(action)
        if name == "list":
            return [device.snapshot() for device in self.devices.values()]
        if name not in _ACTIONS:
            raise SimulatorError(f"unknown action {action!r}; actions: {', '.join(ACTIONS)}")
        if not key:
            raise SimulatorError(f"action {name!r} needs a device")
        device = self.device(key)
        required = _ACTIONS[name]
        optional = _OPTIONAL_ARGS.get(name, set())
        unexpected = set(kwargs) - set(required) - optional
        if unexpected:
            raise SimulatorError(f"unexpected argument(s) for {name}: {', '.join(sorted(unexpected))}")
        missing = [arg for arg in required if arg not in kwargs and arg not in optional]
        if missing:
            raise SimulatorError(f"{name} needs: {', '.join(missing)}")
        if name != "snapshot":
            await getattr(device, name)(**kwargs)
        return device.snapshot()

    async def handle_request(self, request: Any) -> dict[str, Any]:
        if not isinstance(request, dict):
            return {"ok": False, "error": "request must be a JSON object"}
        args = {k: v for k, v in request.items() if k not in ("device", "action")}
        action = request.get("action")
        if not isinstance(action, str):
            return {"ok": False, "error": "missing 'action'"}
        key = request.get("device")
        try:
            result = await self.call(key, action, **args)
        except SimulatorError as exc:
            return {"ok": False, "error": str(exc)}
        except (TypeError, ValueError) as exc:
            return {"ok": False, "error": f"bad arguments: {exc}"}
        reply: dict[str, Any] = {"ok": True, "action": _action_name(action), "result": result}
        if key:
            reply["device"] = key
        return reply

    async def _on_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._control_clients.add(writer)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                if not line.strip():
                    continue
                try:
                    request = json.loads(line)
                except ValueError as exc:
                    reply: dict[str, Any] = {"ok": False, "error": f"invalid JSON: {exc}"}
                else:
                    reply = await self.handle_request(request)
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, OSError, ValueError):
            pass  # ValueError: a line longer than the reader limit
        finally:
            self._control_clients.discard(writer)
            writer.close()


class SimulatorThread:
    """A :class:`SimulatorHub` on its own event loop in a daemon thread, for synchronous code.

    Usage (``rig_device`` from ``micboard.simulators.rig``)::

        device = SimulatedShureDevice(rig_device("ulxd"), host="127.0.0.1", port=0, dynamics=False)
        with SimulatorThread([device], control_port=0) as sim:
            host, port = sim.address("ulxd")  # the real ephemeral port
            sim.pack_off("ulxd", 2)  # blocking, thread-safe; returns the device snapshot
    """

    def __init__(
        self,
        devices: Iterable[SimulatedShureDevice],
        *,
        control_port: int | None = None,
        control_host: str = "127.0.0.1",
    ) -> None:
        self.hub = SimulatorHub(devices, control_port=control_port, control_host=control_host)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> SimulatorThread:
        """Start the thread; returns once every listener is bound (re-raises a bind error)."""
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                loop.run_until_complete(self.hub.start())
            except BaseException as exc:
                failure.append(exc)
                self._loop = None
                loop.close()
                ready.set()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.close()

        self._thread = threading.Thread(target=run, name="micboard-simulator", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise SimulatorError("simulator thread did not start in time")
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None or self._loop is None:
            return
        loop = self._loop
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.hub.stop(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout)
        self._thread = None
        self._loop = None

    def __enter__(self) -> SimulatorThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self, coro: Any, timeout: float) -> Any:
        if self._loop is None:
            coro.close()
            raise SimulatorError("simulator thread is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def device(self, key: str) -> SimulatedShureDevice:
        """The device object (read attributes only from this thread; change it via call())."""
        return self.hub.device(key)

    def address(self, key: str) -> tuple[str, int]:
        return self.hub.device(key).address

    @property
    def control_address(self) -> tuple[str, int] | None:
        return self.hub.control_address

    def call(self, key: str | None, action: str, timeout: float = 10.0, **kwargs: Any) -> Any:
        """Thread-safe control action (see :meth:`SimulatorHub.call`)."""
        return self._run(self.hub.call(key, action, **kwargs), timeout)

    def list(self) -> list[dict[str, Any]]:
        return self.call(None, "list")

    def snapshot(self, key: str) -> dict[str, Any]:
        return self.call(key, "snapshot")

    def pack_off(self, key: str, channel: int) -> dict[str, Any]:
        return self.call(key, "pack_off", channel=channel)

    def pack_on(self, key: str, channel: int) -> dict[str, Any]:
        return self.call(key, "pack_on", channel=channel)

    def set_battery(self, key: str, channel: int, percent: float) -> dict[str, Any]:
        return self.call(key, "set_battery", channel=channel, percent=percent)

    def set_name(self, key: str, channel: int, name: str) -> dict[str, Any]:
        return self.call(key, "set_name", channel=channel, name=name)

    def set_fault(self, key: str, kind: str | None) -> dict[str, Any]:
        return self.call(key, "set_fault", kind=kind)

    def power_off(self, key: str) -> dict[str, Any]:
        return self.call(key, "power_off")

    def power_on(self, key: str) -> dict[str, Any]:
        return self.call(key, "power_on")

    def peak(self, key: str, channel: int) -> dict[str, Any]:
        return self.call(key, "peak", channel=channel)

    def tx_mute(self, key: str, channel: int, on: bool = True) -> dict[str, Any]:
        return self.call(key, "tx_mute", channel=channel, on=on)

    def rf_loss(self, key: str, channel: int, on: bool = True) -> dict[str, Any]:
        return self.call(key, "rf_loss", channel=channel, on=on)

    def override(self, key: str, prop: str, value: str | None, channel: int = 0) -> dict[str, Any]:
        return self.call(key, "override", prop=prop, value=value, channel=channel)
