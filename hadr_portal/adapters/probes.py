"""Health-check probes for the check engine: HTTP(S), TCP, Redis, PostgreSQL and host metrics.

Every probe returns a ProbeResult and never raises: a failure is a `down` result whose message
is one line an operator can act on. Every probe is bounded by its timeout, even when the target
accepts a connection and then says nothing. A value above a warning threshold is degraded,
above a critical one is down (so a percentage threshold of 100 never trips).
"""

from __future__ import annotations

import functools
import math
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypedDict, Unpack

import httpx
import psutil
import psycopg
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import netguard
from .pg.connection import dsn_valid, without_dsn

UP, DEGRADED, DOWN = "up", "degraded", "down"
_SEVERITY = {UP: 0, DEGRADED: 1, DOWN: 2}

# How long past its timeout we keep waiting for a probe before declaring it timed out. Socket
# timeouts alone don't bound a probe: DNS lookups ignore them, libpq rounds its connect timeout up
# to 2 s, and a target trickling bytes restarts a read timeout with every chunk.
_GRACE_SECONDS = 0.5
# probe_host has no timeout of its own, but a hung network mount blocks disk_usage() forever.
_HOST_GRACE_SECONDS = 5.0


# Disks one host report may carry, and how a disk is named: its mount point (POSIX, or a Windows drive).
MAX_DISKS = 32
MOUNT_POINT_MAX_LENGTH = 255
MOUNT_POINT = re.compile(rf"(?:/[^\x00-\x1f\x7f]{{0,{MOUNT_POINT_MAX_LENGTH - 1}}}|[A-Za-z]:\\?)")


@dataclass(frozen=True)
class ProbeResult:
    """What one probe found: the outcome, why, how fast, and JSON-serialisable details."""

    outcome: str  # "up" | "degraded" | "down"
    message: str
    latency_ms: float | None = None
    data: dict[str, Any] = field(default_factory=dict)


def probe_http(
    *,
    url: str,
    timeout: float,
    expected_status: int = 200,
    keyword: str = "",
    max_body_bytes: int = 1_048_576,
    tls_warning_days: int = 14,
    verify_tls: bool = True,
    allow_private: bool = False,
) -> ProbeResult:
    """GET `url`; check the status, optionally a keyword in the first `max_body_bytes`, and for
    https the certificate's expiry. Redirects are not followed: a 302 is what the target said.
    The connection goes through the SSRF guard (netguard): loopback and private addresses only
    with `allow_private`, link-local and metadata addresses never."""

    def work() -> ProbeResult:
        parsed = httpx.URL(url)
        # Say what is wrong without echoing the URL: it may carry a password.
        if parsed.scheme not in ("http", "https"):
            return ProbeResult(DOWN, f"not an http(s) URL (scheme: {parsed.scheme or 'none'})")
        if not parsed.host:
            return ProbeResult(DOWN, "URL has no host name")
        deadline = time.monotonic() + timeout
        # Ask for the body as sent, so the byte cap counts what crosses the wire.
        headers = {"User-Agent": "hadr-portal-probe", "Accept-Encoding": "identity"}
        body, out_of_time = bytearray(), False
        with netguard.http_client(
            allow_private=allow_private, timeout=timeout, verify=_tls_context(verify_tls), headers=headers
        ) as client:
            started = time.monotonic()
            with client.stream("GET", parsed) as response:
                latency_ms = _ms_since(started)
                data: dict[str, Any] = {"status_code": response.status_code}
                tls = _check_certificate(response, tls_warning_days, data) if parsed.scheme == "https" else None
                # httpx's timeouts apply per read: a target trickling bytes would never trip them.
                for chunk in response.iter_bytes():
                    body += chunk
                    out_of_time = time.monotonic() > deadline
                    if len(body) > max_body_bytes or out_of_time:
                        break
        cut = len(body) > max_body_bytes
        data["body_bytes"], data["body_truncated"] = min(len(body), max_body_bytes), cut
        if out_of_time and not cut:
            return ProbeResult(DOWN, f"timed out after {timeout:.1f} s reading the body", latency_ms, data)
        if response.status_code == expected_status:
            checks = [(UP, f"HTTP {response.status_code} in {latency_ms:.0f} ms")]
        else:
            checks = [(DOWN, f"HTTP {response.status_code} (expected {expected_status})")]
        if keyword and keyword.encode() not in body[:max_body_bytes]:
            where = f" (first {format_bytes(max_body_bytes)})" if cut else ""
            checks.append((DOWN, f"keyword {keyword!r} not found in body{where}"))
        if tls:
            checks.append(tls)
        if cut:
            data["body_note"] = f"body cut at {format_bytes(max_body_bytes)}"
            checks.append((UP, data["body_note"]))
        return _result(checks, latency_ms, data)

    return _guarded(timeout, work)


def probe_tcp(*, host: str, port: int, timeout: float, allow_private: bool = False) -> ProbeResult:
    """Open a TCP connection and close it again, through the SSRF guard (as `probe_http`)."""

    def work() -> ProbeResult:
        if not 0 < port < 65536:  # getaddrinfo would quietly wrap 70000 round to 4464
            return ProbeResult(DOWN, f"invalid port {port}")
        started = time.monotonic()
        with netguard.connect(host, port, timeout=timeout, allow_private=allow_private):
            latency_ms = _ms_since(started)
        return ProbeResult(UP, f"connected in {latency_ms:.0f} ms", latency_ms, {"host": host, "port": port})

    return _guarded(timeout, work)


def probe_redis(*, url: str, timeout: float) -> ProbeResult:
    """PING, then read version, memory and clients from INFO."""

    def work() -> ProbeResult:
        # redis-py retries three times by default; a probe wants one honest attempt.
        client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )
        try:
            started = time.monotonic()
            client.ping()
            latency_ms = _ms_since(started)
            info = client.info()
        finally:
            client.close()
        data: dict[str, Any] = {
            "redis_version": str(info.get("redis_version", "")),
            "role": str(info.get("role", "")),
            "used_memory": int(info.get("used_memory", 0)),
            "connected_clients": int(info.get("connected_clients", 0)),
        }
        message = (
            f"PONG in {latency_ms:.0f} ms · Redis {data['redis_version']} ({data['role']})"
            f" · {format_bytes(data['used_memory'])} used · {data['connected_clients']} clients"
        )
        return ProbeResult(UP, message, latency_ms, data)

    return _guarded(timeout, work)


def probe_postgres(
    *,
    conninfo: str,
    timeout: float,
    lag_warning_bytes: int = 16 * 1024 * 1024,
    lag_critical_bytes: int = 256 * 1024 * 1024,
    connections_warning_pct: int = 80,
    connections_critical_pct: int = 95,
    expected_replicas: int = 0,
) -> ProbeResult:
    """Role, connection use and replication health of one node.

    On a primary, `lag_bytes` in data is the largest replay lag among its replicas; on a
    replica it is received minus replayed WAL. `user` and `superuser` say which role the probe
    connected as. The message never carries the conninfo or its password.
    """
    if not dsn_valid(conninfo):
        return ProbeResult(DOWN, "not a valid PostgreSQL DSN (postgresql://… or key=value pairs)")

    def work() -> ProbeResult:
        started = time.monotonic()
        with psycopg.connect(
            conninfo,
            autocommit=True,
            connect_timeout=max(1, math.ceil(timeout)),
            application_name="hadr-portal-probe",
            options=f"-c statement_timeout={max(1, int(timeout * 1000))}",
        ) as conn:
            in_recovery, version, used, maximum, user, superuser = _one(
                conn,
                "SELECT pg_is_in_recovery(), current_setting('server_version'),"
                " (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'),"
                " current_setting('max_connections')::int, current_user::text,"
                " current_setting('is_superuser') = 'on'",
            )
            latency_ms = _ms_since(started)
            data: dict[str, Any] = {
                "role": "replica" if in_recovery else "primary",
                "server_version": version,
                "connections": used,
                "max_connections": maximum,
                "user": user,
                "superuser": superuser,
            }
            checks = _replica_checks(conn, data) if in_recovery else _primary_checks(conn, data, expected_replicas)
        if data["lag_bytes"] is not None:
            level = _level(data["lag_bytes"], lag_warning_bytes, lag_critical_bytes)
            checks.append((level, f"lag {format_bytes(data['lag_bytes'])}"))
        level = _level(100 * used / max(maximum, 1), connections_warning_pct, connections_critical_pct)
        checks.append((level, f"{used}/{maximum} connections"))
        return _result(checks, latency_ms, data)

    result = _guarded(timeout, work)
    if result.outcome == UP:  # a message built above from figures; only an error's text may quote the DSN
        return result
    return replace(result, message=without_dsn(result.message, conninfo))


def _primary_checks(conn: psycopg.Connection[Any], data: dict[str, Any], expected: int) -> list[tuple[str, str]]:
    data["lsn"] = _one(conn, "SELECT pg_current_wal_lsn()::text")[0]
    data["replicas"] = _rows(
        conn,
        "SELECT r.application_name, host(r.client_addr) AS client_addr, r.state, r.sync_state,"
        " r.sent_lsn::text, r.flush_lsn::text, r.replay_lsn::text,"
        " pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn)::bigint AS lag_bytes,"
        " coalesce(extract(epoch FROM r.replay_lag), 0)::float8 AS lag_seconds, s.slot_name"
        " FROM pg_stat_replication r LEFT JOIN pg_replication_slots s ON s.active_pid = r.pid"
        " ORDER BY r.application_name",
    )
    data["replication_slots"] = _rows(
        conn,
        "SELECT slot_name, active, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint AS retained_bytes"
        " FROM pg_replication_slots ORDER BY slot_name",
    )
    lags = [row["lag_bytes"] for row in data["replicas"] if row["lag_bytes"] is not None]
    data["lag_bytes"] = max(lags) if lags else None
    streaming = sum(1 for row in data["replicas"] if row["state"] == "streaming")
    if streaming < expected:
        got = "no replica" if streaming == 0 else f"{streaming} of {expected} replicas"
        return [(UP, "primary"), (DEGRADED, f"{got} streaming (expected {expected})")]
    return [(UP, "primary"), (UP, f"{streaming} replica{'' if streaming == 1 else 's'} streaming")]


def _replica_checks(conn: psycopg.Connection[Any], data: dict[str, Any]) -> list[tuple[str, str]]:
    # An idle primary sends no transactions, so "now - last replayed commit" grows without any
    # lag: count seconds only while something received is still waiting to be replayed.
    data["lsn"], data["receive_lsn"], data["lag_bytes"], data["lag_seconds"], data["streaming"] = _one(
        conn,
        "SELECT pg_last_wal_replay_lsn()::text, pg_last_wal_receive_lsn()::text,"
        " pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint,"
        " CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0"
        "  ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) END::float8,"
        " EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')",
    )
    if not data["streaming"]:
        return [(DEGRADED, "replica not streaming from its primary"), (UP, "replica")]
    return [(UP, "replica"), (UP, "streaming")]


class HostThresholds(TypedDict, total=False):
    """The percentages `evaluate_host` judges a host by; one left out keeps its default."""

    cpu_warning: float
    cpu_critical: float
    memory_warning: float
    memory_critical: float
    disk_warning: float
    disk_critical: float


def probe_host(
    *, disk_paths: Sequence[str] = ("/",), sample_seconds: float = 0.5, **limits: Unpack[HostThresholds]
) -> ProbeResult:
    """CPU (sampled over `sample_seconds`), memory and disk use of the machine we run on, judged by
    `evaluate_host` with its thresholds (`cpu_warning`, `disk_critical`, ...)."""

    def work() -> ProbeResult:
        values = {
            "cpu": psutil.cpu_percent(interval=max(sample_seconds, 0.1)),
            "memory": psutil.virtual_memory().percent,
            "disks": {path: psutil.disk_usage(path).percent for path in disk_paths},
        }
        result = evaluate_host(values, **limits)
        extra = {"load": [round(x, 2) for x in psutil.getloadavg()], "hostname": socket.gethostname()}
        return replace(result, data={**result.data, **extra})

    return _guarded(sample_seconds + _HOST_GRACE_SECONDS, work)


def evaluate_host(
    values: Mapping[str, Any],
    *,
    cpu_warning: float = 85,
    cpu_critical: float = 95,
    memory_warning: float = 85,
    memory_critical: float = 95,
    disk_warning: float = 85,
    disk_critical: float = 95,
    max_disks: int = MAX_DISKS,
) -> ProbeResult:
    """Apply host thresholds to `{"cpu": 12.5, "memory": 40, "disks": {"/": 71.2}}`, measured here
    or pushed by another host. Raises ValueError naming the field when a value is not 0–100, when there
    are more than `max_disks` disks (each one is a series on /metrics), or when a disk is not named by
    its mount point (an absolute path, or a drive like C:\\, of printable characters, at most 255)."""
    if not isinstance(values, Mapping):
        raise ValueError('host values must be an object like {"cpu": 12.5, "memory": 40}')
    disks = values.get("disks", {})
    if not isinstance(disks, Mapping):
        raise ValueError("disks must be an object mapping mount paths to percentages")
    if len(disks) > max_disks:
        raise ValueError(f"disks: {len(disks)} given, at most {max_disks} are accepted (HADR_PUSH_MAX_DISKS)")
    for path in disks:
        if not isinstance(path, str) or not MOUNT_POINT.fullmatch(path):
            shown = repr(path) if len(repr(path)) <= 60 else repr(path)[:57] + "..."
            raise ValueError(
                f"disks: {shown} is not a mount point; give absolute paths like /var/lib/postgresql "
                f"(at most {MOUNT_POINT_MAX_LENGTH} printable characters)"
            )
    metrics = [
        ("cpu", "cpu", values.get("cpu"), cpu_warning, cpu_critical),
        ("memory", "memory", values.get("memory"), memory_warning, memory_critical),
        *((f"disks[{path!r}]", f"disk {path}", used, disk_warning, disk_critical) for path, used in disks.items()),
    ]
    checks = []
    for name, label, value, warning, critical in metrics:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
            raise ValueError(f"{name} must be a number from 0 to 100, got {value!r}")
        level = _level(value, warning, critical)
        limit = {UP: "", DEGRADED: f" (warning {warning:g} %)", DOWN: f" (critical {critical:g} %)"}[level]
        checks.append((level, f"{label} {value:.0f} %{limit}"))
    data = {
        "cpu": float(values["cpu"]),
        "memory": float(values["memory"]),
        "disks": {str(path): float(used) for path, used in disks.items()},
    }
    return _result(checks, None, data)


def format_bytes(count: float) -> str:
    """1048576 → "1 MiB", 1536 → "1.5 KiB", 0 → "0 B"."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.1f}".removesuffix(".0") + f" {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def certificate_not_after(der: bytes) -> datetime:
    """The notAfter date of a DER-encoded X.509 certificate.

    The stdlib decodes only certificates it has verified, and we want the date of self-signed
    ones too (verify_tls=False), so walk the few DER fields in front of it: Certificate →
    TBSCertificate → [0] version, serialNumber, signature, issuer, validity → notBefore, notAfter.
    """

    def element(pos: int) -> tuple[int, int, int]:  # (tag, content start, content end)
        tag, length, pos = der[pos], der[pos + 1], pos + 2
        if length & 0x80:  # long form: the low bits say how many length bytes follow
            size = length & 0x7F
            length, pos = int.from_bytes(der[pos : pos + size], "big"), pos + size
        return tag, pos, pos + length

    _, tbs, _ = element(0)
    _, pos, _ = element(tbs)
    tag, _, end = element(pos)
    pos = end if tag == 0xA0 else pos
    for _ in range(3):  # serialNumber, signature, issuer
        pos = element(pos)[2]
    _, validity, _ = element(pos)
    tag, start, end = element(element(validity)[2])
    text = der[start:end].decode("ascii")
    return datetime.strptime(text, "%y%m%d%H%M%SZ" if tag == 0x17 else "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)


def _check_certificate(response: httpx.Response, warning_days: int, data: dict[str, Any]) -> tuple[str, str]:
    """Read the certificate from the connection the response came on: no second handshake."""
    try:
        ssl_object = response.extensions["network_stream"].get_extra_info("ssl_object")
        expires = certificate_not_after(ssl_object.getpeercert(True))
    except Exception as exc:  # the page answered; an unreadable certificate is worth a look, not an alarm
        data["tls_error"] = _describe(exc, 0)
        return DEGRADED, f"could not read the TLS certificate's expiry ({data['tls_error']})"
    days_left = (expires - datetime.now(UTC)).days
    data["tls_expires_at"], data["tls_days_left"] = expires.isoformat(), days_left
    if expires <= datetime.now(UTC):
        return DOWN, f"TLS certificate expired on {expires:%Y-%m-%d}"
    if days_left < warning_days:
        return DEGRADED, f"TLS certificate expires in {days_left} days ({expires:%Y-%m-%d})"
    return UP, f"TLS certificate valid for {days_left} days"


@functools.cache
def _tls_context(verify: bool) -> ssl.SSLContext:
    """Built once per process: loading the CA bundle costs ~20 ms of CPU, too much for every probe."""
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _guarded(timeout: float, work: Callable[[], ProbeResult]) -> ProbeResult:
    """Run `work` so that it never raises and we wait at most `timeout` (plus a little grace).

    The work runs in a daemon thread; if it overruns we stop waiting and report a timeout. The
    thread then ends on its own when its own socket timeouts fire.
    """
    try:
        limit = max(float(timeout), 0.0)
    except (TypeError, ValueError):
        return ProbeResult(DOWN, f"invalid timeout {timeout!r}")
    results: list[ProbeResult] = []

    def run() -> None:
        try:
            results.append(work())
        except Exception as exc:  # a probe reports failures, it never raises them
            results.append(ProbeResult(DOWN, _describe(exc, limit)))

    thread = threading.Thread(target=run, name="probe", daemon=True)
    thread.start()
    thread.join(limit + _GRACE_SECONDS)
    return results[0] if results else ProbeResult(DOWN, f"timed out after {limit:.1f} s", data={"timed_out": True})


def _describe(exc: BaseException, timeout: float) -> str:
    """One line for an operator: the root cause, without driver boilerplate."""
    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    for cause in chain:
        if isinstance(cause, netguard.TargetRefused):
            return str(cause)
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return f"cannot resolve host name ({cause.strerror})"
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS certificate rejected: {cause.verify_message}"
        if isinstance(cause, TimeoutError | httpx.TimeoutException | redis.TimeoutError):
            return f"timed out after {timeout:.1f} s"
        if isinstance(cause, httpx.InvalidURL | httpx.UnsupportedProtocol):
            return f"invalid URL: {cause}"
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    if "connection refused" in text.lower():
        return "connection refused"
    if isinstance(exc, psycopg.errors.ConnectionTimeout):
        return f"timed out after {timeout:.1f} s"
    return text[:200]


def _result(checks: list[tuple[str, str]], latency_ms: float | None, data: dict[str, Any]) -> ProbeResult:
    """The worst check decides the outcome; the message lists checks worst first."""
    ordered = sorted(checks, key=lambda check: -_SEVERITY[check[0]])
    outcome = ordered[0][0] if ordered else UP
    return ProbeResult(outcome, " · ".join(text for _, text in ordered), latency_ms, data)


def _level(value: float, warning: float, critical: float) -> str:
    return DOWN if value > critical else DEGRADED if value > warning else UP


def _one(conn: psycopg.Connection[Any], sql: str) -> tuple[Any, ...]:
    row = conn.execute(sql).fetchone()
    assert row is not None  # these queries always return one row
    return tuple(row)


def _rows(conn: psycopg.Connection[Any], sql: str) -> list[dict[str, Any]]:
    cursor = conn.execute(sql)
    columns = [column.name for column in cursor.description or []]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def _ms_since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)
