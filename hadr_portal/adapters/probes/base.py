"""What every probe shares: the result it returns, and how it is bounded, judged and worded.

Every probe returns a ProbeResult and never raises: a failure is a `down` result whose message is one line an
operator can act on (`failure_message`). Every probe is bounded by its timeout (`run_bounded`), even when the
target accepts a connection and then says nothing. A value above a warning threshold is degraded, above a
critical one is down (`level_of`; so a percentage threshold of 100 never trips).
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import redis

from hadr_portal.adapters import netguard

UP, DEGRADED, DOWN = "up", "degraded", "down"
_SEVERITY = {UP: 0, DEGRADED: 1, DOWN: 2}

# How long past its timeout we keep waiting for a probe before declaring it timed out. Socket
# timeouts alone don't bound a probe: DNS lookups ignore them, libpq rounds its connect timeout up
# to 2 s, and a target trickling bytes restarts a read timeout with every chunk.
_GRACE_SECONDS = 0.5


@dataclass(frozen=True)
class ProbeResult:
    """What one probe found: the outcome, why, how fast, and JSON-serialisable details."""

    outcome: str  # "up" | "degraded" | "down"
    message: str
    latency_ms: float | None = None
    data: dict[str, Any] = field(default_factory=dict)


def format_bytes(count: float) -> str:
    """1048576 → "1 MiB", 1536 → "1.5 KiB", 0 → "0 B"."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.1f}".removesuffix(".0") + f" {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def run_bounded(timeout: float, work: Callable[[], ProbeResult]) -> ProbeResult:
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
            results.append(ProbeResult(DOWN, failure_message(exc, limit)))

    thread = threading.Thread(target=run, name="probe", daemon=True)
    thread.start()
    thread.join(limit + _GRACE_SECONDS)
    return results[0] if results else ProbeResult(DOWN, f"timed out after {limit:.1f} s", data={"timed_out": True})


def failure_message(exc: BaseException, timeout: float) -> str:
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


def worst_of(checks: list[tuple[str, str]], latency_ms: float | None, data: dict[str, Any]) -> ProbeResult:
    """The worst check decides the outcome; the message lists checks worst first."""
    ordered = sorted(checks, key=lambda check: -_SEVERITY[check[0]])
    outcome = ordered[0][0] if ordered else UP
    return ProbeResult(outcome, " · ".join(text for _, text in ordered), latency_ms, data)


def level_of(value: float, warning: float, critical: float) -> str:
    return DOWN if value > critical else DEGRADED if value > warning else UP


def ms_since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)
