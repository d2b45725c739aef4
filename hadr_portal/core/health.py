"""The portal's own health: its database, Redis, and a live worker on each queue."""

from __future__ import annotations

from typing import Any

import redis
from django.conf import settings
from django.db import connection

QUEUES = ("checks", "ops", "default")


def portal_health(*, timeout: float = 1.5) -> dict[str, Any]:
    """Each component's state; `ok` is true only when every part works."""
    checks: dict[str, Any] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = {"ok": True}
    except Exception as exc:
        checks["database"] = {"ok": False, "error": str(exc).strip().splitlines()[0]}
    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_timeout=timeout, socket_connect_timeout=timeout).ping()
        checks["redis"] = {"ok": True}
    except Exception as exc:
        checks["redis"] = {"ok": False, "error": str(exc)}
    checks["queues"] = (
        _queue_workers()
        if checks["redis"]["ok"]
        else {q: {"ok": False, "workers": [], "error": "Redis unreachable"} for q in QUEUES}
    )
    ok = checks["database"]["ok"] and checks["redis"]["ok"] and all(q["ok"] for q in checks["queues"].values())
    return {"ok": ok, "checks": checks}


def _queue_workers() -> dict[str, Any]:
    from .workers import workers_by_queue

    try:
        by_queue = workers_by_queue(url=settings.REDIS_URL, queues=QUEUES)
    except redis.RedisError as exc:
        return {q: {"ok": False, "workers": [], "error": str(exc)} for q in QUEUES}
    return {
        q: {"ok": bool(names), "workers": sorted(names)}
        | ({} if names else {"error": "no worker consuming this queue"})
        for q, names in by_queue.items()
    }
