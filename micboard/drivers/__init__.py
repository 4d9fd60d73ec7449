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

Both take ``options``: the receiver's extras (``remote_id``, ``api_key``, ``tls_fingerprint``,
``ca_file``); a driver that needs none ignores them. The models a driver reads are in its spec
module's ``MODELS`` (see :mod:`micboard.drivers.catalog`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from django.utils.module_loading import import_string

from micboard.drivers.base import ReceiverReading
from micboard.exceptions import ConfigurationError

PollFunction = Callable[..., Awaitable[ReceiverReading]]

DRIVERS: dict[str, str] = {
    "shure_tcp": "micboard.drivers.shure.poll",
    "shure_uhfr": "micboard.drivers.uhfr.poll",
    "shure_system_api": "micboard.drivers.system_api.poll",
    "sennheiser_ssc": "micboard.drivers.ssc.poll",
}
DRIVER_LABELS: dict[str, str] = {
    "shure_tcp": "Shure command strings (TCP 2202)",
    "shure_uhfr": "Shure UHF-R (UDP 2202)",
    "shure_system_api": "Shure System API (HTTPS)",
    "sennheiser_ssc": "Sennheiser SSC (UDP 45)",
}
LINKS: dict[str, str] = {
    "shure_tcp": "micboard.drivers.shure.ShureLink",
    "shure_uhfr": "micboard.drivers.uhfr.UhfrLink",
    "shure_system_api": "micboard.drivers.system_api.SystemApiLink",
    "sennheiser_ssc": "micboard.drivers.ssc.SscLink",
}


def get_driver(key: str) -> PollFunction:
    """Raises: ConfigurationError for an unknown driver key."""
    try:
        return import_string(DRIVERS[key])
    except KeyError as exc:
        raise ConfigurationError(f"No driver {key!r}; known: {', '.join(sorted(DRIVERS))}") from exc


def driver_choices() -> list[tuple[str, str]]:
    """(key, label) of every registered driver, for the receiver form (a callable: no migration per driver)."""
    return [(key, DRIVER_LABELS.get(key, key)) for key in DRIVERS]


def model_choices() -> list[tuple[str, list[tuple[str, str]]]]:
    """Receiver models grouped by driver, for the receiver form (a callable: no migration per model)."""
    from micboard.drivers.catalog import all_models

    groups: dict[str, list[tuple[str, str]]] = {}
    for entry in all_models():
        if entry.driver in DRIVERS:
            groups.setdefault(DRIVER_LABELS.get(entry.driver, entry.driver), []).append(
                (entry.model, entry.label or entry.model)
            )
    return list(groups.items())


def get_link(key: str) -> type | None:
    """The link class of a driver, or None when its devices can only be polled."""
    path = LINKS.get(key)
    return import_string(path) if path else None
