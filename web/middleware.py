"""Request timing: a Server-Timing header on every response and a warning for slow requests."""

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
