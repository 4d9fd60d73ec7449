"""HTTP surface of the board: thin function views over BoardService."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from django.conf import settings
from django.contrib import messages
from django.core.cache import cache
from django.db import DatabaseError, connection
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotModified, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.http import urlencode
from django.utils.text import compress_string
from django.views.decorators.cache import never_cache
from django.views.decorators.gzip import gzip_page
from django.views.decorators.http import require_GET
from django_htmx.http import HttpResponseClientRedirect

from micboard import coordination
from micboard.caching import versioned_get, versioned_set
from micboard.exceptions import CoordinationError, DeviceNotFoundError
from micboard.models import Receiver
from micboard.services import BoardService
from micboard.services.board import BoardData, poller_silence_limit
from web.access import access_of, viewer_required
from web.alert_views import panel_context
from web.board_tiles import Snapshot, Snapshots, TileRenders, out_of_band

GRID_KEY = "micboard:board:grid:{group}"  # cache: the latest rendered grid of a group (one entry each)
GRID_TIMEOUT = 24 * 3600  # seconds; the ETag inside the entry decides whether it is current
GRID_TEMPLATE = "micboard/board.html#grid"
STATE_HEADER = "X-Board-State"  # the snapshot id of the grid the client shows (static/js/board.js)


def _group_url(name: str, slug: str) -> str:
    return reverse(name) + (f"?{urlencode({'group': slug})}" if slug else "")


def _poller_stale() -> tuple[bool, str]:
    """(stale, since): whether the poller went quiet, and its last heartbeat as ISO time ("" if never).

    Both are fixed while the poller is quiet (no "N s ago" here: the browser counts the age), so a
    render that shows them can be shared and cached.
    """
    try:
        beat = BoardService.heartbeat()
    except CoordinationError:
        return True, ""
    if beat is None:
        return True, ""
    stale = time.time() - beat > poller_silence_limit()
    return stale, datetime.fromtimestamp(beat, UTC).isoformat(timespec="seconds") if stale else ""


def _clock_time(iso: str) -> str:
    """An ISO time as the crew reads it on the wall clock ("20:14:05", server's TIME_ZONE); "" if none."""
    try:
        return timezone.localtime(datetime.fromisoformat(iso)).strftime("%H:%M:%S") if iso else ""
    except ValueError:
        return iso


def _etag(board: BoardData, stale: bool, since: str, *, tag: str = "b") -> str:
    return f'"{tag}-{board.version}-{board.group}-{since if stale else 0}"'


def _receivers_down(board: BoardData) -> list[str]:
    return sorted({t.receiver_name for t in board.tiles if t.offline})


def _snapshot(board: BoardData, *, stale: bool, since: str) -> Snapshot:
    """What a grid of this board shows, by digest (``web.board_tiles``)."""
    return Snapshot.of(board, stale=stale and not board.degraded, since=since, receivers_down=_receivers_down(board))


def _board_context(board: BoardData, *, stale: bool, since: str, etag: str, state: str = "") -> dict:
    """What the page and the grid partial show. Nothing user-specific: the grid is shared.

    ``state`` is the grid's snapshot id, which the next refresh sends back ("" when there is none to
    compare with: the coordination store is down).
    """
    return {
        "board": board,
        "groups": [
            {"name": g.name, "slug": g.slug, "url": _group_url("board", g.slug), "active": g.slug == board.group}
            for g in board.groups
        ],
        "all_url": reverse("board"),
        "all_active": not board.group,
        "grid_url": _group_url("board-grid", board.group),
        "etag": etag,
        "stale": stale and not board.degraded,
        "stale_since": since,
        "stale_since_text": _clock_time(since),
        "refresh_seconds": settings.MICBOARD_REFRESH_INTERVAL,
        "updated_at": board.updated_at,
        "login_url": reverse(settings.LOGIN_URL),
        "receivers_down": _receivers_down(board),
        "state": state,
        "tiles_html": TileRenders.all(board),
    }


def _group_gone(request: HttpRequest, group: str, *, page: str) -> str:
    """Leave a notice for the next page that the group no longer exists; return where All is."""
    messages.info(request, f"The group “{group[:64]}” no longer exists; showing All.")
    return reverse(page)


@require_GET
@viewer_required
def board(request: HttpRequest) -> HttpResponse:
    """The front-of-house board: group tabs and the tile grid, complete without JavaScript.

    A group that no longer exists (a deleted board, an old bookmark) sends the screen to All with
    a notice rather than an error page. A kiosk scoped to a group (viewer_required keeps it on that
    group) gets that group's tab only.
    """
    data = page_board(request, page="board")
    if isinstance(data, HttpResponse):
        return data
    stale, since = _poller_stale()
    state = _record(data, stale, since)
    context = _board_context(data, stale=stale, since=since, etag=_etag(data, stale, since), state=state)
    scope = access_of(request).scope
    if scope is not None:
        context["groups"] = [g for g in context["groups"] if g["slug"] == scope.slug]
        context["scoped"] = True
    context.update(panel_context(request, screen="board", group=data.group))  # the alert badge and list
    return render(request, "micboard/board.html", context)


def page_board(request: HttpRequest, *, page: str) -> BoardData | HttpResponse:
    """The board of a full page's ``?group=``, or a redirect to the page of All for a group that is gone."""
    group = request.GET.get("group", "")
    try:
        return BoardService.board(group=group)
    except DeviceNotFoundError:
        return redirect(_group_gone(request, group, page=page))


def _refresh_board(request: HttpRequest, group: str, *, page: str) -> BoardData | HttpResponse:
    """The board of a partial's refresh, or, for a group deleted meanwhile, the way back to All."""
    try:
        return BoardService.board(group=group)
    except DeviceNotFoundError as exc:
        if request.htmx:
            return HttpResponseClientRedirect(_group_gone(request, group, page=page))
        raise Http404(str(exc)) from exc


def shared_render(
    request: HttpRequest, *, page: str, group: str, template: str, key: str, tag: str, context: Callable[..., dict]
) -> HttpResponse:
    """A partial rendered once per board version and group and shared by every screen; 304 when current.

    Args:
        page: URL name of the full page of this partial, where a screen on a deleted group goes.
        group: the group's slug ("" for every channel).
        template: the partial ("page.html#partial").
        key: cache key of the render, with ``{group}`` (one entry per group, replaced as the version moves on).
        tag: the ETag's prefix, one per partial.
        context: builds the template's context from ``(BoardData, stale=, since=, etag=)``; nothing
            user-specific or ageing, since the render is shared.
    Returns:
        A bodiless 304 when If-None-Match holds the current ETag (one coordination read, no SQL), else the
        render. With the coordination store down there is no version: rendered from the database every
        time, without an ETag.
        A group deleted meanwhile: HTMX gets ``HX-Redirect`` to the page of All with a notice (a full
        page load: the tabs, the address and the shortcut keys stop pointing at the deleted group, and
        the notice is per session, never in the shared render).
    Raises:
        Http404: no group has that slug (a request that is not HTMX's).
    """
    stale, since = _poller_stale()
    try:
        version = BoardService.version()
    except CoordinationError:
        version = ""
    if version:
        etag = f'"{tag}-{version}-{group}-{since if stale else 0}"'
        if etag in _if_none_match(request):
            response = HttpResponseNotModified()
        else:
            cache_key = key.format(group=group)
            hit, html = versioned_get(cache_key, version=etag)  # one slot per group, tagged with its ETag
            if not hit:
                data = _refresh_board(request, group, page=page)
                if isinstance(data, HttpResponse):
                    return data
                etag = _etag(data, stale, since, tag=tag)  # the version the tiles were built for
                html = render_to_string(template, context(data, stale=stale, since=since, etag=etag))
                versioned_set(cache_key, html, version=etag, timeout=GRID_TIMEOUT)
            response = HttpResponse(html)
        response["ETag"] = etag
    else:
        data = _refresh_board(request, group, page=page)
        if isinstance(data, HttpResponse):
            return data
        response = HttpResponse(render_to_string(template, context(data, stale=stale, since=since, etag="")))
    response["Cache-Control"] = "no-cache, private"
    response["Vary"] = "Cookie, HX-Request"
    return response


def _record(board: BoardData, stale: bool, since: str) -> str:
    """Keep this board's snapshot among the group's recent ones; its id ("" with no version to key on)."""
    if not board.version:
        return ""
    snapshot = _snapshot(board, stale=stale, since=since)
    Snapshots.record(group=board.group, snapshot=snapshot)
    return snapshot.id


def _if_none_match(request: HttpRequest) -> list[str]:
    """The client's ETags, weak or strong alike (gzip_page sends ours as weak ``W/"…"``: same content)."""
    return [t.strip().removeprefix("W/") for t in request.headers.get("If-None-Match", "").split(",")]


def _grid_headers(response: HttpResponse, etag: str) -> HttpResponse:
    if etag:
        response["ETag"] = etag
    response["Cache-Control"] = "no-cache, private"
    response["Vary"] = f"Cookie, HX-Request, {STATE_HEADER}"
    return response


def _changed_tiles(
    data: BoardData, changed: list[int], *, banners: bool, stale: bool, since: str, etag: str, state: str
) -> HttpResponse:
    """The changed tiles (and banners, when they changed) as out-of-band swaps by id, with the new ETag and state."""
    context = {
        "board": data,
        "oob": True,
        "etag": etag,
        "state": state,
        "updated_at": data.updated_at,
        "banners_changed": banners,
        "stale": stale and not data.degraded,
        "stale_since": since,
        "stale_since_text": _clock_time(since),
        "receivers_down": _receivers_down(data),
        "tiles_html": [out_of_band(TileRenders.html(tile=data.tiles[i], state=data.states[i])) for i in changed],
    }
    response = HttpResponse(render_to_string("micboard/board.html#changes", context))
    response["HX-Reswap"] = "none"  # the grid stays; its changed tiles, banners and bookkeeping swap by id
    return response


@require_GET
@gzip_page  # the grid holds no secret (shared, no CSRF token): compressed, a 4-tile change is about 1.3 KB
@viewer_required
def board_grid(request: HttpRequest) -> HttpResponse:
    """A refresh of the tile grid: 304, only the changed tiles, or the whole grid.

    - 304 with no body when If-None-Match holds the current ETag (one coordination read, no SQL).
    - An HTMX refresh whose ``X-Board-State`` names a recent snapshot of this group with the same
      frame gets only the tiles whose state changed (plus the banners when they changed and the
      new ETag and state in ``#board-meta``), as out-of-band swaps with ``HX-Reswap: none``: the
      grid element and every unchanged tile stay in the page (``web.board_tiles``).
    - Anything else gets the whole grid, rendered once per board version and group and shared by
      every screen (kept in the cache, one entry per group), its tiles from the per-state renders.
    With the coordination store down there is no version: the grid is rendered from the database on
    every refresh, without an ETag, and says that live updates are impaired.
    A group deleted meanwhile: HTMX gets ``HX-Redirect`` to All with a notice; anything else a 404.
    """
    group = request.GET.get("group", "")
    stale, since = _poller_stale()
    try:
        version = BoardService.version()
    except CoordinationError:
        version = ""
    etag = f'"b-{version}-{group}-{since if stale else 0}"' if version else ""
    if etag and etag in _if_none_match(request):
        return _grid_headers(HttpResponseNotModified(), etag)
    cache_key = GRID_KEY.format(group=group)
    if etag and not request.headers.get(STATE_HEADER):
        grid = _stored_grid(cache_key, etag)
        if grid is not None:
            return _whole_grid(request, grid, etag)
    data = _refresh_board(request, group, page="board")
    if isinstance(data, HttpResponse):
        return data
    if not data.version:
        html = render_to_string(GRID_TEMPLATE, _board_context(data, stale=stale, since=since, etag=""))
        return _grid_headers(HttpResponse(html), "")
    etag = _etag(data, stale, since)  # the version the tiles were built for
    snapshot = _snapshot(data, stale=stale, since=since)
    ring = Snapshots.record(group=data.group, snapshot=snapshot)
    delta = Snapshots.changes(ring=ring, since=request.headers.get(STATE_HEADER, ""), current=snapshot)
    if request.htmx and delta is not None:
        changed, banners = delta
        response = _changed_tiles(
            data, changed, banners=banners, stale=stale, since=since, etag=etag, state=snapshot.id
        )
        response = _grid_headers(response, etag)
        response["Cache-Control"] = "no-store"  # relative to this client's state: nobody else's answer
        return response
    grid = _stored_grid(cache_key, etag)
    if grid is None:
        context = _board_context(data, stale=stale, since=since, etag=etag, state=snapshot.id)
        html = render_to_string(GRID_TEMPLATE, context)
        grid = (html, compress_string(html.encode()))
        versioned_set(cache_key, grid, version=etag, timeout=GRID_TIMEOUT)
        _local_grids[cache_key] = (etag, grid)
    return _whole_grid(request, grid, etag)


# The latest whole grid of each group in this process, beside the shared cache: with meters moving,
# every screen fetches the same few-hundred-KB grid of a version, read and compressed once, not per screen.
_local_grids: dict[str, tuple[str, tuple[str, bytes]]] = {}


def _stored_grid(cache_key: str, etag: str) -> tuple[str, bytes] | None:
    """(html, gzipped html) of a group's grid at ``etag``, from this process or the shared cache."""
    local = _local_grids.get(cache_key)
    if local is not None and local[0] == etag:
        return local[1]
    hit, grid = versioned_get(cache_key, version=etag)  # one slot per group, tagged with its ETag
    if not hit or not (isinstance(grid, tuple) and len(grid) == 2):
        return None
    _local_grids[cache_key] = (etag, grid)
    return grid


def _whole_grid(request: HttpRequest, grid: tuple[str, bytes], etag: str) -> HttpResponse:
    """The whole grid, compressed once per version for every browser that accepts gzip (they all do)."""
    html, compressed = grid
    if "gzip" in request.headers.get("Accept-Encoding", "").lower():
        response = _grid_headers(HttpResponse(compressed), etag)
        response["Content-Encoding"] = "gzip"
        response["ETag"] = f"W/{etag}"  # as gzip_page marks a compressed representation
        patch_vary_headers(response, ["Accept-Encoding"])
        return response
    return _grid_headers(HttpResponse(html), etag)


def _check(fn) -> str:
    try:
        fn()
    except Exception as exc:  # each dependency fails in its own way; report it by name
        return f"error: {exc.__class__.__name__}: {exc}"[:300]
    return "ok"


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_cache() -> None:
    cache.set("micboard:healthz", "ok", timeout=10)
    if cache.get("micboard:healthz") != "ok":
        raise RuntimeError("a value written was not read back")


def _check_coordination() -> None:
    coordination.store().get("board:version")


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for monitoring: each dependency by name and the poller; counts for signed-in users only.

    503 names what failed ("database", "cache", "coordination", "poller"); 200 when all is well. How
    many receivers are monitored and answer is shown to signed-in users (the operator health page has
    the detail), never to anonymous callers.
    """
    checks = {
        "database": _check(_check_database),
        "cache": _check(_check_cache),
        "coordination": _check(_check_coordination),
    }
    poller = BoardService.staleness() if checks["coordination"] == "ok" else "unknown (coordination store down)"
    checks["poller"] = "ok" if not poller else f"stale: {poller}"
    body: dict = {"status": "ok", "checks": checks, "failing": [name for name, v in checks.items() if v != "ok"]}
    if checks["database"] == "ok" and request.user.is_authenticated:
        try:
            monitored = Receiver.objects.active()
            body["receivers"] = monitored.count()
            body["online"] = monitored.filter(online=True).count()
        except DatabaseError as exc:
            checks["database"] = f"error: {exc}"[:300]
            body["failing"].insert(0, "database")
    if body["failing"]:
        body["status"] = "fail"
    return JsonResponse(body, status=503 if body["failing"] else 200)
