"""Turning a Check from the catalog into a probe call (no database access inside the call).

`probe_for(check)` is evaluated in the engine's main thread and returns a zero-argument
callable that the thread pool runs; the callable touches only the network.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial

import redis
from django.conf import settings
from django.utils import timezone

from hadr_portal.adapters import probes
from hadr_portal.adapters.probes import ProbeResult
from hadr_portal.backups.archiving import archive_state_refresh, archive_verdict
from hadr_portal.backups.selectors import freshness_of
from hadr_portal.core.humanize import duration_text
from hadr_portal.core.validators import env_reference
from hadr_portal.core.workers import workers_by_queue
from hadr_portal.databases.dsn import DsnUnavailable, dsn_from_env
from hadr_portal.databases.models import Purpose

from .checkconfig import REDIS_OWN
from .models import Check

Probe = Callable[[], ProbeResult]
logger = logging.getLogger(__name__)

HOST_THRESHOLDS = ("cpu_warning", "cpu_critical", "memory_warning", "memory_critical", "disk_warning", "disk_critical")


def _conninfo(check: Check) -> tuple[str, int]:
    """The node's conninfo (as the cluster's monitoring role) and how many replicas its cluster should have.
    Raises DsnUnavailable for a `dsn_env` that is not a set HADR_DSN_* variable, ValueError for a node that is
    not in the catalog (any more)."""
    config = check.config
    if config.get("dsn_env"):
        return dsn_from_env(config["dsn_env"]), int(config.get("expected_replicas", 0))
    if check.node is None:
        named = check.named_config()
        which = f"{named['cluster']}/{named['node']} " if {"cluster", "node"} <= named.keys() else ""
        raise ValueError(f"its node {which}is not in the catalog")
    conninfo = check.node.address(Purpose.MONITOR).conninfo()
    return conninfo, int(config.get("expected_replicas", check.node.cluster.nodes.count() - 1))


def _celery_probe(queue: str) -> ProbeResult:
    try:
        workers = workers_by_queue(url=settings.REDIS_URL, queues=(queue,))[queue]
    except redis.RedisError as exc:
        return ProbeResult("down", f"cannot read worker heartbeats from Redis: {exc}")
    if not workers:
        return ProbeResult("down", f"no live worker consumes the {queue!r} queue")
    return ProbeResult("up", f"{len(workers)} worker(s) on {queue!r}: {', '.join(workers)}", data={"workers": workers})


def heartbeat_evaluate(check: Check, now: datetime) -> ProbeResult:
    """Healthchecks' model: up until `period + grace` after the last ping, then down."""
    period = int(check.config.get("period_seconds", 3600))
    grace = int(check.config.get("grace_seconds", 300))
    if check.last_ping_at is None:
        return ProbeResult("unknown", "waiting for the first ping")
    age = (now - check.last_ping_at).total_seconds()
    data = {"last_ping_at": check.last_ping_at.isoformat(), "age_seconds": round(age)}
    if age > period + grace:
        return ProbeResult(
            "down",
            f"no ping for {duration_text(age)} (period {duration_text(period)} + grace {duration_text(grace)})",
            data=data,
        )
    late = " (late, within grace)" if age > period else ""
    return ProbeResult("up", f"last ping {duration_text(age)} ago{late}", data=data)


def host_push_evaluate(check: Check, now: datetime) -> ProbeResult | None:
    """Pushed host reports are evaluated when they arrive; here only their absence matters."""
    limit = timedelta(seconds=check.stale_after_seconds())
    if check.last_ping_at is None:
        return ProbeResult("unknown", "waiting for the first report")
    if now - check.last_ping_at > limit:
        return ProbeResult("down", f"no report for {duration_text((now - check.last_ping_at).total_seconds())}")
    return None


def probe_for(check: Check) -> Probe:
    """The network call for a pull check. Raises KeyError/ValueError on a broken config."""
    c, timeout = check.config, check.timeout_seconds
    if check.kind == Check.Kind.HTTP:
        # a URL with credentials in it is kept in the environment (url_env), never in the catalog
        url = env_reference(c["url_env"]) if c.get("url_env") else c["url"]
        if not url:
            return partial(ProbeResult, probes.DOWN, f"environment variable {c['url_env']} (the URL) is not set")
        return partial(
            probes.probe_http,
            url=url,
            timeout=timeout,
            expected_status=int(c.get("expected_status", 200)),
            keyword=c.get("keyword", ""),
            tls_warning_days=int(c.get("tls_warning_days", 14)),
            verify_tls=bool(c.get("verify_tls", True)),
            allow_private=settings.ALLOW_PRIVATE_TARGETS,
        )
    if check.kind == Check.Kind.TCP:
        return partial(
            probes.probe_tcp,
            host=c["host"],
            port=int(c["port"]),
            timeout=timeout,
            allow_private=settings.ALLOW_PRIVATE_TARGETS,
        )
    if check.kind == Check.Kind.POSTGRES:
        try:
            conninfo, expected = _conninfo(check)
        except DsnUnavailable as exc:
            return partial(ProbeResult, probes.DOWN, str(exc))
        limits = {
            k: int(c[k])
            for k in ("lag_warning_bytes", "lag_critical_bytes", "connections_warning_pct", "connections_critical_pct")
            if k in c
        }
        return partial(probes.probe_postgres, conninfo=conninfo, timeout=timeout, expected_replicas=expected, **limits)
    if check.kind == Check.Kind.REDIS:
        url = env_reference(c["url_env"], allowed=REDIS_OWN) if c.get("url_env") else c.get("url", settings.REDIS_URL)
        return partial(probes.probe_redis, url=url, timeout=timeout)
    if check.kind == Check.Kind.CELERY:
        return partial(_celery_probe, c.get("queue", "default"))
    if check.kind == Check.Kind.HOST:
        thresholds = {k: float(c[k]) for k in HOST_THRESHOLDS if k in c}
        return partial(probes.probe_host, disk_paths=tuple(c.get("disk_paths", ["/"])), **thresholds)
    raise ValueError(f"{check.kind} is not a pull check")


def _policy_missing(check: Check) -> ProbeResult:
    """Removed from the catalog (or, named before names became keys, never in it)."""
    named = check.named_config().get("policy")
    return ProbeResult(
        "down", f"no backup policy named {named!r}" if named else "its backup policy is not in the catalog"
    )


def backup_evaluate(check: Check, now: datetime) -> ProbeResult:
    """The last good backup's age against the RPO objective and the schedule (missed backups)."""
    if check.policy is None:
        return _policy_missing(check)
    fresh = freshness_of(check.policy, now=now)
    return ProbeResult(fresh.state, fresh.message, data=fresh.as_data())


def archive_evaluate(check: Check) -> ProbeResult:
    """The policy's WAL archiving read afresh (and kept on the policy for the pages and /metrics): down when it
    fails or its age passes the objective, degraded when point-in-time recovery is broken."""
    if check.policy is None:
        return _policy_missing(check)
    started = time.monotonic()
    try:
        state = archive_state_refresh(policy=check.policy, timeout=check.timeout_seconds)
    except Exception as exc:  # judged in the engine's thread: a crash must not stop the other checks of the tick
        logger.exception("archive check %s crashed", check)
        return ProbeResult("down", f"check crashed: {exc!r}")
    outcome, message = archive_verdict(state)
    return ProbeResult(outcome, message, latency_ms=(time.monotonic() - started) * 1000, data=state.as_data())


def unprobed_evaluate(check: Check) -> ProbeResult | None:
    now = timezone.now()
    if check.kind == Check.Kind.HEARTBEAT:
        return heartbeat_evaluate(check, now)
    if check.kind == Check.Kind.BACKUP:
        return backup_evaluate(check, now)
    if check.kind == Check.Kind.ARCHIVE:
        return archive_evaluate(check)
    return host_push_evaluate(check, now)
