"""Names typed by operators (performers, scenes, boards): trimmed, one line, bounded."""

from __future__ import annotations

import re

from micboard.exceptions import ConfigurationError

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


def clean_name(value: str | None, *, what: str, max_length: int) -> str:
    """Trim a typed name to one line of single spaces and check its length.

    Args:
        value: what the operator typed.
        what: the thing named, for the message ("A performer", "A scene").
        max_length: the column's length.
    Returns:
        The cleaned name.
    Raises:
        ConfigurationError: the name is empty or longer than ``max_length``.
    """
    name = " ".join(_CONTROL.sub(" ", value or "").split())
    if not name:
        raise ConfigurationError(f"{what} needs a name.")
    if len(name) > max_length:
        raise ConfigurationError(f"{what} name can be at most {max_length} characters (this one has {len(name)}).")
    return name
