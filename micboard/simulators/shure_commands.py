"""The GET / SET command half of a simulated Shure command-strings device (protocols.md §1.3-1.4).

Validates every command as the real receivers do (``REP ERR`` on anything malformed or out of range)
and applies it; :class:`ShureCommands` is mixed into
:class:`~micboard.simulators.shure_tcp.SimulatedShureDevice`. No Django imports.
"""

from __future__ import annotations

import logging
from typing import Any

from micboard.drivers.shure_spec import BANDS, SET_CHARS, SUBINDEXED
from micboard.simulators.engine import clamp
from micboard.simulators.shure_frames import UNKNOWN_GROUP_CHANNEL, ShureChannel, _digits

logger = logging.getLogger(__name__)

_PSM_CHOICES = {"RF_TX_LVL": (10, 50, 100), "RF_MUTE": (0, 1), "AUDIO_TX_MODE": (1, 2, 3), "AUDIO_IN_LINE_LVL": (0, 1)}


class _CommandError(Exception):
    """A command the device answers with ``REP ERR``."""


class ShureCommands:
    """Command half of SimulatedShureDevice: parse, validate and apply GET / SET."""

    def _handle_command(self, client: Any, body: str) -> None:
        try:
            self._execute(client, body)
        except _CommandError:
            self._enqueue(client, [self._err()])
        except Exception:
            logger.exception("simulator %s: command %r failed", self.key, body)
            self._enqueue(client, [self._err()])

    def _execute(self, client: Any, body: str) -> None:
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

    def _targets(self, index: int) -> list[ShureChannel]:
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

    def _get(self, client: Any, index: int | None, prop: str, args: list[str]) -> None:
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
        if prop in SUBINDEXED:
            limit = SUBINDEXED[prop] if prop.startswith("SLOT_") else self.antennas
            if len(args) > 1 or (args and not (_digits(args[0]) and 1 <= int(args[0]) <= limit)):
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

    def _set(self, client: Any, index: int | None, prop: str, args: list[str], braced: str | None) -> None:
        if self._is_device_prop(prop, index):
            if prop not in self.spec.device_settable:
                raise _CommandError
            if prop in ("DEVICE_ID", "DEVICE_NAME"):
                value = self._string_arg(args, braced, self.spec.device_id_width)
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
                self._mark_reported(0, prop, values[prop])
                self._broadcast([frame])
            else:
                self._enqueue(client, [frame])
            return
        if prop not in self.spec.settable:
            raise _CommandError
        assert index is not None
        apply = self._channel_setter(prop, args, braced)
        for ch in self._targets(index):
            changed, keys = apply(ch)
            rendered = dict(self._render_channel(ch, False))
            frames = [self._rep_channel(ch.number, k, rendered[k]) for k in keys]
            if changed:
                for k in keys:
                    self._mark_reported(ch.number, k, rendered[k])
                self._broadcast(frames)
            else:
                self._enqueue(client, frames)

    def _channel_setter(self, prop: str, args: list[str], braced: str | None):
        """Validate a channel SET fully, then return a function applying it to one channel."""
        gc_name = self.spec.group_channel_prop
        if prop == "CHAN_NAME":
            name = self._string_arg(args, braced, self.spec.name_set_max)

            def set_name(ch: ShureChannel) -> tuple[bool, list[str]]:
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

            def set_rate(ch: ShureChannel) -> tuple[bool, list[str]]:
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

            def set_gain(ch: ShureChannel) -> tuple[bool, list[str]]:
                old = getattr(ch, attr)
                new = absolute if absolute is not None else int(clamp(old + delta, lo, hi))
                setattr(ch, attr, new)
                return new != old, [prop]

            return set_gain
        if prop == "AUDIO_MUTE":
            state = self._choice_arg(args, None, ("ON", "OFF", "TOGGLE"))

            def set_mute(ch: ShureChannel) -> tuple[bool, list[str]]:
                old = ch.audio_mute
                ch.audio_mute = (not old) if state == "TOGGLE" else state == "ON"
                return ch.audio_mute != old, ["AUDIO_MUTE"]

            return set_mute
        if prop == "FREQUENCY":
            if len(args) != 1 or not _digits(args[0]) or len(args[0]) not in (6, 7):
                raise _CommandError
            khz = int(args[0])
            low, high = BANDS[self.band]
            if not low <= khz <= high or khz % 25:
                raise _CommandError  # off the 25 kHz raster or outside the unit's band

            def set_freq(ch: ShureChannel) -> tuple[bool, list[str]]:
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
            khz = self._band_frequency(group, chan)

            def set_gc(ch: ShureChannel) -> tuple[bool, list[str]]:
                value = f"{group},{chan}"
                changed = ch.group_chan != value or ch.frequency_khz != khz
                ch.group_chan = value
                ch.frequency_khz = khz
                return changed, ["FREQUENCY", gc_name]

            return set_gc
        if prop == "FLASH":
            state = self._choice_arg(args, None, ("ON", "OFF"))

            def set_flash(ch: ShureChannel) -> tuple[bool, list[str]]:
                was = self._now() < ch.flash_until
                ch.flash_until = self._now() + self.flash_seconds if state == "ON" else 0.0
                return was != (state == "ON"), ["FLASH"]

            return set_flash
        if prop in _PSM_CHOICES:
            value = self._int_arg(args)
            if value not in _PSM_CHOICES[prop]:
                raise _CommandError
            attr = prop.lower()

            def set_choice(ch: ShureChannel) -> tuple[bool, list[str]]:
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
        if not 1 <= len(value) <= max_len or any(c not in SET_CHARS for c in value):
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
