"""Query helpers: the relations each surface loads, a query analyzer, and batched bulk creation.

* :class:`QueryOptimizer` is the one place that says which relations the board, the sheets, the API
  and the admin load with their rows (``select_related`` / ``prefetch_related``), so a tile, a sheet
  row or an API item never costs a query of its own.
* :class:`QueryAnalyzer` records the SQL a block of code runs (through Django's
  ``connection.execute_wrapper``, with each query's own duration) and flags slow queries, exact
  duplicates and N+1 patterns. The tests assert with it; ``make bench`` prints its findings.
* :func:`bulk_create` creates rows in batches of a sensible size on every database.

This module imports no model at load time (``micboard.managers`` uses it).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, models

# ------------------------------------------------------------------------------ relation sets


@dataclass(frozen=True, slots=True)
class Relations:
    """Relations to load with the rows of one model: joined (``select``) or fetched in one query each (``prefetch``)."""

    select: tuple[str, ...] = ()
    prefetch: tuple[str, ...] = ()

    def apply(self, queryset: models.QuerySet) -> models.QuerySet:
        """``queryset`` loading these relations."""
        if self.select:
            queryset = queryset.select_related(*self.select)
        if self.prefetch:
            queryset = queryset.prefetch_related(*self.prefetch)
        return queryset

    def through(self, relation: str) -> Relations:
        """The same relations reached from another model through ``relation`` (e.g. a slot's ``channel``)."""
        return Relations(
            select=(relation, *(f"{relation}__{r}" for r in self.select)),
            prefetch=tuple(f"{relation}__{r}" for r in self.prefetch),
        )


class QueryOptimizer:
    """The relation sets of micboard's surfaces, and the querysets that use them.

    Every set is a constant here; the methods take a queryset (default: all rows) and return it
    loading that set, so a caller filters and orders as it likes.
    """

    # A tile: the channel, its receiver (name, model, link health for the offline hint), the pack and the performer.
    CHANNEL_BOARD = Relations(select=("receiver", "receiver__connection", "transmitter", "assignment__performer"))
    # A group's tile: its slot's channel with everything a tile needs.
    SLOT_BOARD = CHANNEL_BOARD.through("channel")
    # A sheet row: what a tile needs, plus the group's name on a group's sheet.
    SLOT_SHEET = Relations(select=("group", *SLOT_BOARD.select))
    # The admin's change lists: the columns they show.
    RECEIVER_ADMIN = Relations(select=("location", "connection"))
    CHANNEL_ADMIN = Relations(select=("receiver", "transmitter"))
    # The JSON API's items (receivers list their channels with pack and performer).
    RECEIVER_API = Relations(
        select=("manufacturer", "location", "connection"),
        prefetch=("channels__transmitter", "channels__assignment__performer"),
    )
    TRANSMITTER_API = Relations(
        select=("channel__receiver__manufacturer", "channel__receiver__location", "channel__assignment__performer")
    )
    ASSIGNMENT_API = Relations(select=("performer", "channel__receiver", "responsible"))
    CONNECTION_API = Relations(select=("receiver",))

    @staticmethod
    def _queryset(queryset: models.QuerySet | None, model: str) -> models.QuerySet:
        if queryset is not None:
            return queryset
        from django.apps import apps

        return apps.get_model("micboard", model)._default_manager.all()

    @staticmethod
    def channels_for_board(queryset: models.QuerySet | None = None) -> models.QuerySet:
        """Channels with everything a tile (or a sheet row) shows: one query for any number of channels."""
        return QueryOptimizer.CHANNEL_BOARD.apply(QueryOptimizer._queryset(queryset, "Channel"))

    @staticmethod
    def slots_for_board(queryset: models.QuerySet | None = None) -> models.QuerySet:
        """Group slots with their channel and everything its tile shows (a BLANK slot has no channel)."""
        return QueryOptimizer.SLOT_BOARD.apply(QueryOptimizer._queryset(queryset, "GroupSlot"))

    @staticmethod
    def slots_for_sheet(queryset: models.QuerySet | None = None) -> models.QuerySet:
        return QueryOptimizer.SLOT_SHEET.apply(QueryOptimizer._queryset(queryset, "GroupSlot"))

    @staticmethod
    def receivers_for_admin(queryset: models.QuerySet | None = None) -> models.QuerySet:
        return QueryOptimizer.RECEIVER_ADMIN.apply(QueryOptimizer._queryset(queryset, "Receiver"))

    @staticmethod
    def channels_for_admin(queryset: models.QuerySet | None = None) -> models.QuerySet:
        return QueryOptimizer.CHANNEL_ADMIN.apply(QueryOptimizer._queryset(queryset, "Channel"))

    @staticmethod
    def receivers_for_api(queryset: models.QuerySet | None = None) -> models.QuerySet:
        """Receivers with manufacturer, location, link health and their channels' packs and performers (4 queries)."""
        return QueryOptimizer.RECEIVER_API.apply(QueryOptimizer._queryset(queryset, "Receiver"))

    @staticmethod
    def transmitters_for_api(queryset: models.QuerySet | None = None) -> models.QuerySet:
        return QueryOptimizer.TRANSMITTER_API.apply(QueryOptimizer._queryset(queryset, "Transmitter"))

    @staticmethod
    def assignments_for_api(queryset: models.QuerySet | None = None) -> models.QuerySet:
        return QueryOptimizer.ASSIGNMENT_API.apply(QueryOptimizer._queryset(queryset, "Assignment"))

    @staticmethod
    def connections_for_api(queryset: models.QuerySet | None = None) -> models.QuerySet:
        return QueryOptimizer.CONNECTION_API.apply(QueryOptimizer._queryset(queryset, "RealTimeConnection"))


# ------------------------------------------------------------------------------------ analyzer

_IN_LIST = re.compile(r"\(\s*%s(?:\s*,\s*%s)*\s*\)")  # IN (%s, %s, ...) of any length
_SPACES = re.compile(r"\s+")
_COLUMNS = re.compile(r"^SELECT .*? FROM ", re.S)
# INSERT ... VALUES (...), (...), or PostgreSQL's INSERT ... SELECT * FROM UNNEST(arrays): already batched.
_MULTI_ROW = re.compile(r"\)\s*,\s*\(|\bUNNEST\s*\(", re.I)


def sql_template(sql: str) -> str:
    """The shape of a query: its SQL with ``%s`` for each parameter, an ``IN`` list of any length counting as one."""
    return _SPACES.sub(" ", _IN_LIST.sub("(%s...)", sql)).strip()


@dataclass(frozen=True, slots=True)
class RecordedQuery:
    sql: str  # with ``%s`` for each parameter, exactly as Django sent it
    params: tuple  # () for executemany (many=True)
    ms: float
    many: bool = False

    @property
    def template(self) -> str:
        return sql_template(self.sql)


@dataclass(frozen=True, slots=True)
class Finding:
    """Something the analyzer flags: ``kind`` is "slow", "duplicate" or "n+1"."""

    kind: str
    sql: str
    count: int  # how often it ran (1 for a slow query)
    ms: float  # its duration, or the total of the repeats

    def __str__(self) -> str:
        sql = _COLUMNS.sub("SELECT ... FROM ", self.sql, count=1)  # the table and the WHERE say more than columns
        sql = sql if len(sql) <= 160 else sql[:157] + "..."
        if self.kind == "slow":
            return f"slow ({self.ms:.1f} ms): {sql}"
        what = "same SQL and parameters" if self.kind == "duplicate" else "same SQL, other parameters (N+1?)"
        return f"{self.kind} x{self.count} ({what}, {self.ms:.1f} ms in all): {sql}"


def _frozen(value: Any) -> Any:
    """A hashable copy of one parameter (PostgreSQL gets lists, e.g. the arrays of a bulk insert)."""
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def _params(params: Any) -> tuple:
    """The parameters of one query as a hashable tuple, so duplicates can be counted."""
    if params is None:
        return ()
    if isinstance(params, dict):
        return _frozen(params)
    try:
        return tuple(_frozen(p) for p in params)
    except TypeError:
        return (_frozen(params),)


@dataclass
class QueryAnalyzer:
    """Records the queries of a block and flags slow, duplicated and N+1 ones.

    Usage::

        with QueryAnalyzer() as queries:
            client.get("/board/grid/")
        assert queries.count == 5 and not queries.n_plus_one()

    Args:
        using: the database alias to watch (queries of the current thread on that connection).
        slow_ms: a query at least this long is slow (default: ``MICBOARD_SLOW_QUERY_MS``).
        repeat_threshold: a query shape run this many times or more with other parameters is an N+1
            suspect (the same shape with the same parameters twice is a duplicate).
    """

    using: str = DEFAULT_DB_ALIAS
    slow_ms: float | None = None
    repeat_threshold: int = 3
    queries: list[RecordedQuery] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.slow_ms is None:
            self.slow_ms = float(getattr(settings, "MICBOARD_SLOW_QUERY_MS", 100))
        self._wrapper = None

    def _record(self, execute, sql, params, many, context):
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            ms = (time.perf_counter() - start) * 1000
            self.queries.append(RecordedQuery(sql, () if many else _params(params), ms, many))

    def __enter__(self) -> QueryAnalyzer:
        self._wrapper = connections[self.using].execute_wrapper(self._record)
        self._wrapper.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._wrapper.__exit__(*exc)
        self._wrapper = None

    # -------------------------------------------------------------- what was recorded

    @property
    def count(self) -> int:
        return len(self.queries)

    @property
    def total_ms(self) -> float:
        return sum(q.ms for q in self.queries)

    def touching(self, text: str) -> list[RecordedQuery]:
        """The queries whose SQL contains ``text`` (e.g. ``"micboard_"``: micboard's tables, not the session's)."""
        return [q for q in self.queries if text in q.sql]

    def slow(self) -> list[Finding]:
        return [Finding("slow", q.sql, 1, q.ms) for q in self.queries if q.ms >= self.slow_ms]

    def duplicates(self) -> list[Finding]:
        """Queries run more than once with the same SQL and the same parameters (a result worth reusing)."""
        groups: dict[tuple[str, tuple], list[RecordedQuery]] = {}
        for q in self.queries:
            if not q.many and q.sql.lstrip()[:6].upper() == "SELECT":
                groups.setdefault((q.sql, q.params), []).append(q)
        return [
            Finding("duplicate", sql, len(qs), sum(q.ms for q in qs))
            for (sql, _), qs in groups.items()
            if len(qs) > 1
        ]

    def n_plus_one(self) -> list[Finding]:
        """Query shapes run ``repeat_threshold`` times or more with different parameters: a query per row."""
        shapes: dict[str, list[RecordedQuery]] = {}
        for q in self.queries:
            if q.sql.lstrip()[:6].upper() == "INSERT" and _MULTI_ROW.search(q.sql):
                continue  # one batch of a bulk insert, not a statement per row
            shapes.setdefault(q.template, []).append(q)
        findings = []
        for template, qs in shapes.items():
            distinct = len({q.params for q in qs})
            if len(qs) >= self.repeat_threshold and distinct > 1:
                findings.append(Finding("n+1", template, len(qs), sum(q.ms for q in qs)))
        return findings

    def findings(self) -> list[Finding]:
        """Everything flagged: N+1 suspects, then duplicates, then slow queries."""
        return [*self.n_plus_one(), *self.duplicates(), *self.slow()]

    def shapes(self) -> Counter:
        """How many times each query shape ran."""
        return Counter(q.template for q in self.queries)

    def report(self) -> list[str]:
        """Lines for a person: the count and time, then each finding (or that there is none)."""
        lines = [f"{self.count} queries, {self.total_ms:.1f} ms"]
        found = self.findings()
        lines += [str(f) for f in found] if found else ["no slow, duplicated or N+1 query"]
        return lines


# -------------------------------------------------------------------------------- bulk create

BULK_BATCH_SIZE = 500  # rows per INSERT: below SQLite's variable limit for our models, bounded on PostgreSQL


def bulk_create(
    model: type[models.Model], objects: Iterable[models.Model], *, batch_size: int | None = None, **options
) -> list[models.Model]:
    """Create ``objects`` in INSERTs of at most ``batch_size`` rows each; returns them (pks set where supported).

    Django's ``bulk_create`` sends one INSERT of every row on PostgreSQL (and as many as SQLite's
    variable limit allows): a scene of a big rig or a large sync would be one huge statement. Here
    each batch is bounded. Accepts any iterable (a generator too).

    Args:
        model: the model class.
        objects: its unsaved instances.
        batch_size: rows per INSERT (at least 1); default ``BULK_BATCH_SIZE`` (the database may lower it:
            Django keeps SQLite under its 999 parameters).
        options: passed to ``QuerySet.bulk_create`` (``ignore_conflicts`` ...).
    """
    if batch_size is None:
        batch_size = BULK_BATCH_SIZE
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    rows: Sequence[models.Model] = objects if isinstance(objects, list) else list(objects)
    if not rows:
        return []
    return model._default_manager.bulk_create(rows, batch_size=batch_size, **options)
