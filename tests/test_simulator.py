"""The Shure command-strings simulator, exercised over real loopback sockets with raw clients."""

from __future__ import annotations

import json
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from micboard.simulators.engine import SimulatorError, SimulatorThread
from micboard.simulators.rig import rig_device
from micboard.simulators.shure_tcp import SimulatedShureDevice

REPO = Path(__file__).resolve().parent.parent
ULX_SAMPLE = re.compile(r"^< SAMPLE ([1-4]) ALL (AX|XB|XX) (\d{3}) (\d{3}) >$")


class Client:
    """A raw TCP client with the minimal framing rule: cut at '>', take from the last '<'."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=2.0)
        self.raw = b""
        self.text = ""
        self.pending: list[str] = []
        self.eof = False

    def send(self, *commands: str) -> None:
        self.sock.sendall("".join(f"< {c} >\r\n" for c in commands).encode())

    def _pump(self, timeout: float) -> None:
        if self.eof:
            time.sleep(min(timeout, 0.02))
            return
        ready, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if not ready:
            return
        try:
            data = self.sock.recv(65536)
        except ConnectionError:
            data = b""
        if not data:
            self.eof = True
            return
        self.raw += data
        self.text += data.decode("latin-1")
        while ">" in self.text:
            end = self.text.index(">")
            start = self.text.rfind("<", 0, end)
            if start >= 0:
                self.pending.append(self.text[start : end + 1])
            self.text = self.text[end + 1 :]

    def read_until(self, predicate, timeout: float = 2.0) -> list[str]:
        """Frames up to and including the first one matching ``predicate``."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            while self.pending:
                frame = self.pending.pop(0)
                seen.append(frame)
                if predicate(frame):
                    return seen
            if time.monotonic() > deadline or self.eof:
                raise AssertionError(f"no matching frame within {timeout}s; got {seen[-10:]}")
            self._pump(deadline - time.monotonic())

    def read_frame(self, frame: str, timeout: float = 2.0) -> list[str]:
        return self.read_until(lambda f: f == frame, timeout)

    def read_all_of(self, expected: set[str], timeout: float = 2.0) -> list[str]:
        missing = set(expected)
        seen: list[str] = []

        def done(frame: str) -> bool:
            missing.discard(frame)
            return not missing

        seen = self.read_until(done, timeout)
        return seen

    def collect(self, duration: float) -> list[str]:
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline and not self.eof:
            self._pump(deadline - time.monotonic())
        frames, self.pending = self.pending, []
        return frames

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def sim():
    """Factory: start a SimulatorThread of rig devices on ephemeral loopback ports."""
    threads: list[SimulatorThread] = []
    clients: list[Client] = []

    def make(*keys: str, control: bool = False, **options) -> SimulatorThread:
        settings = {"dynamics": False, "chaos": False, "seed": 7, "calculating_seconds": 0, **options}
        devices = [SimulatedShureDevice(rig_device(k), host="127.0.0.1", port=0, **settings) for k in keys]
        thread = SimulatorThread(devices, control_port=0 if control else None).start()
        threads.append(thread)
        return thread

    def connect(thread: SimulatorThread, key: str) -> Client:
        """Connect and wait until the device has registered the client (so it gets broadcasts)."""
        before = thread.snapshot(key)["clients"]
        client = Client(thread.address(key))
        clients.append(client)
        deadline = time.monotonic() + 2.0
        while thread.snapshot(key)["clients"] <= before:
            assert time.monotonic() < deadline, "the simulator did not register the connection"
            time.sleep(0.005)
        return client

    make.connect = connect
    yield make
    for client in clients:
        client.close()
    for thread in threads:
        thread.stop()


def _get_all(client: Client, last_channel: int, last_prop: str, prefix: str = "REP") -> list[str]:
    client.send("GET 0 ALL")
    return client.read_until(lambda f: f.startswith(f"< {prefix} {last_channel} {last_prop} "))


def _props(frames: list[str]) -> Counter:
    """(channel, property) -> count, for channel REPs."""
    counts: Counter = Counter()
    for frame in frames:
        tokens = frame.split()
        if tokens[1] in ("REP", "REPORT") and tokens[2].isdigit():
            counts[
                (int(tokens[2]), tokens[3] + (f" {tokens[4]}" if tokens[4].isdigit() and len(tokens) > 6 else ""))
            ] += 1
    return counts


# ---------------------------------------------------------------- family formats


def test_ulxd_get_all_formats(sim):
    thread = sim("ulxd")
    c = sim.connect(thread, "ulxd")
    frames = _get_all(c, 4, "AUDIO_LVL")
    assert frames[0] == "< REP DEVICE_ID {ULXBAND } >"
    assert re.fullmatch(r"< REP FW_VER \{[0-9.]+ *\} >", frames[1]) and len(frames[1]) == len("< REP FW_VER {} >") + 18
    first_channel = next(i for i, f in enumerate(frames) if f.startswith("< REP 1 "))
    assert all(not re.match(r"< REP \d", f) for f in frames[:first_channel])
    assert all(f.startswith("< REP ") for f in frames) and not any("SAMPLE" in f or "MODEL" in f for f in frames)
    counts = _props(frames)
    per_channel = [{p for (ch, p) in counts if ch == n} for n in range(1, 5)]
    assert per_channel[0] == per_channel[1] == per_channel[2] == per_channel[3]
    assert set(counts.values()) == {1}, "ALL answers each property once"
    for frame in (
        "< REP 1 CHAN_NAME {Lead Vox} >",
        "< REP 2 CHAN_NAME {BVox 1  } >",
        "< REP 1 FREQUENCY 578350 >",
        "< REP 1 GROUP_CHAN {--,--} >",
        "< REP 1 AUDIO_GAIN 018 >",
        "< REP 1 METER_RATE 00000 >",
        "< REP 1 TX_TYPE ULXD2 >",
        "< REP 4 TX_TYPE ULXD1 >",
        "< REP 1 BATT_BARS 005 >",
        "< REP 1 BATT_CHARGE 096 >",
        "< REP 1 BATT_RUN_TIME 00460 >",
        "< REP 4 BATT_CHARGE 255 >",  # alkaline: no percentage
        "< REP 4 BATT_TYPE ALKA >",
        "< REP 1 RF_ANTENNA AX >",
    ):
        assert frame in frames
    assert b"\r" not in c.raw and b"\n" not in c.raw, "frames end at '>' without a newline"
    c.send("GET MODEL")
    c.read_frame("< REP ERR >")


def test_ulxd_sample_layout_and_first_sample_within_one_period(sim):
    thread = sim("ulxd")
    c = sim.connect(thread, "ulxd")
    c.send("SET 1 METER_RATE 100")
    c.read_frame("< REP 1 METER_RATE 00100 >")
    started = time.monotonic()
    frames = c.read_until(lambda f: f.startswith("< SAMPLE"), timeout=1.0)
    assert time.monotonic() - started < 0.35
    assert frames[-1] == "< SAMPLE 1 ALL AX 078 036 >"
    assert ULX_SAMPLE.match(frames[-1])


def test_qlxd_single_channel_subset(sim):
    thread = sim("qlxd")
    c = sim.connect(thread, "qlxd")
    frames = _get_all(c, 1, "AUDIO_LVL")
    assert "< REP 1 CHAN_NAME {Spare HH} >" in frames
    assert "< REP 1 TX_TYPE QLXD2 >" in frames
    assert "< REP DEVICE_ID {QLXSPARE} >" in frames
    assert {ch for ch, _ in _props(frames)} == {1}
    assert not any("AUDIO_MUTE" in f for f in frames)
    c.send("GET 2 CHAN_NAME", "GET 1 AUDIO_MUTE", "SET 1 METER_RATE 00100")
    frames = c.read_until(lambda f: f.startswith("< SAMPLE"))
    assert frames.count("< REP ERR >") == 2
    assert frames[-1] == "< SAMPLE 1 ALL AX 078 036 >"


def test_slxd_formats_sample_and_frequency_set(sim):
    thread = sim("slxd")
    c = sim.connect(thread, "slxd")
    frames = _get_all(c, 2, "RSSI 2")
    for frame in (
        "< REP MODEL {SLXD4D" + " " * 26 + "} >",
        "< REP DEVICE_ID {SLXLECT } >",
        "< REP FW_VER {2.0.15.2" + " " * 16 + "} >",
        "< REP RF_BAND {J52     } >",
        "< REP 1 CHAN_NAME {Lectern A" + " " * 22 + "} >",
        "< REP 1 FREQUENCY 0602125 >",
        "< REP 1 GROUP_CHANNEL {--,--     } >",
        "< REP 1 TX_MODEL SLXD2 >",
        "< REP 1 TX_BATT_BARS 004 >",
        "< REP 1 TX_BATT_MINS 00321 >",
        "< REP 1 AUDIO_LEVEL_PEAK 106 >",
        "< REP 1 AUDIO_LEVEL_RMS 096 >",
        "< REP 1 RSSI 1 070 >",
        "< REP 1 RSSI 2 066 >",
    ):
        assert frame in frames
    assert not any(re.search(r" (TX_TYPE|BATT_CHARGE|GROUP_CHAN) ", f) for f in frames), "SLX-D uses AD-style names"
    c.send("SET 1 FREQUENCY 602150")
    assert c.read_frame("< REP 1 FREQUENCY 0602150 >")[-2:] == [
        "< REP 1 GROUP_CHANNEL {--,--     } >",
        "< REP 1 FREQUENCY 0602150 >",
    ]
    c.send("SET 1 GROUP_CHANNEL {--,--}", "SET 1 CHAN_NAME {NineChars}", "SET 2 METER_RATE 100")
    frames = c.read_until(lambda f: f.startswith("< SAMPLE"))
    assert frames.count("< REP ERR >") == 2
    assert frames[-1] == "< SAMPLE 2 ALL 106 096 070 >"
    assert len(frames[-1].split()) == 8, "SLX-D SAMPLE has exactly 3 numeric fields"


def test_axient_formats_and_sample(sim):
    thread = sim("ad")
    c = sim.connect(thread, "ad")
    frames = _get_all(c, 4, "RSSI_LED_BITMAP 2")
    for frame in (
        "< REP MODEL {AD4Q-A" + " " * 26 + "} >",
        "< REP DEVICE_ID {Axient Cast" + " " * 20 + "} >",
        "< REP 1 CHAN_NAME {Romeo" + " " * 26 + "} >",
        "< REP 1 FREQUENCY 0594075 >",
        "< REP 1 TX_MODEL ADX1 >",
        "< REP 1 TX_BATT_CHARGE_PERCENT 088 >",
        "< REP 1 TX_BATT_MINS 00422 >",
        "< REP 1 SLOT_STATUS 1 LINKED.ACTIVE >",
        "< REP 4 SLOT_STATUS 8 EMPTY >",
        "< REP 1 CHAN_QUALITY 005 >",
        "< REP 1 ANTENNA_STATUS BB >",
        "< REP 2 RSSI 2 066 >",
    ):
        assert frame in frames
    c.send("GET 2 ALL")
    frames = c.read_frame("< REP 2 RSSI_LED_BITMAP 2 15 >")
    assert frames[0].startswith("< REP MODEL ") and "< REP DEVICE_ID {Axient Cast" in frames[1]
    assert {f.split()[2] for f in frames if re.match(r"< REP \d", f)} == {"2"}
    c.send("GET 1 RSSI 2", "GET 1 RSSI 3", "GET 1 BATT_BARS", "SET 3 METER_RATE 100")
    frames = c.read_until(lambda f: f.startswith("< SAMPLE"))
    assert frames[:3] == ["< REP 1 RSSI 2 066 >", "< REP ERR >", "< REP ERR >"]
    assert frames[-1] == "< SAMPLE 3 ALL 005 031 106 096 BB 31 070 15 066 >"
    assert len(frames[-1].split()[4:-1]) == 9


def test_psm1000_report_keyword_crlf_and_meters(sim):
    thread = sim("psm")
    c = sim.connect(thread, "psm")
    frames = _get_all(c, 2, "AUDIO_IN_LVL_R", prefix="REPORT")
    assert "< REPORT DEVICE_NAME {IEM RACK} >" in frames
    assert "< REPORT 1 FREQUENCY 572000 >" in frames
    assert "< REPORT 2 GROUP_CHAN --,-- >" in frames
    assert all(f.startswith("< REPORT ") for f in frames)
    assert c.raw.count(b">") == c.raw.count(b">\r\n") == len(frames)
    c.send("SET 0 METER_RATE 100", "GET 3 CHAN_NAME")
    frames = c.read_until(lambda f: f.startswith("< REPORT 2 AUDIO_IN_LVL_R"))
    assert frames[:3] == ["< REPORT 1 METER_RATE 00100 >", "< REPORT 2 METER_RATE 00100 >", "< REPORT ERR >"]
    meters = [re.fullmatch(r"< REPORT ([12]) AUDIO_IN_LVL_([LR]) (\d+) >", f) for f in frames[3:]]
    assert all(meters) and {(m[1], m[2]) for m in meters} == {("1", "L"), ("1", "R"), ("2", "L"), ("2", "R")}
    assert all(int(m[3]) > 100_000 for m in meters)
    assert not any("SAMPLE" in f for f in frames)


# ---------------------------------------------------------------- command semantics


def test_rep_err_cases_change_nothing(sim):
    thread = sim("ulxd")
    c = sim.connect(thread, "ulxd")
    bad = [
        "GET 5 CHAN_NAME",  # channel above the count
        "GET 9 ALL",
        "GET 1 NOT_A_PROPERTY",
        "GET 1 TX_MODEL",  # AD/SLX-D name on a ULX-D
        "GET 0 DEVICE_ID",  # device property with an index
        "GET CHAN_NAME",  # channel property without one
        "SET 1 AUDIO_GAIN 61",
        "SET 1 METER_RATE 50",
        "SET 1 METER_RATE 70000",
        "SET 1 CHAN_NAME {a<b}",
        "SET 1 CHAN_NAME {a>b}",
        "SET 1 CHAN_NAME {a}b}",
        "SET 1 CHAN_NAME {TooLongName}",
        "SET 1 TX_TYPE ULXD1",  # read-only
        "SET 1 FREQUENCY 578351",
        "REP 1 CHAN_NAME {x}",
    ]
    c.send(*bad, "GET 1 CHAN_NAME", "GET 1 AUDIO_GAIN", "GET 1 METER_RATE")
    frames = c.read_frame("< REP 1 METER_RATE 00000 >")
    assert frames.count("< REP ERR >") == len(bad)
    assert frames[-3:] == ["< REP 1 CHAN_NAME {Lead Vox} >", "< REP 1 AUDIO_GAIN 018 >", "< REP 1 METER_RATE 00000 >"]


def test_set_broadcasts_to_all_and_get_answers_only_requester(sim):
    thread = sim("ulxd")
    a, b = sim.connect(thread, "ulxd"), sim.connect(thread, "ulxd")
    a.send("SET 1 CHAN_NAME {Lead}")
    a.read_frame("< REP 1 CHAN_NAME {Lead    } >")
    b.read_frame("< REP 1 CHAN_NAME {Lead    } >")
    a.send("GET 1 AUDIO_GAIN", "SET 1 AUDIO_MUTE OFF")  # a query and a SET that changes nothing
    a.read_frame("< REP 1 AUDIO_MUTE OFF >")
    b.send("GET 2 CHAN_NAME")
    assert b.read_frame("< REP 2 CHAN_NAME {BVox 1  } >") == ["< REP 2 CHAN_NAME {BVox 1  } >"]
    a.send("SET 1 FREQUENCY 578375")
    expected = ["< REP 1 GROUP_CHAN {--,--} >", "< REP 1 FREQUENCY 578375 >"]
    assert a.read_frame(expected[-1]) == expected
    assert b.read_frame(expected[-1]) == expected
    a.send("SET 0 AUDIO_GAIN 20")
    frames = b.read_frame("< REP 4 AUDIO_GAIN 020 >")
    assert frames == [f"< REP {n} AUDIO_GAIN 020 >" for n in range(1, 5)]
    a.send("SET 2 AUDIO_GAIN INC 5", "SET 2 AUDIO_GAIN DEC 50")
    assert b.read_frame("< REP 2 AUDIO_GAIN 000 >") == ["< REP 2 AUDIO_GAIN 025 >", "< REP 2 AUDIO_GAIN 000 >"]


def test_ten_clients_all_receive_broadcasts(sim):
    thread = sim("ulxd")
    clients = [sim.connect(thread, "ulxd") for _ in range(10)]
    clients[3].send("SET 2 CHAN_NAME {Guitar}")
    for client in clients:
        client.read_frame("< REP 2 CHAN_NAME {Guitar  } >")
    assert thread.snapshot("ulxd")["clients"] == 10


def test_a_client_that_never_reads_is_dropped_without_blocking_others(sim):
    thread = sim("ulxd", queue_limit=50)
    healthy = sim.connect(thread, "ulxd")
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect(thread.address("ulxd"))
    try:
        stuck.sendall(b"< GET 0 ALL >" * 200)  # ~800 KB of answers it will never read
        deadline = time.monotonic() + 5
        while thread.snapshot("ulxd")["stats"]["dropped_clients"] == 0:
            assert time.monotonic() < deadline, "the stuck client was never dropped"
            time.sleep(0.02)
        healthy.send("GET 1 CHAN_NAME")
        healthy.read_frame("< REP 1 CHAN_NAME {Lead Vox} >")
        assert thread.snapshot("ulxd")["clients"] == 1
    finally:
        stuck.close()


def test_metering_is_device_state_and_zero_stops_it(sim):
    thread = sim("ulxd")
    watcher = sim.connect(thread, "ulxd")
    setter = sim.connect(thread, "ulxd")
    setter.send("SET 0 METER_RATE 00100")
    setter.read_frame("< REP 4 METER_RATE 00100 >")
    setter.close()
    watcher.read_frame("< REP 4 METER_RATE 00100 >")
    deadline = time.monotonic() + 2
    while thread.snapshot("ulxd")["clients"] != 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    watcher.collect(0.05)
    samples = [f for f in watcher.collect(0.45) if f.startswith("< SAMPLE")]
    assert {ULX_SAMPLE.match(f)[1] for f in samples} == {"1", "2", "3", "4"}
    assert len(samples) >= 8
    snap = thread.snapshot("ulxd")
    assert snap["clients"] == 1 and [ch["meter_rate"] for ch in snap["channels"]] == [100] * 4
    watcher.send("SET 0 METER_RATE 0")
    watcher.read_frame("< REP 4 METER_RATE 00000 >")
    assert not [f for f in watcher.collect(0.35) if f.startswith("< SAMPLE")]


def test_pack_off_and_on_ulxd_reports_to_every_client(sim):
    thread = sim("ulxd")
    a, b = sim.connect(thread, "ulxd"), sim.connect(thread, "ulxd")
    a.send("SET 2 METER_RATE 100")
    b.read_frame("< REP 2 METER_RATE 00100 >")
    thread.pack_off("ulxd", 2)
    sentinels = {
        "< REP 2 TX_TYPE UNKN >",
        "< REP 2 BATT_BARS 255 >",
        "< REP 2 BATT_CHARGE 255 >",
        "< REP 2 BATT_RUN_TIME 65535 >",
        "< REP 2 BATT_TYPE UNKN >",
        "< REP 2 TX_OFFSET 255 >",
    }
    for client in (a, b):
        client.read_all_of(sentinels, timeout=1.0)
    sample = b.read_until(lambda f: f.startswith("< SAMPLE 2"))[-1]
    _, antenna, rf, audio = ULX_SAMPLE.match(sample).groups()
    assert antenna == "XX" and int(rf) <= 23 and audio == "000"
    assert thread.snapshot("ulxd")["channels"][1]["tx_on"] is False
    thread.pack_on("ulxd", 2)
    on = {"< REP 2 TX_TYPE ULXD2 >", "< REP 2 BATT_BARS 004 >", "< REP 2 BATT_RUN_TIME 00340 >"}
    frames = a.read_all_of(on, timeout=1.0)
    assert frames.index("< REP 2 TX_TYPE ULXD2 >") < frames.index("< REP 2 BATT_RUN_TIME 00340 >")
    b.read_all_of(on, timeout=1.0)
    assert ULX_SAMPLE.match(b.read_until(lambda f: f.startswith("< SAMPLE 2"))[-1])[2] == "AX"


def test_pack_off_axient_and_slxd_sentinels(sim):
    thread = sim("ad", "slxd")
    ad, slx = sim.connect(thread, "ad"), sim.connect(thread, "slxd")
    ad.send("SET 3 METER_RATE 100")
    ad.read_frame("< REP 3 METER_RATE 00100 >")
    thread.pack_off("ad", 3)
    ad.read_all_of(
        {
            "< REP 3 TX_MODEL UNKNOWN >",
            "< REP 3 TX_BATT_BARS 255 >",
            "< REP 3 TX_BATT_CHARGE_PERCENT 255 >",
            "< REP 3 TX_BATT_MINS 65535 >",
            "< REP 3 TX_BATT_TYPE UNKN >",
            "< REP 3 CHAN_QUALITY 255 >",
        }
    )
    assert (
        ad.read_until(lambda f: f.startswith("< SAMPLE 3"))[-1] == "< SAMPLE 3 ALL 255 000 005 025 XX 00 011 00 012 >"
    )
    thread.pack_off("slxd", 1)
    slx.read_all_of({"< REP 1 TX_MODEL UNKNOWN >", "< REP 1 TX_BATT_BARS 255 >", "< REP 1 TX_BATT_MINS 65535 >"})
    with pytest.raises(SimulatorError):
        thread.pack_off("slxd", 3)


def test_runtime_reports_calculating_before_minutes(sim):
    thread = sim("ulxd", calculating_seconds=0.4)
    c = sim.connect(thread, "ulxd")
    thread.pack_off("ulxd", 1)
    c.read_frame("< REP 1 TX_TYPE UNKN >")
    thread.pack_on("ulxd", 1)
    frames = c.read_frame("< REP 1 BATT_RUN_TIME 00460 >", timeout=1.5)
    assert "< REP 1 BATT_RUN_TIME 65534 >" in frames
    assert frames.index("< REP 1 TX_TYPE ULXD2 >") < frames.index("< REP 1 BATT_RUN_TIME 65534 >")


def test_battery_and_front_panel_rename_are_unsolicited(sim):
    thread = sim("ulxd")
    c = sim.connect(thread, "ulxd")
    thread.set_battery("ulxd", 1, 15)
    c.read_all_of({"< REP 1 BATT_BARS 001 >", "< REP 1 BATT_CHARGE 015 >", "< REP 1 BATT_RUN_TIME 00072 >"})
    thread.set_name("ulxd", 3, "Keys")
    c.read_frame("< REP 3 CHAN_NAME {Keys    } >")
    thread.set_battery("ulxd", 1, 0)
    c.read_frame("< REP 1 TX_TYPE UNKN >")
    snap = thread.snapshot("ulxd")["channels"]
    assert snap[0]["tx_on"] is False and snap[2]["name"] == "Keys"
    with pytest.raises(SimulatorError):
        thread.set_name("ulxd", 1, "{bad}")
    with pytest.raises(SimulatorError):
        thread.set_battery("ulxd", 1, 101)


def test_peak_shows_a_clip_then_recovers(sim):
    thread = sim("ulxd")
    c = sim.connect(thread, "ulxd")
    c.send("SET 1 METER_RATE 100")
    c.read_until(lambda f: f.startswith("< SAMPLE 1"))
    thread.peak("ulxd", 1)
    frames = c.read_frame("< SAMPLE 1 ALL AX 078 050 >", timeout=1.0)
    assert frames
    c.read_frame("< SAMPLE 1 ALL AX 078 036 >", timeout=1.0)


# ---------------------------------------------------------------- faults


def test_override_reports_a_raw_value_to_every_client_until_restored(sim):
    thread = sim("ad")
    c = sim.connect(thread, "ad")
    thread.override("ad", "FW_VER", "{" + "9" * 40 + "}")
    c.read_frame("< REP FW_VER {" + "9" * 40 + "} >")  # unsolicited, like a real change
    thread.override("ad", "TX_BATT_BARS", "255", channel=2)
    c.read_frame("< REP 2 TX_BATT_BARS 255 >")
    frames = _get_all(c, 4, "METER_RATE") + c.collect(0.3)
    assert "< REP 2 TX_BATT_BARS 255 >" in frames and "< REP 2 TX_MODEL ADX1 >" in frames
    assert thread.snapshot("ad")["overrides"] == [
        {"channel": 0, "prop": "FW_VER", "value": "{" + "9" * 40 + "}"},
        {"channel": 2, "prop": "TX_BATT_BARS", "value": "255"},
    ]
    thread.override("ad", "TX_BATT_BARS", None, channel=2)
    c.read_frame("< REP 2 TX_BATT_BARS 004 >")
    with pytest.raises(SimulatorError, match="does not report"):
        thread.override("ad", "TX_TYPE", "X", channel=1)  # ULX-D's name: an AD never sends it
    with pytest.raises(SimulatorError):
        thread.override("ad", "FW_VER", "{a > b}")


def test_fault_refuse_then_recover(sim):
    thread = sim("ulxd")
    existing = sim.connect(thread, "ulxd")
    thread.set_fault("ulxd", "refuse")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(thread.address("ulxd"), timeout=1.0)
    existing.collect(0.5)
    assert existing.eof, "a refusing unit kept an open connection"
    thread.set_fault("ulxd", None)
    fresh = sim.connect(thread, "ulxd")
    fresh.send("GET DEVICE_ID")
    fresh.read_frame("< REP DEVICE_ID {ULXBAND } >")


@pytest.mark.parametrize("kind", ["silent", "third_party_disabled"])
def test_fault_silent_accepts_and_says_nothing(sim, kind):
    thread = sim("slxd")
    thread.set_fault("slxd", kind)
    c = sim.connect(thread, "slxd")
    c.send("GET DEVICE_ID", "SET 1 METER_RATE 100", "GET 1 BOGUS")
    assert c.collect(0.4) == [] and not c.eof and c.raw == b""
    assert thread.snapshot("slxd")["channels"][0]["meter_rate"] == 0, "input is ignored"
    thread.set_fault("slxd", "none")
    c.send("GET DEVICE_ID")
    c.read_frame("< REP DEVICE_ID {SLXLECT } >")


def test_fault_stop_answering_silences_existing_and_new_connections(sim):
    thread = sim("ulxd")
    c = sim.connect(thread, "ulxd")
    c.send("SET 0 METER_RATE 100")
    c.read_until(lambda f: f.startswith("< SAMPLE"))
    thread.set_fault("ulxd", "stop_answering")
    c.collect(0.1)
    assert c.collect(0.4) == [] and not c.eof
    late = sim.connect(thread, "ulxd")
    late.send("GET DEVICE_ID")
    assert late.collect(0.3) == [] and not late.eof


def test_fault_drop_mid_frame(sim):
    thread = sim("ulxd")
    c = sim.connect(thread, "ulxd")
    c.send("SET 1 METER_RATE 100")
    c.read_until(lambda f: f.startswith("< SAMPLE"))
    thread.set_fault("ulxd", "drop_mid_frame")
    c.collect(1.0)
    assert c.eof, "the connection was closed"
    assert c.text.startswith("<") and ">" not in c.text and len(c.text) > 2, f"half a frame: {c.text!r}"


def test_fault_garbage_interleaves_junk_with_real_frames(sim):
    thread = sim("ulxd")
    c = sim.connect(thread, "ulxd")
    thread.set_fault("ulxd", "garbage")
    c.send("SET 0 METER_RATE 100")
    frames = c.collect(1.2)
    samples = [f for f in frames if ULX_SAMPLE.match(f)]
    assert len(samples) >= 20
    residue = re.sub(r"< (REP|SAMPLE) [^<>]* >", "", c.raw.decode("latin-1"))
    assert residue.strip(), "some bytes were not protocol frames"
    assert thread.snapshot("ulxd")["stats"]["garbage_writes"] > 0


def test_power_off_closes_everything_and_power_on_resets_metering(sim):
    thread = sim("ad")
    c = sim.connect(thread, "ad")
    c.send("SET 0 METER_RATE 100")
    c.read_until(lambda f: f.startswith("< SAMPLE"))
    thread.power_off("ad")
    c.collect(0.5)
    assert c.eof
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(thread.address("ad"), timeout=1.0)
    assert thread.snapshot("ad")["powered"] is False
    thread.power_on("ad")
    fresh = sim.connect(thread, "ad")
    fresh.send("GET 1 METER_RATE")
    fresh.read_frame("< REP 1 METER_RATE 00000 >")


def test_chaos_splits_and_coalesces_but_frames_reassemble(sim):
    thread = sim("ulxd", chaos=True)
    c = sim.connect(thread, "ulxd")
    for _ in range(8):
        c.send("GET 0 ALL")
    frames = []
    for _ in range(8):
        frames += c.read_until(lambda f: f.startswith("< REP 4 AUDIO_LVL "))
    counts = Counter(frames)
    assert set(counts.values()) == {8}, "every frame of each ALL arrived intact"
    assert all(re.fullmatch(r"< REP (\d )?[A-Z_]+ [^<>]+ >", f) for f in counts)
    stats = thread.snapshot("ulxd")["stats"]
    assert stats["split_writes"] > 0 and stats["coalesced_writes"] > 0


# ---------------------------------------------------------------- dynamics


def test_dynamics_vary_within_ranges_and_batteries_drain(sim):
    thread = sim("ulxd", dynamics=True, speed=600, pack_events_per_hour=0)
    c = sim.connect(thread, "ulxd")
    c.send("SET 0 METER_RATE 100")
    frames = c.collect(1.3)
    samples = [ULX_SAMPLE.match(f) for f in frames if f.startswith("< SAMPLE")]
    assert len(samples) >= 30 and all(samples)
    rf = [int(m[3]) for m in samples]
    audio = [int(m[4]) for m in samples]
    assert all(28 <= v <= 93 for v in rf), rf
    assert all(0 <= v <= 50 for v in audio) and len(set(audio)) > 3
    runtimes = [int(f.split()[4]) for f in frames if f.startswith("< REP 1 BATT_RUN_TIME")]
    assert len(runtimes) >= 2 and runtimes == sorted(runtimes, reverse=True) and runtimes[-1] < 460
    assert thread.snapshot("ulxd")["channels"][0]["battery_percent"] < 96


def test_dynamics_random_pack_events_switch_packs_off_and_on(sim):
    thread = sim("qlxd", dynamics=True, speed=100, pack_events_per_hour=36000)
    c = sim.connect(thread, "qlxd")
    c.read_frame("< REP 1 TX_TYPE UNKN >", timeout=1.5)
    c.read_frame("< REP 1 TX_TYPE QLXD2 >", timeout=2.5)


def test_seed_makes_parameters_reproducible():
    rig = rig_device("ad")
    one, two, other = (SimulatedShureDevice(rig, port=0, seed=s) for s in (11, 11, 12))
    assert [c.rf_base for c in one.channels] == [c.rf_base for c in two.channels]
    assert [c.rf_base for c in one.channels] != [c.rf_base for c in other.channels]


# ---------------------------------------------------------------- control server and commands


def _control(address, request) -> dict:
    with socket.create_connection(address, timeout=2.0) as sock:
        sock.sendall((request if isinstance(request, str) else json.dumps(request)).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            data += sock.recv(65536)
    return json.loads(data)


def test_control_server_json_round_trip(sim):
    thread = sim("ulxd", control=True)
    address = thread.control_address
    c = sim.connect(thread, "ulxd")
    reply = _control(address, {"device": "ulxd", "action": "pack_off", "channel": 2})
    assert reply["ok"] is True and reply["result"]["channels"][1]["tx_on"] is False
    c.read_frame("< REP 2 TX_TYPE UNKN >")
    listing = _control(address, {"action": "list"})
    assert listing["ok"] and [d["key"] for d in listing["result"]] == ["ulxd"]
    assert _control(address, {"device": "ulxd", "action": "name", "channel": 1, "name": "Lead Vox"})["ok"]
    for bad in (
        {"device": "nope", "action": "pack_off", "channel": 1},
        {"device": "ulxd", "action": "battery", "channel": 1, "percent": 150},
        {"device": "ulxd", "action": "explode"},
        {"device": "ulxd", "action": "pack_off"},
        "this is not json",
    ):
        reply = _control(address, bad)
        assert reply["ok"] is False and reply["error"]


def test_simctl_talks_to_the_control_server(sim):
    thread = sim("ulxd", control=True)
    _, port = thread.control_address
    out = StringIO()
    call_command("simctl", "battery", "ulxd", "2", "15", control_port=port, stdout=out)
    assert "ok: battery ulxd 2 15" in out.getvalue()
    assert thread.snapshot("ulxd")["channels"][1]["battery_percent"] == 15
    call_command("simctl", "fault", "ulxd", "silent", control_port=port, stdout=StringIO())
    assert thread.snapshot("ulxd")["fault"] == "silent"
    with pytest.raises(CommandError, match="channels 1-4"):
        call_command("simctl", "pack-off", "ulxd", "9", control_port=port, stdout=StringIO())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    with pytest.raises(CommandError, match="not running"):
        call_command("simctl", "list", control_port=free_port, stdout=StringIO())


def test_simulate_command_runs_until_sigterm_and_reports_bind_errors():
    cmd = [sys.executable, "manage.py", "simulate", "--ephemeral", "--only", "qlxd", "--no-chaos"]
    proc = subprocess.Popen([*cmd, "--control-port", "0"], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        lines = []
        while not lines or "running" not in lines[-1]:
            line = proc.stdout.readline()
            assert line, f"simulate exited early: {lines}"
            lines.append(line.strip())
        device_line = next(line for line in lines if line.startswith("qlxd"))
        host, port = device_line.split()[-1].rsplit(":", 1)
        assert "QLXD4" in device_line and any(line.startswith("control 127.0.0.1:") for line in lines)
        client = Client((host, int(port)))
        client.send("GET DEVICE_ID")
        client.read_frame("< REP DEVICE_ID {QLXSPARE} >")
        client.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert "simulator stopped" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        result = subprocess.run(
            [*cmd, "--control-port", str(taken)], cwd=REPO, capture_output=True, text=True, timeout=30
        )
    assert result.returncode != 0
    assert f"127.0.0.1:{taken}" in result.stderr
