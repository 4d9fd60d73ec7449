"""How a simulated Shure command-strings device shows its state on the wire (protocols.md §1, §7.1-7.3).

Per-family vocabulary, padding and ordering of every reported property, the meter scalings and the
SAMPLE layouts; :class:`ShureFrames` is mixed into
:class:`~micboard.simulators.shure_tcp.SimulatedShureDevice`. No Django imports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from micboard.drivers.shure_spec import (
    AXIENT,
    BANDS,
    GAUGE_UNKNOWN,
    NO_GROUP_CHANNEL,
    PSM1000,
    QLXD,
    RUNTIME_CALCULATING,
    RUNTIME_UNKNOWN,
    SLXD,
    ULXD,
)
from micboard.simulators.engine import ChannelState, Meter, clamp

UNKNOWN_GROUP_CHANNEL = NO_GROUP_CHANNEL

# What one simulated unit reports beyond the spec: firmware and RF band of the rack we pretend to be.
_FW_VER = {ULXD: "2.7.6.0", QLXD: "2.6.10.0", SLXD: "2.0.15.2", AXIENT: "2.1.42.0"}
# Bands a unit of the family may have: the first that holds every rig frequency is the simulated one (SLX-D
# and AD report it as RF_BAND).
_BAND_CHOICES = {
    ULXD: ("G50", "H50", "J50", "L50", "P51"),
    QLXD: ("G50", "H50", "J50", "L50", "P51"),
    SLXD: ("G58", "H55", "J52"),
    AXIENT: ("G57",),
    PSM1000: ("G10", "H22", "J8", "L8"),
}
GROUP_CHANNEL_SPACING_KHZ = 400  # synthetic group/channel plan: channels of a group 400 kHz apart
AD_MODES = ("standard", "quadversity", "fd-c")

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


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


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


@dataclass
class ShureChannel(ChannelState):
    group_chan: str = UNKNOWN_GROUP_CHANNEL
    flash_until: float = 0.0
    tx_offset_db: int = 0  # the transmitter's offset (ULX 0, 3 .. 21 dB; AD -12 .. +20 dB)
    bars_pin: int | None = None  # simctl: report these bars whatever the charge (0 bars with minutes left)
    runtime_pin: int | None = None  # simctl: report this runtime value (minutes, 65533 warning, 65534 calculating)
    antenna_pin: str | None = None  # simctl: antenna letters as the family writes them (AD B/R/X, ULX AX/XB/XX)
    # PSM1000 only.
    rf_tx_lvl: int = 50
    rf_mute: int = 0
    audio_tx_mode: int = 3
    audio_in_line_lvl: int = 1
    audio_in_lvl: int = -6


class ShureFrames:
    """Rendering half of SimulatedShureDevice: device state -> (property, value) pairs and frames."""

    @property
    def _keyword(self) -> str:
        return self.spec.keyword

    def _frame(self, body: str) -> str:
        return f"< {body} >{self.line_ending}"

    def _err(self) -> str:
        return self._frame(f"{self._keyword} ERR")

    def _rep_channel(self, number: int, key: str, value: str) -> str:
        return self._frame(f"{self._keyword} {number} {key} {value}")

    def _rep_device(self, key: str, value: str) -> str:
        return self._frame(f"{self._keyword} {key} {value}")

    def _group_chan_value(self, ch: ShureChannel) -> str:
        gc = ch.group_chan
        width = self.spec.group_channel_width
        if width == 0:  # PSM1000: unbraced gg,cc
            if gc == UNKNOWN_GROUP_CHANNEL:
                return gc
            g, c = gc.split(",")
            return f"{int(g):02d},{int(c):02d}"
        return _braced(gc, width)

    def _render_device(self) -> list[tuple[str, str]]:
        fam = self.family
        flash = "ON" if self._loop is not None and self._now() < self.flash_until else "OFF"
        spec = self.spec
        if fam == PSM1000:
            return [(spec.device_id_prop, _braced(self.device_id, spec.device_id_width))]
        props: list[tuple[str, str]] = []
        if fam in (SLXD, AXIENT):
            model = f"{self.model.model}-A" if fam == AXIENT else self.model.model
            props.append(("MODEL", _braced(model, 32)))
        props.append((spec.device_id_prop, _braced(self.device_id, spec.device_id_width)))
        props.append(("FW_VER", _braced(_FW_VER[fam], spec.firmware_width)))
        if fam in (SLXD, AXIENT):
            props.append(("RF_BAND", _braced(self.band, 8)))
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
                ("QUADVERSITY_MODE", "ON" if self.rf_mode == "quadversity" else "OFF"),
                ("TRANSMISSION_MODE", "STANDARD"),
            ]
        return self._overridden(0, props)

    def _render_channel(self, ch: ShureChannel, metered: bool, meter: Meter | None = None) -> list[tuple[str, str]]:
        """Every channel property in ALL order; metered ones only when ``metered``."""
        fam = self.family
        props: list[tuple[str, str]] = []
        spec = self.spec
        name = ("CHAN_NAME", _braced(ch.name, spec.name_width))
        freq = ("FREQUENCY", _num(ch.frequency_khz, spec.frequency_digits))
        gc = (spec.group_channel_prop, self._group_chan_value(ch))
        rate = ("METER_RATE", _num(ch.meter_rate, 5))
        on = ch.tx_on
        lion = ch.battery_type == "LION"
        bars, charge, runtime = self._battery_wire(ch)
        offset = _num(ch.tx_offset_db + spec.tx_offset_zero, 3) if on else "255"
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
                ("TX_OFFSET", offset),
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
                    ("RF_ANTENNA", self._ulx_antenna(meter, ch)),
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
                ("FD_MODE", "FD-C" if self.rf_mode == "fd-c" else "OFF"),
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
                ("TX_OFFSET", offset),
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
                    ("ANTENNA_STATUS", self._ad_antennas(meter, ch)),
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
                    ("AUDIO_IN_LVL_L", str(self._psm_linear(meter.left))),
                    ("AUDIO_IN_LVL_R", str(self._psm_linear(meter.right))),
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
        return round(clamp(dbfs + 120.0, 0, 120))

    @staticmethod
    def _dbm120(dbm: float) -> int:
        return round(clamp(dbm + 120.0, 0, 120))

    @staticmethod
    def _ulx_rf(meter: Meter) -> int:
        return round(clamp(max(meter.rssi) + 128.0, 0, 115))

    @staticmethod
    def _ulx_audio(meter: Meter) -> int:
        # eee 000-050 has no documented unit [U]; like the driver we take Companion's reading, dBFS = eee - 50.
        if meter.active is None:
            return 0  # no transmitter: ULX-D/QLX-D report 000 (protocols.md §7.2)
        return round(clamp(meter.peak + 50.0, 0, 50))

    @staticmethod
    def _ulx_antenna(meter: Meter, ch: ShureChannel) -> str:
        if meter.active is None:
            return "XX"
        if ch.antenna_pin is not None:
            return ch.antenna_pin
        return "AX" if meter.active == 0 else "XB"

    @staticmethod
    def _ad_antennas(meter: Meter, ch: ShureChannel) -> str:
        if not meter.tx_on:
            return "X" * len(meter.rssi)
        if ch.antenna_pin is not None and len(ch.antenna_pin) == len(meter.rssi):
            return ch.antenna_pin
        return "".join("B" if v >= -95.0 else "X" for v in meter.rssi)

    def _battery_wire(self, ch: ShureChannel) -> tuple[str, str, str]:
        """(bars, charge %, runtime) as the wire shows them; sentinels with no transmitter (§7.2)."""
        if not ch.tx_on:
            return _num(GAUGE_UNKNOWN, 3), _num(GAUGE_UNKNOWN, 3), _num(RUNTIME_UNKNOWN, 5)
        minutes, calculating = self._runtime(ch)
        runtime = ch.runtime_pin if ch.runtime_pin is not None else (RUNTIME_CALCULATING if calculating else minutes)
        bars = ch.bars_pin if ch.bars_pin is not None else self._bars(ch.battery_pct)
        charge = math.ceil(ch.battery_pct) if ch.battery_type == "LION" else GAUGE_UNKNOWN
        return _num(bars, 3), _num(charge, 3), _num(runtime, 5)

    def _band_frequency(self, group: int, channel: int) -> int:
        """The frequency (kHz) of a group/channel in the unit's band: a synthetic plan, every channel in band."""
        low, high = BANDS[self.band]
        steps = (high - low) // 25
        return low + 25 * ((group * 577 + channel * (GROUP_CHANNEL_SPACING_KHZ // 25)) % (steps + 1))

    def _pick_band(self) -> str:
        choices = _BAND_CHOICES[self.family]
        wanted = [ch.frequency_khz for ch in self.channels]
        for band in choices:
            low, high = BANDS[band]
            if all(low <= khz <= high for khz in wanted):
                return band
        return choices[0]

    @staticmethod
    def _audio_bitmap(meter: Meter) -> int:
        if not meter.tx_on:
            return 0
        value = _bits(meter.peak, _AUDIO_LED_THRESHOLDS)
        return value | 0x80 if meter.peak >= -1.0 else value

    @staticmethod
    def _rf_bitmap(dbm: float) -> int:
        return _bits(dbm, _RF_LED_THRESHOLDS)

    @staticmethod
    def _psm_linear(dbfs: float) -> int:
        return int(_PSM_LINEAR_FULL_SCALE * 10 ** (clamp(dbfs, -120.0, 0.0) / 20.0))

    def _sample_frames(self, ch: ShureChannel) -> list[str]:
        meter = self._meter(ch, consume_clip=True)
        n = ch.number
        if self.family in (ULXD, QLXD):
            antenna = self._ulx_antenna(meter, ch)
            body = f"SAMPLE {n} ALL {antenna} {self._ulx_rf(meter):03d} {self._ulx_audio(meter):03d}"
        elif self.family == SLXD:
            body = (
                f"SAMPLE {n} ALL {self._dbfs120(meter.peak):03d} {self._dbfs120(meter.rms):03d} "
                f"{self._dbm120(max(meter.rssi)):03d}"
            )
        elif self.family == AXIENT:
            quality = f"{meter.quality:03d}" if meter.quality is not None else "255"
            antennas = self._ad_antennas(meter, ch)
            rf = " ".join(f"{self._rf_bitmap(v):02d} {self._dbm120(v):03d}" for v in meter.rssi)
            body = (
                f"SAMPLE {n} ALL {quality} {self._audio_bitmap(meter):03d} {self._dbfs120(meter.peak):03d} "
                f"{self._dbfs120(meter.rms):03d} {antennas} {rf}"
            )
            if self.rf_mode == "fd-c":  # the second carrier's RF section, same antennas (protocols.md §1.8)
                tick = int(self._elapsed() * 4)
                second = [v - 1.0 - 4.0 * self._h(n, 70 + a, tick) for a, v in enumerate(meter.rssi)]
                rf2 = " ".join(f"{self._rf_bitmap(v):02d} {self._dbm120(v):03d}" for v in second)
                body += f" {antennas} {rf2}"
        else:
            return [
                self._rep_channel(n, "AUDIO_IN_LVL_L", str(self._psm_linear(meter.left))),
                self._rep_channel(n, "AUDIO_IN_LVL_R", str(self._psm_linear(meter.right))),
            ]
        return [self._frame(body)]
