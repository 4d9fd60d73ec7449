"""``python manage.py simctl``: drive a running ``manage.py simulate`` through its control port.

Examples::

    simctl list
    simctl pack-off ulxd 2          simctl pack-on ulxd 2
    simctl battery ulxd 2 15        simctl name ulxd 2 "Lead Vox"
    simctl drain ulxd 2 3           (with dynamics: the pack drains 3 times faster than its runtime says)
    simctl fault slxd third_party_disabled      simctl fault slxd none
    simctl power-off ad             simctl power-on ad
    simctl peak ulxd 1              simctl tx-mute ulxd 1 on
    simctl tx-offset ulxd 1 9       simctl tx-offset ad 2 -12
    simctl bars ulxd 1 0            simctl bars ulxd 1 auto
    simctl runtime ad 1 warning     simctl runtime ad 1 calculating     simctl runtime ad 1 auto
    simctl group-channel ad 1 3,12  simctl frequency ad 1 595000
    simctl antennas ad 1 BR         simctl antennas ulxd 1 XB           simctl antennas ad 1 auto
    simctl rf-mode ad quadversity   simctl rf-mode ad fd-c              simctl rf-mode ad standard
    simctl end-subscriptions ewdx   (Sennheiser SSC: every subscription ends with 310)
    simctl snapshot ulxd
    simctl list-shape keynote array  (relay / array / items: how the System API server lists its devices)
"""

from __future__ import annotations

import json
import socket
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from micboard.simulators.engine import DEFAULT_CONTROL_PORT

# command -> (control action, argument names after the device key)
COMMANDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "list": ("list", ()),
    "snapshot": ("snapshot", ()),
    "pack-off": ("pack_off", ("channel",)),
    "pack-on": ("pack_on", ("channel",)),
    "battery": ("set_battery", ("channel", "percent")),
    "drain": ("set_drain", ("channel", "factor")),
    "name": ("set_name", ("channel", "name")),
    "fault": ("set_fault", ("kind",)),
    "power-off": ("power_off", ()),
    "power-on": ("power_on", ()),
    "peak": ("peak", ("channel",)),
    "tx-mute": ("tx_mute", ("channel", "on")),
    "rf-loss": ("rf_loss", ("channel", "on")),
    "tx-offset": ("set_tx_offset", ("channel", "db")),
    "bars": ("set_bars", ("channel", "bars")),
    "runtime": ("set_runtime", ("channel", "runtime")),
    "group-channel": ("set_group_channel", ("channel", "group_channel")),
    "frequency": ("set_frequency", ("channel", "khz")),
    "antennas": ("set_antennas", ("channel", "status")),
    "rf-mode": ("set_rf_mode", ("mode",)),
    # System API devices only: a receiver channel's mute, and the shape of the server's device list.
    "audio-mute": ("audio_mute", ("channel", "on")),
    "list-shape": ("list_shape", ("shape",)),
    "end-subscriptions": ("end_subscriptions", ()),
}
_WHOLE = ("db", "khz")  # signed whole numbers
_WHOLE_OR_WORD = ("bars", "runtime")  # a number, or a word the simulator knows (auto, warning, calculating)


def _usage(command: str) -> str:
    _, names = COMMANDS[command]
    device = "" if command == "list" else " DEVICE"
    return f"simctl {command}{device}{''.join(' ' + n.upper() for n in names)}"


def build_request(command: str, args: list[str]) -> dict[str, Any]:
    """Turn ``simctl`` words into a control request; raises CommandError on bad input."""
    action, names = COMMANDS[command]
    expected = len(names) + (0 if command == "list" else 1)
    if len(args) != expected:
        raise CommandError(f"usage: {_usage(command)}")
    if command == "list":
        return {"action": "list"}
    request: dict[str, Any] = {"device": args[0], "action": action}
    for name, raw in zip(names, args[1:], strict=True):
        if name == "channel":
            if not raw.isdigit():
                raise CommandError(f"channel must be a number, got {raw!r}")
            request[name] = int(raw)
        elif name in ("percent", "factor"):
            try:
                request[name] = float(raw)
            except ValueError:
                raise CommandError(f"{name} must be a number, got {raw!r}") from None
        elif name == "on":
            if raw.lower() not in ("on", "off"):
                raise CommandError(f"expected on or off, got {raw!r}")
            request[name] = raw.lower() == "on"
        elif name == "kind":
            request[name] = None if raw.lower() == "none" else raw
        elif name in _WHOLE:
            try:
                request[name] = int(raw)
            except ValueError:
                raise CommandError(f"{name} must be a whole number, got {raw!r}") from None
        elif name in _WHOLE_OR_WORD:
            request[name] = int(raw) if raw.isdigit() else raw.lower()
        else:
            request[name] = raw
    return request


def send_request(request: dict[str, Any], host: str, port: int, timeout: float = 5.0) -> dict[str, Any]:
    """Send one JSON request line and return the decoded reply."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except ConnectionRefusedError:
        raise CommandError(
            f"the simulator is not running (nothing listens on {host}:{port}); start it with: python manage.py simulate"
        ) from None
    except OSError as exc:
        raise CommandError(f"cannot talk to the simulator on {host}:{port}: {exc}") from None
    try:
        return json.loads(data)
    except ValueError:
        raise CommandError(f"unreadable reply from the simulator on {host}:{port}: {data[:200]!r}") from None


def _channel_line(ch: dict[str, Any]) -> str:
    tuned = f"{ch['frequency_khz'] / 1000:.3f} MHz"
    if ch.get("group_channel") not in (None, "--,--"):
        tuned += f" (group,channel {ch['group_channel']})"
    parts = [f"  ch{ch['channel']} {ch['name']!r:<12}", tuned]
    if ch.get("tx_on") is None:
        parts.append("no transmitter")
    elif not ch["tx_on"]:
        parts.append(f"{ch['tx_model']} OFF")
    else:
        runtime = "calculating" if ch["runtime_calculating"] else f"{ch['battery_minutes']} min"
        muted = " muted" if ch.get("tx_muted") else ""
        parts.append(
            f"{ch['tx_model']} on{muted}, {ch['battery_type']} {ch['battery_percent']:.0f}% "
            f"({ch['battery_bars']} bars, {runtime})"
        )
    if ch.get("tx_offset_db"):
        parts.append(f"offset {ch['tx_offset_db']:+d} dB")
    pinned = [
        f"{label} {ch[key]}"
        for key, label in (("bars_pinned", "bars"), ("runtime_pinned", "runtime"), ("antennas_pinned", "antennas"))
        if ch.get(key) is not None
    ]
    if pinned:
        parts.append("pinned " + " ".join(pinned))
    parts.append(f"meter {ch['meter_rate']} ms")
    return ", ".join(parts)


def format_snapshot(snap: dict[str, Any]) -> list[str]:
    state = "on" if snap["powered"] else "POWERED OFF"
    fault = f", fault {snap['fault']}" if snap["fault"] else ""
    band = f", band {snap['band']}" if snap.get("band") else ""
    mode = f", {snap['rf_mode']}" if snap.get("rf_mode") not in (None, "standard") else ""
    lines = [
        f"{snap['key']} {snap['model']} {snap['host']}:{snap['port']} {state}{fault}{band}{mode}, "
        f"{snap['clients']} client(s)"
    ]
    lines += [_channel_line(ch) for ch in snap["channels"]]
    return lines


class Command(BaseCommand):
    help = "Control a running simulator (see `manage.py simulate`): packs, batteries, names, faults, power."

    def add_arguments(self, parser) -> None:
        parser.add_argument("command", choices=sorted(COMMANDS), help="what to do")
        parser.add_argument(
            "params", nargs="*", metavar="ARG", help="device key, channel and value as the command needs"
        )
        parser.add_argument(
            "--control-port",
            type=int,
            default=DEFAULT_CONTROL_PORT,
            help=f"the simulator's control port (default {DEFAULT_CONTROL_PORT})",
        )
        parser.add_argument("--control-host", default="127.0.0.1")
        parser.add_argument("--json", action="store_true", help="print the raw JSON reply")

    def handle(self, *args, **options) -> None:
        command = options["command"]
        request = build_request(command, options["params"])
        reply = send_request(request, options["control_host"], options["control_port"])
        if not reply.get("ok"):
            raise CommandError(reply.get("error") or "the simulator refused the request")
        if options["json"]:
            self.stdout.write(json.dumps(reply, indent=2))
            return
        result = reply["result"]
        snapshots = result if isinstance(result, list) else [result]
        if command not in ("list", "snapshot"):
            detail = " ".join(options["params"][1:])
            self.stdout.write(f"ok: {command} {request['device']} {detail}".rstrip())
        for snap in snapshots:
            for line in format_snapshot(snap):
                self.stdout.write(line)
