"""Seed the demo rig (receivers, performers, groups) and a demo admin login. Safe to re-run."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from micboard.models import Receiver
from micboard.services import AssignmentService, BoardService, DeviceService, GroupService, LocationService
from micboard.simulators.rig import DEMO_GROUPS, DEMO_RIG

DEMO_USER = "admin"


class Command(BaseCommand):
    help = "Create the demo rig matching `manage.py simulate`, and a demo admin login (printed)."

    def handle(self, *args, **options):
        channels = {}
        for device in DEMO_RIG:
            extras = _extras(device)
            receiver = Receiver.objects.filter(
                host=device.host, port=device.port, remote_id=extras.get("remote_id", "")
            ).first()
            if receiver is None:
                receiver = DeviceService.create_receiver(
                    name=device.name,
                    model=device.model,
                    driver=device.driver,
                    host=device.host,
                    port=device.port,
                    location=LocationService.get_or_create_location(name=device.location),
                    **extras,
                )
                self.stdout.write(f"  added {receiver} at {receiver.address}")
            DeviceService.sync_channels(receiver=receiver)
            for number, rig_channel in enumerate(device.channels, start=1):
                channel = receiver.channels.get(number=number)
                channels[(device.key, number)] = channel
                if not hasattr(channel, "assignment"):
                    AssignmentService.assign(channel=channel, performer=rig_channel.performer)
        for position, (name, tiles) in enumerate(DEMO_GROUPS):
            GroupService.set_tiles(
                name=name, channels=[channels[t] if t else None for t in tiles], position=position
            )
        BoardService.bump_version()
        password = self._demo_login()
        self.stdout.write(self.style.SUCCESS(f"Demo rig ready: {len(DEMO_RIG)} receivers, {len(channels)} channels."))
        self.stdout.write(f"Demo login: {DEMO_USER} / {password}")

    def _demo_login(self) -> str:
        """A random password made once and kept in the data directory (never in the repo)."""
        path = settings.DATA_DIR / "demo_login"
        user_model = get_user_model()
        user = user_model.objects.filter(username=DEMO_USER).first()
        if path.exists() and user is not None:
            return path.read_text().strip()
        password = secrets.token_urlsafe(9)
        if user is None:
            user_model.objects.create_superuser(DEMO_USER, "", password)
        else:
            user.set_password(password)
            user.save()
        path.write_text(password + "\n")
        path.chmod(0o600)
        return password


def _extras(device) -> dict[str, str]:
    """A System API device's receiver names it on its server and trusts that server's certificate, which the
    simulator keeps in the data directory (made here when the demo is seeded first)."""
    if device.driver != "shure_system_api":
        return {}
    from micboard.simulators.system_api import TLS_FOLDER, receiver_options

    return receiver_options(device, tls_dir=settings.DATA_DIR / TLS_FOLDER)
