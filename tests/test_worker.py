"""The real Huey consumer, as `make demo` runs it, polls the receivers by itself and follows changes."""

import os
import signal
import subprocess
import sys
import time
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

from micboard.models import Channel
from micboard.services import BoardService
from micboard.status import ChannelStatus
from tests.factories import receivers_for, start_simulator


def database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    password = f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else ""
    return f"postgres://{quote(db['USER'])}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"the consumer did not {what} within {timeout} s")


@pytest.mark.django_db(transaction=True)
def test_huey_consumer_polls_on_its_own_and_follows_the_simulator():
    sim = start_simulator(["ulxd"])
    receiver = receivers_for(sim, ["ulxd"])["ulxd"]
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_VERSION"}  # a real queue, not immediate mode
    env.update(
        MICBOARD_DATA_DIR=str(settings.DATA_DIR),  # the same file cache as this process (or REDIS_URL)
        DATABASE_URL=database_url(),
        MICBOARD_POLL_INTERVAL="0.5",
        MICBOARD_METER_RATE_MS="100",
        MICBOARD_POLL_TIMEOUT="1.5",
    )
    consumer = subprocess.Popen(
        [sys.executable, str(settings.BASE_DIR / "manage.py"), "run_huey", "--workers", "2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        lead = Channel.objects.filter(receiver=receiver, number=1)
        wait_for(lambda: lead.get().status == ChannelStatus.GOOD, 30, "read the receiver")
        assert BoardService.staleness() == ""
        sim.pack_off("ulxd", 1)
        wait_for(lambda: lead.get().status == ChannelStatus.PREV_GOOD, 5, "notice the pack switched off")
    finally:
        consumer.send_signal(signal.SIGINT)
        output, _ = consumer.communicate(timeout=20)
        sim.stop()
    assert consumer.returncode == 0, output
