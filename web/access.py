"""Who may see and change what: roles for signed-in users, kiosk links for screens without accounts.

Roles (``micboard.services.roles``) are Django groups, lowest first:

- ``viewer``: the board, the battery check and the sheets, read only. Staff users without a role
  group count as viewers.
- ``operator``: viewer + assignments, performers, scenes, board groups, acknowledging, phone links.
- ``admin``: setup in the Django admin (every micboard permission, and staff). Superusers are admins.

A browser that opened a kiosk link (``/k/<signed token>/``) has no Django user: its session holds
the link's token_id and every request checks the link again, so revoking it (or its expiry) refuses
the very next refresh.

Decisions are cached, so a board refresh (a 304 above all) needs no SQL: the session comes from the
cache (``web.sessions``), and what ``access_of`` decided is kept per user (the role, the session
hash and the auth backend the session must still carry) and per kiosk link (the checked link; its
expiry is compared with the clock on every request, its use noted at most once a minute), under the
``access`` namespace that ``micboard.signals`` bumps on every change of a user, a user's groups, a
role group, a kiosk link or a board group. ``request.user`` is not loaded unless the grant is
missing. A cache or coordination store that is down means the database decides, as without a
cache; an entry lives at most ``GRANT_SECONDS``. Kiosk sessions are read-only: they never pass ``operator_required`` and
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

import logging
from dataclasses import dataclass
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, logout
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.functional import SimpleLazyObject, empty
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django_htmx.http import HttpResponseClientRedirect

from micboard.caching import namespace_version
from micboard.exceptions import CoordinationError, KioskLinkError
from micboard.models import Group, KioskLink
from micboard.services.kiosk import MESSAGES, TOUCH_EVERY, KioskService
from micboard.services.roles import OPERATOR, VIEWER, RoleService
from micboard.signals import ACCESS_NAMESPACE, grant_cache, kiosk_grant_key, user_grant_key

logger = logging.getLogger("web.access")

KIOSK_SESSION_KEY = "micboard_kiosk"
KIOSK_LIFETIME = 365 * 24 * 3600  # seconds a kiosk session lasts when its link does not expire
GRANT_SECONDS = 5 * 60  # longest life of a cached decision (a bump ends it at once)
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


@dataclass(frozen=True)
class UserGrant:
    """What was decided for a user, valid for a session that still carries this hash and backend."""

    session_hash: str
    backend: str
    role: str | None


def access_of(request: HttpRequest) -> Access:
    """The access of a request (computed once per request; from the cache when a decision is kept)."""
    cached = getattr(request, "_micboard_access", None)
    if cached is not None:
        return cached
    version = _grant_version() if _user_not_loaded(request) else None
    access = _kept_access(request, version) if version is not None else None
    if access is None:
        access = _decided_access(request, version)
    request._micboard_access = access
    return access


def _grant_version() -> str | None:
    """The access namespace's version; None when the coordination store is down (nothing cached is used)."""
    try:
        return namespace_version(ACCESS_NAMESPACE)
    except CoordinationError:
        return None


def _grant_get(key: str, *, version: str) -> tuple[bool, Any]:
    """A kept decision, if it was kept under ``version``; a cache that fails is a miss."""
    try:
        entry = grant_cache().get(key)
    except Exception as exc:  # every backend has its own errors; the database decides instead
        logger.warning("access cache unavailable, deciding from the database: %s", exc.__class__.__name__)
        return False, None
    if isinstance(entry, tuple) and len(entry) == 2 and entry[0] == version:
        return True, entry[1]
    return False, None


def _grant_set(key: str, value: Any, *, version: str, timeout: float) -> None:
    """Keep a decision under ``version``; a cache that fails keeps nothing."""
    try:
        grant_cache().set(key, (version, value), timeout)
    except Exception as exc:
        logger.warning("access cache unavailable, not keeping a decision: %s", exc.__class__.__name__)


def _user_not_loaded(request: HttpRequest) -> bool:
    """Whether ``request.user`` is still AuthenticationMiddleware's lazy session user, not loaded yet.

    Only then is the session the whole truth about who is asking (an API token replaces the user),
    and only then was nothing read from the database before the namespace's version.
    """
    user = request.__dict__.get("user")
    return isinstance(user, SimpleLazyObject) and user._wrapped is empty and hasattr(request, "session")


def _kept_access(request: HttpRequest, version: str) -> Access | None:
    """The access from the cached decision for this session; None when there is none to trust."""
    session = request.session
    user_id = session.get(SESSION_KEY)
    if user_id is not None:
        hit, grant = _grant_get(user_grant_key(user_id), version=version)
        if not hit or not isinstance(grant, UserGrant) or session.get(BACKEND_SESSION_KEY) != grant.backend:
            return None
        if not constant_time_compare(session.get(HASH_SESSION_KEY) or "", grant.session_hash):
            return None  # another password, or a session of before it: Django decides (and signs it out)
        return Access(role=grant.role, signed_in=True)
    token_id = session.get(KIOSK_SESSION_KEY)
    if not token_id:
        return Access(role=None, signed_in=False)  # anonymous: Django would find no user either
    hit, link = _grant_get(kiosk_grant_key(str(token_id)), version=version)
    if not hit or not isinstance(link, KioskLink) or link.token_id != str(token_id):
        return None
    now = timezone.now()
    if link.expires_at is not None and link.expires_at <= now:
        return Access(role=None, signed_in=False, kiosk_error=KioskLinkError(MESSAGES["expired"], reason="expired"))
    if link.last_used_at is None or now - link.last_used_at >= TOUCH_EVERY:
        return None  # time to note its use: KioskService.check does, and the decision is kept again
    return Access(role=None, signed_in=False, kiosk=link)


def _decided_access(request: HttpRequest, version: str | None) -> Access:
    """The access decided from the database (today's rules), kept under ``version`` when there is one."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        role = RoleService.role_of(user=user)
        if role is None and user.is_staff and user.is_active:
            role = VIEWER
        backend = request.session.get(BACKEND_SESSION_KEY) if hasattr(request, "session") else None
        if version is not None and backend and hasattr(user, "get_session_auth_hash"):
            grant = UserGrant(session_hash=user.get_session_auth_hash(), backend=backend, role=role)
            _grant_set(user_grant_key(user.pk), grant, version=version, timeout=GRANT_SECONDS)
        return Access(role=role, signed_in=True)
    token_id = request.session.get(KIOSK_SESSION_KEY) if hasattr(request, "session") else None
    if not token_id:
        return Access(role=None, signed_in=False)
    try:
        link = KioskService.check(token_id=str(token_id))
    except KioskLinkError as exc:
        return Access(role=None, signed_in=False, kiosk_error=exc)
    if version is not None:
        _grant_set(kiosk_grant_key(link.token_id), link, version=version, timeout=GRANT_SECONDS)
    return Access(role=None, signed_in=False, kiosk=link)


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


def end_kiosk_session(sender, request=None, user=None, **kwargs) -> None:
    """user_logged_in receiver: a browser where someone signs in stops being a kiosk, and its decision is kept.

    The user is read again after the access namespace's version (what authenticated them was read
    before it), so the first board refresh after signing in needs no user or group query either.
    """
    if request is None or not hasattr(request, "session"):
        return
    request.session.pop(KIOSK_SESSION_KEY, None)
    request.__dict__.pop("_micboard_access", None)
    version = _grant_version()
    backend = request.session.get(BACKEND_SESSION_KEY)
    if version is None or user is None or not backend or not hasattr(user, "get_session_auth_hash"):
        return
    fresh = type(user)._default_manager.filter(pk=user.pk, is_active=True).first()
    if fresh is None:
        return
    role = RoleService.role_of(user=fresh)
    if role is None and fresh.is_staff:
        role = VIEWER
    grant = UserGrant(session_hash=fresh.get_session_auth_hash(), backend=backend, role=role)
    _grant_set(user_grant_key(fresh.pk), grant, version=version, timeout=GRANT_SECONDS)


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
