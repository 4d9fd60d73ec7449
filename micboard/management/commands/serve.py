"""``python manage.py serve``: micboard as a deployment runs it (``make serve``; ``make demo`` adds the simulator).

gunicorn serves the web app (its static files collected, compressed and cache-busted, served by
whitenoise) and the Huey consumer polls the receivers, both under one supervisor
(``micboard/supervisor.py``) that stops every process on Ctrl-C, SIGTERM or SIGHUP.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from micboard.drivers.catalog import device_model
from micboard.exceptions import PortInUseError
from micboard.simulators.engine import DEFAULT_CONTROL_PORT
from micboard.simulators.rig import DEMO_RIG
from micboard.supervisor import Child, Supervisor, ensure_free

MANAGE = str(settings.BASE_DIR / "manage.py")


def web_child(*, host: str, port: int, workers: int, threads: int) -> Child:
    """gunicorn with threaded workers (keep-alive for every screen); whitenoise serves the static files."""
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return Child(
        "web",
        [
            sys.executable, "-m", "gunicorn", "web.wsgi:application",
            "--bind", bind,
            "--workers", str(workers),
            "--worker-class", "gthread",
            "--threads", str(threads),
            "--graceful-timeout", "5",
            "--chdir", str(settings.BASE_DIR),
            "--no-control-socket",  # one fixed socket path per user would collide between two servers
            "--error-logfile", "-",
            "--log-level", "warning",  # requests are logged by micboard (web.middleware)
        ],
        stop_signal=signal.SIGTERM,  # gunicorn finishes the requests in flight
    )


def consumer_child() -> Child:
    # SIGINT: the consumer finishes its running tasks (SIGHUP would restart it, SIGTERM drops them).
    return Child("consumer", [sys.executable, MANAGE, "run_huey"], stop_signal=signal.SIGINT)


def simulator_child(*, speed: float) -> Child:
    return Child("simulator", [sys.executable, MANAGE, "simulate", "--speed", str(speed)], stop_signal=signal.SIGINT)


class Command(BaseCommand):
    help = (
        "Run gunicorn and the Huey consumer (with --demo, the simulated receivers too) under one supervisor; "
        "Ctrl-C, SIGTERM or SIGHUP stops them all."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="address gunicorn listens on (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=8000, help="port gunicorn listens on (default 8000)")
        parser.add_argument(
            "--workers", type=int, default=settings.MICBOARD_WEB_WORKERS,
            help=f"gunicorn worker processes (MICBOARD_WEB_WORKERS, now {settings.MICBOARD_WEB_WORKERS})",
        )
        parser.add_argument(
            "--threads", type=int, default=settings.MICBOARD_WEB_THREADS,
            help=f"threads per worker (MICBOARD_WEB_THREADS, now {settings.MICBOARD_WEB_THREADS})",
        )
        parser.add_argument("--demo", action="store_true", help="also run the simulated demo rig (make demo)")
        parser.add_argument("--speed", type=float, default=1.0, help="demo simulator clock speed (battery drain)")

    def handle(self, *args, host: str, port: int, workers: int, threads: int, demo: bool, speed: float, **options):
        if workers < 1 or threads < 1:
            raise CommandError("--workers and --threads must be at least 1")
        addresses = {(host, port, False)}
        if demo:
            addresses |= {
                (device.host, device.port, device_model(device.model, driver=device.driver).transport == "udp")
                for device in DEMO_RIG
            }
            addresses.add(("127.0.0.1", DEFAULT_CONTROL_PORT, False))
        try:
            for address_host, address_port, udp in sorted(addresses):
                ensure_free(address_host, address_port, udp=udp)
        except PortInUseError as exc:
            raise CommandError(str(exc)) from None
        # In a process of its own: the supervisor, which lives as long as the server, keeps none of its memory.
        collect = [sys.executable, MANAGE, "collectstatic", "--noinput", "--verbosity", "0"]
        collected = subprocess.run(collect, check=False)  # noqa: S603 (our own argv)
        if collected.returncode:
            raise CommandError("collectstatic failed (its error is above)")
        children = [consumer_child(), web_child(host=host, port=port, workers=workers, threads=threads)]
        if demo:
            children.insert(0, simulator_child(speed=speed))
        url = f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"
        self.stdout.write(f"micboard {'demo' if demo else 'server'}: supervisor pid {os.getpid()}")

        def ready() -> None:
            self.stdout.write(self.style.SUCCESS(f"\nmicboard running: {url}  (Ctrl-C to stop)"))
            login = settings.DATA_DIR / "demo_login"
            if demo and login.exists():
                self.stdout.write(f"Login: admin / {login.read_text().strip()}\n")
            self.stdout.flush()

        code = Supervisor(children, say=self._say).run(ready=ready)
        self._say("micboard stopped.")
        if code:
            raise SystemExit(code)

    def _say(self, line: str) -> None:
        with contextlib.suppress(OSError, ValueError):  # the terminal may be gone (SIGHUP)
            self.stdout.write(line)
            self.stdout.flush()
