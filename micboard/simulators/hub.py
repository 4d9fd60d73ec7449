"""Run many simulated devices: :class:`SimulatorHub` (asyncio) and :class:`SimulatorThread` (a thread).

The hub starts and stops any mix of :class:`~micboard.simulators.engine.SimulatedDevice` subclasses and
serves the JSON-lines control protocol ``manage.py simctl`` speaks. The actions every family shares are
in :data:`COMMON_ACTIONS`; a family adds its own through its class attribute ``actions`` (name ->
(required arguments, optional arguments)), and the hub offers those for that family's devices only.

No Django imports.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from micboard.simulators.engine import SimulatedDevice

DEFAULT_CONTROL_PORT = 2299


class SimulatorError(RuntimeError):
    """A control request the simulator cannot carry out."""


class SimulatorBindError(SimulatorError):
    """A listener could not be opened (address in use, no such interface, ...)."""


# action -> (required arguments, optional arguments); a family's class attribute ``actions`` adds more.
COMMON_ACTIONS: dict[str, tuple[tuple[str, ...], frozenset[str]]] = {
    "pack_off": (("channel",), frozenset()),
    "pack_on": (("channel",), frozenset()),
    "set_battery": (("channel", "percent"), frozenset()),
    "set_drain": (("channel", "factor"), frozenset()),
    "set_name": (("channel", "name"), frozenset()),
    "set_fault": (("kind",), frozenset()),
    "power_off": ((), frozenset()),
    "power_on": ((), frozenset()),
    "peak": (("channel",), frozenset({"samples"})),
    "tx_mute": (("channel",), frozenset({"on"})),
    "rf_loss": (("channel",), frozenset({"on"})),
    "snapshot": ((), frozenset()),
}
_ALIASES = {"battery": "set_battery", "name": "set_name", "rename": "set_name", "fault": "set_fault", "mute": "tx_mute"}
ACTIONS = ("list", *COMMON_ACTIONS)


def _action_name(action: str) -> str:
    name = str(action).strip().lower().replace("-", "_")
    return _ALIASES.get(name, name)


class SimulatorHub:
    """Starts and stops many devices; optionally serves JSON-lines control on ``control_port``.

    Control protocol: one JSON object per line, e.g. ``{"device": "ulxd", "action": "pack_off",
    "channel": 2}``, answered by ``{"ok": true, "device": "ulxd", "action": "pack_off", "result": {...}}``
    (the device snapshot) or ``{"ok": false, "error": "..."}``. ``{"action": "list"}`` returns every
    snapshot. ``control_port=0`` binds an ephemeral port (see :attr:`control_address`).
    """

    def __init__(
        self,
        devices: Iterable[SimulatedDevice],
        *,
        control_port: int | None = None,
        control_host: str = "127.0.0.1",
    ) -> None:
        self.devices: dict[str, SimulatedDevice] = {}
        for device in devices:
            if device.key in self.devices:
                raise ValueError(f"duplicate device key {device.key!r}")
            self.devices[device.key] = device
        self.control_host = control_host
        self.control_port = control_port
        self._control_server: asyncio.Server | None = None
        self._control_clients: set[asyncio.StreamWriter] = set()

    @property
    def control_address(self) -> tuple[str, int] | None:
        if self.control_port is None:
            return None
        return (self.control_host, self.control_port)

    def device(self, key: str) -> SimulatedDevice:
        try:
            return self.devices[key]
        except KeyError:
            known = ", ".join(self.devices) or "none"
            raise SimulatorError(f"no simulated device {key!r} (known: {known})") from None

    def action_names(self) -> tuple[str, ...]:
        """Every action some device of this hub accepts (``list`` first)."""
        names = dict.fromkeys(ACTIONS)
        for device in self.devices.values():
            names.update(dict.fromkeys(type(device).actions))
        return tuple(names)

    async def start(self) -> None:
        started: list[SimulatedDevice] = []
        try:
            for device in self.devices.values():
                await device.start()
                started.append(device)
            if self.control_port is not None:
                try:
                    self._control_server = await asyncio.start_server(
                        self._on_control, self.control_host, self.control_port
                    )
                except OSError as exc:
                    raise SimulatorBindError(
                        f"control server: cannot listen on {self.control_host}:{self.control_port}: "
                        f"{exc.strerror or exc}"
                    ) from exc
                self.control_port = self._control_server.sockets[0].getsockname()[1]
        except BaseException:
            for device in started:
                await device.stop()
            raise

    async def stop(self) -> None:
        if self._control_server is not None:
            self._control_server.close()
            self._control_server = None
        for writer in list(self._control_clients):
            writer.transport.abort()
        self._control_clients.clear()
        for device in self.devices.values():
            await device.stop()

    async def call(self, key: str | None, action: str, **kwargs: Any) -> Any:
        """Run one control action; returns the device snapshot (``list``: all snapshots)."""
        name = _action_name(action)
        if name == "list":
            return [device.snapshot() for device in self.devices.values()]
        known = self.action_names()
        if name not in known:
            raise SimulatorError(f"unknown action {action!r}; actions: {', '.join(known)}")
        if not key:
            raise SimulatorError(f"action {name!r} needs a device")
        device = self.device(key)
        table = {**COMMON_ACTIONS, **type(device).actions}
        if name not in table:
            raise SimulatorError(f"{key} ({device.rig.model}) has no action {name!r}; it has: {', '.join(table)}")
        required, optional = table[name]
        unexpected = set(kwargs) - set(required) - optional
        if unexpected:
            raise SimulatorError(f"unexpected argument(s) for {name}: {', '.join(sorted(unexpected))}")
        missing = [arg for arg in required if arg not in kwargs and arg not in optional]
        if missing:
            raise SimulatorError(f"{name} needs: {', '.join(missing)}")
        if name != "snapshot":
            await getattr(device, name)(**kwargs)
        return device.snapshot()

    async def handle_request(self, request: Any) -> dict[str, Any]:
        if not isinstance(request, dict):
            return {"ok": False, "error": "request must be a JSON object"}
        args = {k: v for k, v in request.items() if k not in ("device", "action")}
        action = request.get("action")
        if not isinstance(action, str):
            return {"ok": False, "error": "missing 'action'"}
        key = request.get("device")
        try:
            result = await self.call(key, action, **args)
        except SimulatorError as exc:
            return {"ok": False, "error": str(exc)}
        except (TypeError, ValueError) as exc:
            return {"ok": False, "error": f"bad arguments: {exc}"}
        reply: dict[str, Any] = {"ok": True, "action": _action_name(action), "result": result}
        if key:
            reply["device"] = key
        return reply

    async def _on_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._control_clients.add(writer)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                if not line.strip():
                    continue
                try:
                    request = json.loads(line)
                except ValueError as exc:
                    reply: dict[str, Any] = {"ok": False, "error": f"invalid JSON: {exc}"}
                else:
                    reply = await self.handle_request(request)
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, OSError, ValueError):
            pass  # ValueError: a line longer than the reader limit
        finally:
            self._control_clients.discard(writer)
            writer.close()


class SimulatorThread:
    """A :class:`SimulatorHub` on its own event loop in a daemon thread, for synchronous code.

    Usage (``rig_device`` from ``micboard.simulators.rig``, ``make_device`` from ``micboard.simulators``)::

        device = make_device(rig_device("ulxd"), host="127.0.0.1", port=0, dynamics=False)
        with SimulatorThread([device], control_port=0) as sim:
            host, port = sim.address("ulxd")  # the real ephemeral port
            sim.pack_off("ulxd", 2)  # blocking, thread-safe; returns the device snapshot
    """

    def __init__(
        self,
        devices: Iterable[SimulatedDevice],
        *,
        control_port: int | None = None,
        control_host: str = "127.0.0.1",
    ) -> None:
        self.hub = SimulatorHub(devices, control_port=control_port, control_host=control_host)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> SimulatorThread:
        """Start the thread; returns once every listener is bound (re-raises a bind error)."""
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                loop.run_until_complete(self.hub.start())
            except BaseException as exc:
                failure.append(exc)
                self._loop = None
                loop.close()
                ready.set()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.close()

        self._thread = threading.Thread(target=run, name="micboard-simulator", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise SimulatorError("simulator thread did not start in time")
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None or self._loop is None:
            return
        loop = self._loop
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.hub.stop(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout)
        self._thread = None
        self._loop = None

    def __enter__(self) -> SimulatorThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self, coro: Any, timeout: float) -> Any:
        if self._loop is None:
            coro.close()
            raise SimulatorError("simulator thread is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def device(self, key: str) -> SimulatedDevice:
        """The device object (read attributes only from this thread; change it via call())."""
        return self.hub.device(key)

    def address(self, key: str) -> tuple[str, int]:
        return self.hub.device(key).address

    @property
    def control_address(self) -> tuple[str, int] | None:
        return self.hub.control_address

    def call(self, key: str | None, action: str, timeout: float = 10.0, **kwargs: Any) -> Any:
        """Thread-safe control action (see :meth:`SimulatorHub.call`)."""
        return self._run(self.hub.call(key, action, **kwargs), timeout)

    def list(self) -> list[dict[str, Any]]:
        return self.call(None, "list")

    def snapshot(self, key: str) -> dict[str, Any]:
        return self.call(key, "snapshot")

    def pack_off(self, key: str, channel: int) -> dict[str, Any]:
        return self.call(key, "pack_off", channel=channel)

    def pack_on(self, key: str, channel: int) -> dict[str, Any]:
        return self.call(key, "pack_on", channel=channel)

    def set_battery(self, key: str, channel: int, percent: float) -> dict[str, Any]:
        return self.call(key, "set_battery", channel=channel, percent=percent)

    def set_drain(self, key: str, channel: int, factor: float) -> dict[str, Any]:
        return self.call(key, "set_drain", channel=channel, factor=factor)

    def set_name(self, key: str, channel: int, name: str) -> dict[str, Any]:
        return self.call(key, "set_name", channel=channel, name=name)

    def set_fault(self, key: str, kind: str | None) -> dict[str, Any]:
        return self.call(key, "set_fault", kind=kind)

    def power_off(self, key: str) -> dict[str, Any]:
        return self.call(key, "power_off")

    def power_on(self, key: str) -> dict[str, Any]:
        return self.call(key, "power_on")

    def peak(self, key: str, channel: int) -> dict[str, Any]:
        return self.call(key, "peak", channel=channel)

    def tx_mute(self, key: str, channel: int, on: bool = True) -> dict[str, Any]:
        return self.call(key, "tx_mute", channel=channel, on=on)

    def rf_loss(self, key: str, channel: int, on: bool = True) -> dict[str, Any]:
        return self.call(key, "rf_loss", channel=channel, on=on)

    def override(self, key: str, prop: str, value: str | None, channel: int = 0) -> dict[str, Any]:
        return self.call(key, "override", prop=prop, value=value, channel=channel)
