"""The one foreground process of ``make serve`` and ``make demo``: it starts micboard's processes and stops them all.

Each child runs in a process group of its own, so the terminal's Ctrl-C reaches the supervisor alone
and the children are stopped in order: every child is sent its own stop signal (SIGTERM for gunicorn,
SIGINT for the Huey consumer, which would restart on SIGHUP), given ``grace`` seconds, and then its
whole group (gunicorn's workers included) is killed. SIGINT, SIGTERM and SIGHUP (the terminal was
closed; not when started under nohup) all stop everything; when the supervisor itself is killed
outright, the kernel sends each child SIGTERM (Linux's parent-death signal). A child that exits on its
own stops the others.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from micboard.exceptions import PortInUseError
from micboard.procfs import port_holder

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Child:
    """A process the supervisor runs: its name in messages, its argv and the signal that stops it cleanly."""

    name: str
    argv: Sequence[str]
    stop_signal: int = signal.SIGTERM


def ensure_free(host: str, port: int, *, udp: bool = False) -> None:
    """Raise PortInUseError, naming the process that holds it, when ``host:port`` cannot be listened on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: TIME_WAIT is no obstacle
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            holder = port_holder(port, udp=udp)
            where = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
            where += "/udp" if udp else ""
            if holder is None:
                raise PortInUseError(
                    f"{where} is already in use by a process this user cannot see; stop it or choose another port"
                ) from None
            raise PortInUseError(
                f"{where} is already in use by pid {holder.pid} ({holder.command or 'command unknown'}); "
                f"stop it (kill {holder.pid}) or choose another port"
            ) from None


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the supervisor dies, even by SIGKILL (Linux only)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class Supervisor:
    """Run ``children`` until a stop signal arrives or one of them exits, then stop every one of them."""

    def __init__(self, children: Sequence[Child], *, say: Callable[[str], None], grace: float = 10.0) -> None:
        self.children = list(children)
        self.say = say
        self.grace = grace
        self.processes: dict[str, subprocess.Popen] = {}
        self.stop_requested: int | None = None

    def _say(self, line: str) -> None:
        with contextlib.suppress(OSError, ValueError):  # the terminal may be gone (SIGHUP): keep stopping
            self.say(line)

    def _on_signal(self, signum, frame) -> None:
        self.stop_requested = signum

    def run(self, *, ready: Callable[[], None] | None = None) -> int:
        """Start the children, wait, stop them all; 0 after a stop signal, 1 when a child exited first."""
        # Started under nohup (SIGHUP ignored), the server is meant to outlive its terminal: keep it so.
        caught = [s for s in STOP_SIGNALS if not (s == signal.SIGHUP and signal.getsignal(s) == signal.SIG_IGN)]
        previous = {sig: signal.signal(sig, self._on_signal) for sig in caught}
        try:
            failed = None
            for child in self.children:
                if self.stop_requested is not None:
                    break
                self.processes[child.name] = subprocess.Popen(  # noqa: S603 (our own argv)
                    list(child.argv),
                    start_new_session=True,
                    preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
                )
                self._say(f"  {child.name:<10} pid {self.processes[child.name].pid}")
            if self.stop_requested is None and ready is not None:
                with contextlib.suppress(OSError, ValueError):  # a closed terminal must not stop the stop
                    ready()
            while self.stop_requested is None and failed is None:
                failed = next((c for c in self.children if self.processes[c.name].poll() is not None), None)
                if failed is None:
                    time.sleep(0.2)
            if failed is not None:
                code = self.processes[failed.name].returncode
                self._say(f"{failed.name} exited with status {code}; stopping the others")
            else:
                self._say(f"{signal.Signals(self.stop_requested).name}: stopping")
            self.stop_all()
            return 1 if failed is not None else 0
        finally:
            self.stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def stop_all(self) -> None:
        """Stop every child: its stop signal, ``grace`` seconds, then SIGKILL to whatever is left of its group."""
        running = {name: p for name, p in self.processes.items() if p.returncode is None}
        if not running:
            return
        for child in reversed(self.children):
            process = running.get(child.name)
            if process is not None and not _exited(process):
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(child.stop_signal)
        deadline = time.monotonic() + self.grace
        while time.monotonic() < deadline and not all(_exited(p) for p in running.values()):
            time.sleep(0.05)
        for name, process in running.items():
            if not _exited(process):
                self._say(f"{name} did not stop within {self.grace:g} s: killed")
            # The leader is at most a zombie here, so its group id cannot have been reused: end the group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _exited(process: subprocess.Popen) -> bool:
    """True once the process has exited, without reaping it (its pid, and so its group, stays reserved)."""
    if process.returncode is not None:
        return True
    try:
        info = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None
