"""The service layer: every write to the domain goes through these classes."""

from micboard.services.battery import BatteryService
from micboard.services.board import BoardService
from micboard.services.board_order import BoardOrderService
from micboard.services.devices import DeviceService, PollOutcome, PollTarget
from micboard.services.discovery import DiscoveryService
from micboard.services.groups import GroupEditService
from micboard.services.health import ConnectionHealthService
from micboard.services.kiosk import KioskService
from micboard.services.roles import RoleService
from micboard.services.scenes import SceneService, SceneSwitch
from micboard.services.setup import (
    AssignmentService,
    GroupService,
    LocationService,
    ManufacturerService,
    PastePreview,
    PasteRow,
)
from micboard.services.sheet import SheetService

__all__ = [
    "AssignmentService",
    "BatteryService",
    "BoardOrderService",
    "BoardService",
    "ConnectionHealthService",
    "DeviceService",
    "DiscoveryService",
    "GroupEditService",
    "GroupService",
    "KioskService",
    "LocationService",
    "ManufacturerService",
    "PastePreview",
    "PasteRow",
    "PollOutcome",
    "PollTarget",
    "RoleService",
    "SceneService",
    "SceneSwitch",
    "SheetService",
]
