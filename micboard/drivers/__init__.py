"""Drivers: turn a receiver's wire protocol into normalized readings.

A driver is an async function ``poll(host, port, *, model, timeout, meter_rate_ms)``
returning a :class:`~micboard.drivers.base.ReceiverReading` and raising only
:class:`~micboard.exceptions.DriverError` subclasses. Register its dotted path
here under the key stored in ``Receiver.driver``.

A family whose devices push their changes also offers a link class (``LINKS``):
``Link(host, port, *, model, meter_rate_ms, timeout)`` with ``async run()`` (follows
the device until the link fails, raising a DriverError; closes politely when
cancelled) and ``take()`` (the reading so far, or None when nothing new arrived).
Receivers of a family without one are polled (connect-per-poll) by the same holders.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from django.utils.module_loading import import_string

from micboard.drivers.base import ReceiverReading
from micboard.exceptions import ConfigurationError

PollFunction = Callable[..., Awaitable[ReceiverReading]]

DRIVERS: dict[str, str] = {
    "shure_tcp": "micboard.drivers.shure.poll",
}
LINKS: dict[str, str] = {
    "shure_tcp": "micboard.drivers.shure.ShureLink",
}


def get_driver(key: str) -> PollFunction:
    """Raises: ConfigurationError for an unknown driver key."""
    try:
        return import_string(DRIVERS[key])
    except KeyError as exc:
        raise ConfigurationError(f"No driver {key!r}; known: {', '.join(sorted(DRIVERS))}") from exc


def get_link(key: str) -> type | None:
    """The link class of a driver, or None when its devices can only be polled."""
    path = LINKS.get(key)
    return import_string(path) if path else None
