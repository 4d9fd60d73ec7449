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


class LinkDroppedError(ProtocolError):
    """A live link that worked was closed by the device or the network (a reboot, a cable, a switch)."""


class ConnectionTimeoutError(DriverError):
    """The device did not connect or answer within the timeout."""


class AddressResolutionError(ConnectionTimeoutError):
    """The receiver's host name did not resolve (in time): the message says what to check."""


class DeviceSilentError(ConnectionTimeoutError):
    """The device accepted the connection but never said anything.

    Shure SLX-D units do this while third-party control is disabled in their
    advanced settings; the message says what to check on the receiver.
    """


class DriverConfigurationError(DriverError):
    """The receiver's settings in micboard do not let the driver read it: a missing or refused API key, a
    missing device id, or a server certificate nothing tells micboard to trust. The message says what to set."""


class InvalidReadingError(MicboardError):
    """A reading is structurally invalid (wrong channel, impossible value)."""


class AssignmentConflictError(MicboardError):
    """A performer or channel is already taken."""


class ConfigurationError(MicboardError):
    """Settings or stored configuration are unusable."""


class ChannelRemovalError(MicboardError):
    """A change would remove channels (and what hangs on them) and was not confirmed.

    ``removed`` says what would go, in words a user reads: ``"ch 3 (Maya), ch 4; tile 5 of Band"``.
    """

    def __init__(self, message: str, *, removed: str) -> None:
        super().__init__(message)
        self.removed = removed


class PortInUseError(ConfigurationError):
    """An address micboard must listen on is taken; the message names the process holding it."""


class LoadTestError(MicboardError):
    """A load test was refused (a target off loopback, bounds exceeded) or could not run."""


class DiscoveryError(MicboardError):
    """A discovery run could not complete."""


class CoordinationError(MicboardError):
    """The store the poller and the web processes coordinate through (Redis or its SQLite file) failed."""


class KioskLinkError(MicboardError):
    """A kiosk link is not (or no longer) usable; ``reason`` is invalid, unknown, revoked or expired.

    ``str(exc)`` is the sentence the screen shows ("This kiosk link was revoked.").
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
class BoardOrderError(MicboardError):
    """A tile number or an order for the "All" board was refused (out of range, duplicated, unknown channel)."""


class AlertError(MicboardError):
    """An alert cannot make the asked transition (already acknowledged or resolved)."""


class ReportError(MicboardError):
    """A post-show report that cannot be made as asked (a bad time range)."""


class RateLimitedError(MicboardError):
    """Asked again too soon (a test e-mail within a minute of the last); ``wait_seconds`` until it is allowed."""

    def __init__(self, message: str, *, wait_seconds: int) -> None:
        super().__init__(message)
        self.wait_seconds = wait_seconds
