"""IPv4 multicast sockets for discovery (SLP, mDNS), pinned to one interface with a chosen TTL.

Every socket here names its interface by address (``MICBOARD_DISCOVERY_INTERFACE``): sends leave through
it (``IP_MULTICAST_IF``) with ``IP_MULTICAST_TTL`` = ``ttl`` and loop back to listeners on this host
(``IP_MULTICAST_LOOP``); listeners join the group on that interface only. With the interface 127.0.0.1 and
TTL 0 (the demo and test default) no datagram can leave the machine: TTL 0 keeps a multicast on this host,
and the loopback interface reaches no network. A venue sets its own interface address and TTL 1 (the local
segment, never routed).

No Django imports here.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket

from micboard.exceptions import ConfigurationError, DriverError

__all__ = ["check_interface", "open_listener", "open_sender"]

MAX_DATAGRAM = 9000  # bytes read per datagram; SLP and mDNS announcements are a few hundred


def check_interface(interface: str, ttl: int) -> tuple[str, int]:
    """Validate the discovery interface address and TTL.

    Raises:
        ConfigurationError: not an IPv4 address, or a TTL outside 0..255.
    """
    try:
        address = ipaddress.IPv4Address(str(interface).strip())
    except ValueError as exc:
        raise ConfigurationError(
            f"the discovery interface must be the IPv4 address of a network interface, not {interface!r}"
        ) from exc
    if not isinstance(ttl, int) or not 0 <= ttl <= 255:
        raise ConfigurationError(f"the discovery multicast TTL must be 0..255, not {ttl!r}")
    return str(address), ttl


def _configure_sender(sock: socket.socket, interface: str, ttl: int) -> None:
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)


def _reuse(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)


def open_sender(interface: str, ttl: int, *, bind: tuple[str, int] | None = None) -> socket.socket:
    """A non-blocking UDP socket that multicasts on ``interface`` with ``ttl``, bound to ``bind``.

    ``bind`` (default: the interface address, any port) fixes the source address a listener sees, e.g. a
    simulated device's own loopback address.

    Raises:
        DriverError: the socket could not be set up or bound (the message names the address).
    """
    interface, ttl = check_interface(interface, ttl)
    where = bind or (interface, 0)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        if where[1]:
            _reuse(sock)
        sock.bind(where)
        _configure_sender(sock, interface, ttl)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise DriverError(
            f"cannot send multicast from {where[0]}:{where[1]} on {interface}: {exc.strerror or exc}"
        ) from None
    return sock


def open_listener(group: str, port: int, interface: str, ttl: int = 0) -> socket.socket:
    """A non-blocking UDP socket that receives ``group:port`` joined on ``interface`` only.

    Bound to the group address where the OS allows it (Linux, BSD), so unicast traffic to the port is not
    mixed in; other listeners of the same port on this host keep working (``SO_REUSEADDR``/``SO_REUSEPORT``).
    It can also send (an mDNS answer multicast back to the group), with ``ttl`` on the same interface.

    Raises:
        DriverError: the port cannot be bound or the interface cannot join the group (the message says which).
    """
    interface, ttl = check_interface(interface, ttl)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        _reuse(sock)
        try:
            sock.bind((group, port))
        except OSError:
            sock.bind(("", port))  # Windows binds only to an interface address or the wildcard
        sock.setsockopt(
            socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton(group) + socket.inet_aton(interface)
        )
        _configure_sender(sock, interface, ttl)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise DriverError(
            f"cannot listen for {group}:{port} on the interface {interface}: {exc.strerror or exc} "
            "(check MICBOARD_DISCOVERY_INTERFACE names an address of this machine, and that no firewall blocks it)"
        ) from None
    return sock
