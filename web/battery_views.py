"""Phone battery check: every pack in one column, most urgent first, refreshed like the board grid."""

from __future__ import annotations

import json

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.cache import cache_control
from django.views.decorators.gzip import gzip_page
from django.views.decorators.http import require_GET

from micboard.services import BatteryService
from micboard.services.board import BoardData
from web.access import viewer_required
from web.alert_views import panel_context
from web.views import _clock_time, _etag, _group_url, _poller_stale, page_board, shared_render

LIST_KEY = "micboard:battery:list:{group}"  # cache: the latest rendered list of a group (one entry each)
THEME_COLOUR = "#0d0f12"  # as <meta name="theme-color"> in base.html


def _battery_context(board: BoardData, *, stale: bool, since: str, etag: str) -> dict:
    """What the page and its list partial show. Nothing user-specific or ageing: the list is shared."""
    return {
        "board": board,
        "rows": BatteryService.rows(board=board),
        "groups": [
            {"name": g.name, "url": _group_url("battery", g.slug), "active": g.slug == board.group}
            for g in board.groups
        ],
        "all_url": reverse("battery"),
        "all_active": not board.group,
        "board_url": _group_url("board", board.group),
        "list_url": _group_url("battery-list", board.group),
        "etag": etag,
        "stale": stale and not board.degraded,
        "stale_since": since,
        "stale_since_text": _clock_time(since),
        "refresh_seconds": settings.MICBOARD_REFRESH_INTERVAL,
    }


@require_GET
@viewer_required
def battery(request: HttpRequest) -> HttpResponse:
    """The phone view: packs sorted by urgency, group links at the bottom, complete without JavaScript."""
    data = page_board(request, page="battery")
    if isinstance(data, HttpResponse):
        return data
    stale, since = _poller_stale()
    context = _battery_context(data, stale=stale, since=since, etag=_etag(data, stale, since, tag="bat"))
    context.update(panel_context(request, screen="phone", group=data.group))  # the alert badge and list
    return render(request, "micboard/battery.html", context)


@require_GET
@gzip_page  # shared render, no secret in it
@viewer_required
def battery_list(request: HttpRequest) -> HttpResponse:
    """The list alone, for HTMX refreshes: one shared render per board version and group, 304 when current."""
    return shared_render(
        request,
        page="battery",
        group=request.GET.get("group", ""),
        template="micboard/battery.html#list",
        key=LIST_KEY,
        tag="bat",
        context=_battery_context,
    )


@require_GET
@cache_control(max_age=3600, public=True)
def manifest(request: HttpRequest) -> HttpResponse:
    """The web app manifest: installs the battery check on a phone's home screen (icons from static/)."""
    body = {
        "name": "micboard battery check",
        "short_name": "Batteries",
        "start_url": reverse("battery"),
        "scope": "/",
        "display": "standalone",
        "orientation": "portrait",
        "background_color": THEME_COLOUR,
        "theme_color": THEME_COLOUR,
        "icons": [
            {"src": static(f"icons/icon-{size}.png"), "sizes": f"{size}x{size}", "type": "image/png", "purpose": "any"}
            for size in (192, 512)
        ],
    }
    return HttpResponse(json.dumps(body, indent=2), content_type="application/manifest+json")
