"""The catalog as code: clusters with their nodes, services with their checks, and alert channels as one TOML file.

Kept in git, the file re-creates the whole setup after the environment is lost:

- `catalog_export()` / `catalog_dump_toml()`  the catalog as data / as TOML, ordered by name, so two
                                              exports of the same catalog are byte-identical
- `catalog_load_toml()`                       TOML text to data; syntax errors name the line and column
- `catalog_import()`                          validate everything, then upsert by name in one transaction

Secrets never appear in the file: clusters and webhook channels name environment variables
(`password_env`, `target_env`). Push-check tokens (the heartbeat / host-push URL keys) are written
only on request, and an import without them keeps the existing ones.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Any

import tomli_w
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.db import models, transaction
from django.utils import timezone

from hadr_portal.core.audit import audit_record
from hadr_portal.core.models import AuditEntry
from hadr_portal.core.permissions import Action, Role, require
from hadr_portal.databases.models import Cluster, Node

from .checkconfig import config_validate
from .engine import service_refresh
from .models import AlertChannel, Check, Service

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

SECTIONS = ("clusters", "services", "alert_channels")
HEADER = (
    "# HADR Portal catalog: clusters with their nodes, services with their checks, alert channels.\n"
    "# Re-create them with `manage.py catalog import FILE`. Secrets are never written here:\n"
    "# password_env and target_env name environment variables.\n"
)
PRIVATE_NOTE = "# This file contains push-check tokens (URL keys): keep it private.\n"


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
    "max_failover_lag_bytes": Key(WHOLE),
    "nodes": Key(ARRAY),
}
NODE_KEYS = {"name": Key(TEXT, required=True), "host": Key(TEXT, required=True), "port": Key(WHOLE, required=True)}
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

# The model fields each table sets (names identify rows; nested arrays, config and token are handled apart).
NOT_FIELDS = {"name", "nodes", "checks", "config", "token"}
CLUSTER_FIELDS = tuple(k for k in CLUSTER_KEYS if k not in NOT_FIELDS)
NODE_FIELDS = tuple(k for k in NODE_KEYS if k not in NOT_FIELDS)
SERVICE_FIELDS = tuple(k for k in SERVICE_KEYS if k not in NOT_FIELDS)
CHECK_FIELDS = tuple(k for k in CHECK_KEYS if k not in NOT_FIELDS)
CHANNEL_FIELDS = tuple(k for k in CHANNEL_KEYS if k not in NOT_FIELDS)

TIERS = [tier for tier, _ in Service.TIERS]


# --- Export ----------------------------------------------------------------------------------------


def catalog_export(*, include_tokens: bool = False) -> dict[str, Any]:
    """The whole catalog as plain data in the file's shape, every list ordered by name.

    Tokens are included only with `include_tokens`, and only for push checks (the only ones whose
    token is a URL key anybody uses).
    """
    clusters = Cluster.objects.prefetch_related("nodes").order_by("name")
    services = Service.objects.prefetch_related("checks").order_by("name")
    return {
        "clusters": [_cluster_export(cluster) for cluster in clusters],
        "services": [_service_export(service, include_tokens) for service in services],
        "alert_channels": [_values(channel, CHANNEL_KEYS) for channel in AlertChannel.objects.order_by("name")],
    }


def _values(instance: models.Model, keys: Iterable[str]) -> dict[str, Any]:
    return {key: getattr(instance, key) for key in keys if key not in NOT_FIELDS or key == "name"}


def _cluster_export(cluster: Cluster) -> dict[str, Any]:
    nodes = sorted(cluster.nodes.all(), key=lambda node: node.name)
    return _values(cluster, CLUSTER_KEYS) | {"nodes": [_values(node, NODE_KEYS) for node in nodes]}


def _service_export(service: Service, include_tokens: bool) -> dict[str, Any]:
    data = _values(service, SERVICE_KEYS)
    if data["restart"]:
        data["restart"] = _sorted(data["restart"])
    else:
        del data["restart"]  # optional in the file: absent means "no restart controller"
    checks = sorted(service.checks.all(), key=lambda check: check.name)
    return data | {"checks": [_check_export(check, include_tokens) for check in checks]}


def _check_export(check: Check, include_tokens: bool) -> dict[str, Any]:
    data = _values(check, CHECK_KEYS) | {"config": _sorted(check.config)}
    if include_tokens and check.is_push:
        data["token"] = check.token
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
    """Catalog data as TOML: `[[clusters]]` / `[[clusters.nodes]]`, `[[services]]` / `[[services.checks]]`,
    `[[alert_channels]]`, with nested tables (config, restart) inline. Keeps the data's order
    (`catalog_export()` sorts), so the same data always gives the same text.
    """
    unknown = set(data) - set(SECTIONS)
    if unknown:
        raise ValueError(f"Not catalog sections: {', '.join(sorted(unknown))}.")
    has_tokens = any("token" in check for service in data.get("services", []) for check in service.get("checks", []))
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
        else:
            values[key] = value
    for key, spec in keys.items():
        if spec.required and key not in raw:
            problems.append(f"{path}.{key}: required, but missing.")
            bad.add(key)
    return values, bad


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
        if "restart" in values and not _json_problems(values["restart"], f"{path}.restart", problems):
            bad.add("restart")
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


def _configs_validate(services: list[_Row], unsaved_nodes: set[tuple[str, str]], problems: list[str]) -> None:
    """Each check's config through `config_validate` — run once this file's clusters are in the database,
    since a postgres check may name one of their nodes."""
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
    """Save the clusters (with their nodes) that validated, and prune.

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
    if prune:
        for cluster in Cluster.objects.exclude(name__in=[row.name for row in rows]).order_by("name"):
            _delete(cluster, report, "cluster", [f"node {node}" for node in cluster.nodes.order_by("name")])
    return unsaved


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
        services = _services_read(sections["services"], problems)
        channels = _channels_read(sections["alert_channels"], problems)
        # Clusters go in first, inside this transaction, so that postgres checks naming their nodes
        # validate against what the catalog will hold; any problem below rolls them back.
        unsaved_nodes = _clusters_apply(clusters, report, prune)
        _configs_validate(services, unsaved_nodes, problems)
        if problems:
            raise CatalogError(_in_file_order(problems))
        refresh = _services_apply(services, report, prune)
        _channels_apply(channels, report, prune)
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
