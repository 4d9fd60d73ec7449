"""Login throttling's two hooks into django-axes: the client's address, and the page a locked-out login gets."""

from __future__ import annotations

import math

from axes.helpers import get_cool_off
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def locked_out(request: HttpRequest, original_response=None, credentials: dict | None = None) -> HttpResponse:
    """429 with the login page's look: who is locked out, for how long, and how to get in sooner."""
    cool_off = get_cool_off(request)
    minutes = math.ceil(cool_off.total_seconds() / 60) if cool_off else None
    username = (credentials or {}).get("username") or request.POST.get("username", "")
    context = {
        "username": username,
        "failure_limit": settings.AXES_FAILURE_LIMIT,
        "cooloff_minutes": minutes,
    }
    return render(request, "registration/locked_out.html", context, status=429)


def client_address(request: HttpRequest) -> str:
    """The address a login is counted against: the peer, or the one the trusted proxies say they served.

    With ``MICBOARD_NUM_PROXIES`` = N, the N-th address from the right of X-Forwarded-For (each proxy
    appends the peer it saw; what the client wrote itself is further left and never believed), as the
    API's rate limit counts clients.
    """
    remote = request.META.get("REMOTE_ADDR", "")
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    proxies = settings.MICBOARD_NUM_PROXIES
    if not proxies or not forwarded:
        return remote
    addresses = [a.strip() for a in forwarded.split(",")]
    return addresses[-min(proxies, len(addresses))] or remote

