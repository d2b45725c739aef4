"""The catalog file's `[[services]]`, each with its `[[services.checks]]`, and `[[alert_channels]]`.

A channel's `target` and `target_env` are stored as its `address` and `address_env`: a webhook channel's URL
may be named (`target_env`) rather than written. Push checks' tokens (the heartbeat and host-push URL keys) are
written only on request, and an import without them keeps the existing ones.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from django.core.exceptions import ValidationError

from hadr_portal.core.catalog import (
    ARRAY,
    FLAG,
    NUMBER,
    TABLE,
    TEXT,
    WHOLE,
    CatalogSection,
    ImportContext,
    Key,
    Row,
    json_storable,
)
from hadr_portal.core.permissions import Role

from .checkconfig import config_validate
from .engine import service_refresh
from .models import AlertChannel, Check, Service

TIERS = [tier for tier, _ in Service.TIERS]
URL_KEY_KINDS = (Check.Kind.HEARTBEAT, Check.Kind.HOST_PUSH)  # push checks whose token is in a URL (backup's is not)
# Where a channel sends: the file keeps its keys, the model's fields say "address" ("target" is what an operation
# locks); the model's messages name the keys.
ADDRESS_FIELDS = {"target": "address", "target_env": "address_env"}


class CheckSection(CatalogSection):
    name = "checks"
    kind = "check"
    model = Check
    parent_field = "service"
    keys = {
        "name": Key(TEXT, required=True),
        "kind": Key(TEXT, required=True),
        "enabled": Key(FLAG),
        "interval_seconds": Key(WHOLE),
        "timeout_seconds": Key(NUMBER),
        "failures_before_down": Key(WHOLE),
        "config": Key(TABLE, sort=True),
        "token": Key(TEXT),
    }
    choices = {"kind": Check.Kind.values}
    # config_validate's, once the clusters and policies it may name are saved (ServiceSection.rows_check)
    set_apart = ("config",)
    prefetch = ("node__cluster", "policy")

    def value_export(self, instance: Any, key: str) -> Any:
        if key == "config":
            return instance.named_config()  # the node and policy it points at by name, as the file has always had
        return super().value_export(instance, key)

    def token_exported(self, instance: Any) -> bool:
        return instance.kind in URL_KEY_KINDS

    def row_read(self, row: Row, values: dict[str, Any], bad: set[str], context: ImportContext) -> None:
        row.extra["config"] = values.get("config", {})

    def row_filled(self, row: Row, values: dict[str, Any], bad: set[str], context: ImportContext) -> None:
        # ("timeout shorter than interval" came from Check.clean(), through full_clean)
        config = row.extra["config"]
        if {"kind", "config"} & bad or not json_storable(config, f"{row.path}.config", context.problems):
            row.extra["config"] = None  # nothing more to say about it

    def row_saving(self, row: Row, context: ImportContext) -> None:
        if row.outcome != "unchanged":
            row.instance.next_run_at = context.now  # run the new settings at once
            row.changed.add("next_run_at")


class ServiceSection(CatalogSection):
    name = "services"
    kind = "service"
    model = Service
    order = 40
    import_order = 40
    prune_order = 50
    keys = {
        "name": Key(TEXT, required=True),
        "display_name": Key(TEXT, required=True),
        "kind": Key(TEXT, required=True),
        "description": Key(TEXT),
        "tier": Key(WHOLE),
        "owner_role": Key(TEXT),
        "rto_minutes": Key(WHOLE),
        "rpo_minutes": Key(WHOLE),
        "runbook": Key(TEXT),
        "restart": Key(TABLE, optional=True),  # none: no restart button
        "restart_drill_schedule": Key(TEXT),  # cron of restart drills; "" for none
        "checks": Key(ARRAY),
    }
    choices = {"kind": Service.Kind.values, "owner_role": [role.value for role in Role], "tier": TIERS}
    children = CheckSection()

    def summary(self, entries: list[dict[str, Any]]) -> str | None:
        checks = sum(len(entry["checks"]) for entry in entries)
        return f"{len(entries)} services ({checks} checks)"

    def rows_check(self, rows: list[Row], context: ImportContext) -> None:
        """Each check's config through `config_validate`, now that this file's clusters and backup policies are
        in the database: a postgres check may name one of their nodes, and a backup check a policy (the rows its
        `node` and `policy` keys then point at)."""
        unsaved_nodes = {
            (cluster.name, node.instance.name)
            for cluster in context.rows.get("clusters", [])
            if cluster.saved is None
            for node in cluster.children
        }
        unsaved_policies = {policy.name for policy in context.rows.get("backup_policies", []) if policy.saved is None}
        for check_row in (check for service in rows for check in service.children):
            raw = check_row.extra["config"]
            if raw is None:
                check_row.valid = False
                continue
            try:
                checked = config_validate(check_row.instance.kind, raw)
            except ValidationError as exc:
                check_row.valid = False
                for name, messages in exc.message_dict.items():
                    named = (raw.get("cluster"), raw.get("node"))
                    if name == "node" and all(isinstance(part, str) for part in named) and named in unsaved_nodes:
                        continue  # the node's cluster has problems of its own, already reported
                    if name == "policy" and raw.get("policy") in unsaved_policies:
                        continue  # so has the policy
                    context.problems.append(f"{check_row.path}.config.{name}: {' '.join(messages)}")
                continue
            check_row.take("config", checked.config)
            # by id: the rows are saved by now, and comparing ids loads nothing
            check_row.take("node_id", checked.node.pk if checked.node else None)
            check_row.take("policy_id", checked.policy.pk if checked.policy else None)

    def rows_saved(self, rows: list[Row], context: ImportContext) -> None:
        """The services whose checks changed have their state recomputed once the import is saved."""
        for row in rows:
            if row.pruned or any(check.saved != "unchanged" for check in row.children):
                context.after_import.append(partial(service_refresh, row.instance))


class ChannelSection(CatalogSection):
    name = "alert_channels"
    kind = "channel"
    model = AlertChannel
    order = 50
    import_order = 50
    prune_order = 60
    keys = {
        "name": Key(TEXT, required=True),
        "kind": Key(TEXT, required=True),
        "target": Key(TEXT),
        "target_env": Key(TEXT),
        "enabled": Key(FLAG),
        "min_tier": Key(WHOLE),
    }
    choices = {"kind": AlertChannel.Kind.values, "min_tier": TIERS}
    set_apart = tuple(ADDRESS_FIELDS)
    counted = "alert channels"

    def value_export(self, instance: Any, key: str) -> Any:
        if key in ADDRESS_FIELDS:
            return getattr(instance, ADDRESS_FIELDS[key])
        return super().value_export(instance, key)

    def row_read(self, row: Row, values: dict[str, Any], bad: set[str], context: ImportContext) -> None:
        for key, field in ADDRESS_FIELDS.items():
            row.take(field, values.get(key, ""))  # absent: the field's default, as for every key

    def field_key(self, field: str) -> str:
        return next((key for key, stored in ADDRESS_FIELDS.items() if stored == field), field)


CATALOG_SECTIONS = (ServiceSection(), ChannelSection())
