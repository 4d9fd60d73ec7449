"""What Linux's /proc says about processes and sockets: who holds a port, a process tree, its memory.

Read-only and without dependencies. On a system without /proc (or a process of another user) each
function answers what it can: no holder, no children, no RSS.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
LISTEN = "0A"  # TCP state of a listening socket in /proc/net/tcp and tcp6


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    command: str  # the command line, arguments joined by spaces ("" when unreadable)


def command_line(pid: int, *, limit: int = 160) -> str:
    """The process's command line as one line, cut to ``limit`` characters ("" when it is gone or hidden)."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return ""
    text = " ".join(raw.replace(b"\0", b" ").decode(errors="replace").split())  # one line, whatever the arguments
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _listening_inodes(port: int, *, udp: bool = False) -> list[int]:
    """Socket inodes listening on TCP ``port`` (bound to UDP ``port``) on any address, IPv4 and IPv6."""
    inodes = []
    for table in ("udp", "udp6") if udp else ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or (not udp and fields[3] != LISTEN):
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.append(int(fields[9]))
    return inodes


def port_holder(port: int, *, udp: bool = False) -> ProcessInfo | None:
    """The process holding a socket that listens on TCP ``port`` (UDP with ``udp``), or None when none can be seen.

    A forking server's workers share their parent's socket: the topmost holder is named (gunicorn's
    master, not one of its workers, which the master would replace).
    """
    wanted = {f"socket:[{inode}]" for inode in _listening_inodes(port, udp=udp)}
    if not wanted:
        return None
    holders = set()
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = os.listdir(entry / "fd")
        except OSError:
            continue  # gone meanwhile, or another user's
        for fd in fds:
            try:
                target = os.readlink(entry / "fd" / fd)
            except OSError:
                continue
            if target in wanted:
                holders.add(int(entry.name))
                break
    for pid in sorted(holders):
        fields = _stat_fields(pid)
        if fields is not None and int(fields[1]) not in holders:
            return ProcessInfo(pid=pid, command=command_line(pid))
    return None


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state first), or None when it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def is_running(pid: int) -> bool:
    """True while the process exists and is not a zombie (a zombie holds no memory, port or file)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def parent(pid: int) -> int | None:
    """The parent's pid, or None when the process is gone."""
    fields = _stat_fields(pid)
    return int(fields[1]) if fields is not None else None


def descendants(pid: int) -> list[int]:
    """Every running process below ``pid`` (children, their children, ...), in no particular order."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is None or fields[0] in ("Z", "X"):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], list(children.get(pid, ()))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, ()))
    return found


def rss_kb(pid: int) -> int | None:
    """Resident memory of the process in KiB (VmRSS), or None when it is gone."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None
