"""The Databases section of the Dashboard: per cluster, the node applications should use and whether a
replica streams from it (redundancy), with the last failover. Shared and cached with the service tiles."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver
from django.template.loader import render_to_string

from hadr_portal.core.dashboard_version import dashboard_invalidate

from .models import Cluster, Engine, Failover
from .topology import cluster_primary


def databases_section_html() -> str:
    rows = []
    clusters = Cluster.objects.select_related("primary").prefetch_related("nodes").order_by("name")
    for cluster in clusters:
        primary = cluster_primary(cluster)
        replicas = primary.last_probe.get("replicas", []) if primary else []
        streaming = [row["application_name"] for row in replicas if row.get("state") == "streaming"]
        expected = max(0, len(cluster.nodes.all()) - 1)
        rows.append(
            {
                "cluster": cluster,
                "primary": primary,
                "streaming": streaming,
                "expected": expected,
                "redundant": primary is not None and len(streaming) >= expected,
                "last_failover": cluster.failovers.select_related("operation").first(),
                "ha": cluster.ha_state if cluster.is_patroni else None,
                "last_change": cluster.leader_changes.first(),
            }
        )
    if not rows:
        return ""
    return render_to_string("databases/_clusters_section.html", {"rows": rows})


def paused_banners() -> list[str]:
    """Every Patroni cluster in maintenance mode: nobody fails it over while it lasts."""
    paused = Cluster.objects.filter(engine=Engine.PATRONI, ha_state__paused=True).values_list("name", flat=True)
    return [
        f"Maintenance mode on cluster {name}: automatic failover is paused, Patroni promotes nobody until it is "
        "resumed (Databases page)."
        for name in paused
    ]


def topology_changed() -> None:
    """A failover or a rebuild changed who is primary or who streams: the Dashboard shows it now."""
    transaction.on_commit(dashboard_invalidate)


@receiver(post_save, sender=Failover)
@receiver(post_save, sender=Cluster)
def _cluster_saved(sender: Any, **_: Any) -> None:
    topology_changed()
