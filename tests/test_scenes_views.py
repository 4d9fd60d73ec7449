"""Performers and scenes over HTTP: the channel drawer, bulk paste, scenes and board groups for operators."""

from html import unescape

import pytest
from django.urls import reverse

from micboard.models import Assignment, Group, GroupSlot, Performer, Scene
from micboard.services import AssignmentService, BoardService, GroupService, SceneService
from tests.factories import make_receiver, make_user

pytestmark = pytest.mark.django_db

EVIL = "<img src=x onerror=alert(1)>"
EVIL_ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"


@pytest.fixture
def quad():
    rx = make_receiver(name="Rack", model="ULXD4Q")
    ch = list(rx.channels.order_by("number"))
    AssignmentService.assign(channel=ch[0], performer="Maya")
    return ch


@pytest.fixture
def band(quad):
    return GroupService.set_tiles(name="Band", channels=[quad[0], None, quad[1], quad[2]])


def user_client(client, name, role):
    user = make_user(name, role=role, password="pw-123456")
    screen = type(client)()
    screen.force_login(user)
    return screen


@pytest.fixture
def operator(client):
    return user_client(client, "operator", "operator")


@pytest.fixture
def viewer(client):
    return user_client(client, "viewer", "viewer")


def text_of(response) -> str:
    return unescape(response.content.decode())


def board_state():
    return (
        sorted(Assignment.objects.values_list("channel_id", "performer__name")),
        sorted(GroupSlot.objects.values_list("group_id", "position", "channel_id")),
        sorted(Group.objects.values_list("name", "position")),
        sorted(Scene.objects.values_list("name", "active")),
        Performer.objects.count(),
    )


def writes(quad, band, scene):
    """Every state-changing request of this surface, with a valid body."""
    slot = band.slots.first()
    return [
        (reverse("channel-performer", args=[quad[1].pk]), {"name": "Ada", "expected": ""}),
        (reverse("channel-performer", args=[quad[0].pk]), {"action": "remove", "expected": "Maya"}),
        (reverse("scene-create"), {"name": "Act 9"}),
        (reverse("scene-edit", args=[scene.pk]), {"name": "Renamed"}),
        (reverse("scene-activate", args=[scene.pk]), {}),
        (reverse("scene-capture", args=[scene.pk]), {}),
        (reverse("scene-move", args=[scene.pk]), {"direction": "down"}),
        (reverse("scene-delete", args=[scene.pk]), {}),
        (reverse("group-create"), {"name": "Drums"}),
        (reverse("group-rename", args=[band.pk]), {"name": "Kit"}),
        (reverse("group-move", args=[band.pk]), {"direction": "up"}),
        (reverse("group-delete", args=[band.pk]), {}),
        (reverse("group-add-channel", args=[band.pk]), {"channel": quad[3].pk}),
        (reverse("group-add-blank", args=[band.pk]), {}),
        (reverse("slot-move", args=[band.pk, slot.pk]), {"direction": "down"}),
        (reverse("slot-remove", args=[band.pk, slot.pk]), {}),
        (reverse("group-paste", args=[band.pk]), {"names": "Ada"}),
        (reverse("group-paste-apply", args=[band.pk]), {"names": "Ada", "fingerprint": "x"}),
    ]


def test_logged_out_users_are_sent_to_the_login_page_and_change_nothing(client, quad, band):
    scene = SceneService.create_scene(name="Act 1")
    state = board_state()
    reads = [reverse("channel-detail", args=[quad[0].pk]), reverse("scene-list"), reverse("group-list"),
             reverse("group-edit", args=[band.pk]), reverse("scene-edit", args=[scene.pk])]
    for url in reads:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login")), url
    for url, data in writes(quad, band, scene):
        response = client.post(url, data)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login")), url
    assert board_state() == state


def test_users_without_the_permission_are_refused_and_change_nothing(viewer, quad, band):
    scene = SceneService.create_scene(name="Act 1")
    state = board_state()
    for url, data in writes(quad, band, scene):
        assert viewer.post(url, data).status_code == 403, url
    assert board_state() == state
    # They still read: the drawer without its form, the scenes and groups without their buttons.
    drawer = viewer.get(reverse("channel-detail", args=[quad[0].pk])).content.decode()
    assert "Maya" in drawer and 'name="name"' not in drawer
    assert "Activate" not in viewer.get(reverse("scene-list")).content.decode()
    assert "Create group" not in viewer.get(reverse("group-list")).content.decode()


def test_tiles_link_to_their_channel_page(operator, quad):
    BoardService.bump_version()
    html = operator.get(reverse("board")).content.decode()
    assert f'class="tile-link" href="{reverse("channel-detail", args=[quad[0].pk])}"' in html
    assert "js/drawer.js" in html and "css/drawer.css" in html


def test_drawer_shows_performer_receiver_and_readings_as_a_page_or_a_partial(operator, quad):
    url = reverse("channel-detail", args=[quad[0].pk])
    page = operator.get(url)
    assert page.status_code == 200 and "<html" in page.content.decode()
    partial = operator.get(url, headers={"HX-Request": "true"})
    html = text_of(partial)
    assert "<html" not in html and "Maya" in html and "Rack" in html and "ULXD4Q" in html
    assert quad[0].receiver.address in html and "Last readings" in html and "Battery" in html
    assert "Last seen" in html and 'value="Maya"' in html  # the form starts from the current performer


def test_drawer_form_assigns_changes_and_removes_a_performer(operator, quad):
    url = reverse("channel-performer", args=[quad[1].pk])
    response = operator.post(url, {"name": " Ada  Lovelace ", "expected": ""}, headers={"HX-Request": "true"})
    assert response.status_code == 200 and "Ada Lovelace is on this channel now." in text_of(response)
    response = operator.post(url, {"name": "Ben", "expected": "Ada Lovelace"})
    assert response.status_code == 302
    assert Assignment.objects.get(channel=quad[1]).performer.name == "Ben"
    operator.post(url, {"action": "remove", "expected": "Ben"})
    assert not Assignment.objects.filter(channel=quad[1]).exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "", "expected": ""}, "A performer needs a name."),
        ({"name": "   ", "expected": ""}, "A performer needs a name."),
        ({"name": "x" * 101, "expected": ""}, "A performer name can be at most 100 characters (this one has 101)."),
        ({"name": "Ada", "expected": ""}, "is already taken by Maya"),
        ({"name": "Ada", "expected": "Jonas"}, "was changed to Maya meanwhile"),
    ],
)
def test_drawer_form_rejects_bad_input_with_a_clear_message_and_stores_nothing(operator, quad, data, message):
    state = board_state()
    url = reverse("channel-performer", args=[quad[0].pk])
    page = operator.post(url, data)
    assert page.status_code == 422 and message in text_of(page)
    partial = operator.post(url, data, headers={"HX-Request": "true"})
    assert partial.status_code == 200 and message in text_of(partial) and 'role="alert"' in partial.content.decode()
    assert board_state() == state


def test_hostile_names_stay_inert_on_every_page(operator, quad, band):
    operator.post(reverse("channel-performer", args=[quad[1].pk]), {"name": EVIL, "expected": ""})
    operator.post(reverse("scene-create"), {"name": EVIL, "notes": EVIL})
    operator.post(reverse("group-create"), {"name": EVIL})
    evil_group = Group.objects.get(name=EVIL)
    BoardService.bump_version()
    pages = [
        operator.get(reverse("board")),
        operator.get(reverse("channel-detail", args=[quad[1].pk])),
        operator.get(reverse("scene-list")),
        operator.get(reverse("scene-edit", args=[Scene.objects.get(name=EVIL).pk])),
        operator.get(reverse("group-list")),
        operator.get(reverse("group-edit", args=[evil_group.pk])),
        operator.get(reverse("group-edit", args=[band.pk]) + "?q=onerror"),
        operator.post(reverse("group-paste", args=[band.pk]), {"names": f"{EVIL}\n{EVIL}\n{EVIL}\n{EVIL}"}),
    ]
    for response in pages:
        html = response.content.decode()
        assert response.status_code == 200 and EVIL not in html and EVIL_ESCAPED in html, response.request["PATH_INFO"]


def test_bulk_paste_previews_then_applies_on_confirmation(operator, quad, band):
    url = reverse("group-paste", args=[band.pk])
    preview = operator.post(url, {"names": "Ada\n\nZoe\nExtra"})
    html = text_of(preview)
    assert preview.status_code == 200 and "Preview: 2 channels change" in html
    assert "1 line beyond the group's channels will not be applied" in html and "line 4: Extra" in html
    assert Assignment.objects.count() == 1  # nothing stored by the preview
    fingerprint = preview.context["preview"].fingerprint
    applied = operator.post(reverse("group-paste-apply", args=[band.pk]),
                            {"names": "Ada\n\nZoe\nExtra", "fingerprint": fingerprint}, follow=True)
    assert "2 channel(s) of Band changed. 1 line(s) beyond its channels were not applied." in text_of(applied)
    assert dict(Assignment.objects.values_list("channel__number", "performer__name")) == {1: "Ada", 3: "Zoe"}


def test_bulk_paste_refuses_bad_names_and_a_stale_preview(operator, quad, band):
    url = reverse("group-paste", args=[band.pk])
    bad = operator.post(url, {"names": "Ada\n" + "x" * 101})
    assert "Line 2: A performer name can be at most 100 characters" in text_of(bad)
    assert "Apply" not in bad.content.decode().split("paste-preview")[1]
    stale = operator.post(reverse("group-paste-apply", args=[band.pk]), {"names": "Ada", "fingerprint": "old"})
    assert stale.status_code == 409 and "Nothing was changed: The board changed since the preview" in text_of(stale)
    refused = operator.post(reverse("group-paste-apply", args=[band.pk]),
                            {"names": "Ada\n" + "x" * 101, "fingerprint": "old"})
    assert refused.status_code == 422
    assert dict(Assignment.objects.values_list("channel__number", "performer__name")) == {1: "Maya"}


def test_scene_pages_create_edit_activate_and_print(operator, quad):
    created = operator.post(reverse("scene-create"), {"name": "Act 1", "notes": "overture"}, follow=True)
    assert "Scene Act 1 created from the current assignments." in text_of(created)
    act1 = Scene.objects.get(name="Act 1")
    act2 = SceneService.create_scene(name="Act 2")
    data = {"name": "Act 2", "notes": "", f"performer-{quad[0].pk}": "", f"performer-{quad[2].pk}": "Priya"}
    for ch in quad[1:]:
        data.setdefault(f"performer-{ch.pk}", "")
    assert operator.post(reverse("scene-edit", args=[act2.pk]), data).status_code == 302
    switched = operator.post(reverse("scene-activate", args=[act2.pk]), follow=True)
    assert "Act 2 is active: 2 channel(s) changed (1 assigned, 0 changed, 1 cleared)." in text_of(switched)
    assert dict(Assignment.objects.values_list("channel__number", "performer__name")) == {3: "Priya"}
    listing = text_of(operator.get(reverse("scene-list")))
    assert "Active" in listing and "Who wears what" in listing and "overture" in listing
    assert listing.index("Act 1") < listing.index("Act 2")
    assert act1.pk != act2.pk


def test_scene_edit_rejects_bad_names_and_saves_nothing(operator, quad):
    act = SceneService.create_scene(name="Act 1")
    data = {"name": "Act One", f"performer-{quad[0].pk}": "Ada", f"performer-{quad[1].pk}": "z" * 101}
    response = operator.post(reverse("scene-edit", args=[act.pk]), data)
    html = text_of(response)
    assert response.status_code == 422 and "Nothing was saved: fix the names marked below." in html
    assert "A performer name can be at most 100 characters" in html
    act.refresh_from_db()
    assert act.name == "Act 1" and act.assignments.get().performer.name == "Maya"
    empty = operator.post(reverse("scene-edit", args=[act.pk]), {"name": " "})
    assert empty.status_code == 422 and "A scene needs a name." in text_of(empty)
    assert operator.post(reverse("scene-create"), {"name": "act 1"}, follow=True).status_code == 200
    assert Scene.objects.count() == 1


def test_group_pages_reorder_add_and_refuse_a_channel_twice(operator, quad, band):
    slots = list(band.slots.all())
    operator.post(reverse("slot-move", args=[band.pk, slots[0].pk]), {"direction": "down"})
    assert [s.channel_id for s in band.slots.all()] == [None, quad[0].pk, quad[1].pk, quad[2].pk]
    again = operator.post(reverse("group-add-channel", args=[band.pk]), {"channel": quad[0].pk}, follow=True)
    assert "Not added:" in text_of(again) and "on Band already (tile 2)" in text_of(again)
    operator.post(reverse("group-add-channel", args=[band.pk]), {"channel": quad[3].pk})
    operator.post(reverse("group-add-blank", args=[band.pk]))
    assert [s.channel_id for s in band.slots.all()][-2:] == [quad[3].pk, None]
    bad = operator.post(reverse("group-add-channel", args=[band.pk]), {"channel": "nope"}, follow=True)
    assert "Choose a channel to add." in text_of(bad)
    created = operator.post(reverse("group-create"), {"name": ""}, follow=True)
    assert "Group not created: A group needs a name." in text_of(created) and Group.objects.count() == 1


def test_channel_search_shows_performer_names(operator, quad, band):
    html = text_of(operator.get(reverse("group-edit", args=[band.pk]) + "?q=maya"))
    results = html.split('id="channel-results"')[1]
    assert "Maya" in results and "on this group" in results and "ch 2" not in results
    partial = operator.get(reverse("group-edit", args=[band.pk]) + "?q=rack",
                           headers={"HX-Request": "true", "HX-Target": "channel-results"})
    assert partial.content.decode().lstrip().startswith('<div id="channel-results">')
    assert "ch 4" in text_of(partial) and "no performer" in text_of(partial)


def test_admin_calls_board_groups_boards(admin_client, quad, band):
    index = admin_client.get(reverse("admin:index")).content.decode()
    assert ">Boards<" in index
    response = admin_client.post(
        reverse("admin:micboard_group_change", args=[band.pk]),
        {
            "name": "Band", "slug": "band", "position": 1,
            "slots-TOTAL_FORMS": 2, "slots-INITIAL_FORMS": 0,
            "slots-0-position": 7, "slots-0-channel": quad[3].pk,
            "slots-1-position": 8, "slots-1-channel": quad[3].pk,
        },
    )
    assert response.status_code == 200 and "on this board twice" in text_of(response)
    assert band.slots.count() == 4


def test_drawer_readings_refresh_alone(operator, quad):
    html = operator.get(reverse("channel-readings", args=[quad[0].pk])).content.decode()
    assert html.lstrip().startswith("<section") and "Last readings" in html
    assert "Address" not in html and 'name="name"' not in html
