"""Shure DCID (device class id) -> model, for SLP discovery (protocols.md §3.2).

A Shure device's SLP Attribute Reply names its model only through a DCID, a GUID. The authoritative map is
micboard's ``dcid.json`` (942 entries, one per model and band variant), generated from the ``DCIDMap.xml``
that Shure ships with Wireless Workbench / Shure Update Utility. It is not bundled here: :data:`DCID_MODELS`
holds one DCID per model micboard supports, the ones the simulators announce, and a venue can load the real
map with :func:`load_dcid_file` (setting ``MICBOARD_DCID_FILE``).

No Django imports here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from micboard.exceptions import ConfigurationError

__all__ = ["DCID_MODELS", "dcid_model", "load_dcid_file", "model_dcid"]

_GUID = re.compile(r"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}\Z")
MAX_DCID_FILE_BYTES = 4 * 1024 * 1024  # the real dcid.json is about 150 KB

# One DCID per supported model. These GUIDs are micboard's own (what its simulators announce), shaped like
# Shure's; real devices announce the DCIDs of Shure's map, which load_dcid_file() reads.
DCID_MODELS: dict[str, str] = {
    "5C7A0D10-3E21-11E4-9B5A-0015C5F30101": "ULXD4",
    "5C7A0D10-3E21-11E4-9B5A-0015C5F30102": "ULXD4D",
    "5C7A0D10-3E21-11E4-9B5A-0015C5F30104": "ULXD4Q",
    "6E1B2F40-7A33-11E4-8C2D-0015C5F30201": "QLXD4",
    "7F2C3A50-1D44-11E9-A6F1-0015C5F30301": "SLXD4",
    "7F2C3A50-1D44-11E9-A6F1-0015C5F30302": "SLXD4D",
    "8A3D4B60-2E55-11E5-B7A2-0015C5F30402": "AD4D",
    "8A3D4B60-2E55-11E5-B7A2-0015C5F30404": "AD4Q",
    "9B4E5C70-3F66-11E3-C8B3-0015C5F30502": "P10T",
    "AC5F6D80-4077-11E2-D9C4-0015C5F30601": "UR4S",
    "AC5F6D80-4077-11E2-D9C4-0015C5F30602": "UR4D",
}

# micboard's dcid.json names models by Shure's map keys; these are the receivers micboard can poll.
# ULX-D keys come in band variants ("ULX-D1GSingle", "ULX-DIsmDual" ...): matched on prefix and suffix.
_MAP_KEYS = {
    "QLX-DSingle": "QLXD4",
    "QLX-D1GSingle": "QLXD4",
    "QLX-DIsmSingle": "QLXD4",
    "AD4D": "AD4D",
    "AD4Q": "AD4Q",
    "PSM1KTx": "P10T",
    "UR4S": "UR4S",
    "UR4D": "UR4D",
    "SLX-DRxS": "SLXD4D",  # [U] one fork's reading of an SLX-D entry; SLX-D is otherwise absent from the map
}
_ULXD_SUFFIXES = {"Single": "ULXD4", "Dual": "ULXD4D", "Quad": "ULXD4Q"}

_loaded: dict[str, str] = {}


def _normal(dcid: str) -> str:
    return dcid.strip().strip("{}").upper()


def _model_for_key(key: str) -> str | None:
    if key in _MAP_KEYS:
        return _MAP_KEYS[key]
    if key.startswith("ULX-D"):
        for suffix, model in _ULXD_SUFFIXES.items():
            if key.endswith(suffix):
                return model
    return None


def load_dcid_file(path: str | Path) -> int:
    """Read micboard's ``dcid.json`` ({DCID: {"model": <map key>, ...}}) and use its receiver entries.

    Entries for products micboard does not poll (transmitters, chargers) are skipped. Returns how many
    DCIDs were taken.

    Raises:
        ConfigurationError: the file is missing, too large or not a JSON object of that shape.
    """
    file = Path(path)
    try:
        if file.stat().st_size > MAX_DCID_FILE_BYTES:
            raise ConfigurationError(f"{file} is larger than {MAX_DCID_FILE_BYTES} bytes: is it micboard's dcid.json?")
        data = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read the DCID map {file}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ConfigurationError(f"the DCID map {file} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"the DCID map {file} must be a JSON object of DCID -> {{model, ...}}")
    taken: dict[str, str] = {}
    for dcid, entry in data.items():
        key = entry.get("model") if isinstance(entry, dict) else None
        model = _model_for_key(key) if isinstance(key, str) else None
        if model and isinstance(dcid, str) and _GUID.match(_normal(dcid)):
            taken[_normal(dcid)] = model
    _loaded.clear()
    _loaded.update(taken)
    return len(taken)


def dcid_model(dcid: str) -> str | None:
    """The micboard model a DCID stands for, or None when unknown (or not a receiver micboard polls)."""
    key = _normal(dcid)
    return _loaded.get(key) or DCID_MODELS.get(key)


def model_dcid(model: str) -> str | None:
    """The DCID micboard's simulators announce for ``model`` (None for a model without one)."""
    wanted = model.strip().upper()
    for dcid, name in DCID_MODELS.items():
        if name == wanted:
            return dcid
    return None
