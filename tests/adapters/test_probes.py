"""Health-check probes against real targets: local HTTP(S) servers, sockets, the suite's Redis,
PostgreSQL primary and streaming replica, and this machine."""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hadr_portal.adapters import probes
from hadr_portal.adapters.pg.server import LocalInstance
from hadr_portal.adapters.probes import (
    ProbeResult,
    evaluate_host,
    format_bytes,
    probe_host,
    probe_postgres,
    probe_redis,
)
from hadr_portal.adapters.probes.http import certificate_not_after
from hadr_portal.demo.cluster import make_replica
from hadr_portal.demo.redis_server import LocalRedis
from tests.infra.plugin import Infrastructure, free_port


# Every target here is on loopback, which the SSRF guard allows only when told to (tests/security/test_ssrf.py).
def probe_http(**kwargs: Any) -> ProbeResult:
    return probes.probe_http(allow_private=True, **kwargs)


def probe_tcp(**kwargs: Any) -> ProbeResult:
    return probes.probe_tcp(allow_private=True, **kwargs)


# --- local HTTP(S) targets -------------------------------------------------------------------


class Target(BaseHTTPRequestHandler):
    """One small web server with a path per behaviour the probes must cope with."""

    server: TargetServer

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        if self.path == "/ok":
            self.reply(200, b"<html>all systems ok</html>")
        elif self.path == "/fail":
            self.reply(503, b"maintenance")
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/ok")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/hang":  # accepts, reads the request, never answers (until teardown)
            self.server.release.wait(30)
        elif self.path == "/flood":  # an endless body, no Content-Length: cut it off or drown
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"needle")
            try:
                while not self.server.release.is_set():
                    self.wfile.write(b"x" * 65536)
                    self.server.flood_sent += 65536
            except OSError:
                pass  # the probe hung up, as it should
        elif self.path == "/trickle":  # headers at once, then a byte every 0.2 s: never a read timeout
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                while not self.server.release.wait(0.2):
                    self.wfile.write(b"x")
            except OSError:
                pass
        else:
            self.reply(404, b"no such page")

    def reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class TargetServer(ThreadingHTTPServer):
    daemon_threads = True
    release: threading.Event
    flood_sent: int = 0


@contextmanager
def serve(tls: ssl.SSLContext | None = None) -> Iterator[str]:
    """Run Target on a free loopback port; yields its base URL."""
    server = TargetServer(("127.0.0.1", 0), Target)
    server.release = threading.Event()
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_port}"
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    with serve() as url:
        yield url


def make_certificate(directory: Path, not_before: dt.datetime, not_after: dt.datetime) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1; returns (certificate, key) PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hadr-probe-test")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@contextmanager
def serve_tls(directory: Path, *, days_left: float) -> Iterator[str]:
    now = dt.datetime.now(dt.UTC)
    cert, key = make_certificate(directory, now - dt.timedelta(days=30), now + dt.timedelta(days=days_left))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with serve(context) as url:
        yield url


@contextmanager
def silent_listener() -> Iterator[int]:
    """A port whose kernel completes the TCP handshake but where nobody ever reads or writes."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def timed(call: Callable[..., ProbeResult], **kwargs: Any) -> tuple[ProbeResult, float]:
    """Run a probe; return its result and the seconds it took (printed for `pytest -s`)."""
    started = time.monotonic()
    result = call(**kwargs)
    elapsed = time.monotonic() - started
    print(f"{call.__name__}: {result.outcome} in {elapsed:.2f} s: {result.message}")
    return result, elapsed


# --- HTTP ------------------------------------------------------------------------------------


def test_http_up_with_keyword(http_url: str) -> None:
    result = probe_http(url=f"{http_url}/ok", timeout=5, keyword="systems ok")
    assert result.outcome == "up", result.message
    assert result.message.startswith("HTTP 200 in ")
    assert result.data["status_code"] == 200
    assert result.data["body_truncated"] is False
    assert result.latency_ms is not None and 0 < result.latency_ms < 5000


def test_http_keyword_missing_is_down(http_url: str) -> None:
    result = probe_http(url=f"{http_url}/ok", timeout=5, keyword="database ok")
    assert result.outcome == "down"
    assert result.message == "keyword 'database ok' not found in body · " + result.message.split(" · ")[1]


def test_http_wrong_status_is_down(http_url: str) -> None:
    result = probe_http(url=f"{http_url}/fail", timeout=5)
    assert result.outcome == "down"
    assert result.message == "HTTP 503 (expected 200)"
    assert result.data["status_code"] == 503


def test_http_does_not_follow_redirects(http_url: str) -> None:
    assert probe_http(url=f"{http_url}/redirect", timeout=5).message == "HTTP 302 (expected 200)"
    assert probe_http(url=f"{http_url}/redirect", timeout=5, expected_status=302).outcome == "up"


@pytest.mark.slow  # waits out the timeout
def test_http_hanging_server_costs_at_most_the_timeout(http_url: str) -> None:
    result, elapsed = timed(probe_http, url=f"{http_url}/hang", timeout=1.0)
    assert result.outcome == "down"
    assert result.message == "timed out after 1.0 s"
    assert elapsed < 2.0


@pytest.mark.slow  # waits out the timeout
def test_http_silent_socket_costs_at_most_the_timeout() -> None:
    with silent_listener() as port:
        result, elapsed = timed(probe_http, url=f"http://127.0.0.1:{port}/", timeout=1.0)
    assert result.outcome == "down"
    assert "timed out after 1.0 s" in result.message
    assert elapsed < 2.0


@pytest.mark.slow  # waits out the deadline
def test_http_trickling_body_hits_the_overall_deadline(http_url: str) -> None:
    # Each byte arrives well within the read timeout; only an overall deadline stops this.
    result, elapsed = timed(probe_http, url=f"{http_url}/trickle", timeout=1.5)
    assert result.outcome == "down"
    assert result.message == "timed out after 1.5 s reading the body"
    assert elapsed < 2.5


def test_http_endless_body_is_cut_off() -> None:
    with serve() as url:
        result, elapsed = timed(probe_http, url=f"{url}/flood", timeout=10, keyword="needle", max_body_bytes=1_048_576)
    assert result.outcome == "up", result.message
    assert elapsed < 3
    assert result.data["body_truncated"] is True
    assert result.data["body_bytes"] == 1_048_576
    assert result.data["body_note"] == "body cut at 1 MiB"
    assert "body cut at 1 MiB" in result.message


def test_http_keyword_beyond_the_cut_is_not_found() -> None:
    with serve() as url:
        result = probe_http(url=f"{url}/flood", timeout=10, keyword="needle", max_body_bytes=3)
    assert result.outcome == "down"
    assert result.message.startswith("keyword 'needle' not found in body (first 3 B)")


def test_http_connection_refused() -> None:
    result, elapsed = timed(probe_http, url=f"http://127.0.0.1:{free_port()}/", timeout=5)
    assert (result.outcome, result.message) == ("down", "connection refused")
    assert elapsed < 1


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "not an http(s) URL (scheme: none)"),
        ("ftp://user:secret@example.com/", "not an http(s) URL (scheme: ftp)"),
        ("http://", "URL has no host name"),
        ("http://[::1", "invalid URL: "),
        ("http://no-such-host.invalid/", "cannot resolve host name"),
    ],
)
def test_http_bad_urls_are_reported_not_raised(url: str, message: str) -> None:
    result = probe_http(url=url, timeout=5)
    assert result.outcome == "down"
    assert result.message.startswith(message)
    assert "secret" not in result.message


def test_https_certificate_expiring_soon_is_degraded(tmp_path: Path) -> None:
    with serve_tls(tmp_path, days_left=5) as url:
        result = probe_http(url=f"{url}/ok", timeout=5, verify_tls=False)
    assert result.outcome == "degraded", result.message
    assert result.data["tls_days_left"] in (4, 5)
    expires = dt.datetime.fromisoformat(result.data["tls_expires_at"])
    assert abs(expires - (dt.datetime.now(dt.UTC) + dt.timedelta(days=5))) < dt.timedelta(minutes=1)
    days = result.data["tls_days_left"]
    assert result.message == (
        f"TLS certificate expires in {days} days ({expires:%Y-%m-%d}) · HTTP 200 in {result.latency_ms:.0f} ms"
    )


def test_https_certificate_valid_for_long_is_up(tmp_path: Path) -> None:
    with serve_tls(tmp_path, days_left=60) as url:
        result = probe_http(url=f"{url}/ok", timeout=5, verify_tls=False, keyword="ok")
    assert result.outcome == "up", result.message
    assert result.data["tls_days_left"] in (59, 60)
    assert "TLS certificate valid for" in result.message


def test_https_expired_certificate_is_down(tmp_path: Path) -> None:
    with serve_tls(tmp_path, days_left=-2) as url:
        result = probe_http(url=f"{url}/ok", timeout=5, verify_tls=False)
    assert result.outcome == "down"
    assert result.message.startswith("TLS certificate expired on ")
    assert result.data["tls_days_left"] < 0


def test_https_untrusted_certificate_is_down_when_verifying(tmp_path: Path) -> None:
    with serve_tls(tmp_path, days_left=60) as url:
        result = probe_http(url=f"{url}/ok", timeout=5)
    assert result.outcome == "down"
    assert result.message == "TLS certificate rejected: self-signed certificate"


@pytest.mark.parametrize("not_after", ["2031-03-04T05:06:07", "2061-12-31T23:59:59"])  # UTCTime, GeneralizedTime
def test_certificate_not_after_reads_der(tmp_path: Path, not_after: str) -> None:
    expected = dt.datetime.fromisoformat(not_after).replace(tzinfo=dt.UTC)
    cert_path, _ = make_certificate(tmp_path, expected - dt.timedelta(days=400), expected)
    der = x509.load_pem_x509_certificate(cert_path.read_bytes()).public_bytes(serialization.Encoding.DER)
    assert certificate_not_after(der) == expected


# --- TCP -------------------------------------------------------------------------------------


def test_tcp_open_and_closed_ports() -> None:
    with silent_listener() as port:
        result = probe_tcp(host="127.0.0.1", port=port, timeout=2)
    assert result.outcome == "up", result.message
    assert result.latency_ms is not None
    closed = probe_tcp(host="127.0.0.1", port=free_port(), timeout=2)
    assert (closed.outcome, closed.message) == ("down", "connection refused")
    nonsense = probe_tcp(host="127.0.0.1", port=70000, timeout=2)
    assert (nonsense.outcome, nonsense.message) == ("down", "invalid port 70000")


# --- Redis -----------------------------------------------------------------------------------


def test_redis_up(redis_server: LocalRedis) -> None:
    result = probe_redis(url=redis_server.url, timeout=5)
    assert result.outcome == "up", result.message
    assert result.data["redis_version"].count(".") == 2
    assert result.data["used_memory"] > 0
    assert result.data["connected_clients"] >= 1
    assert f"Redis {result.data['redis_version']}" in result.message


@pytest.mark.slow  # waits out the timeout
def test_redis_dead_port_and_silent_port() -> None:
    result = probe_redis(url=f"redis://127.0.0.1:{free_port()}/0", timeout=2)
    assert (result.outcome, result.message) == ("down", "connection refused")
    with silent_listener() as port:
        result, elapsed = timed(probe_redis, url=f"redis://127.0.0.1:{port}/0", timeout=1.0)
    assert (result.outcome, result.message) == ("down", "timed out after 1.0 s")
    assert elapsed < 2.0
    assert probe_redis(url="http://not-redis", timeout=1).outcome == "down"


# --- PostgreSQL ------------------------------------------------------------------------------


def wait_for_streaming(infra: Infrastructure) -> None:
    deadline = time.monotonic() + 30
    while infra.primary.psql("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'") != "1":
        assert time.monotonic() < deadline, "the replica never started streaming"
        time.sleep(0.2)


def test_postgres_primary(infra: Infrastructure) -> None:
    wait_for_streaming(infra)
    result = probe_postgres(conninfo=infra.primary.conninfo("postgres"), timeout=5, expected_replicas=1)
    assert result.outcome == "up", result.message
    data = result.data
    assert data["role"] == "primary"
    assert data["server_version"].startswith("15")
    assert 1 <= data["connections"] < data["max_connections"] == 100
    assert "/" in data["lsn"]
    [replica] = data["replicas"]
    assert replica["state"] == "streaming"
    assert replica["lag_bytes"] >= 0 and replica["lag_seconds"] >= 0
    assert replica["client_addr"] == "127.0.0.1"
    [slot] = [slot for slot in data["replication_slots"] if slot["slot_name"] == "replica1"]
    assert slot["active"] is True and slot["retained_bytes"] >= 0
    assert result.message.startswith("primary · 1 replica streaming · lag ")
    assert result.message.endswith(f" · {data['connections']}/100 connections")


def test_postgres_primary_missing_replicas_is_degraded(infra: Infrastructure) -> None:
    wait_for_streaming(infra)
    result = probe_postgres(conninfo=infra.primary.conninfo(), timeout=5, expected_replicas=2)
    assert result.outcome == "degraded"
    assert result.message.startswith("1 of 2 replicas streaming (expected 2) · primary")


def test_postgres_replica(infra: Infrastructure) -> None:
    wait_for_streaming(infra)
    result = probe_postgres(conninfo=infra.replica.conninfo(), timeout=5)
    assert result.outcome == "up", result.message
    assert result.data["role"] == "replica"
    assert result.data["streaming"] is True
    assert result.data["lag_bytes"] >= 0
    assert "replicas" not in result.data
    assert result.message.startswith("replica · streaming · lag ")


def test_postgres_lag_thresholds_while_replay_is_paused(infra: Infrastructure) -> None:
    # Pausing replay (not stopping anything) makes real lag; resumed whatever happens.
    wait_for_streaming(infra)
    infra.replica.psql("SELECT pg_wal_replay_pause()")
    try:
        infra.primary.psql("SELECT pg_logical_emit_message(false, 'hadr-probe-test', repeat('x', 100000))")
        deadline = time.monotonic() + 15
        while (lag := probe_postgres(conninfo=infra.replica.conninfo(), timeout=5)).data["lag_bytes"] < 100000:
            assert time.monotonic() < deadline, f"no lag appeared: {lag.message}"
            time.sleep(0.2)
        warned = probe_postgres(conninfo=infra.replica.conninfo(), timeout=5, lag_warning_bytes=50000)
        assert warned.outcome == "degraded"
        assert warned.message.startswith("lag ") and "KiB" in warned.message
        critical = probe_postgres(
            conninfo=infra.replica.conninfo(), timeout=5, lag_warning_bytes=1000, lag_critical_bytes=50000
        )
        assert critical.outcome == "down"
        on_primary = probe_postgres(
            conninfo=infra.primary.conninfo(), timeout=5, expected_replicas=1, lag_warning_bytes=50000
        )
        assert on_primary.outcome == "degraded", on_primary.message
        assert on_primary.data["replicas"][0]["lag_bytes"] >= 100000
    finally:
        infra.replica.psql("SELECT pg_wal_replay_resume()")


def test_postgres_replica_that_is_not_streaming(infra: Infrastructure) -> None:
    # A separate standby of the shared primary whose primary_conninfo points at a dead port: it
    # runs as a hot standby but has no WAL receiver. The shared replica is left alone.
    standby = LocalInstance(infra.root / "pg" / "probe-standby", free_port(), infra.demo_password, fsync=False)
    make_replica(infra.primary, standby, slot="probe_standby")
    infra.primary.psql("SELECT pg_drop_replication_slot('probe_standby')")
    with open(standby.data_dir / "postgresql.auto.conf", "a") as conf:
        conf.write(f"primary_conninfo = 'host=127.0.0.1 port={free_port()} user=postgres'\nprimary_slot_name = ''\n")
    try:
        standby.start()
        result = probe_postgres(conninfo=standby.conninfo(), timeout=5)
    finally:
        standby.stop(mode="immediate")
        shutil.rmtree(standby.data_dir, ignore_errors=True)
    assert result.outcome == "degraded", result.message
    assert result.data["role"] == "replica"
    assert result.data["streaming"] is False
    assert result.message.startswith("replica not streaming from its primary · replica · ")


def test_postgres_connection_thresholds(infra: Infrastructure) -> None:
    conninfo = infra.primary.conninfo()
    assert probe_postgres(conninfo=conninfo, timeout=5, connections_warning_pct=1).outcome == "up"  # 1 % is ours
    with psycopg.connect(conninfo):  # a second client: 2 % of max_connections = 100
        down = probe_postgres(conninfo=conninfo, timeout=5, connections_warning_pct=1, connections_critical_pct=1)
        degraded = probe_postgres(conninfo=conninfo, timeout=5, connections_warning_pct=1, connections_critical_pct=50)
    assert down.outcome == "down"
    assert down.data["connections"] >= 2
    assert down.message.startswith(f"{down.data['connections']}/100 connections · primary")
    assert degraded.outcome == "degraded"


def test_postgres_unreachable_or_wrong(infra: Infrastructure) -> None:
    dead = probe_postgres(conninfo=f"host=127.0.0.1 port={free_port()} dbname=postgres user=postgres", timeout=5)
    assert (dead.outcome, dead.message) == ("down", "connection refused")
    wrong = probe_postgres(conninfo=infra.primary.conninfo(password="wrong"), timeout=5)
    assert wrong.outcome == "down"
    assert "password authentication failed" in wrong.message
    assert "\n" not in wrong.message
    assert probe_postgres(conninfo="this is = not = conninfo", timeout=5).outcome == "down"


@pytest.mark.slow  # waits out the timeout
def test_postgres_silent_port_costs_at_most_the_timeout() -> None:
    # libpq would wait at least 2 s; the probe gives up after its own timeout.
    with silent_listener() as port:
        result, elapsed = timed(
            probe_postgres, conninfo=f"host=127.0.0.1 port={port} dbname=postgres user=postgres", timeout=1.0
        )
    assert (result.outcome, result.message) == ("down", "timed out after 1.0 s")
    assert elapsed < 2.0


# --- Host ------------------------------------------------------------------------------------


def test_probe_host_reports_plausible_numbers() -> None:
    result = probe_host(
        cpu_warning=100,
        cpu_critical=100,
        memory_warning=100,
        memory_critical=100,
        disk_warning=100,
        disk_critical=100,
        sample_seconds=0.2,
    )
    assert result.outcome == "up", result.message
    assert 0 <= result.data["cpu"] <= 100
    assert 0 < result.data["memory"] < 100
    assert 0 < result.data["disks"]["/"] < 100
    assert len(result.data["load"]) == 3
    assert result.data["hostname"] == socket.gethostname()
    assert result.message.startswith("cpu ") and " · memory " in result.message and " · disk / " in result.message


def test_probe_host_thresholds_at_zero_are_down() -> None:
    result = probe_host(cpu_warning=0, cpu_critical=0, memory_warning=0, memory_critical=0, sample_seconds=0.1)
    assert result.outcome == "down"
    assert f"memory {result.data['memory']:.0f} % (critical 0 %)" in result.message
    assert probe_host(disk_paths=["/no/such/path"], sample_seconds=0.1).outcome == "down"


def test_evaluate_host_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match=r"^cpu must be a number from 0 to 100, got -1$"):
        evaluate_host({"cpu": -1, "memory": 10})
    with pytest.raises(ValueError, match=r"^cpu must be a number from 0 to 100, got 'x'$"):
        evaluate_host({"cpu": "x", "memory": 10})
    with pytest.raises(ValueError, match=r"^memory must be a number"):
        evaluate_host({"cpu": 1, "memory": True})
    with pytest.raises(ValueError, match=r"^disks\['/data'\] must be a number"):
        evaluate_host({"cpu": 1, "memory": 1, "disks": {"/data": 101}})
    with pytest.raises(ValueError, match=r"^memory must be a number from 0 to 100, got None$"):
        evaluate_host({"cpu": 1})


def test_evaluate_host_puts_the_worst_metric_first() -> None:
    result = evaluate_host({"cpu": 12.5, "memory": 88, "disks": {"/": 71.2, "/data": 97}})
    assert result.outcome == "down"
    assert result.message == "disk /data 97 % (critical 95 %) · memory 88 % (warning 85 %) · cpu 12 % · disk / 71 %"
    assert result.data == {"cpu": 12.5, "memory": 88.0, "disks": {"/": 71.2, "/data": 97.0}}
    assert (
        evaluate_host({"cpu": 12.5, "memory": 40, "disks": {"/": 71.2}}).message
        == "cpu 12 % · memory 40 % · disk / 71 %"
    )


def test_format_bytes() -> None:
    assert [format_bytes(n) for n in (0, 1023, 1536, 1_048_576, 16 * 1024**3)] == [
        "0 B",
        "1023 B",
        "1.5 KiB",
        "1 MiB",
        "16 GiB",
    ]
