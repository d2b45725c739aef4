"""Health-check probes for the check engine: HTTP(S), TCP, Redis, PostgreSQL and host metrics.

- `base`      the ProbeResult every probe returns, and what they all share: the bound on their time
              (`run_bounded`), the one-line failure message, the outcome levels, `format_bytes`
- `http`      status, keyword and TLS certificate expiry, through the SSRF guard
- `tcp`       a connection opened, through the SSRF guard
- `redis`     PING and INFO
- `postgres`  a node's role, connections and replication lag
- `host`      CPU, memory and disk use, measured here (`probe_host`) or pushed (`evaluate_host`)

Every probe returns a ProbeResult and never raises, bounded by its timeout. Callers use the names below.
"""

from __future__ import annotations

from .base import DEGRADED, DOWN, UP, ProbeResult, format_bytes
from .host import MAX_DISKS, evaluate_host, probe_host
from .http import probe_http
from .postgres import probe_postgres
from .redis import probe_redis
from .tcp import probe_tcp

__all__ = [
    "DEGRADED",
    "DOWN",
    "MAX_DISKS",
    "UP",
    "ProbeResult",
    "evaluate_host",
    "format_bytes",
    "probe_host",
    "probe_http",
    "probe_postgres",
    "probe_redis",
    "probe_tcp",
]
