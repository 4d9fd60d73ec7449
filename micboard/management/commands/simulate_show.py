"""``python manage.py simulate_show``: a whole show in compressed time, then its history and report checked.

Plays the scripted show of ``micboard/showrun.py`` (a ULX-D4Q and an AD4Q over loopback, through the real
driver and the history pipeline, on the simulator's manual clock), prints the history's rows and size
against the README's figures and the report's numbers against what the simulator did, and exits 1 on a
mismatch. It adds two receivers ("Show run ...") while it runs: run it on a database no consumer follows.
"""

from __future__ import annotations

import logging

from django.core.management.base import BaseCommand, CommandError

from micboard.showrun import run_show


class Command(BaseCommand):
    help = "Play a 24-hour show at high speed and compare its history and report with the simulator."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--hours", type=float, default=24.0, help="show length in show-hours (default 24)")
        parser.add_argument(
            "--step", type=int, default=10, choices=(1, 2, 5, 10),
            help="show-seconds between polls before the last hour (default 10; the last hour is polled every second)",
        )  # fmt: skip
        parser.add_argument("--seed", type=int, default=7, help="the simulator's seed (default 7)")
        parser.add_argument(
            "--keep", action="store_true", help="keep the show's receivers, history and alerts (see them at /report/)"
        )

    def handle(self, *args, hours: float, step: int, seed: int, keep: bool, **options) -> None:
        if not 1 <= hours <= 48:
            raise CommandError("--hours must be between 1 and 48")
        alerts = logging.getLogger("micboard.alerts")
        level = alerts.level
        alerts.setLevel(logging.WARNING)  # a line per alert opened would bury the figures
        try:
            result = run_show(hours=hours, step=step, seed=seed, keep=keep, progress=self.stdout.write)
        finally:
            alerts.setLevel(level)
        for line in result.lines():
            self.stdout.write(line)
        if result.problems():
            raise CommandError("the show's history or report does not match the simulator")
