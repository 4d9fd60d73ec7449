"""The transport-independent core of every simulated receiver.

A protocol module (``shure_tcp.py``, and one per further family) subclasses :class:`SimulatedDevice`,
which owns the channel state and its dynamics (battery drain, pack on/off events, RF wander and fades per
antenna, speech or programme audio, clips, RF loss), the control API every family shares and the fault
switch. The subclass owns the wire: it opens and closes listeners, writes frames, and decides what a
fault looks like on its transport. :class:`SimulatorHub` / :class:`SimulatorThread` (in ``hub.py``,
re-exported here) run any mix of subclasses behind one JSON-lines control server.

Hooks a subclass implements (the base calls them; none is called with the listener in an odd state):

* ``async _listen()`` / ``async _unlisten()``: open (raise :class:`SimulatorBindError`) / close the
  listener; open connections stay. ``listening`` / ``client_count``: properties.
* ``async _disconnect_all()``: close every open connection now (power off, stop).
* ``_reported_values() -> {(channel, key): value}``: every non-metered value the device reports
  (channel 0 = the device). ``_emit_changes([(channel, key, value), ...])``: tell whoever should hear
  (the base diffs after every control action and every tick; see :meth:`SimulatedDevice._publish_changes`).
* ``_emit_meter(ch)``: send one meter sample of ``ch`` (called at the channel's meter rate once a
  client set it with :meth:`SimulatedDevice._set_meter_rate`).
* optional: ``_on_fault(old, new)``, ``_on_boot()``, ``_idle_rms(ch, t)``, ``_snapshot_channel(ch)``,
  class attributes ``extra_faults`` (family faults) and ``actions`` (family control actions the hub and
  ``simctl`` reach, name -> (required args, optional args)).

No Django imports: tests, ``manage.py simulate`` and anything else can use it directly.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import math
import random
import time
import zlib
from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar

# The hub, its thread, the control server and the simulator's exceptions live in hub.py (size); the hub
# runs any SimulatedDevice subclass.
from micboard.simulators.hub import (
    ACTIONS,
    DEFAULT_CONTROL_PORT,
    SimulatorBindError,
    SimulatorError,
    SimulatorHub,
    SimulatorThread,
)
from micboard.simulators.rig import RigChannel, RigDevice

logger = logging.getLogger(__name__)

# Faults every family honours, each in its transport's way: ``refuse`` closes the listener (connection
# refused / ICMP unreachable), ``silent`` accepts and never answers, ``stop_answering`` goes quiet on
# working links, ``garbage`` mixes junk into the output, ``drop_mid_frame`` cuts a frame and closes,
# ``slow`` delays every reply by SLOW_REPLY_SECONDS (still inside a 2 s poll timeout).
FAULTS: tuple[str | None, ...] = (None, "refuse", "silent", "stop_answering", "garbage", "drop_mid_frame", "slow")
SLOW_REPLY_SECONDS = 1.5

TICK_SECONDS = 0.25  # dynamics / unsolicited-report cadence (real time)
MASK64 = (1 << 64) - 1
NAME_CHARS = frozenset(chr(c) for c in range(32, 127))


def hash01(*parts: int) -> float:
    """Deterministic uniform [0, 1) from integers (splitmix64-style mixing)."""
    x = 0x9E3779B97F4A7C15
    for part in parts:
        x = ((x ^ (part & MASK64)) * 0xBF58476D1CE4E5B9) & MASK64
        x ^= x >> 31
        x = (x * 0x94D049BB133111EB) & MASK64
        x ^= x >> 29
    return (x >> 11) / float(1 << 53)


def clamp(value: float, lo: float, hi: float) -> float:
    return lo if value < lo else hi if value > hi else value


@dataclass
class Meter:
    """One instant of a channel's meters, in physical units (the subclass scales them for its wire)."""

    tx_on: bool
    rssi: list[float]  # dBm per antenna
    active: int | None  # index of the selected antenna, None with no transmitter
    peak: float  # dBFS
    rms: float  # dBFS
    quality: int | None  # 0-5 link quality, None with no transmitter
    left: float = -90.0  # programme audio (IEM), dBFS
    right: float = -90.0


@dataclass
class ChannelState:
    number: int
    name: str
    frequency_khz: int
    tx_model: str | None  # None: no transmitter on this channel (IEM)
    battery_type: str
    battery_pct: float
    tx_on: bool
    audio_gain: int = 18
    audio_mute: bool = False
    tx_muted: bool = False
    meter_rate: int = 0  # ms between meter samples, 0 = off
    meter_task: asyncio.Task | None = None
    calc_until: float = 0.0  # loop time until which the runtime reads "calculating"
    clip_samples: int = 0
    rf_lost: bool = False  # the pack is out of range: RF at the noise floor, audio gone (a dropout)
    active_antenna: int = 0
    auto_on_at: float | None = None  # simulated time at which an auto-switched-off pack returns
    swap_on_return: bool = False
    drain: float = 1.0  # runtime used per second on: above 1 a worn battery (its runtime falls faster than the clock)
    on_seconds: float = 0.0  # ground truth: simulated seconds the pack was on
    used_seconds: float = 0.0  # ground truth: runtime used (seconds on times ``drain``), what the pack's runtime lost
    # Per-channel random parameters (seeded).
    rf_base: float = -55.0
    ant_offset: tuple[float, ...] = (0.0, -2.0)
    wander_period: float = 40.0
    wander_phase: float = 0.0
    multipath_period: tuple[float, ...] = (7.0, 11.0)
    multipath_phase: tuple[float, ...] = (0.0, 1.0)
    syllable_hz: float = 4.0
    syllable_phase: float = 0.0
    cycle_count: int = 50
    health: int = 96


class SimulatedDevice(abc.ABC):
    """One simulated receiver: channel state, dynamics, control API and faults; the wire is the subclass's.

    Args:
        rig: the demo-rig entry to emulate (model, names, transmitters, batteries, frequencies).
        channels: how many channels the model has. ``is_iem``: programme audio, no RF (a transmitter rack).
        default_tx: transmitter model for rig channels that name none (None: no transmitters at all).
        host / port: listen address; default ``rig.host`` / ``rig.port``. ``port=0`` binds an
            ephemeral port, readable from :attr:`port` after :meth:`start`.
        seed: makes the dynamics (RF, audio, random pack events) reproducible.
        speed: clock factor for battery drain, runtime and the calculating period.
        dynamics: when False every value stays exactly as set (meters still emit at their rate).
        chaos: the transport's irregularities (segmentation, coalescing) where it has any.
        runtime_hours: full-pack runtime used for drain and runtime minutes.
        calculating_seconds: how long a freshly switched-on pack reports its runtime as being
            calculated (simulated seconds, so divided by ``speed``); 0 disables it.
        pack_events_per_hour: with dynamics, how often (per transmitter per simulated hour) a
            performer switches the pack off for 20-120 simulated seconds (a low pack comes back
            fresh, as after a battery swap); packs under 10 % do it six times as often.
        manual_clock: simulated time moves only when the caller calls :meth:`advance` (``speed`` is then
            unused): no dynamics timer and no meter timers; each advance ticks the dynamics and sends one
            meter sample per metered channel. A 24-hour show then runs as fast as its reader can follow
            (``micboard/showrun.py``), and runs the same every time.
    """

    extra_faults: ClassVar[tuple[str, ...]] = ()
    mute_faults: ClassVar[tuple[str, ...]] = ("silent", "stop_answering")
    actions: ClassVar[dict[str, tuple[tuple[str, ...], frozenset[str]]]] = {}
    channel_class: ClassVar[type[ChannelState]] = ChannelState

    def __init__(
        self,
        rig: RigDevice,
        *,
        channels: int,
        family: str,
        default_tx: str | None,
        is_iem: bool = False,
        host: str | None = None,
        port: int | None = None,
        seed: int | None = None,
        speed: float = 1.0,
        dynamics: bool = True,
        chaos: bool = True,
        runtime_hours: float = 8.0,
        calculating_seconds: float = 5.0,
        pack_events_per_hour: float = 1.0,
        manual_clock: bool = False,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.rig = rig
        self.key = rig.key
        self.family = family
        self.is_iem = is_iem
        self.host = host if host is not None else rig.host
        self.port = port if port is not None else rig.port
        self.speed = float(speed)
        self.dynamics = dynamics
        self.chaos = chaos
        self.runtime_minutes = runtime_hours * 60.0
        self.calculating_seconds = calculating_seconds
        self.pack_events_per_hour = pack_events_per_hour
        self.manual_clock = manual_clock
        self.seed = seed if seed is not None else random.randrange(1 << 32)
        self._dseed = (self.seed * 1_000_003 + zlib.crc32(self.key.encode())) & MASK64
        self._rng = random.Random(self._dseed)
        self.fault: str | None = None
        self.sessions: deque[list] = deque(maxlen=2000)  # [opened, closed or None] per connection, wall clock
        self.powered = False
        self.stats: dict[str, int] = {"connections": 0}
        self.device_id = rig.device_id
        # Subclasses may change these after super().__init__().
        self.name_width = 8
        self.name_chars = NAME_CHARS
        self.audio_floor = (-60.0, -60.0)  # (peak, rms) dBFS with no transmitter or a muted one
        self.antennas = 2
        self.channels: list = [self._new_channel(n, default_tx) for n in range(1, channels + 1)]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._t0 = 0.0
        self._sim_time = 0.0
        self._tick_task: asyncio.Task | None = None
        self._running = False
        self._reported: dict[tuple[int, str], str] = {}

    @classmethod
    def fault_names(cls) -> tuple[str | None, ...]:
        return FAULTS + cls.extra_faults

    def _new_channel(self, number: int, default_tx: str | None) -> ChannelState:
        spec: RigChannel | None = self.rig.channels[number - 1] if number <= len(self.rig.channels) else None
        crng = random.Random(self._dseed + number)
        freq = (
            spec.frequency_khz
            if spec and spec.frequency_khz
            else (470000 + 25 * (zlib.crc32(f"{self.key}{number}".encode()) % 19000))
        )
        tx_model = None if default_tx is None else ((spec.tx_model if spec else None) or default_tx)
        pct = float(spec.battery_percent) if spec and tx_model else 0.0
        return self.channel_class(
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

    # ------------------------------------------------------------ hooks (the wire)

    @abc.abstractmethod
    async def _listen(self) -> None:
        """Open the listener (set :attr:`port` when it was 0). Raises SimulatorBindError."""

    @abc.abstractmethod
    async def _unlisten(self) -> None:
        """Close the listener; open connections are untouched."""

    @abc.abstractmethod
    async def _disconnect_all(self) -> None:
        """Close every open connection now."""

    @property
    @abc.abstractmethod
    def listening(self) -> bool: ...

    @property
    @abc.abstractmethod
    def client_count(self) -> int: ...

    @abc.abstractmethod
    def _reported_values(self) -> dict[tuple[int, str], str]:
        """Every non-metered value as the wire shows it, keyed by (channel or 0 for the device, key)."""

    @abc.abstractmethod
    def _emit_changes(self, changes: list[tuple[int, str, str]]) -> None:
        """Report changed values (channel, key, value) to whoever follows the device."""

    @abc.abstractmethod
    def _emit_meter(self, ch: ChannelState) -> None:
        """Send one meter sample of ``ch`` to whoever asked for meters."""

    def _on_fault(self, old: str | None, new: str | None) -> None:  # noqa: B027 (optional hook)
        """The fault changed (the listener is synced afterwards)."""

    def _on_boot(self) -> None:  # noqa: B027 (optional hook)
        """Power-on defaults; the base already stopped metering."""

    def _idle_rms(self, ch: ChannelState, t: float) -> float:
        """Audio RMS (dBFS) a receiver shows with no transmitter."""
        return self.audio_floor[1]

    # ------------------------------------------------------------ lifecycle

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def output_enabled(self) -> bool:
        """False while powered off or under a fault that mutes the device."""
        return self.powered and self.fault not in self.mute_faults

    @property
    def reply_delay(self) -> float:
        """Seconds to hold back each reply (the ``slow`` fault)."""
        return SLOW_REPLY_SECONDS if self.fault == "slow" else 0.0

    async def start(self) -> None:
        """Bind the listener and start the dynamics clock. Raises SimulatorBindError."""
        if self._running:
            return
        self._loop = asyncio.get_running_loop()
        self._t0 = self._now()
        self._running = True
        self.powered = True
        try:
            await self._sync_listener()
        except SimulatorBindError:
            self._running = False
            self.powered = False
            raise
        self._remember_reported()
        if not self.manual_clock:
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
        await self._disconnect_all()

    async def _sync_listener(self) -> None:
        want = self._running and self.powered and self.fault != "refuse"
        if want and not self.listening:
            await self._listen()
        elif not want and self.listening:
            await self._unlisten()

    def _open_session(self) -> list:
        """Bookkeeping for one new connection; set ``[1]`` of the result to time.time() when it closes."""
        self.stats["connections"] += 1
        session = [time.time(), None]  # wall-clock open / close, for tests that watch who polls when
        self.sessions.append(session)
        return session

    def _stop_meters(self) -> None:
        for ch in self.channels:
            if ch.meter_task:
                ch.meter_task.cancel()
                ch.meter_task = None

    def _now(self) -> float:
        """The device's clock: the loop's, or the simulated seconds so far with a manual clock."""
        if self.manual_clock:
            return self._sim_time
        assert self._loop is not None
        return self._loop.time()

    def _calculating_span(self) -> float:
        """How long (on :meth:`_now`'s clock) a pack switched on reports its runtime as calculating."""
        if not self.calculating_seconds:
            return 0.0
        return self.calculating_seconds / (1.0 if self.manual_clock else self.speed)

    def advance(self, seconds: float) -> None:
        """Manual clock: move simulated time on by ``seconds``, then send one meter sample per metered channel.

        Call it from the simulator's event loop. Raises: SimulatorError without ``manual_clock``.
        """
        if not self.manual_clock:
            raise SimulatorError(f"{self.key} runs on its own clock (manual_clock is off)")
        if not seconds > 0:
            raise SimulatorError(f"advance by a positive number of seconds, not {seconds!r}")
        self._tick(float(seconds))
        if self._running:
            for ch in self.channels:
                if ch.meter_rate:
                    self._emit_meter(ch)

    def _elapsed(self) -> float:
        return self._now() - self._t0 if self._loop is not None else 0.0

    # ------------------------------------------------------------ reporting

    def _remember_reported(self) -> None:
        self._reported = dict(self._reported_values())

    def _mark_reported(self, channel: int, key: str, value: str) -> None:
        """A value the subclass already told everyone (e.g. a SET echo broadcast)."""
        self._reported[(channel, key)] = value

    def _publish_changes(self) -> None:
        """Emit every reported value that changed since it was last reported (in the device's order)."""
        changes = []
        for (channel, key), value in self._reported_values().items():
            if self._reported.get((channel, key)) != value:
                self._reported[(channel, key)] = value
                changes.append((channel, key, value))
        self._emit_changes(changes)

    # ------------------------------------------------------------ metering

    def _set_meter_rate(self, ch: ChannelState, rate: int) -> None:
        """Emit a meter sample of ``ch`` every ``rate`` ms (0: stop)."""
        if rate == ch.meter_rate and (rate == 0 or ch.meter_task is not None):
            return
        ch.meter_rate = rate
        if ch.meter_task:
            ch.meter_task.cancel()
            ch.meter_task = None
        if rate > 0 and self._running and not self.manual_clock:
            ch.meter_task = asyncio.create_task(self._meter_loop(ch, rate), name=f"sim-{self.key}-meter")

    async def _meter_loop(self, ch: ChannelState, rate: int) -> None:
        period = rate / 1000.0
        due = self._now() + period
        while True:
            await asyncio.sleep(max(0.0, due - self._now()))
            try:
                self._emit_meter(ch)
            except Exception:
                logger.exception("simulator %s: meter emission failed", self.key)
            due += period
            if due < self._now():
                due = self._now() + period

    # ------------------------------------------------------------ dynamics

    def _runtime(self, ch: ChannelState) -> tuple[int, bool]:
        """(minutes left, calculating)."""
        calculating = self._loop is not None and self._now() < ch.calc_until
        return int(ch.battery_pct * self.runtime_minutes / 100.0), calculating

    @staticmethod
    def _bars(pct: float) -> int:
        return 0 if pct <= 0 else min(5, math.ceil(pct / 20.0))

    def _h(self, *parts: int) -> float:
        return hash01(self._dseed, *parts)

    def _meter(self, ch: ChannelState, *, consume_clip: bool = False) -> Meter:
        """The channel's meters now; ``consume_clip`` uses up one pending clip sample."""
        t = self._elapsed()
        n = ch.number
        floor_peak, floor_rms = self.audio_floor
        if self.is_iem:
            left, right = self._program_audio(ch, t) if self.dynamics else (-18.0, -19.0)
            if ch.clip_samples > 0:
                left = right = 0.0
                if consume_clip:
                    ch.clip_samples -= 1
            return Meter(True, [], None, max(left, right), max(left, right) - 8, None, left, right)
        antennas = range(self.antennas)
        if not ch.tx_on:
            if self.dynamics:
                rssi = [-110.0 + 5.0 * self._h(n, (60 if a < 2 else 80) + a, int(t * 2)) for a in antennas]
                rms = self._idle_rms(ch, t)
            else:
                rssi, rms = [-109.0 + (a % 2) for a in antennas], floor_rms
            return Meter(False, rssi, None, floor_peak, rms, None)
        rssi = [self._rf(ch, a, t) for a in antennas] if self.dynamics else [-50.0 - 4 * (a % 2) for a in antennas]
        if ch.rf_lost:
            rssi = [-110.0 - (a % 2) for a in antennas]
        active = ch.active_antenna if ch.active_antenna < len(rssi) else 0
        best_antenna = max(antennas, key=lambda a: rssi[a])
        if rssi[best_antenna] > rssi[active] + 2.0:  # ≈2 dB hysteresis
            active = best_antenna
        ch.active_antenna = active
        best = rssi[best_antenna]
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
        return Meter(True, rssi, ch.active_antenna, peak, rms, quality)

    def _rf(self, ch: ChannelState, antenna: int, t: float) -> float:
        n = ch.number
        pair = antenna % 2  # antennas 3 and 4 (quadversity) move like 1 and 2, with their own fades
        level = ch.rf_base + ch.ant_offset[pair] - 1.5 * (antenna // 2)
        level += 3.0 * math.sin(2 * math.pi * t / ch.wander_period + ch.wander_phase)
        level += 3.0 * math.sin(2 * math.pi * t / ch.multipath_period[pair] + ch.multipath_phase[pair] + antenna // 2)
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

    def _speech(self, ch: ChannelState, t: float) -> tuple[float, float]:
        n = ch.number
        phrase = int(t / 2.5)
        if self._h(n, 1, phrase) < 0.2:  # a pause between phrases
            rms = -80.0 + 20.0 * self._h(n, 2, int(t * 4))
            return rms + 4.0, rms
        loudness = -35.0 + 20.0 * self._h(n, 3, phrase)
        syllable = abs(math.sin(math.pi * ch.syllable_hz * t + ch.syllable_phase))
        rms = clamp(loudness - 6.0 + 9.0 * syllable, -40.0, -12.0)
        peak = rms + 6.0 + 6.0 * self._h(n, 4, int(t * 10))
        if self._h(n, 5, int(t)) < 0.02:  # an occasional clip
            peak = -1.0 + self._h(n, 6, int(t))
        return min(peak, 0.0), rms

    def _program_audio(self, ch: ChannelState, t: float) -> tuple[float, float]:
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
            await asyncio.sleep(TICK_SECONDS)
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
                    used = min(sim_dt * ch.drain, ch.battery_pct * runtime_s / 100.0)
                    ch.on_seconds += sim_dt
                    ch.used_seconds += used
                    ch.battery_pct = max(0.0, ch.battery_pct - 100.0 * used / runtime_s)
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

    def _switch_off(self, ch: ChannelState) -> None:
        ch.tx_on = False
        ch.auto_on_at = None
        ch.swap_on_return = False

    def _switch_on(self, ch: ChannelState) -> None:
        if ch.battery_pct <= 0.0:
            ch.battery_pct = 100.0  # a fresh pack
        ch.tx_on = True
        ch.auto_on_at = None
        ch.swap_on_return = False
        ch.calc_until = self._now() + self._calculating_span() if self.calculating_seconds else 0.0

    # ------------------------------------------------------------ control API

    def _channel(self, channel: Any) -> Any:
        if isinstance(channel, bool):
            raise SimulatorError(f"channel must be a number, got {channel!r}")
        try:
            number = int(channel)
        except (TypeError, ValueError):
            raise SimulatorError(f"channel must be a number, got {channel!r}") from None
        if not 1 <= number <= len(self.channels):
            raise SimulatorError(f"{self.key} ({self.rig.model}) has channels 1-{len(self.channels)}, not {number}")
        return self.channels[number - 1]

    def _mic_channel(self, channel: Any) -> Any:
        ch = self._channel(channel)
        if ch.tx_model is None:
            raise SimulatorError(f"{self.key} ({self.rig.model}) has no transmitter on channel {ch.number}")
        return ch

    async def pack_off(self, channel: int) -> None:
        """Switch the transmitter off: sentinels now, meters at the noise floor."""
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

    async def set_drain(self, channel: int, factor: float) -> None:
        """Drain the pack ``factor`` times faster than its runtime says (with dynamics): its reported runtime
        then falls faster than the clock, as a worn or cold battery's does. 1 is a healthy pack."""
        ch = self._mic_channel(channel)
        if isinstance(factor, bool):
            raise SimulatorError("factor must be a number")
        try:
            value = float(factor)
        except (TypeError, ValueError):
            raise SimulatorError(f"factor must be a number, got {factor!r}") from None
        if not 0.0 < value <= 10000.0:
            raise SimulatorError(f"factor must be above 0 and at most 10000, got {factor!r}")
        ch.drain = value

    async def set_name(self, channel: int, name: str) -> None:
        """Rename a channel "on the front panel" (an unsolicited report to every follower)."""
        ch = self._channel(channel)
        if not isinstance(name, str) or not 1 <= len(name) <= self.name_width:
            raise SimulatorError(f"name must be 1-{self.name_width} characters")
        if any(c not in self.name_chars for c in name):
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
        """Switch a fault on (see :meth:`fault_names`) or off (None / "none")."""
        if isinstance(kind, str) and kind.strip().lower() in ("", "none", "off", "null"):
            kind = None
        faults = self.fault_names()
        if kind not in faults:
            names = ", ".join(str(k).lower() if k else "none" for k in faults)
            raise SimulatorError(f"unknown fault {kind!r}; choose one of: {names}")
        old, self.fault = self.fault, kind
        self._on_fault(old, kind)
        if self._running:
            await self._sync_listener()
            if kind == "refuse":  # a unit that refuses connections resets the open ones too
                await self._disconnect_all()

    async def power_off(self) -> None:
        """A dead receiver: listener and every connection closed, metering stopped."""
        self.powered = False
        self._stop_meters()
        await self._sync_listener()
        await self._disconnect_all()

    async def power_on(self) -> None:
        """Boot again: listen, metering off (power-on default), runtimes recalculating."""
        if self.powered:
            return
        self.powered = True
        for ch in self.channels:
            ch.meter_rate = 0
            if ch.tx_on and self.calculating_seconds:
                ch.calc_until = self._now() + self._calculating_span()
        self._on_boot()
        try:
            await self._sync_listener()
        except SimulatorBindError:
            self.powered = False
            raise
        self._remember_reported()

    def _snapshot_channel(self, ch: ChannelState) -> dict[str, Any]:
        minutes, calculating = self._runtime(ch)
        has_tx = ch.tx_model is not None
        return {
            "channel": ch.number,
            "name": ch.name,
            "frequency_khz": ch.frequency_khz,
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
            "rf_lost": ch.rf_lost,
            "clip_pending": ch.clip_samples,
            "on_seconds": round(ch.on_seconds, 3) if has_tx else None,
            "used_seconds": round(ch.used_seconds, 3) if has_tx else None,
        }

    def snapshot(self) -> dict[str, Any]:
        """Plain JSON-able state for assertions and ``simctl``."""
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
            "faults": [k or "none" for k in self.fault_names()],
            "clients": self.client_count,
            "dynamics": self.dynamics,
            "chaos": self.chaos,
            "speed": self.speed,
            "stats": dict(self.stats),
            "channels": [self._snapshot_channel(ch) for ch in self.channels],
        }


__all__ = [
    "ACTIONS",
    "DEFAULT_CONTROL_PORT",
    "FAULTS",
    "SLOW_REPLY_SECONDS",
    "ChannelState",
    "Meter",
    "SimulatedDevice",
    "SimulatorBindError",
    "SimulatorError",
    "SimulatorHub",
    "SimulatorThread",
]
