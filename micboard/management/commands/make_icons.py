"""Write the phone view's app icons (static/icons/icon-192.png and icon-512.png) without any image library."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

BACKGROUND = (13, 15, 18)  # the theme colour
OUTLINE = (238, 241, 244)
BAR = (47, 179, 68)  # --good
EMPTY = (36, 41, 49)


def _pixel(x: float, y: float) -> tuple[int, int, int]:
    """Colour at (x, y) in a unit square: a battery with four of five bars lit."""
    left, right, top, bottom, line = 0.14, 0.80, 0.30, 0.70, 0.045
    if right <= x <= right + 0.07 and 0.42 <= y <= 0.58:
        return OUTLINE  # the battery's tip
    if not (left <= x <= right and top <= y <= bottom):
        return BACKGROUND
    if x < left + line or x > right - line or y < top + line or y > bottom - line:
        return OUTLINE
    inner_left, inner_width = left + 2 * line, (right - left) - 4 * line
    if not (top + 2 * line <= y <= bottom - 2 * line) or x < inner_left or x > inner_left + inner_width:
        return BACKGROUND
    segment = (x - inner_left) / inner_width * 5
    if segment - int(segment) > 0.86:
        return BACKGROUND  # gap between two bars
    return BAR if int(segment) < 4 else EMPTY


def png(size: int) -> bytes:
    """A size x size RGB PNG of the icon."""
    rows = b"".join(
        b"\x00" + bytes(c for x in range(size) for c in _pixel((x + 0.5) / size, (y + 0.5) / size))
        for y in range(size)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


class Command(BaseCommand):
    help = "Write static/icons/icon-192.png and icon-512.png (the installable phone view's icons)."

    def handle(self, *args, **options):
        folder = Path(settings.BASE_DIR) / "static" / "icons"
        folder.mkdir(parents=True, exist_ok=True)
        for size in (192, 512):
            path = folder / f"icon-{size}.png"
            path.write_bytes(png(size))
            self.stdout.write(f"wrote {path}")
