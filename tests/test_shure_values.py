"""Every documented Shure value the simulator can be told to show, read back by the driver over real sockets.

TX offsets, 0 bars with minutes left, the runtime warning and calculating codes, group/channel tuning in the
unit's band, pinned antenna states (the AD red LED), the Quadversity and FD-C SAMPLE layouts, the ULX-D audio
scale, and simctl reaching each of them.
"""

from __future__ import annotations

import asyncio
import socket
import time
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from micboard.drivers.base import RUNTIME_CALCULATING, RUNTIME_WARNING
from micboard.drivers.shure import poll
from micboard.drivers.shure_spec import BANDS
from micboard.simulators import make_device
from micboard.simulators.engine import SimulatorError, SimulatorThread
from micboard.simulators.rig import rig_device

FROZEN = {"dynamics": False, "chaos": False, "seed": 9, "calculating_seconds": 0}
MODELS = {"ulxd": "ULXD4Q", "qlxd": "QLXD4", "slxd": "SLXD4D", "ad": "AD4Q", "psm": "P10T"}


@pytest.fixture
def sim():
    devices = [make_device(rig_device(key), host="127.0.0.1", port=0, **FROZEN) for key in MODELS]
    with SimulatorThread(devices, control_port=0) as thread:
        yield thread


def read(sim: SimulatorThread, key: str, **options):
    host, port = sim.address(key)
    return asyncio.run(poll(host, port, model=MODELS[key], timeout=2.0, meter_rate_ms=100, options=options))


def samples(sim: SimulatorThread, key: str, channel: int, count: int = 2) -> list[list[str]]:
    """The fields after ``ALL`` of the next SAMPLEs of one channel, from a raw client."""
    with socket.create_connection(sim.address(key), timeout=2.0) as sock:
        sock.sendall(f"< SET {channel} METER_RATE 00100 >".encode())
        data, found, deadline = "", [], time.monotonic() + 2.0
        while len(found) < count and time.monotonic() < deadline:
            data += sock.recv(65536).decode("latin-1")
            while ">" in data:
                frame, data = data.split(">", 1)
                tokens = frame.split()
                if tokens[1:4] == ["SAMPLE", str(channel), "ALL"]:
                    found.append(tokens[4:])
        sock.sendall(f"< SET {channel} METER_RATE 00000 >".encode())
    assert len(found) == count, "no SAMPLE arrived"
    return found


def test_tx_offsets_other_than_zero_reach_the_reading(sim):
    sim.call("ulxd", "set_tx_offset", channel=1, db=9)
    sim.call("ad", "set_tx_offset", channel=2, db=-12)
    sim.call("ad", "set_tx_offset", channel=3, db=20)
    assert read(sim, "ulxd").channels[1].tx_offset_db == 9
    ad = read(sim, "ad").channels
    assert (ad[1].tx_offset_db, ad[2].tx_offset_db, ad[3].tx_offset_db) == (0, -12, 20)
    with pytest.raises(SimulatorError, match=r"TX offsets are 0\.\.21 in steps of 3 dB"):
        sim.call("ulxd", "set_tx_offset", channel=1, db=4)
    with pytest.raises(SimulatorError, match=r"-12\.\.20"):
        sim.call("ad", "set_tx_offset", channel=1, db=21)
    with pytest.raises(SimulatorError, match="reports no TX offset"):
        sim.call("slxd", "set_tx_offset", channel=1, db=3)


def test_zero_bars_with_minutes_left_is_shown_as_the_receiver_says(sim):
    sim.set_battery("ulxd", 2, 50)
    sim.call("ulxd", "set_bars", channel=2, bars=0)
    ch = read(sim, "ulxd").channels[2]
    assert (ch.tx_present, ch.battery_bars, ch.battery_runtime_min) == (True, 0, 240)
    sim.call("ulxd", "set_bars", channel=2, bars="auto")
    assert read(sim, "ulxd").channels[2].battery_bars == 3
    with pytest.raises(SimulatorError, match="bars must be 0-5"):
        sim.call("ulxd", "set_bars", channel=2, bars=6)
    with pytest.raises(SimulatorError, match="has no transmitter on channel 1"):
        sim.call("psm", "set_bars", channel=1, bars=1)


@pytest.mark.parametrize("key", ["ulxd", "slxd", "ad"])
def test_runtime_warning_and_calculating_codes_on_demand(sim, key):
    sim.call(key, "set_runtime", channel=1, runtime="warning")
    ch = read(sim, key).channels[1]
    assert (ch.battery_runtime_min, ch.battery_runtime_state) == (None, RUNTIME_WARNING)
    sim.call(key, "set_runtime", channel=1, runtime="calculating")
    ch = read(sim, key).channels[1]
    assert (ch.battery_runtime_min, ch.battery_runtime_state) == (None, RUNTIME_CALCULATING)
    sim.call(key, "set_runtime", channel=1, runtime=17)
    assert read(sim, key).channels[1].battery_runtime_min == 17
    sim.call(key, "set_runtime", channel=1, runtime="auto")
    ch = read(sim, key).channels[1]
    assert ch.battery_runtime_state is None and ch.battery_runtime_min > 17


def test_a_group_channel_tunes_a_frequency_in_the_band_and_a_frequency_clears_it(sim):
    snap = sim.call("ad", "set_group_channel", channel=1, group_channel="3,12")
    low, high = BANDS[snap["band"]]
    tuned = snap["channels"][0]["frequency_khz"]
    ch = read(sim, "ad").channels[1]
    assert snap["band"] == "G57"
    assert (ch.group_channel, ch.frequency_khz) == ("3,12", tuned)
    assert low <= tuned <= high and tuned % 25 == 0
    other = sim.call("ad", "set_group_channel", channel=1, group_channel="3,13")["channels"][0]["frequency_khz"]
    assert other != tuned and low <= other <= high
    sim.call("ad", "set_frequency", channel=1, khz=595_000)
    ch = read(sim, "ad").channels[1]
    assert (ch.group_channel, ch.frequency_khz) == (None, 595_000)
    with pytest.raises(SimulatorError, match="a frequency in band G57"):
        sim.call("ad", "set_frequency", channel=1, khz=700_000)
    with pytest.raises(SimulatorError, match="group,channel"):
        sim.call("ad", "set_group_channel", channel=1, group_channel="--,--")


def test_a_group_channel_set_over_the_wire_also_lands_in_the_band(sim):
    band = sim.snapshot("ulxd")["band"]
    low, high = BANDS[band]
    with socket.create_connection(sim.address("ulxd"), timeout=2.0) as sock:
        sock.sendall(b"< SET 2 GROUP_CHAN {5,40} >")
        data = b""
        while b"GROUP_CHAN" not in data:
            data += sock.recv(4096)
    ch = read(sim, "ulxd").channels[2]
    assert ch.group_channel == "5,40"
    assert low <= ch.frequency_khz <= high


def test_the_ad_red_led_and_pinned_ulx_antennas_reach_the_tile(sim):
    sim.call("ad", "set_antennas", channel=1, status="BR")
    sim.call("ulxd", "set_antennas", channel=1, status="XB")
    assert read(sim, "ad").channels[1].antennas == "AR"
    assert read(sim, "ulxd").channels[1].antennas == "IA"
    sim.call("ad", "set_antennas", channel=1, status="auto")
    assert read(sim, "ad").channels[1].antennas == "AA"
    with pytest.raises(SimulatorError, match="2 letters of B, R, X"):
        sim.call("ad", "set_antennas", channel=1, status="BRB")
    with pytest.raises(SimulatorError, match="reports no antenna status"):
        sim.call("slxd", "set_antennas", channel=1, status="AX")


def test_quadversity_sends_four_antennas_and_the_driver_reads_each(sim):
    sim.call("ad", "set_rf_mode", mode="quadversity")
    fields = samples(sim, "ad", 1)[-1]
    assert fields[4] == "BBBB" and len(fields) == 5 + 2 * 4
    ch = read(sim, "ad").channels[1]
    assert ch.antennas == "AAAA"
    assert len(ch.rf_antenna_percents) == 4
    sim.call("ad", "set_antennas", channel=1, status="BRXB")
    assert read(sim, "ad").channels[1].antennas == "ARXA"


def test_fd_c_appends_a_second_rf_section_the_driver_folds_per_antenna(sim):
    sim.call("ad", "set_rf_mode", mode="fd-c")
    fields = samples(sim, "ad", 2)[-1]
    assert len(fields) == 5 + 4 + 1 + 4
    assert fields[4] == fields[9] == "BB"
    first, second = [int(v) - 120 for v in fields[6:9:2]], [int(v) - 120 for v in fields[11:14:2]]
    assert all(b < a for a, b in zip(first, second, strict=True)), "the second carrier arrives a little weaker"
    ch = read(sim, "ad").channels[2]
    assert ch.antennas == "AA" and len(ch.rf_antenna_percents) == 2
    assert ch.rf_dbm == max(first)
    with pytest.raises(SimulatorError, match="Axient Digital only"):
        sim.call("ulxd", "set_rf_mode", mode="fd-c")


def test_ulxd_audio_is_read_as_eee_minus_fifty_and_silence_stays_an_empty_meter(sim):
    ch = read(sim, "ulxd").channels[1]
    assert (ch.audio_dbfs, ch.audio_percent, ch.audio_peak) == (-14.0, 72, False)  # eee 036
    sim.pack_off("ulxd", 1)
    off = read(sim, "ulxd").channels[1]
    assert (off.audio_dbfs, off.audio_percent) == (-50.0, 0)
    sim.pack_on("ulxd", 1)
    sim.peak("ulxd", 1)
    assert read(sim, "ulxd").channels[1].audio_peak is True


def test_a_stricter_peak_threshold_from_options_flags_loud_speech(sim):
    assert read(sim, "qlxd").channels[1].audio_peak is False
    assert read(sim, "qlxd", peak_dbfs="-15").channels[1].audio_peak is True


def test_simctl_reaches_every_new_value(sim):
    port = sim.control_address[1]

    def simctl(*words: str) -> str:
        out = StringIO()
        call_command("simctl", *words, control_port=port, stdout=out)
        return out.getvalue()

    assert "offset +9 dB" in simctl("tx-offset", "ulxd", "2", "9")
    assert "offset -12 dB" in simctl("tx-offset", "ad", "2", "-12")
    assert "pinned bars 0" in simctl("bars", "ulxd", "3", "0")
    assert "runtime 65533" in simctl("runtime", "ad", "1", "warning")
    assert "group,channel 2,7" in simctl("group-channel", "ad", "4", "2,7")
    assert "595.000 MHz" in simctl("frequency", "ad", "3", "595000")
    assert "quadversity" in simctl("rf-mode", "ad", "quadversity")
    assert "antennas BRXB" in simctl("antennas", "ad", "1", "brxb")
    ad = read(sim, "ad").channels
    assert (ad[1].battery_runtime_state, ad[1].antennas, ad[2].tx_offset_db) == (RUNTIME_WARNING, "ARXA", -12)
    assert len(ad[1].rf_antenna_percents) == 4
    assert (ad[3].frequency_khz, ad[4].group_channel) == (595_000, "2,7")
    assert read(sim, "ulxd").channels[3].battery_bars == 0
    with pytest.raises(CommandError, match="db must be a whole number"):
        simctl("tx-offset", "ulxd", "2", "loud")
    with pytest.raises(CommandError, match="rf mode must be one of standard, quadversity, fd-c"):
        simctl("rf-mode", "ad", "diversity")
