"""``python manage.py simulate``: run the demo rig's simulated receivers (each family's, see make_device).

One simulated device per ``DEMO_RIG`` entry, each on its own address (127.0.0.x on its protocol's port on
Linux, 127.0.0.1 with a port per octet elsewhere, see ``RigDevice.host``/``.port``; the System API devices
share one HTTPS server), plus a JSON-lines control server that ``python manage.py simctl`` talks to, and the
devices' discovery announcements (SLP, mDNS) on the loopback interface with TTL 0
(``micboard.simulators.announce``). Runs until SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from micboard.exceptions import DriverError
from micboard.simulators import make_device
from micboard.simulators.announce import Announcer, announcements_for
from micboard.simulators.engine import DEFAULT_CONTROL_PORT, SimulatorBindError, SimulatorHub
from micboard.simulators.rig import DEMO_RIG


class Command(BaseCommand):
    help = "Run the simulated receivers of the demo rig until interrupted."

    def add_arguments(self, parser) -> None:
        keys = [device.key for device in DEMO_RIG]
        parser.add_argument(
            "--speed", type=float, default=1.0, help="clock factor for battery drain and runtime (default 1)"
        )
        parser.add_argument("--seed", type=int, default=None, help="make the dynamics reproducible")
        parser.add_argument("--no-chaos", action="store_true", help="never coalesce or split frames across TCP writes")
        parser.add_argument(
            "--no-dynamics", action="store_true", help="keep every value exactly as set (meters still emit)"
        )
        parser.add_argument(
            "--control-port",
            type=int,
            default=DEFAULT_CONTROL_PORT,
            help=f"JSON-lines control port on 127.0.0.1 (default {DEFAULT_CONTROL_PORT}; 0 = any free port)",
        )
        parser.add_argument("--no-control", action="store_true", help="do not start the control server")
        parser.add_argument("--no-announce", action="store_true", help="do not announce the devices (SLP, mDNS)")
        parser.add_argument(
            "--only", nargs="+", choices=keys, metavar="KEY", help=f"simulate only these devices ({', '.join(keys)})"
        )
        parser.add_argument(
            "--ephemeral",
            action="store_true",
            help="bind every device on 127.0.0.1 with a free port instead of the rig address",
        )
        parser.add_argument(
            "--calculating-seconds",
            type=float,
            default=5.0,
            help="how long a switched-on pack reports runtime 'calculating' (default 5)",
        )

    def handle(self, *args, **options) -> None:
        if options["speed"] <= 0:
            raise CommandError("--speed must be positive")
        rigs = [d for d in DEMO_RIG if not options["only"] or d.key in options["only"]]
        devices = [
            make_device(
                rig,
                host="127.0.0.1" if options["ephemeral"] else None,
                port=0 if options["ephemeral"] else None,
                seed=options["seed"],
                speed=options["speed"],
                dynamics=not options["no_dynamics"],
                chaos=not options["no_chaos"],
                calculating_seconds=options["calculating_seconds"],
                **_family_options(rig),
            )
            for rig in rigs
        ]
        control_port = None if options["no_control"] else options["control_port"]
        hub = SimulatorHub(devices, control_port=control_port)
        announcer = None
        if not options["no_announce"]:  # always on the loopback interface with TTL 0: never beyond this machine
            shure, ssc = announcements_for(devices)
            announcer = Announcer(
                shure=shure, ssc=ssc, slp_port=settings.MICBOARD_DISCOVERY_SLP_PORT,
                mdns_port=settings.MICBOARD_DISCOVERY_MDNS_PORT,
            )  # fmt: skip
        asyncio.run(self._run(hub, announcer))

    def _say(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()

    async def _run(self, hub: SimulatorHub, announcer: Announcer | None = None) -> None:
        try:
            await hub.start()
        except SimulatorBindError as exc:
            raise CommandError(str(exc)) from exc
        try:
            if announcer is not None:
                await announcer.start()
                self._say(f"announcing {len(announcer.shure)} SLP and {len(announcer.ssc)} mDNS device(s) on 127.0.0.1")
        except DriverError as exc:
            self._say(f"not announcing the devices for discovery: {exc}")
            announcer = None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(RuntimeError):  # also NotImplemented on Windows (a subclass)
                loop.add_signal_handler(sig, stop.set)
                installed.append(sig)
        try:
            for device in hub.devices.values():
                host, port = device.address
                self._say(f"{device.key:<6} {device.rig.model:<8} {host}:{port}")
            if hub.control_address:
                host, port = hub.control_address
                self._say(f"control {host}:{port}")
            self._say("simulator running; Ctrl-C to stop")
            await stop.wait()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            if announcer is not None:
                await announcer.stop()
            await hub.stop()
        self._say("simulator stopped")


def _family_options(rig) -> dict:
    """A family's own simulator settings: a System API server keeps its certificate in the data directory, so
    the fingerprint seed_demo pinned on its receivers stays the server's across restarts."""
    if rig.driver == "shure_system_api":
        from micboard.simulators.system_api import TLS_FOLDER

        return {"tls_dir": settings.DATA_DIR / TLS_FOLDER}
    return {}
