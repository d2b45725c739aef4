"""The catalog file's `[[funnels]]`: conversion funnels, read from a cluster's replica or pushed.

A pushed funnel's API token is written only on request, and an import without it keeps the existing one.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Count

from hadr_portal.core.catalog import ARRAY, FLAG, NUMBER, TEXT, WHOLE, CatalogSection, ImportContext, Keep, Key, Row
from hadr_portal.databases.models import Cluster, Node

from .models import Funnel

RUN_FIELDS = {"source", "steps", "cluster", "node", "dbname", "dsn_env", "query"}  # changed: collect soon


class FunnelSection(CatalogSection):
    """Saved early, so that pruning a funnel with counts on record is refused along with the file's problems."""

    name = "funnels"
    kind = "funnel"
    model = Funnel
    order = 60
    import_order = 35  # after the clusters it reads
    prune_order = 40
    saved_early = True
    keys = {
        "name": Key(TEXT, required=True),
        "description": Key(TEXT),
        "source": Key(TEXT),
        "steps": Key(ARRAY, required=True),
        "cluster": Key(TEXT),
        "node": Key(TEXT),
        "dbname": Key(TEXT),
        "dsn_env": Key(TEXT),
        "query": Key(TEXT),
        "interval_seconds": Key(WHOLE),
        "timeout_seconds": Key(NUMBER),
        "enabled": Key(FLAG),
        "token": Key(TEXT),
    }
    choices = {"source": Funnel.Source.values}
    set_apart = ("cluster", "node")  # named in the file, resolved by row_read (the node is one of the cluster's)
    prefetch = ("cluster", "node")
    kept = (Keep(Count("day_counts"), held=lambda _: "has counts on record", advice=" (enabled = false stops it)"),)
    counted = "funnels"

    def token_exported(self, instance: Any) -> bool:
        return bool(instance.source == Funnel.Source.PUSH)  # the only ones using it

    def row_read(self, row: Row, values: dict[str, Any], bad: set[str], context: ImportContext) -> None:
        cluster, node = _funnel_reads(row, values, bad, context)
        row.take("cluster", cluster)
        row.take("node", node)
        in_file = context.sound_names("clusters")
        if not in_file.get(values.get("cluster", ""), True):
            row.valid = False  # its cluster is not saved (its own problems are reported), nor can the funnel be

    def row_saving(self, row: Row, context: ImportContext) -> None:
        if row.changed & RUN_FIELDS:
            row.instance.next_run_at = context.now
            row.changed.add("next_run_at")


def _funnel_reads(
    row: Row, values: dict[str, Any], bad: set[str], context: ImportContext
) -> tuple[Cluster | None, Node | None]:
    """The cluster a funnel names and its node (None: not named), as rows of this file or of the database.

    A name found in neither is a problem; it then stands for a row never saved, so that the model's own checks
    do not say, besides, that no cluster is named. With `prune`, only this file's clusters and nodes count.
    """
    path, problems, prune = row.path, context.problems, context.prune
    cluster_name, node_name = values.get("cluster"), values.get("node")
    if not cluster_name:
        if node_name:
            problems.append(f"{path}.node: A node is read only as part of its cluster: name the cluster too.")
            bad.add("node")
        return None, None
    in_file = {cluster.name: cluster for cluster in context.rows.get("clusters", [])}
    in_database = Cluster.objects.prefetch_related("nodes").filter(name=cluster_name).first()
    if cluster_name in in_file:
        cluster = in_file[cluster_name].instance
        nodes = {child.instance.name: child.instance for child in in_file[cluster_name].children}
        if not prune and cluster.pk is not None:
            nodes = {node.name: node for node in cluster.nodes.all()} | nodes
    elif in_database is not None and not prune:
        cluster = in_database
        nodes = {node.name: node for node in cluster.nodes.all()}
    else:
        if in_database is not None:
            problems.append(
                f"{path}.cluster: No cluster {cluster_name!r} in the file, and --prune deletes the one in the database."
            )
        else:
            problems.append(f"{path}.cluster: No cluster {cluster_name!r} in the file or the database.")
        bad.add("cluster")
        return Cluster(name=cluster_name), None
    if not node_name:
        return cluster, None
    if node_name not in nodes:
        problems.append(f"{path}.node: No node {node_name!r} in cluster {cluster_name!r}.")
        bad.add("node")
        return cluster, None
    return cluster, nodes[node_name]


CATALOG_SECTIONS = (FunnelSection(),)
