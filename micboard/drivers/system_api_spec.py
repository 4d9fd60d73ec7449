"""Shure System API (HTTPS REST, protocols.md §4): the facts the driver and the simulator share.

Data only: the paths, the header, the resource and capability names, the enumerations, and the models
micboard reads through a SystemAPI Server. Each side writes and parses its own JSON; this module parses
nothing. The confidence tags of protocols.md are kept beside each fact: [M] two implementations agree,
[U] one source or inferred. Parse everything marked [U] tolerantly.

The SystemAPI Server is a Windows application on a PC that relays Shure devices [U]; one Receiver row in
micboard is one device on that server, named by its ``hardwareIdentity.deviceId``.
"""

from __future__ import annotations

from micboard.drivers.catalog import DeviceModel

FAMILY = "system_api"
DRIVER = "shure_system_api"

DEFAULT_PORT = 10000  # [M] chosen at install; 10000 is the installer's default
API_BASE = "/api/v1"  # [M]
API_KEY_HEADER = "x-api-key"  # [M] the install-time shared secret, on every request
DEVICES = "devices"  # [M] GET /api/v1/devices
# [U] The v1.8 spec pages the device list Relay-style; the cursor parameter's name is not in our sources,
# so the driver sends the Relay convention's ``after=<endCursor>`` and stops when a page repeats a cursor.
PAGE_AFTER_PARAM = "after"

# Device states [M for these two; the server knows others, e.g. DISCOVERED, read as "not online"].
STATE_ONLINE = "ONLINE"
STATE_OFFLINE = "OFFLINE"

# Device resources: GET /api/v1/devices/{deviceId}/{resource}. Each is also the capability name a device
# lists in its node's ``capabilities[]`` [M for name, identify, audio-mute, audio-channels; U for the
# battery ones, inferred from the endpoint paths].
NAME = "name"  # {"name"}
IDENTIFY = "identify"  # {"identifying"}
AUDIO_MUTE = "audio-mute"  # {"muted"}
BATTERY_LEVEL = "battery-level"  # {"percentage", "status": {"currentState", "targetState", "timeToTargetState"}}
BATTERY_HEALTH = "battery-health"  # {"percentage", "cycleCount"}
AUDIO_CHANNELS = "audio-channels"  # [{"id", "role", "group", "capabilities"}] (or {"items": [...]}) [U shape]
DEVICE_RESOURCES = (NAME, IDENTIFY, AUDIO_MUTE, BATTERY_LEVEL, BATTERY_HEALTH, AUDIO_CHANNELS)

# Audio-channel resources: GET …/audio-channels/{channelId}/{resource}; also the channel's capabilities.
CHANNEL_NAME = "name"  # {"name"}
CHANNEL_MUTE = "mute"  # {"muted"}
CHANNEL_GAIN = "gain"  # {"gain"}; not read by micboard
CHANNEL_ACTIVITY = "activity"  # {"audioLevel": LOW | GOOD | CLIPPING} [U field name, one implementer]
CHANNEL_RESOURCES = (CHANNEL_NAME, CHANNEL_MUTE, CHANNEL_GAIN, CHANNEL_ACTIVITY)

# Channel activity: the only audio information there is; no level in dB exists [U]. Re-pushed ≈ every 5 s.
ACTIVITY_FIELDS = ("audioLevel", "activity", "level")  # [U] the first is the one implementer's
ACTIVITY_LOW = "LOW"
ACTIVITY_GOOD = "GOOD"
ACTIVITY_CLIPPING = "CLIPPING"
ACTIVITIES = (ACTIVITY_LOW, ACTIVITY_GOOD, ACTIVITY_CLIPPING)

# The audio channel id is base64 of a JSON descriptor [M]: {"t":"AudioChannel","c":"ADTQ","v":…,"s":"CH","i":0};
# other devices write the index as "index" [U]. The index counts from 0.
CHANNEL_INDEX_KEYS = ("i", "index")

# Battery states [U: from one implementer's reading of the v1.8 schema]. ``timeToTargetState`` is an ISO-8601
# duration (``PT853M``) to ``targetState``: runtime left while discharging, time to full while charging.
BATTERY_CHARGING = "CHARGING"
BATTERY_DISCHARGING = "DISCHARGING"
BATTERY_FULL = "FULL"
BATTERY_EMPTY = "EMPTY"
BATTERY_CALCULATING = "CALCULATING"
BATTERY_OPTIMAL_STORAGE = "OPTIMAL_STORAGE"
BATTERY_STATES = (
    BATTERY_CHARGING,
    BATTERY_DISCHARGING,
    BATTERY_FULL,
    BATTERY_EMPTY,
    BATTERY_CALCULATING,
    BATTERY_OPTIMAL_STORAGE,
)

# Not in the System API at all [U, one implementer checked a real server]: RF level, RSSI, frequency,
# antenna, encryption, transmission mode, audio level in dB. The driver leaves them None.


def _model(model: str, label: str, channels: int, *, is_iem: bool = False) -> DeviceModel:
    return DeviceModel(
        model=model,
        manufacturer="Shure",
        driver=DRIVER,
        family=FAMILY,
        channels=channels,
        default_port=DEFAULT_PORT,
        is_iem=is_iem,
        label=f"{label} (System API)",
    )


# What micboard reads through a SystemAPI Server. Channel counts are the hardware's; which resources each
# model offers through the server is [U] beyond the ADTQ (audio channels with name and activity, checked
# on a real server by one implementer). Battery-powered devices (packs, handhelds) are one channel each.
MODELS: tuple[DeviceModel, ...] = (
    _model("ADTQ", "Shure Axient Digital PSM ADTQ", 4, is_iem=True),
    _model("ADTD", "Shure Axient Digital PSM ADTD", 2, is_iem=True),
    _model("ADXR", "Shure Axient Digital PSM ADXR bodypack", 1),  # [U] whether packs appear at all
    _model("AD4Q", "Shure Axient Digital AD4Q", 4),
    _model("AD4D", "Shure Axient Digital AD4D", 2),
    _model("ULXD6", "Shure ULX-D ULXD6 bodypack", 1),  # [U] reachable only while docked in a networked charger
    _model("ULXD8", "Shure ULX-D ULXD8 handheld", 1),  # [U] as ULXD6
)
