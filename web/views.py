"""HTTP surface of the board: thin function views over BoardService."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.cache import cache
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotModified, JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_GET
from django_htmx.http import HttpResponseClientRedirect

from micboard.exceptions import DeviceNotFoundError
from micboard.models import Receiver
from micboard.services import BoardService

GRID_HTML_TIMEOUT = 300  # seconds; versions make a cached grid exact, this only bounds the cache's size


def _group_url(name: str, slug: str) -> str:
    return reverse(name) + (f"?{urlencode({'group': slug})}" if slug else "")


def _board_context(request: HttpRequest, *, group: str, stale: str, etag: str) -> dict:
    try:
        board = BoardService.board(group=group)
    except DeviceNotFoundError as exc:
        raise Http404(str(exc)) from exc
    return {
        "board": board,
        "groups": [
            {"name": g.name, "slug": g.slug, "url": _group_url("board", g.slug), "active": g.slug == group}
            for g in board.groups
        ],
        "all_url": reverse("board"),
        "all_active": not group,
        "grid_url": _group_url("board-grid", group),
        "etag": etag,
        "stale": bool(stale),
        "stale_reason": stale,
        "refresh_seconds": settings.MICBOARD_REFRESH_INTERVAL,
        "updated_at": board.updated_at,
    }


def _etag(group: str, stale: str) -> str:
    return f'"b-{BoardService.version()}-{group}-{1 if stale else 0}"'


@require_GET
@login_required
def board(request: HttpRequest) -> HttpResponse:
    """The front-of-house board: group tabs and the tile grid, complete without JavaScript."""
    group = request.GET.get("group", "")
    stale = BoardService.staleness()
    context = _board_context(request, group=group, stale=stale, etag=_etag(group, stale))
    return render(request, "micboard/board.html", context)


@require_GET
def board_grid(request: HttpRequest) -> HttpResponse:
    """The tile grid alone, for HTMX refreshes; 304 with no body when the client's copy is current."""
    if not request.user.is_authenticated:
        if request.htmx:
            return HttpResponseClientRedirect(f"{reverse(settings.LOGIN_URL)}?next={reverse('board')}")
        return redirect_to_login(request.get_full_path())
    group = request.GET.get("group", "")
    stale = BoardService.staleness()
    etag = _etag(group, stale)
    if etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
        response = HttpResponseNotModified()
    else:
        # The grid holds nothing user-specific, so every screen shares one render per board version.
        key = f"micboard:board:grid-html:{etag}"
        html = cache.get(key)
        if html is None:
            context = _board_context(request, group=group, stale=stale, etag=etag)
            html = render_to_string("micboard/board.html#grid", context, request)
            cache.set(key, html, timeout=GRID_HTML_TIMEOUT)
        response = HttpResponse(html)
    response["ETag"] = etag
    response["Cache-Control"] = "no-cache, private"
    response["Vary"] = "Cookie, HX-Request"
    return response


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for monitoring: is the poller running, how many receivers answer."""
    stale = BoardService.staleness()
    monitored = Receiver.objects.active()
    return JsonResponse(
        {
            "poller": "stale" if stale else "ok",
            "detail": stale,
            "receivers": monitored.count(),
            "online": monitored.filter(online=True).count(),
        },
        status=200 if not stale else 503,
    )
