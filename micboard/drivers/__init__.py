"""Drivers: turn a receiver's wire protocol into normalized readings.

A driver is an async function ``poll(host, port, *, model, timeout, meter_rate_ms)``
returning a :class:`~micboard.drivers.base.ReceiverReading` and raising only
:class:`~micboard.exceptions.DriverError` subclasses. Register its dotted path
here under the key stored in ``Receiver.driver``.
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


def get_driver(key: str) -> PollFunction:
    """Raises: ConfigurationError for an unknown driver key."""
    try:
        return import_string(DRIVERS[key])
    except KeyError as exc:
        raise ConfigurationError(f"No driver {key!r}; known: {', '.join(sorted(DRIVERS))}") from exc
