"""micboard's own middleware: the request log, suspicious requests, and the receivers' health header.

Security headers are not here: Django's SecurityMiddleware (nosniff, referrer policy) and django-csp
(``CONTENT_SECURITY_POLICY`` in settings) set them.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from urllib.parse import unquote

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from micboard import metrics
from micboard.services.health import ConnectionHealthService
from web.access import access_of
from web.log import request_id

logger = logging.getLogger("web.requests")
suspicious_logger = logging.getLogger("web.suspicious")

REQUEST_ID_HEADER = "X-Request-ID"
# An incoming id is kept when it is short and plain (a proxy's UUID or trace id), else replaced:
# nothing a client sends reaches the log unchecked.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def _request_id(request: HttpRequest) -> str:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    return incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex


class RequestLogMiddleware:
    """One log line per request with its id and duration; ``Server-Timing``; slow requests warned.

    The id comes from ``X-Request-ID`` when the client (a proxy) sent a plain one of at most 64
    characters, else is generated; it is returned in ``X-Request-ID`` and carried by every log
    record of the request (``web.log.request_id``; JSON lines with MICBOARD_LOG_FORMAT=json). Only
    the path is logged, never the query string or a header. A request slower than
    MICBOARD_SLOW_REQUEST_MS is logged at WARNING, the others at INFO; the duration also goes to the
    request-latency metrics (``http.request``).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        rid = _request_id(request)
        request.request_id = rid
        token = request_id.set(rid)
        start = time.perf_counter()
        try:
            response = self.get_response(request)
        finally:
            request_id.reset(token)
        elapsed_ms = (time.perf_counter() - start) * 1000
        response[REQUEST_ID_HEADER] = rid
        response["Server-Timing"] = f"app;dur={elapsed_ms:.1f}"
        if not request.path.startswith(settings.STATIC_URL if settings.STATIC_URL.startswith("/") else "/static/"):
            metrics.recorder.record("http.request", ms=elapsed_ms, ok=response.status_code < 500)
        slow = elapsed_ms > settings.MICBOARD_SLOW_REQUEST_MS
        level = logging.WARNING if slow else logging.INFO
        if logger.isEnabledFor(level):
            path = request.path[:200]
            logger.log(
                level,
                "%s%s %s %s %.0f ms id=%s",
                "slow request " if slow else "",
                request.method,
                path,
                response.status_code,
                elapsed_ms,
                rid,
                extra={
                    "request_id": rid,
                    "micboard": {
                        "method": request.method,
                        "path": path,
                        "status": response.status_code,
                        "duration_ms": round(elapsed_ms, 1),
                        "slow": slow,
                    },
                },
            )
        return response


# Paths scanners try on every server; micboard has none of them.
SCANNER_PATHS = re.compile(
    r"^/(?:wp-admin|wp-login\.php|wp-content|wp-includes|xmlrpc\.php|phpmyadmin|pma|cgi-bin|vendor/phpunit"
    r"|\.env|\.git|\.svn|\.hg|\.aws|\.ssh|\.DS_Store|server-status|actuator|boaform|HNAP1)(?:/|$|\.)",
    re.IGNORECASE,
)
_TRAVERSAL = re.compile(r"(?:^|/)\.\.(?:/|\\|$)")
MAX_HEADER_BYTES = 8192  # one header longer than this is suspicious (browsers send far less)


def suspicion(request: HttpRequest) -> str:
    """Why a request looks hostile ("" when it does not): traversal, a scanner's path, a huge header."""
    raw = request.META.get("RAW_URI") or request.get_full_path()
    raw_path = raw.split("?", 1)[0]
    decoded = unquote(unquote(raw_path))  # ..%252f is ..%2f once decoded, ../ twice
    if _TRAVERSAL.search(decoded) or _TRAVERSAL.search(request.path) or "\x00" in decoded:
        return "path traversal"
    if SCANNER_PATHS.search(request.path):
        return "scanner path"
    for key, value in request.META.items():
        if key.startswith("HTTP_") and isinstance(value, str) and len(value) > MAX_HEADER_BYTES:
            return f"oversized header {key[5:].replace('_', '-').title()} ({len(value)} bytes)"
    return ""


class SuspiciousRequestMiddleware:
    """Log requests that look like an attack at WARNING, without secrets; the request goes on as usual.

    Logged: the reason, the method, the path (at most 200 characters, without the query string),
    the client address and the request id. Never a cookie, an Authorization header or a query string
    (a kiosk token or a password may be in any of them). The same reason from the same address is
    logged once a minute with a count of the repeats (``web.log.RepeatFilter`` on the handler).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        reason = suspicion(request)
        if reason:
            suspicious_logger.warning(
                "suspicious request (%s) from %s: %s %s",
                reason,
                request.META.get("REMOTE_ADDR", "?"),
                request.method,
                request.path[:200],
            )
        return self.get_response(request)


RECEIVERS_HEADER = "X-Micboard-Receivers"


class ReceiverHealthMiddleware:
    """``X-Micboard-Receivers: 2 of 6 unhealthy`` on the pages and API responses of signed-in users.

    The figure is ConnectionHealthService.health_summary(): what the poller published at the end of its
    last cycle (check_health over the links), read from one cache entry: no SQL, never a device, so
    the API's and the board's query counts stay what they were. Not sent on static files, on 304s, to
    anonymous callers (no counts for strangers), before the poller first published, or when all is
    well ("all N healthy" would be noise on every response).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code >= 500 or response.status_code == 304:  # a 304 stays free of SQL
            return response
        if request.path.startswith(("/static/", "/favicon.ico", "/healthz", "/metrics")):
            return response
        if not hasattr(request, "user") or not access_of(request).can_view:
            return response
        try:
            summary = ConnectionHealthService.health_summary()
        except Exception as exc:  # the header is advice: a failing cache must not fail the response
            logger.warning("receiver health unknown: %s", exc.__class__.__name__)
            return response
        if summary is None:
            return response
        unhealthy, total = summary
        if unhealthy:
            response[RECEIVERS_HEADER] = f"{unhealthy} of {total} unhealthy"
        return response
