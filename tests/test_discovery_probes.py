"""The Shure TCP probe against the simulator: only a well-formed REP identifies a device."""

from __future__ import annotations

import asyncio
import time

import pytest

from micboard.drivers.probes import PROBES, Found, get_probe, probe_port, probe_shure_tcp
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
    assert set(PROBES) >= {"shure_tcp"}
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
