"""The service layer: every write to the domain goes through these classes."""

from micboard.services.battery import BatteryService
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
from micboard.services.sheet import SheetService

__all__ = [
    "AssignmentService",
    "BatteryService",
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
    "SheetService",
]
