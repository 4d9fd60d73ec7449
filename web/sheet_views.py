"""Printable channel sheets (HTML for A4 / Letter) and the same rows as a CSV download."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.text import slugify
from django.views.decorators.http import require_GET

from micboard.exceptions import DeviceNotFoundError
from micboard.models import Group
from micboard.services import SheetService
from web.access import viewer_required
from web.views import _group_url


@require_GET
@viewer_required
def sheet(request: HttpRequest) -> HttpResponse:
    """The channel sheet of every channel (or of ``?group=``); ``?format=csv`` downloads it as CSV."""
    group = request.GET.get("group", "")
    try:
        header = SheetService.header(group=group)
        rows = SheetService.rows(group=group)
    except DeviceNotFoundError as exc:
        raise Http404(str(exc)) from exc
    if request.GET.get("format") == "csv":
        response = HttpResponse(
            "\ufeff" + SheetService.csv_text(rows=rows), content_type="text/csv; charset=utf-8"
        )
        name = slugify(f"{header.show or 'micboard'} {header.group or 'channels'}") or "channels"
        response["Content-Disposition"] = f'attachment; filename="{name}.csv"'
        return response
    context = {
        "header": header,
        "rows": rows,
        "groups": [
            {"name": g.name, "url": _group_url("sheet", g.slug), "active": g.slug == group}
            for g in Group.objects.all()
        ],
        "all_url": reverse("sheet"),
        "all_active": not group,
        "csv_url": _group_url("sheet", group) + ("&" if group else "?") + "format=csv",
    }
    return render(request, "micboard/sheet.html", context)
