"""The service layer: every write to the domain goes through these classes."""

from micboard.services.board import BoardService
from micboard.services.devices import DeviceService, PollOutcome, PollTarget
from micboard.services.groups import GroupEditService
from micboard.services.health import ConnectionHealthService
from micboard.services.scenes import SceneService, SceneSwitch
from micboard.services.setup import (
    AssignmentService,
    DiscoveryService,
    GroupService,
    LocationService,
    ManufacturerService,
    PastePreview,
    PasteRow,
)

__all__ = [
    "AssignmentService",
    "BoardService",
    "ConnectionHealthService",
    "DeviceService",
    "DiscoveryService",
    "GroupEditService",
    "GroupService",
    "LocationService",
    "ManufacturerService",
    "PastePreview",
    "PasteRow",
    "PollOutcome",
    "PollTarget",
    "SceneService",
    "SceneSwitch",
]
