"""Django settings for micboard.

Everything a deployment changes comes from environment variables with working
defaults (see the configuration table in README.md). With nothing set, micboard
runs on its embedded default: SQLite, SqliteHuey and a file cache in ``var/``.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import uuid
from datetime import timedelta
from pathlib import Path

import dj_database_url
import redis

from micboard.drivers.multicast import check_interface
from micboard.exceptions import ConfigurationError

BASE_DIR = Path(__file__).resolve().parent.parent
# pytest (>= 8.2) sets PYTEST_VERSION. A test run owns its state: a data directory (SQLite files,
# file cache, Huey queue) and a key prefix (Redis cache, queue and coordination keys) of its own,
# handed to the processes it starts through the environment and removed by tests/conftest.py.
TESTING = bool(os.environ.get("PYTEST_VERSION"))
if TESTING and not os.environ.get("MICBOARD_TEST_RUN"):
    _run = uuid.uuid4().hex[:10]
    os.environ["MICBOARD_TEST_RUN"] = _run
    if not os.environ.get("MICBOARD_DATA_DIR"):
        os.environ["MICBOARD_DATA_DIR"] = tempfile.mkdtemp(prefix=f"micboard-test-{_run}-")
    if not os.environ.get("MICBOARD_KEY_PREFIX"):
        os.environ["MICBOARD_KEY_PREFIX"] = f"micboard-test-{_run}"
DATA_DIR = Path(os.environ.get("MICBOARD_DATA_DIR") or BASE_DIR / "var").resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)
# Prefix of every key micboard keeps in Redis (cache, Huey queue, coordination): two micboard
# installations (or a test run) can share one Redis server without touching each other's keys.
MICBOARD_KEY_PREFIX = os.environ.get("MICBOARD_KEY_PREFIX") or "micboard"


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_levels(name: str) -> dict[str, float]:
    """``"ulxd=-10,axient=-3"`` -> {"ulxd": -10.0, "axient": -3.0}; a malformed entry stops the start-up."""
    levels: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in os.environ.get(name, "").split(","))):
        family, _, value = item.partition("=")
        try:
            levels[family.strip().lower()] = float(value)
        except ValueError:
            raise ConfigurationError(f"{name}: {item!r} is not family=level (e.g. ulxd=-10)") from None
    return levels


def env_float(name: str, default: float, *, minimum: float) -> float:
    raw = os.environ.get(name, "")
    try:
        value = float(raw) if raw else default
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from exc
    if value < minimum:
        raise ConfigurationError(f"{name} must be at least {minimum}, got {value}")
    return value


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once and kept in DATA_DIR."""
    if os.environ.get("SECRET_KEY"):
        return os.environ["SECRET_KEY"]
    path = DATA_DIR / "secret_key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h]
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "csp",
    "huey.contrib.djhuey",
    "axes",
    "micboard.apps.MicboardConfig",
    "tasks.apps.TasksConfig",
    "web",
]

MIDDLEWARE = [
    # First: a request id, the timing and the log line cover every other middleware's work.
    "web.middleware.RequestLogMiddleware",
    "web.middleware.SuspiciousRequestMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "web.access.KioskMiddleware",
    "web.middleware.ReceiverHealthMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a lock-out during login into the lock-out page
]

ROOT_URLCONF = "web.urls"
WSGI_APPLICATION = "web.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "web.access.access_context",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'micboard.sqlite3'}",
        conn_max_age=60,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server, the Huey consumer and the simulator-driven poller share one
    # file: WAL lets readers run while the poller writes.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # Tests use a file too (in the run's own data directory): the live server, the poller thread and
    # the test share it, and an in-memory shared-cache database fails concurrent access at once.
    if TESTING:
        DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / f"test-db-{os.environ['MICBOARD_TEST_RUN']}.sqlite3")}
elif TESTING:
    DATABASES["default"]["TEST"] = {"NAME": f"test_micboard_{os.environ['MICBOARD_TEST_RUN']}"}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "")
HUEY_WORKERS = int(os.environ.get("HUEY_WORKERS", "4"))
# The cache holds only what can be rebuilt (rendered boards, one entry per group); the poller's
# coordination state lives in micboard.coordination (Redis keys, or coordination.sqlite3), where no
# culling or eviction can drop it. Tasks are queued for real in tests as well: the link holders are
# tested with real consumers.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": MICBOARD_KEY_PREFIX,
            # A Redis that hangs must not hang a request: fail fast, the board falls back to the database.
            "OPTIONS": {"socket_connect_timeout": 1.0, "socket_timeout": 1.0},
        },
        # Sessions and access decisions (web.sessions, web.access): per screen, apart from the shared renders.
        "access": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": f"{MICBOARD_KEY_PREFIX}-access",
            "OPTIONS": {"socket_connect_timeout": 1.0, "socket_timeout": 1.0},
        },
    }
    HUEY = {
        "huey_class": "huey.RedisHuey",
        "name": MICBOARD_KEY_PREFIX,
        "immediate": False,
        # Time-outs so a hung Redis cannot hang a worker (above the 1 s blocking read of the queue).
        "connection_pool": redis.ConnectionPool.from_url(REDIS_URL, socket_connect_timeout=2.0, socket_timeout=5.0),
        "consumer": {"workers": HUEY_WORKERS, "worker_type": "thread"},
    }
else:
    # A file cache is shared by the web process and the Huey consumer.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(DATA_DIR / "cache"),
            "OPTIONS": {"MAX_ENTRIES": 2000},
        },
        # Sessions and access decisions (web.sessions, web.access): per screen, apart from the shared renders.
        "access": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(DATA_DIR / "access-cache"),
            "OPTIONS": {"MAX_ENTRIES": 5000},
        },
    }
    HUEY = {
        "huey_class": "huey.SqliteHuey",
        "name": MICBOARD_KEY_PREFIX,
        "filename": str(DATA_DIR / "huey.sqlite3"),
        "immediate": False,
        "consumer": {"workers": HUEY_WORKERS, "worker_type": "thread"},
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
if TESTING:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests only
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "board"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# `manage.py serve` (make serve, make demo) runs collectstatic into the data directory: whitenoise serves
# those files compressed (gzip, and Brotli when installed), under names carrying their content's hash,
# cached for a year. Tests and DEBUG serve the source files as they are, by name.
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if TESTING
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG or TESTING
WHITENOISE_AUTOREFRESH = DEBUG

SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# The board needs nothing but its own scripts and styles: no inline code, nothing from elsewhere
# (django-csp). Django's admin keeps its inline styles and scripts, so it is left out.
CONTENT_SECURITY_POLICY = {
    "EXCLUDE_URL_PREFIXES": ["/admin/"],
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}
SESSION_COOKIE_HTTPONLY = True
# Sessions are read from the cache and kept in the database (Django's cached_db, falling back to the
# database whenever the cache fails): a board refresh reads no session row.
SESSION_ENGINE = "web.sessions"
SESSION_CACHE_ALIAS = "access"
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie

# HTTPS behind a reverse proxy (README, "Deployment"). MICBOARD_HTTPS=1 turns on what a site served only
# over HTTPS wants, each setting still overridable on its own: redirect to HTTPS, cookies sent over HTTPS
# only, HSTS for a year, and the proxy's X-Forwarded-Proto trusted to say a request came over HTTPS.
MICBOARD_HTTPS = env_bool("MICBOARD_HTTPS", False)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", MICBOARD_HTTPS)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", MICBOARD_HTTPS)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", MICBOARD_HTTPS)
SECURE_HSTS_SECONDS = int(env_float("SECURE_HSTS_SECONDS", 31_536_000 if MICBOARD_HTTPS else 0, minimum=0))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", MICBOARD_HTTPS)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Only a proxy that sets (or strips) X-Forwarded-Proto on every request may be trusted with it.
if env_bool("MICBOARD_TRUST_X_FORWARDED_PROTO", MICBOARD_HTTPS):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
USE_X_FORWARDED_HOST = env_bool("USE_X_FORWARDED_HOST", False)
# Reverse proxies in front of micboard whose X-Forwarded-For names the client (login throttling and the
# API's anonymous rate limit); 0: the peer's address, so a client cannot pick its own address.
MICBOARD_NUM_PROXIES = int(env_float("MICBOARD_NUM_PROXIES", 0, minimum=0))
# Asking browsers to put the domain on their built-in HSTS list is the domain owner's decision (and one
# hard to undo): preload stays off unless SECURE_HSTS_PRELOAD=1, and `check --deploy` does not nag about it.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]

# Login throttling (django-axes): after MICBOARD_LOGIN_FAILURE_LIMIT failed logins for one user name from
# one address, that pair is locked out for MICBOARD_LOGIN_COOLOFF_MINUTES (the board's login and the
# admin's alike). Locking the pair, not the account, keeps an attacker from locking the crew out of a
# show; an admin unlocks early by deleting the entry under "Axes → Access attempts".
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(env_float("MICBOARD_LOGIN_FAILURE_LIMIT", 5, minimum=1))
AXES_COOLOFF_TIME = timedelta(minutes=env_float("MICBOARD_LOGIN_COOLOFF_MINUTES", 15, minimum=0.1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "web.lockout.locked_out"
AXES_CLIENT_IP_CALLABLE = "web.lockout.client_address"  # MICBOARD_NUM_PROXIES decides whom to believe
AXES_VERBOSE = False  # no banner in every process; lock-outs are still logged (the "axes" logger)

# "plain" text lines, or "json": one JSON object per line (for a log collector).
MICBOARD_LOG_FORMAT = os.environ.get("MICBOARD_LOG_FORMAT", "plain").strip().lower() or "plain"
if MICBOARD_LOG_FORMAT not in {"plain", "json"}:
    raise ConfigurationError(f"MICBOARD_LOG_FORMAT must be plain or json, got {MICBOARD_LOG_FORMAT!r}")

# Every server error leaves one line (with its request and traceback) in the log, DEBUG or not;
# a fault that repeats (a dead Redis seen by every worker) is logged once per minute with a count.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "web.log.JsonFormatter"},
    },
    "filters": {"repeats": {"()": "web.log.RepeatFilter", "window": 60.0}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": MICBOARD_LOG_FORMAT, "filters": ["repeats"]}
    },
    "loggers": {
        "micboard": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
        "web": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
        "tasks": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
        "huey": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        "axes": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
    },
}

# --- micboard -----------------------------------------------------------------
# gunicorn under `manage.py serve`: worker processes, and threads per worker.
MICBOARD_WEB_WORKERS = int(env_float("MICBOARD_WEB_WORKERS", 2, minimum=1))
MICBOARD_WEB_THREADS = int(env_float("MICBOARD_WEB_THREADS", 4, minimum=1))
# Seconds between two polls of a receiver, and between two board refreshes.
MICBOARD_POLL_INTERVAL = env_float("MICBOARD_POLL_INTERVAL", 2.0, minimum=0.5)
MICBOARD_REFRESH_INTERVAL = env_float("MICBOARD_REFRESH_INTERVAL", 2.0, minimum=0.5)
# Per-receiver timeout of one poll, seconds.
MICBOARD_POLL_TIMEOUT = env_float("MICBOARD_POLL_TIMEOUT", 3.0, minimum=0.2)
# METER_RATE asked of the receivers (links and polls; clamped per family: >= 100 ms, QLX-D >= 1000 ms). Every
# SAMPLE is parsed and written, so it costs CPU (make bench: links section); 250 ms shows an RF loss within
# a quarter second.
MICBOARD_METER_RATE_MS = int(env_float("MICBOARD_METER_RATE_MS", 250, minimum=100))
# Live links (Receiver.link = "Live link"): each receiver is held by one consumer through a lease of
# this many seconds in the coordination store, renewed every second by its holder; a consumer that
# dies loses its receivers to the others within one lease. A holder task runs for one shift, then
# queues its successor (which keeps the open links when it runs in the same consumer).
MICBOARD_LINK_LEASE = env_float("MICBOARD_LINK_LEASE", 6.0, minimum=3.0)
MICBOARD_LINK_SHIFT = env_float("MICBOARD_LINK_SHIFT", 60.0, minimum=5.0)
# Consecutive failed polls before a receiver is shown offline (RX_COM_ERROR).
MICBOARD_OFFLINE_AFTER = int(env_float("MICBOARD_OFFLINE_AFTER", 2, minimum=1))
# Cap of the retry back-off for a receiver that does not answer, seconds.
MICBOARD_MAX_BACKOFF = env_float("MICBOARD_MAX_BACKOFF", 30.0, minimum=1.0)
# Battery thresholds in bars (0-5): >= GOOD is GOOD, >= REPLACE is REPLACE, else CRITICAL.
MICBOARD_BATTERY_GOOD_BARS = int(env_float("MICBOARD_BATTERY_GOOD_BARS", 4, minimum=1))
MICBOARD_BATTERY_REPLACE_BARS = int(env_float("MICBOARD_BATTERY_REPLACE_BARS", 3, minimum=1))
# How long a switched-off pack keeps its last battery (PREV_* states), and a peak stays shown.
MICBOARD_PREVIOUS_WINDOW = env_float("MICBOARD_PREVIOUS_WINDOW", 30 * 60, minimum=0)
MICBOARD_PEAK_WINDOW = env_float("MICBOARD_PEAK_WINDOW", 10, minimum=0)
# The level at which a channel shows a peak, per family, in dBFS (default -2, protocols.md §6), e.g.
# "ulxd=-10,qlxd=-10" brings back the original micboard's ULX-D/QLX-D peak (eee >= 40). Family names: see
# the "Supported families" table in the README.
MICBOARD_PEAK_DBFS = env_levels("MICBOARD_PEAK_DBFS")
# Alerts (README "Alerts"): the rules every assigned channel gets unless its assignment overrides them.
# A battery at or below BARS bars or MINUTES left; a pack switched off for OFF_GRACE seconds; RF below RF_DBM
# for RF_SECONDS; one antenna alone receiving for DIVERSITY_SECONDS. KINDS: the kinds switched on.
_ALERT_KINDS = (
    "battery", "tx_off", "offline", "dropout", "diversity", "peak", "interference", "control_disabled", "runtime_trend"
)
MICBOARD_ALERT_BATTERY_BARS = int(env_float("MICBOARD_ALERT_BATTERY_BARS", 1, minimum=0))
MICBOARD_ALERT_BATTERY_MINUTES = int(env_float("MICBOARD_ALERT_BATTERY_MINUTES", 30, minimum=0))
MICBOARD_ALERT_OFF_GRACE = int(env_float("MICBOARD_ALERT_OFF_GRACE", 60, minimum=0))
MICBOARD_ALERT_RF_DBM = env_float("MICBOARD_ALERT_RF_DBM", -85, minimum=-120)
MICBOARD_ALERT_RF_SECONDS = int(env_float("MICBOARD_ALERT_RF_SECONDS", 2, minimum=0))
MICBOARD_ALERT_DIVERSITY_SECONDS = int(env_float("MICBOARD_ALERT_DIVERSITY_SECONDS", 300, minimum=0))
# A pack that keeps peaking this long (each peak within MICBOARD_PEAK_WINDOW of the last) alerts; one peak does not.
MICBOARD_ALERT_PEAK_SECONDS = int(env_float("MICBOARD_ALERT_PEAK_SECONDS", 30, minimum=0))
# A pack whose runtime fell more than TREND_FACTOR times the wall minutes over at least TREND_MINUTES of history.
MICBOARD_ALERT_TREND_FACTOR = env_float("MICBOARD_ALERT_TREND_FACTOR", 1.5, minimum=1.0)
MICBOARD_ALERT_TREND_MINUTES = env_float("MICBOARD_ALERT_TREND_MINUTES", 10, minimum=2)
MICBOARD_ALERT_KINDS = tuple(
    k.strip() for k in os.environ.get("MICBOARD_ALERT_KINDS", ",".join(_ALERT_KINDS)).split(",") if k.strip()
)
if unknown_kinds := set(MICBOARD_ALERT_KINDS) - set(_ALERT_KINDS):
    raise ConfigurationError(
        f"MICBOARD_ALERT_KINDS: unknown {', '.join(sorted(unknown_kinds))}; known: {', '.join(_ALERT_KINDS)}"
    )

# Alert messages (docs/alerts.md): webhooks and e-mail, sent by Huey tasks. At most RATE_PER_MINUTE messages
# per webhook or user in any minute (the rest go out as one summary); SEND_ATTEMPTS tries per message, retried
# after RETRY_SECONDS doubling up to RETRY_MAX_SECONDS (a server's Retry-After is honoured up to that); a webhook
# must answer within WEBHOOK_TIMEOUT seconds. PUBLIC_URL: the board's address as the crew opens it, for links.
MICBOARD_PUBLIC_URL = os.environ.get("MICBOARD_PUBLIC_URL", "").strip()
MICBOARD_ALERT_RATE_PER_MINUTE = int(env_float("MICBOARD_ALERT_RATE_PER_MINUTE", 6, minimum=1))
MICBOARD_ALERT_SEND_ATTEMPTS = int(env_float("MICBOARD_ALERT_SEND_ATTEMPTS", 6, minimum=1))
MICBOARD_ALERT_RETRY_SECONDS = env_float("MICBOARD_ALERT_RETRY_SECONDS", 10, minimum=0.1)
MICBOARD_ALERT_RETRY_MAX_SECONDS = env_float("MICBOARD_ALERT_RETRY_MAX_SECONDS", 600, minimum=1)
MICBOARD_WEBHOOK_TIMEOUT = env_float("MICBOARD_WEBHOOK_TIMEOUT", 5, minimum=0.5)
# E-mail through Django's SMTP backend (tests: its in-memory backend).
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(env_float("EMAIL_PORT", 25, minimum=1))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env_float("EMAIL_TIMEOUT", 10, minimum=1)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "micboard@localhost")

# Shure System API servers: a CA file (PEM) to verify their certificates with. A receiver may instead pin its
# server's certificate (SHA-256 fingerprint in its settings). TLS is never verified "off".
MICBOARD_SYSTEM_API_CA_FILE = os.environ.get("MICBOARD_SYSTEM_API_CA_FILE", "")

# Show history (README, "History"): the link holders sample each channel every MICBOARD_HISTORY_RESOLUTION
# seconds (1, 10 or 60; 0 switches history off); Huey folds 1 s rows into 10 s rows after
# MICBOARD_HISTORY_RAW_MINUTES, 10 s rows into 60 s rows after MICBOARD_HISTORY_TEN_SECOND_HOURS, and
# deletes rows older than MICBOARD_HISTORY_RETENTION_DAYS. At most MICBOARD_HISTORY_BUFFER_ROWS samples wait
# in a holder's memory while the database refuses them (the oldest go first, counted in the log).
MICBOARD_HISTORY_RESOLUTION = int(env_float("MICBOARD_HISTORY_RESOLUTION", 1, minimum=0))
if MICBOARD_HISTORY_RESOLUTION not in {0, 1, 10, 60}:
    raise ConfigurationError(
        f"MICBOARD_HISTORY_RESOLUTION must be 0 (off), 1, 10 or 60, got {MICBOARD_HISTORY_RESOLUTION}"
    )
MICBOARD_HISTORY_RAW_MINUTES = env_float("MICBOARD_HISTORY_RAW_MINUTES", 60, minimum=1)
MICBOARD_HISTORY_TEN_SECOND_HOURS = env_float("MICBOARD_HISTORY_TEN_SECOND_HOURS", 24, minimum=1)
MICBOARD_HISTORY_RETENTION_DAYS = env_float("MICBOARD_HISTORY_RETENTION_DAYS", 14, minimum=1)
MICBOARD_HISTORY_BUFFER_ROWS = int(env_float("MICBOARD_HISTORY_BUFFER_ROWS", 100_000, minimum=100))
# Each board tile draws its battery over the last 30 minutes from the history (one query a minute for the
# whole board, micboard/services/charts.py); 0 leaves the sparklines out.
MICBOARD_TILE_SPARKLINES = env_bool("MICBOARD_TILE_SPARKLINES", True)


def _discovery_ports(raw: str) -> dict[str, int]:
    """``MICBOARD_DISCOVERY_PORTS``: "driver=port,..." (a System API server installed on another port, say)."""
    ports: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        key, _, value = item.partition("=")
        if not key.strip() or not value.strip().isdigit() or not 0 < int(value) < 65536:
            raise ConfigurationError(f"MICBOARD_DISCOVERY_PORTS takes driver=port pairs, got {item!r}")
        ports[key.strip()] = int(value)
    return ports


# Discovery (README "Discovery"): multicast (SLP, mDNS) goes out on the interface with this address only,
# with this TTL: 127.0.0.1 and 0 keep it on this machine (the demo and the tests); a venue sets its own
# address and 1 (the local segment). A scan listens for announcements this long, then probes its range with
# at most this many probes at once, each within the time-out.
MICBOARD_DISCOVERY_INTERFACE, MICBOARD_DISCOVERY_TTL = check_interface(
    os.environ.get("MICBOARD_DISCOVERY_INTERFACE", "127.0.0.1"), int(env_float("MICBOARD_DISCOVERY_TTL", 0, minimum=0))
)
MICBOARD_DISCOVERY_LISTEN_SECONDS = env_float("MICBOARD_DISCOVERY_LISTEN_SECONDS", 3.0, minimum=0)
MICBOARD_DISCOVERY_CONCURRENCY = int(env_float("MICBOARD_DISCOVERY_CONCURRENCY", 64, minimum=1))
MICBOARD_DISCOVERY_TIMEOUT = env_float("MICBOARD_DISCOVERY_TIMEOUT", 1.5, minimum=0.2)
MICBOARD_DISCOVERY_PORTS = _discovery_ports(os.environ.get("MICBOARD_DISCOVERY_PORTS", ""))
MICBOARD_DISCOVERY_SLP_PORT = int(env_float("MICBOARD_DISCOVERY_SLP_PORT", 8427, minimum=1))
MICBOARD_DISCOVERY_MDNS_PORT = int(env_float("MICBOARD_DISCOVERY_MDNS_PORT", 5353, minimum=1))
# micboard's dcid.json (Shure's DCID map) for the models of real devices' SLP announcements.
MICBOARD_DCID_FILE = os.environ.get("MICBOARD_DCID_FILE", "")
# A query at least this long is flagged as slow by micboard.query_optimization.QueryAnalyzer (tests, make bench).
MICBOARD_SLOW_QUERY_MS = env_float("MICBOARD_SLOW_QUERY_MS", 100.0, minimum=1.0)

# --- JSON API (Django REST framework, drf-spectacular) -----------------------------------------
# Before micboard: the token permissions exist when micboard's post_migrate applies the roles (admins manage tokens).
_micboard_app = INSTALLED_APPS.index("micboard.apps.MicboardConfig")
INSTALLED_APPS[_micboard_app:_micboard_app] = [
    "rest_framework", "rest_framework.authtoken", "drf_spectacular", "drf_spectacular_sidecar",
]
# Requests per user (session or token) and per anonymous client address, on the default cache
# (Redis or the file cache, shared by every web process). "N/second|minute|hour|day".
MICBOARD_API_USER_RATE = os.environ.get("MICBOARD_API_USER_RATE", "1200/minute")
MICBOARD_API_ANON_RATE = os.environ.get("MICBOARD_API_ANON_RATE", "60/minute")
REST_FRAMEWORK = {
    # Token first: an anonymous request gets 401 with "WWW-Authenticate: Token". Session auth enforces CSRF.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["web.api.permissions.RolePermission"],
    "DEFAULT_THROTTLE_CLASSES": [
        "web.api.throttling.UserThrottle",
        "web.api.throttling.AnonThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {"user": MICBOARD_API_USER_RATE, "anon": MICBOARD_API_ANON_RATE},
    # Proxies in front of micboard whose X-Forwarded-For to trust for the anonymous throttle; 0: the peer's
    # address only, so a client cannot dodge its limit by sending a made-up X-Forwarded-For.
    "NUM_PROXIES": int(env_float("MICBOARD_API_NUM_PROXIES", MICBOARD_NUM_PROXIES, minimum=0)),
    "DEFAULT_PAGINATION_CLASS": "web.api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "web.api.schema.ApiSchema",
    "EXCEPTION_HANDLER": "web.api.exceptions.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "micboard API",
    "DESCRIPTION": "Receivers, packs, performers, locations, link health and the board of micboard.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["web.api.permissions.ViewerPermission"],
    "SWAGGER_UI_DIST": "SIDECAR",  # assets from static/ (drf-spectacular-sidecar), never a CDN
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"validatorUrl": None},
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "ChannelStatusEnum": "micboard.status.ChannelStatus",
        "ConnectionStatusEnum": "micboard.models.RealTimeConnection.Status",
    },
}

# A request slower than this (milliseconds) is logged as a warning.
MICBOARD_SLOW_REQUEST_MS = env_float("MICBOARD_SLOW_REQUEST_MS", 500, minimum=1)
# /metrics (Prometheus): a bearer token, and/or the client addresses or networks allowed without one
# (comma-separated; loopback only by default).
MICBOARD_METRICS_TOKEN = os.environ.get("MICBOARD_METRICS_TOKEN", "")
MICBOARD_METRICS_ALLOW = [
    a.strip() for a in os.environ.get("MICBOARD_METRICS_ALLOW", "127.0.0.1,::1").split(",") if a.strip()
]
# A service call slower than this (milliseconds) is logged and listed on the health page.
MICBOARD_SLOW_OPERATION_MS = env_float("MICBOARD_SLOW_OPERATION_MS", 1000, minimum=1)
