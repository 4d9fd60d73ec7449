"""The demo rig: the simulated receivers `make demo` seeds and simulates.

One definition serves both sides: ``python manage.py seed_demo`` creates the
matching Receiver rows and ``python manage.py simulate`` starts a simulated
device for each entry, so the two can never disagree about hosts and ports.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

SIM_PORT = 2202
# Sennheiser SSC answers on UDP 45, a privileged port (< 1024): the demo's SSC unit listens on this one instead,
# so that `make demo` starts without root. Point micboard at port 45 for real gear.
SSC_DEMO_PORT = 4545


@dataclass(frozen=True, slots=True)
class RigChannel:
    name: str  # CHAN_NAME as the receiver reports it
    performer: str  # shown on the board via an Assignment
    tx_model: str | None = None  # None: no transmitter for this channel (IEM)
    battery_type: str = "LION"
    battery_percent: int = 100
    frequency_khz: int = 0  # 0: the simulator picks one in the band


@dataclass(frozen=True, slots=True)
class RigDevice:
    key: str  # stable identifier, also the simulator's handle in simctl
    name: str  # receiver name in micboard
    model: str
    device_id: str
    octet: int  # 127.0.0.<octet> on Linux; port SIM_PORT + octet elsewhere
    location: str
    channels: tuple[RigChannel, ...] = field(default_factory=tuple)
    driver: str = "shure_tcp"  # key in micboard.drivers.DRIVERS; picks the simulator (see make_device)
    base_port: int = SIM_PORT  # the device's port on Linux (its protocol's default); base_port + octet elsewhere

    @property
    def host(self) -> str:
        return f"127.0.0.{self.octet}" if sys.platform.startswith("linux") else "127.0.0.1"

    @property
    def port(self) -> int:
        return self.base_port if sys.platform.startswith("linux") else self.base_port + self.octet


DEMO_RIG: tuple[RigDevice, ...] = (
    RigDevice(
        key="ulxd",
        name="ULX-D Band",
        model="ULXD4Q",
        device_id="ULXBAND",
        octet=11,
        location="Stage left rack",
        channels=(
            RigChannel("Lead Vox", "Maya Chen", "ULXD2", "LION", 96, 578350),
            RigChannel("BVox 1", "Jonas Berg", "ULXD2", "LION", 71, 579125),
            RigChannel("BVox 2", "Priya Nair", "ULXD2", "LION", 44, 580450),
            RigChannel("Sax", "Leo Park", "ULXD1", "ALKA", 23, 581700),
        ),
    ),
    RigDevice(
        key="ad",
        name="Axient Cast",
        model="AD4Q",
        device_id="Axient Cast",
        octet=12,
        location="Stage right rack",
        channels=(
            RigChannel("Romeo", "Sam Okafor", "ADX1", "LION", 88, 594075),
            RigChannel("Juliet", "Ana Ruiz", "ADX1", "LION", 63, 594700),
            RigChannel("Nurse", "Kate Hill", "AD1", "LION", 38, 595325),
            RigChannel("Friar", "Tom Weiss", "AD2", "LION", 15, 596100),
        ),
    ),
    RigDevice(
        key="qlxd",
        name="QLX-D Spare",
        model="QLXD4",
        device_id="QLXSPARE",
        octet=13,
        location="Stage left rack",
        channels=(RigChannel("Spare HH", "Host", "QLXD2", "LION", 82, 606400),),
    ),
    RigDevice(
        key="slxd",
        name="SLX-D Lecterns",
        model="SLXD4D",
        device_id="SLXLECT",
        octet=14,
        location="FOH",
        channels=(
            RigChannel("Lectern A", "Speaker 1", "SLXD2", "ALKA", 67, 602125),
            RigChannel("Lectern B", "Speaker 2", "SLXD2", "ALKA", 55, 603300),
        ),
    ),
    RigDevice(
        key="ad4d",
        name="Axient Hosts",
        model="AD4D",
        device_id="Axient Hosts",
        octet=16,
        location="FOH",
        channels=(
            RigChannel("Host A", "Dana Cole", "ADX2", "LION", 92, 597500),
            RigChannel("Host B", "Ravi Shah", "ADX2", "LION", 58, 598250),
        ),
    ),
    RigDevice(
        key="psm",
        name="PSM1000 IEM",
        model="P10T",
        device_id="IEM RACK",
        octet=15,
        location="Monitor world",
        channels=(
            RigChannel("IEM Vox", "Maya Chen IEM", None, "", 0, 572000),
            RigChannel("IEM Band", "Band mix", None, "", 0, 573250),
        ),
    ),
    RigDevice(
        key="uhfr",
        name="UHF-R Side Stage",
        model="UR4D",
        device_id="UR4D SIDE",  # not on the wire: UHF-R reports no device id on UDP 2202
        octet=22,
        location="Side stage",
        channels=(
            RigChannel("Choir L", "Choir left", "UR1", "ALKA", 64, 584250),
            RigChannel("Guest HH", "Guest vocal", "UR2", "LION", 81, 586125),
        ),
        driver="shure_uhfr",
    ),
    # Three devices behind one simulated Shure SystemAPI Server (HTTPS 127.0.0.23:10000): one Receiver each,
    # named by its device id on the server. No frequencies: the System API has none.
    RigDevice(
        key="keynote",
        name="Keynote pack",
        model="ULXD6",
        device_id="0b5e6c1a-0000-11dd-a000-000edd230002",
        octet=23,
        location="Conference stage",
        channels=(RigChannel("Keynote", "Alex Morgan", "ULXD6", "LION", 74),),
        driver="shure_system_api",
        base_port=10000,
    ),
    RigDevice(
        key="qa",
        name="Q&A handheld",
        model="ULXD8",
        device_id="0b5e6c1a-0000-11dd-a000-000edd230003",
        octet=23,
        location="Conference stage",
        channels=(RigChannel("Q&A Mic", "Audience", "ULXD8", "LION", 31),),
        driver="shure_system_api",
        base_port=10000,
    ),
    RigDevice(
        key="adtd",
        name="PSM Conference",
        model="ADTD",
        device_id="ddb03a46-0000-11dd-a000-000edd230001",
        octet=23,
        location="Conference rack",
        channels=(RigChannel("Host IEM", "Alex Morgan IEM"), RigChannel("Panel IEM", "Panel mix")),
        driver="shure_system_api",
        base_port=10000,
    ),
    RigDevice(
        key="ewdx",
        name="EW-DX Panel",
        model="EM4-DANTE",
        device_id="1922000417",  # the serial number, SSC's /device/identity/serial
        octet=21,
        location="FOH",
        channels=(  # EW-DX keeps names of up to 8 characters, in upper case
            RigChannel("MOD", "Nora Lind", "SKM", "LION", 90, 518200),
            RigChannel("PANEL 1", "Omar Haddad", "SK", "ALKA", 64, 519350),
            RigChannel("PANEL 2", "Ines Vidal", "SK", "LION", 52, 520475),
            RigChannel("PANEL 3", "Ben Carter", "SKM", "ALKA", 18, 521600),
        ),
        driver="sennheiser_ssc",
        base_port=SSC_DEMO_PORT,
    ),
)

# The boards: (group name, [(device key, channel number) or None for a BLANK spacer]).
DEMO_GROUPS: tuple[tuple[str, tuple[tuple[str, int] | None, ...]], ...] = (
    (
        "Band",
        (("ulxd", 1), ("ulxd", 2), ("ulxd", 3), ("ulxd", 4), None, ("psm", 1), ("psm", 2), ("qlxd", 1)),
    ),
    (
        "Cast",
        (("ad", 1), ("ad", 2), ("ad", 3), ("ad", 4), None, ("ad4d", 1), ("ad4d", 2), ("slxd", 1), ("slxd", 2)),
    ),
    ("Side stage", (("uhfr", 1), ("uhfr", 2))),
    ("Conference", (("keynote", 1), ("qa", 1), None, ("adtd", 1), ("adtd", 2))),
    (  # Sennheiser beside Shure: the EW-DX panel mics and the Axient hosts
        "Panel",
        (("ewdx", 1), ("ewdx", 2), ("ewdx", 3), ("ewdx", 4), None, ("ad4d", 1), ("ad4d", 2)),
    ),
)


def rig_device(key: str) -> RigDevice:
    for device in DEMO_RIG:
        if device.key == key:
            return device
    raise KeyError(key)
