"""Poll every monitored receiver once, store what they said and print it: a rack check from the shell.

    manage.py poll        # works with or without a running consumer (a one-shot connection per receiver)

Receivers in their retry back-off are skipped, as the consumer would; "Check now" in the admin (or
``POST /api/receivers/{id}/sync_status/``) clears a back-off first. Exits with status 1 when any
receiver did not answer, so scripts can check a rack before doors.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from micboard.models import Receiver
from tasks.polling import run_poll_cycle


def _counted(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


class Command(BaseCommand):
    help = "Poll every monitored receiver once (connect per poll), store the readings and print each result."

    def handle(self, *args, **options):
        summary = run_poll_cycle()
        names = {
            r.pk: (r.name, r.address) for r in Receiver.objects.filter(pk__in=[o.receiver_id for o in summary.outcomes])
        }
        for outcome in sorted(summary.outcomes, key=lambda o: names.get(o.receiver_id, ("", ""))):
            name, address = names.get(outcome.receiver_id, (f"receiver {outcome.receiver_id}", ""))
            if outcome.reading is not None:
                reading = outcome.reading
                present = sum(1 for c in reading.channels.values() if c.tx_present)
                latency = f", {reading.latency_ms:g} ms" if reading.latency_ms is not None else ""
                self.stdout.write(
                    f"ok      {name} ({address}): {reading.model or '?'} {reading.device_id or ''}, "
                    f"{_counted(len(reading.channels), 'channel')}, {_counted(present, 'transmitter')} on{latency}"
                )
            else:
                self.stdout.write(f"FAILED  {name} ({address}): {outcome.error}")
        self.stdout.write(f"{summary.polled} polled, {summary.failed} failed in {summary.seconds:.2f} s")
        if summary.failed:
            raise CommandError(f"{summary.failed} receiver(s) did not answer")
