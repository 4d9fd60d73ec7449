"""Kiosk links over HTTP: opening one (/k/<token>/), the phone QR page and the QR code image."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.decorators import login_required, permission_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from micboard.exceptions import ConfigurationError, KioskLinkError
from micboard.models import Group, KioskLink
from micboard.services import KioskService
from micboard.services.kiosk import DESTINATIONS
from web.access import operator_required, refuse, start_kiosk_session

# What the phone page offers as a new link's lifetime: (form value, label, timedelta or None)
VALIDITY = [
    ("12h", "12 hours", timedelta(hours=12)),
    ("1d", "1 day", timedelta(days=1)),
    ("7d", "7 days", timedelta(days=7)),
    ("never", "Until revoked", None),
]


@require_GET
@never_cache
def kiosk_open(request: HttpRequest, token: str) -> HttpResponse:
    """Open a kiosk link: this browser becomes a read-only screen (no account) and lands on the board.

    ``?next=/battery/`` lands on the phone view instead (only the paths of DESTINATIONS are followed).
    """
    try:
        link = KioskService.resolve(token=token)
    except KioskLinkError as exc:
        return refuse(request, str(exc), status=400 if exc.reason == "invalid" else 403, reason=exc.reason)
    start_kiosk_session(request, link)
    target = request.GET.get("next", "")
    return redirect(target if target in DESTINATIONS.values() else reverse("board"))


def _absolute(request: HttpRequest, link: KioskLink, destination: str) -> str:
    return request.build_absolute_uri(KioskService.path(link=link, destination=destination))


@require_GET
@login_required
@permission_required("micboard.view_kiosklink", raise_exception=True)
def kiosk_qr(request: HttpRequest, pk: int) -> HttpResponse:
    """The QR code of a usable kiosk link as SVG (``?to=battery`` for the phone view, else the board)."""
    destination = request.GET.get("to", "board")
    link = KioskService.usable().filter(pk=pk).first()
    if link is None or destination not in DESTINATIONS:
        raise Http404("No usable kiosk link with that id")
    svg = KioskService.qr_svg(url=_absolute(request, link, destination))
    response = HttpResponse(svg, content_type="image/svg+xml")
    response["Cache-Control"] = "no-store, private"  # the picture is a working link
    return response


def _phone_context(request: HttpRequest, *, selected: KioskLink | None, errors: list[str], form: dict) -> dict:
    return {
        "links": list(KioskService.usable()),
        "selected": selected,
        "selected_url": _absolute(request, selected, "battery") if selected else "",
        "qr_url": f"{reverse('kiosk-qr', args=[selected.pk])}?{urlencode({'to': 'battery'})}" if selected else "",
        "groups": list(Group.objects.order_by("position", "name")),
        "validity": VALIDITY,
        "errors": errors,
        "form": form,
        "can_create": request.user.has_perm("micboard.add_kiosklink"),
        # A code made on http://localhost/ points the phone at itself: say so instead of failing on the phone.
        "loopback": request.get_host().rsplit(":", 1)[0] in {"localhost", "127.0.0.1", "[::1]"},
    }


@require_http_methods(["GET", "POST"])
@operator_required
def phone(request: HttpRequest) -> HttpResponse:
    """Operators: a QR code that opens the phone battery view through a kiosk link (new or existing)."""
    errors: list[str] = []
    form = {"name": "Phone", "group": "", "valid_for": "12h"}
    if request.method == "POST":
        if not request.user.has_perm("micboard.add_kiosklink"):
            return refuse(request, "Your account may not create kiosk links.")
        form = {key: request.POST.get(key, "").strip() for key in form}
        validity = {value: delta for value, _, delta in VALIDITY}
        group = None
        if form["group"]:
            group = Group.objects.filter(slug=form["group"]).first()
            if group is None:
                errors.append("That group does not exist (any more): choose another.")
        if form["valid_for"] not in validity:
            errors.append("Choose how long the link stays valid.")
        if not errors:
            try:
                link = KioskService.create(
                    name=form["name"], group=group, valid_for=validity[form["valid_for"]], created_by=request.user
                )
            except ConfigurationError as exc:
                errors.append(str(exc))
            else:
                return redirect(f"{reverse('phone')}?{urlencode({'link': link.pk})}")
        return render(request, "micboard/phone.html", _phone_context(request, selected=None, errors=errors, form=form),
                      status=400)
    selected = None
    if request.GET.get("link", "").isdigit():
        selected = KioskService.usable().filter(pk=int(request.GET["link"])).first()
        if selected is None:
            errors.append("That link was revoked or has expired: create a new one.")
    return render(request, "micboard/phone.html", _phone_context(request, selected=selected, errors=errors, form=form))
