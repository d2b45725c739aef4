"""The Redis probe: PING, then what INFO says about version, memory and clients."""

from __future__ import annotations

import time
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .base import UP, ProbeResult, format_bytes, ms_since, run_bounded


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
            latency_ms = ms_since(started)
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

    return run_bounded(timeout, work)
