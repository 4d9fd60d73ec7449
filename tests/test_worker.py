"""Receiver links as they run in production: real Huey consumers, against the embedded default and Redis.

The simulator records every connection it accepts (wall-clock open and close), which is how these
tests see who held which receiver when: two holders at once would show as overlapping connections to
one receiver, a dark receiver as a time with no connection open.
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
from tests.factories import receivers_for, start_simulator, wait_for

INTERVAL = 0.5
LEASE = 3.0
pytestmark = pytest.mark.django_db(transaction=True)


def database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    password = f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else ""
    return f"postgres://{quote(db['USER'])}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


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

    def shifts_started(self) -> int:
        return self.output().count("started link shifts")

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
        MICBOARD_LINK_LEASE=str(LEASE),
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
    return sorted(tuple(s) for s in list(sim.device(key).sessions))


def open_now(sim, key) -> bool:
    return any(closed is None for _, closed in sessions(sim, key))


def assert_never_held_twice(sim, keys):
    for key in keys:
        for (_, closed), (opened, _) in itertools.pairwise(sessions(sim, key)):
            assert closed is not None and closed <= opened, f"{key}: two connections at once"


def longest_dark(sim, key, since: float, until: float) -> float:
    """The longest time within [since, until] with no connection to the receiver open."""
    dark, covered = 0.0, since
    for opened, closed in sessions(sim, key):
        closed = until if closed is None else closed
        if closed <= covered:
            continue
        dark = max(dark, min(opened, until) - covered)
        covered = max(covered, closed)
    return max(dark, until - covered)


@pytest.mark.parametrize("backend", ["embedded", "redis"], indirect=True)
def test_consumer_links_on_its_own_follows_the_simulator_and_stops_metering_when_stopped(backend, tmp_path):
    sim = start_simulator(["ulxd"])
    receiver = receivers_for(sim, ["ulxd"])["ulxd"]
    consumer = Consumer(backend, tmp_path / "consumer.log", workers=2)
    try:
        lead = Channel.objects.filter(receiver=receiver, number=1)
        wait_for(lambda: lead.get().status == ChannelStatus.GOOD, 30, "read the receiver")
        sim.pack_off("ulxd", 1)
        wait_for(lambda: lead.get().status == ChannelStatus.PREV_GOOD, 2, "notice the pack switched off")
        assert len(sessions(sim, "ulxd")) == 1, "the change should come over the open link"
        assert consumer.shifts_started() == 1  # one chain of shifts per consumer start, not one per worker
        code = consumer.stop()  # SIGINT, as the supervisor stops it
        assert code == 0, consumer.output()
        assert not open_now(sim, "ulxd")
        assert all(c["meter_rate"] == 0 for c in sim.snapshot("ulxd")["channels"]), "metering left on"
    finally:
        consumer.stop()
        sim.stop()


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
def test_three_consumers_share_the_receivers_and_survive_one_killed_mid_show(backend, tmp_path):
    keys = ["ulxd", "qlxd", "slxd", "ad", "ad4d", "psm"]
    sim = start_simulator(keys)
    receivers_for(sim, keys)
    consumers = [Consumer(backend, tmp_path / f"consumer{n}.log", workers=2) for n in range(3)]
    store_prefix = f"{backend['MICBOARD_KEY_PREFIX']}:coordination:links:rx:"
    import redis

    client = redis.Redis.from_url(backend["REDIS_URL"], decode_responses=True)

    def holders() -> dict[str, int]:
        owners = [client.get(k) for k in client.scan_iter(match=store_prefix + "*")]
        pids = [o.rsplit(":", 3)[1] for o in owners if o]
        return {pid: pids.count(pid) for pid in set(pids)}

    try:
        wait_for(lambda: all(open_now(sim, k) for k in keys), 30, "link every receiver")
        spread = wait_for(
            lambda: sorted(holders().values()) == [2, 2, 2] and holders(), 20, "spread the receivers, two per consumer"
        )
        victim = next(c for c in consumers if str(c.process.pid) in spread)
        victim.kill()  # SIGKILL mid-show: no clean-up at all
        killed_at = time.time()
        wait_for(lambda: len(holders()) == 2 and sum(holders().values()) == len(keys), 2 * LEASE, "take over")
        wait_for(lambda: all(open_now(sim, k) for k in keys), LEASE, "reconnect every receiver")
        time.sleep(0.5)  # the show goes on a moment, so the connections after the take-over are seen to last
        until = time.time()
    finally:
        codes = [c.stop() for c in consumers if c.process.returncode is None]
        sim.stop()
    assert codes == [0, 0], "".join(c.output() for c in consumers)
    assert_never_held_twice(sim, keys)
    for key in keys:
        dark = longest_dark(sim, key, killed_at, until)
        assert dark <= LEASE, f"{key} was dark for {dark:.2f} s after a consumer died (lease {LEASE} s)"


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
def test_links_go_on_when_redis_comes_back_empty(backend, own_redis, tmp_path):
    backend["REDIS_URL"] = own_redis.url
    sim = start_simulator(["ulxd"])
    receiver = receivers_for(sim, ["ulxd"])["ulxd"]
    consumer = Consumer(backend, tmp_path / "consumer.log", workers=2)
    lead = Channel.objects.filter(receiver=receiver, number=1)
    try:
        wait_for(lambda: lead.get().status == ChannelStatus.GOOD, 30, "read the receiver")
        own_redis.stop()
        wait_for(lambda: "link plan failed" in consumer.output(), 10, "notice Redis is gone")
        time.sleep(2)  # the outage itself: Redis stays down a while
        own_redis.start()  # empty, as a Redis without persistence restarts
        sim.pack_off("ulxd", 1)
        wait_for(lambda: lead.get().status == ChannelStatus.PREV_GOOD, 3, "follow the receiver again")
    finally:
        code = consumer.stop()
        sim.stop()
    assert code == 0, consumer.output()
    assert_never_held_twice(sim, ["ulxd"])
