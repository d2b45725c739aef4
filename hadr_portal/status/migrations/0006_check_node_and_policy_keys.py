"""A check's node and backup policy become foreign keys; they were names inside `config`.

Carried over: a postgres check's `config.cluster` + `config.node` become `node`, a backup check's `config.policy`
becomes `policy`, and the names leave `config`.

A check naming a node or a policy that does not exist gets no key and keeps its names in `config`, so it works as
it did: it stays down, saying its node (or policy) is not in the catalog; the catalog export still writes those
names; and saving it, from the check form or a catalog file, is refused until they name something that exists.

Backwards, the names are written into `config` again from the keys.
"""

import django.db.models.deletion
from django.db import migrations, models

NODE_NAMES = ("cluster", "node")


def names_to_keys(apps, schema_editor):
    Check = apps.get_model("status", "Check")
    Node = apps.get_model("databases", "Node")
    BackupPolicy = apps.get_model("backups", "BackupPolicy")
    nodes = {(node.cluster.name, node.name): node.pk for node in Node.objects.select_related("cluster")}
    policies = dict(BackupPolicy.objects.values_list("name", "pk"))
    for check in Check.objects.filter(kind__in=("postgres", "backup")).order_by("pk"):
        config = dict(check.config or {})
        named = tuple(config.get(key) for key in NODE_NAMES)
        if check.kind == "postgres" and all(isinstance(name, str) for name in named) and named in nodes:
            check.node_id = nodes[named]
            for key in NODE_NAMES:
                del config[key]
        elif check.kind == "backup" and isinstance(config.get("policy"), str) and config["policy"] in policies:
            check.policy_id = policies[config.pop("policy")]
        else:
            continue  # names nothing, or something that does not exist: left as it is
        check.config = config
        check.save(update_fields=["config", "node", "policy"])


def keys_to_names(apps, schema_editor):
    Check = apps.get_model("status", "Check")
    for check in Check.objects.filter(node__isnull=False).select_related("node__cluster"):
        check.config = {**check.config, "cluster": check.node.cluster.name, "node": check.node.name}
        check.save(update_fields=["config"])
    for check in Check.objects.filter(policy__isnull=False).select_related("policy"):
        check.config = {**check.config, "policy": check.policy.name}
        check.save(update_fields=["config"])


class Migration(migrations.Migration):
    dependencies = [
        ("backups", "0002_restores"),
        ("databases", "0004_password_env_not_portal_secrets"),
        ("status", "0005_runbook_in_runbooks_dir"),
    ]

    operations = [
        migrations.AddField(
            model_name="check",
            name="node",
            field=models.ForeignKey(
                blank=True,
                help_text="The catalog node a postgres check probes (none: it reads the DSN in dsn_env)",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="checks",
                to="databases.node",
            ),
        ),
        migrations.AddField(
            model_name="check",
            name="policy",
            field=models.ForeignKey(
                blank=True,
                help_text="The backup policy whose freshness a backup check judges",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="checks",
                to="backups.backuppolicy",
            ),
        ),
        migrations.RunPython(names_to_keys, keys_to_names),
    ]
