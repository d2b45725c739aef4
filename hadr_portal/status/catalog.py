"""The catalog as code: clusters with their nodes, backup storage targets and policies, services with their
checks, alert channels and conversion funnels as one TOML file.

Kept in git, the file re-creates the whole setup, backups included, after the environment is lost:

- `catalog_export()` / `catalog_dump_toml()`  the catalog as data / as TOML, ordered by name, so two
                                              exports of the same catalog are byte-identical
- `catalog_load_toml()`                       TOML text to data; syntax errors name the line and column
- `catalog_import()`                          validate everything, then upsert by name in one transaction

Secrets never appear in the file: clusters, S3 storage targets and webhook channels name environment
variables (`password_env`, `access_key_env` / `secret_key_env`, `target_env`). Push-check tokens (the
heartbeat / host-push URL keys) and pushed funnels' API tokens are written only on request, and an import without
them keeps the existing ones.

A backup policy's `next_run_at` is not in the file: the scheduler sets it (a new policy's on its next tick),
and an import keeps it.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Any

import tomli_w
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.db import models, transaction
from django.db.models import Count
from django.utils import timezone

from hadr_portal.backups.models import BackupPolicy, StorageTarget
from hadr_portal.core.audit import audit_record
from hadr_portal.core.models import AuditEntry
from hadr_portal.core.permissions import Action, Role, require
from hadr_portal.core.redaction import redact
from hadr_portal.core.validators import ENV_NAME_PATTERN, env_reference_problem
from hadr_portal.databases.models import Cluster, Node
from hadr_portal.incidents.models import Contact, EscalationStep, Severity
from hadr_portal.incidents.selectors import escalation_list
from hadr_portal.metrics.models import Funnel

from .checkconfig import config_validate
from .engine import service_refresh
from .models import AlertChannel, Check, Service

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

# In the order they are imported (a backup policy names a cluster and a storage target, a backup check a policy).
SECTIONS = (
    "clusters",
    "storage_targets",
    "backup_policies",
    "services",
    "alert_channels",
    "funnels",
    "contacts",
    "escalation",
)
HEADER = (
    "# HADR Portal catalog: clusters with their nodes, backup storage targets and policies,\n"
    "# services with their checks, alert channels, conversion funnels, emergency contacts and escalation lists.\n"
    "# Re-create them with `manage.py catalog import FILE`. Secrets are never written here:\n"
    "# password_env, access_key_env, secret_key_env and target_env name environment variables.\n"
)
PRIVATE_NOTE = "# This file contains push tokens (push-check URL keys, funnel API tokens): keep it private.\n"


class CatalogError(Exception):
    """A catalog file that cannot be imported; nothing was changed.

    `problems` holds every problem found, each as `"<path>: <message>"` where the path leads an
    operator to the line, e.g. `services[2] (onboarding-app).checks[0] (health).config.url`.
    """

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))

    def __str__(self) -> str:
        return "\n".join(self.problems)


@dataclass
class ImportReport:
    """What an import did (or, for a dry run, would do), as `"<kind> <name>"` lines in file order."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    dry_run: bool = False

    def summary(self) -> str:
        return (
            f"{len(self.created)} created, {len(self.updated)} updated, "
            f"{len(self.unchanged)} unchanged, {len(self.deleted)} deleted"
        )


# --- The file's shape ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """One key a table of the file may have: the TOML types it accepts, and whether it must be there."""

    types: tuple[type, ...]
    required: bool = False


TEXT, WHOLE, NUMBER, FLAG, TABLE, ARRAY = (str,), (int,), (int, float), (bool,), (dict,), (list,)
TYPE_WORDS = {
    str: "a string",
    int: "a whole number",
    float: "a number",
    bool: "true or false",
    dict: "a table",
    list: "an array",
}

CLUSTER_KEYS = {
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
    "max_failover_lag_bytes": Key(WHOLE),
    "post_failover_hook": Key(TABLE),
    "nodes": Key(ARRAY),
}
NODE_KEYS = {
    "name": Key(TEXT, required=True),
    "host": Key(TEXT, required=True),
    "port": Key(WHOLE, required=True),
    "controller": Key(TABLE),
}
# Tables stored as JSON that the file may leave out (absent means empty: no controller, no hook).
OPTIONAL_TABLES = ("restart", "controller", "post_failover_hook")
SERVICE_KEYS = {
    "name": Key(TEXT, required=True),
    "display_name": Key(TEXT, required=True),
    "kind": Key(TEXT, required=True),
    "description": Key(TEXT),
    "tier": Key(WHOLE),
    "owner_role": Key(TEXT),
    "rto_minutes": Key(WHOLE),
    "rpo_minutes": Key(WHOLE),
    "runbook": Key(TEXT),
    "restart": Key(TABLE),
    "checks": Key(ARRAY),
}
CHECK_KEYS = {
    "name": Key(TEXT, required=True),
    "kind": Key(TEXT, required=True),
    "enabled": Key(FLAG),
    "interval_seconds": Key(WHOLE),
    "timeout_seconds": Key(NUMBER),
    "failures_before_down": Key(WHOLE),
    "config": Key(TABLE),
    "token": Key(TEXT),
}
CHANNEL_KEYS = {
    "name": Key(TEXT, required=True),
    "kind": Key(TEXT, required=True),
    "target": Key(TEXT),
    "target_env": Key(TEXT),
    "enabled": Key(FLAG),
    "min_tier": Key(WHOLE),
}
CONTACT_KEYS = {
    "name": Key(TEXT, required=True),
    "roles": Key(ARRAY),
    "phone": Key(TEXT),
    "email": Key(TEXT),
    "webhook": Key(TEXT),
    "hours": Key(TEXT),
}
ESCALATION_KEYS = {"severity": Key(TEXT, required=True), "contacts": Key(ARRAY, required=True)}  # in order
STORAGE_KEYS = {"name": Key(TEXT, required=True), "kind": Key(TEXT, required=True), "config": Key(TABLE)}
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
    },
}
STORAGE_CONFIG_MINIMUM = {"multipart_chunk_mb": 5, "max_concurrency": 1}  # S3 rejects smaller parts
CREDENTIAL_KEYS = ("access_key_env", "secret_key_env")
POLICY_KEYS = {
    "name": Key(TEXT, required=True),
    "cluster": Key(TEXT, required=True),
    "dbname": Key(TEXT, required=True),
    "engine": Key(TEXT),
    "compress": Key(TEXT),
    "jobs": Key(WHOLE),
    "storage": Key(TEXT, required=True),
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
    "verify": Key(ARRAY),  # [{name, sql, expect}]: what a restored database must answer (backups/verification.py)
}

# The model fields each table sets (names identify rows; nested arrays, config, token and the rows a policy
# names are handled apart).
NOT_FIELDS = {"name", "nodes", "checks", "config", "token", "cluster", "storage"}
CLUSTER_FIELDS = tuple(k for k in CLUSTER_KEYS if k not in NOT_FIELDS)
NODE_FIELDS = tuple(k for k in NODE_KEYS if k not in NOT_FIELDS)
SERVICE_FIELDS = tuple(k for k in SERVICE_KEYS if k not in NOT_FIELDS)
CHECK_FIELDS = tuple(k for k in CHECK_KEYS if k not in NOT_FIELDS)
CHANNEL_FIELDS = tuple(k for k in CHANNEL_KEYS if k not in NOT_FIELDS)
CONTACT_FIELDS = tuple(k for k in CONTACT_KEYS if k not in NOT_FIELDS)
STORAGE_FIELDS = tuple(k for k in STORAGE_KEYS if k not in NOT_FIELDS)
POLICY_FIELDS = tuple(k for k in POLICY_KEYS if k not in NOT_FIELDS)
POLICY_REFERENCES = {"cluster": "cluster", "storage": "storage target"}  # key: what it names

TIERS = [tier for tier, _ in Service.TIERS]
FUNNEL_KEYS = {
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
FUNNEL_FIELDS = tuple(k for k in FUNNEL_KEYS if k not in ("name", "token"))  # a funnel names its cluster as text
FUNNEL_RUN_FIELDS = {"source", "steps", "cluster", "node", "dbname", "dsn_env", "query"}  # changed: collect soon
URL_KEY_KINDS = (Check.Kind.HEARTBEAT, Check.Kind.HOST_PUSH)  # push checks whose token is in a URL (backup's is not)


# --- Export ----------------------------------------------------------------------------------------


def catalog_export(*, include_tokens: bool = False) -> dict[str, Any]:
    """The whole catalog as plain data in the file's shape, every list ordered by name.

    Tokens are included only with `include_tokens`, and only for heartbeat and host-push checks (the
    only ones whose token is a URL key anybody uses). Every other string goes through `redact`: a
    credential that was typed into a URL, a description or a query never reaches the file.
    """
    clusters = Cluster.objects.prefetch_related("nodes").order_by("name")
    policies = BackupPolicy.objects.select_related("cluster", "storage").order_by("name")
    services = Service.objects.prefetch_related("checks").order_by("name")
    catalog = {
        "clusters": [_cluster_export(cluster) for cluster in clusters],
        "storage_targets": [
            _values(target, STORAGE_KEYS) | {"config": _sorted(target.config)}
            for target in StorageTarget.objects.order_by("name")
        ],
        "backup_policies": [_policy_export(policy) for policy in policies],
        "services": [_service_export(service, include_tokens) for service in services],
        "alert_channels": [_values(channel, CHANNEL_KEYS) for channel in AlertChannel.objects.order_by("name")],
        "funnels": [_funnel_export(funnel, include_tokens) for funnel in Funnel.objects.order_by("name")],
        "contacts": [_values(contact, CONTACT_KEYS) for contact in Contact.objects.order_by("name")],
        "escalation": [
            {"severity": severity, "contacts": [contact.name for contact in escalation_list(severity)]}
            for severity in Severity.values
            if EscalationStep.objects.filter(severity=severity).exists()
        ],
    }
    return _export_redacted(catalog)


def _export_redacted(value: Any, key: str = "") -> Any:
    """The export with every string redacted, but for the tokens asked for (`token` keys)."""
    if key == "token":
        return value
    if isinstance(value, Mapping):
        return {name: _export_redacted(item, name) for name, item in value.items()}
    if isinstance(value, list):
        return [_export_redacted(item) for item in value]
    return redact(value) if isinstance(value, str) else value


def _values(instance: models.Model, keys: Iterable[str]) -> dict[str, Any]:
    data = {key: getattr(instance, key) for key in keys if key not in NOT_FIELDS or key == "name"}
    for key in OPTIONAL_TABLES:
        if key in data:
            if data[key]:
                data[key] = _sorted(data[key])
            else:
                del data[key]
    return data


def _cluster_export(cluster: Cluster) -> dict[str, Any]:
    nodes = sorted(cluster.nodes.all(), key=lambda node: node.name)
    return _values(cluster, CLUSTER_KEYS) | {"nodes": [_values(node, NODE_KEYS) for node in nodes]}


def _policy_export(policy: BackupPolicy) -> dict[str, Any]:
    # the rows it names by their names; the verification queries with their keys sorted
    shown = {"cluster": policy.cluster.name, "storage": policy.storage.name, "verify": _sorted(policy.verify)}
    return {key: shown[key] if key in shown else getattr(policy, key) for key in POLICY_KEYS}


def _service_export(service: Service, include_tokens: bool) -> dict[str, Any]:
    data = _values(service, SERVICE_KEYS)
    checks = sorted(service.checks.all(), key=lambda check: check.name)
    return data | {"checks": [_check_export(check, include_tokens) for check in checks]}


def _check_export(check: Check, include_tokens: bool) -> dict[str, Any]:
    data = _values(check, CHECK_KEYS) | {"config": _sorted(check.config)}
    if include_tokens and check.kind in URL_KEY_KINDS:
        data["token"] = check.token
    return data


def _funnel_export(funnel: Funnel, include_tokens: bool) -> dict[str, Any]:
    """The funnel's keys; its API token only on request, and only for pushed funnels (the only ones using it)."""
    data = {key: getattr(funnel, key) for key in FUNNEL_KEYS if key != "token"}
    if include_tokens and funnel.source == Funnel.Source.PUSH:
        data["token"] = funnel.token
    return data


def _sorted(value: Any) -> Any:
    """JSON with every object's keys sorted, so the file does not depend on how the database orders them."""
    if isinstance(value, Mapping):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


# --- TOML ------------------------------------------------------------------------------------------

CHILDREN = {"clusters": "nodes", "services": "checks"}
BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def catalog_load_toml(text: str) -> dict[str, Any]:
    """Parse a catalog file; a syntax error becomes a CatalogError naming the line and column."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError([f"TOML syntax: {exc}"]) from None


def catalog_dump_toml(data: Mapping[str, Any]) -> str:
    """Catalog data as TOML: `[[clusters]]` / `[[clusters.nodes]]`, `[[storage_targets]]`, `[[backup_policies]]`,
    `[[services]]` / `[[services.checks]]`, `[[alert_channels]]`, with nested tables (config, restart) inline.
    Keeps the data's order (`catalog_export()` sorts), so the same data always gives the same text.
    """
    unknown = set(data) - set(SECTIONS)
    if unknown:
        raise ValueError(f"Not catalog sections: {', '.join(sorted(unknown))}.")
    has_tokens = any(
        "token" in check for service in data.get("services", []) for check in service.get("checks", [])
    ) or any("token" in funnel for funnel in data.get("funnels", []))
    blocks = [HEADER + (PRIVATE_NOTE if has_tokens else "")]
    for section in SECTIONS:
        child = CHILDREN.get(section)
        for entry in data.get(section, []):
            blocks.append(_toml_block(f"[[{section}]]", {k: v for k, v in entry.items() if k != child}))
            blocks.extend(_toml_block(f"[[{section}.{child}]]", item) for item in (entry.get(child) or []) if child)
    return "\n".join(blocks)


def _toml_block(header: str, table: Mapping[str, Any]) -> str:
    lines = [header] + [f"{_toml_key(key)} = {_toml_value(value)}" for key, value in table.items() if value is not None]
    return "\n".join(lines) + "\n"


def _toml_key(key: str) -> str:
    return key if BARE_KEY.match(key) else _toml_value(key)


def _toml_value(value: Any) -> str:
    """One value on one line; tomli_w formats the scalars (escaping is its job, not ours)."""
    if isinstance(value, Mapping):
        # TOML has no null: a JSON null in a stored table means the same as the key being absent.
        items = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if value is None:
        raise ValueError("TOML cannot represent null inside an array.")
    return tomli_w.dumps({"v": value}).removeprefix("v = ").removesuffix("\n")


# --- Import: reading and validating ----------------------------------------------------------------


@dataclass
class _Row:
    """One table of the file matched to its row (existing or new), already updated in memory, not saved."""

    kind: str
    name: str
    instance: Any
    path: str
    valid: bool = True
    changed: set[str] = field(default_factory=set)  # the fields the file changes
    children: list[_Row] = field(default_factory=list)
    config: dict[str, Any] | None = None  # a check's raw config, validated once the clusters are in place
    names: dict[str, str] = field(default_factory=dict)  # a policy's cluster and storage, resolved once saved

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"

    @property
    def outcome(self) -> str:
        if self.instance.pk is None:
            return "created"
        return "updated" if self.changed else "unchanged"

    def take(self, name: str, value: Any) -> None:
        """Set one field from the file, remembering it if it differs from the database."""
        if getattr(self.instance, name) != value:
            setattr(self.instance, name, value)
            self.changed.add(name)


def _sections(data: Any, problems: list[str]) -> dict[str, list[tuple[str, Any]]]:
    """Each section's tables with their paths; unknown sections and non-arrays are problems."""
    found: dict[str, list[tuple[str, Any]]] = {section: [] for section in SECTIONS}
    if not isinstance(data, Mapping):
        problems.append(f"catalog: expected a table of {', '.join(SECTIONS)}, got {_describe(data)}.")
        return found
    for key in data:
        if key not in SECTIONS:
            problems.append(f"{key}: unknown section; expected {', '.join(SECTIONS)}.")
    for section in SECTIONS:
        tables = data.get(section, [])
        if not isinstance(tables, list):
            problems.append(f"{section}: expected an array of tables ([[{section}]]), got {_describe(tables)}.")
            continue
        found[section] = [(_where(section, index, raw), raw) for index, raw in enumerate(tables)]
    return found


def _in_file_order(problems: list[str]) -> list[str]:
    """Problems ordered as the tables they concern appear in an exported file (a table's own before its children's)."""

    def position(problem: str) -> tuple[int, list[int]]:
        section = re.match(r"[a-z_]*", problem)
        rank = SECTIONS.index(section.group()) if section and section.group() in SECTIONS else -1
        return rank, [int(index) for index in re.findall(r"\[(\d+)\]", problem.split(": ", 1)[0])]

    return sorted(problems, key=position)  # stable: within a table, the order they were found in


def _where(prefix: str, index: int, raw: Any) -> str:
    name = raw.get("name") if isinstance(raw, Mapping) else None
    return f"{prefix}[{index}] ({name})" if isinstance(name, str) and name else f"{prefix}[{index}]"


def _describe(value: Any) -> str:
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    return f"{TYPE_WORDS.get(type(value), type(value).__name__)} {shown}"


def _read_table(raw: Any, path: str, keys: Mapping[str, Key], problems: list[str]) -> tuple[dict[str, Any], set[str]]:
    """The well-typed values of one table, and the keys that are missing or mistyped (reported as problems)."""
    if not isinstance(raw, Mapping):
        problems.append(f"{path}: expected a table, got {_describe(raw)}.")
        return {}, set(keys)
    values: dict[str, Any] = {}
    bad: set[str] = set()
    for key, value in raw.items():
        spec = keys.get(key)
        if spec is None:
            problems.append(f"{path}.{key}: unknown key; expected one of {', '.join(keys)}.")
        elif isinstance(value, bool) != (bool in spec.types) or not isinstance(value, spec.types):
            # bool is an int to Python, never to an operator: `port = true` is a mistake
            problems.append(f"{path}.{key}: expected {TYPE_WORDS[spec.types[-1]]}, got {_describe(value)}.")
            bad.add(key)
        elif key not in CHILDREN.values() and _nul_in(value):  # nodes and checks are read as tables of their own
            problems.append(f"{path}.{key}: contains a NUL character (\\u0000), which cannot be stored.")
            bad.add(key)
        else:
            values[key] = value
    for key, spec in keys.items():
        if spec.required and key not in raw:
            problems.append(f"{path}.{key}: required, but missing.")
            bad.add(key)
    return values, bad


def _nul_in(value: Any) -> bool:
    """A NUL anywhere in a string of the value (nested tables and arrays included): PostgreSQL refuses it."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(_nul_in(key) or _nul_in(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return any(_nul_in(item) for item in value)
    return False


def _choose(
    values: dict[str, Any], bad: set[str], key: str, choices: Sequence[Any], path: str, problems: list[str]
) -> None:
    """An enumerated value (kind, owner_role, tier) must be one of `choices`, named in the message."""
    if key in values and values[key] not in choices:
        problems.append(f"{path}.{key}: unknown {key} {values.pop(key)!r}; one of {', '.join(map(str, choices))}.")
        bad.add(key)


def _name(values: dict[str, Any], bad: set[str], path: str, seen: dict[str, str], problems: list[str]) -> str:
    """The table's name, or "" when it has none or repeats an earlier one (then it matches no row)."""
    name = values.get("name", "")
    if not _unique(name, path, seen, problems):
        bad.add("name")  # reported; matching it would mix two tables into one row
        return ""
    return name


def _unique(name: Any, path: str, seen: dict[str, str], problems: list[str], what: str = "name") -> bool:
    """False (and a problem) if `name` was already used by an earlier table of the same list."""
    if not isinstance(name, str):
        return True
    if name in seen:
        problems.append(f"{path}.{what}: {name!r} is already used by {seen[name]}.")
        return False
    seen[name] = path
    return True


def _json_problems(value: Any, path: str, problems: list[str]) -> bool:
    """Tables stored as JSON (config, restart) cannot hold TOML dates or non-finite numbers."""
    if isinstance(value, Mapping):
        return all([_json_problems(item, f"{path}.{key}", problems) for key, item in value.items()])
    if isinstance(value, list):
        return all([_json_problems(item, f"{path}[{index}]", problems) for index, item in enumerate(value)])
    if isinstance(value, datetime | date | time) or (isinstance(value, float) and not math.isfinite(value)):
        problems.append(f"{path}: {value!r} cannot be stored; use a string or a finite number.")
        return False
    return True


def _tables_check(values: Mapping[str, Any], bad: set[str], path: str, problems: list[str]) -> None:
    for key in OPTIONAL_TABLES:
        if key in values and not _json_problems(values[key], f"{path}.{key}", problems):
            bad.add(key)


def _fill(
    row: _Row,
    values: Mapping[str, Any],
    bad: set[str],
    fields: Sequence[str],
    problems: list[str],
    exclude: Iterable[str] = (),
) -> None:
    """Set the row's fields from the file (an absent key means the model's default: the file is the whole truth),
    note whether anything differs from the database, and run the model's own validators."""
    instance = row.instance
    for name in fields:
        model_field = instance._meta.get_field(name)
        row.take(name, model_field.to_python(values[name]) if name in values else model_field.get_default())
    try:
        instance.full_clean(exclude=[*bad, *exclude])
    except ValidationError as exc:
        row.valid = False
        for name, messages in exc.message_dict.items():
            where = row.path if name == NON_FIELD_ERRORS else f"{row.path}.{name}"
            problems.append(f"{where}: {' '.join(messages)}")
    if bad:
        row.valid = False


def _clusters_read(tables: list[tuple[str, Any]], problems: list[str]) -> list[_Row]:
    existing = {cluster.name: cluster for cluster in Cluster.objects.prefetch_related("nodes")}
    rows, seen = [], {}
    for path, raw in tables:
        values, bad = _read_table(raw, path, CLUSTER_KEYS, problems)
        name = _name(values, bad, path, seen, problems)
        _tables_check(values, bad, path, problems)
        row = _Row("cluster", name, existing.get(name) or Cluster(name=name), path)
        _fill(row, values, bad, CLUSTER_FIELDS, problems)
        row.children = _nodes_read(row, values.get("nodes", []), problems)
        rows.append(row)
    return rows


def _nodes_read(cluster: _Row, tables: list[Any], problems: list[str]) -> list[_Row]:
    existing = {node.name: node for node in cluster.instance.nodes.all()} if cluster.instance.pk else {}
    rows, seen = [], {}
    for index, raw in enumerate(tables):
        path = _where(f"{cluster.path}.nodes", index, raw)
        values, bad = _read_table(raw, path, NODE_KEYS, problems)
        name = _name(values, bad, path, seen, problems)
        _tables_check(values, bad, path, problems)
        node = existing.get(name) or Node(cluster=cluster.instance, name=name)
        row = _Row("node", f"{cluster.name}/{name}", node, path)
        # the cluster may not be saved yet; the (cluster, name) pair is unique by construction
        _fill(row, values, bad, NODE_FIELDS, problems, exclude=["cluster"])
        rows.append(row)
    return rows


def _services_read(tables: list[tuple[str, Any]], problems: list[str]) -> list[_Row]:
    existing = {service.name: service for service in Service.objects.prefetch_related("checks")}
    rows, seen, tokens = [], {}, {}
    for path, raw in tables:
        values, bad = _read_table(raw, path, SERVICE_KEYS, problems)
        _choose(values, bad, "kind", Service.Kind.values, path, problems)
        _choose(values, bad, "owner_role", [role.value for role in Role], path, problems)
        _choose(values, bad, "tier", TIERS, path, problems)
        _tables_check(values, bad, path, problems)
        name = _name(values, bad, path, seen, problems)
        row = _Row("service", name, existing.get(name) or Service(name=name), path)
        _fill(row, values, bad, SERVICE_FIELDS, problems)
        row.children = _checks_read(row, values.get("checks", []), tokens, problems)
        rows.append(row)
    return rows


def _checks_read(service: _Row, tables: list[Any], tokens: dict[str, str], problems: list[str]) -> list[_Row]:
    """Checks' model fields and tokens; their config is validated later (it may name nodes of this file)."""
    existing = {check.name: check for check in service.instance.checks.all()} if service.instance.pk else {}
    rows, seen = [], {}
    for index, raw in enumerate(tables):
        path = _where(f"{service.path}.checks", index, raw)
        values, bad = _read_table(raw, path, CHECK_KEYS, problems)
        _choose(values, bad, "kind", Check.Kind.values, path, problems)
        name = _name(values, bad, path, seen, problems)
        check = existing.get(name) or Check(service=service.instance, name=name)
        row = _Row("check", f"{service.name}/{name}", check, path, config=values.get("config", {}))
        if "token" in values and not _unique(values["token"], path, tokens, problems, what="token"):
            bad.add("token")
        elif "token" in values:
            row.take("token", values["token"])
        # config is config_validate's; the service may not be saved yet
        _fill(row, values, bad, CHECK_FIELDS, problems, exclude=["service", "config"])
        # "timeout shorter than interval" comes from Check.clean(), through full_clean in _fill
        if {"kind", "config"} & bad or not _json_problems(row.config, f"{path}.config", problems):
            row.config = None  # nothing more to say about it
        rows.append(row)
    return rows


def _channels_read(tables: list[tuple[str, Any]], problems: list[str]) -> list[_Row]:
    existing = {channel.name: channel for channel in AlertChannel.objects.all()}
    rows, seen = [], {}
    for path, raw in tables:
        values, bad = _read_table(raw, path, CHANNEL_KEYS, problems)
        _choose(values, bad, "kind", AlertChannel.Kind.values, path, problems)
        _choose(values, bad, "min_tier", TIERS, path, problems)
        name = _name(values, bad, path, seen, problems)
        row = _Row("channel", name, existing.get(name) or AlertChannel(name=name), path)
        _fill(row, values, bad, CHANNEL_FIELDS, problems)
        rows.append(row)
    return rows


def _contacts_read(tables: list[tuple[str, Any]], problems: list[str]) -> list[_Row]:
    existing = {contact.name: contact for contact in Contact.objects.all()}
    rows, seen = [], {}
    for path, raw in tables:
        values, bad = _read_table(raw, path, CONTACT_KEYS, problems)
        for role in values.get("roles", []):
            if role not in {r.value for r in Role}:
                problems.append(f"{path}.roles: unknown role {role!r}; expected {', '.join(Role)}.")
                bad.add("roles")
        name = _name(values, bad, path, seen, problems)
        row = _Row("contact", name, existing.get(name) or Contact(name=name), path)
        _fill(row, values, bad, CONTACT_FIELDS, problems)
        rows.append(row)
    return rows


def _escalation_read(tables: list[tuple[str, Any]], contacts: list[_Row], problems: list[str]) -> dict[str, list[str]]:
    """{severity: contact names in order}; every name must be a contact of this file or (already) of the database."""
    known = {row.name for row in contacts} | set(Contact.objects.values_list("name", flat=True))
    lists: dict[str, list[str]] = {}
    seen: dict[str, str] = {}
    for path, raw in tables:
        values, bad = _read_table(raw, path, ESCALATION_KEYS, problems)
        _choose(values, bad, "severity", Severity.values, path, problems)
        if bad or not _unique(values["severity"], path, seen, problems, what="severity"):
            continue
        names = values["contacts"]
        for name in names:
            if name not in known:
                problems.append(f"{path}.contacts: {name!r} is not a contact; add it to [[contacts]].")
        lists[values["severity"]] = names
    return lists


def _contacts_apply(rows: list[_Row], lists: dict[str, list[str]], report: ImportReport, prune: bool) -> None:
    for row in rows:
        _save(row, report)
    for severity, names in lists.items():
        before = [contact.name for contact in escalation_list(severity)]
        outcome = "unchanged" if before == names else "updated" if before else "created"
        getattr(report, outcome).append(f"escalation {severity}")
        if outcome != "unchanged":
            EscalationStep.objects.filter(severity=severity).delete()
            contacts = {contact.name: contact for contact in Contact.objects.filter(name__in=names)}
            for position, name in enumerate(names, 1):
                EscalationStep.objects.create(severity=severity, position=position, contact=contacts[name])
    if prune:
        for severity in EscalationStep.objects.exclude(severity__in=list(lists)).values_list("severity", flat=True):
            EscalationStep.objects.filter(severity=severity).delete()
            report.deleted.append(f"escalation {severity}")
        for contact in Contact.objects.exclude(name__in=[row.name for row in rows]).order_by("name"):
            _delete(contact, report, "contact")


def _storage_read(tables: list[tuple[str, Any]], problems: list[str]) -> list[_Row]:
    existing = {target.name: target for target in StorageTarget.objects.all()}
    rows, seen = [], {}
    for path, raw in tables:
        values, bad = _read_table(raw, path, STORAGE_KEYS, problems)
        _choose(values, bad, "kind", StorageTarget.Kind.values, path, problems)
        name = _name(values, bad, path, seen, problems)
        row = _Row("storage", name, existing.get(name) or StorageTarget(name=name), path)
        if "kind" in values and "config" not in bad:
            config = _storage_config(values["kind"], values.get("config", {}), f"{path}.config", problems)
            if config is None:
                bad.add("config")
            else:
                row.take("config", config)
        # config is _storage_config's (the model's own field refuses an empty one)
        _fill(row, values, bad, STORAGE_FIELDS, problems, exclude=["config"])
        rows.append(row)
    return rows


def _storage_config(kind: str, raw: Mapping[str, Any], path: str, problems: list[str]) -> dict[str, Any] | None:
    """A storage target's config as `storage_from_config` reads it, or None (and problems): the keys its kind
    knows, the place (path or bucket) given, credentials as environment variable NAMES, both or neither."""
    found = len(problems)
    config, bad = _read_table(raw, path, STORAGE_CONFIG_KEYS[kind], problems)
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


def _policies_read(
    tables: list[tuple[str, Any]], clusters: list[_Row], storage: list[_Row], prune: bool, problems: list[str]
) -> list[_Row]:
    """Policies' fields, and the cluster and storage target each names: in this file or in the database.

    With `prune`, only this file's count: the others are about to be deleted.
    """
    existing = {policy.name: policy for policy in BackupPolicy.objects.select_related("cluster", "storage")}
    in_file = {
        # name: whether that table will be saved (if not, its own problems are reported)
        "cluster": {row.name: row.valid and all(node.valid for node in row.children) for row in clusters},
        "storage": {row.name: row.valid for row in storage},
    }
    in_database = {
        "cluster": set(Cluster.objects.values_list("name", flat=True)),
        "storage": set(StorageTarget.objects.values_list("name", flat=True)),
    }
    rows, seen = [], {}
    for path, raw in tables:
        values, bad = _read_table(raw, path, POLICY_KEYS, problems)
        _choose(values, bad, "engine", BackupPolicy.Engine.values, path, problems)
        _choose(values, bad, "retention", BackupPolicy.Retention.values, path, problems)
        name = _name(values, bad, path, seen, problems)
        row = _Row("policy", name, existing.get(name) or BackupPolicy(name=name), path)
        for key, what in POLICY_REFERENCES.items():
            named = values.get(key)
            if named is None:
                continue  # missing or mistyped: reported
            if named in in_file[key]:
                row.valid = row.valid and in_file[key][named]
            elif named not in in_database[key]:
                problems.append(f"{path}.{key}: No {what} {named!r} in the file or the database.")
                bad.add(key)
                continue
            elif prune:
                problems.append(
                    f"{path}.{key}: No {what} {named!r} in the file, and --prune deletes the one in the database."
                )
                bad.add(key)
                continue
            row.names[key] = named
            if row.instance.pk is not None and getattr(row.instance, key).name != named:
                row.changed.add(key)
        # the cluster and the storage target may not be saved yet: their names were checked above
        _fill(row, values, bad, POLICY_FIELDS, problems, exclude=list(POLICY_REFERENCES))
        rows.append(row)
    return rows


def _configs_validate(
    services: list[_Row], unsaved_nodes: set[tuple[str, str]], unsaved_policies: set[str], problems: list[str]
) -> None:
    """Each check's config through `config_validate` — run once this file's clusters and backup policies are
    in the database, since a postgres check may name one of their nodes, and a backup check a policy."""
    for check_row in (check for service in services for check in service.children):
        if check_row.config is None:
            check_row.valid = False
            continue
        check = check_row.instance
        try:
            config = config_validate(check.kind, check_row.config)
        except ValidationError as exc:
            check_row.valid = False
            for name, messages in exc.message_dict.items():
                named = (check_row.config.get("cluster"), check_row.config.get("node"))
                if name == "node" and all(isinstance(part, str) for part in named) and named in unsaved_nodes:
                    continue  # the node's cluster has problems of its own, already reported
                if name == "policy" and check_row.config.get("policy") in unsaved_policies:
                    continue  # so has the policy
                problems.append(f"{check_row.path}.config.{name}: {' '.join(messages)}")
            continue
        check_row.take("config", config)


# --- Import: applying ------------------------------------------------------------------------------


def _save(row: _Row, report: ImportReport, **relation: models.Model) -> None:
    """Save the row if it is new or differs, and say so in the report."""
    outcome = row.outcome
    for name, parent in relation.items():
        setattr(row.instance, name, parent)  # the parent may have been created moments ago
    if outcome == "created":
        row.instance.save()
    elif outcome == "updated":
        # only what the file sets: the check engine may be writing states and results right now
        row.instance.save(update_fields=sorted(row.changed))
    getattr(report, outcome).append(row.label)


def _clusters_apply(rows: list[_Row], report: ImportReport, prune: bool) -> set[tuple[str, str]]:
    """Save the clusters (with their nodes) that validated, and prune their nodes (clusters go in
    `_clusters_prune`, once the backup policies naming them are gone).

    Returns the (cluster, node) pairs the file describes but that could not be saved, so that
    checks naming them are not blamed for their cluster's problems.
    """
    unsaved: set[tuple[str, str]] = set()
    for row in rows:
        if not (row.valid and all(node.valid for node in row.children)):
            unsaved.update((row.name, node.instance.name) for node in row.children)
            continue
        _save(row, report)
        for node in row.children:
            _save(node, report, cluster=row.instance)
        if prune:
            stale = row.instance.nodes.exclude(name__in=[node.instance.name for node in row.children])
            for node in stale.order_by("name"):
                _delete(node, report, "node")
    return unsaved


def _clusters_prune(rows: list[_Row], report: ImportReport) -> None:
    clusters = Cluster.objects.exclude(name__in=[row.name for row in rows]).annotate(policies=Count("backup_policies"))
    for cluster in clusters.order_by("name"):
        # Still named by a policy: one this file names it in (reported by _policies_read) or one that could not
        # be deleted (reported by _policies_apply). Either way the import fails; deleting would only raise.
        if not cluster.policies:
            _delete(cluster, report, "cluster", [f"node {node}" for node in cluster.nodes.order_by("name")])


def _storage_apply(rows: list[_Row], report: ImportReport) -> None:
    for row in rows:
        if row.valid:
            _save(row, report)


def _storage_prune(rows: list[_Row], report: ImportReport, problems: list[str]) -> None:
    """Delete the storage targets the file does not have, except those backups on record are in (a problem:
    their history would go with them)."""
    targets = StorageTarget.objects.exclude(name__in=[row.name for row in rows])
    counted = targets.annotate(held=Count("backups", distinct=True), used=Count("policies", distinct=True))
    for target in counted.order_by("name"):
        if target.held:
            problems.append(
                f"storage_targets: storage {target.name} is not in the file, but it holds {_backups(target.held)}: "
                "keep it in the file."
            )
        elif not target.used:  # a policy still naming it is reported elsewhere (see _clusters_prune)
            _delete(target, report, "storage")


def _policies_apply(rows: list[_Row], report: ImportReport, prune: bool, problems: list[str]) -> set[str]:
    """Save the policies that validated (the clusters and storage targets they name are saved by now) and
    prune, except policies with backups on record: deleting them would delete the backups' history.

    Returns the names of the policies the file describes but that could not be saved (like `_clusters_apply`).
    """
    clusters = Cluster.objects.in_bulk(field_name="name")
    storage = StorageTarget.objects.in_bulk(field_name="name")
    unsaved = set()
    for row in rows:
        if not row.valid:
            unsaved.add(row.name)
            continue
        # next_run_at is never the file's: the scheduler sets it for new policies, and keeps it going
        _save(row, report, cluster=clusters[row.names["cluster"]], storage=storage[row.names["storage"]])
    if not prune:
        return unsaved
    stale = BackupPolicy.objects.exclude(name__in=[row.name for row in rows]).annotate(held=Count("backups"))
    _prune_keeping_history(
        stale, report, problems, section="backup_policies", kind="policy", history=_backups, stops="its schedule"
    )
    return unsaved


def _prune_keeping_history(
    stale: models.QuerySet[Any],
    report: ImportReport,
    problems: list[str],
    *,
    section: str,
    kind: str,
    history: Callable[[int], str],
    stops: str,
) -> None:
    """Delete the rows (annotated with `held`, how much history they have) the file no longer names, except
    those with history: deleting them would delete it too (a problem, naming what `history(held)` says)."""
    for row in stale.order_by("name"):
        if row.held:
            problems.append(
                f"{section}: {kind} {row.name} is not in the file, but it has {history(row.held)}: "
                f"keep it in the file (enabled = false stops {stops})."
            )
        else:
            _delete(row, report, kind)


def _backups(count: int) -> str:
    return f"{count} backup{'s' if count != 1 else ''} on record"


def _services_apply(rows: list[_Row], report: ImportReport, prune: bool) -> list[Service]:
    """Save services and checks (changed checks run soon) and prune; the services whose checks changed."""
    refresh: list[Service] = []
    now = timezone.now()
    for row in rows:
        _save(row, report)
        checks_changed = False
        for check in row.children:
            if check.outcome != "unchanged":
                check.instance.next_run_at = now  # run the new settings at once
                check.changed.add("next_run_at")
                checks_changed = True
            _save(check, report, service=row.instance)
        if prune:
            stale = row.instance.checks.exclude(name__in=[c.instance.name for c in row.children]).order_by("name")
            for check in stale:
                _delete(check, report, "check")
                checks_changed = True
        if checks_changed:
            refresh.append(row.instance)
    if prune:
        for service in Service.objects.exclude(name__in=[row.name for row in rows]).order_by("name"):
            _delete(service, report, "service", [f"check {check}" for check in service.checks.order_by("name")])
    return refresh


def _funnels_read(tables: list[tuple[str, Any]], clusters: list[_Row], prune: bool, problems: list[str]) -> list[_Row]:
    """Funnels' fields; the cluster a funnel reads must be in this file or (without `prune`) in the database."""
    existing = {funnel.name: funnel for funnel in Funnel.objects.all()}
    in_file = {row.name for row in clusters}
    in_database = set(Cluster.objects.values_list("name", flat=True))
    rows, seen, tokens = [], {}, {}
    for path, raw in tables:
        values, bad = _read_table(raw, path, FUNNEL_KEYS, problems)
        _choose(values, bad, "source", Funnel.Source.values, path, problems)
        name = _name(values, bad, path, seen, problems)
        row = _Row("funnel", name, existing.get(name) or Funnel(name=name), path)
        cluster = values.get("cluster")
        if cluster and cluster not in in_file:
            if cluster not in in_database:
                problems.append(f"{path}.cluster: No cluster {cluster!r} in the file or the database.")
                bad.add("cluster")
            elif prune:
                problems.append(
                    f"{path}.cluster: No cluster {cluster!r} in the file, and --prune deletes the one in the database."
                )
                bad.add("cluster")
        if "token" in values and not _unique(values["token"], path, tokens, problems, what="token"):
            bad.add("token")
        elif "token" in values:
            row.take("token", values["token"])
        _fill(row, values, bad, FUNNEL_FIELDS, problems)
        rows.append(row)
    return rows


def _funnels_apply(rows: list[_Row], report: ImportReport, prune: bool, problems: list[str]) -> None:
    """Save the funnels (a changed query runs at once) and prune, except funnels with counts on record."""
    for row in rows:
        if not row.valid:
            continue
        if row.changed & FUNNEL_RUN_FIELDS:
            row.instance.next_run_at = timezone.now()
            row.changed.add("next_run_at")
        _save(row, report)
    if not prune:
        return
    stale = Funnel.objects.exclude(name__in=[row.name for row in rows]).annotate(held=Count("day_counts"))
    _prune_keeping_history(
        stale, report, problems, section="funnels", kind="funnel", history=lambda _: "counts on record", stops="it"
    )


def _channels_apply(rows: list[_Row], report: ImportReport, prune: bool) -> None:
    for row in rows:
        _save(row, report)
    if prune:
        for channel in AlertChannel.objects.exclude(name__in=[row.name for row in rows]).order_by("name"):
            _delete(channel, report, "channel")


def _delete(instance: models.Model, report: ImportReport, kind: str, cascaded: list[str] | None = None) -> None:
    """Delete a row the file no longer has; what goes with it (nodes, checks) is reported too."""
    report.deleted.extend([f"{kind} {instance}", *(cascaded or [])])
    instance.delete()


def catalog_import(
    data: Mapping[str, Any],
    *,
    actor: AbstractBaseUser | AnonymousUser | None = None,
    address: str | None = None,
    prune: bool = False,
    dry_run: bool = False,
) -> ImportReport:
    """Make the catalog match `data` (the file's shape), upserting by name.

    Guarantees: every problem in the file is reported at once as a CatalogError and then nothing
    has changed; otherwise all changes commit in one transaction with one audit entry (none for a
    dry run, which rolls everything back). Importing the same data again changes nothing and
    reports everything unchanged. Rows absent from the file are deleted only with `prune`.
    `actor=None` is the portal itself (command line without --user, seeding).
    """
    if actor is not None:
        _require_editor(actor, address, dry_run)
    problems: list[str] = []
    report = ImportReport(dry_run=dry_run)
    with transaction.atomic():
        sections = _sections(data, problems)
        clusters = _clusters_read(sections["clusters"], problems)
        storage = _storage_read(sections["storage_targets"], problems)
        policies = _policies_read(sections["backup_policies"], clusters, storage, prune, problems)
        services = _services_read(sections["services"], problems)
        channels = _channels_read(sections["alert_channels"], problems)
        funnels = _funnels_read(sections["funnels"], clusters, prune, problems)
        contacts = _contacts_read(sections["contacts"], problems)
        escalation = _escalation_read(sections["escalation"], contacts, problems)
        # Clusters, storage targets and backup policies go in first, inside this transaction, so that the
        # checks naming a node (postgres) or a policy (backup) validate against what the catalog will hold;
        # any problem below rolls them back. Pruning goes the other way: policies, then what they name.
        unsaved_nodes = _clusters_apply(clusters, report, prune)
        _storage_apply(storage, report)
        unsaved_policies = _policies_apply(policies, report, prune, problems)
        if prune:
            _storage_prune(storage, report, problems)
            _clusters_prune(clusters, report)
        _funnels_apply(funnels, report, prune, problems)
        _configs_validate(services, unsaved_nodes, unsaved_policies, problems)
        if problems:
            raise CatalogError(_in_file_order(problems))
        refresh = _services_apply(services, report, prune)
        _channels_apply(channels, report, prune)
        _contacts_apply(contacts, escalation, report, prune)
        if dry_run:
            transaction.set_rollback(True)
        else:
            audit_record(
                actor=actor,
                action="catalog.import",
                target="catalog",
                outcome=AuditEntry.Outcome.SUCCESS,
                address=address,
                parameters={
                    "created": len(report.created),
                    "updated": len(report.updated),
                    "deleted": len(report.deleted),
                    "prune": prune,
                },
            )
    if not dry_run:
        for service in refresh:
            service_refresh(service)
    return report


def _require_editor(actor: AbstractBaseUser | AnonymousUser, address: str | None, dry_run: bool) -> None:
    """Only catalog editors import; a refused real import is audited, like a refused operation."""
    try:
        require(actor, Action.EDIT_CATALOG)
    except PermissionDenied as exc:
        if not dry_run:
            audit_record(
                actor=actor,
                action="catalog.import",
                target="catalog",
                outcome=AuditEntry.Outcome.REFUSED,
                address=address,
                detail=str(exc),
            )
        raise
