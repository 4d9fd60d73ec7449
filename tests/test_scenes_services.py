"""Performers and scenes in the services: reassigning, bulk paste, scenes switched atomically, board groups."""

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from micboard.exceptions import AssignmentConflictError, ConfigurationError
from micboard.models import Assignment, Channel, Group, GroupSlot, Performer, Scene, SceneAssignment
from micboard.services import AssignmentService, BoardService, GroupEditService, GroupService, SceneService
from tests.factories import make_receiver

pytestmark = pytest.mark.django_db


@pytest.fixture
def quad():
    """A 4-channel receiver: ch1 Maya, ch2 Jonas, ch3 and ch4 free."""
    rx = make_receiver(name="Rack", model="ULXD4Q")
    ch = list(rx.channels.order_by("number"))
    AssignmentService.assign(channel=ch[0], performer="Maya")
    AssignmentService.assign(channel=ch[1], performer="Jonas")
    return ch


def on_board():
    """channel number -> performer name, as the board would show it."""
    return {a.channel.number: a.performer.name for a in Assignment.objects.select_related("channel", "performer")}


# ---- reassign -----------------------------------------------------------------------------------


def test_reassign_changes_the_performer_and_keeps_the_channels_alert_settings(quad):
    Assignment.objects.filter(channel=quad[0]).update(alerts_enabled=False, priority=Assignment.Priority.CRITICAL)
    AssignmentService.reassign(channel=quad[0], name="  Ada   Lovelace ", expected="Maya")
    a = Assignment.objects.get(channel=quad[0])
    assert a.performer.name == "Ada Lovelace" and not a.alerts_enabled and a.priority == Assignment.Priority.CRITICAL
    AssignmentService.reassign(channel=quad[2], name="maya", expected="")  # the existing performer, any case
    assert on_board()[3] == "Maya" and Performer.objects.filter(name__iexact="maya").count() == 1


def test_reassign_refuses_a_channel_taken_meanwhile_and_bad_names(quad):
    with pytest.raises(AssignmentConflictError, match="already taken by Maya"):
        AssignmentService.reassign(channel=quad[0], name="Ada", expected="")
    with pytest.raises(AssignmentConflictError, match="changed to Jonas meanwhile"):
        AssignmentService.reassign(channel=quad[1], name="Ada", expected="Priya")
    with pytest.raises(ConfigurationError, match="needs a name"):
        AssignmentService.reassign(channel=quad[2], name=" \t ", expected="")
    with pytest.raises(ConfigurationError, match="at most 100"):
        AssignmentService.reassign(channel=quad[2], name="x" * 101, expected="")
    with pytest.raises(AssignmentConflictError):
        AssignmentService.unassign(channel=quad[0], expected="Jonas")
    assert on_board() == {1: "Maya", 2: "Jonas"} and not Performer.objects.filter(name="Ada").exists()


# ---- bulk paste ---------------------------------------------------------------------------------


@pytest.fixture
def band(quad):
    """Tiles: ch1, BLANK, ch3, ch2, ch4."""
    return GroupService.set_tiles(name="Band", channels=[quad[0], None, quad[2], quad[1], quad[3]])


def test_paste_preview_maps_lines_onto_channels_in_tile_order_and_stores_nothing(band):
    preview = AssignmentService.preview_paste(group=band, text="Ada\n\n-\nZoe\nExtra One\n\nExtra Two\n\n")
    rows = [(r.tile, r.channel.number, r.old, r.new, r.action) for r in preview.rows]
    assert rows == [
        (1, 1, "Maya", "Ada", "change"),
        (3, 3, "", "", "keep"),  # blank line: left as it is
        (4, 2, "Jonas", "", "remove"),  # "-": nobody
        (5, 4, "", "Zoe", "assign"),
    ]
    assert [(e.line, e.name) for e in preview.extra] == [(5, "Extra One"), (7, "Extra Two")]
    assert on_board() == {1: "Maya", 2: "Jonas"}


def test_paste_apply_changes_every_channel_in_one_go(band, django_capture_on_commit_callbacks):
    preview = AssignmentService.preview_paste(group=band, text="Ada\n\n-\nZoe")
    before = BoardService.version()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert AssignmentService.apply_paste(group=band, text="Ada\n\n-\nZoe", fingerprint=preview.fingerprint) == 3
    assert on_board() == {1: "Ada", 4: "Zoe"}
    assert len(callbacks) == 1 and BoardService.version() != before


def test_paste_with_a_bad_name_applies_nothing(band):
    text = "Ada\n" + "x" * 101 + "\nZoe"
    preview = AssignmentService.preview_paste(group=band, text=text)
    assert preview.errors == ("Line 2: A performer name can be at most 100 characters (this one has 101).",)
    with pytest.raises(ConfigurationError, match="Line 2"):
        AssignmentService.apply_paste(group=band, text=text, fingerprint=preview.fingerprint)
    assert on_board() == {1: "Maya", 2: "Jonas"}


def test_paste_refuses_when_the_board_changed_since_the_preview(band, quad):
    preview = AssignmentService.preview_paste(group=band, text="Ada\nBen\nCid")
    AssignmentService.reassign(channel=quad[2], name="Priya", expected="")  # someone else, meanwhile
    with pytest.raises(AssignmentConflictError, match="changed since the preview"):
        AssignmentService.apply_paste(group=band, text="Ada\nBen\nCid", fingerprint=preview.fingerprint)
    assert on_board() == {1: "Maya", 2: "Jonas", 3: "Priya"}


# ---- scenes -------------------------------------------------------------------------------------


@pytest.fixture
def acts(quad):
    """Act 1 = the board now (Maya, Jonas); Act 2 = ch1 Jonas, ch3 Priya, ch4 Zoe (ch2 empty)."""
    act1 = SceneService.create_scene(name="Act 1")
    act2 = SceneService.create_scene(name="Act 2", notes="after the interval")
    SceneService.update_scene(
        scene=act2, name="Act 2", notes="after the interval",
        performers={quad[0].pk: "Jonas", quad[1].pk: "", quad[2].pk: "Priya", quad[3].pk: "Zoe"},
    )
    return act1, act2


def test_scene_created_from_the_current_assignments(acts, quad):
    act1, _ = acts
    assert {sa.channel.number: sa.performer.name for sa in act1.assignments.all()} == {1: "Maya", 2: "Jonas"}
    assert [s.name for s in Scene.objects.all()] == ["Act 1", "Act 2"]
    with pytest.raises(ConfigurationError, match="exists already"):
        SceneService.create_scene(name=" act 1 ")


def test_activating_a_scene_replaces_every_assignment_with_one_board_bump(acts, django_capture_on_commit_callbacks):
    act1, act2 = acts
    Assignment.objects.filter(channel__number=1).update(alerts_enabled=False)
    before = BoardService.version()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        switch = SceneService.activate(scene=act2)
    assert on_board() == {1: "Jonas", 3: "Priya", 4: "Zoe"}
    assert (switch.assigned, switch.changed, switch.removed) == (2, 1, 1)
    assert len(callbacks) == 1 and BoardService.version() != before
    assert not Assignment.objects.get(channel__number=1).alerts_enabled  # the channel keeps its settings
    assert list(Scene.objects.filter(active=True)) == [act2]
    assert SceneService.differences(scene=act2) == 0
    SceneService.activate(scene=act1)
    assert on_board() == {1: "Maya", 2: "Jonas"} and list(Scene.objects.filter(active=True)) == [act1]


def _refuse_assignment_of(performer: Performer) -> None:
    """A database trigger that refuses one insert: a real failure half-way through a switch."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE OR REPLACE FUNCTION refuse_insert() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'refused by the test'; END; $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                "CREATE TRIGGER refuse_one BEFORE INSERT ON micboard_assignment FOR EACH ROW "
                f"WHEN (NEW.performer_id = {int(performer.pk)}) EXECUTE FUNCTION refuse_insert()"
            )
        else:
            cursor.execute(
                "CREATE TRIGGER refuse_one BEFORE INSERT ON micboard_assignment "
                f"WHEN NEW.performer_id = {int(performer.pk)} BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
            )


def test_a_scene_switch_that_fails_half_way_leaves_the_previous_assignments(
    acts, django_capture_on_commit_callbacks
):
    act1, act2 = acts
    SceneService.activate(scene=act1)
    before = BoardService.version()
    _refuse_assignment_of(Performer.objects.get(name="Zoe"))  # after the removal and the change
    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(DatabaseError):
        SceneService.activate(scene=act2)
    assert on_board() == {1: "Maya", 2: "Jonas"}
    assert list(Scene.objects.filter(active=True)) == [act1]
    assert callbacks == [] and BoardService.version() == before


def test_scene_edit_with_a_bad_name_saves_nothing(acts, quad):
    _, act2 = acts
    with pytest.raises(ConfigurationError):
        SceneService.update_scene(
            scene=act2, name="Act Two", performers={quad[0].pk: "Ada", quad[2].pk: "y" * 101}
        )
    act2.refresh_from_db()
    assert act2.name == "Act 2"
    assert SceneAssignment.objects.get(scene=act2, channel=quad[0]).performer.name == "Jonas"


def test_a_channel_appears_at_most_once_per_scene(acts, quad):
    act1, _ = acts
    with pytest.raises(IntegrityError), transaction.atomic():
        SceneAssignment.objects.create(scene=act1, channel=quad[0], performer=Performer.objects.get(name="Zoe"))


# ---- board groups -------------------------------------------------------------------------------


def test_duplicate_channel_in_a_group_is_refused_by_service_and_database(band, quad):
    with pytest.raises(ConfigurationError, match="on Band already"):
        GroupEditService.add_channel(group=band, channel=quad[0])
    with pytest.raises(ConfigurationError, match="at most once"):
        GroupService.set_tiles(name="Band", channels=[quad[0], quad[0]])
    with pytest.raises(IntegrityError), transaction.atomic():
        GroupSlot.objects.create(group=band, channel=quad[0], position=99)
    assert band.slots.count() == 5
    GroupEditService.add_blank(group=band)
    GroupEditService.add_blank(group=band)  # BLANK spacers repeat freely
    assert band.slots.filter(channel=None).count() == 3


def test_moving_and_removing_tiles_keeps_a_gapless_order(band, quad):
    slots = list(band.slots.all())
    assert GroupEditService.move_slot(slot=slots[0], offset=1) == 2
    assert [s.channel_id for s in band.slots.all()] == [None, quad[0].pk, quad[2].pk, quad[1].pk, quad[3].pk]
    GroupEditService.move_slot(slot=slots[4], offset=-1)
    GroupEditService.remove_slot(slot=GroupSlot.objects.get(group=band, channel=None))
    assert [(s.position, s.channel_id) for s in band.slots.all()] == [
        (1, quad[0].pk), (2, quad[2].pk), (3, quad[3].pk), (4, quad[1].pk)
    ]


def test_groups_are_created_renamed_reordered_and_deleted(band):
    drums = GroupEditService.create_group(name="  Drums ")
    odd = GroupEditService.create_group(name="???")
    assert (drums.name, drums.slug, odd.slug) == ("Drums", "drums", "group")
    with pytest.raises(ConfigurationError, match="exists already"):
        GroupEditService.create_group(name="band")
    with pytest.raises(ConfigurationError, match="needs a name"):
        GroupEditService.rename_group(group=drums, name="  ")
    GroupEditService.rename_group(group=drums, name="Kit")
    assert Group.objects.get(pk=drums.pk).slug == "drums"  # screens showing it keep their address
    GroupEditService.move_group(group=odd, offset=-2)
    assert [g.name for g in Group.objects.all()] == ["???", "Band", "Kit"]
    GroupEditService.delete_group(group=band)
    assert Channel.objects.count() == 4 and Assignment.objects.count() == 2
