"""The TCP probe: can a connection be opened, through the SSRF guard."""

from __future__ import annotations

import time

from hadr_portal.adapters import netguard

from .base import DOWN, UP, ProbeResult, ms_since, run_bounded


def probe_tcp(*, host: str, port: int, timeout: float, allow_private: bool = False) -> ProbeResult:
    """Open a TCP connection and close it again, through the SSRF guard (as `probe_http`)."""

    def work() -> ProbeResult:
        if not 0 < port < 65536:  # getaddrinfo would quietly wrap 70000 round to 4464
            return ProbeResult(DOWN, f"invalid port {port}")
        started = time.monotonic()
        with netguard.connect(host, port, timeout=timeout, allow_private=allow_private):
            latency_ms = ms_since(started)
        return ProbeResult(UP, f"connected in {latency_ms:.0f} ms", latency_ms, {"host": host, "port": port})

    return run_bounded(timeout, work)
