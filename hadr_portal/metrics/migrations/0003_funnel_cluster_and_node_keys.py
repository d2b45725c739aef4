"""A funnel's cluster and node become foreign keys; they were names.

Carried over by name: `cluster` to the catalog cluster, `node` to that cluster's node.

A funnel naming a cluster that does not exist gets none: like before, its query cannot run, and its tiles say its
counts are stale and why. A funnel pinned to a node its cluster does not have (before, it could not run either)
keeps its cluster and loses the pin: it reads whichever node of that cluster is the replica, never a primary.

Backwards, the names are written again from the keys.
"""

import django.db.models.deletion
from django.db import migrations, models


def names_to_keys(apps, schema_editor):
    Funnel = apps.get_model("metrics", "Funnel")
    Node = apps.get_model("databases", "Node")
    clusters = dict(apps.get_model("databases", "Cluster").objects.values_list("name", "pk"))
    nodes = {(node.cluster_id, node.name): node.pk for node in Node.objects.all()}
    for funnel in Funnel.objects.exclude(cluster_name="").order_by("pk"):
        funnel.cluster_id = clusters.get(funnel.cluster_name)
        funnel.node_id = nodes.get((funnel.cluster_id, funnel.node_name)) if funnel.node_name else None
        funnel.save(update_fields=["cluster", "node"])


def keys_to_names(apps, schema_editor):
    Funnel = apps.get_model("metrics", "Funnel")
    for funnel in Funnel.objects.select_related("cluster", "node"):
        funnel.cluster_name = funnel.cluster.name if funnel.cluster else ""
        funnel.node_name = funnel.node.name if funnel.node else ""
        funnel.save(update_fields=["cluster_name", "node_name"])


class Migration(migrations.Migration):
    dependencies = [
        ("databases", "0004_password_env_not_portal_secrets"),
        ("metrics", "0002_funnel_dsn_env_prefix"),
    ]

    operations = [
        migrations.RenameField(model_name="funnel", old_name="cluster", new_name="cluster_name"),
        migrations.RenameField(model_name="funnel", old_name="node", new_name="node_name"),
        migrations.AddField(
            model_name="funnel",
            name="cluster",
            field=models.ForeignKey(
                blank=True,
                help_text="Catalog cluster whose replica is read",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="funnels",
                to="databases.cluster",
            ),
        ),
        migrations.AddField(
            model_name="funnel",
            name="node",
            field=models.ForeignKey(
                blank=True,
                help_text="That node of the cluster only (empty: any node that is a replica)",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="funnels",
                to="databases.node",
            ),
        ),
        migrations.RunPython(names_to_keys, keys_to_names),
        migrations.RemoveField(model_name="funnel", name="cluster_name"),
        migrations.RemoveField(model_name="funnel", name="node_name"),
    ]
