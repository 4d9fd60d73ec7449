"""Request timing (Server-Timing header, slow-request warning) and the Content-Security-Policy."""

from __future__ import annotations

import logging
import time

logger = logging.getLogger("web.requests")

SLOW_REQUEST_SECONDS = 0.5


class RequestTimingMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        start = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - start
        response["Server-Timing"] = f"app;dur={elapsed * 1000:.1f}"
        if elapsed > SLOW_REQUEST_SECONDS:
            logger.warning("slow request %s %s: %.0f ms", request.method, request.path, elapsed * 1000)
        return response


# The board needs nothing but its own scripts and styles: no inline code, nothing from elsewhere.
BOARD_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class ContentSecurityPolicyMiddleware:
    """A strict CSP on micboard's own pages (Django's admin keeps its inline styles and scripts)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if not request.path.startswith("/admin/"):
            response.setdefault("Content-Security-Policy", BOARD_CSP)
        return response
