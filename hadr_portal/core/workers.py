"""Celery workers announce themselves in Redis every few seconds; readers ask who is alive.

Faster and lighter than `celery inspect` (which waits for every worker to answer): the
dashboard banner, /healthz and the Celery check read these keys in a millisecond.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import time
from typing import Any

import redis
from celery import bootsteps

PREFIX = "hadr:worker:"
INTERVAL_SECONDS = 5
TTL_SECONDS = 20


@functools.lru_cache(maxsize=8)
def _client(url: str, timeout: float = 2.0) -> redis.Redis:
    """One client (and connection pool) per URL and process: pages ask on every request."""
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)


def worker_announce(*, url: str, hostname: str, queues: list[str]) -> None:
    payload = {
        "hostname": hostname,
        "queues": sorted(queues),
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "at": time.time(),
    }
    _client(url).set(PREFIX + hostname, json.dumps(payload), ex=TTL_SECONDS)


def worker_withdraw(*, url: str, hostname: str) -> None:
    _client(url).delete(PREFIX + hostname)


def workers_alive(*, url: str, timeout: float = 2.0) -> list[dict[str, Any]]:
    """Workers that announced themselves within the last TTL_SECONDS. Raises redis errors."""
    client = _client(url, timeout)
    keys = list(client.scan_iter(match=PREFIX + "*", count=500))
    values = client.mget(keys) if keys else []
    return sorted((json.loads(v) for v in values if v), key=lambda w: w["hostname"])


def workers_by_queue(*, url: str, queues: tuple[str, ...]) -> dict[str, list[str]]:
    by_queue: dict[str, list[str]] = {q: [] for q in queues}
    for worker in workers_alive(url=url):
        for queue in worker["queues"]:
            if queue in by_queue:
                by_queue[queue].append(worker["hostname"])
    return by_queue


class AnnounceStep(bootsteps.StartStopStep):
    """Celery worker bootstep: announce this worker and its queues every INTERVAL_SECONDS."""

    requires = ("celery.worker.components:Timer",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.timer_ref: Any = None

    def start(self, worker: Any) -> None:
        from django.conf import settings

        queues = list(worker.app.amqp.queues.consume_from or worker.app.amqp.queues)

        def announce() -> None:
            try:
                worker_announce(url=settings.REDIS_URL, hostname=worker.hostname, queues=queues)
            except redis.RedisError:
                pass  # the broker is down: nothing to announce to; /healthz says so

        announce()
        self.timer_ref = worker.timer.call_repeatedly(INTERVAL_SECONDS, announce, (), priority=10)

    def stop(self, worker: Any) -> None:
        from django.conf import settings

        if self.timer_ref is not None:
            self.timer_ref.cancel()
        try:
            worker_withdraw(url=settings.REDIS_URL, hostname=worker.hostname)
        except redis.RedisError:
            pass
