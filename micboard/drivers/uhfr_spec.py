"""Shure UHF-R (UR4S / UR4D) on the wire: the facts the driver and the simulator share (protocols.md §2, §7.4).

Data only: keywords, property names, value sets, the meter clock and the models. The driver
(:mod:`micboard.drivers.uhfr`) parses with these names and the simulator (:mod:`micboard.simulators.uhfr`)
writes its own datagrams with them; neither shares the other's code. Tags in comments are those of
protocols.md: [M] two or more implementations agree, [U] uncertain (one source or sources disagree).
No Django here.
"""

from __future__ import annotations

from micboard.drivers.catalog import DeviceModel

FAMILY = "uhfr"
DRIVER = "shure_uhfr"
DEFAULT_PORT = 2202  # UDP, on the receiver [M]

# Framing: "* GET 1 CHAN_NAME *" -> "* REPORT 1 CHAN_NAME LEAD_VOX *", exactly one message per datagram from every
# device and client seen [M]; a parser may accept several.
MESSAGE_START = "* "
MESSAGE_END = " *"
MAX_DATAGRAM = 1024  # bytes read from one datagram; real messages are < 60

# Verbs. Clients send GET / SET / METER; the device answers REPORT (never REP) and SAMPLE [M].
VERB_GET = "GET"
VERB_SET = "SET"
VERB_METER = "METER"
VERB_REPORT = "REPORT"
VERB_SAMPLE = "SAMPLE"
METER_ALL = "ALL"
METER_STOP = "STOP"

# METER rate: 3 digits in units of about 30 ms ("* METER 1 ALL 003 *" ~ 90 ms) [M, not vendor-confirmed].
METER_UNIT_MS = 30
METER_MIN_UNITS = 1
METER_MAX_UNITS = 999

# Channel properties (protocols.md §2 table; all [U] except where marked [M]).
CHAN_NAME = "CHAN_NAME"  # no braces, spaces travel as "_", up to 12 characters [U]
FREQUENCY = "FREQUENCY"  # 6-digit kHz, "578000" [M]
GROUP_CHAN = "GROUP_CHAN"  # "gg cc" with a space; "-- --" = none [M]
TX_BAT = "TX_BAT"  # 1-5 bars, "U" = unknown / transmitter off [M]
TX_BAT_MINS = "TX_BAT_MINS"  # minutes, usually UNKNOWN [U]
TX_BAT_TYPE = "TX_BAT_TYPE"  # UNKNOWN / ALKALINE / NIMH / LITHIUM [U]
TX_TYPE = "TX_TYPE"  # transmitter model [U]
TX_POWER = "TX_POWER"  # NORM (10 mW) / HIGH (50 mW) [U]
TX_GAIN = "TX_GAIN"  # 0-30 -> -10...+20 dB [U]
TX_TRIM = "TX_TRIM"  # -10 / 0 / 15 [U]
TX_LOCK = "TX_LOCK"  # UNLOCK / POWER / FREQ / FREQ_AND_POWER / UNKNOWN [U]
AUDIO_GAIN = "AUDIO_GAIN"  # 00-32, attenuation [U]
MUTE = "MUTE"  # ON / OFF [U]
SQUELCH = "SQUELCH"  # 0-20 -> -10...+10 [U]

CHANNEL_PROPS: tuple[str, ...] = (
    CHAN_NAME,
    FREQUENCY,
    GROUP_CHAN,
    TX_BAT,
    TX_BAT_MINS,
    TX_BAT_TYPE,
    TX_TYPE,
    TX_POWER,
    TX_GAIN,
    TX_TRIM,
    TX_LOCK,
    AUDIO_GAIN,
    MUTE,
    SQUELCH,
)

# What a reading needs, in the order the driver asks. A poll may end without the optional ones (a firmware
# that does not know them [U] must not cost every poll its whole timeout).
READ_PROPS: tuple[str, ...] = (CHAN_NAME, FREQUENCY, GROUP_CHAN, TX_TYPE, TX_BAT, TX_BAT_MINS, TX_BAT_TYPE, MUTE)
ESSENTIAL_PROPS: frozenset[str] = frozenset({CHAN_NAME, FREQUENCY, TX_BAT})

NAME_MAX = 12
NAME_SPACE = "_"
FREQUENCY_DIGITS = 6

# Sentinels (protocols.md §1.10).
UNKNOWN = "UNKNOWN"
BATTERY_UNKNOWN = "U"
NO_GROUP_CHAN = "-- --"

BATTERY_BARS = ("1", "2", "3", "4", "5")
# Battery chemistries as UHF-R names them -> the codes the rest of micboard uses (ReceiverReading.battery_type).
BATTERY_TYPES: dict[str, str] = {"ALKALINE": "ALKA", "LITHIUM": "LITH", "NIMH": "NIMH"}
TX_POWERS = ("NORM", "HIGH")
TX_TRIMS = ("-10", "0", "15")
TX_LOCKS = ("UNLOCK", "POWER", "FREQ", "FREQ_AND_POWER", UNKNOWN)
ON_OFF = ("ON", "OFF")
AUDIO_GAIN_RANGE = (0, 32)
TX_GAIN_RANGE = (0, 30)
SQUELCH_RANGE = (0, 20)

# SAMPLE on port 2202, positional [M]: "* SAMPLE 1 ALL XB 082 097 4 015 *"
#   antenna (AX / XB / AB / XX), rfA, rfB (3 digits each), battery (1-5 / U), audio (3 digits).
SAMPLE_FIELDS = 5
# Antenna field: the letter in a position lights that antenna; X = that antenna not in use.
ANTENNA_CODES = ("AX", "XB", "AB", "XX")

# RF: the level fields read as the magnitude of a negative dBm (082 -> -82 dBm) [U]. Of the two public
# readings this is the one that fits a receiver: micboard's % = 100*(100 - v)/80 also treats v as a weakening
# dB figure over -20...-100, and WirelessMicSuiteServer reads the same unit's RFLEVEL scan levels as -dBm. The
# Zabbix poller's (v - 255)/2 would put a pack beside the antenna (v <= 100) below -77 dBm.
RF_NOISE_FLOOR_RAW = (105, 112)  # -105...-112 dBm: what a channel without a transmitter shows

# Audio: an 8-LED bitmap [U]: bits 0-6 light one segment each from the bottom, bit 7 is the peak (clip) LED.
# Read as segments lit (bit length of the value) x 12.5 %, as micboard does; silence (000) is an empty meter.
# No dBFS is derived from it: no source gives the LEDs' thresholds.
AUDIO_LEDS = 8
AUDIO_PEAK_BIT = 0x80

MODELS: tuple[DeviceModel, ...] = (
    DeviceModel("UR4S", "Shure", DRIVER, FAMILY, 1, DEFAULT_PORT, label="Shure UHF-R UR4S", transport="udp"),
    DeviceModel("UR4D", "Shure", DRIVER, FAMILY, 2, DEFAULT_PORT, label="Shure UHF-R UR4D", transport="udp"),
)


def meter_units(meter_rate_ms: int) -> int:
    """The METER field for a rate in ms: int(ms / 30) as micboard sends it, kept to 1...999."""
    return max(METER_MIN_UNITS, min(METER_MAX_UNITS, int(meter_rate_ms) // METER_UNIT_MS))
