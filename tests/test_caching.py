"""micboard.caching on the configured cache: the file cache by default, Redis when REDIS_URL is set.

``REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/pytest tests/test_caching.py`` runs the same tests on Redis
(under this run's own key prefix). A broken cache is a real one: a Redis address nothing listens on,
or a cache folder that is a file.
"""

from pathlib import Path

import pytest
from django.core.cache import cache
from django.urls import reverse

from micboard import caching
from micboard.caching import (
    MEDIUM,
    SHORT,
    CachedProperty,
    cache_key,
    cache_queryset,
    cache_service_result,
    invalidate_cache,
    namespace_version,
)
from micboard.models import Channel, Receiver
from micboard.query_optimization import QueryAnalyzer
from micboard.services import (
    AssignmentService,
    BoardService,
    DeviceService,
    GroupEditService,
    GroupService,
    PollOutcome,
    SheetService,
)
from tests.factories import make_receiver, pack_on, reading

pytestmark = pytest.mark.django_db

DEAD_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture
def rig():
    rx = make_receiver(name="Band Rack", model="ULXD4Q")
    DeviceService.record_poll_results(
        outcomes=[PollOutcome(rx.pk, reading=reading(*(pack_on(n, bars=5) for n in range(1, 5))))]
    )
    BoardService.bump_version()
    return rx


def test_the_run_uses_the_backend_it_says(settings):
    expected = "RedisCache" if settings.REDIS_URL else "FileBasedCache"
    assert settings.CACHES["default"]["BACKEND"].endswith(expected)
    from django.core.cache import caches

    assert type(caches["default"]).__name__ == expected


# ---------------------------------------------------------------------------------------- keys


def test_cache_keys_are_stable_safe_and_bounded(rig):
    assert cache_key("board", "data", "band") == "micboard:board:data:band"
    assert cache_key("board", "data", "band") == cache_key("board", "data", "band")
    hostile = cache_key("x", "<img src=x onerror=alert(1)> \n\t:ü")
    assert hostile.isascii() and not any(c.isspace() or ord(c) < 32 for c in hostile)
    # A ":" inside a part is no separator: two different calls never share a key.
    assert cache_key("a:b") != cache_key("a", "b")
    assert cache_key(rig) == f"micboard:%3Cmicboard.receiver%3A{rig.pk}%3E"
    long = cache_key("x" * 1000)
    assert len(long) <= caching.KEY_MAX and long != cache_key("x" * 999)
    with pytest.raises(TypeError):
        cache_key(object())
    with pytest.raises(TypeError):
        cache_key(Receiver())  # unsaved: no pk to key by


def test_a_decorated_service_keys_by_function_and_keyword_arguments():
    @cache_service_result(timeout=SHORT, namespace="test")
    def lookup(*, group, limit=None):
        return (group, limit)

    assert lookup.key_for(group="1") != lookup.key_for(group=1)
    assert lookup.key_for(group=None) != lookup.key_for(group="None")
    assert lookup.key_for(group="a", limit=2) == lookup.key_for(limit=2, group="a")
    assert "test_a_decorated_service" in lookup.key_for(group="a")
    with pytest.raises(TypeError):
        lookup("band")  # positional arguments have no name to key by


# --------------------------------------------------------------------------- versioned namespaces


def test_invalidating_a_namespace_makes_its_entries_unreachable_without_growing_the_cache(settings):
    calls = []

    @cache_service_result(timeout=MEDIUM, namespace="test")
    def answer(*, n):
        calls.append(n)
        return n * 10

    assert answer(n=1) == 10 and answer(n=1) == 10 and calls == [1]
    for _ in range(20):
        assert invalidate_cache("test") is True
        assert answer(n=1) == 10
    assert calls == [1] * 21  # every invalidation was seen, by reading one version, not by scanning keys
    assert _entries(settings) == 1  # one slot per call, replaced as the version moves on


def test_the_board_version_is_the_board_namespace():
    before = BoardService.version()
    assert namespace_version("board") == before
    invalidate_cache("board")
    assert BoardService.version() != before
    assert BoardService.bump_version() == namespace_version("board")


def test_a_namespace_version_is_never_reused_after_it_is_lost():
    first = namespace_version("test")
    from micboard import coordination

    coordination.store().delete(caching.namespace_version_key("test"))  # as if the store were wiped
    assert namespace_version("test") != first  # entries of the old version stay unreachable


def test_none_is_a_result_worth_caching():
    calls = []

    @cache_service_result(timeout=SHORT, namespace="test")
    def nothing(*, x):
        calls.append(x)

    assert nothing(x=1) is None and nothing(x=1) is None and calls == [1]


# ------------------------------------------------------------------------ real reads of the product


def test_sheet_rows_are_read_once_per_board_version(admin_client, rig, django_capture_on_commit_callbacks):
    first = SheetService.rows()
    with QueryAnalyzer() as queries:
        assert SheetService.rows() == first
    assert queries.count == 0
    # A setup write invalidates on its commit: the sheet a person prints next shows it.
    with django_capture_on_commit_callbacks(execute=True):
        AssignmentService.assign(channel=rig.channels.get(number=2), performer="Priya Nair")
    assert "Priya Nair" in admin_client.get(reverse("sheet")).content.decode()
    assert [r.performer for r in SheetService.rows()][:2] == ["", "Priya Nair"]


def test_a_poll_that_changes_the_board_refreshes_the_cached_sheet(admin_client, rig):
    assert "CRITICAL" not in [r.status.upper() for r in SheetService.rows()]
    DeviceService.record_poll_results(outcomes=[PollOutcome(rig.pk, reading=reading(pack_on(1, bars=1)))])
    BoardService.bump_version()  # what the poll cycle does after a change
    csv = admin_client.get(reverse("sheet") + "?format=csv").content.decode()
    assert "Critical" in csv


def test_group_search_caches_which_channels_match_but_shows_current_rows(rig, django_capture_on_commit_callbacks):
    ad = make_receiver(name="Axient Cast", model="AD4D")
    found = list(GroupEditService.search_channels(q="rack", limit=10))
    assert [c.receiver_id for c in found] == [rig.pk] * 4
    assert [c.number for c in found] == [1, 2, 3, 4]  # the search's own order
    Channel.objects.filter(pk=found[0].pk).update(name="Lead Vox")  # a value changes, not who matches
    with QueryAnalyzer() as queries:
        again = list(GroupEditService.search_channels(q="rack", limit=10))
        names = [(c.name, c.receiver.name, getattr(c, "assignment", None)) for c in again]
    assert [c.pk for c in again] == [c.pk for c in found]
    assert names[0][:2] == ("Lead Vox", "Band Rack")  # fresh rows, relations loaded with them
    assert queries.count == 1 and not queries.n_plus_one()
    assert "LIKE" not in queries.queries[0].sql.upper()  # the search itself ran once; this read rows by pk
    # Renaming a receiver through the service changes who matches once it commits.
    with django_capture_on_commit_callbacks(execute=True):
        ad.name = "Rack Two"
        DeviceService.update_receiver(receiver=ad)
    assert {c.receiver_id for c in GroupEditService.search_channels(q="rack", limit=10)} == {rig.pk, ad.pk}


def test_cache_queryset_keeps_the_order_and_refuses_what_is_no_queryset(rig):
    @cache_queryset(timeout=SHORT, namespace="test")
    def newest_first(*, receiver):
        return Channel.objects.filter(receiver=receiver).select_related("receiver").order_by("-number")

    assert [c.number for c in newest_first(receiver=rig)] == [4, 3, 2, 1]
    rig.channels.filter(number=4).delete()
    assert [c.number for c in newest_first(receiver=rig)] == [3, 2, 1]  # a row gone is gone
    assert list(newest_first.uncached(receiver=rig).values_list("number", flat=True)) == [3, 2, 1]

    @cache_queryset(timeout=SHORT)
    def not_a_queryset(*, x):
        return [x]

    with pytest.raises(TypeError):
        not_a_queryset(x=1)


def test_channel_groups_are_a_cached_property_invalidated_by_group_edits(
    admin_client, rig, django_capture_on_commit_callbacks
):
    channel = rig.channels.get(number=1)
    with django_capture_on_commit_callbacks(execute=True):
        GroupService.set_tiles(name="Band", channels=[channel])
    assert channel.board_groups == ("Band",)
    with QueryAnalyzer() as queries:
        assert Channel.objects.get(pk=channel.pk).board_groups == ("Band",)  # another instance, same entry
    assert len(queries.touching("micboard_group")) == 0
    with django_capture_on_commit_callbacks(execute=True):
        group = GroupEditService.create_group(name="Cast")
        GroupEditService.add_channel(group=group, channel=channel)
    html = admin_client.get(reverse("channel-detail", args=[channel.pk])).content.decode()
    assert "Band, Cast" in html
    assert isinstance(Channel.board_groups, CachedProperty)
    with pytest.raises(AttributeError):
        channel.board_groups = ("x",)
    assert Channel(receiver=rig, number=9).board_groups == ()  # unsaved: computed, never cached


# ------------------------------------------------------------------------------ a broken cache


@pytest.fixture(params=["redis-down", "folder-is-a-file"])
def broken_cache(request, settings, tmp_path):
    if request.param == "redis-down":
        settings.CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": DEAD_REDIS,
                "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
            }
        }
    else:
        blocked = tmp_path / "cache"
        blocked.write_text("not a directory")
        settings.CACHES = {
            "default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": str(blocked)}
        }
    with pytest.raises(Exception):  # noqa: B017  (each backend fails in its own way)
        cache.set("probe", 1)
    return request.param


def test_a_broken_cache_never_breaks_a_caller(admin_client, rig, broken_cache, django_capture_on_commit_callbacks):
    calls = []

    @cache_service_result(timeout=SHORT, namespace="test")
    def answer(*, n):
        calls.append(n)
        return n

    assert answer(n=1) == 1 and answer(n=1) == 1 and calls == [1, 1]  # every call a miss, none an error
    assert caching.cache_get("anything", "default") == "default"
    caching.cache_set("anything", 1, SHORT)
    caching.cache_delete("anything")
    assert len(SheetService.rows()) == 4
    assert rig.channels.first().board_groups == ()
    assert len(list(GroupEditService.search_channels(q="rack", limit=10))) == 4
    with django_capture_on_commit_callbacks(execute=True):
        AssignmentService.assign(channel=rig.channels.get(number=1), performer="Maria Lead")
    assert "Maria Lead" in admin_client.get(reverse("sheet")).content.decode()
    assert "Maria Lead" in admin_client.get(reverse("board")).content.decode()


def test_a_coordination_store_that_is_down_costs_the_cache_not_the_answer(
    admin_client, rig, settings, django_capture_on_commit_callbacks
):
    settings.REDIS_URL = DEAD_REDIS  # the coordination store follows REDIS_URL: versions cannot be read
    assert invalidate_cache("board") is False  # logged, not raised
    assert len(SheetService.rows()) == 4
    assert rig.channels.first().board_groups == ()
    with django_capture_on_commit_callbacks(execute=True):  # a setup write still commits
        AssignmentService.assign(channel=rig.channels.get(number=1), performer="Maria Lead")
    assert SheetService.rows()[0].performer == "Maria Lead"  # no version: never a stale cached answer


def _entries(settings) -> int:
    if settings.REDIS_URL:
        client = cache._cache.get_client()
        return sum(1 for _ in client.scan_iter(match=f"{settings.CACHES['default']['KEY_PREFIX']}:1:*", count=500))
    return len(list(Path(settings.CACHES["default"]["LOCATION"]).glob("*.djcache")))
