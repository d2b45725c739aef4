"""The catalog as code: TOML export and import, validation with paths, pruning, tokens, the command, the audit,
the demo seeding."""

from __future__ import annotations

import copy
import re
import tomllib
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.core.management import CommandError, call_command
from django.utils import timezone

from hadr_portal.backups.models import Backup, BackupPolicy, StorageTarget
from hadr_portal.backups.services import backups_schedule_due
from hadr_portal.core.catalog import (
    CatalogError,
    catalog_dump_toml,
    catalog_export,
    catalog_import,
    catalog_load_toml,
)
from hadr_portal.core.models import AuditEntry
from hadr_portal.core.permissions import Role
from hadr_portal.core.registry import catalog_sections
from hadr_portal.databases.models import Cluster, Node
from hadr_portal.databases.services import cluster_upsert
from hadr_portal.demo.catalog import DEMO_FUNNEL, demo_catalog
from hadr_portal.incidents.models import Contact, EscalationStep
from hadr_portal.metrics.models import Funnel
from hadr_portal.status.models import AlertChannel, Check, Service, State
from tests.conftest import make_user
from tests.status.factories import make_check, make_service

EVERYTHING = [
    "cluster demo",
    "node demo/primary",
    "node demo/replica",
    "storage local",
    "storage offsite",
    "policy demo-offsite",
    "policy demo-onboarding",
    "service beat",
    "check beat/heartbeat",
    "service demo-db-primary",
    "check demo-db-primary/backup",
    "check demo-db-primary/postgres",
    "service onboarding-app",
    "check onboarding-app/health",
    "check onboarding-app/port",
    "channel chat",
    "channel ops-mail",
    "funnel onboarding",
    "contact Ana",
    "contact Mauricio",
    "escalation sev1",
]


S3_CONFIG = {
    "bucket": "hadr-backups",
    "prefix": "demo",
    "endpoint_url": "https://s3.example.com",
    "region": "eu-west-1",
    "sse": "AES256",
    "access_key_env": "HADR_S3_ACCESS_KEY",
    "secret_key_env": "HADR_S3_SECRET_KEY",
}


@pytest.fixture
def catalog(db: None) -> None:
    """A bit of everything: a cluster with two nodes, local and S3 backup storage, two backup policies,
    pull and push checks (one naming a policy), a restart table, two channels."""
    demo = cluster_upsert(
        name="demo",
        nodes={"primary": ("127.0.0.1", 5441), "replica": ("127.0.0.1", 5442)},
        description="Local demo cluster",
        dbname="onboarding",
        user="postgres",
        password_env="HADR_DEMO_PASSWORD",
    )
    app = make_service(
        "onboarding-app",
        tier=1,
        display_name="Onboarding application",
        runbook="service-failure",
        restart={"controller": "command", "argv": ["systemctl", "restart", "onboarding"], "timeout_seconds": 60},
    )
    make_check(app, "health", "http", {"url": "http://127.0.0.1:8001/health", "keyword": '"status": "ok"'})
    make_check(app, "port", "tcp", {"host": "127.0.0.1", "port": 8001}, interval_seconds=30)
    database = make_service("demo-db-primary", kind="database", owner_role=Role.DBA.value, description="PostgreSQL")
    make_check(database, "postgres", "postgres", node=demo.nodes.get(name="primary"))
    local = StorageTarget.objects.create(name="local", kind="local", config={"path": "/var/backups/hadr"})
    offsite = StorageTarget.objects.create(name="offsite", kind="s3", config=S3_CONFIG)
    onboarding = BackupPolicy.objects.create(name="demo-onboarding", cluster=demo, dbname="onboarding", storage=local)
    BackupPolicy.objects.create(
        name="demo-offsite",
        cluster=demo,
        dbname="postgres",
        engine="pgbackrest",
        storage=offsite,
        schedule="30 3 * * 0",
        enabled=False,
        retention="calendar",
        keep_monthly=12,
        rpo_minutes=7 * 1440,
    )
    make_check(database, "backup", "backup", policy=onboarding, interval_seconds=60, failures_before_down=1)
    beat = make_service("beat", kind="job", tier=3)
    make_check(beat, "heartbeat", "heartbeat", {"period_seconds": 60, "grace_seconds": 60}, failures_before_down=1)
    AlertChannel.objects.create(name="ops-mail", kind="email", address="ops@example.com")
    AlertChannel.objects.create(name="chat", kind="webhook", address_env="HADR_CHAT_WEBHOOK", min_tier=2)
    Funnel.objects.create(**DEMO_FUNNEL | {"cluster": demo, "node": None})
    mauricio = Contact.objects.create(name="Mauricio", roles=["DevOps", "DBA"], phone="+55 11 90000-0000")
    ana = Contact.objects.create(name="Ana", roles=["Developer"], email="ana@example.com", hours="Mon–Fri 9–18")
    EscalationStep.objects.create(severity="sev1", position=1, contact=mauricio)
    EscalationStep.objects.create(severity="sev1", position=2, contact=ana)


def exported(*, include_tokens: bool = False) -> str:
    return catalog_dump_toml(catalog_export(include_tokens=include_tokens))


MODELS = (Cluster, Node, StorageTarget, BackupPolicy, Service, Check, AlertChannel, Funnel, Contact, EscalationStep)
EVERY_COUNT = {
    "Cluster": 1,
    "Node": 2,
    "StorageTarget": 2,
    "BackupPolicy": 2,
    "Service": 3,
    "Check": 5,
    "AlertChannel": 2,
    "Funnel": 1,
    "Contact": 2,
    "EscalationStep": 2,
}


def counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in MODELS}


def catalog_empty() -> None:
    Service.objects.all().delete()
    BackupPolicy.objects.all().delete()
    StorageTarget.objects.all().delete()
    Cluster.objects.all().delete()
    AlertChannel.objects.all().delete()
    Funnel.objects.all().delete()
    Contact.objects.all().delete()


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


# --- Round trip and idempotence --------------------------------------------------------------------


def test_export_import_export_is_byte_identical(catalog):
    text = exported()
    assert "[[clusters.nodes]]" in text and "[[services.checks]]" in text and "[[alert_channels]]" in text
    assert (
        'restart = { argv = ["systemctl", "restart", "onboarding"], controller = "command", timeout_seconds = 60 }'
        in text
    )
    assert 'password_env = "HADR_DEMO_PASSWORD"' in text
    # tables' keys sorted (not in the database's order), strings escaped
    assert 'config = { keyword = "\\"status\\": \\"ok\\"", url = "http://127.0.0.1:8001/health" }' in text
    assert '[[storage_targets]]\nname = "local"\nkind = "local"\nconfig = { path = "/var/backups/hadr" }\n' in text
    assert (
        'config = { access_key_env = "HADR_S3_ACCESS_KEY", bucket = "hadr-backups", endpoint_url = '
        '"https://s3.example.com", prefix = "demo", region = "eu-west-1", secret_key_env = "HADR_S3_SECRET_KEY", '
        'sse = "AES256" }\n'
    ) in text
    assert (
        '[[backup_policies]]\nname = "demo-onboarding"\ncluster = "demo"\ndbname = "onboarding"\n'
        'engine = "pg_dump"\ncompress = ""\njobs = 2\nstorage = "local"\ncopy_storage = ""\nset_type = "full"\n'
        'wal_rpo_seconds = 900\narchive_push_queue_max = ""\nschedule = "0 2 * * *"\nenabled = true\n'
        'retention = "age"\nkeep_scheduled_days = 7\nkeep_manual_days = 30\nkeep_daily = 7\nkeep_weekly = 4\n'
        "keep_monthly = 6\nrpo_minutes = 1440\ngrace_minutes = 60\n"
    ) in text
    # sections in the order they are imported, each sorted by name
    headers = re.findall(r"^\[\[(\w+)\]\]\nname = \"(.*)\"", text, re.MULTILINE)
    assert headers == [
        ("clusters", "demo"),
        ("storage_targets", "local"),
        ("storage_targets", "offsite"),
        ("backup_policies", "demo-offsite"),
        ("backup_policies", "demo-onboarding"),
        ("services", "beat"),
        ("services", "demo-db-primary"),
        ("services", "onboarding-app"),
        ("alert_channels", "chat"),
        ("alert_channels", "ops-mail"),
        ("funnels", "onboarding"),
        ("contacts", "Ana"),
        ("contacts", "Mauricio"),
    ]
    assert tomllib.loads(text) == catalog_export()  # the text says exactly what the data says
    assert exported() == text  # stable between two exports

    catalog_empty()
    assert sum(counts().values()) == 0
    report = catalog_import(catalog_load_toml(text))

    # the postgres check names a node, the backup check a policy, that only exist because the same file creates them
    assert sorted(report.created) == sorted(EVERYTHING)
    assert report.updated == report.unchanged == report.deleted == []
    assert exported() == text
    assert counts() == EVERY_COUNT
    # the scheduler sets a new policy's first run (on its next tick)
    assert set(BackupPolicy.objects.values_list("next_run_at", flat=True)) == {None}


def test_importing_the_same_file_twice_changes_nothing_the_second_time(catalog):
    data = catalog_load_toml(exported())
    catalog_empty()
    catalog_import(data)
    before = counts()

    again = catalog_import(data)

    assert again.created == again.updated == again.deleted == []
    assert sorted(again.unchanged) == sorted(EVERYTHING)
    assert counts() == before == EVERY_COUNT


def test_a_changed_interval_is_an_update_and_the_check_runs_soon(catalog):
    later = timezone.now() + timedelta(days=1)
    Check.objects.update(next_run_at=later)
    data = catalog_load_toml(exported())
    app = next(service for service in data["services"] if service["name"] == "onboarding-app")
    next(check for check in app["checks"] if check["name"] == "health")["interval_seconds"] = 60

    report = catalog_import(data)

    assert report.updated == ["check onboarding-app/health"]
    assert report.created == report.deleted == []
    health = Check.objects.get(service__name="onboarding-app", name="health")
    assert health.interval_seconds == 60
    assert abs(health.next_run_at - timezone.now()) < timedelta(seconds=10)
    assert set(Check.objects.exclude(pk=health.pk).values_list("next_run_at", flat=True)) == {later}


def test_prune_deletes_what_the_file_does_not_have_and_only_with_prune(catalog):
    data = catalog_load_toml(exported())
    data["services"] = [service for service in data["services"] if service["name"] != "beat"]
    app = next(service for service in data["services"] if service["name"] == "onboarding-app")
    app["checks"] = [check for check in app["checks"] if check["name"] != "port"]
    data["clusters"][0]["nodes"] = [node for node in data["clusters"][0]["nodes"] if node["name"] != "replica"]
    data["alert_channels"] = [channel for channel in data["alert_channels"] if channel["name"] != "chat"]
    data["backup_policies"] = [policy for policy in data["backup_policies"] if policy["name"] != "demo-offsite"]
    data["storage_targets"] = [target for target in data["storage_targets"] if target["name"] != "offsite"]
    data["contacts"] = [contact for contact in data["contacts"] if contact["name"] != "Ana"]
    data["escalation"] = [{"severity": "sev1", "contacts": ["Mauricio"]}]
    # the check about to go is the one keeping its service down
    Check.objects.filter(name="port").update(state=State.DOWN)
    Service.objects.filter(name="onboarding-app").update(state=State.DOWN)

    kept = catalog_import(data)
    assert kept.deleted == []
    assert counts() == EVERY_COUNT | {"EscalationStep": 1}  # a list in the file is the whole list

    pruned = catalog_import(data, prune=True)

    assert sorted(pruned.deleted) == [
        "channel chat",
        "check beat/heartbeat",
        "check onboarding-app/port",
        "contact Ana",
        "node demo/replica",
        "policy demo-offsite",
        "service beat",
        "storage offsite",
    ]
    assert pruned.created == [] and kept.updated == ["escalation sev1"]
    assert counts() == {
        "Cluster": 1,
        "Node": 1,
        "StorageTarget": 1,
        "BackupPolicy": 1,
        "Service": 2,
        "Check": 3,
        "AlertChannel": 1,
        "Funnel": 1,
        "Contact": 1,
        "EscalationStep": 1,
    }
    assert not Service.objects.filter(name="beat").exists()
    # the service's state was recomputed from the checks it has left
    assert Service.objects.get(name="onboarding-app").state == State.UNKNOWN


def test_prune_deletes_an_escalation_list_missing_from_the_file_once(catalog):
    data = catalog_load_toml(exported())
    data["escalation"] = []

    report = catalog_import(data, prune=True)

    assert report.deleted == ["escalation sev1"]  # one list, however many contacts it had
    assert not EscalationStep.objects.exists() and Contact.objects.count() == 2


def test_prune_deletes_clusters_missing_from_the_file(catalog):
    data = catalog_load_toml(exported())
    data["clusters"] = data["backup_policies"] = data["funnels"] = []
    data["services"] = [service for service in data["services"] if service["name"] != "demo-db-primary"]

    report = catalog_import(data, prune=True)

    # the policies (which protect their cluster) go first
    assert report.deleted[:2] == ["policy demo-offsite", "policy demo-onboarding"]
    assert "cluster demo" in report.deleted and "node demo/primary" in report.deleted
    assert not Cluster.objects.exists() and not Node.objects.exists() and not BackupPolicy.objects.exists()
    assert StorageTarget.objects.count() == 2  # still in the file


def test_pruning_a_cluster_a_kept_policy_names_is_refused(catalog):
    data = catalog_load_toml(exported())
    data["clusters"] = []
    data["services"] = [service for service in data["services"] if service["name"] != "demo-db-primary"]
    before, text = counts(), exported()

    with pytest.raises(CatalogError) as error:
        catalog_import(data, prune=True)

    message = "No cluster 'demo' in the file, and --prune deletes the one in the database."
    assert error.value.problems == [
        f"backup_policies[0] (demo-offsite).cluster: {message}",
        f"backup_policies[1] (demo-onboarding).cluster: {message}",
        f"funnels[0] (onboarding).cluster: {message}",
    ]
    assert counts() == before and exported() == text
    # without --prune, a policy may name what only the database has
    data["storage_targets"] = []
    assert catalog_import(data).deleted == []


def test_a_policy_or_storage_target_with_backups_is_not_pruned(catalog):
    policy = BackupPolicy.objects.get(name="demo-onboarding")
    for status in ("good", "failed", "deleted"):
        Backup.objects.create(
            policy=policy, storage=policy.storage, kind="scheduled", engine="pg_dump", status=status,
            key=f"demo-onboarding/{status}.dump", size=1, sha256="0" * 64,
        )  # fmt: skip
    data = catalog_load_toml(exported())
    data["backup_policies"] = [policy for policy in data["backup_policies"] if policy["name"] != "demo-onboarding"]
    demo_db = next(service for service in data["services"] if service["name"] == "demo-db-primary")
    demo_db["checks"] = [check for check in demo_db["checks"] if check["kind"] != "backup"]
    before, text = counts(), exported()

    with pytest.raises(CatalogError) as error:
        catalog_import(data, prune=True)

    # deleting the policy would delete its backups' history (a deleted backup's record included)
    assert error.value.problems == [
        "backup_policies: policy demo-onboarding is not in the file, but it has 3 backups on record: "
        "keep it in the file (enabled = false stops its schedule)."
    ]
    assert counts() == before and exported() == text

    # the storage target the backups are in is kept for them too, whichever policy took them
    data["storage_targets"] = [target for target in data["storage_targets"] if target["name"] != "local"]
    Backup.objects.update(policy=BackupPolicy.objects.get(name="demo-offsite"))
    with pytest.raises(CatalogError) as error:
        catalog_import(data, prune=True)
    assert error.value.problems == [
        "storage_targets: storage local is not in the file, but it holds 3 backups on record: keep it in the file."
    ]
    assert counts() == before and exported() == text


def test_a_policy_keeps_its_next_run_and_a_new_one_leaves_it_to_the_scheduler(catalog):
    next_run = timezone.now() + timedelta(hours=3)
    BackupPolicy.objects.update(next_run_at=next_run)
    data = catalog_load_toml(exported())
    onboarding = next(policy for policy in data["backup_policies"] if policy["name"] == "demo-onboarding")
    onboarding.update(storage="offsite", keep_daily=14, schedule="0 1 * * *")
    data["backup_policies"].append(onboarding | {"name": "demo-nightly", "storage": "local"})

    report = catalog_import(data)

    assert (report.created, report.updated) == (["policy demo-nightly"], ["policy demo-onboarding"])
    changed = BackupPolicy.objects.get(name="demo-onboarding")
    assert (changed.storage.name, changed.keep_daily, changed.schedule) == ("offsite", 14, "0 1 * * *")
    assert changed.next_run_at == next_run
    assert BackupPolicy.objects.get(name="demo-nightly").next_run_at is None
    backups_schedule_due()
    assert BackupPolicy.objects.get(name="demo-nightly").next_run_at is not None


def test_pruning_a_node_a_kept_check_still_names_is_refused(catalog):
    data = catalog_load_toml(exported())
    data["clusters"][0]["nodes"] = [node for node in data["clusters"][0]["nodes"] if node["name"] != "primary"]
    before = counts()

    with pytest.raises(CatalogError) as error:
        catalog_import(data, prune=True)

    assert error.value.problems == [
        "services[1] (demo-db-primary).checks[1] (postgres).config.node: No node 'primary' in cluster 'demo'."
    ]
    assert counts() == before


# --- Bad files -------------------------------------------------------------------------------------


def minimal() -> dict[str, Any]:
    return {
        "clusters": [
            {"name": "demo", "nodes": [{"name": "primary", "host": "127.0.0.1", "port": 5441}]},
        ],
        "storage_targets": [
            {"name": "local", "kind": "local", "config": {"path": "/var/backups/hadr"}},
            {
                "name": "offsite",
                "kind": "s3",
                "config": {"bucket": "b", "access_key_env": "HADR_S3_KEY", "secret_key_env": "HADR_S3_SECRET"},
            },
        ],
        "backup_policies": [{"name": "nightly", "cluster": "demo", "dbname": "onboarding", "storage": "local"}],
        "services": [
            {
                "name": "web",
                "display_name": "Web",
                "kind": "web",
                "checks": [
                    {"name": "health", "kind": "http", "config": {"url": "http://127.0.0.1:8001/health"}},
                    {"name": "db", "kind": "postgres", "config": {"cluster": "demo", "node": "primary"}},
                    {"name": "backup", "kind": "backup", "config": {"policy": "nightly"}},
                ],
            }
        ],
        "alert_channels": [],
    }


def test_restore_drills_and_verification_queries_round_trip(db):
    data = minimal()
    verify = [
        {"name": "users", "sql": "SELECT count(*) FROM app_users", "expect": "> 0"},
        {"name": "fresh", "sql": "SELECT max(created_at) FROM onboarding_events", "expect": "within 2h of backup"},
    ]
    data["backup_policies"][0] |= {"drill_schedule": "30 3 * * 1", "verify": verify}
    catalog_import(data)
    policy = BackupPolicy.objects.get()
    assert (policy.drill_schedule, policy.verify) == ("30 3 * * 1", verify)
    text = exported()
    assert (
        'drill_schedule = "30 3 * * 1"\nverify = [{ expect = "> 0", name = "users", sql = "SELECT count(*) FROM app_users" }'
        in text
    )
    assert catalog_import(catalog_load_toml(text)).unchanged[:5] == [
        "cluster demo",
        "node demo/primary",
        "storage local",
        "storage offsite",
        "policy nightly",
    ]
    # left out: weekly drills (Sundays 04:00) and no queries
    catalog_import(minimal())
    policy.refresh_from_db()
    assert (policy.drill_schedule, policy.verify) == ("0 4 * * 0", [])


def test_the_minimal_file_is_valid(db):
    report = catalog_import(minimal())
    assert report.created == [
        "cluster demo",
        "node demo/primary",
        "storage local",
        "storage offsite",
        "policy nightly",
        "service web",
        "check web/health",
        "check web/db",
        "check web/backup",
    ]
    check = Check.objects.get(name="health")
    assert (check.interval_seconds, check.timeout_seconds, check.enabled) == (30, 5.0, True)  # the model's defaults
    policy = BackupPolicy.objects.get()
    assert (policy.engine, policy.schedule, policy.jobs, policy.retention, policy.enabled) == (
        "pg_dump",
        "0 2 * * *",
        2,
        "age",
        True,
    )


def broken(change: Any) -> dict[str, Any]:
    data = copy.deepcopy(minimal())
    change(data)
    return data


def _set(path: list[Any], value: Any) -> Any:
    def change(data: dict[str, Any]) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


BAD = {
    "unknown service kind": (
        _set(["services", 0, "kind"], "mainframe"),
        "services[0] (web).kind: unknown kind 'mainframe'; one of web, worker, database, cache, queue, job, host.",
    ),
    "unknown check kind": (
        _set(["services", 0, "checks", 0, "kind"], "ping"),
        "services[0] (web).checks[0] (health).kind: unknown kind 'ping'; one of http, tcp, postgres",
    ),
    "bad check url": (
        _set(["services", 0, "checks", 0, "config", "url"], "htp:/x"),
        "services[0] (web).checks[0] (health).config.url: Enter a full http:// or https:// URL",
    ),
    "duplicate service": (
        lambda data: data["services"].append(copy.deepcopy(data["services"][0])),
        "services[1] (web).name: 'web' is already used by services[0] (web).",
    ),
    "port out of range": (
        _set(["clusters", 0, "nodes", 0, "port"], 70000),
        "clusters[0] (demo).nodes[0] (primary).port: Ensure this value is less than or equal to 65535.",
    ),
    "postgres check naming an unknown node": (
        _set(["services", 0, "checks", 1, "config", "node"], "ghost"),
        "services[0] (web).checks[1] (db).config.node: No node 'ghost' in cluster 'demo'.",
    ),
    "unknown key": (
        _set(["services", 0, "colour"], "blue"),
        "services[0] (web).colour: unknown key; expected one of name, display_name, kind,",
    ),
    "unknown section": (
        _set(["checks"], []),
        "checks: unknown section; expected clusters, storage_targets, backup_policies, services, alert_channels, funnels, contacts, escalation.",
    ),
    "missing required key": (
        lambda data: data["services"][0].pop("display_name"),
        "services[0] (web).display_name: required, but missing.",
    ),
    "wrong type": (
        _set(["clusters", 0, "nodes", 0, "port"], "5441"),
        "clusters[0] (demo).nodes[0] (primary).port: expected a whole number, got a string '5441'.",
    ),
    "a boolean is no number": (
        _set(["services", 0, "tier"], True),
        "services[0] (web).tier: expected a whole number, got true or false True.",
    ),
    "unknown owner role": (
        _set(["services", 0, "owner_role"], "Janitor"),
        "services[0] (web).owner_role: unknown owner_role 'Janitor'; one of DevOps, DBA,",
    ),
    "tier out of range": (
        _set(["services", 0, "tier"], 7),
        "services[0] (web).tier: unknown tier 7; one of 1, 2, 3, 4.",
    ),
    "bad slug": (
        _set(["services", 0, "name"], "Web App"),
        "services[0] (Web App).name: Lower-case letters, digits and dashes.",
    ),
    "timeout not shorter than interval": (
        _set(["services", 0, "checks", 0, "timeout_seconds"], 30),
        "services[0] (web).checks[0] (health).timeout_seconds: The timeout must be shorter than the interval",
    ),
    "a date cannot be stored as JSON": (
        _set(["services", 0, "restart"], {"after": timezone.now()}),
        "services[0] (web).restart.after: ",
    ),
    "channel kind": (
        _set(["alert_channels"], [{"name": "pager", "kind": "sms"}]),
        "alert_channels[0] (pager).kind: unknown kind 'sms'; one of email, webhook.",
    ),
    "unknown storage kind": (
        _set(["storage_targets", 0, "kind"], "ftp"),
        "storage_targets[0] (local).kind: unknown kind 'ftp'; one of local, s3.",
    ),
    "local storage without a path": (
        lambda data: data["storage_targets"][0].pop("config"),
        "storage_targets[0] (local).config.path: required, but missing.",
    ),
    "s3 storage with an empty bucket": (
        _set(["storage_targets", 1, "config", "bucket"], ""),
        "storage_targets[1] (offsite).config.bucket: required for s3 storage, but empty.",
    ),
    "unknown storage config key": (
        _set(["storage_targets", 0, "config", "bucket"], "b"),
        "storage_targets[0] (local).config.bucket: unknown key; expected one of path.",
    ),
    "credential that is not a variable name": (
        _set(["storage_targets", 1, "config", "secret_key_env"], "wJalrXUtnFEMI/K7MDENG/bPxRfiCY"),
        "storage_targets[1] (offsite).config.secret_key_env: The name of an environment variable, e.g. HADR_S3_",
    ),
    "one credential without the other": (
        lambda data: data["storage_targets"][1]["config"].pop("secret_key_env"),
        "storage_targets[1] (offsite).config: set both access_key_env and secret_key_env, or neither",
    ),
    "parts too small for S3": (
        _set(["storage_targets", 1, "config", "multipart_chunk_mb"], 1),
        "storage_targets[1] (offsite).config.multipart_chunk_mb: Ensure this value is greater than or equal to 5.",
    ),
    "bad cron": (
        _set(["backup_policies", 0, "schedule"], "every night"),
        "backup_policies[0] (nightly).schedule: 'every night' is not a cron expression (e.g. '0 2 * * *'",
    ),
    "unknown engine": (
        _set(["backup_policies", 0, "engine"], "mysqldump"),
        "backup_policies[0] (nightly).engine: unknown engine 'mysqldump'; one of pg_dump, pg_dump_dir, pgbackrest.",
    ),
    "unknown retention": (
        _set(["backup_policies", 0, "retention"], "forever"),
        "backup_policies[0] (nightly).retention: unknown retention 'forever'; one of age, calendar.",
    ),
    "jobs out of range": (
        _set(["backup_policies", 0, "jobs"], 17),
        "backup_policies[0] (nightly).jobs: Ensure this value is less than or equal to 16.",
    ),
    "missing storage": (
        _set(["backup_policies", 0, "storage"], "nas"),
        "backup_policies[0] (nightly).storage: No storage target 'nas' in the file or the database.",
    ),
    "unknown cluster": (
        _set(["backup_policies", 0, "cluster"], "prod"),
        "backup_policies[0] (nightly).cluster: No cluster 'prod' in the file or the database.",
    ),
    "policy without a database": (
        lambda data: data["backup_policies"][0].pop("dbname"),
        "backup_policies[0] (nightly).dbname: required, but missing.",
    ),
    "backup check naming an unknown policy": (
        _set(["services", 0, "checks", 2, "config", "policy"], "weekly"),
        "services[0] (web).checks[2] (backup).config.policy: No backup policy named 'weekly'.",
    ),
    "bad drill schedule": (
        _set(["backup_policies", 0, "drill_schedule"], "weekly"),
        "backup_policies[0] (nightly).drill_schedule: 'weekly' is not a cron expression",
    ),
    "verification query that writes": (
        _set(["backup_policies", 0, "verify"], [{"name": "wipe", "sql": "DELETE FROM app_users", "expect": "= 0"}]),
        "backup_policies[0] (nightly).verify: query 'wipe': sql refused: a verification query must be a SELECT; "
        "DELETE is not allowed",
    ),
    "verification query with two statements": (
        _set(["backup_policies", 0, "verify"], [{"name": "two", "sql": "SELECT 1; DROP TABLE app_users"}]),
        "backup_policies[0] (nightly).verify: query 'two': sql refused: a verification query must be one SELECT "
        "statement; this has 2 statements",
    ),
    "unknown expectation": (
        _set(["backup_policies", 0, "verify"], [{"name": "n", "sql": "SELECT 1", "expect": "about 3"}]),
        "backup_policies[0] (nightly).verify: query 'n': unknown expectation 'about 3'; expect: '> 0', '>= N'",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_file_names_the_place_and_changes_nothing(catalog, case):
    change, expected = BAD[case]
    before, text = counts(), exported(include_tokens=True)

    with pytest.raises(CatalogError) as error:
        catalog_import(broken(change), prune=True)

    assert len(error.value.problems) == 1, error.value.problems
    assert error.value.problems[0].startswith(expected), error.value.problems
    assert counts() == before and exported(include_tokens=True) == text


def test_a_toml_syntax_error_names_the_line():
    with pytest.raises(CatalogError, match=r"line 3, column 8"):
        catalog_load_toml('[[services]]\nname = "web"\nkind = = "web"\n')


def test_every_problem_is_reported_at_once(catalog):
    def many(data: dict[str, Any]) -> None:
        data["services"][0]["kind"] = "mainframe"
        data["services"][0]["checks"][0]["config"]["url"] = "htp:/x"
        data["services"][0]["checks"][1]["config"]["node"] = "ghost"
        data["clusters"][0]["nodes"][0]["port"] = 70000
        data["services"].append(copy.deepcopy(data["services"][0]))
        data["alert_channels"] = [{"name": "pager"}]
        data["storage_targets"][1]["config"].update(access_key_env="AKIA/123", colour="blue")
        data["backup_policies"][0].update(schedule="nightly", storage="nas")

    before, text = counts(), exported()
    with pytest.raises(CatalogError) as error:
        catalog_import(broken(many))

    url = "Enter a full http:// or https:// URL, e.g. http://127.0.0.1:8001/health."
    kind = "unknown kind 'mainframe'; one of web, worker, database, cache, queue, job, host."
    assert error.value.problems == [  # in the order of the file
        "clusters[0] (demo).nodes[0] (primary).port: Ensure this value is less than or equal to 65535.",
        "storage_targets[1] (offsite).config.colour: unknown key; expected one of bucket, prefix, endpoint_url, "
        "region, sse, access_key_env, secret_key_env, multipart_chunk_mb, max_concurrency, verify_tls, ca_file.",
        "storage_targets[1] (offsite).config.access_key_env: The name of an environment variable, e.g. "
        "HADR_S3_ACCESS_KEY (never the secret itself).",
        "backup_policies[0] (nightly).storage: No storage target 'nas' in the file or the database.",
        "backup_policies[0] (nightly).schedule: 'nightly' is not a cron expression (e.g. '0 2 * * *' for 02:00 "
        "every day).",
        f"services[0] (web).kind: {kind}",
        f"services[0] (web).checks[0] (health).config.url: {url}",
        # demo/ghost is neither in the file nor in the database: reported although its cluster is broken
        "services[0] (web).checks[1] (db).config.node: No node 'ghost' in cluster 'demo'.",
        f"services[1] (web).kind: {kind}",
        "services[1] (web).name: 'web' is already used by services[0] (web).",
        f"services[1] (web).checks[0] (health).config.url: {url}",
        "services[1] (web).checks[1] (db).config.node: No node 'ghost' in cluster 'demo'.",
        "alert_channels[0] (pager).kind: required, but missing.",
    ]
    assert str(error.value) == "\n".join(error.value.problems)
    assert counts() == before and exported() == text


def test_checks_naming_a_node_of_a_broken_cluster_are_not_blamed_for_it(db):
    data = broken(_set(["clusters", 0, "max_failover_lag_bytes"], -1))
    with pytest.raises(CatalogError) as error:
        catalog_import(data)
    assert error.value.problems == [
        "clusters[0] (demo).max_failover_lag_bytes: Ensure this value is greater than or equal to 0."
    ]
    assert not Cluster.objects.exists()


# --- Tokens ----------------------------------------------------------------------------------------


def test_tokens_are_exported_only_on_request_and_kept_by_an_import_without_them(catalog):
    heartbeat = Check.objects.get(name="heartbeat")
    tokens = dict(Check.objects.values_list("name", "token"))

    plain = exported()
    assert "token" not in plain and heartbeat.token not in plain

    data = catalog_export(include_tokens=True)
    beat = next(service for service in data["services"] if service["name"] == "beat")
    assert beat["checks"][0]["token"] == heartbeat.token
    assert all("token" not in check for s in data["services"] if s["name"] != "beat" for check in s["checks"])
    assert heartbeat.token in catalog_dump_toml(data)

    report = catalog_import(catalog_load_toml(plain))
    assert report.updated == []
    assert dict(Check.objects.values_list("name", "token")) == tokens

    beat["checks"][0]["token"] = "a-new-url-key-from-the-file"
    assert catalog_import(data).updated == ["check beat/heartbeat"]
    assert Check.objects.get(name="heartbeat").token == "a-new-url-key-from-the-file"


def test_tokens_restore_push_urls_after_losing_the_environment(catalog):
    text = exported(include_tokens=True)
    token = Check.objects.get(name="heartbeat").token
    catalog_empty()
    catalog_import(catalog_load_toml(text))
    assert Check.objects.get(name="heartbeat").token == token


# --- Permissions and audit -------------------------------------------------------------------------


def test_a_real_import_is_audited_and_a_dry_run_is_not(catalog):
    devops = make_user("dev", Role.DEVOPS)
    data = catalog_load_toml(exported())
    Service.objects.filter(name="beat").delete()

    dry = catalog_import(data, actor=devops, dry_run=True)
    assert dry.created == ["service beat", "check beat/heartbeat"]
    assert not Service.objects.filter(name="beat").exists()
    assert not AuditEntry.objects.filter(action="catalog.import").exists()

    real = catalog_import(data, actor=devops, address="10.0.0.7", prune=True)
    assert real.created == ["service beat", "check beat/heartbeat"]
    entry = AuditEntry.objects.get(action="catalog.import")
    assert (entry.actor_name, entry.target, entry.outcome, entry.address) == ("dev", "catalog", "success", "10.0.0.7")
    assert entry.parameters == {"created": 2, "updated": 0, "deleted": 0, "prune": True}


def test_only_catalog_editors_may_import(catalog):
    viewer = make_user("val", Role.VIEWER)
    data = catalog_load_toml(exported())
    with pytest.raises(PermissionDenied, match=r"Only DevOps may do this \(edit_catalog\)"):
        catalog_import(data, actor=viewer, dry_run=True)
    assert not AuditEntry.objects.exists()  # a dry run writes nothing, not even its refusal
    with pytest.raises(PermissionDenied, match=r"Only DevOps may do this \(edit_catalog\)"):
        catalog_import(data, actor=viewer)
    assert AuditEntry.objects.get(action="catalog.import").outcome == "refused"


# --- The command -----------------------------------------------------------------------------------


def test_command_exports_and_dry_runs_an_import(catalog, tmp_path: Path):
    file = tmp_path / "catalog.toml"
    output = run("catalog", "export", str(file))
    assert (
        f"Catalog exported to {file}: 1 clusters, 2 storage targets, 2 backup policies, 3 services (5 checks), 2 alert channels, 1 funnels."
        in output
    )
    assert file.read_text() == exported()
    Service.objects.filter(name="beat").delete()
    before = counts()

    output = run("catalog", "import", str(file), "--dry-run")

    assert "Dry run (nothing was changed): 2 created, 0 updated, 19 unchanged, 0 deleted." in output
    assert "  created   service beat\n" in output and "  unchanged cluster demo\n" in output
    assert counts() == before
    assert not AuditEntry.objects.exists()

    output = run("catalog", "import", str(file))
    assert "Catalog imported: 2 created, 0 updated, 19 unchanged, 0 deleted." in output
    assert Service.objects.filter(name="beat").exists()


def test_command_export_to_stdout(catalog):
    assert run("catalog", "export", "-") == exported()


def test_command_reads_stdin(catalog, monkeypatch):
    monkeypatch.setattr("sys.stdin", StringIO(exported()))
    assert "Catalog imported: 0 created, 0 updated, 21 unchanged, 0 deleted." in run("catalog", "import", "-")


def test_command_names_a_missing_file(db, tmp_path: Path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(CommandError, match=rf"Cannot read {missing}: No such file or directory"):
        run("catalog", "import", str(missing))


def test_command_lists_every_problem_on_its_own_line(catalog, tmp_path: Path):
    file = tmp_path / "bad.toml"
    file.write_text(catalog_dump_toml(broken(lambda d: d["services"][0].update(kind="mainframe", tier=9))))
    before = counts()
    with pytest.raises(CommandError) as error:
        run("catalog", "import", str(file))
    assert str(error.value).splitlines() == [
        f"{file}: 2 problems, nothing was changed:",
        "services[0] (web).kind: unknown kind 'mainframe'; one of web, worker, database, cache, queue, job, host.",
        "services[0] (web).tier: unknown tier 9; one of 1, 2, 3, 4.",
    ]
    assert counts() == before


def test_command_refuses_a_viewer_clearly(catalog, tmp_path: Path):
    make_user("val", Role.VIEWER)
    file = tmp_path / "catalog.toml"
    run("catalog", "export", str(file))
    with pytest.raises(CommandError, match=r"Only DevOps may do this \(edit_catalog\)"):
        run("catalog", "import", str(file), "--user", "val")


@pytest.mark.parametrize(
    ("channel", "message"),
    [
        ({"name": "m", "kind": "email", "target": "not-an-address"}, "alert_channels[0] (m).target"),
        ({"name": "m", "kind": "email", "target": ""}, "Give at least one e-mail address"),
        ({"name": "h", "kind": "webhook", "target": "ftp://x"}, "Give the webhook's http(s) URL"),
        # the model's fields are address / address_env: the messages name the file's keys
        ({"name": "h", "kind": "webhook", "target_env": "lower-case"}, "(h).target_env: The name of an environment"),
    ],
)
def test_alert_channels_are_validated(db, channel, message):
    with pytest.raises(CatalogError, match=re.escape(message)):
        catalog_import({"alert_channels": [channel]})
    assert not AlertChannel.objects.exists()


# --- Seeding the demo ------------------------------------------------------------------------------


def test_seed_demo_imports_the_demo_backups_and_a_second_run_changes_nothing(db, infra, monkeypatch, tmp_path):
    nodes = f"primary=127.0.0.1:{infra.primary.port},replica=127.0.0.1:{infra.replica.port}"
    monkeypatch.setenv("HADR_DEMO_NODES", nodes)
    monkeypatch.setenv("HADR_BACKUP_DIR", str(tmp_path / "backups"))
    monkeypatch.setenv("HADR_DEMO_BACKUP_SCHEDULE", "*/5 * * * *")

    first = re.fullmatch(r"Roles ready\. Demo catalog: (\d+) created, 0 updated, 0 unchanged\.\n", run("seed_demo"))
    assert first, "the first run creates everything"
    assert set(Group.objects.values_list("name", flat=True)) == {role.value for role in Role}
    policy = BackupPolicy.objects.select_related("cluster", "storage").get()
    assert (policy.name, policy.cluster.name, policy.dbname, policy.schedule) == (
        "demo-onboarding",
        "demo",
        "onboarding",
        "*/5 * * * *",
    )
    assert (policy.storage.name, policy.storage.kind, policy.storage.config) == (
        "local",
        "local",
        {"path": str(tmp_path / "backups")},
    )
    assert policy.next_run_at is None  # the scheduler's first tick sets it
    backups_schedule_due()
    next_run = BackupPolicy.objects.get().next_run_at
    assert next_run is not None
    text = exported()

    second = run("seed_demo")

    assert second == f"Roles ready. Demo catalog: 0 created, 0 updated, {first.group(1)} unchanged.\n"
    assert exported() == text
    assert BackupPolicy.objects.get().next_run_at == next_run


def test_the_demo_catalog_has_backups_only_with_a_demo_cluster(settings):
    bare = demo_catalog({})
    assert bare["clusters"] == bare["storage_targets"] == bare["backup_policies"] == []
    demo = demo_catalog({"HADR_DEMO_NODES": "primary=127.0.0.1:5441"})
    assert demo["storage_targets"] == [
        {"name": "local", "kind": "local", "config": {"path": str(settings.BASE_DIR / ".run" / "backups")}}
    ]
    assert [(p["name"], p["cluster"], p["storage"], p["schedule"]) for p in demo["backup_policies"]] == [
        ("demo-onboarding", "demo", "local", "0 2 * * *")
    ]
    assert list(demo) == catalog_sections.names()
