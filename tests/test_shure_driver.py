"""poll() over real loopback TCP against small scripted Shure devices (no DB, no mocks)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from micboard.drivers.shure import enable_keepalive, poll
from micboard.exceptions import ConnectionTimeoutError, DeviceSilentError, DriverError, ProtocolError

Script = Callable[["FakeDevice", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
COMMAND_RE = re.compile(rb"<([^<>]*)>")


class FakeDevice:
    """A scripted receiver on 127.0.0.1:<ephemeral port> that records what the client sends."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.raw = b""
        self.received: list[str] = []
        self.client_closed = False
        self.write_failed = False  # the client went away while the script was still writing
        self.finished = asyncio.Event()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._tasks.add(asyncio.current_task())
        try:
            await self.script(self, reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            self.write_failed = True
        finally:
            writer.close()
            self.finished.set()

    async def commands(self, reader: asyncio.StreamReader) -> AsyncIterator[str]:
        """Yield each ``< ... >`` command the client sends, until it closes."""
        buffer = b""
        while True:
            data = await reader.read(1024)
            if not data:
                self.client_closed = True
                return
            self.raw += data
            buffer += data
            while match := COMMAND_RE.search(buffer):
                buffer = buffer[match.end() :]
                command = match[1].decode().strip()
                self.received.append(command)
                yield command


async def send(writer: asyncio.StreamWriter, text: str, chunk: int = 0) -> None:
    """Write text, optionally split into ``chunk``-byte writes with a pause between them."""
    data = text.encode("ascii")
    if not chunk:
        writer.write(data)
        await writer.drain()
        return
    for i in range(0, len(data), chunk):
        writer.write(data[i : i + chunk])
        await writer.drain()
        await asyncio.sleep(0.001)


def requested_rate(command: str) -> int | None:
    """The rate of a ``SET 0 METER_RATE n`` command, or None for other commands."""
    match = re.fullmatch(r"SET 0 METER_RATE (\d+)", command)
    return None if match is None else int(match[1])


def meter_rate_reply(rate: int, channels: int) -> str:
    """The per-channel echo of ``SET 0 METER_RATE n``."""
    return "".join(f"< REP {n} METER_RATE {rate:05d} >" for n in range(1, channels + 1))


async def run_poll(script: Script, *, model: str, timeout: float = 1.5, meter_rate_ms: int = 1000):
    """Start the device, poll it once; return (reading or DriverError, device, seconds the poll took)."""
    device = FakeDevice(script)
    await device.start()
    try:
        started = time.monotonic()
        try:
            result = await poll(
                "127.0.0.1", device.port, model=model, timeout=timeout, meter_rate_ms=meter_rate_ms
            )
        except DriverError as exc:
            result = exc
        elapsed = time.monotonic() - started
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(device.finished.wait(), 1.0)
    finally:
        await device.stop()
    return result, device, elapsed


# --------------------------------------------------------------------------------------------------------
# Devices that answer
# --------------------------------------------------------------------------------------------------------

ULXD4D_ALL = (
    "< REP DEVICE_ID {FOH Rack} >"
    "< REP FW_VER {2.4.6.0          } >"
    "< REP 1 CHAN_NAME {Lead Vox} >"
    "< REP 1 FREQUENCY 578350 >"
    "< REP 1 GROUP_CHAN {1,5} >"
    "< REP 1 METER_RATE 00000 >"
    "< REP 1 TX_TYPE ULXD2 >"
    "< REP 1 BATT_BARS 004 >"
    "< REP 1 BATT_CHARGE 085 >"
    "< REP 1 BATT_RUN_TIME 00312 >"
    "< REP 1 BATT_TYPE LION >"
    "< REP 2 CHAN_NAME {Guitar  } >"
    "< REP 2 METER_RATE 00000 >"
    "< REP 2 TX_TYPE UNKN >"
    "< REP 2 BATT_BARS 255 >"
    "< REP 2 BATT_RUN_TIME 65535 >"
    "< REP 2 FREQUENCY 000000 >"
)


async def ulxd4d_split_writes(device: FakeDevice, reader, writer) -> None:
    async for command in device.commands(reader):
        if command == "GET 0 ALL":
            await asyncio.sleep(0.1)  # the device takes a moment: shows up in latency_ms
            await send(writer, ULXD4D_ALL + "< REP ERR >", chunk=7)
        elif (rate := requested_rate(command)) is not None:
            await send(writer, meter_rate_reply(rate, 2), chunk=5)
            if rate:
                await asyncio.sleep(0.05)
                await send(writer, "< SAMPLE 1 ALL AX 092 031 >\r\n< SAMPLE 2 ALL XX 020 000 >\r\n", chunk=3)


def test_poll_reassembles_split_writes_and_reads_every_channel():
    reading, _, elapsed = asyncio.run(run_poll(ulxd4d_split_writes, model="ULXD4D"))
    assert not isinstance(reading, Exception), reading
    assert reading.family == "ulxd"
    assert reading.device_id == "FOH Rack"
    assert reading.firmware == "2.4.6.0"
    assert reading.error_replies == 1
    lead, guitar = reading.channels[1], reading.channels[2]
    assert lead.name == "Lead Vox"
    assert lead.frequency_khz == 578350
    assert lead.tx_present is True
    assert lead.battery_bars == 4
    assert lead.battery_percent == 85
    assert lead.battery_runtime_min == 312
    assert lead.antennas == "AI"
    assert lead.rf_dbm == -36.0
    assert lead.audio_dbfs == -19.0  # eee 031 - 50
    assert lead.metered is True
    assert guitar.name == "Guitar"
    assert guitar.tx_present is False
    assert guitar.battery_bars is None
    assert guitar.frequency_khz is None
    assert guitar.antennas == "XX"
    assert guitar.metered is True
    # Finished as soon as both channels metered, not at the 1.5 s deadline.
    assert elapsed < 1.0
    assert reading.latency_ms is not None and 100 <= reading.latency_ms < 1000


def test_poll_sends_get_all_then_meter_rate_then_switches_metering_off_before_closing():
    _, device, _ = asyncio.run(run_poll(ulxd4d_split_writes, model="ULXD4D"))
    assert device.raw.startswith(b"< GET 0 ALL >\r\n< SET 0 METER_RATE 01000 >\r\n")
    assert device.received == ["GET 0 ALL", "SET 0 METER_RATE 01000", "SET 0 METER_RATE 00000"]
    assert device.client_closed is True
    assert device.write_failed is False  # the client waited for the echo of METER_RATE 00000


async def already_metering_at_our_rate(device: FakeDevice, reader, writer) -> None:
    """Another client meters at 1000 ms: ALL itself reports METER_RATE 01000 and a SAMPLE slips in."""
    async for command in device.commands(reader):
        if command == "GET 0 ALL":
            await send(writer, "< REP 1 METER_RATE 01000 >< SAMPLE 1 ALL AX 050 010 >")
            await asyncio.sleep(0.4)  # longer than the driver's closing drain: must be waited for
            await send(writer, "< REP 1 CHAN_NAME {Late    } >< REP 1 TX_TYPE ULXD1 >")
        elif (rate := requested_rate(command)) is not None:
            await send(writer, meter_rate_reply(rate, 1))
            if rate:
                await asyncio.sleep(0.05)
                await send(writer, "< SAMPLE 1 ALL XB 092 031 >")


def test_poll_keeps_reading_until_its_own_meter_rate_echo():
    reading, _, _ = asyncio.run(run_poll(already_metering_at_our_rate, model="ULXD4"))
    assert not isinstance(reading, Exception), reading
    ch = reading.channels[1]
    assert ch.name == "Late"  # sent after the first (foreign) METER_RATE 01000
    assert ch.tx_model == "ULXD1"
    assert ch.antennas == "IA"  # the SAMPLE that followed our SET, not the stale one
    assert ch.rf_dbm == -36.0


async def slxd4d_channel_zero_echo(device: FakeDevice, reader, writer) -> None:
    async for command in device.commands(reader):
        if command == "GET 0 ALL":
            await send(
                writer,
                "< REP MODEL {SLXD4D                          } >"
                "< REP 1 CHAN_NAME {Host                           } >"
                "< REP 1 FREQUENCY 0602125 >< REP 1 TX_MODEL SLXD2 >< REP 1 TX_BATT_MINS 65534 >"
                "< REP 2 TX_MODEL UNKNOWN >< REP 2 RSSI 1 011 >< REP 2 RSSI 2 013 >",
            )
        elif (rate := requested_rate(command)) is not None:
            await send(writer, f"< REP 0 METER_RATE {rate:05d} >")
            if rate:
                await asyncio.sleep(0.05)
                await send(writer, "< SAMPLE 2 ALL 010 008 012 >< SAMPLE 1 ALL 102 102 086 >")


def test_poll_slxd_with_a_channel_zero_meter_rate_echo():
    reading, device, elapsed = asyncio.run(run_poll(slxd4d_channel_zero_echo, model="SLXD4D"))
    assert not isinstance(reading, Exception), reading
    assert reading.model == "SLXD4D"
    host, spare = reading.channels[1], reading.channels[2]
    assert host.name == "Host"
    assert host.frequency_khz == 602125
    assert host.battery_runtime_state == "calculating"
    assert host.audio_percent == 82
    assert host.rf_dbm == -34.0
    assert spare.tx_present is False
    assert spare.rf_dbm == -108.0  # the SAMPLE replaced the RSSI REPs
    assert host.metered and spare.metered
    assert elapsed < 1.0
    assert device.received[-1] == "SET 0 METER_RATE 00000"


async def psm1000_device(device: FakeDevice, reader, writer) -> None:
    async for command in device.commands(reader):
        if command == "GET 0 ALL":
            await send(
                writer,
                "< REPORT DEVICE_NAME {IEM Rack} >\r\n"
                "< REPORT 1 CHAN_NAME Drums >\r\n< REPORT 1 FREQUENCY 578000 >\r\n< REPORT 1 RF_MUTE 0 >\r\n"
                "< REPORT 2 CHAN_NAME {Keys    } >\r\n< REPORT 2 RF_MUTE 1 >\r\n",
                chunk=11,
            )
        elif (rate := requested_rate(command)) is not None:
            echo = "".join(f"< REPORT {n} METER_RATE {rate:05d} >\r\n" for n in (1, 2))
            await send(writer, echo)
            if rate:
                await asyncio.sleep(0.05)
                await send(
                    writer,
                    "< REPORT 1 AUDIO_IN_LVL_L 1234567 >\r\n< REPORT 1 AUDIO_IN_LVL_R 300000 >\r\n"
                    "< REPORT 2 AUDIO_IN_LVL_L 5000 >\r\n< REPORT 2 AUDIO_IN_LVL_R 5000 >\r\n",
                )


def test_poll_psm1000_reports_and_meter_reports():
    reading, device, elapsed = asyncio.run(run_poll(psm1000_device, model="P10T"))
    assert not isinstance(reading, Exception), reading
    assert reading.device_id == "IEM Rack"
    drums, keys = reading.channels[1], reading.channels[2]
    assert (drums.name, drums.frequency_khz, drums.audio_muted) == ("Drums", 578000, False)
    assert drums.audio_percent == 50  # louder side, 1234567 on the LED ladder
    assert (keys.name, keys.audio_muted, keys.audio_percent) == ("Keys", True, 0)
    assert drums.tx_present is None and keys.tx_present is None
    assert drums.metered and keys.metered
    assert elapsed < 1.0
    assert device.received == ["GET 0 ALL", "SET 0 METER_RATE 01000", "SET 0 METER_RATE 00000"]


@pytest.mark.parametrize(
    ("model", "asked", "sent"),
    [("QLXD4", 100, "01000"), ("ULXD4", 50, "00100"), ("AD4D", 250, "00250"), ("P10T", 100, "01000")],
)
def test_meter_rate_is_clamped_to_the_family_minimum(model, asked, sent):
    async def quiet_after_all(device: FakeDevice, reader, writer) -> None:
        async for command in device.commands(reader):
            if command == "GET 0 ALL":
                await send(writer, "< REP 1 CHAN_NAME {X} >")

    _, device, _ = asyncio.run(run_poll(quiet_after_all, model=model, timeout=0.3, meter_rate_ms=asked))
    assert device.received[:2] == ["GET 0 ALL", f"SET 0 METER_RATE {sent}"]
    assert device.received[-1] == "SET 0 METER_RATE 00000"


# --------------------------------------------------------------------------------------------------------
# Partial data
# --------------------------------------------------------------------------------------------------------


async def ad4d_one_channel_meters(device: FakeDevice, reader, writer) -> None:
    async for command in device.commands(reader):
        if command == "GET 0 ALL":
            await send(writer, "< REP 1 CHAN_NAME {Pastor} >< REP 2 CHAN_NAME {Choir} >")
            await send(writer, "< REP 2 TX_MODEL AD2 >")
        elif (rate := requested_rate(command)) is not None:
            await send(writer, meter_rate_reply(rate, 2))
            if rate:
                await send(writer, "< SAMPLE 1 ALL 005 031 102 102 BB 31 086 31 065 >")


def test_missing_samples_return_a_partial_reading_at_the_deadline():
    reading, device, elapsed = asyncio.run(run_poll(ad4d_one_channel_meters, model="AD4D", timeout=0.8))
    assert not isinstance(reading, Exception), reading
    assert reading.channels[1].metered is True
    assert reading.channels[1].quality == 5
    assert reading.channels[2].metered is False
    assert reading.channels[2].name == "Choir"
    assert reading.channels[2].rf_dbm is None
    assert 0.8 <= elapsed < 1.5
    assert device.received[-1] == "SET 0 METER_RATE 00000"


async def drops_after_meter_rate(device: FakeDevice, reader, writer) -> None:
    async for command in device.commands(reader):
        if command == "GET 0 ALL":
            await send(writer, ULXD4D_ALL)
        elif (rate := requested_rate(command)) is not None:
            await send(writer, meter_rate_reply(rate, 2) + "< SAMPLE 1 ALL AX 092 031 >< SAMPLE 2 ALL X")
            return  # the handler closes the socket mid-frame


def test_drop_mid_frame_after_the_all_reply_returns_what_was_read():
    reading, _, elapsed = asyncio.run(run_poll(drops_after_meter_rate, model="ULXD4D"))
    assert not isinstance(reading, Exception), reading
    assert reading.channels[1].name == "Lead Vox"
    assert reading.channels[1].metered is True
    assert reading.channels[2].name == "Guitar"
    assert reading.channels[2].metered is False
    assert elapsed < 1.0


async def drops_during_all(device: FakeDevice, reader, writer) -> None:
    async for command in device.commands(reader):
        if command == "GET 0 ALL":
            await send(writer, "< REP DEVICE_ID {Rack1   } >< REP 1 CHAN_NAME {Vo")
            return


def test_drop_mid_frame_during_the_all_reply_is_a_protocol_error():
    error, _, elapsed = asyncio.run(run_poll(drops_during_all, model="ULXD4"))
    assert isinstance(error, ProtocolError)
    assert "closed the connection" in str(error)
    assert elapsed < 1.0


async def drops_inside_the_first_frame(device: FakeDevice, reader, writer) -> None:
    async for command in device.commands(reader):
        if command == "GET 0 ALL":
            await send(writer, "< REP DEVICE_ID {Rac")
            return


def test_drop_inside_the_first_frame_is_a_protocol_error_that_says_so():
    error, _, elapsed = asyncio.run(run_poll(drops_inside_the_first_frame, model="AD4D"))
    assert isinstance(error, ProtocolError)
    assert "in the middle of its first frame" in str(error)
    assert elapsed < 1.0


# --------------------------------------------------------------------------------------------------------
# Failures
# --------------------------------------------------------------------------------------------------------


async def silent(device: FakeDevice, reader, writer) -> None:
    async for _ in device.commands(reader):
        pass


def test_silent_device_raises_device_silent_error_with_the_slxd_hint():
    error, device, elapsed = asyncio.run(run_poll(silent, model="SLXD4", timeout=1.0))
    assert isinstance(error, DeviceSilentError)
    assert f"127.0.0.1:{device.port}" in str(error)
    assert "sent nothing" in str(error)
    assert "third-party control" in str(error)
    assert 1.0 <= elapsed < 2.0
    assert device.received[-1] == "SET 0 METER_RATE 00000"
    assert device.client_closed is True


async def closes_at_once(device: FakeDevice, reader, writer) -> None:
    return


def test_device_closing_without_a_word_is_a_connection_error_not_silence():
    error, _, elapsed = asyncio.run(run_poll(closes_at_once, model="QLXD4", timeout=1.0))
    assert isinstance(error, ConnectionTimeoutError)
    assert not isinstance(error, DeviceSilentError)
    assert "closed it without sending anything" in str(error)
    assert elapsed < 1.0


@pytest.mark.parametrize("then_close", [False, True])
def test_garbage_only_is_a_protocol_error(then_close):
    async def web_server(device: FakeDevice, reader, writer) -> None:
        async for _ in device.commands(reader):
            await send(writer, "HTTP/1.1 400 Bad Request\r\n\r\n<html><body>nope</body></html>\r\n> >")
            if then_close:
                return

    error, device, _ = asyncio.run(run_poll(web_server, model="AD4Q", timeout=0.6))
    assert isinstance(error, ProtocolError)
    assert "no valid Shure command-string frame" in str(error)
    assert f"127.0.0.1:{device.port}" in str(error)


def test_refused_port_raises_connection_timeout_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectionTimeoutError) as caught:
        asyncio.run(poll("127.0.0.1", port, model="ULXD4", timeout=1.0))
    assert not isinstance(caught.value, DeviceSilentError)
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert "refused" in str(caught.value)


def test_connect_timeout_raises_connection_timeout_error():
    # A listener whose accept queue is full drops further SYNs: the connect hangs until our timeout.
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        filler.connect(("127.0.0.1", port))
        started = time.monotonic()
        with pytest.raises(ConnectionTimeoutError) as caught:
            asyncio.run(poll("127.0.0.1", port, model="AD4Q", timeout=0.5))
        assert time.monotonic() - started < 1.5
    assert "no TCP connection within 0.5 s" in str(caught.value)


def test_unknown_model_is_a_driver_error():
    with pytest.raises(ProtocolError, match="not a Shure command-string model"):
        asyncio.run(poll("127.0.0.1", 9, model="EM6000", timeout=0.5))


def test_enable_keepalive_sets_so_keepalive():
    with socket.socket() as sock:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
        enable_keepalive(sock)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
