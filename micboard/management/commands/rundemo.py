"""Run the simulator, the Huey consumer and the web server together in the foreground."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

MANAGE = str(Path(settings.BASE_DIR) / "manage.py")


class Command(BaseCommand):
    help = "Start `simulate`, `run_huey` and the web server; Ctrl-C stops all three."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--speed", type=float, default=1.0, help="Simulator clock speed (battery drain).")

    def handle(self, *args, host: str, port: int, speed: float, **options):
        commands = {
            "simulator": [sys.executable, MANAGE, "simulate", "--speed", str(speed)],
            "poller": [sys.executable, MANAGE, "run_huey"],
            "web": [sys.executable, MANAGE, "runserver", f"{host}:{port}", "--noreload", "--skip-checks"],
        }
        children: dict[str, subprocess.Popen] = {}
        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            for name, argv in commands.items():
                # Own process group: the terminal's Ctrl-C reaches us, and we stop the children in order.
                children[name] = subprocess.Popen(argv, start_new_session=True)  # noqa: S603 (our own argv)
                time.sleep(0.5 if name == "simulator" else 0)
            url = f"http://{host}:{port}/"
            self.stdout.write(self.style.SUCCESS(f"\nmicboard demo running: {url}  (Ctrl-C to stop)"))
            login = settings.DATA_DIR / "demo_login"
            if login.exists():
                self.stdout.write(f"Login: admin / {login.read_text().strip()}\n")
            while not stopping:
                for name, child in children.items():
                    if child.poll() is not None:
                        raise CommandError(f"{name} exited with status {child.returncode}; stopping the demo")
                time.sleep(0.3)
        finally:
            for child in reversed(list(children.values())):
                if child.poll() is None:
                    child.send_signal(signal.SIGINT)
            deadline = time.monotonic() + 8
            for child in children.values():
                try:
                    child.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
            self.stdout.write("Demo stopped.")
