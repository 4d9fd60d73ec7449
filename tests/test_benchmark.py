"""The benchmark command prints its figures and leaves nothing behind (figures are not judged here)."""

import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.core.management.base import CommandError

from micboard.models import AuditEntry, Channel, Manufacturer, RealTimeConnection, Receiver, Transmitter
from tests.factories import make_receiver

NUMBER = r"\d+(?:\.\d+)?"


@pytest.mark.django_db(transaction=True)
def test_benchmark_prints_figures_and_removes_what_it_created():
    user_model = get_user_model()
    someone = user_model.objects.create_user("someone")
    buf = io.StringIO()

    call_command("benchmark", receivers=[1], channels=[4], repeat=1, requests=2, link_seconds=1, stdout=buf)

    out = buf.getvalue()
    for title in ("micboard benchmark", "Poll cycle", "Live links", "Board refresh", "Memory"):
        assert title in out
    assert "MICBOARD_METER_RATE_MS=100" in out and re.search(r"database   (sqlite|postgresql) ", out)
    # Poll row: receivers, channels, first cycle, cycle median / p95, latency median / p95, SQL, failed.
    assert re.search(rf"^\s+1\s+4\s+{NUMBER}\s+{NUMBER} / {NUMBER}\s+{NUMBER} / {NUMBER}\s+\d+\S*\s+\d+/1$", out, re.M)
    # Link row: receivers, channels, CPU ms/s, flush median/p95, flushes/s, readings/s, errors (none).
    assert re.search(rf"^\s+1\s+4\s+{NUMBER}\s+{NUMBER}/{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+0$", out, re.M)
    assert re.search(rf"^\s+4\s+304, ETag current\s+{NUMBER} / {NUMBER}\s+\d+", out, re.M)
    for path in ("200, 4 tiles changed: only those", "200, 4 tiles changed: whole grid",
                 "200, another screen rendered it", "tile renders, all new"):
        # ms median / p95, SQL, KB sent (gzip) / uncompressed
        assert re.search(rf"{re.escape(path)}.*\s{NUMBER} / {NUMBER}\s+\d+\S*\s+{NUMBER}/{NUMBER}$", out, re.M), path
    assert re.search(rf"peak RSS after the board section\s+{NUMBER} MB", out)
    assert re.search(rf"tracemalloc peak, board section\s+{NUMBER} MB", out)
    # QueryAnalyzer's findings: the board's rebuild reads its tiles without a query per tile.
    assert "Queries: N+1 suspects, duplicates and slow queries" in out
    assert re.search(r"board refresh, 4 tiles changed, 4 tiles .*\n\s+no slow, duplicated or N\+1", out)

    assert list(user_model.objects.all()) == [someone]
    assert not Session.objects.exists()
    for model in (Receiver, Channel, Transmitter, RealTimeConnection, AuditEntry, Manufacturer):
        assert not model.objects.exists(), model.__name__

    make_receiver()
    with pytest.raises(CommandError, match="--force"):
        call_command("benchmark", receivers=[1], channels=[4], repeat=1, requests=1, stdout=io.StringIO())
    assert Receiver.objects.count() == 1
