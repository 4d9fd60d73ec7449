"""Outages of what micboard depends on: the board keeps serving, /healthz names the culprit, logs stay useful.

"Redis down" here is a real Redis address nothing listens on (connection refused on loopback).
"""

import io
import logging

import pytest
from django.core.cache import cache
from django.db import connection
from django.urls import reverse

from micboard import coordination
from micboard.services import BoardService, DeviceService, PollOutcome
from tests.factories import make_receiver, pack_on, reading

pytestmark = pytest.mark.django_db

DEAD_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture
def rig():
    rx = make_receiver(name="Band Rack", model="ULXD4D")
    DeviceService.record_poll_results(
        outcomes=[PollOutcome(rx.pk, reading=reading(pack_on(1, name="Lead Vox"), pack_on(2, bars=1)))]
    )
    BoardService.bump_version()
    BoardService.record_heartbeat()
    return rx


@pytest.fixture
def redis_down(settings):
    settings.REDIS_URL = DEAD_REDIS
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": DEAD_REDIS,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    return settings


def test_board_keeps_serving_from_the_database_with_redis_down(admin_client, rig, redis_down):
    page = admin_client.get(reverse("board"))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Lead Vox" in html and 'data-status="CRITICAL"' in html
    assert "live updates are impaired" in html
    refresh = admin_client.get(reverse("board-grid"), headers={"HX-Request": "true", "If-None-Match": '"b-1--0"'})
    assert refresh.status_code == 200 and "ETag" not in refresh  # no version: never a 304 that hides changes
    assert "Lead Vox" in refresh.content.decode()


def test_healthz_answers_json_503_naming_the_failing_dependency(client, rig, redis_down):
    response = client.get(reverse("healthz"))
    assert response.status_code == 503 and response["Content-Type"] == "application/json"
    body = response.json()
    assert body["status"] == "fail" and body["checks"]["database"] == "ok"
    assert {"cache", "coordination"} <= set(body["failing"])
    assert "Connection" in body["checks"]["coordination"]
    assert "receivers" not in body  # an anonymous caller learns no counts


def test_a_cache_that_fails_costs_a_rebuild_not_the_board(admin_client, rig, settings, tmp_path):
    """The embedded default's cache folder turned unusable: every write to it fails."""
    blocked = tmp_path / "cache"
    blocked.write_text("not a directory")
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": str(blocked)}
    }
    with pytest.raises(OSError):
        cache.set("probe", 1)
    first = admin_client.get(reverse("board-grid"), headers={"HX-Request": "true"})
    assert first.status_code == 200 and "Lead Vox" in first.content.decode()
    assert admin_client.get(
        reverse("board-grid"), headers={"HX-Request": "true", "If-None-Match": first["ETag"]}
    ).status_code == 304
    assert admin_client.get(reverse("healthz")).json()["failing"] == ["cache"]


@pytest.fixture
def log_of():
    """``log_of(name)``: a buffer that every stream handler a record of that logger reaches writes to."""
    redirected = []

    def capture(logger_name: str) -> io.StringIO:
        buffer = io.StringIO()
        logger = logging.getLogger(logger_name)
        while logger:
            for handler in logger.handlers:
                if type(handler) is logging.StreamHandler:  # the console; not pytest's own capture handlers
                    redirected.append((handler, handler.setStream(buffer)))
            logger = logger.parent if logger.propagate else None
        return buffer

    yield capture
    for handler, original in reversed(redirected):
        handler.setStream(original)


def test_a_server_error_leaves_one_line_with_its_request_in_the_log(admin_client, rig, settings, log_of):
    settings.DEBUG = False
    log = log_of("django.request")
    with connection.cursor() as cursor:  # a broken schema: the board cannot be read (rolled back after the test)
        if connection.vendor == "postgresql":
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no pending foreign-key checks on the table
        cursor.execute("DROP TABLE micboard_transmitter")
    admin_client.raise_request_exception = False
    assert admin_client.get(reverse("board")).status_code == 500
    text = log.getvalue()
    assert text.count("Internal Server Error: /") == 1 and "Traceback" in text


def test_repeated_worker_errors_are_logged_once_with_a_count(log_of):
    log = log_of("tasks.polling")
    logger = logging.getLogger("tasks.polling")
    for _ in range(50):
        try:
            raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        except ConnectionError:
            logger.exception("poll cycle failed; retrying")
    assert log.getvalue().count("Traceback") == 1
    console = [h for h in logging.getLogger("tasks").handlers if type(h) is logging.StreamHandler]
    repeat = next(f for h in console for f in h.filters if hasattr(f, "window"))
    later = repeat.clock() + repeat.window + 1
    repeat.clock = lambda: later
    try:
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
    except ConnectionError:
        logger.exception("poll cycle failed; retrying")
    assert "(49 more like this in the last 60 s)" in log.getvalue()
    assert log.getvalue().count("Traceback") == 2


def test_cache_and_coordination_calls_have_time_outs(settings):
    """A Redis that accepts connections but never answers must not hang a request."""
    if not settings.REDIS_URL:
        pytest.skip("the embedded default has no network cache")
    options = settings.CACHES["default"]["OPTIONS"]
    assert 0 < options["socket_timeout"] <= 2 and 0 < options["socket_connect_timeout"] <= 2
    pool = coordination.store().client.connection_pool
    assert 0 < pool.connection_kwargs["socket_timeout"] <= 2
