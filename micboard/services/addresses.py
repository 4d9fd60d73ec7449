"""Receiver addresses: what a host may be written as, and what it resolves to.

A host is an IP address (v4, or v6 without brackets) or a DNS name that resolves: no scheme, no path, no
port, no spaces. Two receivers are one device when their hosts resolve to a common address on the same
port (``localhost`` and ``127.0.0.1``), whatever their spelling; DeviceService refuses the second.
"""

from __future__ import annotations

import ipaddress
import re

from micboard.drivers.resolver import is_ip_literal, resolve_host_blocking
from micboard.exceptions import AddressResolutionError, ConfigurationError

__all__ = ["clean_host", "resolved_addresses"]

HOST_MAX = 253
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def clean_host(host: str | None) -> str:
    """The host as stored: trimmed, a trailing dot dropped, an IPv6 address in its short form.

    Raises:
        ConfigurationError: empty, a URL, spaces, a port or path in it, or not a valid host name.
    """
    text = (host or "").strip()
    if not text:
        raise ConfigurationError("A receiver needs a host: its IP address or DNS name on the venue network.")
    if _SCHEME.match(text):
        bare = _SCHEME.sub("", text).split("/")[0]
        raise ConfigurationError(f"Write the host without a scheme: {bare}, not {text}.")
    if any(c.isspace() for c in text):
        raise ConfigurationError(f"A host has no spaces: {text!r}.")
    if text.startswith("[") and text.endswith("]"):
        raise ConfigurationError(f"Write an IPv6 address without brackets: {text[1:-1]}.")
    if is_ip_literal(text):
        return str(ipaddress.ip_address(text.split("%")[0])) if "%" not in text else text
    if "/" in text or "@" in text:
        raise ConfigurationError(f"{text} is not an IP address or a host name (no path, no user).")
    name, colon, port = text.rpartition(":")
    if colon and name and port.isdigit():
        raise ConfigurationError(f"Put the port in the Port field: host {name}, port {port}.")
    name = text[:-1] if text.endswith(".") else text
    if len(name) > HOST_MAX or not all(_LABEL.match(label) for label in name.split(".")):
        raise ConfigurationError(
            f"{text} is not an IP address or a host name (letters, digits and hyphens, in dot-separated parts)."
        )
    return name


def resolved_addresses(host: str, *, timeout: float) -> frozenset[str]:
    """The addresses ``host`` stands for (an IP address: itself), normalised so equal addresses compare equal.

    Raises:
        ConfigurationError: the name does not resolve within ``timeout`` (the message says what to check).
    """
    try:
        addresses = resolve_host_blocking(host, timeout=timeout)
    except AddressResolutionError as exc:
        text = str(exc)
        raise ConfigurationError(text[:1].upper() + text[1:]) from None
    out = set()
    for address in addresses:
        try:
            ip = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            continue
        mapped = getattr(ip, "ipv4_mapped", None)
        out.add(str(mapped or ip))
    return frozenset(out)
