"""The service layer: every write to the domain goes through these classes."""

from micboard.services.board import BoardService
from micboard.services.devices import DeviceService, PollOutcome, PollTarget
from micboard.services.health import ConnectionHealthService
from micboard.services.kiosk import KioskService
from micboard.services.roles import RoleService
from micboard.services.setup import (
    AssignmentService,
    DiscoveryService,
    GroupService,
    LocationService,
    ManufacturerService,
)

__all__ = [
    "AssignmentService",
    "BoardService",
    "ConnectionHealthService",
    "DeviceService",
    "DiscoveryService",
    "GroupService",
    "KioskService",
    "LocationService",
    "ManufacturerService",
    "PollOutcome",
    "PollTarget",
    "RoleService",
]
