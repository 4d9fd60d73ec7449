"""Small builders for test data (through the services, like the app itself)."""

from __future__ import annotations

import threading
import time

from micboard.drivers.base import ChannelReading, ReceiverReading, audio_percent_from_dbfs, rf_percent_from_dbm
from micboard.services import DeviceService

_port = iter(range(30000, 40000))


def make_receiver(name="Rack A", model="ULXD4Q", host="127.0.0.1", port=None, **kwargs):
    return DeviceService.create_receiver(name=name, model=model, host=host, port=port or next(_port), **kwargs)


def pack_on(
    number, *, bars=5, percent=None, minutes=300, name=None, peak=False, rf_dbm=-55.0, audio_dbfs=-20.0,
    antenna_dbm=None, antennas="AI",
):
    """A pack switched on. ``antenna_dbm`` (one dBm per antenna, as AD reports) sets the per-antenna levels
    and makes ``rf_dbm`` their strongest."""
    if antenna_dbm is not None:
        rf_dbm = max(antenna_dbm)
    return ChannelReading(
        number=number,
        name=name if name is not None else f"Ch {number}",
        frequency_khz=578000 + number * 125,
        tx_present=True,
        tx_model="ULXD2",
        battery_bars=bars,
        battery_percent=percent,
        battery_runtime_min=minutes,
        battery_type="LION",
        tx_offset_db=0,
        rf_dbm=rf_dbm,
        rf_percent=rf_percent_from_dbm(rf_dbm),
        rf_antenna_percents=tuple(rf_percent_from_dbm(d) for d in antenna_dbm) if antenna_dbm else None,
        antennas=antennas,
        audio_dbfs=audio_dbfs,
        audio_percent=audio_percent_from_dbfs(audio_dbfs),
        audio_peak=peak,
        metered=True,
    )


def pack_off(number, *, name=None):
    return ChannelReading(
        number=number,
        name=name if name is not None else f"Ch {number}",
        frequency_khz=578000 + number * 125,
        tx_present=False,
        rf_dbm=-108.0,
        rf_percent=0,
        antennas="XX",
        audio_dbfs=-120.0,
        audio_percent=0,
        metered=True,
    )


def reading(*channels, family="ulxd"):
    return ReceiverReading(
        family=family, device_id="RACKA", firmware="2.4.6", channels={c.number: c for c in channels}, latency_ms=3.0
    )


def use_fast_polls(settings, *, interval: float = 0.5) -> None:
    """Poll settings that keep loopback tests quick: short timeouts, 100 ms metering, quick back-off."""
    settings.MICBOARD_POLL_INTERVAL = interval
    settings.MICBOARD_REFRESH_INTERVAL = interval
    settings.MICBOARD_POLL_TIMEOUT = 2.0
    settings.MICBOARD_METER_RATE_MS = 100
    settings.MICBOARD_OFFLINE_AFTER = 2
    settings.MICBOARD_MAX_BACKOFF = 1.0


def start_simulator(keys):
    """Demo-rig devices on ephemeral loopback ports, values frozen (dynamics off) so tests can assert them."""
    from micboard.simulators import make_device
    from micboard.simulators.engine import SimulatorThread
    from micboard.simulators.rig import rig_device

    devices = [
        make_device(rig_device(k), host="127.0.0.1", port=0, dynamics=False, calculating_seconds=0) for k in keys
    ]
    return SimulatorThread(devices).start()


def start_rig_at(keys, *, network: str, attempts: int = 5):
    """Demo-rig devices as a venue has them: each on an address of its own (``<network>.<octet>``, the rig's
    octets) and all on one port, a free one (what a scan probes), values frozen. Returns (simulator, port)."""
    import socket

    from micboard.simulators import make_device
    from micboard.simulators.engine import SimulatorBindError, SimulatorThread
    from micboard.simulators.rig import rig_device

    rigs = [rig_device(k) for k in keys]
    for _ in range(attempts):
        with socket.socket() as probe:
            probe.bind((f"{network}.{rigs[0].octet}", 0))
            port = probe.getsockname()[1]
        devices = [
            make_device(r, host=f"{network}.{r.octet}", port=port, dynamics=False, calculating_seconds=0) for r in rigs
        ]
        try:
            return SimulatorThread(devices).start(), port
        except SimulatorBindError:
            continue  # another process took the port on one of the addresses meanwhile
    raise AssertionError(f"no port free on every address of {network}.x after {attempts} tries")


def receivers_for(sim, keys):
    """Receivers pointing at the simulator's devices, named and modelled as in the demo rig."""
    from micboard.simulators.rig import rig_device

    out = {}
    for key in keys:
        rig = rig_device(key)
        host, port = sim.address(key)
        extras = getattr(sim.device(key), "receiver_options", dict)()  # e.g. a System API device id and pin
        out[key] = make_receiver(name=rig.name, model=rig.model, host=host, port=port, driver=rig.driver, **extras)
    return out


def make_user(username: str, *, role: str | None = "viewer", password: str | None = None, **fields):
    """A user holding ``role`` (viewer / operator / admin, None: no role), as micboard's roles give it."""
    from django.contrib.auth import get_user_model

    from micboard.services import RoleService

    user = get_user_model().objects.create_user(username, password=password, **fields)
    staff = user.is_staff
    RoleService.grant(user=user, role=role)
    if staff and not user.is_staff:  # keep a staff flag asked for explicitly
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    return user


def wait_for(predicate, timeout: float, what: str, step: float = 0.02):
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout`` seconds pass (AssertionError)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"did not {what} within {timeout} s")


class Driven:
    """A holder driven from a thread until stopped (``stop(close=False)`` leaves it as a hung consumer would)."""

    def __init__(self, owner: str | None = None):
        from tasks.links import LinkHolder

        self.holder = LinkHolder(owner=owner)
        self.halt = threading.Event()
        assert self.holder.begin()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        from django.db import connection

        try:
            self.holder.drive(seconds=600, stop=self.halt)
        finally:
            self.holder.end()
            connection.close()

    def stop(self, *, close: bool = True):
        self.halt.set()
        self.thread.join(10)
        if close:
            self.holder.close()
