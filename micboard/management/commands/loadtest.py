"""``python manage.py loadtest``: N board screens refreshing against a micboard on loopback (see micboard/loadtest.py).

Run it in the server's environment (same database and session store, e.g. beside ``make serve``): it
makes a throwaway viewer with one session per screen and removes both at the end.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.core.management.base import BaseCommand, CommandError

from micboard.exceptions import LoadTestError
from micboard.loadtest import MAX_SCREENS, MAX_SECONDS, RssSampler, loopback_url, run_load, server_root, viewer_sessions


class Command(BaseCommand):
    help = (
        "Refresh the board grid from N screens (own sessions, htmx headers, If-None-Match) once per interval "
        "for a bounded time, against a micboard on loopback only; print requests, errors, latency and RSS."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="the server (loopback only)")
        parser.add_argument("--screens", type=int, default=100, help=f"screens (default 100, at most {MAX_SCREENS})")
        parser.add_argument(
            "--seconds", type=float, default=300.0, help=f"duration (default 300, at most {MAX_SECONDS:g})"
        )
        parser.add_argument("--interval", type=float, default=1.0, help="seconds between a screen's refreshes")
        parser.add_argument("--group", default="", help="board group slug the screens show (default: All)")
        parser.add_argument(
            "--rss-every", type=float, default=5.0,
            help="seconds between two RSS samples of the server's processes (found from the port; default 5)",
        )

    def handle(self, *args, url: str, screens: int, seconds: float, interval: float, group: str, **options):
        try:
            base = loopback_url(url)
            parts = urlsplit(base)
            root = server_root(parts.port or (443 if parts.scheme == "https" else 80))
            sampler = RssSampler(root, every=options["rss_every"]) if root else None
            with viewer_sessions(screens) as cookies:
                self.stdout.write(
                    f"{screens} screens refreshing {base}/board/grid/ every {interval:g} s for {seconds:g} s"
                )
                if sampler:
                    sampler.start()
                try:
                    result = run_load(base, cookies, seconds=seconds, interval=interval, group=group)
                finally:
                    if sampler:
                        sampler.stop()
        except LoadTestError as exc:
            raise CommandError(str(exc)) from None
        for line in result.lines():
            self.stdout.write(f"  {line}")
        if sampler:
            for line in sampler.lines():
                self.stdout.write(f"  {line}")
        else:
            self.stdout.write("  RSS: no process visible on that port (another user's?)")
        if result.errors:
            raise CommandError(f"{sum(result.errors.values())} refresh(es) failed")
