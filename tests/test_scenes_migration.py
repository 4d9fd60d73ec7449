"""Migration 0003_scenes: a channel shown twice on one board keeps its first tile, later ones become BLANK."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("micboard", "0002_channel_status_battery_unknown")]
AFTER = [("micboard", "0003_scenes")]


@pytest.mark.django_db(transaction=True)
def test_duplicate_tiles_become_blanks_and_keep_every_tile_number():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    apps = executor.loader.project_state(BEFORE).apps
    Manufacturer, Receiver, Channel = (apps.get_model("micboard", m) for m in ("Manufacturer", "Receiver", "Channel"))
    Group, GroupSlot = apps.get_model("micboard", "Group"), apps.get_model("micboard", "GroupSlot")
    rx = Receiver.objects.create(
        name="Rack", model="ULXD4D", host="127.0.0.1", port=2202,
        manufacturer=Manufacturer.objects.create(name="Shure", slug="shure"),
    )
    ch1, ch2 = (Channel.objects.create(receiver=rx, number=n) for n in (1, 2))
    band = Group.objects.create(name="Band", slug="band")
    for position, channel in enumerate([ch1, ch2, ch1, None, ch1], start=1):
        GroupSlot.objects.create(group=band, position=position, channel=channel)
    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    apps = executor.loader.project_state(AFTER).apps
    slots = apps.get_model("micboard", "GroupSlot").objects.filter(group_id=band.pk).order_by("position")
    assert [(s.position, s.channel_id) for s in slots] == [(1, ch1.pk), (2, ch2.pk), (3, None), (4, None), (5, None)]
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
