"""HADR Portal settings: one module, every value from a HADR_* environment variable.

Every variable is documented in the README. A malformed value stops start-up with the
variable's name; secrets may be given directly or through `<NAME>_FILE`.
"""

from __future__ import annotations

import os
import zoneinfo
from ipaddress import ip_network
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str | None = None) -> str | None:
    """Return the variable, or the contents of the file named by `<name>_FILE`."""
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        try:
            return Path(file_name).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE: cannot read {file_name}: {exc.strerror}") from exc
    return os.environ.get(name, default)


def env_required(name: str) -> str:
    value = env(name)
    if not value:
        raise ImproperlyConfigured(f"{name} is required (set it in the environment or {name}_FILE)")
    return value


def env_bool(name: str, default: bool) -> bool:
    value = env(name)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean (use true or false)")


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    value = env(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a whole number") from None
    if number < minimum:
        raise ImproperlyConfigured(f"{name}={number} must be at least {minimum}")
    return number


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in (env(name) or default).split(",") if item.strip()]


DEBUG = env_bool("HADR_DEBUG", False)
SECRET_KEY = env_required("HADR_SECRET_KEY")
if len(SECRET_KEY) < 50 and not DEBUG:
    raise ImproperlyConfigured("HADR_SECRET_KEY must be at least 50 characters long")

ALLOWED_HOSTS = env_list("HADR_ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env_list("HADR_CSRF_TRUSTED_ORIGINS")

# Behind TLS (a reverse proxy terminating HTTPS): secure cookies, HSTS, redirect to https.
HTTPS = env_bool("HADR_HTTPS", False)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS
SECURE_HSTS_SECONDS = env_int("HADR_HSTS_SECONDS", 31536000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS and env_bool("HADR_HSTS_PRELOAD", False)
# Preloading is a promise for the whole domain, hard to take back: the domain's owner decides it
# (HADR_HSTS_PRELOAD), so Django's reminder that it is off is not a finding of `check --deploy`.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env_int("HADR_SESSION_HOURS", 12, minimum=1) * 3600
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "template_partials",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "axes",
    "csp",
    "hadr_portal.core",
    "hadr_portal.databases",
    "hadr_portal.status",
    "hadr_portal.backups",
    "hadr_portal.metrics",
    "hadr_portal.runbooks",
    "hadr_portal.incidents",
    "hadr_portal.accounts",
    "hadr_portal.dashboard",
    "hadr_portal.demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "hadr_portal.core.middleware.HardeningMiddleware",  # NUL refused; Permissions-Policy; no-store when signed in
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "hadr_portal.accounts.middleware.TwoFactorMiddleware",  # enrolment and verification, when they apply
    "hadr_portal.core.middleware.RefusalAuditMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "csp.middleware.CSPMiddleware",
    # last, as its documentation asks: it turns a locked-out sign-in into the lockout response
    "axes.middleware.AxesMiddleware",
]
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out account before checking the password
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "hadr_portal.urls"
WSGI_APPLICATION = "hadr_portal.wsgi.application"

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
                "hadr_portal.core.context_processors.portal",
            ],
        },
    },
]

try:
    DATABASES = {
        "default": dj_database_url.parse(
            env_required("HADR_DATABASE_URL"),
            conn_max_age=env_int("HADR_DATABASE_CONN_MAX_AGE", 60),
            conn_health_checks=True,
        )
    }
except ValueError:  # the URL may hold a password: name the variable, never echo the value
    raise ImproperlyConfigured(
        "HADR_DATABASE_URL is not a database URL (postgres://user:password@host:port/name)"
    ) from None
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("HADR_TIME_ZONE", "UTC") or "UTC"
try:
    zoneinfo.ZoneInfo(TIME_ZONE)
except (zoneinfo.ZoneInfoNotFoundError, ValueError):
    raise ImproperlyConfigured(f"HADR_TIME_ZONE={TIME_ZONE!r} is not a time zone (e.g. UTC, Europe/Lisbon)") from None
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env("HADR_STATIC_ROOT", str(BASE_DIR / ".run" / "static")) or "")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
if DEBUG:
    STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
WHITENOISE_USE_FINDERS = DEBUG

# --- Celery -----------------------------------------------------------------------------
REDIS_URL = env_required("HADR_REDIS_URL")
if urlsplit(REDIS_URL).scheme not in {"redis", "rediss", "unix"}:
    raise ImproperlyConfigured("HADR_REDIS_URL must be a redis://, rediss:// or unix:// URL")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "hadr",
        "OPTIONS": {"socket_timeout": 2, "socket_connect_timeout": 2},
    }
}
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A request waits this long at most for the broker (a hung or absent Redis): what it queues stays in the outbox
# (core.dispatch) and is sent when Redis answers again.
BROKER_TIMEOUT = env_int("HADR_BROKER_TIMEOUT", 2, minimum=1)
CELERY_BROKER_CONNECTION_TIMEOUT = BROKER_TIMEOUT
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("HADR_BROKER_VISIBILITY_TIMEOUT", 3600, minimum=60),
    "socket_timeout": BROKER_TIMEOUT,
    "socket_connect_timeout": BROKER_TIMEOUT,
}
OUTBOX_DRAIN_SECONDS = env_int("HADR_OUTBOX_DRAIN_SECONDS", 5, minimum=1)  # beat sends what the outbox still holds
CELERY_TASK_ALWAYS_EAGER = False

# --- Operations ---------------------------------------------------------------------------
# A running operation writes a heartbeat every HEARTBEAT_INTERVAL seconds; the reaper (every
# REAPER_INTERVAL seconds) fails operations whose heartbeat is older than HEARTBEAT_TIMEOUT.
OPERATION_HEARTBEAT_INTERVAL = env_int("HADR_OPERATION_HEARTBEAT_INTERVAL", 5, minimum=1)
OPERATION_HEARTBEAT_TIMEOUT = env_int("HADR_OPERATION_HEARTBEAT_TIMEOUT", 45, minimum=2)
OPERATION_REAPER_INTERVAL = env_int("HADR_OPERATION_REAPER_INTERVAL", 15, minimum=1)
if OPERATION_HEARTBEAT_TIMEOUT <= OPERATION_HEARTBEAT_INTERVAL:
    raise ImproperlyConfigured(
        "HADR_OPERATION_HEARTBEAT_TIMEOUT must be greater than HADR_OPERATION_HEARTBEAT_INTERVAL"
    )
# Restores download backups from S3 here (pg_restore -j needs a seekable file), unpack directory-format
# dumps, and put the data directories of restore drills of physical backups.
RESTORE_SCRATCH_DIR = Path(env("HADR_RESTORE_SCRATCH_DIR", str(BASE_DIR / ".run" / "restores")) or "")

# --- Point-in-time recovery (pgBackRest) ------------------------------------------------------------
# One directory per stanza (a cluster with a pgBackRest policy): its configuration, S3 keys (mode 600), spool,
# locks and logs, owned by the data directories' owner. The portal writes it from the catalog.
PGBACKREST_DIR = Path(env("HADR_PGBACKREST_DIR", str(BASE_DIR / ".run" / "pgbackrest")) or "")
PGBACKREST_USER = env("HADR_PGBACKREST_USER", "postgres") or "postgres"  # runs pgbackrest (owns the data)
# A scratch instance (a point-in-time restore waiting for the DBA's decision) is stopped and removed after this
# many hours, with a warning an hour before.
SCRATCH_TTL_HOURS = env_int("HADR_SCRATCH_TTL_HOURS", 8, minimum=1)
# Deploy pipelines create restore points with `POST /api/restore-points` and this bearer token (empty: off).
RESTORE_POINT_TOKEN = env("HADR_RESTORE_POINT_TOKEN", "") or ""
# A marker row is written into each PITR cluster this often: drills prove they landed at exactly their point.
PITR_MARKER_SECONDS = env_int("HADR_PITR_MARKER_SECONDS", 60, minimum=1)
# Test-only: names of kill points (core.killpoints) at which the process SIGKILLs itself. Read only when
# HADR_TESTING is on, so a production setting can never arm one.
TESTING = env_bool("HADR_TESTING", False)
KILL_POINTS = frozenset(env_list("HADR_TEST_KILL_POINTS")) if TESTING else frozenset()

# --- Health checks and alerts ---------------------------------------------------------------------
# the write probe (databases.writeprobe): a row this often on every cluster, where writes go
WRITE_PROBE_SECONDS = env_int("HADR_WRITE_PROBE_SECONDS", 1, minimum=1)
CHECK_TICK_SECONDS = env_int("HADR_CHECK_TICK_SECONDS", 5, minimum=1)  # how often due checks are picked
CHECK_CONCURRENCY = env_int("HADR_CHECK_CONCURRENCY", 200, minimum=1)  # checks probed at once per tick
CHECK_RESULTS_DAYS = env_int("HADR_CHECK_RESULTS_DAYS", 7, minimum=1)  # raw results kept
CHECK_ROLLUPS_DAYS = env_int("HADR_CHECK_ROLLUPS_DAYS", 400, minimum=1)  # hourly rollups kept
ALERT_MAX_ATTEMPTS = env_int("HADR_ALERT_MAX_ATTEMPTS", 5, minimum=1)
# An incident nobody acknowledged escalates to the next contact of its list this often.
ESCALATION_REMINDER_MINUTES = env_int("HADR_ESCALATION_REMINDER_MINUTES", 15, minimum=1)
DASHBOARD_REFRESH_SECONDS = env_int("HADR_DASHBOARD_REFRESH_SECONDS", 10, minimum=1)
# The service tiles are rendered once for everyone and kept this long (0: never cached); a state
# transition or a catalog change replaces them at once.
DASHBOARD_CACHE_SECONDS = env_int("HADR_DASHBOARD_CACHE_SECONDS", 15, minimum=0)
PORTAL_URL = (env("HADR_PORTAL_URL", "http://127.0.0.1:8000") or "").rstrip("/")  # links in alerts

# E-mail: "smtp" (HADR_EMAIL_HOST...), "console", or "file" (one file per message in HADR_EMAIL_FILE_DIR).
EMAIL_MODE = env("HADR_EMAIL_BACKEND", "console") or "console"
EMAIL_BACKENDS = {
    "smtp": "django.core.mail.backends.smtp.EmailBackend",
    "console": "django.core.mail.backends.console.EmailBackend",
    "file": "django.core.mail.backends.filebased.EmailBackend",
}
if EMAIL_MODE not in EMAIL_BACKENDS:
    raise ImproperlyConfigured(f"HADR_EMAIL_BACKEND={EMAIL_MODE!r} must be one of {', '.join(EMAIL_BACKENDS)}")
EMAIL_BACKEND = EMAIL_BACKENDS[EMAIL_MODE]
EMAIL_FILE_PATH = env("HADR_EMAIL_FILE_DIR", str(BASE_DIR / ".run" / "mail"))
EMAIL_HOST = env("HADR_EMAIL_HOST", "localhost") or "localhost"
EMAIL_PORT = env_int("HADR_EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env("HADR_EMAIL_USER", "") or ""
EMAIL_HOST_PASSWORD = env("HADR_EMAIL_PASSWORD", "") or ""
EMAIL_USE_TLS = env_bool("HADR_EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env_int("HADR_EMAIL_TIMEOUT", 10, minimum=1)
DEFAULT_FROM_EMAIL = env("HADR_EMAIL_FROM", "hadr-portal@localhost") or "hadr-portal@localhost"

# --- Metrics: funnel history, /metrics for Prometheus, the Errors page ----------------------------
FUNNEL_HOURLY_DAYS = env_int("HADR_FUNNEL_HOURLY_DAYS", 90, minimum=2)  # hourly funnel counts kept (daily: always)
DB_SIZE_INTERVAL = env_int("HADR_DB_SIZE_INTERVAL", 600, minimum=60)  # seconds between database size samples
ERROR_LOG_KEEP = env_int("HADR_ERROR_LOG_KEEP", 10000, minimum=100)  # logged errors kept for the Errors page
# /metrics answers a bearer token, or any address of the allowed networks; with neither it is off (403).
METRICS_TOKEN = env("HADR_METRICS_TOKEN", "") or ""
try:
    METRICS_ALLOWED_NETWORKS = [ip_network(item, strict=False) for item in env_list("HADR_METRICS_ALLOWED_NETWORKS")]
except ValueError as exc:
    raise ImproperlyConfigured(f"HADR_METRICS_ALLOWED_NETWORKS: {exc} (e.g. 10.0.0.0/8,127.0.0.1/32)") from None

# --- Logging: one JSON object a line ----------------------------------------------------------
LOG_LEVEL = (env("HADR_LOG_LEVEL", "INFO") or "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(f"HADR_LOG_LEVEL={LOG_LEVEL!r} is not a log level")
LOG_FORMAT = env("HADR_LOG_FORMAT", "json")
if LOG_FORMAT not in {"json", "text"}:
    raise ImproperlyConfigured(f"HADR_LOG_FORMAT={LOG_FORMAT!r} must be json or text")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "operation": {"()": "hadr_portal.core.logging.OperationContextFilter"},
        "redact": {"()": "hadr_portal.core.logging.RedactingFilter"},  # no secret in any record, on every handler
    },
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [op=%(operation_id)s] %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["operation", "redact"]},
        # ERROR and CRITICAL records also go to the database, for the Errors page
        "errors": {"()": "hadr_portal.metrics.errorlog.DatabaseErrorHandler", "filters": ["operation", "redact"]},
    },
    "root": {"handlers": ["console", "errors"], "level": LOG_LEVEL},
    # httpx logs every request at INFO: the write probe reads Patroni's REST API every second
    "loggers": {"django.db.backends": {"level": "INFO"}, "httpx": {"level": "WARNING"}},
}

# --- Security ---------------------------------------------------------------------------------------
# Each block below is documented in the README's Security section.

# Commands (restart controllers): executables the web form may choose from (absolute paths); any other
# command is defined only in the catalog file. Programs run as COMMAND_USER when the worker is root.
COMMAND_ALLOWLIST: list[str] = env_list("HADR_COMMAND_ALLOWLIST")
for _program in COMMAND_ALLOWLIST:
    if (
        not _program.startswith("/")
        or _program != os.path.normpath(_program)
        or not _program.isprintable()
        or any(c.isspace() for c in _program)
    ):
        raise ImproperlyConfigured(
            f"HADR_COMMAND_ALLOWLIST: {_program!r} is not an absolute path to a program, e.g. "
            "/usr/local/bin/restart-web (comma-separated, no arguments: the form sets those)"
        )
COMMAND_USER = env("HADR_COMMAND_USER", "hadr-exec") or "hadr-exec"
if (
    COMMAND_USER == "root"
    or not COMMAND_USER.isascii()
    or COMMAND_USER.startswith("-")
    or not all(c.isalnum() or c in "-_." for c in COMMAND_USER)
):
    raise ImproperlyConfigured(
        f"HADR_COMMAND_USER={COMMAND_USER!r} must name an unprivileged system account, e.g. hadr-exec (not root)"
    )

# Sign-in: throttling and lockout (django-axes), two-factor (django-otp), step-up.
# A lockout holds one account name on one client address (the address core.operations.client_address gives):
# an attacker elsewhere cannot lock the owner out, and a locked address can still sign in to other accounts.
SIGNIN_FAILURE_LIMIT = env_int("HADR_SIGNIN_FAILURE_LIMIT", 5, minimum=1)  # wrong passwords before the lockout
SIGNIN_LOCKOUT_MINUTES = env_int("HADR_SIGNIN_LOCKOUT_MINUTES", 15, minimum=1)
AXES_FAILURE_LIMIT = SIGNIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = SIGNIN_LOCKOUT_MINUTES / 60  # hours, as a float (axes' unit)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False  # the wait is counted from the lockout, as its page says
AXES_ENABLE_ACCESS_FAILURE_LOG = True
AXES_ENABLE_ADMIN = False  # hadr_portal/accounts/admin.py shows the attempts to administrators only
AXES_CLIENT_IP_CALLABLE = "hadr_portal.core.operations.client_address"
AXES_LOCKOUT_CALLABLE = "hadr_portal.accounts.lockout.lockout_response"
AXES_HTTP_RESPONSE_CODE = 429
# Two-factor sign-in: required for administrators and the roles listed (those that can run destructive actions);
# offered to everyone else. Failover, replace-restore, restarts of tier-1 services and the catalog import ask for
# a fresh code when the last one is older than STEP_UP_MINUTES.
TWO_FACTOR_REQUIRED = env_bool("HADR_2FA_REQUIRED", True)
TWO_FACTOR_ROLES = env_list("HADR_2FA_ROLES", "DBA,DevOps")
STEP_UP_MINUTES = env_int("HADR_STEP_UP_MINUTES", 10, minimum=1)
OTP_TOTP_ISSUER = env("HADR_2FA_ISSUER", "HADR Portal") or "HADR Portal"  # the name authenticator apps show

# Database roles: which credentials each purpose uses (monitoring, reading, backups). They are set per cluster in
# the catalog (monitor_user, read_user, backup_user and their *_password_env), not here; DSNs named by checks and
# funnels are read only from HADR_DSN_* variables (core.validators.DSN_ENV_PREFIX).

# Input limits.
# Bodies of the push and API endpoints (heartbeat, host push, funnel counts): size (413 above it) and JSON nesting
# depth (400), both checked before the JSON is parsed; the token is checked before the body is read.
PUSH_MAX_BYTES = env_int("HADR_PUSH_MAX_BYTES", 64 * 1024, minimum=1024)
PUSH_MAX_DEPTH = env_int("HADR_PUSH_MAX_DEPTH", 10, minimum=3)
# Disks one host push may report: each becomes a /metrics series, so a host cannot invent thousands of them.
PUSH_MAX_DISKS = env_int("HADR_PUSH_MAX_DISKS", 32, minimum=1)

# Content-Security-Policy (django-csp) and Permissions-Policy.
# No inline script or style anywhere (scripts in static/js, styles in static/css); a script tag that must be
# inline carries request.csp_nonce. htmx is told not to inject its own <style> (base.html's htmx-config).
from csp.constants import NONCE, NONE, SELF  # noqa: E402 - beside the policy it builds

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "object-src": [NONE],
        "base-uri": [SELF],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
    }
}
# Browser features the portal never uses, off for every page (HardeningMiddleware sends it).
PERMISSIONS_POLICY: dict[str, list[str]] = {
    feature: []
    for feature in (
        "accelerometer",
        "camera",
        "display-capture",
        "geolocation",
        "gyroscope",
        "magnetometer",
        "microphone",
        "midi",
        "payment",
        "serial",
        "usb",
        "xr-spatial-tracking",
    )
}

# Outbound connections (HTTP/TCP checks, webhooks): link-local and metadata addresses are always refused;
# loopback and private networks only when allowed.
# Checked when a target is saved and again when connecting, against the addresses the name resolves to then.
ALLOW_PRIVATE_TARGETS = env_bool("HADR_ALLOW_PRIVATE_TARGETS", False)

# Secrets in logs, audit entries, exports and error pages: every log handler redacts (LOGGING's "redact" filter,
# gunicorn's --logger-class); Django's error reports go through the same redaction, the debug page included
# (HADR_DEBUG is for a developer's machine, never for production: the page shows code, settings and requests).
DEFAULT_EXCEPTION_REPORTER_FILTER = "hadr_portal.core.errorreports.RedactingExceptionReporterFilter"
DEFAULT_EXCEPTION_REPORTER = "hadr_portal.core.errorreports.RedactingExceptionReporter"
# Secrets read from *_FILE are not in the environment, where redaction finds the others: name them to it.
from hadr_portal.core.redaction import secret_values_add  # noqa: E402 - beside the values it is given

secret_values_add(
    SECRET_KEY, DATABASES["default"].get("PASSWORD"), EMAIL_HOST_PASSWORD, METRICS_TOKEN, RESTORE_POINT_TOKEN
)
