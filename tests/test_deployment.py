"""The production environment documented in the README: HTTPS behind a proxy, `check --deploy`, login throttling."""

import os
import secrets
import subprocess
import sys
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.factories import make_user

MANAGE = str(settings.BASE_DIR / "manage.py")
HOST = "micboard.example.org"


def production_env(tmp_path, **extra: str) -> dict:
    """The README's production environment (PostgreSQL and Redis left out: `check` does not connect)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_VERSION", "DEBUG", "DATABASE_URL", "REDIS_URL")}
    env.update(
        MICBOARD_DATA_DIR=str(tmp_path),
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS=HOST,
        CSRF_TRUSTED_ORIGINS=f"https://{HOST}",
        MICBOARD_HTTPS="1",
        MICBOARD_NUM_PROXIES="1",
    )
    env.update(extra)
    return env


def manage(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, MANAGE, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_check_deploy_is_clean_with_the_documented_production_environment(tmp_path):
    result = manage(production_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_names_what_is_missing_without_https(tmp_path):
    result = manage(production_env(tmp_path, MICBOARD_HTTPS="0"), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode != 0
    for check in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert check in result.stderr, check


def test_behind_the_https_proxy_http_is_redirected_and_https_is_strict(tmp_path):
    """A request the proxy marks as HTTPS gets HSTS and secure cookies; plain HTTP is sent to HTTPS."""
    env = production_env(tmp_path)
    assert manage(env, "migrate", "--verbosity", "0").returncode == 0
    assert manage(env, "collectstatic", "--noinput", "--verbosity", "0").returncode == 0
    code = (
        "from django.test import Client\n"
        "c = Client()\n"
        f"plain = c.get('/accounts/login/', HTTP_HOST='{HOST}')\n"
        "print('plain', plain.status_code, plain.get('Location'))\n"
        f"secure = c.get('/accounts/login/', HTTP_HOST='{HOST}', HTTP_X_FORWARDED_PROTO='https')\n"
        "print('secure', secure.status_code, secure.get('Strict-Transport-Security'))\n"
        "print('cookie', secure.cookies['csrftoken']['secure'])\n"
    )
    result = manage(env, "shell", "-c", code)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"plain 301 https://{HOST}/accounts/login/" in lines
    assert "secure 200 max-age=31536000; includeSubDomains" in lines
    assert "cookie True" in lines


# --- login throttling (django-axes) ------------------------------------------------------------


@pytest.fixture
def throttled(settings):
    settings.AXES_FAILURE_LIMIT = 3
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)
    return settings


def log_in(client, url: str, username: str, password: str, address: str = "10.0.0.5"):
    return client.post(url, {"username": username, "password": password}, REMOTE_ADDR=address)


def pass_the_cool_off() -> None:
    """Time passes: every recorded failure is now older than the cool-off."""
    AccessAttempt.objects.update(attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1))


@pytest.mark.django_db
def test_login_is_locked_after_repeated_failures_then_unlocked_after_the_cool_off(client, throttled):
    make_user("sam", password="right-pass-123")
    url = reverse("login")
    for _ in range(2):
        wrong = log_in(client, url, "sam", "wrong")
        assert wrong.status_code == 200 and "Please enter a correct username and password" in wrong.content.decode()

    locked = log_in(client, url, "sam", "wrong")  # the third failure

    assert locked.status_code == 429
    text = locked.content.decode()
    assert "Too many failed logins" in text
    assert "Login as “sam” is locked from this device after 3 failed attempts. Try again in 15 minutes." in text
    # Locked means locked: the right password does not get in either, and no session is made.
    assert log_in(client, url, "sam", "right-pass-123").status_code == 429
    assert "_auth_user_id" not in client.session
    # Another device (address) is not locked out: an attacker cannot lock the crew out of a show.
    assert log_in(client, url, "sam", "right-pass-123", address="10.0.0.6").status_code == 302
    client.logout()

    pass_the_cool_off()

    back = log_in(client, url, "sam", "right-pass-123")
    assert back.status_code == 302 and back["Location"] == reverse("board")


@pytest.mark.django_db
def test_admin_login_is_throttled_too(client, throttled):
    assert make_user("boss", role="admin", password="right-pass-123").is_staff
    url = reverse("admin:login")
    for _ in range(2):
        assert log_in(client, url, "boss", "wrong").status_code == 200

    locked = log_in(client, url, "boss", "wrong")

    assert locked.status_code == 429 and "Too many failed logins" in locked.content.decode()
    assert log_in(client, url, "boss", "right-pass-123").status_code == 429
    pass_the_cool_off()
    assert log_in(client, url, "boss", "right-pass-123").status_code == 302
    assert client.get(reverse("admin:index")).status_code == 200


@pytest.mark.django_db
def test_a_successful_login_forgets_earlier_failures(client, throttled):
    make_user("kim", password="right-pass-123")
    url = reverse("login")
    for _ in range(2):
        log_in(client, url, "kim", "wrong")
    assert log_in(client, url, "kim", "right-pass-123").status_code == 302
    client.logout()
    for _ in range(2):
        assert log_in(client, url, "kim", "wrong").status_code == 200  # counting starts again


@pytest.mark.django_db
def test_behind_a_proxy_a_forged_forwarded_address_does_not_escape_the_lock_out(client, throttled):
    throttled.MICBOARD_NUM_PROXIES = 1
    make_user("ana", password="right-pass-123")
    url = reverse("login")
    proxy = "10.0.0.1"  # the reverse proxy appends the peer it saw: 203.0.113.7 is the attacker
    for n in range(3):
        forged = {"HTTP_X_FORWARDED_FOR": f"198.51.100.{n}, 203.0.113.7"}
        answer = client.post(url, {"username": "ana", "password": "wrong"}, REMOTE_ADDR=proxy, **forged)
    assert answer.status_code == 429
    # Another client behind the same proxy is someone else.
    other = client.post(url, {"username": "ana", "password": "right-pass-123"}, REMOTE_ADDR=proxy,
                        HTTP_X_FORWARDED_FOR="203.0.113.8")
    assert other.status_code == 302


@pytest.mark.django_db
def test_without_a_trusted_proxy_x_forwarded_for_is_ignored(client, throttled):
    make_user("lee", password="right-pass-123")
    url = reverse("login")
    for n in range(3):
        answer = client.post(url, {"username": "lee", "password": "wrong"}, REMOTE_ADDR="10.0.0.5",
                             HTTP_X_FORWARDED_FOR=f"198.51.100.{n}")
    assert answer.status_code == 429


@pytest.mark.django_db
def test_an_admin_lifts_a_lock_out_in_the_admin(client, throttled):
    make_user("sam", password="right-pass-123")
    url = reverse("login")
    for _ in range(3):
        log_in(client, url, "sam", "wrong")
    assert log_in(client, url, "sam", "right-pass-123").status_code == 429
    admin = Client()
    admin.force_login(make_user("boss", role="admin"))  # the admin role, not a superuser

    listing = admin.get("/admin/axes/accessattempt/")
    assert listing.status_code == 200 and "sam" in listing.content.decode()
    attempt = AccessAttempt.objects.get(username="sam")
    assert admin.post(f"/admin/axes/accessattempt/{attempt.pk}/delete/", {"post": "yes"}).status_code == 302

    assert log_in(client, url, "sam", "right-pass-123").status_code == 302
