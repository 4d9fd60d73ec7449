"""The service layer: every write to the domain goes through these classes."""

from micboard.services.board import BoardService
from micboard.services.board_order import BoardOrderService
from micboard.services.devices import DeviceService, PollOutcome, PollTarget
from micboard.services.health import ConnectionHealthService
from micboard.services.setup import (
    AssignmentService,
    DiscoveryService,
    GroupService,
    LocationService,
    ManufacturerService,
)

__all__ = [
    "AssignmentService",
    "BoardOrderService",
    "BoardService",
    "ConnectionHealthService",
    "DeviceService",
    "DiscoveryService",
    "GroupService",
    "LocationService",
    "ManufacturerService",
    "PollOutcome",
    "PollTarget",
]
