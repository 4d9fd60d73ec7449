"""The poll chain as it runs in production: real Huey consumers, against the embedded default and Redis.

The simulator records every connection it accepts (wall-clock open and close), which is how these
tests see who polled when: two cycles at once would show as overlapping connections to one receiver.
"""

import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

from micboard.models import Channel
from micboard.status import ChannelStatus
from tests.factories import receivers_for, start_simulator

INTERVAL = 0.5
pytestmark = pytest.mark.django_db(transaction=True)


def database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    password = f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else ""
    return f"postgres://{quote(db['USER'])}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


def wait_for(predicate, timeout: float, what: str, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"did not {what} within {timeout} s")


def redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


class Consumer:
    """``manage.py run_huey`` in its own process, its log in a file."""

    def __init__(self, env: dict, log_path, workers: int = 4):
        self.log_path = log_path
        self.log = open(log_path, "w")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, str(settings.BASE_DIR / "manage.py"), "run_huey", "--workers", str(workers)],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, text=True,
        )

    def output(self) -> str:
        return self.log_path.read_text()

    def chains_started(self) -> int:
        return self.output().count("started poll chain")

    def stop(self, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self.log.close()
        return code

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        self.log.close()


@pytest.fixture
def backend(request, tmp_path):
    """Environment for consumers sharing this test's database and a queue/coordination store of their own."""
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_VERSION"}
    env.update(
        MICBOARD_DATA_DIR=str(tmp_path / "data"),  # own queue file, coordination file and cache
        MICBOARD_KEY_PREFIX=f"micboard-test-{uuid.uuid4().hex[:10]}",  # own keys in Redis
        DATABASE_URL=database_url(),
        MICBOARD_POLL_INTERVAL=str(INTERVAL),
        MICBOARD_REFRESH_INTERVAL=str(INTERVAL),
        MICBOARD_METER_RATE_MS="100",
        MICBOARD_POLL_TIMEOUT="1.5",
        MICBOARD_OFFLINE_AFTER="2",
        LOG_LEVEL="INFO",
    )
    env.pop("REDIS_URL", None)
    if request.param == "redis":
        url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
        if not redis_answers(url):
            pytest.skip(f"no Redis answering at {url} (.ci/run starts one)")
        env["REDIS_URL"] = url
    yield env
    if request.param == "redis":
        import redis

        client = redis.Redis.from_url(env["REDIS_URL"])
        clean = env["MICBOARD_KEY_PREFIX"].replace("-", "")
        for pattern in (f"{env['MICBOARD_KEY_PREFIX']}:*", f"huey.*.{clean}"):
            keys = list(client.scan_iter(match=pattern, count=500))
            if keys:
                client.delete(*keys)


def sessions(sim, key):
    return [tuple(s) for s in list(sim.device(key).sessions)]


def assert_one_poll_at_a_time(sim, keys, *, min_gap: float):
    """No two connections to one receiver overlap, and consecutive polls are an interval apart."""
    for key in keys:
        polls = sorted(sessions(sim, key))
        assert len(polls) >= 2, key
        for (opened, closed), (next_opened, _) in itertools.pairwise(polls):
            assert closed is not None and closed <= next_opened, f"{key}: two polls at once"
            assert next_opened - opened >= min_gap, f"{key}: polled twice within {next_opened - opened:.3f} s"


@pytest.mark.parametrize("backend", ["embedded", "redis"], indirect=True)
def test_consumer_polls_on_its_own_and_follows_the_simulator(backend, tmp_path):
    sim = start_simulator(["ulxd"])
    receiver = receivers_for(sim, ["ulxd"])["ulxd"]
    consumer = Consumer(backend, tmp_path / "consumer.log", workers=2)
    try:
        lead = Channel.objects.filter(receiver=receiver, number=1)
        wait_for(lambda: lead.get().status == ChannelStatus.GOOD, 30, "read the receiver")
        sim.pack_off("ulxd", 1)
        wait_for(lambda: lead.get().status == ChannelStatus.PREV_GOOD, 5, "notice the pack switched off")
        assert consumer.chains_started() == 1  # one chain per consumer start, not one per worker thread
    finally:
        code = consumer.stop()
        sim.stop()
    assert code == 0, consumer.output()


@pytest.mark.parametrize("backend", ["embedded", "redis"], indirect=True)
def test_two_consumers_never_poll_at_once_nor_twice_per_interval(backend, tmp_path):
    keys = ["ulxd", "ad"]
    sim = start_simulator(keys)
    receivers_for(sim, keys)
    first = Consumer(backend, tmp_path / "first.log")
    second = None
    try:
        wait_for(lambda: len(sessions(sim, "ulxd")) >= 3, 30, "poll with the first consumer")
        second = Consumer(backend, tmp_path / "second.log")  # takes over with a new chain
        wait_for(lambda: second.chains_started(), 30, "start the second consumer")
        polled = len(sessions(sim, "ulxd"))
        wait_for(lambda: len(sessions(sim, "ulxd")) >= polled + 12, 30, "keep polling with two consumers")
    finally:
        codes = [c.stop() for c in (first, second) if c]
        sim.stop()
    assert codes == [0, 0], first.output() + (second.output() if second else "")
    assert first.chains_started() == 1 and second.chains_started() == 1
    assert_one_poll_at_a_time(sim, keys, min_gap=0.8 * INTERVAL)
    polls = sorted(o for o, _ in sessions(sim, "ulxd"))[-12:]
    mean_gap = (polls[-1] - polls[0]) / (len(polls) - 1)
    assert mean_gap <= 1.2 * INTERVAL, f"asked for {INTERVAL} s between polls, got {mean_gap:.2f} s"


@pytest.mark.parametrize("backend", ["embedded", "redis"], indirect=True)
def test_a_restarted_consumer_takes_over_a_dead_holders_lock_at_once(backend, tmp_path):
    sim = start_simulator(["ulxd"])
    receivers_for(sim, ["ulxd"])
    # Meters every 100 ms keep each poll open long enough that the kill lands while the lock is held.
    first = Consumer(backend, tmp_path / "first.log", workers=2)
    second = None
    try:
        wait_for(lambda: len(sessions(sim, "ulxd")) >= 3, 30, "poll with the first consumer")
        wait_for(lambda: sessions(sim, "ulxd")[-1][1] is None, 5, "be in the middle of a poll", step=0.005)
        first.kill()  # SIGKILL while holding the lock: no clean-up at all
        killed_at = time.time()
        second = Consumer(backend, tmp_path / "second.log", workers=2)
        ready = wait_for(lambda: second.chains_started() and time.time(), 30, "start the second consumer")
        opened = wait_for(
            lambda: next((o for o, _ in sessions(sim, "ulxd") if o > killed_at), None), 30, "poll again"
        )
    finally:
        code = second.stop() if second else 0
        sim.stop()
    assert code == 0, second.output()
    # Within two intervals of the new consumer's start, not after the dead holder's lock expired.
    assert opened - ready <= 2 * INTERVAL + 0.3, f"first poll {opened - ready:.2f} s after the new consumer started"


@pytest.fixture
def own_redis(tmp_path):
    """A Redis server of this test's own on a free loopback port, which the test may stop and restart."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    class Server:
        url = f"redis://127.0.0.1:{port}/0"
        process = None

        def start(self):
            self.process = subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(tmp_path)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            wait_for(lambda: redis_answers(self.url), 10, "start redis-server")

        def stop(self):
            if self.process and self.process.poll() is None:
                self.process.terminate()
                self.process.wait(timeout=10)

    server = Server()
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_polling_resumes_within_two_intervals_of_redis_coming_back(backend, own_redis, tmp_path):
    backend["REDIS_URL"] = own_redis.url
    sim = start_simulator(["ulxd"])
    receivers_for(sim, ["ulxd"])
    consumer = Consumer(backend, tmp_path / "consumer.log", workers=2)
    try:
        wait_for(lambda: len(sessions(sim, "ulxd")) >= 3, 30, "poll")
        own_redis.stop()
        wait_for(lambda: "poll cycle failed" in consumer.output(), 10, "notice Redis is gone")
        time.sleep(2)  # the outage itself: Redis stays down a while
        own_redis.start()  # empty, as a Redis without persistence restarts
        back = time.time()
        opened = wait_for(lambda: next((o for o, _ in sessions(sim, "ulxd") if o > back), None), 30, "poll again")
    finally:
        code = consumer.stop()
        sim.stop()
    assert code == 0, consumer.output()
    assert opened - back <= 2 * INTERVAL + 1.0, f"polling resumed {opened - back:.2f} s after Redis came back"
