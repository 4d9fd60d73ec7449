"""The load client: loopback only, bounded, and what it counts is what the server answered."""

import io

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.core.management.base import CommandError

from micboard.exceptions import LoadTestError
from micboard.loadtest import MAX_SECONDS, loopback_url, run_load, viewer_sessions
from micboard.services import BoardService


@pytest.mark.parametrize(
    "url", ["http://10.0.0.1:8000", "http://192.168.1.20", "http://8.8.8.8", "http://example.org", "http://[fe80::1]/"]
)
def test_anything_off_loopback_is_refused(url):
    with pytest.raises(LoadTestError, match="only at loopback"):
        loopback_url(url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/", "http://127.9.8.7", "http://[::1]:8000", "http://localhost"])
def test_loopback_is_accepted(url):
    assert loopback_url(url) == url.rstrip("/")


def test_runs_are_bounded():
    cookie = [("sessionid", "x")]
    with pytest.raises(LoadTestError, match="at most 3600"):
        run_load("http://127.0.0.1:9", cookie, seconds=MAX_SECONDS + 1)
    with pytest.raises(LoadTestError, match="screens must be between 1 and 1000"):
        run_load("http://127.0.0.1:9", cookie * 1001, seconds=1)
    with pytest.raises(LoadTestError, match="only at loopback"):
        run_load("http://10.0.0.1:8000", cookie, seconds=1)


@pytest.mark.django_db(transaction=True)
def test_screens_refresh_with_their_own_sessions_and_get_304_until_the_board_changes(live_server):
    with viewer_sessions(3) as cookies:
        assert len({value for _, value in cookies}) == 3
        result = run_load(live_server.url, cookies, seconds=1.6, interval=0.5)
    assert not result.errors, result.lines()
    assert result.statuses[200] == 3  # each screen's first copy; then its ETag is current
    assert result.statuses[304] >= 6 and result.requests == result.statuses[200] + result.statuses[304]
    assert len(result.latencies_ms) == result.requests and result.body_bytes > 0
    assert 0 < result.wire_bytes < result.body_bytes  # the grid travels gzipped, as to a browser
    # The throwaway viewer and its sessions are gone.
    assert not get_user_model().objects.filter(username__startswith="loadtest-").exists()
    assert not Session.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_refused_screen_is_an_error_by_status(live_server):
    result = run_load(live_server.url, [("sessionid", "not-a-session")], seconds=0.5, interval=0.2)
    assert result.errors["HX-Redirect"] >= 1  # htmx is told to go to the login page
    assert result.errors["HX-Redirect"] == result.requests and not result.statuses


@pytest.mark.django_db(transaction=True)
def test_the_command_prints_its_figures(live_server):
    BoardService.bump_version()
    out = io.StringIO()
    call_command("loadtest", url=live_server.url, screens=2, seconds=1.0, interval=0.5, rss_every=0.2, stdout=out)
    text = out.getvalue()
    assert "2 screens refreshing" in text and "errors 0 (none)" in text
    assert "latency ms p50" in text and "p95" in text and "p99" in text
    assert "RSS MB first" in text  # this process serves the live server: its memory is sampled
    with pytest.raises(CommandError, match="only at loopback"):
        call_command("loadtest", url="http://192.168.0.10:8000", seconds=1, stdout=io.StringIO())
