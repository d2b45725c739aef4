"""Demo "onboarding" application that the HADR Portal watches.

A small but real HTTP service that streams simulated user sign-ups into
PostgreSQL, so the portal has a live workload to watch, back up, restore,
restart and fail over. Run it from the project root::

    ONBOARDING_DSN="host=127.0.0.1,127.0.0.1 port=5441,5442 dbname=onboarding \
user=onboarding password=secret target_session_attrs=read-write connect_timeout=3" \
    .venv/bin/python -m demo.onboarding

Environment variables:
    ONBOARDING_DSN   required; libpq connection string (key=value or URI). List
                     several hosts with target_session_attrs=read-write so that
                     libpq always picks the current primary.
    ONBOARDING_HOST  HTTP bind address (default 127.0.0.1).
    ONBOARDING_PORT  HTTP port (default 8001).
    ONBOARDING_RATE  simulated sign-ups per second, float >= 0 (default 2.0).
    ONBOARDING_SEED  optional seed for the simulation's random numbers.
A missing or invalid variable makes the process exit with status 2.

Endpoints: ``GET /`` (text), ``GET /health`` (JSON, 200 or 503) and
``GET /stats`` (JSON, last 24 h funnel). Logs are JSON lines on stdout.
SIGTERM/SIGINT stop the process cleanly with exit status 0.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import logging
import math
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from random import Random
from typing import Any, TypeVar
from urllib.parse import urlsplit

import psycopg
from psycopg import conninfo
from pythonjsonlogger.json import JsonFormatter
from tenacity import RetryCallState, RetryError, Retrying, stop_when_event_set, wait_exponential, wait_random

log = logging.getLogger("onboarding")
N = TypeVar("N", int, float)

STEPS = ("signed_up", "email_verified", "profile_completed", "first_project_created")
# step -> (next step, probability of reaching it, (min, max) delay in seconds).
# The delay makes the funnel arrive as a stream instead of atomic bursts.
NEXT_STEP: dict[str, tuple[str, float, tuple[float, float]]] = {
    "signed_up": ("email_verified", 0.70, (2.0, 8.0)),
    "email_verified": ("profile_completed", 0.60, (2.0, 10.0)),
    "profile_completed": ("first_project_created", 0.45, (3.0, 15.0)),
}
FRESH_WRITE_S = 10.0  # /health trusts a write this recent without probing the DB
STALE_EVENT_S = 1.0  # an event this overdue is dropped, never replayed late
MAX_PENDING = 10_000  # hard bound on queued follow-up steps: no unbounded buffering
SCHEMA_LOCK_KEY = 7_164_010  # any constant; shared by every instance of this app

SCHEMA_SQL = (
    """CREATE TABLE IF NOT EXISTS app_users (
        id bigserial PRIMARY KEY,
        email text UNIQUE NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now())""",
    """CREATE TABLE IF NOT EXISTS onboarding_events (
        id bigserial PRIMARY KEY,
        user_id bigint NOT NULL REFERENCES app_users (id),
        step text NOT NULL CHECK (step IN
            ('signed_up', 'email_verified', 'profile_completed', 'first_project_created')),
        created_at timestamptz NOT NULL DEFAULT now())""",
    "CREATE INDEX IF NOT EXISTS onboarding_events_created_at_idx ON onboarding_events (created_at)",
    "CREATE INDEX IF NOT EXISTS onboarding_events_step_created_at_idx ON onboarding_events (step, created_at)",
)
STATS_SQL = "SELECT step, count(*) FROM onboarding_events WHERE created_at >= now() - interval '24 hours' GROUP BY step"
INDEX_TEXT = """HADR Portal demo: onboarding service
Simulates user sign-ups and onboarding steps, written to PostgreSQL.

  /health  liveness and database status (JSON; 503 when the DB is unreachable)
  /stats   onboarding funnel for the last 24 hours (JSON)
"""


class ConfigError(Exception):
    """A missing or invalid environment variable; the message names it."""


def _number(env: Mapping[str, str], name: str, default: str, parse: Callable[[str], N], hint: str) -> N:
    """Read a non-negative number (a port is also capped), naming `name` on error."""
    raw = env.get(name, default)
    try:
        value = parse(raw)
    except ValueError:
        value = None
    limit = 65535 if parse is int else sys.float_info.max  # also rejects inf and nan
    if value is None or not 0 <= value <= limit:
        raise ConfigError(f"{name} must be {hint}, got {raw!r}")
    return value


@dataclass(frozen=True)
class Config:
    """Settings read from ONBOARDING_* environment variables."""

    dsn: str
    host: str
    port: int
    rate: float
    seed: str | None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Config:
        """Parse and validate the environment, raising ConfigError on bad input."""
        dsn = env.get("ONBOARDING_DSN", "").strip()
        if not dsn:
            raise ConfigError("ONBOARDING_DSN is required (a libpq connection string)")
        try:
            params = conninfo.conninfo_to_dict(dsn)
        except psycopg.ProgrammingError as exc:
            raise ConfigError(f"ONBOARDING_DSN is invalid: {exc}") from None
        # Without a connect timeout a silent host would stall reconnects (and shutdown).
        params.setdefault("connect_timeout", "3")
        return cls(
            dsn=conninfo.make_conninfo("", **params),
            host=env.get("ONBOARDING_HOST", "127.0.0.1"),
            port=_number(env, "ONBOARDING_PORT", "8001", int, "an integer 0-65535"),
            rate=_number(env, "ONBOARDING_RATE", "2.0", float, "a number >= 0"),
            seed=env.get("ONBOARDING_SEED"),
        )


def describe(exc: BaseException) -> str:
    """One-line reason for an exception (libpq messages span several lines)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def utc_now() -> str:
    """Current time as an ISO 8601 UTC string."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class OnboardingApp:
    """The simulated workload (writer thread) plus the state the HTTP side reports.

    Only the writer thread touches the connection, the RNG and the event schedule;
    the counters and connection info are shared with HTTP threads under a lock.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.stop = threading.Event()
        self._started = time.monotonic()
        self._rng = Random(config.seed)
        self._conn: psycopg.Connection | None = None
        self._next_signup = time.monotonic() if config.rate > 0 else math.inf
        self._pending: list[tuple[float, int, int, str]] = []  # due, seq, user, step
        self._seq = 0
        self._lock = threading.Lock()
        self._written = self._dropped = 0
        self._last_write_at: str | None = None
        self._last_write_mono = -math.inf
        self._db_info: dict[str, Any] | None = None  # host/port/version while up
        self._error = "not connected yet"

    # --- writer thread -------------------------------------------------------

    def run_writer(self) -> None:
        """Emit sign-ups and their follow-up steps until asked to stop."""
        while not self.stop.is_set():
            if self._conn is None:
                self._conn = self._connect_forever()
                if self._conn is None:
                    break  # stopping
            now = time.monotonic()
            if event := self._pop_due(now):
                self._emit(now, *event)
            else:
                self.stop.wait(min(self._next_due() - now, 1.0))
        if self._conn is not None:
            self._conn.close()
        log.info("writer stopped")

    def _next_due(self) -> float:
        return min(self._next_signup, self._pending[0][0] if self._pending else math.inf)

    def _pop_due(self, now: float) -> tuple[float, int | None, str] | None:
        """Take the next event that is due by `now`: (due time, user id, step)."""
        if self._next_signup <= now:
            due = self._next_signup
            # Exponential gaps give Poisson arrivals: a realistic, uneven stream.
            self._next_signup += self._rng.expovariate(self.config.rate)
            return due, None, "signed_up"
        if self._pending and self._pending[0][0] <= now:
            due, _, user_id, step = heapq.heappop(self._pending)
            return due, user_id, step
        return None

    def _wait_dropping(self, seconds: float) -> None:
        """tenacity's sleep while the DB is down: events falling due are dropped."""
        deadline = time.monotonic() + seconds
        while not self.stop.is_set() and (now := time.monotonic()) < deadline:
            if self._pop_due(now):
                self._count(dropped=1)  # counted live, so /health shows the loss
            else:
                self.stop.wait(min(deadline, self._next_due()) - now)

    def _connect_forever(self) -> psycopg.Connection | None:
        """Retry _open with capped exponential backoff; None only when stopping."""
        retrying = Retrying(
            # ~0.5, 1, 2, 4, then 4.5 s plus jitter so several instances don't stampede.
            wait=wait_exponential(multiplier=0.5, max=4.5) + wait_random(0, 0.5),
            stop=stop_when_event_set(self.stop),
            sleep=self._wait_dropping,
            before_sleep=self._log_retry,
        )
        try:
            conn = retrying(self._open)
        except RetryError:
            return None  # only reached once stop is set
        version = conn.info.parameter_status("server_version")
        info = {"host": conn.info.host, "port": conn.info.port, "server_version": version}
        with self._lock:
            self._db_info, self._error = info, ""
        attempt = retrying.statistics.get("attempt_number")
        log.info("database connected", extra={**info, "attempt": attempt})
        return conn

    def _open(self) -> psycopg.Connection:
        """Connect to the primary and create the schema if it is missing."""
        conn = psycopg.connect(self.config.dsn, autocommit=True)
        try:
            # The transaction-scoped advisory lock serialises concurrent starters:
            # CREATE ... IF NOT EXISTS alone can still race on the catalog.
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
                for statement in SCHEMA_SQL:
                    conn.execute(statement)
        except BaseException:
            conn.close()
            raise
        return conn

    def _log_retry(self, state: RetryCallState) -> None:
        """tenacity hook: record and log each failed connection attempt."""
        exc = state.outcome.exception() if state.outcome else None
        error = describe(exc) if exc else "unknown error"
        self._set_down(error)
        wait = round(state.next_action.sleep if state.next_action else 0.0, 2)
        log.warning(
            "database connect failed, retrying",
            extra={"attempt": state.attempt_number, "error": error, "retry_in_s": wait},
        )

    def _emit(self, now: float, due: float, user_id: int | None, step: str) -> None:
        """Write one event (a sign-up creates its user); maybe schedule the next."""
        if now - due > STALE_EVENT_S:
            # It fell due during a (re)connect attempt: drop it rather than replay.
            self._count(dropped=1)
            return
        try:
            user_id = self._write(user_id, step)
        except psycopg.IntegrityError as exc:
            # E.g. the user vanished in a restore or a lossy failover: skip this event.
            log.warning("event rejected", extra={"step": step, "error": describe(exc)})
            self._count(dropped=1)
            return
        except Exception as exc:  # the writer must outlive any failure
            # Refused, closed, admin shutdown, read-only after failover, table gone
            # after a restore...: a fresh connection (which re-selects the primary
            # and re-checks the schema) is the cure in every case.
            self._count(dropped=1)
            self._set_down(describe(exc))
            log.error("database write failed, reconnecting", extra={"error": describe(exc)})
            with contextlib.suppress(Exception):
                self._conn.close()  # type: ignore[union-attr]
            self._conn = None
            return
        self._count(written=1)
        self._schedule_next(user_id, step, now)

    def _write(self, user_id: int | None, step: str) -> int:
        """Insert the event (and for a sign-up its user) in one transaction."""
        conn = self._conn
        assert conn is not None
        with conn.transaction():
            if user_id is None:
                # uuid4, not the seeded RNG: a restart with the same seed must not
                # collide with the e-mail addresses of the previous run.
                email = f"user-{uuid.uuid4().hex[:16]}@example.test"
                sql = "INSERT INTO app_users (email) VALUES (%s) RETURNING id"
                user_id = int(conn.execute(sql, (email,)).fetchone()[0])  # type: ignore[index]
            sql = "INSERT INTO onboarding_events (user_id, step) VALUES (%s, %s)"
            conn.execute(sql, (user_id, step))
        return user_id

    def _schedule_next(self, user_id: int, step: str, now: float) -> None:
        """With the funnel's probability, queue the user's next step a bit later."""
        if step not in NEXT_STEP:
            return
        next_step, probability, (low, high) = NEXT_STEP[step]
        if self._rng.random() >= probability:
            return  # the user drops off here
        if len(self._pending) >= MAX_PENDING:
            self._count(dropped=1)
            return
        self._seq += 1  # tie-breaker so the heap never compares further
        due = now + self._rng.uniform(low, high)
        heapq.heappush(self._pending, (due, self._seq, user_id, next_step))

    def _count(self, written: int = 0, dropped: int = 0) -> None:
        with self._lock:
            self._written += written
            self._dropped += dropped
            if written:
                self._last_write_at, self._last_write_mono = utc_now(), time.monotonic()

    def _set_down(self, error: str) -> None:
        with self._lock:
            self._db_info, self._error = None, error

    # --- HTTP side -----------------------------------------------------------

    def health(self) -> tuple[int, dict[str, Any]]:
        """Status for GET /health: 200 when the DB is reachable, else 503."""
        with self._lock:
            info, error = self._db_info, self._error
            fresh = time.monotonic() - self._last_write_mono < FRESH_WRITE_S
            written, dropped, last_write_at = self._written, self._dropped, self._last_write_at
        if info is not None and not fresh:
            # Quiet writer (low rate, just connected): its connection may be stale, so
            # confirm with a probe of our own and report the node that answered.
            try:
                with psycopg.connect(self.config.dsn, autocommit=True) as conn:
                    conn.execute("SELECT 1")
                    info = {**info, "host": conn.info.host, "port": conn.info.port}
            except psycopg.Error as exc:
                info, error = None, describe(exc)
        body: dict[str, Any] = {
            "status": "ok" if info else "degraded",
            "database": {"connected": info is not None, **(info or dict.fromkeys(("host", "port", "server_version")))},
            "events_written": written,
            "events_dropped": dropped,
            "last_write_at": last_write_at,
            "uptime_s": round(time.monotonic() - self._started, 1),
        }
        if info is None:
            body["error"] = error
        return (200 if info else 503), body

    def stats(self) -> tuple[int, dict[str, Any]]:
        """GET /stats: events per step in the last 24 h and conversion rates."""
        try:
            # A short-lived connection keeps readers fully independent of the writer.
            with psycopg.connect(self.config.dsn, autocommit=True) as conn:
                counts: dict[str, int] = dict(conn.execute(STATS_SQL).fetchall())
                source = {"host": conn.info.host, "port": conn.info.port}
        except psycopg.Error as exc:
            return 503, {"status": "degraded", "error": describe(exc)}

        def ratio(part: int, whole: int | None) -> float | None:
            return round(part / whole, 4) if whole else None

        steps, previous = [], None
        for step in STEPS:
            count = counts.get(step, 0)
            steps.append(
                {
                    "step": step,
                    "count": count,
                    "conversion_from_previous": ratio(count, previous),
                    "conversion_from_signup": ratio(count, counts.get("signed_up")),
                }
            )
            previous = count
        return 200, {"window_hours": 24, "generated_at": utc_now(), "database": source, "steps": steps}


class Handler(BaseHTTPRequestHandler):
    """Routes GET /, /health and /stats; other paths get 404, other methods 405."""

    server: OnboardingServer
    server_version = "onboarding-demo/1.0"

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/":
            self._reply(200, INDEX_TEXT)
        elif path in ("/health", "/stats"):
            app = self.server.app
            self._reply(*(app.health() if path == "/health" else app.stats()))
        else:
            self._reply(404, {"error": "not found", "path": path})

    def _not_allowed(self) -> None:
        self._reply(405, {"error": "method not allowed", "allow": "GET"})

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _not_allowed

    def _reply(self, status: int, body: dict[str, Any] | str) -> None:
        """Send a JSON object, or plain text for a str body."""
        if isinstance(body, str):
            data, ctype = body.encode(), "text/plain; charset=utf-8"
        else:
            data, ctype = json.dumps(body).encode() + b"\n", "application/json"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        if status == 405:
            self.send_header("Allow", "GET")
        self.end_headers()
        if self.command != "HEAD":  # a HEAD response must not carry a body
            self.wfile.write(data)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Replace the default stderr access log with a JSON log line."""
        status = getattr(code, "value", code)
        extra = {"method": self.command, "path": self.path, "status": status}
        log.info("http request", extra=extra)

    def log_message(self, format: str, *args: Any) -> None:
        """Route the base class's error messages to the JSON log too."""
        log.warning("http: " + format % args, extra={"client": self.client_address[0]})


class OnboardingServer(ThreadingHTTPServer):
    """Threading HTTP server that carries a reference to the app for its handlers."""

    def __init__(self, address: tuple[str, int], app: OnboardingApp) -> None:
        super().__init__(address, Handler)
        self.app = app


def setup_logging() -> None:
    """Send every log record to stdout as one JSON object per line."""
    handler = logging.StreamHandler(sys.stdout)
    fields, rename = "{levelname}{name}{message}", {"levelname": "level"}
    formatter = JsonFormatter(fields, style="{", rename_fields=rename, timestamp="time")
    handler.setFormatter(formatter)
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)


def main() -> int:
    """Entry point: serve HTTP at once, write in the background, stop on a signal."""
    setup_logging()
    try:
        config = Config.from_env()
    except ConfigError as exc:
        print(f"onboarding: {exc}", file=sys.stderr)
        return 2
    app = OnboardingApp(config)
    try:
        server = OnboardingServer((config.host, config.port), app)
    except OSError as exc:
        log.error("cannot start HTTP server", extra={"error": describe(exc)})
        return 1

    def request_stop(signum: int, _frame: object) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        app.stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    # serve_forever runs in a thread so the main thread stays free for signals and
    # can call server.shutdown() (which deadlocks if called from the serving thread).
    http = threading.Thread(target=server.serve_forever, args=(0.2,), daemon=True)
    writer = threading.Thread(target=app.run_writer, name="writer", daemon=True)
    http.start()
    writer.start()
    host, port = server.server_address[:2]
    log.info("listening", extra={"host": host, "port": port, "rate": config.rate})
    while not app.stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    # The writer may sit in a connect attempt; it is a daemon, so don't wait past ~2 s.
    writer.join(timeout=1.5)
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
