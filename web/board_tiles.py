"""Changed tiles only: tile renders cached by displayed state, and what changed since a client's state.

A tile's HTML depends on the tile alone (``micboard/board.html#tile``), and a tile holds values
already quantised to what it shows, so its render is kept by ``tile_state()`` (a digest of the
tile): every screen and every refresh share one render per displayed state. The renders live in a
bounded in-process LRU (``TileRenders``): they are immutable, so nothing ever invalidates them, and a
process that starts cold renders each state once.

A *snapshot* is what one render of the grid shows: its frame (the tiles' ids in order, the stale
flag and the poller's last heartbeat, the degraded notice: what needs the whole grid when it
changes), its banners (the receivers not answering) and the state of every tile. Its id is a digest
of all that, so a snapshot can never be wrong: whatever process, version or race produced it, the
same id means the same screen. Every grid a client receives carries its snapshot id
(``#board-meta[data-state]``), and the client sends it back (``X-Board-State``). The last
``RING_SIZE`` snapshots of each group are kept in one cache entry per group; a refresh whose client
snapshot is still there gets only the tiles whose state differs, as out-of-band swaps by id.
Anything else (an unknown or evicted snapshot, another frame, too many changes) gets the whole grid.
Losing the entry (a culled cache, two processes writing it at once) only costs whole grids.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

from django.template.loader import get_template
from django.utils.safestring import SafeString, mark_safe

from micboard import caching
from micboard.services.board import STATE_CHARS, BoardData, Tile

TILE_TEMPLATE = "micboard/board.html#tile"
RING_SIZE = 32  # snapshots kept per group: about a minute of changes at the default 2 s poll interval
RING_TIMEOUT = caching.DAY
RENDERS_MAX = 8192  # tile renders kept per process (about 1 KB each)
OOB = ' hx-swap-oob="true"'


class TileRenders:
    """Tile HTML by displayed state, in a bounded LRU shared by the threads of this process."""

    _lock = threading.Lock()
    _renders: OrderedDict[str, SafeString] = OrderedDict()

    @classmethod
    def html(cls, *, tile: Tile, state: str) -> SafeString:
        """The tile's HTML (``micboard/board.html#tile``), rendered once per state and process."""
        with cls._lock:
            html = cls._renders.get(state)
            if html is not None:
                cls._renders.move_to_end(state)
                return html
        # Template output (autoescaped): marked safe so the grid can embed it as it was rendered.
        html = mark_safe(get_template(TILE_TEMPLATE).render({"tile": tile}).strip())  # noqa: S308
        with cls._lock:
            cls._renders[state] = html
            while len(cls._renders) > RENDERS_MAX:
                cls._renders.popitem(last=False)
        return html

    @classmethod
    def all(cls, board: BoardData) -> list[SafeString]:
        """Every tile of the board, in order."""
        return [cls.html(tile=t, state=s) for t, s in zip(board.tiles, board.states, strict=True)]

    @classmethod
    def clear(cls) -> None:
        """Forget every render (tests that change templates or settings)."""
        with cls._lock:
            cls._renders.clear()


def out_of_band(html: str) -> SafeString:
    """A tile's HTML as an out-of-band swap of the element with its id (``id="tile-<slot>"``).

    The attribute goes before the first ``id="tile-``, which is the root element's: device text is
    escaped in the render (``"`` becomes ``&quot;``), so it can never hold that sequence.
    """
    return mark_safe(html.replace(' id="tile-', f'{OOB} id="tile-', 1))  # noqa: S308 (a render, one attribute added)


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one render of a group's grid shows, by digest."""

    frame: str  # tile ids in order, stale flag and heartbeat, degraded notice: a change needs the whole grid
    banners: str  # the banners' content (receivers not answering): a change sends them again
    states: str  # tile_state() of every tile, concatenated (STATE_CHARS each)

    @property
    def id(self) -> str:
        return _digest(f"{self.frame}|{self.banners}|{self.states}")

    @classmethod
    def of(cls, board: BoardData, *, stale: bool, since: str, receivers_down: list[str]) -> Snapshot:
        frame = ",".join(str(t.slot) for t in board.tiles)
        return cls(
            frame=_digest(f"{frame}|{stale}|{since if stale else ''}|{board.degraded}"),
            banners=_digest("\n".join(receivers_down)),
            states="".join(board.states),
        )

    def changed_since(self, old: Snapshot) -> list[int] | None:
        """Indexes of the tiles whose state differs from ``old``; None when the whole grid must go."""
        if old.frame != self.frame or len(old.states) != len(self.states):
            return None
        n, new = STATE_CHARS, self.states
        return [i for i in range(len(new) // n) if old.states[i * n : (i + 1) * n] != new[i * n : (i + 1) * n]]


def _ring_key(group: str) -> str:
    return caching.cache_key("board", "snapshots", group)


class Snapshots:
    """The last RING_SIZE snapshots of each group, in one cache entry per group (``{id: Snapshot}``)."""

    @staticmethod
    def record(*, group: str, snapshot: Snapshot) -> dict[str, Snapshot]:
        """Keep ``snapshot`` among the group's recent ones (a write only when it is new); returns them all."""
        ring = caching.cache_get(_ring_key(group))
        if not isinstance(ring, dict):
            ring = {}
        if snapshot.id not in ring:
            ring = dict(ring)
            ring[snapshot.id] = snapshot
            while len(ring) > RING_SIZE:
                del ring[next(iter(ring))]
            caching.cache_set(_ring_key(group), ring, RING_TIMEOUT)
        return ring

    @staticmethod
    def changes(*, ring: dict[str, Snapshot], since: str, current: Snapshot) -> tuple[list[int], bool] | None:
        """(changed tile indexes, banners changed) from the client's snapshot ``since`` to ``current``.

        None when the client must get the whole grid: its snapshot is unknown or evicted (too far
        behind, another group), the frame changed (tiles added, removed or moved, the poller stopped
        or came back), or more than half the tiles changed (the whole grid costs no more, and every
        screen shares its render).
        """
        old = ring.get(since) if since else None
        if old is None:
            return None
        changed = current.changed_since(old)
        if changed is None or 2 * len(changed) > len(current.states) // STATE_CHARS:
            return None
        return changed, old.banners != current.banners
