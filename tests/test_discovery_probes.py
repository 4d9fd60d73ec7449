"""The Shure TCP probe against the simulator: only a well-formed REP identifies a device."""

from __future__ import annotations

import asyncio
import time

import pytest

from micboard.drivers.probes import PROBES, Found, get_probe, probe_port, probe_shure_tcp, probe_shure_uhfr
from micboard.exceptions import ConfigurationError, ConnectionTimeoutError, DeviceSilentError, ProtocolError
from micboard.simulators.rig import DEMO_RIG, rig_device
from tests.factories import start_simulator

SHURE_KEYS = [d.key for d in DEMO_RIG if d.driver == "shure_tcp"]


@pytest.fixture(scope="module")
def sim():
    simulator = start_simulator(SHURE_KEYS)
    yield simulator
    simulator.stop()


def probe(host: str, port: int, timeout: float = 1.5) -> list[Found]:
    return asyncio.run(probe_shure_tcp(host, port, timeout=timeout, options={}))


@pytest.mark.parametrize("key", SHURE_KEYS)
def test_each_command_strings_device_says_who_it_is_and_its_channels(sim, key):
    rig = rig_device(key)
    host, port = sim.address(key)
    (found,) = probe(host, port)
    assert (found.driver, found.model, found.host, found.port) == ("shure_tcp", rig.model, host, port)
    assert found.device_id == rig.device_id
    assert found.channels == tuple((n, c.name) for n, c in enumerate(rig.channels, start=1))


def test_a_qlxd_with_its_pack_off_cannot_tell_itself_from_a_ulxd4_and_the_probe_says_so(sim):
    sim.pack_off("qlxd", 1)
    try:
        (found,) = probe(*sim.address("qlxd"))
    finally:
        sim.pack_on("qlxd", 1)
    assert found.model == "ULXD4"
    assert found.note == "it does not name its model: ULXD4 or QLXD4, check before adding"


def test_a_unit_that_accepts_and_stays_silent_is_reported_with_what_to_check(sim):
    sim.set_fault("slxd", "silent")
    started = time.monotonic()
    try:
        with pytest.raises(DeviceSilentError, match="on SLX-D, enable third-party control"):
            probe(*sim.address("slxd"), timeout=0.6)
    finally:
        sim.set_fault("slxd", None)
    assert time.monotonic() - started < 1.5
    assert probe(*sim.address("slxd"))[0].model == "SLXD4D"  # and found again once it answers


def test_an_open_port_that_speaks_something_else_is_not_a_device():
    async def run() -> None:
        async def http(reader, writer):
            await reader.read(100)
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(http, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            with pytest.raises(ProtocolError, match="not in Shure command strings"):
                await probe_shure_tcp("127.0.0.1", port, timeout=1.0, options={})
        finally:
            server.close()

    asyncio.run(run())


def test_nothing_listening_is_a_plain_connection_error_a_scan_passes_over():
    with pytest.raises(ConnectionTimeoutError) as caught:
        probe("127.0.0.1", 1)
    assert not isinstance(caught.value, DeviceSilentError)


def test_probes_are_registered_by_driver_key_with_the_catalogs_port():
    assert get_probe("shure_tcp") is probe_shure_tcp
    assert probe_port("shure_tcp") == 2202
    assert set(PROBES) >= {"shure_tcp", "shure_uhfr"}
    assert probe_port("shure_uhfr") == 2202
    with pytest.raises(ConfigurationError, match="No discovery probe for 'nope'"):
        get_probe("nope")


def serve_once(reply: bytes):
    """A TCP server on a free loopback port that sends ``reply`` to whoever connects (then holds the line)."""

    async def start():
        async def handler(reader, writer):
            await reader.read(200)
            writer.write(reply)
            await writer.drain()
            await asyncio.sleep(2)
            writer.close()

        return await asyncio.start_server(handler, "127.0.0.1", 0)

    return start


def test_control_characters_from_a_device_are_dropped_from_what_it_says():
    reply = b"< REP DEVICE_ID {Rack\x001  } >< REP MODEL {AD4D-A\x07} >< REP 1 CHAN_NAME {Vox\x1b 1} >< REP ERR >"

    async def run() -> list[Found]:
        server = await serve_once(reply)()
        try:
            return await probe_shure_tcp("127.0.0.1", server.sockets[0].getsockname()[1], timeout=1.0, options={})
        finally:
            server.close()

    (found,) = asyncio.run(run())
    assert (found.device_id, found.model, found.channels) == ("Rack1", "AD4D", ((1, "Vox 1"),))


def test_a_flood_without_frames_is_cut_off_and_is_not_a_device():
    async def run() -> float:
        server = await serve_once(b"x" * 200_000)()
        started = time.monotonic()
        try:
            with pytest.raises(ProtocolError, match="not in Shure command strings"):
                await probe_shure_tcp("127.0.0.1", server.sockets[0].getsockname()[1], timeout=1.5, options={})
        finally:
            server.close()
        return time.monotonic() - started

    assert asyncio.run(run()) < 1.0  # stopped reading at MAX_PROBE_BYTES, not at the time-out


# --- UHF-R, UDP 2202 -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def uhfr_sim():
    simulator = start_simulator(["uhfr"])
    yield simulator
    simulator.stop()


def test_a_uhfr_receiver_says_its_model_firmware_and_channel_names(uhfr_sim):
    rig = rig_device("uhfr")
    host, port = uhfr_sim.address("uhfr")
    (found,) = asyncio.run(probe_shure_uhfr(host, port, timeout=1.5, options={}))
    assert (found.driver, found.model, found.host, found.port) == ("shure_uhfr", rig.model, host, port)
    assert found.channels == tuple((n, c.name) for n, c in enumerate(rig.channels, start=1))
    assert found.firmware
    assert found.device_id == uhfr_sim.device(rig.key).mac_address  # what a moved unit is matched by
    assert "gives no device id" not in found.note


def test_a_silent_uhfr_address_is_passed_over_like_an_empty_one(uhfr_sim):
    uhfr_sim.set_fault("uhfr", "silent")
    try:
        with pytest.raises(ConnectionTimeoutError, match=r"no answer within 0\.5 s") as caught:
            asyncio.run(probe_shure_uhfr(*uhfr_sim.address("uhfr"), timeout=0.5, options={}))
    finally:
        uhfr_sim.set_fault("uhfr", None)
    assert not isinstance(caught.value, DeviceSilentError)  # UDP cannot tell a silent unit from no unit
    started = time.monotonic()
    with pytest.raises(ConnectionTimeoutError, match="nothing listens there"):
        asyncio.run(probe_shure_uhfr("127.0.0.1", 9, timeout=1.5, options={}))  # ICMP port unreachable
    assert time.monotonic() - started < 0.5


def test_a_uhfr_unit_that_answers_its_mac_address_has_it_as_its_identity():
    """Device-level GETs are uncertain on 2202 [U]: one that answers MAC_ADDR but not MODEL_NAME."""

    class Unit(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            replies = {
                b"* GET MAC_ADDR *": b"* REPORT MAC_ADDR 00:0E:DD:12:34:56 *",
                b"* GET 1 CHAN_NAME *": b"* REPORT 1 CHAN_NAME SIDE_STAGE *",
            }
            if data in replies:
                self.transport.sendto(replies[data], addr)

    async def run() -> list[Found]:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(Unit, local_addr=("127.0.0.1", 0))
        try:
            port = transport.get_extra_info("sockname")[1]
            return await probe_shure_uhfr("127.0.0.1", port, timeout=1.0, options={})
        finally:
            transport.close()

    (found,) = asyncio.run(run())
    assert (found.device_id, found.model, found.channels) == ("00:0E:DD:12:34:56", "UR4S", ((1, "SIDE STAGE"),))
    assert found.note == "it does not name its model: inferred from its 1 channel(s)"
