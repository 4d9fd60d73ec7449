"""Asyncio simulator of Shure UHF-R receivers (UR4S / UR4D) on UDP 2202 (protocols.md §2, §7.4, §7.8).

What it does on the wire: one UDP socket; every message a client sends is answered to that client's address
and port, one message per datagram, always with ``REPORT`` (never ``REP``) and ``SAMPLE`` with spaces between
its fields. ``METER n ALL rrr`` is kept per sender [U]: that sender gets ``SAMPLE n ALL`` every rrr x 30 ms
(the first at once) until ``METER n ALL STOP``. A sender that meters is a follower: every change of a
non-metered value (battery bars, pack on/off, a name set "on the front panel") reaches each follower as an
unsolicited REPORT. A sender not heard for ``FOLLOW_SECONDS`` is forgotten (a client that vanished without
STOP), and at most ``MAX_SENDERS`` are kept. With the transmitter off: ``TX_BAT U``, ``TX_TYPE UNKNOWN``,
antenna ``XX``, RF at the noise floor, an empty audio bitmap.

Not documented for UHF-R, so chosen here [U]: GETs of unknown properties, channel 0 or a channel the model
lacks get no answer; the device-level GETs seen over sNet (``MODEL_NAME``, ``FREQ_BAND``, ``SW_VERSION``) are
answered on 2202 too; ``TX_BAT_MINS`` is a number only for a Shure rechargeable (rig battery type LION),
UNKNOWN otherwise.

Faults (the engine's, as UDP allows): ``refuse`` closes the socket (clients get ICMP port unreachable) and
forgets every sender; ``silent`` and ``stop_answering`` read and ignore everything (meters already set resume
when the fault clears); ``garbage`` sends junk datagrams between the real ones or junk in front of a message;
``drop_mid_frame`` cuts every datagram in the middle of its message; ``slow`` answers each command 1.5 s late
(SAMPLEs and change REPORTs keep flowing). ``chaos`` delays a few datagrams by 5-40 ms (they arrive out of
order). No Django imports.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

from micboard.drivers import uhfr_spec as spec
from micboard.drivers.catalog import device_model
from micboard.simulators.engine import NAME_CHARS, ChannelState, SimulatedDevice, SimulatorBindError, clamp
from micboard.simulators.rig import RigDevice

logger = logging.getLogger(__name__)

__all__ = ["FOLLOW_SECONDS", "MAX_SENDERS", "SimulatedUhfrDevice"]

FOLLOW_SECONDS = 30.0  # a metering sender not heard this long is forgotten (the link re-asks every 10 s)
MAX_SENDERS = 16  # metering senders kept; a new one beyond this replaces the one heard least recently
_GARBAGE_P = 0.35  # garbage fault: chance that a datagram comes with junk
_REORDER_P = 0.05  # chaos: chance that a datagram is held back a little
_PENDING_CAP = 256  # slow fault: commands held back at once
_MESSAGE_RE = re.compile(r"\*([^*]*)\*")
# Audio LEDs (bits 0-6) light at these peak levels; bit 7 (clip) at the peak threshold of protocols.md §6.
# No source gives the real thresholds [U]: an even ladder over the speech range.
_AUDIO_LED_DBFS = (-60.0, -50.0, -40.0, -30.0, -20.0, -10.0, -3.0)
_CLIP_DBFS = -2.0
_BATTERY_TYPE = {"ALKA": "ALKALINE", "NIMH": "NIMH", "LITH": "LITHIUM"}  # rig code -> UHF-R word; else UNKNOWN
_RUNTIME_TYPES = ("LION",)  # packs that report minutes (Shure SB900 rechargeable) [U]
_DEVICE_VALUES = {"FREQ_BAND": "J5", "SW_VERSION": "1.169"}  # [U] example values


@dataclass
class UhfrChannel(ChannelState):
    group_chan: str | None = None  # "gg cc"; None: a custom frequency ("-- --")
    squelch: int = 10  # 0-20 -> -10...+10
    tx_gain: int = 10  # 0-30 -> -10...+20 dB
    tx_power: str = "NORM"


@dataclass(eq=False)
class _Sender:
    """A client that meters: where it is, when it was heard, and per channel [period s, next due]."""

    address: tuple[str, int]
    heard_at: float
    session: list
    meters: dict[int, list[float]] = field(default_factory=dict)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, device: SimulatedUhfrDevice) -> None:
        self.device = device

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.device._on_datagram(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        pass  # an ICMP error for a client that went away: it will be forgotten after FOLLOW_SECONDS


class SimulatedUhfrDevice(SimulatedDevice):
    """One simulated UR4S / UR4D on UDP (arguments as :class:`~micboard.simulators.engine.SimulatedDevice`)."""

    channel_class: ClassVar[type[ChannelState]] = UhfrChannel

    def __init__(self, rig: RigDevice, **options: Any) -> None:
        try:
            entry = device_model(rig.model, driver=spec.DRIVER)
        except KeyError:
            raise ValueError(f"{rig.key}: {rig.model!r} is not a UHF-R model (UR4S, UR4D)") from None
        self.model = entry.model
        # [U] the MAC as sNet reports it; Shure's OUI 00:0E:DD, the rest from the device id (stable per unit).
        tail = zlib.crc32(rig.device_id.encode()) & 0xFFFFFF
        self.mac_address = "00:0E:DD:" + ":".join(f"{(tail >> s) & 0xFF:02X}" for s in (16, 8, 0))
        super().__init__(rig, channels=entry.channels, family=spec.FAMILY, default_tx="UR2", **options)
        self.name_width = spec.NAME_MAX
        self.name_chars = NAME_CHARS - {"*", spec.NAME_SPACE}  # "*" frames messages, "_" carries spaces
        self.audio_floor = (-90.0, -90.0)
        self.stats.update(datagrams_in=0, datagrams_out=0, ignored=0, garbage=0, cut=0, reordered=0)
        self._net_rng = random.Random(self._dseed ^ 0x2202)
        self._transport: asyncio.DatagramTransport | None = None
        self._senders: dict[tuple[str, int], _Sender] = {}
        self._pending: set[asyncio.TimerHandle] = set()

    # ------------------------------------------------------------ engine hooks

    @property
    def listening(self) -> bool:
        return self._transport is not None

    @property
    def client_count(self) -> int:
        return len(self._senders)

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Protocol(self), local_addr=(self.host, self.port)
            )
        except OSError as exc:
            raise SimulatorBindError(
                f"{self.key} ({self.model}): cannot bind UDP {self.host}:{self.port}: {exc.strerror or exc}"
            ) from exc
        self._transport = transport
        if self.port == 0:
            self.port = transport.get_extra_info("sockname")[1]

    async def _unlisten(self) -> None:
        # UDP has no connections: with the socket gone every sender is forgotten (a rebooting unit forgets too).
        self._forget_senders()
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def _disconnect_all(self) -> None:
        self._forget_senders()

    def _reported_values(self) -> dict[tuple[int, str], str]:
        values = {
            (0, "MODEL_NAME"): self.model,
            (0, "MAC_ADDR"): self.mac_address,
            **{(0, key): value for key, value in _DEVICE_VALUES.items()},
        }
        for ch in self.channels:
            values.update(((ch.number, prop), value) for prop, value in self._channel_values(ch).items())
        return values

    def _emit_changes(self, changes: list[tuple[int, str, str]]) -> None:
        if not changes:
            return
        messages = [self._report(n, key, value) for n, key, value in changes]
        for sender in list(self._senders.values()):
            for text in messages:
                self._send(sender.address, text)

    def _emit_meter(self, ch: ChannelState) -> None:
        """Called every METER unit (30 ms) while a sender meters ``ch``: SAMPLE to each sender that is due."""
        now = self._now()
        sample: str | None = None
        for sender in list(self._senders.values()):
            slot = sender.meters.get(ch.number)
            if slot is None or now < slot[1] - 0.005:
                continue
            sample = sample or self._sample(ch)
            self._send(sender.address, sample)
            slot[1] = slot[1] + slot[0] if slot[1] + slot[0] > now else now + slot[0]

    def _tick(self, sim_dt: float) -> None:
        super()._tick(sim_dt)
        now = self._now()
        for sender in [s for s in self._senders.values() if now - s.heard_at > FOLLOW_SECONDS]:
            self._drop_sender(sender)

    # ------------------------------------------------------------ values on the wire

    def _channel_values(self, ch: UhfrChannel) -> dict[str, str]:
        on = ch.tx_on and ch.tx_model is not None
        minutes, calculating = self._runtime(ch)
        unknown = spec.UNKNOWN
        runtime = str(minutes) if on and ch.battery_type in _RUNTIME_TYPES and not calculating else unknown
        return {
            spec.CHAN_NAME: ch.name.replace(" ", spec.NAME_SPACE),
            spec.FREQUENCY: f"{ch.frequency_khz:0{spec.FREQUENCY_DIGITS}d}",
            spec.GROUP_CHAN: ch.group_chan or spec.NO_GROUP_CHAN,
            spec.TX_BAT: str(max(1, self._bars(ch.battery_pct))) if on else spec.BATTERY_UNKNOWN,
            spec.TX_BAT_MINS: runtime,
            spec.TX_BAT_TYPE: _BATTERY_TYPE.get(ch.battery_type, unknown) if on else unknown,
            spec.TX_TYPE: (ch.tx_model or unknown) if on else unknown,
            spec.TX_POWER: ch.tx_power if on else unknown,
            spec.TX_GAIN: f"{ch.tx_gain:02d}" if on else unknown,
            spec.TX_TRIM: "0" if on else unknown,
            spec.TX_LOCK: "UNLOCK" if on else unknown,
            spec.AUDIO_GAIN: f"{ch.audio_gain:02d}",
            spec.MUTE: "ON" if ch.audio_mute else "OFF",
            spec.SQUELCH: f"{ch.squelch:02d}",
        }

    @staticmethod
    def _report(channel: int, key: str, value: str) -> str:
        return f"{spec.VERB_REPORT} {channel} {key} {value}" if channel else f"{spec.VERB_REPORT} {key} {value}"

    def _sample(self, ch: ChannelState) -> str:
        meter = self._meter(ch, consume_clip=True)
        rf_a, rf_b = meter.rssi[:2]  # two antennas (the engine default)
        if not meter.tx_on:
            antenna = "XX"
        elif abs(rf_a - rf_b) < 1.0:
            antenna = "AB"
        else:
            antenna = "AX" if meter.active == 0 else "XB"
        bars = self._bars(ch.battery_pct) if meter.tx_on else 0
        bitmap = (1 << sum(1 for level in _AUDIO_LED_DBFS if meter.peak >= level)) - 1
        if meter.peak >= _CLIP_DBFS:
            bitmap |= spec.AUDIO_PEAK_BIT
        fields = (
            antenna,
            f"{int(clamp(round(-rf_a), 0, 999)):03d}",
            f"{int(clamp(round(-rf_b), 0, 999)):03d}",
            str(max(1, bars)) if meter.tx_on else spec.BATTERY_UNKNOWN,
            f"{bitmap:03d}",
        )
        return f"{spec.VERB_SAMPLE} {ch.number} {spec.METER_ALL} {' '.join(fields)}"

    # ------------------------------------------------------------ network

    def _send(self, address: tuple[str, int], text: str) -> None:
        transport = self._transport
        if transport is None or not self.output_enabled:
            return
        data = f"{spec.MESSAGE_START}{text}{spec.MESSAGE_END}".encode("ascii", "replace")
        rng = self._net_rng
        if self.fault == "drop_mid_frame":
            data = data[: max(1, len(data) // 2)]
            self.stats["cut"] += 1
        elif self.fault == "garbage" and rng.random() < _GARBAGE_P:
            self.stats["garbage"] += 1
            junk = self._garbage()
            if b"*" in junk or rng.random() < 0.5:
                transport.sendto(junk, address)  # a datagram of its own
            else:
                data = junk + data  # junk in front of the message, in the same datagram
        self.stats["datagrams_out"] += 1
        if self.chaos and rng.random() < _REORDER_P:
            self.stats["reordered"] += 1
            asyncio.get_running_loop().call_later(rng.uniform(0.005, 0.04), self._send_late, transport, data, address)
        else:
            transport.sendto(data, address)

    def _send_late(self, transport: asyncio.DatagramTransport, data: bytes, address: tuple[str, int]) -> None:
        if transport is self._transport and not transport.is_closing():
            transport.sendto(data, address)

    def _garbage(self) -> bytes:
        rng = self._net_rng
        choice = rng.randrange(3)
        if choice == 0:
            return bytes(rng.choice(b"\x00\x01\x07\x1b\x7f\x80\x9c\xff#~|") for _ in range(rng.randint(1, 24)))
        if choice == 1:
            return bytes(rng.randrange(32, 127) for _ in range(rng.randint(1, 24))).replace(b"*", b"+")
        malformed = (b"* *", b"* REPORT *", b"* SAMPLE 1 ALL XB *", b"**", b"* REP 1 TX_BAT 4 *", b"\r\n", b"* \xff *")
        return rng.choice(malformed)

    def _on_datagram(self, data: bytes, address: tuple[str, int]) -> None:
        self.stats["datagrams_in"] += 1
        if not (self._running and self.powered and self.output_enabled):
            return  # silent / stop_answering: everything read and ignored
        sender = self._senders.get(address)
        if sender is not None:
            sender.heard_at = self._now()
        text = data[: spec.MAX_DATAGRAM].decode("ascii", "replace")
        for body in _MESSAGE_RE.findall(text):
            if self.reply_delay:
                self._hold_back(address, body)
            else:
                self._execute(address, body)

    def _hold_back(self, address: tuple[str, int], body: str) -> None:
        """The ``slow`` fault: carry out ``body`` reply_delay seconds after it arrived."""
        if len(self._pending) >= _PENDING_CAP or self._loop is None:
            return  # a flood of commands at a slow device: the excess goes unanswered

        def late() -> None:
            self._pending.discard(handle)
            if self.listening and self.output_enabled:
                self._execute(address, body)

        handle = self._loop.call_later(self.reply_delay, late)
        self._pending.add(handle)

    def _execute(self, address: tuple[str, int], body: str) -> None:
        tokens = body.split()
        verb, args = (tokens[0], tokens[1:]) if tokens else ("", [])
        handler = {spec.VERB_GET: self._get, spec.VERB_SET: self._set, spec.VERB_METER: self._meter_command}.get(verb)
        if handler is None or not handler(address, args):
            self.stats["ignored"] += 1

    def _target(self, token: str) -> UhfrChannel | None:
        if not token.isdigit() or not 1 <= int(token) <= len(self.channels):
            return None  # channel 0 is not channel 1 (§7.8)
        return self.channels[int(token) - 1]

    def _get(self, address: tuple[str, int], args: list[str]) -> bool:
        if len(args) == 1:  # device-level: seen over sNet only [U]; answered here too
            value = self._reported_values().get((0, args[0]))
            if value is not None:
                self._send(address, self._report(0, args[0], value))
            return value is not None
        ch = self._target(args[0]) if len(args) == 2 else None
        value = self._channel_values(ch).get(args[1]) if ch is not None else None
        if value is not None:
            self._send(address, self._report(ch.number, args[1], value))
        return value is not None

    def _set(self, address: tuple[str, int], args: list[str]) -> bool:
        ch = self._target(args[0]) if len(args) >= 3 else None
        if ch is None or not self._apply_set(ch, args[1], args[2:]):
            return False
        followers = set(self._senders)
        self._publish_changes()  # every follower hears the change
        if address not in followers:  # the setter hears it too
            self._send(address, self._report(ch.number, args[1], self._channel_values(ch)[args[1]]))
        return True

    def _apply_set(self, ch: UhfrChannel, prop: str, values: list[str]) -> bool:
        value = " ".join(values)
        if prop == spec.CHAN_NAME:
            name = value.replace(spec.NAME_SPACE, " ")
            if not 1 <= len(name) <= self.name_width or any(c not in self.name_chars for c in name):
                return False
            ch.name = name
        elif prop == spec.MUTE and value in spec.ON_OFF:
            ch.audio_mute = value == "ON"
        elif prop == spec.FREQUENCY and value.isdigit() and len(value) == spec.FREQUENCY_DIGITS:
            ch.frequency_khz, ch.group_chan = int(value), None
        elif prop in (spec.AUDIO_GAIN, spec.SQUELCH) and value.isdigit():
            low, high = spec.AUDIO_GAIN_RANGE if prop == spec.AUDIO_GAIN else spec.SQUELCH_RANGE
            if not low <= int(value) <= high:
                return False
            if prop == spec.AUDIO_GAIN:
                ch.audio_gain = int(value)
            else:
                ch.squelch = int(value)
        else:
            return False
        return True

    def _meter_command(self, address: tuple[str, int], args: list[str]) -> bool:
        ch = self._target(args[0]) if len(args) == 3 and args[1] == spec.METER_ALL else None
        if ch is None:
            return False
        sender = self._senders.get(address)
        if args[2] == spec.METER_STOP:
            if sender is not None:
                sender.meters.pop(ch.number, None)
                if not sender.meters:
                    self._drop_sender(sender)
                self._sync_meter(ch)
            return True
        if not args[2].isdigit() or not spec.METER_MIN_UNITS <= int(args[2]) <= spec.METER_MAX_UNITS:
            return False
        if sender is None:
            if len(self._senders) >= MAX_SENDERS:
                self._drop_sender(min(self._senders.values(), key=lambda s: s.heard_at))
            sender = self._senders[address] = _Sender(address, self._now(), self._open_session())
        period = int(args[2]) * spec.METER_UNIT_MS / 1000.0
        sender.meters[ch.number] = [period, self._now() + period]
        self._send(address, self._sample(ch))  # the first SAMPLE at once
        self._sync_meter(ch)
        return True

    def _sync_meter(self, ch: ChannelState) -> None:
        """Run the engine's meter clock for ``ch`` at the METER unit while any sender meters it."""
        wanted = any(ch.number in s.meters for s in self._senders.values())
        self._set_meter_rate(ch, spec.METER_UNIT_MS if wanted else 0)

    def _drop_sender(self, sender: _Sender) -> None:
        if self._senders.get(sender.address) is sender:
            del self._senders[sender.address]
        sender.session[1] = time.time()
        for number in sender.meters:
            self._sync_meter(self.channels[number - 1])
        sender.meters.clear()

    def _forget_senders(self) -> None:
        for sender in list(self._senders.values()):
            self._drop_sender(sender)
        for handle in self._pending:
            handle.cancel()
        self._pending.clear()

    # ------------------------------------------------------------ snapshot

    def _snapshot_channel(self, ch: ChannelState) -> dict[str, Any]:
        snap = super()._snapshot_channel(ch)
        periods = [s.meters[ch.number][0] for s in self._senders.values() if ch.number in s.meters]
        snap["meter_rate"] = round(min(periods) * 1000) if periods else 0  # the fastest sender's, in ms
        snap["meter_senders"] = len(periods)
        snap["group_channel"] = ch.group_chan
        return snap
