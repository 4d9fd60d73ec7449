"""Who may see and change what: roles for signed-in users, kiosk links for screens without accounts.

Roles (``micboard.services.roles``) are Django groups, lowest first:

- ``viewer``: the board, the battery check and the sheets, read only. Staff users without a role
  group count as viewers.
- ``operator``: viewer + assignments, performers, scenes, board groups, acknowledging, phone links.
- ``admin``: setup in the Django admin (every micboard permission, and staff). Superusers are admins.

A browser that opened a kiosk link (``/k/<signed token>/``) has no Django user: its session holds
the link's token_id and every request checks the link again, so revoking it (or its expiry) refuses
the very next refresh. Kiosk sessions are read-only: they never pass ``operator_required`` and
:class:`KioskMiddleware` refuses any POST/PUT/PATCH/DELETE from them.

API for views (apply the decorator closest to the function, under ``require_GET``/``require_POST``):

``@viewer_required``
    Signed-in user with a role (or staff/superuser), or a usable kiosk session. Anonymous: redirect
    to the login page (HTMX requests get ``HX-Redirect`` to it). Signed in without a role: 403 page
    "ask your production manager for a role". Revoked/expired kiosk: 403 page saying so. A kiosk
    scoped to a group only gets requests whose ``group`` query parameter is its group's slug: a
    page is redirected to the same path with ``?group=<slug>``, an HTMX request is refused (403).
``@operator_required``
    Operator role or above; kiosk sessions never (403), anonymous users are sent to log in.
``access_of(request) -> Access``
    What the request may do (cached on the request): ``.role``, ``.kiosk`` (the KioskLink or None),
    ``.scope`` (the kiosk's Group or None), ``.can_view``, ``.can_operate``.
``is_operator(request)`` / ``is_viewer(request)``
    Booleans for views.
``access_context`` (context processor, in settings)
    ``can_operate``, ``can_view``, ``micboard_role`` and ``kiosk`` for every template. Never use them
    inside a partial that is cached and shared between screens (the board's grid).

``refuse(request, message, status=403, reason="role")``
    The refusal page, for views that refuse something finer themselves.

Refusals render ``templates/micboard/access_denied.html`` with status 403 (400 for a tampered kiosk
token); board.js reloads the page when a grid refresh answers 401 or 403, so the screen shows why.

Moving a view over from the interim decorators: ``@login_required`` on a read view becomes
``@viewer_required``; ``@login_required`` + ``@permission_required("micboard.change_x", raise_exception=True)``
on a write becomes ``@operator_required`` (a ``permission_required`` may stay under it when a write
needs a finer check than the role; the operator group holds the permissions listed in
``micboard.services.roles``, where new models are added).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import wraps

from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django_htmx.http import HttpResponseClientRedirect

from micboard.exceptions import KioskLinkError
from micboard.models import Group, KioskLink
from micboard.services.kiosk import KioskService
from micboard.services.roles import OPERATOR, VIEWER, RoleService

KIOSK_SESSION_KEY = "micboard_kiosk"
KIOSK_LIFETIME = 365 * 24 * 3600  # seconds a kiosk session lasts when its link does not expire
NO_ROLE_MESSAGE = (
    "You are signed in, but you have no role on this micboard yet. Ask your production manager for a role."
)
NOT_OPERATOR_MESSAGE = (
    "Your role lets you watch the board, not change it. Ask your production manager for the operator role."
)
KIOSK_READ_ONLY_MESSAGE = "This screen uses a kiosk link, which is read-only. Sign in to change anything."


@dataclass(frozen=True)
class Access:
    """What one request may do."""

    role: str | None  # viewer / operator / admin of the signed-in user, None otherwise
    signed_in: bool
    kiosk: KioskLink | None = None
    kiosk_error: KioskLinkError | None = None

    @property
    def scope(self) -> Group | None:
        return self.kiosk.group if self.kiosk else None

    @property
    def can_view(self) -> bool:
        return self.role is not None or self.kiosk is not None

    @property
    def can_operate(self) -> bool:
        return RoleService.at_least(role=self.role, minimum=OPERATOR)


def access_of(request: HttpRequest) -> Access:
    """The access of a request (computed once per request)."""
    cached = getattr(request, "_micboard_access", None)
    if cached is not None:
        return cached
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        role = RoleService.role_of(user=user)
        if role is None and user.is_staff and user.is_active:
            role = VIEWER
        access = Access(role=role, signed_in=True)
    else:
        token_id = request.session.get(KIOSK_SESSION_KEY) if hasattr(request, "session") else None
        access = Access(role=None, signed_in=False)
        if token_id:
            try:
                access = Access(role=None, signed_in=False, kiosk=KioskService.check(token_id=str(token_id)))
            except KioskLinkError as exc:
                access = Access(role=None, signed_in=False, kiosk_error=exc)
    request._micboard_access = access
    return access


def is_operator(request: HttpRequest) -> bool:
    return access_of(request).can_operate


def is_viewer(request: HttpRequest) -> bool:
    return access_of(request).can_view


def access_context(request: HttpRequest) -> dict:
    """Context processor: what the templates may offer this screen."""
    access = access_of(request)
    return {
        "can_operate": access.can_operate,
        "can_view": access.can_view,
        "micboard_role": access.role or "",
        "kiosk": access.kiosk,
    }


def refuse(request: HttpRequest, message: str, *, status: int = 403, reason: str = "role") -> HttpResponse:
    """The refusal page (also the body of refused HTMX requests, which board.js turns into a reload)."""
    response = render(
        request, "micboard/access_denied.html", {"message": message, "reason": reason}, status=status
    )
    response["Cache-Control"] = "no-store"
    return response


def _to_login(request: HttpRequest) -> HttpResponse:
    if getattr(request, "htmx", False):
        page = reverse("board")
        current = request.headers.get("HX-Current-URL", "")
        if current and url_has_allowed_host_and_scheme(current, allowed_hosts={request.get_host()}):
            page = current
        return HttpResponseClientRedirect(f"{reverse(settings.LOGIN_URL)}?{urlencode({'next': page})}")
    return redirect_to_login(request.get_full_path())


def _kiosk_scope(request: HttpRequest, access: Access) -> HttpResponse | None:
    """Keep a scoped kiosk on its group: redirect a page, refuse a partial."""
    group = access.scope
    if group is None or request.GET.get("group", "") == group.slug:
        return None
    if getattr(request, "htmx", False):
        return refuse(request, f"This kiosk link shows only {group.name}.", reason="scope")
    query = request.GET.copy()
    query["group"] = group.slug
    return HttpResponseRedirect(f"{request.path}?{query.urlencode()}")


def viewer_required(view):
    """Signed-in users with a role, staff, superusers, or a usable kiosk session (scoped to its group)."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs):
        access = access_of(request)
        if access.kiosk_error is not None:
            return refuse(request, str(access.kiosk_error), reason=access.kiosk_error.reason)
        if not access.can_view:
            return refuse(request, NO_ROLE_MESSAGE) if access.signed_in else _to_login(request)
        return _kiosk_scope(request, access) or view(request, *args, **kwargs)

    return wrapped


def operator_required(view):
    """Operator role or above; never a kiosk session."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs):
        access = access_of(request)
        if access.kiosk_error is not None:
            return refuse(request, str(access.kiosk_error), reason=access.kiosk_error.reason)
        if access.kiosk is not None:
            return refuse(request, KIOSK_READ_ONLY_MESSAGE, reason="kiosk")
        if not access.signed_in:
            return _to_login(request)
        if not access.can_operate:
            return refuse(request, NOT_OPERATOR_MESSAGE if access.role else NO_ROLE_MESSAGE)
        return view(request, *args, **kwargs)

    return wrapped


def start_kiosk_session(request: HttpRequest, link: KioskLink) -> None:
    """Turn this browser into a kiosk screen of ``link`` (signing out whoever was signed in)."""
    if request.user.is_authenticated:
        logout(request)
    else:
        request.session.cycle_key()
    request.session[KIOSK_SESSION_KEY] = link.token_id
    request.session.set_expiry(link.expires_at or KIOSK_LIFETIME)
    request._micboard_access = Access(role=None, signed_in=False, kiosk=link)


def end_kiosk_session(sender, request=None, **kwargs) -> None:
    """user_logged_in receiver: a browser where someone signs in stops being a kiosk."""
    if request is not None and hasattr(request, "session"):
        request.session.pop(KIOSK_SESSION_KEY, None)
        request.__dict__.pop("_micboard_access", None)


class KioskMiddleware:
    """Kiosk sessions are read-only: refuse every unsafe method except signing in (which ends the kiosk)."""

    SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if (
            request.method not in self.SAFE_METHODS
            and not request.user.is_authenticated
            and request.session.get(KIOSK_SESSION_KEY)
            and request.path not in {reverse(settings.LOGIN_URL), reverse("admin:login")}
        ):
            return refuse(request, KIOSK_READ_ONLY_MESSAGE, reason="kiosk")
        return self.get_response(request)
