"""Configuration from the environment: what the web process and the poller share."""

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.cache import cache

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


def test_task_queue_and_cache_follow_redis_url():
    if os.environ.get("REDIS_URL"):
        assert settings.HUEY["huey_class"] == "huey.RedisHuey"
        assert settings.CACHES["default"]["BACKEND"].endswith("RedisCache")
    else:
        assert settings.HUEY["huey_class"] == "huey.SqliteHuey"
        assert settings.CACHES["default"]["BACKEND"].endswith("FileBasedCache")


def test_generated_secret_key_is_kept_out_of_the_repository():
    if os.environ.get("SECRET_KEY"):
        pytest.skip("SECRET_KEY comes from the environment here")
    key_file = settings.DATA_DIR / "secret_key"
    assert key_file.read_text().strip() == settings.SECRET_KEY
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert run_in_other_process("from django.conf import settings; print(settings.SECRET_KEY)") == settings.SECRET_KEY
    ignored = subprocess.run(["git", "check-ignore", "-q", str(key_file)], cwd=settings.BASE_DIR, check=False)
    assert ignored.returncode == 0
