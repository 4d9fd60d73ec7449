"""micboard's middleware: request ids and the request log, suspicious requests, the receivers' health signal."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from micboard.services import BoardService, DeviceService, PollOutcome
from micboard.services.health import ConnectionHealthService
from tests.factories import make_receiver, make_user, pack_on, reading
from web.log import JsonFormatter, RepeatFilter

pytestmark = pytest.mark.django_db


@pytest.fixture
def log_of():
    """``log_of(name, formatter=None)``: the lines a fresh console-like handler on that logger writes.

    The handler carries the RepeatFilter the settings give the console, so rate limiting shows too.
    """
    attached = []

    def capture(name: str, formatter: logging.Formatter | None = None) -> io.StringIO:
        buffer = io.StringIO()
        handler = logging.StreamHandler(buffer)
        handler.setFormatter(formatter or logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler.addFilter(RepeatFilter(window=60))
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        attached.append((logger, handler))
        return buffer

    yield capture
    for logger, handler in attached:
        logger.removeHandler(handler)


@pytest.fixture
def operator():
    client = Client()
    client.force_login(make_user("ops", role="operator"))
    return client


def poll(rx, *, error: str = "") -> None:
    outcome = PollOutcome(rx.pk, error=error) if error else PollOutcome(rx.pk, reading=reading(pack_on(1), pack_on(2)))
    DeviceService.record_poll_results(outcomes=[outcome])


# --- request ids and the request log ------------------------------------------------------------


def test_every_response_carries_a_generated_request_id_and_server_timing(client):
    first, second = client.get(reverse("login")), client.get(reverse("login"))
    assert re.fullmatch(r"[0-9a-f]{32}", first["X-Request-ID"])
    assert first["X-Request-ID"] != second["X-Request-ID"]
    assert re.fullmatch(r"app;dur=\d+\.\d", first["Server-Timing"])


def test_a_plain_incoming_request_id_is_kept_and_a_bad_one_replaced(client):
    assert client.get(reverse("login"), headers={"X-Request-ID": "proxy-7f3a.42"})["X-Request-ID"] == "proxy-7f3a.42"
    for bad in ("x" * 65, "id with spaces", "id\u00e9", "<script>", "a;b"):
        got = client.get(reverse("login"), headers={"X-Request-ID": bad})["X-Request-ID"]
        assert got != bad and re.fullmatch(r"[0-9a-f]{32}", got)


def test_the_request_log_names_method_path_status_and_id_without_the_query_string(client, log_of):
    log = log_of("web.requests")
    response = client.get(reverse("login") + "?next=/&token=s3cret-kiosk", headers={"X-Request-ID": "req-1"})
    line = log.getvalue()
    assert re.fullmatch(r"INFO web\.requests: GET /accounts/login/ 200 \d+ ms id=req-1\n", line)
    assert "s3cret" not in line and "token" not in line
    assert response["X-Request-ID"] == "req-1"


def test_json_lines_carry_the_request_id_and_the_request_fields(client, log_of):
    log = log_of("web.requests", JsonFormatter())
    client.get(reverse("login") + "?password=hunter2", headers={"X-Request-ID": "trace-99"})
    entry = json.loads(log.getvalue().strip().splitlines()[-1])
    assert entry["request_id"] == "trace-99" and entry["logger"] == "web.requests" and entry["level"] == "INFO"
    assert entry["method"] == "GET" and entry["path"] == "/accounts/login/" and entry["status"] == 200
    assert isinstance(entry["duration_ms"], float) and entry["slow"] is False
    assert "hunter2" not in log.getvalue()


def test_records_logged_during_a_request_carry_its_id_in_json(rf, settings):
    """A record from deep inside a request (not the request log) is tied to it by the id."""
    from web.log import request_id

    token = request_id.set("inner-5")
    try:
        record = logging.LogRecord("micboard.x", logging.WARNING, __file__, 1, "deep %s", ("fault",), None)
        entry = json.loads(JsonFormatter().format(record))
    finally:
        request_id.reset(token)
    assert entry == {**entry, "request_id": "inner-5", "message": "deep fault"}


def test_a_request_over_the_configured_threshold_is_warned_about(client, settings, log_of):
    log = log_of("web.requests")
    settings.MICBOARD_SLOW_REQUEST_MS = 10_000
    client.get(reverse("login"))
    assert "WARNING" not in log.getvalue()
    settings.MICBOARD_SLOW_REQUEST_MS = 0.0001
    client.get(reverse("login"))
    assert "WARNING web.requests: slow request GET /accounts/login/ 200" in log.getvalue()


def test_the_log_format_setting_is_checked(monkeypatch):
    import importlib

    from micboard.exceptions import ConfigurationError
    from web import settings as settings_module

    monkeypatch.setenv("MICBOARD_LOG_FORMAT", "xml")
    with pytest.raises(ConfigurationError, match="MICBOARD_LOG_FORMAT"):
        importlib.reload(settings_module)
    monkeypatch.setenv("MICBOARD_LOG_FORMAT", "json")
    importlib.reload(settings_module)
    assert settings_module.LOGGING["handlers"]["console"]["formatter"] == "json"
    monkeypatch.delenv("MICBOARD_LOG_FORMAT")
    importlib.reload(settings_module)
    assert settings_module.LOGGING["handlers"]["console"]["formatter"] == "plain"


# --- suspicious requests --------------------------------------------------------------------------

SUSPICIOUS = [
    ("/static/..%2f..%2f..%2fetc/passwd", "path traversal"),
    ("/static/..%252f..%252fetc/passwd", "path traversal"),
    ("/%2e%2e/%2e%2e/etc/passwd", "path traversal"),
    ("/wp-admin/install.php", "scanner path"),
    ("/wp-login.php", "scanner path"),
    ("/.env", "scanner path"),
    ("/.git/config", "scanner path"),
    ("/phpmyadmin/", "scanner path"),
]


@pytest.mark.parametrize(("path", "reason"), SUSPICIOUS)
def test_attack_paths_are_logged_as_suspicious(client, log_of, path, reason):
    log = log_of("web.suspicious")
    assert client.get(path).status_code in {400, 404}
    text = log.getvalue()
    assert f"WARNING web.suspicious: suspicious request ({reason}) from 127.0.0.1: GET /" in text


def test_the_crews_own_pages_are_not_suspicious(operator, log_of):
    log = log_of("web.suspicious")
    for url in (reverse("board"), reverse("battery"), reverse("sheet"), reverse("healthz"), "/static/css/micboard.css"):
        operator.get(url)
    assert log.getvalue() == ""


def test_an_oversized_header_is_logged_without_its_value(client, log_of):
    log = log_of("web.suspicious")
    client.get(reverse("login"), headers={"X-Filler": "A" * 10_000})
    text = log.getvalue()
    assert "oversized header X-Filler (10000 bytes)" in text and "AAAA" not in text


def test_suspicious_requests_never_log_cookies_authorization_or_secret_parameters(client, log_of):
    log = log_of("web.suspicious")
    client.cookies["sessionid"] = "cookie-secret-123"
    client.get(
        "/.env?token=tok-secret-456&password=pw-secret-789&key=key-secret-000",
        headers={"Authorization": "Bearer auth-secret-abc", "Cookie": "sessionid=cookie-secret-123"},
    )
    client.get("/wp-admin/", headers={"X-Api-Key": "K" * 9000, "Authorization": "Basic " + "Z" * 9000})
    text = log.getvalue()
    assert text.count("suspicious request") == 2
    for secret in ("cookie-secret", "tok-secret", "pw-secret", "key-secret", "auth-secret", "KKKK", "ZZZZ", "?"):
        assert secret not in text.split(": ", 1)[1], secret


def test_a_scanner_hammering_one_path_is_logged_once_a_minute_with_a_count(client, log_of):
    log = log_of("web.suspicious")
    for _ in range(20):
        client.get("/.env")
    assert log.getvalue().count("suspicious request") == 1


# --- the receivers' health signal -----------------------------------------------------------------


@pytest.fixture
def racks():
    good, bad = make_receiver(name="Band Rack"), make_receiver(name="<img src=x onerror=alert(1)>")
    poll(good)
    poll(bad)
    end_of_cycle()
    return good, bad


def end_of_cycle() -> None:
    """What the poller does after the readings are stored: new version, heartbeat, health summary."""
    BoardService.bump_version()
    BoardService.record_heartbeat()
    ConnectionHealthService.publish_summary()


def test_no_header_and_no_banner_while_every_receiver_answers(operator, racks):
    page = operator.get(reverse("board"))
    assert "X-Micboard-Receivers" not in page
    assert "not answering" not in page.content.decode()


def test_pages_and_refreshes_say_when_receivers_are_unhealthy(operator, racks):
    _, bad = racks
    poll(bad, error="127.0.0.1:9 refused the connection")
    poll(bad, error="127.0.0.1:9 refused the connection")
    end_of_cycle()
    page = operator.get(reverse("board"))
    assert page["X-Micboard-Receivers"] == "1 of 2 unhealthy"
    html = page.content.decode()
    assert "1 receiver not answering: &lt;img src=x onerror=alert(1)&gt;" in html
    assert "<img src=x" not in html  # the name stays inert
    grid = operator.get(reverse("board-grid"), headers={"HX-Request": "true"})
    assert grid["X-Micboard-Receivers"] == "1 of 2 unhealthy" and "1 receiver not answering" in grid.content.decode()
    assert operator.get(reverse("battery"))["X-Micboard-Receivers"] == "1 of 2 unhealthy"
    # A refresh of an unchanged board stays a bodiless 304: no header there.
    assert "X-Micboard-Receivers" not in operator.get(
        reverse("board-grid"), headers={"HX-Request": "true", "If-None-Match": grid["ETag"]}
    )


def test_a_failing_link_shows_in_the_header_before_the_receiver_goes_offline(operator, racks):
    """One failed poll: the tiles are unchanged (no banner) but the link is already unhealthy."""
    _, bad = racks
    poll(bad, error="timeout")
    ConnectionHealthService.publish_summary()
    page = operator.get(reverse("board"))
    assert page["X-Micboard-Receivers"] == "1 of 2 unhealthy" and "not answering" not in page.content.decode()


def test_reading_the_health_signal_costs_no_query(operator, racks):
    _, bad = racks
    poll(bad, error="timeout")
    ConnectionHealthService.publish_summary()
    operator.get(reverse("board"))  # warm the session and the board
    with CaptureQueriesContext(connection) as ctx:
        response = operator.get(reverse("board"))
    assert response["X-Micboard-Receivers"] == "1 of 2 unhealthy"
    assert not [q for q in ctx.captured_queries if "micboard_realtimeconnection" in q["sql"]]


def test_a_poller_that_stopped_publishing_leaves_every_link_unhealthy(operator, racks, settings):
    import time

    assert ConnectionHealthService.health_summary() == (0, 2)
    later = time.time() + 3 * settings.MICBOARD_POLL_INTERVAL + settings.MICBOARD_POLL_TIMEOUT + 1
    assert ConnectionHealthService.health_summary(now=later) == (2, 2)  # as check_health would judge them


def test_a_poll_cycle_publishes_the_summary(operator, settings):
    from tasks.polling import run_poll_cycle
    from tests.factories import use_fast_polls

    use_fast_polls(settings)
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    make_receiver(name="Dead Rack", port=dead)
    assert "X-Micboard-Receivers" not in operator.get(reverse("board"))  # nothing published yet
    run_poll_cycle()
    assert operator.get(reverse("board"))["X-Micboard-Receivers"] == "1 of 1 unhealthy"


def test_strangers_learn_no_receiver_counts(client, racks):
    _, bad = racks
    poll(bad, error="timeout")
    poll(bad, error="timeout")
    end_of_cycle()
    for url in (reverse("login"), reverse("board"), reverse("healthz")):
        assert "X-Micboard-Receivers" not in client.get(url)
