"""Asyncio simulator of Shure command-string receivers (TCP 2202).

Emulates ULX-D, QLX-D, SLX-D, Axient Digital (AD4D/AD4Q) and PSM1000 (P10T) closely enough to
exercise a real driver: family-correct property names, padding and SAMPLE layouts, REP on every
non-metered change to every client, METER_RATE as device state, transmitter on/off sentinels,
chaotic TCP segmentation and switchable faults. See protocols.md §1 and §7.1-7.3, §7.8.

The dynamics, control API and hub come from :mod:`micboard.simulators.engine`; the wire format from
:mod:`~micboard.simulators.shure_frames` and the command handling from
:mod:`~micboard.simulators.shure_commands`. No Django imports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar

from micboard.drivers.shure_spec import (
    AXIENT,
    RUNTIME_CALCULATING,
    RUNTIME_WARNING,
    SET_CHARS,
    family_spec,
    shure_model,
)
from micboard.simulators.engine import ChannelState, SimulatedDevice, SimulatorBindError, SimulatorError
from micboard.simulators.rig import RigDevice
from micboard.simulators.shure_commands import ShureCommands, _CommandError
from micboard.simulators.shure_frames import (
    _AUDIO_FLOOR,
    AD_MODES,
    UNKNOWN_GROUP_CHANNEL,
    ShureChannel,
    ShureFrames,
    _num,
)

logger = logging.getLogger(__name__)

__all__ = ["UNKNOWN_GROUP_CHANNEL", "SimulatedShureDevice"]

_COALESCE_P = 0.2  # chaos: chance that one write carries every frame already queued
_SPLIT_P = 0.08  # chaos: chance that one write is cut inside a frame and sent in two parts
_GARBAGE_P = 0.35  # garbage fault: chance that a write is preceded by junk
_INPUT_BUFFER_CAP = 4096
_PENDING_CAP = 256  # slow fault: commands held back per client


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


@dataclass(eq=False)
class _Client:
    writer: asyncio.StreamWriter
    queue: asyncio.Queue
    peer: str
    task: asyncio.Task | None = None
    closed: bool = False
    buffer: str = field(default="")
    pending: deque = field(default_factory=deque)  # slow fault: (due, command body)
    slow_task: asyncio.Task | None = None


class SimulatedShureDevice(ShureCommands, ShureFrames, SimulatedDevice):
    """One simulated Shure command-strings device listening on TCP.

    Args (beyond :class:`~micboard.simulators.engine.SimulatedDevice`'s):
        line_ending: appended to each frame; ``None`` = family default ("" / PSM1000 "\\r\\n").
        flash_seconds: how long FLASH ON lasts before the device reports FLASH OFF.
        queue_limit: frames buffered per client before that client is dropped.

    Faults: the engine's (``slow`` holds every reply back 1.5 s; SAMPLEs and unsolicited REPs keep
    flowing, as they would from a busy receiver) plus ``third_party_disabled`` (SLX-D with third-party
    control off: accepts connections, never answers). ``override`` replaces a reported value verbatim.
    """

    extra_faults: ClassVar[tuple[str, ...]] = ("third_party_disabled",)
    mute_faults: ClassVar[tuple[str, ...]] = ("silent", "third_party_disabled", "stop_answering")
    actions: ClassVar[dict[str, tuple[tuple[str, ...], frozenset[str]]]] = {
        "override": (("prop", "value"), frozenset({"channel"})),
        "set_tx_offset": (("channel", "db"), frozenset()),
        "set_bars": (("channel", "bars"), frozenset()),
        "set_runtime": (("channel", "runtime"), frozenset()),
        "set_group_channel": (("channel", "group_channel"), frozenset()),
        "set_frequency": (("channel", "khz"), frozenset()),
        "set_antennas": (("channel", "status"), frozenset()),
        "set_rf_mode": (("mode",), frozenset()),
    }
    channel_class: ClassVar[type[ChannelState]] = ShureChannel

    def __init__(
        self,
        rig: RigDevice,
        *,
        line_ending: str | None = None,
        flash_seconds: float = 10.0,
        queue_limit: int = 4096,
        **options: Any,
    ) -> None:
        self.model = shure_model(rig.model)
        self.spec = family_spec(self.model.family)
        super().__init__(
            rig,
            channels=self.model.channels,
            family=self.model.family,
            default_tx=self.spec.tx_models[0] if self.spec.tx_models else None,
            is_iem=self.model.is_iem,
            **options,
        )
        self.line_ending = line_ending if line_ending is not None else self.spec.line_ending
        self.flash_seconds = flash_seconds
        self.queue_limit = queue_limit
        self.name_width = self.spec.name_width
        self.name_chars = SET_CHARS
        self.audio_floor = _AUDIO_FLOOR[self.family]
        self._net_rng = random.Random(self._dseed ^ 0x5BD1E995)
        self.band = self._pick_band()
        self.rf_mode = "standard"  # AD: standard / quadversity (4 antennas) / fd-c (two carriers)
        # Fault injection: (channel, property) -> raw value sent instead of the real one (channel 0: device).
        self.overrides: dict[tuple[int, str], str] = {}
        self.stats.update(writes=0, coalesced_writes=0, split_writes=0, garbage_writes=0, dropped_clients=0)
        self.flash_until = 0.0
        self._clients: set[_Client] = set()
        self._server: asyncio.Server | None = None
        self._last_tx_on: dict[int, bool] = {}
        self._channel_props = {key.split()[0] for key, _ in self._render_channel(self.channels[0], True)}
        self._device_props = {key for key, _ in self._render_device()}
        self._device_props.update(self.spec.device_settable)

    # ------------------------------------------------------------ engine hooks

    @property
    def listening(self) -> bool:
        return self._server is not None

    @property
    def client_count(self) -> int:
        return len(self._clients)

    async def _listen(self) -> None:
        try:
            self._server = await asyncio.start_server(self._on_connect, self.host, self.port)
        except OSError as exc:
            raise SimulatorBindError(
                f"{self.key} ({self.rig.model}): cannot listen on {self.host}:{self.port}: {exc.strerror or exc}"
            ) from exc
        if self.port == 0:
            self.port = self._server.sockets[0].getsockname()[1]

    async def _unlisten(self) -> None:
        if self._server is not None:
            self._server.close()  # closes the listening socket now; open connections are untouched
            self._server = None

    async def _disconnect_all(self) -> None:
        clients = list(self._clients)
        for client in clients:
            self._drop(client, abort=True)
        for client in clients:
            for task in (client.task, client.slow_task):
                if task:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task

    def _reported_values(self) -> dict[tuple[int, str], str]:
        values = {(0, key): value for key, value in self._render_device()}
        for ch in self.channels:
            values.update(((ch.number, key), value) for key, value in self._render_channel(ch, False))
        return values

    def _remember_reported(self) -> None:
        super()._remember_reported()
        self._last_tx_on = {ch.number: ch.tx_on for ch in self.channels}

    def _emit_changes(self, changes: list[tuple[int, str, str]]) -> None:
        frames = [self._rep_channel(n, k, v) if n else self._rep_device(k, v) for n, k, v in changes]
        for ch in self.channels:
            if self._last_tx_on.get(ch.number) != ch.tx_on:
                self._last_tx_on[ch.number] = ch.tx_on
                if self.family == AXIENT:  # AD reports the link quality as the pack comes and goes
                    meter = self._meter(ch)
                    quality = _num(meter.quality, 3) if meter.quality is not None else "255"
                    frames.append(self._rep_channel(ch.number, "CHAN_QUALITY", quality))
        self._broadcast(frames)

    def _emit_meter(self, ch: ChannelState) -> None:
        self._broadcast(self._sample_frames(ch))

    def _on_fault(self, old: str | None, new: str | None) -> None:
        if new in self.mute_faults:
            self._clear_queues()

    def _on_boot(self) -> None:
        self.flash_until = 0.0
        for ch in self.channels:
            ch.flash_until = 0.0

    def _idle_rms(self, ch: ChannelState, t: float) -> float:
        if self.family == AXIENT:  # AD's RMS meter wanders over the noise with no transmitter
            return -100.0 + 13.0 * self._h(ch.number, 62, int(t * 2))
        return self.audio_floor[1]

    # ------------------------------------------------------------ networking

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not (self._running and self.powered and self.fault != "refuse"):
            writer.transport.abort()
            return
        peer = writer.get_extra_info("peername")
        client = _Client(writer=writer, queue=asyncio.Queue(self.queue_limit), peer=f"{peer}")
        client.task = asyncio.create_task(self._writer_loop(client), name=f"sim-{self.key}-writer")
        self._clients.add(client)
        session = self._open_session()
        try:
            while not client.closed:
                data = await reader.read(4096)
                if not data:
                    break
                if not self.output_enabled:
                    continue  # read and ignore everything
                frames, client.buffer = _split_frames(client.buffer + data.decode("latin-1"))
                for body in frames:
                    if self.reply_delay or client.pending:
                        self._hold_back(client, body)
                    else:
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
        for task in (client.task, client.slow_task):
            if task and task is not asyncio.current_task():
                task.cancel()
        transport = client.writer.transport
        if abort:
            transport.abort()
        else:
            client.writer.close()

    def _enqueue(self, client: _Client, frames: list[str]) -> None:
        if client.closed or not self.output_enabled:
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

    def _hold_back(self, client: _Client, body: str) -> None:
        """The ``slow`` fault: answer ``body`` SLOW_REPLY_SECONDS after it arrived, in arrival order."""
        if len(client.pending) >= _PENDING_CAP:
            return  # a flood of commands at a slow device: the excess goes unanswered
        client.pending.append((self._now() + self.reply_delay, body))
        if client.slow_task is None or client.slow_task.done():
            client.slow_task = asyncio.create_task(self._answer_late(client), name=f"sim-{self.key}-slow")

    async def _answer_late(self, client: _Client) -> None:
        while client.pending and not client.closed:
            due, body = client.pending[0]
            await asyncio.sleep(max(0.0, due - self._now()))
            client.pending.popleft()
            if self.output_enabled:
                self._handle_command(client, body)

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

    # ------------------------------------------------------------ control API (Shure extras)

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

    async def set_tx_offset(self, channel: int, db: int) -> None:
        """The transmitter's offset in dB (ULX-D/QLX-D 0, 3 .. 21; AD -12 .. +20), reported as TX_OFFSET."""
        ch = self._mic_channel(channel)
        spec = self.spec
        allowed = [raw - spec.tx_offset_zero for raw in spec.tx_offset_values]
        if not allowed:
            raise SimulatorError(f"{self.key} ({self.rig.model}) reports no TX offset")
        value = _whole(db, "db")
        if value not in allowed:
            raise SimulatorError(f"{self.rig.model} TX offsets are {_ranges(allowed)} dB, not {db!r}")
        ch.tx_offset_db = value
        self._publish_changes()

    async def set_bars(self, channel: int, bars: int | str | None) -> None:
        """Report these battery bars (0-5) whatever the charge, e.g. 0 bars with minutes left; "auto" undoes it."""
        ch = self._mic_channel(channel)
        if _is_auto(bars):
            ch.bars_pin = None
        else:
            value = _whole(bars, "bars")
            if not 0 <= value <= 5:
                raise SimulatorError(f"bars must be 0-5 or auto, got {bars!r}")
            ch.bars_pin = value
        self._publish_changes()

    async def set_runtime(self, channel: int, runtime: int | str | None) -> None:
        """Report this runtime: minutes 0-65532, "warning" (65533), "calculating" (65534) or "auto"."""
        ch = self._mic_channel(channel)
        if _is_auto(runtime):
            ch.runtime_pin = None
        elif isinstance(runtime, str) and runtime.strip().lower() in _RUNTIME_WORDS:
            ch.runtime_pin = _RUNTIME_WORDS[runtime.strip().lower()]
        else:
            value = _whole(runtime, "runtime")
            if not 0 <= value <= RUNTIME_CALCULATING:
                raise SimulatorError(f"runtime must be 0-65532 minutes, warning, calculating or auto, got {runtime!r}")
            ch.runtime_pin = value
        self._publish_changes()

    async def set_group_channel(self, channel: int, group_channel: str) -> None:
        """Tune a channel to a group/channel "on the front panel": its frequency follows from the unit's band."""
        self._front_panel(channel, self.spec.group_channel_prop, str(group_channel), "group,channel such as 1,5")

    async def set_frequency(self, channel: int, khz: int) -> None:
        """Tune a channel to a frequency (kHz, 25 kHz raster, inside the unit's band); group/channel becomes --,--."""
        self._front_panel(channel, "FREQUENCY", str(_whole(khz, "khz")), f"a frequency in band {self.band} (kHz)")

    async def set_antennas(self, channel: int, status: str | None) -> None:
        """Pin the antenna letters while the pack is on: AD one of B (blue), R (red), X per antenna; ULX-D/QLX-D
        AX, XB or XX; "auto" undoes it."""
        ch = self._mic_channel(channel)
        if _is_auto(status):
            ch.antenna_pin = None
        else:
            letters = str(status).strip().upper()
            if self.family == AXIENT:
                ok = len(letters) == self.antennas and set(letters) <= set("BRX")
                shape = f"{self.antennas} letters of B, R, X"
            elif self.spec.sample_layout == "ulx":
                ok, shape = letters in ("AX", "XB", "XX"), "AX, XB or XX"
            else:
                raise SimulatorError(f"{self.key} ({self.rig.model}) reports no antenna status")
            if not ok:
                raise SimulatorError(f"antennas must be {shape} (or auto), got {status!r}")
            ch.antenna_pin = letters
        self._publish_changes()

    async def set_rf_mode(self, mode: str) -> None:
        """Axient Digital: standard (2 antennas), quadversity (4 antennas) or fd-c (frequency diversity, a second
        RF section in every SAMPLE)."""
        if self.family != AXIENT:
            raise SimulatorError(f"{self.key} ({self.rig.model}) has no RF modes (Axient Digital only)")
        name = str(mode).strip().lower()
        if name not in AD_MODES:
            raise SimulatorError(f"rf mode must be one of {', '.join(AD_MODES)}, got {mode!r}")
        self.rf_mode = name
        self.antennas = 4 if name == "quadversity" else 2
        for ch in self.channels:
            if ch.antenna_pin is not None and len(ch.antenna_pin) != self.antennas:
                ch.antenna_pin = None
        self._publish_changes()

    def _front_panel(self, channel: Any, prop: str, value: str, shape: str) -> None:
        ch = self._channel(channel)
        try:
            apply = self._channel_setter(prop, [value], None)
        except _CommandError:
            raise SimulatorError(f"{self.key} ({self.rig.model}) refuses {value!r}: expected {shape}") from None
        apply(ch)
        self._publish_changes()

    def _snapshot_channel(self, ch: ChannelState) -> dict[str, Any]:
        snap = super()._snapshot_channel(ch)
        snap.update(
            group_channel=ch.group_chan,
            tx_offset_db=ch.tx_offset_db if self.spec.tx_offset_prop else None,
            bars_pinned=ch.bars_pin,
            runtime_pinned=ch.runtime_pin,
            antennas_pinned=ch.antenna_pin,
        )
        return snap

    def snapshot(self) -> dict[str, Any]:
        snap = super().snapshot()
        snap["overrides"] = [{"channel": c, "prop": p, "value": v} for (c, p), v in sorted(self.overrides.items())]
        snap["band"] = self.band
        snap["rf_mode"] = self.rf_mode if self.family == AXIENT else None
        snap["antennas"] = self.antennas
        return snap


_RUNTIME_WORDS = {"warning": RUNTIME_WARNING, "calculating": RUNTIME_CALCULATING}


def _is_auto(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in ("auto", "none", ""))


def _whole(value: Any, name: str) -> int:
    """A whole number from JSON or simctl text. Raises SimulatorError."""
    if isinstance(value, bool):
        raise SimulatorError(f"{name} must be a whole number, got {value!r}")
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise SimulatorError(f"{name} must be a whole number, got {value!r}") from None


def _ranges(values: list[int]) -> str:
    step = values[1] - values[0] if len(values) > 1 else 1
    return f"{values[0]}..{values[-1]}" + (f" in steps of {step}" if step != 1 else "")
