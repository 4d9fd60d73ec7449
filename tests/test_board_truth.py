"""The board never lies: stable tile numbers, offline and stale tiles, deleted groups (issue 6, part 1)."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from micboard.exceptions import BoardOrderError
from micboard.models import Channel, Group, Receiver
from micboard.services import BoardOrderService, BoardService, DeviceService, GroupService, PollOutcome
from tests.factories import make_receiver, pack_on, reading

pytestmark = pytest.mark.django_db

SLOT = re.compile(r'data-channel-id="(\d+)"[^>]*>\s*<header>\s*<span class="tile-slot"[^>]*>(\d+)<')


def board_numbers(group: str = "") -> dict[int, int]:
    """{channel id: tile number} as BoardService builds the board."""
    BoardService.bump_version()
    return {t.channel_id: t.slot for t in BoardService.board(group=group).tiles if t.kind == "channel"}


def rendered_numbers(client, group: str = "") -> dict[int, int]:
    """{channel id: tile number} as the board page shows them (.tile-slot)."""
    BoardService.bump_version()
    url = reverse("board") + (f"?group={group}" if group else "")
    html = client.get(url).content.decode()
    return {int(cid): int(n) for cid, n in SLOT.findall(html)}


def test_adding_and_removing_receivers_never_renumbers_other_tiles(admin_client):
    make_receiver(name="Mid Rack", model="ULXD4Q")
    make_receiver(name="Zed Rack", model="ULXD4D")
    before = board_numbers()
    assert sorted(before.values()) == list(range(1, 7))
    assert rendered_numbers(admin_client) == before

    # A receiver whose name sorts first used to push every tile down: now it goes last.
    first = make_receiver(name="Aaa Rack", model="ULXD4D")
    added = board_numbers()
    assert {k: added[k] for k in before} == before
    assert sorted(added[c.pk] for c in first.channels.all()) == [7, 8]
    assert rendered_numbers(admin_client) == added

    # Removing one leaves a gap: nobody else moves.
    mid = Receiver.objects.get(name="Mid Rack")
    gone = set(mid.channels.values_list("pk", flat=True))
    mid.delete()
    removed = board_numbers()
    assert removed == {k: v for k, v in added.items() if k not in gone}
    assert rendered_numbers(admin_client) == removed

    # Deactivated: off the board, numbers kept for when it comes back.
    DeviceService.set_active(receivers=[first], active=False)
    assert board_numbers() == {k: v for k, v in removed.items() if k not in {c.pk for c in first.channels.all()}}
    DeviceService.set_active(receivers=[first], active=True)
    assert board_numbers() == removed

    # A new receiver after that goes after the highest number ever kept, not into a gap.
    late = make_receiver(name="Late Rack", model="ULXD4D")
    assert sorted(board_numbers()[c.pk] for c in late.channels.all()) == [9, 10]


def test_group_tiles_are_numbered_by_their_slot_position(admin_client):
    rx = make_receiver(name="Rack", model="ULXD4Q")
    ch = list(rx.channels.order_by("number"))
    group = GroupService.set_tiles(name="Band", channels=[ch[0], None, ch[1], ch[2], ch[3]])
    assert board_numbers("band") == {ch[0].pk: 1, ch[1].pk: 3, ch[2].pk: 4, ch[3].pk: 5}
    # A slot removed (its channel deleted) leaves a gap: the tiles after it keep their numbers.
    group.slots.filter(position=3).delete()
    assert board_numbers("band") == {ch[0].pk: 1, ch[2].pk: 4, ch[3].pk: 5}
    assert rendered_numbers(admin_client, "band") == {ch[0].pk: 1, ch[2].pk: 4, ch[3].pk: 5}


def test_a_deleted_receiver_leaves_blanks_in_its_groups_so_no_tile_moves(admin_client):
    keep = make_receiver(name="Keep", model="ULXD4D")
    gone = make_receiver(name="Gone", model="ULXD4D")
    k1, k2 = keep.channels.order_by("number")
    g1, g2 = gone.channels.order_by("number")
    GroupService.set_tiles(name="Band", channels=[k1, g1, k2, g2])
    gone.delete()
    BoardService.bump_version()
    tiles = BoardService.board(group="band").tiles
    assert [(t.slot, t.kind, t.channel_id) for t in tiles] == [
        (1, "channel", k1.pk), (2, "blank", None), (3, "channel", k2.pk), (4, "blank", None),
    ]


def test_move_to_a_free_number_leaves_a_gap_and_to_a_taken_one_swaps(django_capture_on_commit_callbacks):
    rx = make_receiver(name="Rack", model="ULXD4Q")
    a, b, c, d = rx.channels.order_by("number")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert BoardOrderService.move(channel=d, position=10) is None
    assert callbacks  # the board re-renders on every screen
    assert board_numbers() == {a.pk: 1, b.pk: 2, c.pk: 3, d.pk: 10}
    swapped = BoardOrderService.move(channel=a.pk, position=3)
    assert swapped.pk == c.pk and swapped.board_position == 1
    assert board_numbers() == {c.pk: 1, b.pk: 2, a.pk: 3, d.pk: 10}


@pytest.mark.parametrize("position", [0, -1, 10000, "3", 2.5, True])
def test_move_refuses_a_number_out_of_range_and_changes_nothing(position):
    rx = make_receiver(name="Rack", model="ULXD4D")
    before = board_numbers()
    with pytest.raises(BoardOrderError):
        BoardOrderService.move(channel=rx.channels.first(), position=position)
    assert board_numbers() == before


def test_move_of_an_unknown_channel_is_refused():
    with pytest.raises(BoardOrderError):
        BoardOrderService.move(channel=12345, position=1)


def test_set_all_order_renumbers_the_listed_first_and_closes_gaps():
    rx = make_receiver(name="Rack", model="ULXD4Q")
    a, b, c, d = rx.channels.order_by("number")
    BoardOrderService.move(channel=b, position=40)
    assert BoardOrderService.set_all_order(channel_ids=[d.pk, a.pk]) == 3  # c keeps 3
    assert board_numbers() == {d.pk: 1, a.pk: 2, c.pk: 3, b.pk: 4}
    assert BoardOrderService.set_all_order(channel_ids=[d.pk, a.pk]) == 0


@pytest.mark.parametrize("ids", [[1, 1], [999999]])
def test_set_all_order_refuses_repeats_and_unknown_ids_and_changes_nothing(ids):
    rx = make_receiver(name="Rack", model="ULXD4D")
    ids = [rx.channels.first().pk if i == 1 else i for i in ids]
    before = board_numbers()
    with pytest.raises(BoardOrderError):
        BoardOrderService.set_all_order(channel_ids=ids)
    assert board_numbers() == before


def test_admin_list_edits_swap_tile_numbers(admin_client):
    rx = make_receiver(name="Rack", model="ULXD4D")
    a, b = rx.channels.order_by("number")
    url = reverse("admin:micboard_channel_changelist")
    data = {
        "form-TOTAL_FORMS": "2", "form-INITIAL_FORMS": "2", "_save": "Save",
        "form-0-id": str(a.pk), "form-0-board_position": "2",
        "form-1-id": str(b.pk), "form-1-board_position": "1",
    }
    response = admin_client.post(url, data)
    assert response.status_code == 302
    assert board_numbers() == {a.pk: 2, b.pk: 1}


def test_admin_refuses_one_number_twice_and_changes_nothing(admin_client):
    rx = make_receiver(name="Rack", model="ULXD4Q")
    a, b, *_ = rx.channels.order_by("number")
    before = board_numbers()
    data = {
        "form-TOTAL_FORMS": "2", "form-INITIAL_FORMS": "2", "_save": "Save",
        "form-0-id": str(a.pk), "form-0-board_position": "9",
        "form-1-id": str(b.pk), "form-1-board_position": "9",
    }
    response = admin_client.post(reverse("admin:micboard_channel_changelist"), data)
    assert response.status_code == 200 and "Tile number 9 is given to both" in response.content.decode()
    assert board_numbers() == before


def test_admin_change_form_moves_a_channel_onto_a_taken_number(admin_client):
    rx = make_receiver(name="Rack", model="ULXD4D")
    a, b = rx.channels.order_by("number")
    url = reverse("admin:micboard_channel_change", args=[b.pk])
    form = {"board_position": "1"}
    for prefix in ("assignment", "transmitter"):
        form.update({f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"})
    response = admin_client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert board_numbers() == {b.pk: 1, a.pk: 2}
    assert "took its old number 2" in " ".join(str(m) for m in get_messages(response.wsgi_request))


def test_admin_action_numbers_the_selected_channels_first(admin_client):
    rx = make_receiver(name="Rack", model="ULXD4Q")
    a, b, c, d = rx.channels.order_by("number")
    response = admin_client.post(
        reverse("admin:micboard_channel_changelist"),
        {"action": "number_first_on_board", "_selected_action": [str(c.pk), str(d.pk)]},
    )
    assert response.status_code == 302
    assert board_numbers() == {c.pk: 1, d.pk: 2, a.pk: 3, b.pk: 4}


def test_a_channel_created_on_its_own_goes_last():
    rx = make_receiver(name="Rack", model="ULXD4D")
    rx.channels.filter(number=1).delete()
    channel = Channel.objects.create(receiver=rx, number=1)
    assert channel.board_position == 3


def _offline(rx):
    for _ in range(2):  # MICBOARD_OFFLINE_AFTER failures in a row
        DeviceService.record_poll_results(outcomes=[PollOutcome(rx.pk, error="timed out")])


def test_offline_receiver_tile_keeps_last_battery_dimmed_with_last_seen(admin_client, settings):
    settings.TIME_ZONE = "Europe/Berlin"
    rx = make_receiver(name="Cast Rack", model="ULXD4")
    seen = datetime(2026, 7, 1, 18, 14, 30, tzinfo=UTC)  # 20:14 in Berlin (summer time)
    DeviceService.record_poll_results(
        outcomes=[PollOutcome(rx.pk, reading=reading(pack_on(1, bars=2, minutes=95)))], now=seen
    )
    _offline(rx)
    tile = next(t for t in BoardService.board().tiles)
    assert tile.status == "RX_COM_ERROR" and tile.battery_bars == 2 and tile.runtime_text == "1:35"
    assert tile.battery_stale and tile.offline
    html = admin_client.get(reverse("board")).content.decode()
    assert 'data-bars="2"' in html and "battery-stale" in html and "Last known battery 2 of 5 bars" in html
    assert ">1:35<" in html
    # A fixed wall-clock time (another day than today, so with its date), never an age.
    assert 'last seen <time datetime="2026-07-01T18:14:30+00:00">1 Jul 20:14</time>' in html
    assert " ago" not in html.split('id="board-grid"')[1]


def test_offline_last_seen_today_shows_the_time_only(admin_client):
    rx = make_receiver(name="Cast Rack", model="ULXD4")
    now = timezone.now().replace(microsecond=0)
    DeviceService.record_poll_results(outcomes=[PollOutcome(rx.pk, reading=reading(pack_on(1)))], now=now)
    _offline(rx)
    tile = BoardService.board().tiles[0]
    assert tile.last_seen_text == timezone.localtime(now).strftime("%H:%M")


def test_offline_receiver_does_not_revive_a_pack_switched_off_long_before(settings):
    rx = make_receiver(name="Cast Rack", model="ULXD4")
    on = datetime(2026, 7, 1, 18, 0, tzinfo=UTC)
    DeviceService.record_poll_results(outcomes=[PollOutcome(rx.pk, reading=reading(pack_on(1)))], now=on)
    from tests.factories import pack_off

    later = on + timedelta(seconds=settings.MICBOARD_PREVIOUS_WINDOW + 60)
    DeviceService.record_poll_results(outcomes=[PollOutcome(rx.pk, reading=reading(pack_off(1)))], now=later)
    _offline(rx)
    tile = BoardService.board().tiles[0]
    assert tile.status == "RX_COM_ERROR" and tile.battery_bars is None and not tile.battery_stale


def test_stale_grid_greys_the_tiles(admin_client):
    rx = make_receiver(name="Rack", model="ULXD4")
    DeviceService.record_poll_results(outcomes=[PollOutcome(rx.pk, reading=reading(pack_on(1)))])
    BoardService.record_heartbeat()
    fresh = admin_client.get(reverse("board-grid"), headers={"HX-Request": "true"}).content.decode()
    assert "board-stale" not in fresh
    BoardService.record_heartbeat(at=1_700_000_000.0)
    stale = admin_client.get(reverse("board-grid"), headers={"HX-Request": "true"}).content.decode()
    assert 'class="board-grid board-stale"' in stale and 'data-status="GOOD"' in stale


def test_grid_refresh_of_a_deleted_group_goes_to_all_with_a_notice(admin_client):
    rx = make_receiver(name="Rack", model="ULXD4D")
    GroupService.set_tiles(name="Cast", channels=list(rx.channels.all()))
    BoardService.record_heartbeat()
    url = reverse("board-grid") + "?group=cast"
    assert admin_client.get(url, headers={"HX-Request": "true"}).status_code == 200
    Group.objects.filter(slug="cast").delete()
    BoardService.bump_version()
    response = admin_client.get(url, headers={"HX-Request": "true"})
    assert response.status_code == 200 and response["HX-Redirect"] == reverse("board")
    page = admin_client.get(response["HX-Redirect"]).content.decode()
    assert "The group “cast” no longer exists; showing All." in page
    assert "no longer exists" not in admin_client.get(reverse("board")).content.decode()  # said once
    # Outside HTMX the partial answers 404 as before.
    assert admin_client.get(url).status_code == 404


def test_deleted_group_notice_escapes_the_name(admin_client):
    evil = "<img src=x onerror=alert(1)>"
    response = admin_client.get(reverse("board"), {"group": evil}, follow=True)
    html = response.content.decode()
    assert evil not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_audio_peak_is_told_from_critical_by_a_badge():
    rx = make_receiver(name="Rack", model="ULXD4D")
    DeviceService.record_poll_results(
        outcomes=[PollOutcome(rx.pk, reading=reading(pack_on(1, peak=True), pack_on(2, bars=1)))]
    )
    from web.board_tiles import TileRenders

    html = "".join(TileRenders.all(BoardService.board()))
    peak, critical = html.split("<article")[1:3]
    assert 'data-status="AUDIO_PEAK"' in peak and ">Peak</span>" in peak
    assert 'data-status="CRITICAL"' in critical and ">Peak</span>" not in critical


@pytest.mark.django_db(transaction=True)
def test_upgrade_numbers_existing_channels_as_the_board_showed_them():
    """The migration gives each channel the number it had on the "All" board before the upgrade."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    executor.migrate([("micboard", "0002_channel_status_battery_unknown")])
    old = executor.loader.project_state([("micboard", "0002_channel_status_battery_unknown")]).apps
    maker = old.get_model("micboard", "Manufacturer").objects.create(name="Shure", slug="shure")
    Receiver_, Channel_ = old.get_model("micboard", "Receiver"), old.get_model("micboard", "Channel")
    racks = {}
    for port, (name, active) in enumerate((("Zed", True), ("Off", False), ("Alpha", True)), start=2202):
        racks[name] = Receiver_.objects.create(
            name=name, model="ULXD4D", host="127.0.0.1", port=port, manufacturer=maker, active=active
        )
        for n in (1, 2):
            Channel_.objects.create(receiver=racks[name], number=n)
    executor = MigrationExecutor(connection)
    executor.migrate([("micboard", "0003_board")])
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    numbers = {(c.receiver.name, c.number): c.board_position for c in Channel.objects.select_related("receiver")}
    # Active receivers as the board ordered them (by name), then the inactive ones.
    assert numbers == {("Alpha", 1): 1, ("Alpha", 2): 2, ("Zed", 1): 3, ("Zed", 2): 4, ("Off", 1): 5, ("Off", 2): 6}
