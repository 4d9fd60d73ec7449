"""``make serve`` as a deployment runs it: real gunicorn, a real Huey consumer, one supervisor, real signals.

Each server runs outside the test settings (no PYTEST_VERSION in its environment), on a data directory of
this module's own (SQLite, file cache, collected static files) and a free loopback port.
"""

import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from micboard.procfs import command_line, descendants, is_running
from micboard.supervisor import ensure_free
from tests.factories import wait_for

MANAGE = str(settings.BASE_DIR / "manage.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server_env(tmp_path_factory):
    """A production-like environment with a migrated database of its own."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_VERSION", "DATABASE_URL", "REDIS_URL")}
    env.update(
        MICBOARD_DATA_DIR=str(tmp_path_factory.mktemp("serve-data")),
        MICBOARD_KEY_PREFIX=f"micboard-test-{uuid.uuid4().hex[:10]}",
        HUEY_WORKERS="2",
    )
    subprocess.run([sys.executable, MANAGE, "migrate", "--verbosity", "0"], env=env, check=True, timeout=120)
    return env


class Served:
    """``manage.py serve`` in its own process (the supervisor), its output in a file."""

    def __init__(self, env: dict, log_path, *args: str, preexec_fn=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        with open(log_path, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, MANAGE, "serve", "--port", str(self.port), "--workers", "2", "--threads", "2", *args],
                env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=preexec_fn,
            )

    def output(self) -> str:
        return self.log_path.read_text()

    def answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code in (200, 503)
        except httpx.TransportError:
            return False

    def wait_ready(self) -> list[int]:
        """Every process up (gunicorn's master and two workers, the consumer): their pids."""
        wait_for(lambda: self.process.poll() is not None or self.answers(), 90, "answer HTTP")
        assert self.process.poll() is None, self.output()
        return wait_for(lambda: (pids := descendants(self.process.pid)) and len(pids) >= 4 and pids, 30,
                        "start gunicorn's two workers and the consumer")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pid in descendants(self.process.pid):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def serve(server_env, tmp_path):
    started = []

    def start(*args: str, preexec_fn=None) -> Served:
        started.append(Served(server_env, tmp_path / f"serve-{len(started)}.log", *args, preexec_fn=preexec_fn))
        return started[-1]

    yield start
    for served in started:
        served.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name)
def test_the_supervisor_stops_every_child_on_a_stop_signal(serve, signum):
    """Closing the terminal (SIGHUP), Ctrl-C (SIGINT) or a service manager (SIGTERM) leaves no process behind."""
    served = serve()
    children = served.wait_ready()
    commands = " ".join(command_line(pid) for pid in children)
    assert "gunicorn" in commands and "run_huey" in commands

    served.process.send_signal(signum)
    code = served.process.wait(timeout=30)

    assert code == 0, served.output()
    survivors = [pid for pid in children if is_running(pid)]
    assert not survivors, f"still running after {signum.name}: {survivors}"
    assert f"{signum.name}: stopping" in served.output()
    ensure_free("127.0.0.1", served.port)  # the next `make serve` gets the port


def signals_ignored(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(li for li in status.splitlines() if li.startswith("SigIgn:"))
    return int(line.split()[1], 16)


def test_started_under_nohup_the_server_outlives_its_terminal(serve):
    served = serve(preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))  # as nohup starts it
    children = served.wait_ready()
    assert signals_ignored(served.process.pid) & (1 << (signal.SIGHUP - 1))  # the kernel drops SIGHUP

    served.process.send_signal(signal.SIGHUP)
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(timeout=30) == 0

    assert "SIGTERM: stopping" in served.output() and "SIGHUP" not in served.output()
    assert not [pid for pid in children if is_running(pid)]


def test_a_child_that_dies_stops_the_others(serve):
    served = serve()
    children = served.wait_ready()
    consumer = next(pid for pid in children if "run_huey" in command_line(pid))
    os.kill(consumer, signal.SIGKILL)

    code = served.process.wait(timeout=30)

    assert code == 1
    assert "consumer exited with status -9; stopping the others" in served.output()
    assert not [pid for pid in children if is_running(pid)]


def test_static_files_are_collected_compressed_and_cache_busted(serve):
    served = serve()
    served.wait_ready()
    page = httpx.get(f"{served.url}/accounts/login/", timeout=10)
    assert page.status_code == 200
    # The stylesheet's name carries its content's hash, so a new release is never served from a stale cache.
    css = next(part.split('"')[0] for part in page.text.split('href="')[1:] if part.startswith("/static/css/micboard."))
    assert css != "/static/css/micboard.css"
    answer = httpx.get(f"{served.url}{css}", headers={"Accept-Encoding": "gzip"}, timeout=10)
    assert answer.status_code == 200 and answer.headers["content-encoding"] == "gzip"
    assert "immutable" in answer.headers["cache-control"] and "max-age=315360000" in answer.headers["cache-control"]
    assert "body" in answer.text  # decompressed by httpx: the stylesheet itself
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(timeout=30) == 0


def test_a_taken_port_is_one_line_naming_the_process_that_holds_it(server_env, tmp_path):
    port = free_port()
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import socket, sys, time\n"
         f"s = socket.socket(); s.bind(('127.0.0.1', {port})); s.listen(); print('listening', flush=True)\n"
         "time.sleep(120)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "listening"
        result = subprocess.run(
            [sys.executable, MANAGE, "serve", "--port", str(port)],
            env=server_env, capture_output=True, text=True, timeout=60,
        )
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"127.0.0.1:{port} is already in use by pid {holder.pid} (" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_the_load_client_runs_against_the_served_stack_and_samples_its_memory(serve, server_env):
    served = serve()
    served.wait_ready()
    result = subprocess.run(
        [sys.executable, MANAGE, "loadtest", "--url", served.url, "--screens", "5", "--seconds", "2",
         "--interval", "0.5", "--rss-every", "0.5"],
        env=server_env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "errors 0 (none)" in result.stdout and "200 5, 304 " in result.stdout
    for role in ("supervisor", "web master", "web worker", "consumer"):
        assert f"{role}" in result.stdout, role
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(timeout=30) == 0


def test_a_taken_udp_port_names_its_holder_too():
    """The demo's UDP receivers (UHF-R, Sennheiser SSC) are checked like the TCP ones before anything starts."""
    import os
    import socket

    from micboard.exceptions import PortInUseError

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        ensure_free("127.0.0.1", port)  # the TCP port of the same number is free
        with pytest.raises(PortInUseError) as caught:
            ensure_free("127.0.0.1", port, udp=True)
    assert f"127.0.0.1:{port}/udp is already in use by pid {os.getpid()} (" in str(caught.value)
    ensure_free("127.0.0.1", port, udp=True)
