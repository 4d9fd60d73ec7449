"""Shure UHF-R: the parser on protocols.md §2's example frames, then the driver against the simulator over UDP."""

from __future__ import annotations

import asyncio
import selectors
import socket
import threading
import time

import pytest

from micboard.drivers import uhfr_spec as spec
from micboard.drivers.base import RUNTIME_CALCULATING
from micboard.drivers.uhfr import UhfrLink, UhfrState, parse_message, parse_sample, poll, split_datagram
from micboard.exceptions import (
    ConnectionTimeoutError,
    DeviceSilentError,
    DriverError,
    LinkDroppedError,
    ProtocolError,
)
from micboard.models import Channel
from micboard.simulators import uhfr as uhfr_sim
from micboard.simulators.engine import SimulatorThread
from micboard.simulators.rig import rig_device
from micboard.status import ChannelStatus as S
from tasks.polling import run_poll_cycle
from tests.factories import receivers_for, start_simulator, use_fast_polls, wait_for

# --------------------------------------------------------------------------------------------------------
# Parser units (protocols.md §2 example frames)
# --------------------------------------------------------------------------------------------------------


def state_after(*datagrams: bytes, channels: int = 2) -> UhfrState:
    state = UhfrState(channels)
    for datagram in datagrams:
        messages, _broken = split_datagram(datagram)
        for body in messages:
            state.apply(parse_message(body))
    return state


def channel(state: UhfrState, number: int = 1):
    return state.reading().channels[number]


def test_chan_name_report_turns_underscores_into_spaces():
    assert channel(state_after(b"* REPORT 1 CHAN_NAME LEAD_VOX *")).name == "LEAD VOX"


def test_sample_example_reads_antenna_rf_battery_and_audio():
    ch = channel(state_after(b"* SAMPLE 1 ALL XB 082 097 4 015 *"))
    assert ch.antennas == "IA"  # XB: antenna B in use
    assert ch.rf_dbm == -82.0  # the stronger antenna; fields read as -dBm
    assert ch.rf_antenna_percents == (30, 5)  # -82 dBm and -97 dBm on the -100...-40 dBm window
    assert ch.rf_percent == 30
    assert ch.battery_bars == 4 and ch.tx_present is True
    assert ch.audio_percent == 50  # 015: four of the eight LEDs lit
    assert ch.audio_dbfs is None  # the bitmap has no known dB scale
    assert ch.audio_peak is False and ch.metered is True


def test_sample_field_is_positional_with_every_antenna_code():
    codes = {
        code: channel(state_after(f"* SAMPLE 1 ALL {code} 050 060 5 001 *".encode())).antennas
        for code in spec.ANTENNA_CODES
    }
    assert codes == {"AX": "AI", "XB": "IA", "AB": "AA", "XX": "XX"}


def test_silence_is_an_empty_meter_and_the_peak_led_is_a_peak():
    assert channel(state_after(b"* SAMPLE 1 ALL AX 050 060 5 000 *")).audio_percent == 0
    loud = channel(state_after(b"* SAMPLE 1 ALL AX 050 060 5 255 *"))
    assert loud.audio_percent == 100 and loud.audio_peak is True
    assert channel(state_after(b"* SAMPLE 1 ALL AX 050 060 5 127 *")).audio_peak is False


def test_a_peak_between_two_readings_is_shown_once():
    state = state_after(b"* SAMPLE 1 ALL AX 050 060 5 255 *", b"* SAMPLE 1 ALL AX 050 060 5 007 *")
    assert state.reading().channels[1].audio_peak is True
    assert state.reading().channels[1].audio_peak is False


def test_frequency_and_group_channel():
    ch = channel(state_after(b"* REPORT 1 FREQUENCY 578000 *", b"* REPORT 1 GROUP_CHAN 01 05 *"))
    assert ch.frequency_khz == 578000 and ch.group_channel == "01,05"
    none = channel(state_after(b"* REPORT 1 GROUP_CHAN -- -- *", b"* REPORT 1 FREQUENCY 000000 *"))
    assert none.group_channel is None and none.frequency_khz is None


@pytest.mark.parametrize("bars", ["1", "2", "3", "4", "5"])
def test_tx_bat_bars(bars):
    ch = channel(state_after(f"* REPORT 1 TX_BAT {bars} *".encode(), b"* REPORT 1 TX_TYPE UR2 *"))
    assert ch.battery_bars == int(bars) and ch.tx_present is True and ch.tx_model == "UR2"
    assert ch.battery_percent is None  # bars are never passed off as a percentage


def test_transmitter_off_reads_as_absent_with_every_sentinel_unknown():
    ch = channel(
        state_after(
            b"* REPORT 1 TX_TYPE UR1 *",  # reported while the pack was on
            b"* REPORT 1 TX_BAT U *",
            b"* REPORT 1 TX_BAT_MINS UNKNOWN *",
            b"* REPORT 1 TX_BAT_TYPE UNKNOWN *",
            b"* SAMPLE 1 ALL XX 108 110 U 000 *",
        )
    )
    assert ch.tx_present is False
    assert (ch.tx_model, ch.battery_bars, ch.battery_runtime_min, ch.battery_type) == (None, None, None, None)
    assert ch.antennas == "XX" and ch.rf_percent == 0 and ch.audio_percent == 0


def test_sample_battery_switches_the_pack_off_and_on_between_reports():
    state = state_after(b"* REPORT 1 TX_BAT 5 *", b"* SAMPLE 1 ALL XX 108 110 U 000 *")
    assert state.reading().channels[1].tx_present is False
    state.apply(parse_message("SAMPLE 1 ALL AX 048 061 3 015"))
    assert state.reading().channels[1].battery_bars == 3


def test_battery_type_runtime_and_mute():
    ch = channel(
        state_after(
            b"* REPORT 1 TX_BAT 4 *",
            b"* REPORT 1 TX_BAT_TYPE ALKALINE *",
            b"* REPORT 1 TX_BAT_MINS 00312 *",
            b"* REPORT 1 MUTE ON *",
        )
    )
    assert (ch.battery_type, ch.battery_runtime_min, ch.audio_muted) == ("ALKA", 312, True)
    calculating = channel(state_after(b"* REPORT 1 TX_BAT 4 *", b"* REPORT 1 TX_BAT_MINS 65534 *"))
    assert calculating.battery_runtime_min is None and calculating.battery_runtime_state == RUNTIME_CALCULATING


def test_several_messages_in_one_datagram_are_all_read():
    state = state_after(b"* REPORT 1 CHAN_NAME A *  * REPORT 2 CHAN_NAME B *")
    assert [c.name for c in state.reading().channels.values()] == ["A", "B"]


def test_junk_and_a_cut_message_are_counted_not_read():
    assert split_datagram(b"\x00\xff* REPORT 1 TX_BAT 4 *") == (["REPORT 1 TX_BAT 4"], 1)
    assert split_datagram(b"* REPORT 1 CHAN_NAME LEA") == ([], 1)
    assert split_datagram(b"x" * 5000) == ([], 1)  # only the first MAX_DATAGRAM bytes are looked at


@pytest.mark.parametrize(
    "body",
    [
        "REP 1 CHAN_NAME X",  # UHF-R answers REPORT, never REP
        "GET 1 CHAN_NAME",
        "REPORT 1",
        "SAMPLE 1 XB 082 097 4 015",  # ALL missing
        "SAMPLE X ALL XB 082 097 4 015",
    ],
)
def test_malformed_messages_raise_protocol_error(body):
    with pytest.raises(ProtocolError):
        parse_message(body)


@pytest.mark.parametrize(
    "fields",
    [
        ("XB", "082", "097", "4"),  # a field short
        ("XB082", "097", "4", "015"),  # no spaces between fields (an emulator's mistake, §7.8)
        ("BA", "082", "097", "4", "015"),
        ("XB", "-82", "097", "4", "015"),
        ("XB", "082", "097", "7", "015"),
        ("XB", "082", "097", "4", "300"),
    ],
)
def test_malformed_samples_raise_and_leave_the_state_unchanged(fields):
    with pytest.raises(ProtocolError):
        parse_sample(fields)
    state = state_after(b"* SAMPLE 1 ALL AX 050 060 5 015 *")
    with pytest.raises(ProtocolError):
        state.apply(parse_message("SAMPLE 1 ALL " + " ".join(fields)))
    assert channel(state).rf_dbm == -50.0 and channel(state).battery_bars == 5


def test_channels_the_model_lacks_are_ignored():
    state = state_after(b"* REPORT 2 CHAN_NAME B *", channels=1)
    assert list(state.reading().channels) == [1] and state.ignored == 1


def test_meter_rate_is_sent_in_units_of_30_ms():
    assert spec.meter_units(100) == 3  # "* METER 1 ALL 003 *"
    assert spec.meter_units(250) == 8
    assert spec.meter_units(10) == 1 and spec.meter_units(10**6) == 999


# --------------------------------------------------------------------------------------------------------
# The driver against the simulator over loopback UDP
# --------------------------------------------------------------------------------------------------------

RIG = rig_device("uhfr")  # UR4D: "Choir L" (UR1, alkaline, 64 %), "Guest HH" (UR2, rechargeable, 81 %)


@pytest.fixture
def sim():
    """The demo rig's UHF-R on an ephemeral loopback port; values frozen so they can be asserted."""
    device = uhfr_sim.SimulatedUhfrDevice(RIG, host="127.0.0.1", port=0, dynamics=False, calculating_seconds=0)
    thread = SimulatorThread([device]).start()
    yield thread
    thread.stop()


def read(sim, *, timeout: float = 1.0, meter_rate_ms: int = 100):
    host, port = sim.address("uhfr")
    return asyncio.run(poll(host, port, model="UR4D", timeout=timeout, meter_rate_ms=meter_rate_ms))


def failure(sim, *, timeout: float = 0.6) -> tuple[DriverError, float]:
    started = time.monotonic()
    with pytest.raises(DriverError) as caught:
        read(sim, timeout=timeout)
    return caught.value, time.monotonic() - started


def test_poll_reads_every_reading_kind_and_stops_metering(sim):
    reading = read(sim)
    assert reading.family == "uhfr" and reading.latency_ms is not None
    # The unit's MAC (asked, never waited for) is its identity: discovery knows it again at a new address.
    assert (reading.model, reading.device_id) == ("UR4D", sim.device("uhfr").mac_address)
    choir, guest = reading.channels[1], reading.channels[2]
    assert (choir.name, guest.name) == ("Choir L", "Guest HH")  # sent as Choir_L, Guest_HH
    assert (choir.frequency_khz, guest.frequency_khz) == (584250, 586125)
    assert choir.group_channel is None  # a custom frequency: "-- --"
    assert (choir.tx_present, choir.tx_model, choir.battery_bars, choir.battery_type) == (True, "UR1", 4, "ALKA")
    assert choir.battery_runtime_min is None  # AA packs report no runtime
    assert (guest.tx_model, guest.battery_bars, guest.battery_runtime_min) == ("UR2", 5, 388)  # 81 % of 8 h
    assert choir.audio_muted is False
    assert choir.metered and choir.antennas == "AI"  # AX: antenna A in use
    assert (choir.rf_dbm, choir.rf_percent, choir.rf_antenna_percents) == (-50.0, 83, (83, 77))
    assert choir.audio_percent == 63 and choir.audio_peak is False  # five LEDs of eight
    wait_for(lambda: sim.snapshot("uhfr")["clients"] == 0, 2, "see METER ... STOP from the poll")


def test_transmitter_off_reads_absent_and_unknown(sim):
    sim.pack_off("uhfr", 1)
    choir = read(sim).channels[1]
    assert choir.tx_present is False
    assert (choir.tx_model, choir.battery_bars, choir.battery_runtime_min, choir.battery_type) == (None,) * 4
    assert (choir.antennas, choir.rf_percent, choir.audio_percent) == ("XX", 0, 0)
    assert read(sim).channels[2].tx_present is True


def test_front_panel_name_and_a_peak_are_read(sim):
    sim.set_name("uhfr", 2, "Lead Vox 2")
    sim.peak("uhfr", 2)
    guest = read(sim).channels[2]
    assert guest.name == "Lead Vox 2" and guest.audio_peak is True and guest.audio_percent == 100


@pytest.mark.parametrize(
    ("fault", "error", "words", "within"),
    [
        ("refuse", ConnectionTimeoutError, "nothing answers", 0.3),  # ICMP port unreachable: at once
        ("silent", ConnectionTimeoutError, "network settings", 1.0),
        ("stop_answering", ConnectionTimeoutError, "network settings", 1.0),
        ("drop_mid_frame", ProtocolError, "no complete UHF-R message", 1.0),
    ],
)
def test_each_fault_fails_the_poll_with_what_to_check_and_it_recovers(sim, fault, error, words, within):
    sim.set_fault("uhfr", fault)
    exc, took = failure(sim)
    assert type(exc) is error and words in str(exc) and took < within, (exc, took)
    sim.set_fault("uhfr", None)
    assert read(sim).channels[1].name == "Choir L"


def test_garbage_between_datagrams_does_not_lose_the_reading(sim):
    sim.set_fault("uhfr", "garbage")
    for _ in range(3):
        assert [c.name for c in read(sim).channels.values()] == ["Choir L", "Guest HH"]
    assert sim.snapshot("uhfr")["stats"]["garbage"] > 0


def test_a_slow_receiver_is_read_within_the_timeout(sim):
    sim.set_fault("uhfr", "slow")  # every answer 1.5 s late
    reading = read(sim, timeout=2.5)
    assert reading.channels[2].battery_bars == 5 and reading.latency_ms >= 1400


def test_an_unknown_model_is_refused_before_sending():
    with pytest.raises(ProtocolError, match="not a UHF-R model"):
        asyncio.run(poll("127.0.0.1", 9, model="ULXD4Q", timeout=0.5))


class Relay:
    """A receiver that answers from another port (as one public poller saw [U]), while a stranger at another
    address sends an impostor REPORT to the client after each answer. Forwards between client and simulator."""

    def __init__(self, device: tuple[str, int]) -> None:
        self.device = device
        self.inbound = self._socket("127.0.0.1")  # the address the driver is given
        self.upstream = self._socket("127.0.0.1")  # talks to the simulator
        self.outbound = self._socket("127.0.0.1")  # answers the client from another port
        self.stranger = self._socket("127.0.0.2")
        self.client: tuple[str, int] | None = None
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @staticmethod
    def _socket(host: str) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((host, 0))
        return sock

    @property
    def address(self) -> tuple[str, int]:
        return self.inbound.getsockname()

    def _run(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self.inbound, selectors.EVENT_READ)
            selector.register(self.upstream, selectors.EVENT_READ)
            deadline = time.monotonic() + 30
            while not self.halt.is_set() and time.monotonic() < deadline:
                for key, _ in selector.select(0.05):
                    data, sender = key.fileobj.recvfrom(2048)
                    if key.fileobj is self.inbound:
                        self.client = sender
                        self.upstream.sendto(data, self.device)
                    elif self.client is not None:
                        self.outbound.sendto(data, self.client)
                        self.stranger.sendto(b"* REPORT 1 CHAN_NAME IMPOSTOR *", self.client)

    def close(self) -> None:
        self.halt.set()
        self.thread.join(5)
        for sock in (self.inbound, self.upstream, self.outbound, self.stranger):
            sock.close()


def test_replies_are_matched_by_address_not_by_port(sim):
    relay = Relay(sim.address("uhfr"))
    try:
        reading = asyncio.run(poll(*relay.address, model="UR4D", timeout=1.0, meter_rate_ms=100))
    finally:
        relay.close()
    assert reading.channels[1].name == "Choir L" and reading.channels[2].metered


class LinkRunner:
    """A UhfrLink run on an event loop of its own in a thread, as a link holder runs it."""

    def __init__(self, address: tuple[str, int], **kwargs) -> None:
        self.link = UhfrLink(*address, model="UR4D", timeout=1.0, **kwargs)
        self.loop = asyncio.new_event_loop()
        self.error: BaseException | None = None
        self.ended_at: float | None = None
        self.task: asyncio.Task | None = None
        self.last = None
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(),), daemon=True)
        self.thread.start()

    async def _main(self) -> None:
        self.task = asyncio.current_task()
        try:
            await self.link.run()
        except (DriverError, asyncio.CancelledError) as exc:
            self.error = exc
        finally:
            self.ended_at = time.monotonic()

    async def _take(self):
        self.last = self.link.take() or self.last
        return self.last

    def reading(self):
        """The latest reading the link gave (None before it is ready)."""
        if self.ended_at is not None:
            return self.last
        return asyncio.run_coroutine_threadsafe(self._take(), self.loop).result(2)

    def stop(self) -> None:
        if self.task is not None and self.ended_at is None:
            self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def follow(sim):
    runners: list[LinkRunner] = []

    def start(**kwargs) -> LinkRunner:
        runner = LinkRunner(sim.address("uhfr"), meter_rate_ms=100, **kwargs)
        runners.append(runner)
        wait_for(lambda: runner.link.ready or runner.ended_at, 2, "get the link ready")
        assert runner.link.ready, runner.error
        return runner

    yield start
    for runner in runners:
        runner.stop()


def test_link_follows_a_pack_switched_off_and_stops_metering_when_closed(sim, follow):
    runner = follow()
    wait_for(lambda: runner.reading() and runner.reading().channels[1].tx_present, 1, "read the pack on")
    asked = sim.snapshot("uhfr")["stats"]["datagrams_in"]
    sim.pack_off("uhfr", 1)
    wait_for(lambda: runner.reading().channels[1].tx_present is False, 1, "see the pack switched off")
    assert sim.snapshot("uhfr")["stats"]["datagrams_in"] == asked  # pushed: the link asked nothing
    runner.stop()
    assert isinstance(runner.error, asyncio.CancelledError)
    wait_for(lambda: sim.snapshot("uhfr")["clients"] == 0, 1, "see METER ... STOP from the closed link")


@pytest.mark.parametrize(
    ("fault", "error", "within"),
    [
        ("refuse", LinkDroppedError, 1.5),  # the ICMP error answers the METER sent after 1 s of quiet
        ("stop_answering", DeviceSilentError, 3.0),
        ("silent", DeviceSilentError, 3.0),
        ("drop_mid_frame", ProtocolError, 3.0),
    ],
)
def test_link_ends_on_each_fault_and_a_new_one_recovers(sim, follow, fault, error, within):
    runner = follow()
    started = time.monotonic()
    sim.set_fault("uhfr", fault)
    wait_for(lambda: runner.ended_at, within + 1, f"end the link on {fault}")
    assert isinstance(runner.error, error) and runner.ended_at - started < within, runner.error
    sim.set_fault("uhfr", None)
    assert follow().reading().channels[2].name == "Guest HH"


def test_link_lives_through_garbage_and_a_slow_receiver(sim, follow):
    runner = follow()
    sim.set_fault("uhfr", "garbage")
    seen = sim.snapshot("uhfr")["stats"]["datagrams_out"]
    wait_for(lambda: sim.snapshot("uhfr")["stats"]["datagrams_out"] > seen + 20, 2, "send through the garbage")
    sim.set_fault("uhfr", "slow")  # SAMPLEs keep flowing; only answers are late
    sim.set_name("uhfr", 1, "Alto")
    wait_for(lambda: runner.reading().channels[1].name == "Alto", 2, "see the new name")
    assert runner.ended_at is None


def test_link_meters_again_when_the_receiver_forgot_it(sim, follow, monkeypatch):
    runner = follow()
    monkeypatch.setattr(uhfr_sim, "FOLLOW_SECONDS", 0.3)  # the receiver forgets senders it has not heard
    sessions = sim.snapshot("uhfr")["stats"]["connections"]
    wait_for(lambda: sim.snapshot("uhfr")["stats"]["connections"] > sessions, 3, "see the link meter again")
    assert runner.ended_at is None and runner.reading().channels[1].metered


@pytest.mark.django_db
def test_the_poll_cycle_puts_uhfr_packs_on_the_board(settings):
    use_fast_polls(settings)
    sim = start_simulator(["uhfr"])
    try:
        receiver = receivers_for(sim, ["uhfr"])["uhfr"]
        first = run_poll_cycle()
        sim.pack_off("uhfr", 1)
        run_poll_cycle()
    finally:
        sim.stop()
    assert first.failed == 0
    choir, guest = Channel.objects.filter(receiver=receiver).select_related("transmitter").order_by("number")
    assert (guest.name, guest.status) == ("Guest HH", S.GOOD)
    pack = guest.transmitter
    assert (pack.model, pack.battery_bars, pack.battery_percent, pack.runtime_minutes) == ("UR2", 5, None, 388)
    assert pack.rf_antennas == "83,77" and pack.antennas == "AI" and pack.audio_percent == 63
    assert (choir.name, choir.status) == ("Choir L", S.PREV_GOOD)  # switched off: its last 4 bars kept


# --------------------------------------------------------------------------------------------------------
# The simulator's wire, seen by plain UDP sockets
# --------------------------------------------------------------------------------------------------------


class Client:
    """A bare UDP client of the simulator: sends commands, keeps every datagram it receives."""

    def __init__(self, sim) -> None:
        self.device = sim.address("uhfr")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.received: list[bytes] = []

    def send(self, text: str) -> None:
        self.sock.sendto(f"* {text} *".encode(), self.device)

    def collect(self, seconds: float) -> list[bytes]:
        """Every datagram arriving within ``seconds``."""
        got: list[bytes] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                got.append(self.sock.recv(2048))
            except TimeoutError:
                break
        self.received += got
        return got

    def until(self, expected: bytes, seconds: float = 1.0) -> list[bytes]:
        """Datagrams up to and including the first one holding ``expected`` (AssertionError if none comes)."""
        got: list[bytes] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                got.append(self.sock.recv(2048))
            except TimeoutError:
                break
            if expected in got[-1]:
                return got
        raise AssertionError(f"no {expected!r} within {seconds} s; got {got[-5:]!r}")


@pytest.fixture
def client(sim):
    clients: list[Client] = []

    def make() -> Client:
        clients.append(Client(sim))
        return clients[-1]

    yield make
    for c in clients:
        c.sock.close()


def test_get_is_answered_with_one_report_per_datagram(client):
    c = client()
    c.send("GET 1 CHAN_NAME")
    c.send("GET 2 GROUP_CHAN")
    c.send("GET 1 TX_BAT")
    answers = [b"* REPORT 1 CHAN_NAME Choir_L *", b"* REPORT 2 GROUP_CHAN -- -- *", b"* REPORT 1 TX_BAT 4 *"]
    assert sorted(c.collect(0.3)) == sorted(answers)  # chaos may reorder datagrams


def test_unknown_properties_channel_0_and_missing_channels_get_no_answer(client):
    c = client()
    for text in ("GET 0 CHAN_NAME", "GET 3 CHAN_NAME", "GET 1 BATT_BARS", "GET CHAN_NAME", "HELLO"):
        c.send(text)
    c.send("GET 2 TX_TYPE")
    assert c.collect(0.3) == [b"* REPORT 2 TX_TYPE UR2 *"]  # only the valid question was answered


def test_meter_is_per_sender_at_its_rate_until_stop(client):
    metering, bystander = client(), client()
    metering.send("METER 1 ALL 003")  # ~90 ms
    samples = metering.collect(1.0)
    assert 8 <= len(samples) <= 13, len(samples)
    assert all(s.startswith(b"* SAMPLE 1 ALL AX ") and len(s.split()) == 10 for s in samples), samples[:2]
    assert bystander.collect(0.2) == []  # METER state is per sender
    metering.send("METER 1 ALL STOP")
    metering.collect(0.1)  # SAMPLEs already on their way
    assert metering.collect(0.3) == []


def test_a_change_reaches_every_metering_sender_unasked(sim, client):
    metering, bystander = client(), client()
    metering.send("METER 2 ALL 010")
    metering.until(b"SAMPLE 2 ALL")
    sim.pack_off("uhfr", 1)
    got = metering.until(b"REPORT 1 TX_BAT U")
    assert b"* REPORT 1 TX_TYPE UNKNOWN *" in got + metering.until(b"TX_TYPE")
    assert not [d for d in bystander.collect(0.2) if b"REPORT" in d]


def test_set_answers_the_setter_and_reaches_followers(client):
    setter, follower = client(), client()
    follower.send("METER 1 ALL 010")
    follower.until(b"SAMPLE 1 ALL")
    setter.send("SET 1 CHAN_NAME ALTO_1")
    assert setter.until(b"REPORT 1 CHAN_NAME")[-1] == b"* REPORT 1 CHAN_NAME ALTO_1 *"
    follower.until(b"* REPORT 1 CHAN_NAME ALTO_1 *")
    setter.send("SET 1 CHAN_NAME THIS_NAME_IS_TOO_LONG")
    setter.send("SET 1 MUTE ON")
    assert setter.until(b"MUTE")[-1] == b"* REPORT 1 MUTE ON *"


def test_a_sender_that_vanished_without_stop_is_forgotten(sim, client, monkeypatch):
    monkeypatch.setattr(uhfr_sim, "FOLLOW_SECONDS", 0.3)
    c = client()
    c.send("METER 1 ALL 003")
    c.until(b"SAMPLE")
    wait_for(lambda: sim.snapshot("uhfr")["clients"] == 0, 2, "forget the silent sender")
    c.collect(0.1)
    assert c.collect(0.3) == []
