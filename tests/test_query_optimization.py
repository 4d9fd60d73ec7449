"""micboard.query_optimization: the analyzer finds what it should, the relation sets keep query counts flat."""

import pytest
from django.db import connection
from django.urls import reverse

from micboard import query_optimization
from micboard.models import (
    Assignment,
    Channel,
    GroupSlot,
    Location,
    Performer,
    RealTimeConnection,
    Receiver,
    Transmitter,
)
from micboard.query_optimization import BULK_BATCH_SIZE, QueryAnalyzer, QueryOptimizer, bulk_create, sql_template
from micboard.services import AssignmentService, BoardService, DeviceService, GroupService, PollOutcome
from tests.factories import make_receiver, pack_on, reading

pytestmark = pytest.mark.django_db


def add_receivers(count: int, *, start: int = 0, polled: bool = True) -> list[Receiver]:
    made = []
    for n in range(start, start + count):
        rx = make_receiver(name=f"Rack {n:02d}", model="ULXD4Q", host=f"127.0.0.{20 + n}")
        if polled:
            DeviceService.record_poll_results(
                outcomes=[PollOutcome(rx.pk, reading=reading(*(pack_on(c) for c in range(1, 5))))]
            )
            AssignmentService.assign(channel=rx.channels.get(number=1), performer=f"Singer {n}")
        made.append(rx)
    return made


# ------------------------------------------------------------------------------------ analyzer


def test_the_analyzer_flags_a_query_per_row_and_the_board_set_has_none():
    add_receivers(3)
    with QueryAnalyzer() as naive:
        names = [c.receiver.name for c in Channel.objects.all()]  # the receiver is read once per channel
    assert len(names) == 12 and naive.count == 13
    [finding] = naive.n_plus_one()
    assert finding.count == 12 and "micboard_receiver" in finding.sql
    assert any("N+1" in line for line in naive.report())
    with QueryAnalyzer() as optimized:
        assert [c.receiver.name for c in QueryOptimizer.channels_for_board()] == names
    assert optimized.count == 1 and optimized.findings() == []
    assert optimized.report()[-1] == "no slow, duplicated or N+1 query"


def test_the_analyzer_flags_the_same_query_run_twice_but_not_two_different_ones():
    rx, other = add_receivers(2, polled=False)
    with QueryAnalyzer() as queries:
        Receiver.objects.get(pk=rx.pk)
        Receiver.objects.get(pk=rx.pk)
        Receiver.objects.get(pk=other.pk)
    [duplicate] = queries.duplicates()
    assert duplicate.count == 2 and queries.n_plus_one()  # three of one shape: a loop in the making
    with QueryAnalyzer() as queries:
        Receiver.objects.get(pk=rx.pk)
        Receiver.objects.get(pk=other.pk)
    assert queries.findings() == []


def test_the_analyzer_flags_slow_queries_with_their_duration():
    counting = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000) SELECT count(*) FROM c"
    )
    with QueryAnalyzer(slow_ms=20) as queries, connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.execute(counting)
        assert cursor.fetchone()[0] == 2_000_000
    [slow] = queries.slow()
    assert "RECURSIVE" in slow.sql and slow.ms >= 20
    assert str(slow).startswith("slow (") and queries.total_ms >= slow.ms


def test_query_shapes_ignore_the_length_of_in_lists():
    assert sql_template('SELECT * FROM t WHERE id IN (%s, %s, %s)') == sql_template("SELECT * FROM t WHERE id IN (%s)")


# ------------------------------------------------------------------------------ relation sets


def _board_build_queries(group: str = "") -> QueryAnalyzer:
    with QueryAnalyzer() as queries:
        BoardService.build(group=group, version="test")
    assert queries.findings() == [], queries.report()
    return queries


def test_the_board_set_keeps_the_board_at_a_constant_query_count():
    # Never polled: every tile is RX_COM_ERROR and shows its link's state ("Not polled yet"), which
    # is read from the receiver's connection: the set must load it too.
    first = add_receivers(1, polled=False)
    small = _board_build_queries().count
    more = add_receivers(5, start=1, polled=False) + add_receivers(2, start=6)
    assert _board_build_queries().count == small
    channels = [*first[0].channels.all(), None, *more[0].channels.all()]
    GroupService.set_tiles(name="Band", channels=channels)
    grouped = _board_build_queries("band").count
    GroupService.set_tiles(name="Band", channels=[*channels, *(c for rx in more[1:] for c in rx.channels.all())])
    assert _board_build_queries("band").count == grouped


@pytest.mark.parametrize("changelist", ["admin:micboard_receiver_changelist", "admin:micboard_channel_changelist"])
def test_admin_change_lists_cost_the_same_for_any_number_of_rows(admin_client, changelist):
    hall = Location.objects.create(name="Hall")
    add_receivers(1, polled=False)
    Receiver.objects.update(location=hall)

    def count() -> int:
        with QueryAnalyzer() as queries:
            assert admin_client.get(reverse(changelist)).status_code == 200
        assert not queries.n_plus_one(), queries.report()
        return queries.count

    small = count()
    add_receivers(3, start=1)
    add_receivers(2, start=4, polled=False)
    Receiver.objects.update(location=hall)
    assert count() == small


def test_api_sets_read_every_item_with_its_relations_in_a_constant_number_of_queries(admin_user):
    def read_all() -> tuple[int, int]:
        with QueryAnalyzer() as queries:
            items = 0
            for rx in QueryOptimizer.receivers_for_api():
                _ = (rx.manufacturer.name, rx.location, rx.connection.last_error)
                for ch in rx.channels.all():
                    assignment = getattr(ch, "assignment", None)
                    _ = (ch.transmitter.battery_bars, assignment.performer.name if assignment else "")
                    items += 1
            for tx in QueryOptimizer.transmitters_for_api():
                _ = tx.channel.receiver.name
            for a in QueryOptimizer.assignments_for_api():
                _ = (a.performer.name, a.channel.receiver.name, a.responsible)
            for link in QueryOptimizer.connections_for_api():
                _ = link.receiver.name
        assert not queries.n_plus_one(), queries.report()
        return items, queries.count

    add_receivers(1)
    items, small = read_all()
    add_receivers(4, start=1)
    Assignment.objects.update(responsible=admin_user)
    assert read_all() == (items * 5, small)
    assert Transmitter.objects.count() == 20 and RealTimeConnection.objects.count() == 5


# -------------------------------------------------------------------------------- bulk create


def _rows_of_insert(sql: str, params: tuple) -> int:
    """Rows one INSERT into the group slots carries (three columns each).

    SQLite gets ``VALUES (%s, %s, %s), (...)``; Django 5.2 sends PostgreSQL one array per column
    (``SELECT * FROM UNNEST(%s::..., ...)``).
    """
    if "UNNEST" in sql.upper():
        return len(params[0])
    return sql.count("%s") // 3


def _slot_inserts(queries: QueryAnalyzer) -> list[int]:
    return [
        _rows_of_insert(q.sql, q.params)
        for q in queries.touching("micboard_groupslot")
        if q.sql.lstrip().upper().startswith("INSERT")
    ]


def test_a_big_group_is_stored_in_bounded_batches(monkeypatch):
    tiles = 1200
    with QueryAnalyzer() as queries:
        GroupService.set_tiles(name="Wall", channels=[None] * tiles)
    rows = _slot_inserts(queries)
    assert sum(rows) == tiles and max(rows) <= BULK_BATCH_SIZE  # PostgreSQL alone would send one INSERT of 1200
    assert not queries.n_plus_one()  # batches of one insert are not a query per row
    monkeypatch.setattr(query_optimization, "BULK_BATCH_SIZE", 100)  # every service uses the one helper
    with QueryAnalyzer() as queries:
        GroupService.set_tiles(name="Wall", channels=[None] * tiles)
    assert _slot_inserts(queries) == [100] * 12
    assert GroupSlot.objects.filter(group__slug="wall").count() == tiles


def test_bulk_create_takes_any_iterable_and_returns_the_rows():
    with QueryAnalyzer() as queries:
        made = bulk_create(Performer, (Performer(name=f"Dancer {n}") for n in range(5)), batch_size=2)
    assert len(made) == 5 and Performer.objects.filter(name__startswith="Dancer").count() == 5
    assert len(queries.touching("INSERT")) == 3
    assert bulk_create(Performer, []) == []
    with pytest.raises(ValueError):
        bulk_create(Performer, [Performer(name="x")], batch_size=0)
