"""Host names of receivers: a hanging DNS lookup costs only its own receiver, bounded by the poll's timeout.

The other end is the protocol simulator. Only the C library's resolver (``socket.getaddrinfo``, stdlib) is
replaced, by one that hangs for a host name, as a dead DNS server on a venue network does.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from micboard.drivers.resolver import lookups_in_flight, resolve_host
from micboard.drivers.shure import poll
from micboard.exceptions import AddressResolutionError
from micboard.models import Channel, RealTimeConnection, Receiver
from micboard.simulators.rig import rig_device
from tasks.polling import run_poll_cycle
from tests.factories import make_receiver, receivers_for, start_simulator, use_fast_polls, wait_for

HANGING = "rx-hangs.venue.invalid"  # .invalid never resolves for real (RFC 2606), patched or not
HANG_SECONDS = 10.0


@pytest.fixture
def hanging_dns(monkeypatch):
    """getaddrinfo hangs ~10 s for HANGING (then fails, as a timed-out resolver does); other names resolve."""
    real = socket.getaddrinfo
    release = threading.Event()
    calls: list[str] = []

    def getaddrinfo(host, *args, **kwargs):
        calls.append(host)
        if host == HANGING:
            release.wait(HANG_SECONDS)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield calls
    release.set()  # let the lookup threads end with the test
    wait_for(lambda: lookups_in_flight() == 0, 5, "end the lookup threads")


@pytest.mark.django_db
def test_hanging_dns_lookup_delays_neither_the_other_receivers_nor_the_end_of_the_cycle(settings, hanging_dns):
    use_fast_polls(settings)
    timeout = settings.MICBOARD_POLL_TIMEOUT
    sim = start_simulator(["ulxd"])
    try:
        healthy = receivers_for(sim, ["ulxd"])["ulxd"]  # at the simulator's IP address
        by_name = make_receiver(name="Rack by name", model="ULXD4D", host="localhost", port=sim.address("ulxd")[1] + 1)
        # Added while its name resolved (setup refuses a name that does not), then the venue's DNS died.
        Receiver.objects.filter(pk=by_name.pk).update(host=HANGING)
        started = time.monotonic()
        summary = run_poll_cycle()
        elapsed = time.monotonic() - started
    finally:
        sim.stop()
    assert elapsed < timeout + 1.0, f"the cycle took {elapsed:.1f} s with a {timeout:g} s poll timeout"
    assert summary.polled == 2 and summary.failed == 1
    names = list(Channel.objects.filter(receiver=healthy).order_by("number").values_list("name", flat=True))
    assert names == [c.name for c in rig_device("ulxd").channels]
    error = RealTimeConnection.objects.get(receiver=by_name).last_error
    assert (
        f"could not resolve host name {HANGING} within {timeout:g} s: "
        "check the DNS server or use the receiver's IP address"
    ) in error


def test_a_hanging_name_is_looked_up_once_however_many_polls_wait_for_it(hanging_dns):
    async def two_polls_at_once() -> list[BaseException | tuple[str, ...]]:
        lookups = (resolve_host(HANGING, timeout=0.2) for _ in range(2))
        return await asyncio.gather(*lookups, return_exceptions=True)

    for _ in range(3):  # three poll cycles, each on an event loop of its own, while the resolver hangs
        started = time.monotonic()
        results = asyncio.run(two_polls_at_once())
        assert time.monotonic() - started < 1.0
        assert all(isinstance(r, AddressResolutionError) for r in results)
        assert "within 0.2 s" in str(results[0])
    assert hanging_dns.count(HANGING) == 1
    assert lookups_in_flight() == 1


def test_a_receiver_by_the_name_localhost_is_still_read():
    sim = start_simulator(["qlxd"])
    try:
        _, port = sim.address("qlxd")
        reading = asyncio.run(poll("localhost", port, model="QLXD4", timeout=2.0, meter_rate_ms=1000))
    finally:
        sim.stop()
    assert reading.channels[1].name == rig_device("qlxd").channels[0].name


def test_an_ip_address_is_used_without_any_lookup(monkeypatch):
    calls: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        calls.append(host)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    sim = start_simulator(["qlxd"])
    try:
        host, port = sim.address("qlxd")
        reading = asyncio.run(poll(host, port, model="QLXD4", timeout=2.0, meter_rate_ms=1000))
    finally:
        sim.stop()
    assert reading.channels[1].name and calls == []


def test_a_name_that_does_not_exist_says_what_to_check(monkeypatch):
    def getaddrinfo(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with pytest.raises(AddressResolutionError) as caught:
        asyncio.run(poll("rack-typo.venue.invalid", 2202, model="ULXD4", timeout=1.0))
    message = str(caught.value)
    assert message.startswith("rack-typo.venue.invalid:2202: cannot resolve host name rack-typo.venue.invalid")
    assert "Name or service not known" in message and "use the receiver's IP address" in message
