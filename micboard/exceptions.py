"""Domain exceptions of micboard.

Everything the domain raises derives from :class:`MicboardError`, so callers
(views, tasks, admin actions) can catch one base and show ``str(exc)`` to the
user. Drivers raise only :class:`DriverError` and its subclasses; this module
imports nothing from Django so drivers and simulators can use it freely.
"""

from __future__ import annotations


class MicboardError(Exception):
    """Base of every domain error."""


class DeviceNotFoundError(MicboardError):
    """No receiver (or channel) matches the given identity."""


class DeviceOfflineError(MicboardError):
    """The receiver is known to be offline or inactive."""


class DriverError(MicboardError):
    """A driver could not get a valid reading from a device."""


class ProtocolError(DriverError):
    """The device answered with something that is not valid for its protocol."""


class ConnectionTimeoutError(DriverError):
    """The device did not connect or answer within the timeout."""


class DeviceSilentError(ConnectionTimeoutError):
    """The device accepted the connection but never said anything.

    Shure SLX-D units do this while third-party control is disabled in their
    advanced settings; the message says what to check on the receiver.
    """


class InvalidReadingError(MicboardError):
    """A reading is structurally invalid (wrong channel, impossible value)."""


class AssignmentConflictError(MicboardError):
    """A performer or channel is already taken."""


class ConfigurationError(MicboardError):
    """Settings or stored configuration are unusable."""


class DiscoveryError(MicboardError):
    """A discovery run could not complete."""
