"""Alerts on the screens: the live-alert selector, tiles that carry their alert, the list and acknowledging.

Alerts are raised as the links raise them: readings written through DeviceService, then
AlertService.evaluate and, when it changed something, the board version bump the link holder does.
"""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.urls import reverse

from micboard.exceptions import DeviceNotFoundError
from micboard.models import Alert, Assignment
from micboard.services import AssignmentService, BoardService, DeviceService, GroupService, KioskService, PollOutcome
from micboard.services.alerts import AlertService, LiveAlertService
from tests.factories import make_receiver, make_user, pack_on, reading
from web.alert_views import agent_name

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 28, 20, 0, tzinfo=UTC)
HX = {"HX-Request": "true"}
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1"
)


def record(receiver, *channels, now=NOW):
    DeviceService.record_poll_results(outcomes=[PollOutcome(receiver.pk, reading=reading(*channels))], now=now)


def evaluate(now=NOW):
    """What a link holder does each second: evaluate, and bump the board when an alert changed."""
    if AlertService.evaluate(now=now).changed:
        BoardService.bump_version()


@pytest.fixture
def rack():
    receiver = make_receiver(name="Band Rack")
    ch = {c.number: c for c in receiver.channels.all()}
    AssignmentService.assign(channel=ch[1], performer="Lead Vocal", priority=Assignment.Priority.HIGH)
    AssignmentService.assign(channel=ch[2], performer="Keys")
    AssignmentService.assign(channel=ch[3], performer="Bass", priority=Assignment.Priority.CRITICAL)
    record(receiver, pack_on(1), pack_on(2), pack_on(3), pack_on(4))
    BoardService.record_heartbeat()
    BoardService.bump_version()
    return receiver, ch


def low(receiver, *numbers, now=NOW):
    """Packs ``numbers`` at 0 bars, the others full; evaluated at ``now``."""
    record(receiver, *(pack_on(n, bars=0 if n in numbers else 5) for n in (1, 2, 3, 4)), now=now)
    evaluate(now)


def client_for(role, username=None):
    client = Client(headers={"User-Agent": FIREFOX})
    client.force_login(make_user(username or f"user-{role}", role=role))
    return client


def tile_of(channel):
    return next(t for t in BoardService.board().tiles if t.channel_id == channel.pk)


def ack_url(alert):
    return reverse("alert-acknowledge", args=[alert.pk])


# --- the selector ------------------------------------------------------------------------------------------


def test_live_alerts_list_open_before_acknowledged_then_by_priority_and_say_who_acknowledged(rack):
    receiver, ch = rack
    low(receiver, 1, 2, 3)
    keys = Alert.objects.get(channel=ch[2])
    AlertService.acknowledge(
        alert=Alert.objects.get(channel=ch[3]),
        user=make_user("sam", role="operator"),
        screen="phone · Safari on iPhone",
    )
    live = LiveAlertService.live()
    assert [(a.where, a.state) for a in live.alerts] == [
        ("Lead Vocal", "open"),  # high
        ("Keys", "open"),  # normal
        ("Bass", "acknowledged"),  # critical, but someone is on it
    ]
    assert (live.open_count, live.acknowledged_count) == (2, 1)
    bass = live.alerts[2]
    assert (bass.acknowledged_by, bass.acknowledged_from) == ("sam", "phone · Safari on iPhone")
    assert bass.priority_label == "Critical" and bass.kind_label == "Battery low" and bass.place == "Band Rack ch 3"
    assert live.alerts[1].id == keys.pk and live.alerts[1].opened_at == NOW.isoformat()


def test_live_alerts_are_cached_under_the_board_version_and_an_acknowledgement_renews_them(
    rack, django_assert_num_queries, django_capture_on_commit_callbacks
):
    receiver, _ch = rack
    low(receiver, 1)
    assert LiveAlertService.live().open_count == 1
    with django_assert_num_queries(0):
        assert LiveAlertService.live().open_count == 1
    with django_capture_on_commit_callbacks(execute=True):
        AlertService.acknowledge(alert=Alert.objects.get(), user=make_user("sam", role="operator"), screen="board")
    assert LiveAlertService.live().acknowledged_count == 1  # no bump by hand: acknowledging does it


def test_a_group_lists_its_channels_alerts_and_its_receivers_own(rack):
    receiver, ch = rack
    other = make_receiver(name="Cast Rack")
    AssignmentService.assign(channel=other.channels.get(number=1), performer="Romeo")
    record(other, pack_on(1, bars=0))
    low(receiver, 1, 2)
    Alert.objects.create(receiver=receiver, kind="offline", detail="Receiver not answering", opened_at=NOW)
    GroupService.set_tiles(name="Band", channels=[ch[1]])
    assert {a.where for a in LiveAlertService.live(group="band").alerts} == {"Lead Vocal", "Band Rack"}
    assert {a.where for a in LiveAlertService.live().alerts} == {"Lead Vocal", "Keys", "Romeo", "Band Rack"}
    with pytest.raises(DeviceNotFoundError):
        LiveAlertService.live(group="nope")
    with pytest.raises(DeviceNotFoundError):
        LiveAlertService.live(group="../../etc")


# --- tiles -------------------------------------------------------------------------------------------------


def test_a_tile_carries_its_alert_and_open_acknowledge_and_resolve_each_change_it(
    rack, django_capture_on_commit_callbacks
):
    receiver, ch = rack
    assert tile_of(ch[1]).alert_state == ""
    before = BoardService.board()
    low(receiver, 1)
    tile = tile_of(ch[1])
    assert (tile.alert_state, tile.alert_text) == ("open", "Battery low")
    opened = BoardService.board()
    changed = [i for i, (a, b) in enumerate(zip(before.states, opened.states, strict=True)) if a != b]
    assert [opened.tiles[i].channel_id for i in changed] == [ch[1].pk]  # only that tile is sent again

    with django_capture_on_commit_callbacks(execute=True):
        AlertService.acknowledge(alert=Alert.objects.get(), user=make_user("sam", role="operator"), screen="board")
    assert tile_of(ch[1]).alert_state == "acknowledged"  # within one refresh: the acknowledgement bumped
    low(receiver, now=NOW + timedelta(seconds=1))  # a swap
    assert tile_of(ch[1]).alert_state == ""


def test_a_receiver_alert_marks_every_tile_of_the_receiver_and_several_alerts_say_how_many(rack):
    receiver, ch = rack
    record(receiver, pack_on(1, bars=0, rf_dbm=-95.0), pack_on(2), pack_on(3), pack_on(4))
    evaluate(NOW)
    evaluate(NOW + timedelta(seconds=5))  # the dropout holds long enough
    assert tile_of(ch[1]).alert_text == "Battery low +1"
    Alert.objects.create(receiver=receiver, kind="offline", detail="Receiver not answering", opened_at=NOW)
    BoardService.bump_version()
    assert tile_of(ch[4]).alert_text == "Receiver offline"  # nobody assigned there, but its receiver is out


def test_the_board_reads_every_tiles_alert_in_one_query(rack, django_assert_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    receiver, _ch = rack
    with CaptureQueriesContext(connection) as quiet:
        BoardService.build(group="", version="x")
    low(receiver, 1, 2, 3)
    with django_assert_num_queries(len(quiet.captured_queries)):
        BoardService.build(group="", version="x")


def test_the_tile_flashes_by_class_and_shows_its_text_in_the_grid(rack):
    receiver, ch = rack
    low(receiver, 1)
    html = client_for("viewer").get(reverse("board-grid")).content.decode()
    tile = re.search(rf'<article class="([^"]*)"[^>]*data-channel-id="{ch[1].pk}"', html)
    assert "tile-alert-open" in tile.group(1)
    assert '<p class="tile-alert-text" data-alert="open"><span>Battery low</span></p>' in html


# --- the list and the badge ---------------------------------------------------------------------------------


def test_the_board_and_the_phone_show_the_badge_and_the_list(rack):
    receiver, ch = rack
    low(receiver, 1, 2)
    AlertService.acknowledge(
        alert=Alert.objects.get(channel=ch[2]), user=make_user("sam", role="operator"), screen="board"
    )
    viewer = client_for("viewer")
    for url in (reverse("board"), reverse("battery"), reverse("alerts")):
        html = viewer.get(url).content.decode()
        assert re.search(r'class="alerts-badge alerts-badge-open"[^>]*data-open="1" data-acknowledged="1"', html), url
        assert f'data-alert-id="{Alert.objects.get(channel=ch[1]).pk}" data-state="open"' in html
        assert 'Acknowledged</span> by <b class="alert-who">sam</b> from <span class="alert-from">board' in html
        assert 'class="alert-ack"' not in html  # a viewer gets no acknowledge button
        assert 'href="/alerts/"' in html  # the badge is a plain link to the list page
    assert 'class="alert-ack"' in client_for("operator").get(reverse("battery")).content.decode()


def test_the_sound_is_for_new_open_alerts_and_not_for_audio_peaks(rack, settings):
    """The board plays a tone for ids in data-open-ids (static/js/alerts.js): a peak flashes, never beeps."""
    settings.MICBOARD_ALERT_PEAK_SECONDS = 0  # a peak alert at once
    receiver, ch = rack
    record(receiver, pack_on(1, bars=0), pack_on(2, peak=True), pack_on(3), pack_on(4))
    evaluate()
    battery, peak = Alert.objects.get(channel=ch[1], kind="battery"), Alert.objects.get(channel=ch[2], kind="peak")
    html = client_for("viewer").get(reverse("board")).content.decode()
    ids = re.search(r'data-open-ids="([^"]*)"', html).group(1).split()
    assert ids == [str(battery.pk)]
    assert f'data-alert-id="{peak.pk}" data-state="open"' in html  # listed all the same


def test_the_list_answers_304_while_the_same_alerts_are_listed_and_renders_again_when_they_change(rack):
    receiver, _ch = rack
    viewer = client_for("viewer")
    url = reverse("alerts-list") + "?screen=board"
    first = viewer.get(url, headers=HX)
    assert first.status_code == 200 and "No open or acknowledged alerts" in first.content.decode()
    assert 'id="alerts-badge"' in first.content.decode() and 'hx-swap-oob="true"' in first.content.decode()
    etag = first["ETag"]
    record(receiver, pack_on(2, rf_dbm=-50.0), now=NOW)  # meters move, the board version moves, no alert
    BoardService.bump_version()
    assert viewer.get(url, headers={**HX, "If-None-Match": etag}).status_code == 304
    low(receiver, 1)
    changed = viewer.get(url, headers={**HX, "If-None-Match": etag})
    assert changed.status_code == 200 and "Lead Vocal" in changed.content.decode()
    assert viewer.get(reverse("alerts-list") + "?screen=tv", headers=HX).status_code == 400
    assert viewer.get(reverse("alerts-list") + "?group=gone").status_code == 404
    # A group deleted under a screen: the board's own refresh takes it to All; the list page goes itself.
    assert viewer.get(reverse("alerts-list") + "?group=gone&screen=board", headers=HX).status_code == 204
    gone = viewer.get(reverse("alerts-list") + "?group=gone&screen=page", headers=HX)
    assert gone["HX-Redirect"] == reverse("alerts")
    assert "no longer exists" in viewer.get(reverse("alerts")).content.decode()


def test_a_scoped_kiosk_lists_its_groups_alerts_only(rack):
    receiver, ch = rack
    low(receiver, 1, 2)
    band = GroupService.set_tiles(name="Band", channels=[ch[1]])
    kiosk = Client()
    kiosk.get(KioskService.path(link=KioskService.create(name="Band tablet", group=band), destination="board"))
    html = kiosk.get(reverse("alerts-list") + "?group=band&screen=board", headers=HX).content.decode()
    assert "Lead Vocal" in html and "Keys" not in html
    assert kiosk.get(reverse("alerts-list") + "?screen=board", headers=HX).status_code == 403


# --- acknowledging -----------------------------------------------------------------------------------------


def test_an_operator_acknowledges_from_the_phone_and_htmx_gets_the_list_back(rack):
    receiver, _ch = rack
    low(receiver, 1)
    alert = Alert.objects.get()
    operator = client_for("operator", "alex")
    response = operator.post(ack_url(alert), {"screen": "phone", "group": ""}, headers={**HX, "User-Agent": IPHONE})
    html = response.content.decode()
    assert response.status_code == 200
    assert "Acknowledged: Battery low on Lead Vocal." in html
    assert 'data-state="acknowledged"' in html and 'Acknowledged</span> by <b class="alert-who">alex</b>' in html
    assert 'id="alerts-badge"' in html  # the badge, out of band
    alert.refresh_from_db()
    assert (alert.state, alert.acknowledged_by.username) == ("acknowledged", "alex")
    assert alert.acknowledged_from == "phone · Safari on iPhone"


def test_without_javascript_acknowledging_returns_to_the_screen_with_a_message(rack):
    receiver, _ch = rack
    low(receiver, 1)
    alert = Alert.objects.get()
    operator = client_for("operator")
    response = operator.post(ack_url(alert), {"screen": "board"})
    assert response.status_code == 302 and response["Location"] == "/"
    page = operator.get("/").content.decode()
    assert "Acknowledged: Battery low on Lead Vocal." in page
    Alert.objects.filter(pk=alert.pk).update(acknowledged_from="")
    assert operator.post(ack_url(alert), {"screen": "page", "group": "x"})["Location"] == "/alerts/?group=x"


def test_a_second_acknowledgement_or_a_resolved_alert_says_so_instead_of_failing(rack):
    receiver, _ch = rack
    low(receiver, 1)
    alert = Alert.objects.get()
    first, second = client_for("operator", "alex"), client_for("operator", "sam")
    first.post(ack_url(alert), {"screen": "board"}, headers=HX)
    again = second.post(ack_url(alert), {"screen": "board"}, headers=HX)
    assert again.status_code == 200
    assert "was already acknowledged by alex from board · Firefox on Linux at" in again.content.decode()
    low(receiver, now=NOW + timedelta(seconds=1))
    gone = second.post(ack_url(alert), {"screen": "phone"})
    assert gone.status_code == 302 and gone["Location"] == "/battery/"
    assert "has already cleared: nothing to acknowledge" in second.get("/battery/").content.decode()
    alert.refresh_from_db()
    assert alert.acknowledged_by.username == "alex"


def test_who_may_acknowledge(rack):
    receiver, _ch = rack
    low(receiver, 1)
    alert = Alert.objects.get()
    data = {"screen": "board"}

    viewer = client_for("viewer").post(ack_url(alert), data)
    assert viewer.status_code == 403 and "Your role lets you watch the board, not change it" in viewer.content.decode()
    anonymous = Client().post(ack_url(alert), data)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith(reverse("login"))
    kiosk = Client()
    kiosk.get(KioskService.path(link=KioskService.create(name="FOH"), destination="board"))
    refused = kiosk.post(ack_url(alert), data)
    assert refused.status_code == 403 and "kiosk link, which is read-only" in refused.content.decode()
    assert Alert.objects.get().state == "open"

    operator = client_for("operator")
    assert operator.post(reverse("alert-acknowledge", args=[999999]), data).status_code == 404
    assert operator.post(ack_url(alert), {"screen": "nowhere"}).status_code == 400
    assert operator.get(ack_url(alert)).status_code == 405
    assert operator.post(f"/alerts/{alert.pk}x/acknowledge/", data).status_code == 404
    assert Alert.objects.get().state == "open"


def test_acknowledging_needs_the_csrf_token(rack):
    receiver, _ch = rack
    low(receiver, 1)
    alert = Alert.objects.get()
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(make_user("alex", role="operator"))
    assert browser.post(ack_url(alert), {"screen": "board"}).status_code == 403
    page = browser.get(reverse("alerts")).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    assert browser.post(ack_url(alert), {"screen": "page", "csrfmiddlewaretoken": token}).status_code == 302
    assert Alert.objects.get().state == "acknowledged"


@pytest.mark.parametrize(
    ("agent", "name"),
    [
        (IPHONE, "Safari on iPhone"),
        (FIREFOX, "Firefox on Linux"),
        ("curl/8.0", ""),
        ("Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/126.0 Mobile Safari/537.36", "Chrome on Android"),
    ],
)
def test_a_screen_is_named_by_its_browser(agent, name):
    assert agent_name(agent) == name
