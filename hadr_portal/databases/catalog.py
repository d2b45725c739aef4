"""The catalog file's `[[clusters]]`, each with its `[[clusters.nodes]]`.

Secrets are named, never written: `password_env` and the `*_password_env` of each purpose's role name
environment variables.
"""

from __future__ import annotations

from django.db.models import Count

from hadr_portal.core.catalog import ARRAY, FLAG, TABLE, TEXT, WHOLE, CatalogSection, Keep, Key

from .models import Cluster, Node


class NodeSection(CatalogSection):
    name = "nodes"
    kind = "node"
    model = Node
    parent_field = "cluster"
    keys = {
        "name": Key(TEXT, required=True),
        "host": Key(TEXT, required=True),
        "port": Key(WHOLE, required=True),
        "controller": Key(TABLE, optional=True),  # none: the portal cannot stop or start it
    }


class ClusterSection(CatalogSection):
    """Saved early: backup policies, funnels and checks name clusters and their nodes."""

    name = "clusters"
    kind = "cluster"
    model = Cluster
    order = 10
    import_order = 10
    prune_order = 30  # after the backup policies, which keep the cluster they name
    saved_early = True
    keys = {
        "name": Key(TEXT, required=True),
        "description": Key(TEXT),
        "dbname": Key(TEXT),
        "user": Key(TEXT),
        "password_env": Key(TEXT),
        # a role per purpose (empty: the admin account above); databases.models.Purpose
        "monitor_user": Key(TEXT),
        "monitor_password_env": Key(TEXT),
        "read_user": Key(TEXT),
        "read_password_env": Key(TEXT),
        "backup_user": Key(TEXT),
        "backup_password_env": Key(TEXT),
        "probe_user": Key(TEXT),
        "probe_password_env": Key(TEXT),
        # who fails it over: "direct" (the portal, on a DBA's confirmation) or "patroni" (its REST API, below)
        "engine": Key(TEXT),
        "patroni_urls": Key(ARRAY),
        "patroni_user": Key(TEXT),
        "patroni_password_env": Key(TEXT),
        "synchronous_mode": Key(FLAG),
        "switchover_drill_schedule": Key(TEXT),  # cron; "" for none
        "max_failover_lag_bytes": Key(WHOLE),
        "post_failover_hook": Key(TABLE, optional=True),
        "nodes": Key(ARRAY),
    }
    children = NodeSection()
    # still named by a policy: one this file names it in (reported there) or one pruning keeps (reported too)
    kept = (Keep(Count("backup_policies")),)
    counted = "clusters"


CATALOG_SECTIONS = (ClusterSection(),)
