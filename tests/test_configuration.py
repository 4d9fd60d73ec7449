"""Configuration from the environment: what the web process and the poller share."""

import os
import subprocess
import sys
import uuid

from django.conf import settings
from django.core.cache import cache, caches

from micboard.services import BoardService


def run_in_other_process(code: str) -> str:
    result = subprocess.run(
        [sys.executable, str(settings.BASE_DIR / "manage.py"), "shell", "-c", code],
        capture_output=True, text=True, timeout=60, env=os.environ.copy(), check=True,
    )
    return result.stdout.strip().splitlines()[-1]


def test_web_and_poller_processes_share_the_board_cache():
    """The poller bumps the version in its own process; the web process must see it (file cache or Redis)."""
    version = run_in_other_process(
        "from micboard.services import BoardService; print(BoardService.bump_version())"
    )
    assert BoardService.version() == version
    cache.set("micboard:test:shared", "from web")
    assert run_in_other_process(
        "from django.core.cache import cache; print(cache.get('micboard:test:shared'))"
    ) == "from web"


def test_a_test_run_owns_its_state_and_touches_nobody_elses(settings):
    """A demo or another test run on this machine keeps its database, queue, cache and Redis keys."""
    from conftest import clear_own_state

    run = os.environ["MICBOARD_TEST_RUN"]
    assert (settings.BASE_DIR / "var").resolve() != settings.DATA_DIR  # not the demo's files
    assert run in settings.MICBOARD_KEY_PREFIX
    from django.db import connection

    assert run in str(connection.settings_dict["NAME"])  # the test database, SQLite file or PostgreSQL
    if settings.REDIS_URL:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL)
        foreign = f"not-micboard-test:{uuid.uuid4().hex}"
        client.set(foreign, "keep me", ex=60)
        cache.set("micboard:test:ours", 1)
        caches["access"].set("micboard:test:ours", 1)
        try:
            clear_own_state()
            assert client.get(foreign) == b"keep me"
            assert cache.get("micboard:test:ours") is None
            assert caches["access"].get("micboard:test:ours") is None
        finally:
            client.delete(foreign)


def test_generated_secret_key_is_kept_out_of_the_repository(tmp_path):
    """With no SECRET_KEY, each data directory gets one key, private, stable across processes."""
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "PYTEST_VERSION")}
    env["MICBOARD_DATA_DIR"] = str(tmp_path)
    code = "from django.conf import settings; print(settings.SECRET_KEY)"
    keys = [
        subprocess.run(
            [sys.executable, str(settings.BASE_DIR / "manage.py"), "shell", "-c", code],
            capture_output=True, text=True, timeout=60, env=env, check=True,
        ).stdout.strip().splitlines()[-1]
        for _ in range(2)
    ]
    key_file = tmp_path / "secret_key"
    assert keys[0] == keys[1] == key_file.read_text().strip() and len(keys[0]) >= 50
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    # The default data directory (var/) is ignored by git, so a generated key is never committed.
    ignored = subprocess.run(["git", "check-ignore", "-q", "var/secret_key"], cwd=settings.BASE_DIR, check=False)
    assert ignored.returncode == 0


def _settings_of(env_extra: dict[str, str], code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_VERSION"} | env_extra
    return subprocess.run(
        [sys.executable, str(settings.BASE_DIR / "manage.py"), "shell", "-c", code],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip


def test_peak_levels_per_family_come_from_the_environment_and_reach_the_driver(settings, db):
    from micboard.services.devices import PollTarget
    from tests.factories import make_receiver

    show = "from django.conf import settings; print(settings.MICBOARD_PEAK_DBFS)"
    done = _settings_of({"MICBOARD_PEAK_DBFS": "ulxd=-10, QLXD=-9.5"}, show)
    assert done.stdout.strip().splitlines()[-1] == "{'ulxd': -10.0, 'qlxd': -9.5}"
    bad = _settings_of({"MICBOARD_PEAK_DBFS": "ulxd:-10"}, "pass")
    assert bad.returncode != 0 and "MICBOARD_PEAK_DBFS: 'ulxd:-10' is not family=level" in bad.stderr

    settings.MICBOARD_PEAK_DBFS = {"ulxd": -10.0}
    ulx = make_receiver(name="ULX", model="ULXD4Q", host="127.0.0.1", port=2202)
    ad = make_receiver(name="AD", model="AD4Q", host="127.0.0.2", port=2202)
    assert dict(PollTarget.of(ulx).options)["peak_dbfs"] == "-10.0"
    assert "peak_dbfs" not in dict(PollTarget.of(ad).options), "a family without a setting keeps its own level"
