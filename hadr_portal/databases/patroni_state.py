"""What Patroni says about a cluster of the `patroni` engine, kept on `Cluster.ha_state` for the pages and
`/metrics`: leader, members (role, state, timeline, lag in bytes and seconds, pending restart), paused, the
scheduled switchover, the dynamic settings the portal documents, and the last timeline changes.

Read by the write probe every second (databases.writeprobe), so the pages never wait on a REST API."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from hadr_portal.adapters.patroni import PatroniClient, PatroniError
from hadr_portal.core.validators import env_reference

from .models import Cluster
from .sections import topology_changed

# The dynamic settings the portal shows and lets a DBA change (PATCH /config); the rest stays patronictl's.
DOCUMENTED_SETTINGS = ("ttl", "loop_wait", "retry_timeout", "maximum_lag_on_failover", "synchronous_mode")
HISTORY_KEPT = 10


def patroni_client(cluster: Cluster, *, timeout: float = 2.0) -> PatroniClient:
    """The REST API client of a `patroni` cluster, its password read from the catalog's variable."""
    if not cluster.is_patroni:
        raise PatroniError(f"Cluster {cluster.name} is not managed by Patroni (engine {cluster.engine}).")
    return PatroniClient(
        cluster.patroni_urls,
        username=cluster.patroni_user,
        password=env_reference(cluster.patroni_password_env) if cluster.patroni_password_env else "",
        timeout=timeout,
    )


def ha_state_read(cluster: Cluster) -> dict[str, Any]:
    """Patroni's view now, as stored on `ha_state` ({"error": …} when no member's API answered)."""
    try:
        api = patroni_client(cluster)
        view = api.cluster()
        history = api.history()
        config = api.config()
    except PatroniError as exc:
        return {"error": str(exc)}
    leader = view.leader
    return {
        "error": "",
        "leader": leader.name if leader else "",
        "paused": view.paused,
        "scheduled_switchover": dict(view.scheduled_switchover or {}),
        "timeline": leader.timeline if leader else max((m.timeline or 0 for m in view.members), default=None),
        "members": [
            {
                "name": m.name,
                "role": m.role,
                "state": m.state,
                "host": m.host,
                "port": m.port,
                "timeline": m.timeline,
                "lag_bytes": m.lag_bytes,
                "pending_restart": m.pending_restart,
                "api_url": m.api_url,
            }
            for m in view.members
        ],
        "config": {key: config.get(key) for key in DOCUMENTED_SETTINGS},
        "history": [
            {
                "timeline": change.timeline,
                "lsn": change.lsn,
                "reason": change.reason,
                "at": change.at.isoformat() if change.at else None,
                "new_leader": change.new_leader,
            }
            for change in history[-HISTORY_KEPT:]
        ],
    }


def ha_state_refresh(cluster: Cluster, *, replica_delays: dict[str, float] | None = None) -> dict[str, Any]:
    """Read and keep Patroni's view. A member's lag in seconds is the write probe's delay on it (Patroni gives
    bytes only); when no API answers, the last view is kept beside the error, marked stale."""
    state = ha_state_read(cluster)
    if state["error"]:
        kept = {k: v for k, v in (cluster.ha_state or {}).items() if k != "error"}
        state = {**kept, "error": state["error"], "stale": True}
    for member in state.get("members", []):
        if replica_delays and member["name"] in replica_delays and member["name"] != state.get("leader"):
            member["lag_seconds"] = replica_delays[member["name"]]
    before = cluster.ha_state or {}
    if any(before.get(key) != state.get(key) for key in ("leader", "paused", "timeline", "error")):
        topology_changed()  # the dashboard's cached tile says it now
    now = timezone.now()
    if not state.get("stale"):
        Cluster.objects.filter(pk=cluster.pk).update(ha_state=state, ha_state_at=now)
        cluster.ha_state_at = now
    else:
        Cluster.objects.filter(pk=cluster.pk).update(ha_state=state)
    cluster.ha_state = state
    return state


def ha_member(cluster: Cluster, name: str) -> dict[str, Any] | None:
    return next((m for m in (cluster.ha_state or {}).get("members", []) if m["name"] == name), None)
