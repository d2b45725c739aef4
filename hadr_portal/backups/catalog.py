"""The catalog file's `[[storage_targets]]` and `[[backup_policies]]`.

S3 credentials are named, never written: `access_key_env` / `secret_key_env` name environment variables. A
policy's `next_run_at` is not in the file: the scheduler sets it (a new policy's on its next tick), and an
import keeps it. Pruning never deletes what backups on record belong to: their history would go with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db.models import Count

from hadr_portal.core.catalog import (
    ARRAY,
    FLAG,
    TABLE,
    TEXT,
    WHOLE,
    CatalogSection,
    ImportContext,
    Keep,
    Key,
    Reference,
    Row,
    read_table,
)
from hadr_portal.core.validators import ENV_NAME_PATTERN, env_reference_problem

from .models import BackupPolicy, StorageTarget

# A storage target's config, by kind (what `storage_from_config` reads). The *_env keys hold variable NAMES.
STORAGE_CONFIG_KEYS = {
    "local": {"path": Key(TEXT, required=True)},
    "s3": {
        "bucket": Key(TEXT, required=True),
        "prefix": Key(TEXT),
        "endpoint_url": Key(TEXT),
        "region": Key(TEXT),
        "sse": Key(TEXT),
        "access_key_env": Key(TEXT),
        "secret_key_env": Key(TEXT),
        "multipart_chunk_mb": Key(WHOLE),
        "max_concurrency": Key(WHOLE),
        # pgBackRest's repository on it (it speaks only HTTPS): a self-signed store's CA, or no verification
        "verify_tls": Key(FLAG),
        "ca_file": Key(TEXT),
    },
}
STORAGE_CONFIG_MINIMUM = {"multipart_chunk_mb": 5, "max_concurrency": 1}  # S3 rejects smaller parts
CREDENTIAL_KEYS = ("access_key_env", "secret_key_env")


def _backups(count: int) -> str:
    return f"{count} backup{'s' if count != 1 else ''} on record"


class StorageSection(CatalogSection):
    """Saved early: backup policies name storage targets."""

    name = "storage_targets"
    kind = "storage"
    model = StorageTarget
    order = 20
    import_order = 20
    prune_order = 20  # after the backup policies, which keep the storage they name
    saved_early = True
    keys = {"name": Key(TEXT, required=True), "kind": Key(TEXT, required=True), "config": Key(TABLE, sort=True)}
    choices = {"kind": StorageTarget.Kind.values}
    set_apart = ("config",)  # read by kind (the model's own field refuses an empty one)
    kept = (
        # the backups' history would go with it: a problem
        Keep(Count("backups", distinct=True), held=lambda count: f"holds {_backups(count)}"),
        # a policy still naming it is reported with the cluster a policy keeps (see ClusterSection)
        Keep(Count("policies", distinct=True)),
        Keep(Count("copy_policies", distinct=True)),  # the same, as a policy's second repository
    )
    counted = "storage targets"

    def row_read(self, row: Row, values: dict[str, Any], bad: set[str], context: ImportContext) -> None:
        if "kind" in values and "config" not in bad:
            config = _storage_config(values["kind"], values.get("config", {}), f"{row.path}.config", context.problems)
            if config is None:
                bad.add("config")
            else:
                row.take("config", config)


def _storage_config(kind: str, raw: Mapping[str, Any], path: str, problems: list[str]) -> dict[str, Any] | None:
    """A storage target's config as `storage_from_config` reads it, or None (and problems): the keys its kind
    knows, the place (path or bucket) given, credentials as environment variable NAMES, both or neither."""
    found = len(problems)
    config, bad = read_table(raw, path, STORAGE_CONFIG_KEYS[kind], problems)
    for key in ("path", "bucket"):
        if config.get(key) == "":
            problems.append(f"{path}.{key}: required for {kind} storage, but empty.")
    for key in CREDENTIAL_KEYS:
        if config.get(key) and not ENV_NAME_PATTERN.match(config[key]):
            problems.append(
                f"{path}.{key}: The name of an environment variable, e.g. HADR_S3_ACCESS_KEY (never the secret itself)."
            )
        elif config.get(key) and (problem := env_reference_problem(str(config[key]))):
            problems.append(f"{path}.{key}: {problem}")
    if kind == "s3" and not bad & set(CREDENTIAL_KEYS):
        if bool(config.get("access_key_env")) != bool(config.get("secret_key_env")):
            problems.append(f"{path}: set both access_key_env and secret_key_env, or neither (boto3's default chain).")
    for key, minimum in STORAGE_CONFIG_MINIMUM.items():
        if key in config and config[key] < minimum:
            problems.append(f"{path}.{key}: Ensure this value is greater than or equal to {minimum}.")
    return None if len(problems) > found else config


class PolicySection(CatalogSection):
    """Saved early: a backup check names its policy. Pruned first: a policy keeps its cluster and storage."""

    name = "backup_policies"
    kind = "policy"
    model = BackupPolicy
    order = 30
    import_order = 30
    prune_order = 10
    saved_early = True
    keys = {
        "name": Key(TEXT, required=True),
        "cluster": Key(TEXT, required=True),
        "dbname": Key(TEXT, required=True),
        "engine": Key(TEXT),
        "compress": Key(TEXT),
        "jobs": Key(WHOLE),
        "storage": Key(TEXT, required=True),
        # pgBackRest: a second repository (WAL is archived to both), the set a schedule takes, the WAL RPO
        # (archive_timeout is a third of it) and how much WAL a broken archive may queue before it is dropped
        "copy_storage": Key(TEXT),
        "set_type": Key(TEXT),
        "wal_rpo_seconds": Key(WHOLE),
        "archive_push_queue_max": Key(TEXT),
        "schedule": Key(TEXT),
        "enabled": Key(FLAG),
        "retention": Key(TEXT),
        "keep_scheduled_days": Key(WHOLE),
        "keep_manual_days": Key(WHOLE),
        "keep_daily": Key(WHOLE),
        "keep_weekly": Key(WHOLE),
        "keep_monthly": Key(WHOLE),
        "rpo_minutes": Key(WHOLE),
        "grace_minutes": Key(WHOLE),
        "drill_schedule": Key(TEXT),  # cron of restore drills; "" for none
        # [{name, sql, expect}]: what a restored database must answer (backups/verification.py)
        "verify": Key(ARRAY, sort=True),
    }
    choices = {
        "engine": BackupPolicy.Engine.values,
        "set_type": BackupPolicy.SetType.values,
        "retention": BackupPolicy.Retention.values,
    }
    references = {
        "cluster": Reference("clusters", "cluster"),
        "storage": Reference("storage_targets", "storage target"),
        "copy_storage": Reference("storage_targets", "storage target", optional=True),
    }
    kept = (
        Keep(
            Count("backups"),
            held=lambda count: f"has {_backups(count)}",
            advice=" (enabled = false stops its schedule)",
        ),
    )
    counted = "backup policies"


CATALOG_SECTIONS = (StorageSection(), PolicySection())
