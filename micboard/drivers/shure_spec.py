"""Shure command strings (TCP 2202): the one spec of every family, read by the driver and the simulator.

Data only (protocols.md §1, §6, §7): per family the reply keyword, property names, field widths, digit
counts, sentinels, the SAMPLE layout, the safe meter rate, what may be SET, the audio scale and the models
with their channel counts. The driver (:mod:`micboard.drivers.shure_wire`) parses with it; the simulator
(:mod:`micboard.simulators.shure_frames`) writes its own frames from it. ``MODELS`` is the catalog's view.
No Django imports.
"""

from __future__ import annotations

from dataclasses import dataclass

from micboard.drivers.catalog import DeviceModel

ULXD = "ulxd"
QLXD = "qlxd"
SLXD = "slxd"
AXIENT = "axient"
PSM1000 = "psm1000"

FAMILIES = (ULXD, QLXD, SLXD, AXIENT, PSM1000)

DRIVER = "shure_tcp"
DEFAULT_PORT = 2202

# SAMPLE layouts (protocols.md §1.6-1.9).
SAMPLE_ULX = "ulx"  # < SAMPLE n ALL AX aaa eee >: positional antenna letters, RF, audio
SAMPLE_SLX = "slx"  # < SAMPLE n ALL peak rms rssi >
SAMPLE_AD = "ad"  # < SAMPLE n ALL qual bitmap peak rms ANT (bitmap rssi) x N [ANT (bitmap rssi) x N] >
# PSM1000 sends no SAMPLE: its meters are AUDIO_IN_LVL_L / _R reports (layout None).

# Sentinels (protocols.md §1.10).
GAUGE_UNKNOWN = 255  # 3-digit gauges: bars, percentages, quality, TX offset, temperatures
RUNTIME_MAX = 65532  # a real runtime is 0..65532 minutes
RUNTIME_WARNING = 65533  # battery communication warning
RUNTIME_CALCULATING = 65534
RUNTIME_UNKNOWN = 65535
UNKNOWN_WORDS = ("UNKN", "UNKNOWN")
NO_GROUP_CHANNEL = "--,--"  # custom frequency, no preset group/channel; cannot be SET
CYCLE_UNKNOWN = 65535

# Characters a SET string may carry (protocols.md §1.4), minus the framing characters { } < > [U].
SET_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 !\"#$%&'()*+,-./:;=?@[\\]^_`~")

PEAK_DBFS = -2.0  # §6: a peak when dBFS >= -2; per family overridable (ShureFamily.peak_dbfs, options["peak_dbfs"])


@dataclass(frozen=True, slots=True)
class ShureFamily:
    """Everything the wire of one family says, as data."""

    key: str
    label: str
    keyword: str  # REP / REPORT
    line_ending: str  # what the device appends to each frame
    name_width: int  # CHAN_NAME padding in a REP
    name_set_max: int  # longest CHAN_NAME a SET accepts
    device_id_prop: str  # DEVICE_ID / DEVICE_NAME
    device_id_width: int
    firmware_width: int | None  # FW_VER padding; None: not reported
    frequency_digits: int  # FREQUENCY in a REP, kHz zero-padded
    group_channel_prop: str  # GROUP_CHAN / GROUP_CHANNEL
    group_channel_width: int | None  # braced padding; None: braced unpadded; 0: unbraced "gg,cc" (PSM1000)
    tx_model_prop: str | None  # TX_TYPE / TX_MODEL; None: the family cannot see a transmitter
    tx_unknown: str  # what the TX model property says with no transmitter
    tx_models: tuple[str, ...]  # transmitters the family pairs with (the first is the simulator's default)
    battery_bars_prop: str | None
    battery_percent_prop: str | None
    battery_runtime_prop: str | None
    battery_type_prop: str | None
    tx_offset_prop: str | None
    tx_offset_zero: int  # raw value of 0 dB (dB = raw - zero)
    tx_offset_values: tuple[int, ...]  # raw values the transmitter can report
    tx_mute_prop: str | None
    audio_mute_prop: str | None  # receiver mute (PSM1000: RF_MUTE)
    sample_layout: str | None
    meter_props: frozenset[str]  # reports that carry meters (besides SAMPLE)
    min_meter_rate_ms: int  # §1.11: never below 100 ms; QLX-D and PSM1000 never below 1000 ms
    # Audio meter: the dBFS shown as an empty meter. ULX/QLX: eee 000..050 read as dBFS = eee - 50
    # (Companion, §1.6 [U]) and shown as 2 % per step, so silence (eee 000, -50 dBFS) is an empty meter and
    # full scale is 100 %; the others show 100 + dBFS (§6).
    audio_empty_dbfs: float
    peak_dbfs: float
    antennas: int  # RF inputs per channel (AD: 2, or 4 with Quadversity)
    settable: frozenset[str]  # channel properties a SET accepts
    device_settable: frozenset[str]
    models: tuple[tuple[str, int], ...]  # (model, channels)
    is_iem: bool = False


_ULX_LIKE = {
    "keyword": "REP",
    "line_ending": "",
    "name_width": 8,
    "name_set_max": 8,
    "device_id_prop": "DEVICE_ID",
    "device_id_width": 8,
    "firmware_width": 18,
    "frequency_digits": 6,
    "group_channel_prop": "GROUP_CHAN",
    "group_channel_width": None,
    "tx_model_prop": "TX_TYPE",
    "tx_unknown": "UNKN",
    "battery_bars_prop": "BATT_BARS",
    "battery_percent_prop": "BATT_CHARGE",
    "battery_runtime_prop": "BATT_RUN_TIME",  # 65534/65533 assumed to mean what they mean on AD/SLX-D [U]
    "battery_type_prop": "BATT_TYPE",
    "tx_offset_prop": "TX_OFFSET",
    "tx_offset_zero": 0,
    "tx_offset_values": (0, 3, 6, 9, 12, 15, 18, 21),
    "tx_mute_prop": "TX_MUTE_STATUS",
    "sample_layout": SAMPLE_ULX,
    "meter_props": frozenset(),
    "audio_empty_dbfs": -50.0,
    "peak_dbfs": PEAK_DBFS,
    "antennas": 2,
}

SPECS: dict[str, ShureFamily] = {
    ULXD: ShureFamily(
        key=ULXD,
        label="Shure ULX-D",
        tx_models=("ULXD2", "ULXD1", "ULXD6", "ULXD8"),
        audio_mute_prop="AUDIO_MUTE",  # ULX-D only [U]
        min_meter_rate_ms=100,
        settable=frozenset({"CHAN_NAME", "FREQUENCY", "GROUP_CHAN", "AUDIO_GAIN", "AUDIO_MUTE", "METER_RATE"}),
        device_settable=frozenset({"DEVICE_ID", "FLASH"}),
        models=(("ULXD4", 1), ("ULXD4D", 2), ("ULXD4Q", 4)),
        **_ULX_LIKE,
    ),
    QLXD: ShureFamily(
        key=QLXD,
        label="Shure QLX-D",
        tx_models=("QLXD2", "QLXD1"),
        audio_mute_prop=None,  # Companion offers no mute on QLX-D [U]
        min_meter_rate_ms=1000,  # the QLX-D lock-up (§1.11)
        settable=frozenset({"CHAN_NAME", "FREQUENCY", "GROUP_CHAN", "AUDIO_GAIN", "METER_RATE"}),
        device_settable=frozenset({"DEVICE_ID"}),
        models=(("QLXD4", 1),),
        **_ULX_LIKE,
    ),
    SLXD: ShureFamily(
        key=SLXD,
        label="Shure SLX-D",
        keyword="REP",
        line_ending="",
        name_width=31,
        name_set_max=8,
        device_id_prop="DEVICE_ID",
        device_id_width=8,
        firmware_width=24,
        frequency_digits=7,
        group_channel_prop="GROUP_CHANNEL",
        group_channel_width=10,
        tx_model_prop="TX_MODEL",
        tx_unknown="UNKNOWN",
        tx_models=("SLXD2", "SLXD1"),
        battery_bars_prop="TX_BATT_BARS",
        battery_percent_prop=None,  # SLX-D reports no percentage (§1.7)
        battery_runtime_prop="TX_BATT_MINS",
        battery_type_prop=None,
        tx_offset_prop=None,
        tx_offset_zero=0,
        tx_offset_values=(),
        tx_mute_prop=None,
        audio_mute_prop=None,
        sample_layout=SAMPLE_SLX,
        meter_props=frozenset(),
        min_meter_rate_ms=100,
        audio_empty_dbfs=-100.0,
        peak_dbfs=PEAK_DBFS,
        antennas=2,
        settable=frozenset({"CHAN_NAME", "FREQUENCY", "GROUP_CHANNEL", "AUDIO_GAIN", "METER_RATE", "FLASH"}),
        device_settable=frozenset({"DEVICE_ID", "FLASH"}),
        models=(("SLXD4", 1), ("SLXD4D", 2), ("SLXD4Q+", 4)),
    ),
    AXIENT: ShureFamily(
        key=AXIENT,
        label="Shure Axient Digital",
        keyword="REP",
        line_ending="",
        name_width=31,
        name_set_max=31,
        device_id_prop="DEVICE_ID",
        device_id_width=31,
        firmware_width=24,
        frequency_digits=7,
        group_channel_prop="GROUP_CHANNEL",
        group_channel_width=10,
        tx_model_prop="TX_MODEL",
        tx_unknown="UNKNOWN",
        tx_models=("ADX2", "ADX1", "AD1", "AD2", "ADX1M", "ADX2FD"),
        battery_bars_prop="TX_BATT_BARS",
        battery_percent_prop="TX_BATT_CHARGE_PERCENT",
        battery_runtime_prop="TX_BATT_MINS",
        battery_type_prop="TX_BATT_TYPE",
        tx_offset_prop="TX_OFFSET",
        tx_offset_zero=12,  # 0..32, dB = v - 12 [M]
        tx_offset_values=tuple(range(33)),
        tx_mute_prop="TX_MUTE_MODE_STATUS",
        audio_mute_prop="AUDIO_MUTE",
        sample_layout=SAMPLE_AD,
        meter_props=frozenset(),
        min_meter_rate_ms=100,
        audio_empty_dbfs=-100.0,
        peak_dbfs=PEAK_DBFS,
        antennas=2,
        settable=frozenset(
            {"CHAN_NAME", "FREQUENCY", "GROUP_CHANNEL", "AUDIO_GAIN", "AUDIO_MUTE", "METER_RATE", "FLASH"}
        ),
        device_settable=frozenset({"DEVICE_ID", "FLASH"}),
        models=(("AD4D", 2), ("AD4Q", 4)),
    ),
    PSM1000: ShureFamily(
        key=PSM1000,
        label="Shure PSM1000",
        keyword="REPORT",
        line_ending="\r\n",
        name_width=8,
        name_set_max=8,
        device_id_prop="DEVICE_NAME",
        device_id_width=8,
        firmware_width=None,
        frequency_digits=6,
        group_channel_prop="GROUP_CHAN",
        group_channel_width=0,
        tx_model_prop=None,
        tx_unknown="",
        tx_models=(),
        battery_bars_prop=None,
        battery_percent_prop=None,
        battery_runtime_prop=None,
        battery_type_prop=None,
        tx_offset_prop=None,
        tx_offset_zero=0,
        tx_offset_values=(),
        tx_mute_prop=None,
        audio_mute_prop="RF_MUTE",
        sample_layout=None,
        meter_props=frozenset({"AUDIO_IN_LVL_L", "AUDIO_IN_LVL_R"}),
        min_meter_rate_ms=1000,  # Companion's PSM1000 module enforces >= 1000 ms
        audio_empty_dbfs=-100.0,
        peak_dbfs=PEAK_DBFS,
        antennas=0,
        settable=frozenset(
            {
                "CHAN_NAME",
                "FREQUENCY",
                "GROUP_CHAN",
                "RF_TX_LVL",
                "RF_MUTE",
                "AUDIO_TX_MODE",
                "AUDIO_IN_LINE_LVL",
                "AUDIO_IN_LVL",
                "METER_RATE",
            }
        ),
        device_settable=frozenset({"DEVICE_NAME"}),
        models=(("P10T", 2),),
        is_iem=True,
    ),
}

# Per-index properties: name -> how many sub-indexes (antenna 1-4, slot 1-8) (§1.3).
SUBINDEXED = {"RSSI": 4, "RSSI_LED_BITMAP": 4, "SLOT_STATUS": 8}

# RF bands (§1.5 RF_BAND): band -> (low kHz, high kHz). Edges are approximate, from product literature, and
# not part of the command strings [U]; the simulator keeps a group/channel's frequency inside its band.
BANDS: dict[str, tuple[int, int]] = {
    "G50": (470_125, 534_000),  # ULX-D, QLX-D
    "H50": (534_000, 598_000),
    "J50": (572_000, 636_000),
    "L50": (632_000, 696_000),
    "P51": (710_000, 782_000),
    "G58": (470_000, 514_000),  # SLX-D
    "H55": (514_000, 558_000),
    "J52": (558_000, 616_000),
    "G57": (470_000, 616_000),  # Axient Digital
    "G10": (470_000, 542_000),  # PSM1000
    "H22": (518_000, 584_000),
    "J8": (554_000, 626_000),
    "L8": (626_000, 698_000),
}


@dataclass(frozen=True, slots=True)
class ShureModel:
    model: str
    family: str
    channels: int
    is_iem: bool = False


SHURE_MODELS: dict[str, ShureModel] = {
    model: ShureModel(model, spec.key, channels, spec.is_iem)
    for spec in SPECS.values()
    for model, channels in spec.models
}

# The catalog's view (micboard.drivers.catalog): every model above, read by the command-strings driver.
MODELS = tuple(
    DeviceModel(
        model=m.model,
        manufacturer="Shure",
        driver=DRIVER,
        family=m.family,
        channels=m.channels,
        default_port=DEFAULT_PORT,
        is_iem=m.is_iem,
        label=f"{SPECS[m.family].label} {m.model}",
    )
    for m in SHURE_MODELS.values()
)


def shure_model(model: str) -> ShureModel:
    """Look up a model name (case-insensitive; AD suffixes like ``AD4Q-A`` allowed).

    Raises:
        KeyError: the model is not a supported Shure command-string model.
    """
    key = model.strip().upper()
    if key in SHURE_MODELS:
        return SHURE_MODELS[key]
    base = key.split("-")[0]
    if base in SHURE_MODELS:
        return SHURE_MODELS[base]
    if key == "PSM1000":
        return SHURE_MODELS["P10T"]
    raise KeyError(model)


def family_spec(family: str) -> ShureFamily:
    """Raises: KeyError for a family that is not a Shure command-strings family."""
    return SPECS[family]


def clamp_meter_rate(family: str, rate_ms: int) -> int:
    """Return a safe METER_RATE for the family (0 stays 0 = metering off)."""
    if rate_ms <= 0:
        return 0
    return max(rate_ms, SPECS[family].min_meter_rate_ms, 100)


def audio_percent(family: str, dbfs: float | None) -> int | None:
    """The meter's percent of an audio level: 0 % at the family's empty-meter dBFS, 100 % at 0 dBFS."""
    if dbfs is None:
        return None
    empty = SPECS[family].audio_empty_dbfs
    return max(0, min(100, round(100 * (dbfs - empty) / -empty)))
