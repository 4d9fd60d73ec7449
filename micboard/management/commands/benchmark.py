"""``python manage.py benchmark``: figures for the poll cycle and the board refresh (``make bench``).

Speed and memory targets live here, not in timed tests. Everything runs through micboard's real code
paths: simulated Shure receivers answer over real loopback TCP, ``run_poll_cycle()`` polls them and
writes through the services, and Django's test ``Client`` requests the board grid through the full
middleware stack. The command creates its own receivers and login and removes them at the end, even
on error; it refuses a database that already holds receivers unless ``--force``.
"""

from __future__ import annotations

import contextlib
import gzip
import html
import logging
import math
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time
import tracemalloc
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import django
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from micboard import coordination
from micboard.management.commands import _bench_live as live
from micboard.management.commands.simctl import send_request
from micboard.models import AuditEntry, Channel, Manufacturer, RealTimeConnection, Receiver, Transmitter
from micboard.query_optimization import QueryAnalyzer
from micboard.services import BoardService, DeviceService, RoleService
from micboard.services.board import HEARTBEAT_KEY
from micboard.services.roles import VIEWER
from micboard.simulators import make_device
from micboard.simulators.engine import SimulatedDevice, SimulatorThread
from micboard.simulators.rig import RigChannel, RigDevice
from tasks.polling import run_poll_cycle
from web.board_tiles import TileRenders
from web.views import STATE_HEADER

CHANGED_TILES = 4  # tiles changed between two refreshes in the changed-board figures

# Receiver models of the benchmark rig, used in turn; both have four channels with a bodypack each.
MODELS = (("AD4Q", "ADX2"), ("ULXD4Q", "ULXD2"))
CHANNELS_PER_RECEIVER = 4
METER_RATE_MS = 100
TEST_HOST = "testserver"  # the host Django's test Client sends


def _rig(index: int) -> RigDevice:
    """The ``index``-th benchmark receiver: distinct key, varied batteries so tiles get every colour."""
    model, tx_model = MODELS[index % len(MODELS)]
    channels = tuple(
        RigChannel(
            name=f"B{index:02d}C{n}"[:8],
            performer="",
            tx_model=tx_model,
            battery_type="LION",
            battery_percent=5 + (index * 37 + n * 23) % 95,
        )
        for n in range(1, CHANNELS_PER_RECEIVER + 1)
    )
    return RigDevice(
        key=f"bench{index:03d}",
        name=f"Bench {model} {index:03d}",
        model=model,
        device_id=f"BENCH{index:03d}",
        octet=1,  # unused: every device listens on 127.0.0.1 with an ephemeral port
        location="",
        channels=channels,
    )


def _device(rig: RigDevice) -> SimulatedDevice:
    # Packs stay on unless the run switches them (the latency figures switch them themselves).
    return make_device(rig, host="127.0.0.1", port=0, dynamics=True, chaos=True, pack_events_per_hour=0)


def _simulator_child(rigs: Sequence[RigDevice], conn) -> None:
    """Body of the simulator process: serve ``rigs`` until the parent says stop (or goes away)."""
    try:
        sim = SimulatorThread([_device(r) for r in rigs], control_port=0).start()
    except BaseException as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    try:
        conn.send(("ok", ({r.key: sim.address(r.key) for r in rigs}, sim.control_address)))
        with contextlib.suppress(EOFError):
            conn.recv()  # "stop", or EOF when the parent went away
    finally:
        sim.stop()


class _Simulator:
    """The benchmark rig, served from a child process (default) or a thread of this process."""

    def __init__(self, rigs: Sequence[RigDevice], *, mode: str) -> None:
        self.rigs = list(rigs)
        self.mode = mode
        self.addresses: dict[str, tuple[str, int]] = {}
        self.control_address: tuple[str, int] = ("127.0.0.1", 0)
        self._thread: SimulatorThread | None = None
        self._process = None
        self._conn = None

    def start(self) -> _Simulator:
        if self.mode == "thread":
            self._thread = SimulatorThread([_device(r) for r in self.rigs], control_port=0).start()
            self.addresses = {r.key: self._thread.address(r.key) for r in self.rigs}
            self.control_address = self._thread.control_address
            return self
        ctx = multiprocessing.get_context("fork")
        parent, child = ctx.Pipe()
        self._process = ctx.Process(target=_simulator_child, args=(self.rigs, child), daemon=True)
        self._process.start()
        self._conn = parent
        child.close()
        if not parent.poll(30):
            raise CommandError("the simulator process did not start within 30 s")
        status, payload = parent.recv()
        if status != "ok":
            raise CommandError(f"the simulator process failed to start: {payload}")
        self.addresses, self.control_address = payload
        return self

    def control(self, request: dict) -> dict:
        """One request to the simulator's control server (simctl's JSON lines); raises CommandError."""
        host, port = self.control_address
        reply = send_request(request, host, port)
        if not reply.get("ok"):
            raise CommandError(f"the simulator refused {request}: {reply.get('error')}")
        return reply

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.stop()
            self._thread = None
        if self._process is not None:
            with contextlib.suppress(OSError):
                self._conn.send("stop")
            self._process.join(15)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join(5)
            self._conn.close()
            self._process = None


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def p95(values: Sequence[float]) -> float:
    """Nearest-rank 95th percentile."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _pair(values: Sequence[float]) -> str:
    return f"{_ms(median(values))} / {_ms(p95(values))}"


def _sizes_of(response) -> tuple[int, int]:
    """(bytes sent, bytes uncompressed) of a response's body."""
    body = response.content
    if response.get("Content-Encoding") == "gzip":
        return len(body), len(gzip.decompress(body))
    return len(body), len(body)


def _maxrss_kb() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss // 1024 if sys.platform == "darwin" else rss  # bytes on macOS, KiB elsewhere


@dataclass
class _Measured:
    """Timings (ms) and SQL query counts of repeated runs of one code path."""

    ms: list[float] = field(default_factory=list)
    queries: list[int] = field(default_factory=list)
    last: QueryAnalyzer | None = None  # the queries of the last run, for the findings

    def run(self, fn: Callable[[], object]):
        with QueryAnalyzer() as queries:
            start = time.perf_counter()
            result = fn()
            self.ms.append((time.perf_counter() - start) * 1000)
        self.queries.append(queries.count)
        self.last = queries
        return result

    def row(self) -> str:
        return f"{_pair(self.ms):>15}  {_qpair(self.queries):>9}"


def _qpair(counts: Sequence[int]) -> str:
    if not counts:
        return "-"
    return f"{round(median(counts))}" if min(counts) == max(counts) else f"{round(median(counts))}/{max(counts)}"


def _sizes(values: Sequence[int], name: str) -> list[int]:
    if not values or any(v < 1 for v in values):
        raise CommandError(f"--{name} takes positive numbers")
    return sorted(set(values))


class Command(BaseCommand):
    help = (
        "Print speed and memory figures of the poll cycle and the board refresh, measured on simulated "
        "receivers over loopback TCP. Creates and removes its own receivers and login."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--receivers", nargs="+", type=int, default=[6, 24, 48], metavar="N",
            help="poll-cycle sizes: simulated receivers (AD4Q and ULXD4Q in turn, 4 channels each; default 6 24 48)",
        )
        parser.add_argument(
            "--channels", nargs="+", type=int, default=[16, 64, 256], metavar="C",
            help="board sizes in channels (rounded up to whole receivers; default 16 64 256)",
        )
        parser.add_argument(
            "--repeat", type=int, default=10, metavar="R", help="measured poll cycles per size (default 10)"
        )
        parser.add_argument(
            "--requests", type=int, default=50, metavar="Q",
            help="measured requests (or renders) per board figure (default 50)",
        )
        parser.add_argument(
            "--link-seconds", type=float, default=10.0, metavar="S",
            help="seconds the live links are measured per board size (default 10)",
        )
        parser.add_argument(
            "--poll-timeout", type=float, default=3.0, metavar="S",
            help="MICBOARD_POLL_TIMEOUT for the run, seconds (default 3)",
        )
        parser.add_argument(
            "--simulator", choices=("process", "thread"), default="process",
            help="serve the simulated receivers from a child process (default: they do not compete with the "
            "measured code for the GIL) or from a thread of this process",
        )
        parser.add_argument(
            "--latency-trials", type=int, default=0, metavar="N",
            help="device change -> visible in Chromium: N changes of each kind per board size and refresh interval, "
            "against manage.py serve (gunicorn, 2 workers, the consumer's links) on a free loopback port "
            "(default 0: skip; make bench runs 10)",
        )
        parser.add_argument(
            "--load-seconds", type=float, default=0, metavar="S",
            help="sustained load for S seconds per board size: manage.py loadtest against manage.py serve "
            "(default 0: skip; make bench runs 300)",
        )
        parser.add_argument(
            "--load-screens", type=int, default=100, metavar="N", help="screens of the load figure (default 100)"
        )
        parser.add_argument(
            "--force", action="store_true",
            help="run even though the database holds receivers (their active ones are polled too)",
        )

    def handle(self, *args, **options) -> None:
        receivers = _sizes(options["receivers"], "receivers")
        boards = _sizes(options["channels"], "channels")
        repeat, requests = options["repeat"], options["requests"]
        if repeat < 1 or requests < 1:
            raise CommandError("--repeat and --requests must be at least 1")
        if options["poll_timeout"] <= 0:
            raise CommandError("--poll-timeout must be positive")
        mode = options["simulator"]
        if mode == "process" and "fork" not in multiprocessing.get_all_start_methods():
            mode = "thread"
        existing = Receiver.objects.count()
        if existing and not options["force"]:
            raise CommandError(
                f"The database holds {existing} receiver(s). The benchmark creates and deletes data: run it "
                "on a throwaway database (`make bench`), or pass --force."
            )
        # Hundreds of measured requests: their access-log lines would bury the figures and cost time. The
        # bench's throwaway receivers go offline whenever a board size's simulator stops: real alerts on
        # them, which are not figures either.
        quiet = [logging.getLogger(name) for name in ("web.requests", "micboard.alerts")]
        levels = [log.level for log in quiet]
        for log, level in zip(quiet, levels, strict=True):
            log.setLevel(max(logging.WARNING, level))
        try:
            _Run(
                self, receivers=receivers, boards=boards, repeat=repeat, requests=requests,
                poll_timeout=options["poll_timeout"], mode=mode, existing=existing,
                link_seconds=options["link_seconds"], latency_trials=options["latency_trials"],
                load_seconds=options["load_seconds"], load_screens=options["load_screens"],
            ).execute()
        finally:
            for log, level in zip(quiet, levels, strict=True):
                log.setLevel(level)

    def line(self, text: str = "") -> None:
        self.stdout.write(text)


class _Run:
    """One benchmark run: set-up, the two sections, and a clean-up that always happens."""

    def __init__(
        self, command: Command, *, receivers, boards, repeat, requests, poll_timeout, mode, existing, link_seconds,
        latency_trials=0, load_seconds=0.0, load_screens=100,
    ):
        self.out = command.line
        self.link_seconds = link_seconds
        self.latency_trials = latency_trials
        self.load_seconds = load_seconds
        self.load_screens = load_screens
        self.style = command.style
        self.receiver_sizes = receivers
        self.board_sizes = boards
        self.repeat = repeat
        self.requests = requests
        self.poll_timeout = poll_timeout
        self.mode = mode
        self.existing = existing
        pool = max(max(receivers), math.ceil(max(boards) / CHANNELS_PER_RECEIVER))
        self.rigs = [_rig(i) for i in range(1, pool + 1)]
        self.simulator = _Simulator(self.rigs, mode=mode)
        self.mine: list[Receiver] = []
        self.user = None
        self.client: Client | None = None
        self.traced_peak = 0
        self.changing: list[int] = []  # transmitters whose tiles change in the changed-board figures
        self.analyses: list[tuple[str, QueryAnalyzer]] = []  # (what was measured, its queries) for the findings

    # ------------------------------------------------------------ set-up and clean-up

    def execute(self) -> None:
        saved = {
            name: getattr(settings, name)
            for name in ("MICBOARD_METER_RATE_MS", "MICBOARD_POLL_TIMEOUT", "ALLOWED_HOSTS")
        }
        self.audit_floor = AuditEntry.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        self.had_shure = Manufacturer.objects.filter(name="Shure").exists()
        self.heartbeat_before = coordination.store().get(HEARTBEAT_KEY)
        self.heartbeat_ours = None
        try:
            settings.MICBOARD_METER_RATE_MS = METER_RATE_MS
            settings.MICBOARD_POLL_TIMEOUT = self.poll_timeout
            if TEST_HOST not in settings.ALLOWED_HOSTS and "*" not in settings.ALLOWED_HOSTS:
                settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, TEST_HOST]
            self.show_meter_rate = saved["MICBOARD_METER_RATE_MS"]
            self.simulator.start()
            self.header()
            self.poll_section()
            self.link_section()
            self.board_section()
            self.memory_section()
            self.query_section()
            if self.latency_trials or self.load_seconds:
                self.served_section()
        finally:
            try:
                self.clean_up()
            finally:
                self.simulator.stop()
                for name, value in saved.items():
                    setattr(settings, name, value)

    def clean_up(self) -> None:
        """Remove every row the run created; the board and the heartbeat are left as they were."""
        if self.client is not None:
            self.client.logout()  # deletes the session row
        if self.user is not None:
            self.user.delete()
        ids = [r.pk for r in self.mine]
        if ids:
            Receiver.objects.filter(pk__in=ids).delete()  # channels, transmitters, connections cascade
            AuditEntry.objects.filter(
                pk__gt=self.audit_floor, model=Receiver._meta.verbose_name, object_id__in=[str(i) for i in ids]
            ).delete()
        if not self.had_shure:
            Manufacturer.objects.filter(name="Shure", receivers__isnull=True).delete()
        if self.heartbeat_ours is not None and coordination.store().get(HEARTBEAT_KEY) == self.heartbeat_ours:
            if self.heartbeat_before is None:
                coordination.store().delete(HEARTBEAT_KEY)
            else:
                coordination.store().set(HEARTBEAT_KEY, self.heartbeat_before)
        BoardService.bump_version()

    def add_receivers(self, count: int) -> None:
        """Make the first ``count`` benchmark receivers exist (created through DeviceService)."""
        for rig in self.rigs[len(self.mine):count]:
            host, port = self.simulator.addresses[rig.key]
            self.mine.append(DeviceService.create_receiver(name=rig.name, model=rig.model, host=host, port=port))

    def cycle(self) -> tuple[float, int, object, list[float]]:
        """One run_poll_cycle(): (ms, SQL queries, summary, latencies of the receivers that answered)."""
        started_at = timezone.now()
        with QueryAnalyzer() as queries:
            start = time.perf_counter()
            summary = run_poll_cycle()
            ms = (time.perf_counter() - start) * 1000
        self.last_cycle = queries
        self.heartbeat_ours = coordination.store().get(HEARTBEAT_KEY)
        latencies = list(
            RealTimeConnection.objects.filter(
                receiver__in=self.mine, last_success_at__gte=started_at, last_latency_ms__isnull=False
            ).values_list("last_latency_ms", flat=True)
        )
        return ms, queries.count, summary, latencies

    # ------------------------------------------------------------ output

    def header(self) -> None:
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        vendor = connection.vendor
        if vendor == "sqlite":
            import sqlite3

            db = f"sqlite {sqlite3.sqlite_version} ({settings.DATABASES['default']['NAME']})"
        elif vendor == "postgresql":
            version = connection.pg_version
            db = f"postgresql {version // 10000}.{version % 10000} ({settings.DATABASES['default'].get('HOST')})"
        else:
            db = vendor
        self.out(self.style.MIGRATE_HEADING("micboard benchmark"))
        self.out(
            f"  machine    {os.cpu_count()} CPUs ({usable} usable), {platform.system()} {platform.release()} "
            f"{platform.machine()}, Python {platform.python_version()}, Django {django.get_version()}"
        )
        self.out(f"  database   {db}")
        self.out(f"  cache      {settings.CACHES['default']['BACKEND']}")
        self.out(
            f"  settings   MICBOARD_METER_RATE_MS={METER_RATE_MS}, MICBOARD_POLL_TIMEOUT={self.poll_timeout:g} "
            f"(set at run time by this command), DEBUG={settings.DEBUG}"
        )
        where = "a child process" if self.mode == "process" else "a thread of this process (shares the GIL)"
        self.out(
            f"  simulator  {len(self.rigs)} receivers (AD4Q/ULXD4Q in turn, 4 channels each), 127.0.0.1 "
            "ephemeral ports, dynamics and chaos on,"
        )
        self.out(f"             served from {where}")
        self.out(
            f"  figures    median / p95 of {self.repeat} poll cycle(s) per size and {self.requests} request(s) "
            "per board figure"
        )
        self.out("             SQL counted with micboard.query_optimization.QueryAnalyzer; tracemalloc off")
        if self.existing:
            self.out(self.style.WARNING(
                f"  --force    {self.existing} receiver(s) were already in the database: their active ones are "
                "polled and shown too, so cycle and board figures include them"
            ))

    def poll_section(self) -> None:
        self.out("")
        self.out(self.style.MIGRATE_HEADING("Poll cycle: tasks.polling.run_poll_cycle() over loopback TCP"))
        self.out(f"  {'rx':>4} {'ch':>5}  {'1st ms':>7}  {'cycle ms':>15}  {'rx latency ms':>15}  "
                 f"{'SQL/cycle':>9}  {'failed':>8}")
        for size in self.receiver_sizes:
            self.add_receivers(size)
            first_ms, _, _, _ = self.cycle()  # first poll of new receivers: every row is written
            times: list[float] = []
            queries: list[int] = []
            latencies: list[float] = []
            polled = failed = 0
            for _ in range(self.repeat):
                ms, count, summary, lat = self.cycle()
                times.append(ms)
                queries.append(count)
                latencies.extend(lat)
                polled += summary.polled
                failed += summary.failed
            self.out(f"  {size:>4} {size * CHANNELS_PER_RECEIVER:>5}  {_ms(first_ms):>7}  {_pair(times):>15}  "
                     f"{_pair(latencies):>15}  {_qpair(queries):>9}  {f'{failed}/{polled}':>8}")
            self.analyses.append((f"poll cycle, {size} receivers (the last measured)", self.last_cycle))
        self.out("  1st ms: the cycle right after the receivers were added (not in the median)")
        self.out("  rx latency: connect to first byte, per receiver and cycle (RealTimeConnection.last_latency_ms)")
        self.out("  SQL/cycle: median, or median/max when it varies; failed: failed polls / polls")
        self.rss_after_poll = _maxrss_kb()

    def activate(self, count: int) -> None:
        """Exactly the first ``count`` benchmark receivers monitored."""
        self.add_receivers(count)
        DeviceService.set_active(receivers=self.mine[count:], active=False)
        DeviceService.set_active(receivers=self.mine[:count], active=True)

    def link_section(self) -> None:
        seconds = self.link_seconds
        self.out("")
        self.out(self.style.MIGRATE_HEADING(
            f"Live links: tasks.links.LinkHolder following the receivers for {seconds:g} s per size"
        ))
        self.out(f"  {'rx':>4} {'ch':>5}  {'CPU ms/s':>8}  {'flush ms':>15}  {'flushes/s':>9}  {'readings/s':>10}  "
                 f"{'errors':>6}")
        settings.MICBOARD_METER_RATE_MS = self.show_meter_rate  # what a show runs, not the poll section's 100 ms
        holder = None
        try:
            for channels in self.board_sizes:
                count = math.ceil(channels / CHANNELS_PER_RECEIVER)
                self.activate(count)
                if holder is None:
                    holder = live.DrivenHolder().start()
                f = live.link_figures(holder, receivers=count, seconds=seconds)
                flush = f"{f['flush_p50_ms']:.1f}/{f['flush_p95_ms']:.1f}"
                self.out(f"  {count:>4} {count * CHANNELS_PER_RECEIVER:>5}  {f['cpu_ms_per_s']:>8.1f}  {flush:>15}  "
                         f"{f['flushes_per_s']:>9.1f}  {f['readings_per_s']:>10.1f}  {f['errors']:>6}")
        finally:
            if holder is not None:
                holder.stop()
            settings.MICBOARD_METER_RATE_MS = METER_RATE_MS
        self.heartbeat_ours = coordination.store().get(HEARTBEAT_KEY)
        self.out(f"  METER_RATE {self.show_meter_rate} ms (MICBOARD_METER_RATE_MS); the simulator in another process")
        self.out("  CPU ms/s: this process's CPU time per second of show (target: <= 250 at 256 channels)")
        self.out("  flush ms: median/p95 of one write of the links' readings (every 0.25 s, changed fields only)")
        self.out("  readings/s: receiver readings written per second (a receiver's newest per flush)")

    def served_section(self) -> None:
        """Latency in Chromium and sustained load, against the product as deployed (manage.py serve)."""
        password = uuid.uuid4().hex
        self.user.set_password(password)
        self.user.save()
        self.out("")
        self.out(self.style.MIGRATE_HEADING(
            "Served: manage.py serve (gunicorn, 2 workers; the Huey consumer's live links) on a free loopback port"
        ))
        settings.MICBOARD_METER_RATE_MS = self.show_meter_rate
        try:
            for channels in self.board_sizes:
                count = math.ceil(channels / CHANNELS_PER_RECEIVER)
                self.activate(count)
                active = self.mine[:count]
                tiles = {
                    (rig.key, number): Channel.objects.get(receiver=receiver, number=number).pk
                    for rig, receiver in zip(self.rigs, active[:4], strict=False)
                    for number in range(1, CHANNELS_PER_RECEIVER + 1)
                }
                env = {"MICBOARD_METER_RATE_MS": str(self.show_meter_rate)}
                if self.latency_trials:
                    for refresh in (1.0, 0.5):
                        with live.served(env={**env, "MICBOARD_REFRESH_INTERVAL": str(refresh)}) as url:
                            live.wait_until(lambda ids=[r.pk for r in active]: live.all_held(ids), 60, "link them all")
                            delays = live.device_to_screen(
                                base_url=url, username=self.user.get_username(), password=password,
                                control=self.simulator.control, tiles=tiles, trials=self.latency_trials,
                            )
                        self.out(live.latency_line(count * CHANNELS_PER_RECEIVER, refresh, delays))
                if self.load_seconds:
                    with live.served(env={**env, "MICBOARD_REFRESH_INTERVAL": "1"}) as url:
                        for line in live.load(url, seconds=self.load_seconds, screens=self.load_screens):
                            self.out(f"  {count * CHANNELS_PER_RECEIVER:>4} ch  {line.strip()}")
        finally:
            settings.MICBOARD_METER_RATE_MS = METER_RATE_MS
            self.heartbeat_ours = coordination.store().get(HEARTBEAT_KEY)
        self.out(live.SERVED_NOTES)

    def set_board_size(self, channels: int) -> int:
        """Exactly the first ceil(C/4) benchmark receivers active and freshly polled; returns the tile count."""
        count = math.ceil(channels / CHANNELS_PER_RECEIVER)
        self.activate(count)
        DeviceService.request_poll(receivers=self.mine[:count])
        run_poll_cycle()
        self.heartbeat_ours = coordination.store().get(HEARTBEAT_KEY)
        return len(BoardService.board().tiles)

    def board_section(self) -> None:
        self.user = get_user_model().objects.create_user(f"benchmark-{uuid.uuid4().hex[:12]}", password=None)
        RoleService.grant(user=self.user, role=VIEWER)  # the board wants a role (web/access.py)
        self.client = Client()
        self.client.force_login(self.user)
        self.out("")
        self.out(self.style.MIGRATE_HEADING("Board refresh: GET /board/grid/ through Django's test Client, logged in"))
        self.out(f"  {'tiles':>5}  {'path':<40} {'ms':>15}  {'SQL':>9}  {'KB':>6}")
        for channels in self.board_sizes:
            self.measure_board(channels)
        self.out("  SQL: queries per request (median, or median/max); the session comes from the cache (web.sessions)")
        self.out("    and the viewer's access from it too (web.access, kept at sign-in or by the first refresh):")
        self.out("    the steady state of a screen that keeps refreshing, which a 304 serves with no SQL at all")
        self.out(f"  {CHANGED_TILES} tiles changed: their audio levels written to the database, then bump_version")
        self.out("    (what a poll that changed them does); the screen sends back its ETag and snapshot id (board.js)")
        self.out("  only those: the changed tiles as out-of-band swaps (the board is rebuilt from the database once")
        self.out("    per version, its unchanged tiles' renders come from the per-state cache)")
        self.out("  whole grid: a screen without a known snapshot (first load, too far behind, no JavaScript)")
        self.out("  tile renders, all new: every tile rendered from its template (an empty render cache)")
        self.out("  KB: body of the answer as sent (gzip, asked for as Chromium does) / uncompressed")

    def grid(self, etag: str = "", state: str = ""):
        """GET the grid as htmx and board.js do, optionally with the client's ETag and snapshot id."""
        headers = {"HX-Request": "true", "Accept-Encoding": "gzip, deflate, br"}  # as Chromium asks
        if etag:
            headers["If-None-Match"] = etag
        if state:
            headers[STATE_HEADER] = state
        return self.client.get(reverse("board-grid"), headers=headers)

    @staticmethod
    def expect(response, status: int):
        if response.status_code != status:
            raise CommandError(f"/board/grid/ answered {response.status_code} where {status} was expected")
        return response

    @staticmethod
    def state_of(response) -> str:
        """The snapshot id a grid or a changed-tiles answer carries (``#board-meta[data-state]``)."""
        return _Run.meta_of(response, "data-state")

    @staticmethod
    def etag_of(response) -> str:
        """The ETag board.js sends back: ``#board-meta[data-etag]`` (the header is weak once gzipped)."""
        return _Run.meta_of(response, "data-etag")

    @staticmethod
    def meta_of(response, attribute: str) -> str:
        body = response.content
        if response.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        text = body.decode()
        start = text.index(f'{attribute}="', text.index('id="board-meta"')) + len(attribute) + 2
        return html.unescape(text[start : text.index('"', start)])

    def change_tiles(self, step: int) -> None:
        """Give CHANGED_TILES tiles another audio level (20 % or 60 % in turn) and bump the version, as a poll would."""
        Transmitter.objects.filter(pk__in=self.changing).update(audio_percent=20 if step % 2 else 60)
        BoardService.bump_version()

    def measure_board(self, channels: int) -> None:
        tiles = self.set_board_size(channels)
        BoardService.record_heartbeat()  # keeps the stale flag (part of the ETag) steady while measuring
        self.heartbeat_ours = coordination.store().get(HEARTBEAT_KEY)
        active = [r.pk for r in self.mine[: math.ceil(channels / CHANNELS_PER_RECEIVER)]]
        # One channel of each of CHANGED_TILES receivers, spread over the board.
        pks = list(Transmitter.objects.filter(channel__receiver__in=active, channel__number=1)
                   .order_by("channel__board_position").values_list("pk", flat=True))
        self.changing = pks[:: max(1, len(pks) // CHANGED_TILES)][:CHANGED_TILES]
        first = self.expect(self.grid(), 200)
        etag, state = self.etag_of(first), self.state_of(first)

        not_modified = _Measured()
        for _ in range(self.requests):
            self.expect(not_modified.run(lambda: self.grid(etag, state)), 304)

        changed = _Measured()
        delta_size = 0
        for step in range(self.requests):
            self.change_tiles(step)
            answer = self.expect(changed.run(lambda e=etag, s=state: self.grid(e, s)), 200)
            if answer.get("HX-Reswap") != "none":
                raise CommandError(f"a refresh with {CHANGED_TILES} tiles changed got the whole grid")
            etag, state, delta_size = self.etag_of(answer), self.state_of(answer), _sizes_of(answer)

        whole = _Measured()
        size = 0
        for step in range(self.requests):
            self.change_tiles(step + 1)
            size = _sizes_of(self.expect(whole.run(self.grid), 200))

        cached = _Measured()
        for _ in range(self.requests):
            self.expect(cached.run(self.grid), 200)

        board = BoardService.board()

        def render_all() -> None:
            TileRenders.clear()
            TileRenders.all(board)

        rendered = _Measured()
        for _ in range(self.requests):
            rendered.run(render_all)

        def one_of_each() -> None:
            current = self.expect(self.grid(), 200)
            self.expect(self.grid(self.etag_of(current)), 304)
            self.change_tiles(0)
            self.expect(self.grid(self.etag_of(current), self.state_of(current)), 200)
            render_all()

        traced = self.traced(one_of_each)
        self.traced_peak = max(self.traced_peak, traced)

        self.analyses.append((f"board refresh, {CHANGED_TILES} tiles changed, {tiles} tiles (the last measured)",
                              changed.last))
        kb = f"{size[0] / 1024:.1f}/{size[1] / 1024:.1f}"
        delta_kb = f"{delta_size[0] / 1024:.1f}/{delta_size[1] / 1024:.1f}"
        self.out(f"  {tiles:>5}  {'304, ETag current':<40} {not_modified.row()}  {'0':>6}")
        self.out(f"  {'':>5}  {f'200, {CHANGED_TILES} tiles changed: only those':<40} {changed.row()}  "
                 f"{delta_kb:>6}")
        self.out(f"  {'':>5}  {f'200, {CHANGED_TILES} tiles changed: whole grid':<40} {whole.row()}  {kb:>6}")
        self.out(f"  {'':>5}  {'200, another screen rendered it':<40} {cached.row()}  {kb:>6}")
        self.out(f"  {'':>5}  {'tile renders, all new':<40} {rendered.row()}  {kb:>6}")
        self.out(f"  {'':>5}  {'tracemalloc peak, one of each above':<40} {f'{traced / 1024:.0f} KB':>15}")

    @staticmethod
    def traced(fn: Callable[[], object]) -> int:
        """Peak bytes traced by tracemalloc while ``fn`` runs (separate pass: tracing slows everything)."""
        slow_log = logging.getLogger("web.requests")  # traced requests are slow by design: no warnings
        level = slow_log.level
        slow_log.setLevel(logging.ERROR)
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            fn()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            slow_log.setLevel(level)

    def memory_section(self) -> None:
        self.out("")
        self.out(self.style.MIGRATE_HEADING("Memory"))
        where = "the simulator's process not included" if self.mode == "process" else "simulator included"
        self.out(f"  peak RSS after the poll section   {self.rss_after_poll / 1024:>7.1f} MB ({where})")
        self.out(f"  peak RSS after the board section  {_maxrss_kb() / 1024:>7.1f} MB")
        self.out(f"  tracemalloc peak, board section   {self.traced_peak / 1024 / 1024:>7.2f} MB "
                 "(largest of the traced passes above)")

    def query_section(self) -> None:
        self.out("")
        self.out(self.style.MIGRATE_HEADING("Queries: N+1 suspects, duplicates and slow queries (QueryAnalyzer)"))
        for what, queries in self.analyses:
            lines = queries.report()
            self.out(f"  {what}: {lines[0]}")
            for line in lines[1:]:
                self.out(f"    {line}")
        self.out(f"  slow: at least MICBOARD_SLOW_QUERY_MS={settings.MICBOARD_SLOW_QUERY_MS:g} ms; N+1: one query "
                 "shape run 3 times or more with other parameters; duplicate: same SQL and parameters twice")
