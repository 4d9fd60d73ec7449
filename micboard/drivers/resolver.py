"""Host-name resolution for drivers, bounded by the poll's timeout.

``loop.create_connection(host=name)`` resolves the name with ``getaddrinfo`` in the event loop's default
executor, and ``asyncio.run()`` joins that executor when it ends: one resolver that hangs (a dead DNS server
on the venue network) would hold the whole poll cycle for as long as ``getaddrinfo`` takes, whatever the
poll's timeout. :func:`resolve_host` avoids that:

* an IP literal is returned as it is, with no lookup at all;
* a name is looked up in a daemon thread that nothing ever joins, so a hanging lookup delays neither the
  other receivers nor the end of the cycle;
* lookups in flight are shared per host name: polls of a name whose lookup still hangs (in this cycle or a
  later one) wait on the same thread instead of starting new ones, so a hanging resolver cannot pile up
  threads;
* the caller waits at most ``timeout`` seconds, then gets an :class:`AddressResolutionError` that says
  what to check.

No Django imports here.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import queue
import socket
import threading
from dataclasses import dataclass, field

from micboard.exceptions import AddressResolutionError

__all__ = ["is_ip_literal", "lookups_in_flight", "resolve_host", "resolve_host_blocking"]

_Outcome = tuple[tuple[str, ...], str]  # (addresses, error text); exactly one of them is empty


@dataclass(eq=False)
class _Lookup:
    """One getaddrinfo call in its own thread and the futures waiting for it (one per event loop and poll)."""

    host: str
    waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = field(default_factory=list)


_lock = threading.Lock()
_in_flight: dict[str, _Lookup] = {}


def is_ip_literal(host: str) -> bool:
    """True for an IPv4 or IPv6 address written out (``10.0.0.5``, ``::1``); a zone id (``%eth0``) counts."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def lookups_in_flight() -> int:
    """How many host-name lookups are still running (their threads may outlive the polls that started them)."""
    with _lock:
        return len(_in_flight)


def _getaddrinfo(host: str) -> _Outcome:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        return (), exc.strerror or str(exc)
    except (OSError, UnicodeError, ValueError) as exc:
        return (), str(exc) or type(exc).__name__
    addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))  # in resolver order, no duplicates
    return (addresses, "") if addresses else ((), "no address for this name")


def _run(lookup: _Lookup) -> None:
    outcome = _getaddrinfo(lookup.host)
    with _lock:
        if _in_flight.get(lookup.host) is lookup:
            del _in_flight[lookup.host]
        waiters, lookup.waiters = lookup.waiters, []
    for loop, future in waiters:
        with contextlib.suppress(RuntimeError):  # that poll's loop has closed meanwhile
            loop.call_soon_threadsafe(_settle, future, outcome)


def _settle(future: asyncio.Future, outcome: _Outcome) -> None:
    if not future.done():
        future.set_result(outcome)


async def resolve_host(host: str, *, timeout: float) -> tuple[str, ...]:
    """The addresses of ``host`` (an IP literal as it is), waiting at most ``timeout`` seconds.

    Raises:
        AddressResolutionError: the name did not resolve within ``timeout``, or does not resolve at all.
    """
    if is_ip_literal(host):
        return (host,)
    loop = asyncio.get_running_loop()
    future: asyncio.Future = loop.create_future()
    with _lock:
        lookup = _in_flight.get(host)
        start = lookup is None
        if lookup is None:
            lookup = _in_flight[host] = _Lookup(host)
        lookup.waiters.append((loop, future))
    if start:
        threading.Thread(target=_run, args=(lookup,), name=f"micboard-resolve-{host[:40]}", daemon=True).start()
    try:
        addresses, error = await asyncio.wait_for(future, max(0.0, timeout))
    except TimeoutError:
        raise AddressResolutionError(
            f"could not resolve host name {host} within {timeout:g} s: "
            "check the DNS server or use the receiver's IP address"
        ) from None
    finally:
        with _lock, contextlib.suppress(ValueError):
            lookup.waiters.remove((loop, future))
    if error:
        raise AddressResolutionError(
            f"cannot resolve host name {host}: {error}; check the name and the DNS server, "
            "or use the receiver's IP address"
        )
    return addresses


def resolve_host_blocking(host: str, *, timeout: float) -> tuple[str, ...]:
    """:func:`resolve_host` for synchronous code (setup forms, services): the lookup runs in a daemon thread.

    Raises:
        AddressResolutionError: the name did not resolve within ``timeout``, or does not resolve at all.
    """
    if is_ip_literal(host):
        return (host,)
    outcome: queue.SimpleQueue[_Outcome] = queue.SimpleQueue()
    threading.Thread(
        target=lambda: outcome.put(_getaddrinfo(host)), name=f"micboard-resolve-{host[:40]}", daemon=True
    ).start()
    try:
        addresses, error = outcome.get(timeout=max(0.0, timeout))
    except queue.Empty:
        raise AddressResolutionError(
            f"could not resolve host name {host} within {timeout:g} s: "
            "check the DNS server or use the receiver's IP address"
        ) from None
    if error:
        raise AddressResolutionError(
            f"cannot resolve host name {host}: {error}; check the name and the DNS server, "
            "or use the receiver's IP address"
        )
    return addresses
