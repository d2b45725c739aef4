"""What each kind of check needs in its `config`, validated in one place (forms and TOML import).

`config_validate(kind, raw)` takes the settings as an operator writes them — the node a postgres check
probes and the policy a backup check watches by name — and returns them cleaned, with those names
resolved to the rows they stand for, or raises ValidationError with one message per bad field, in the
operator's words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError

from hadr_portal.adapters.probes import MAX_DISKS
from hadr_portal.backups.models import BackupPolicy
from hadr_portal.core.outbound import outbound_host_refusal, outbound_url_refusal
from hadr_portal.core.validators import DSN_ENV_HELP, DSN_ENV_PATTERN, env_reference_problem
from hadr_portal.databases.models import Node

from .models import Check

HOST_LIMITS = ("cpu_warning", "cpu_critical", "memory_warning", "memory_critical", "disk_warning", "disk_critical")

# field -> (kinds that use it, required?)
FIELDS: dict[str, tuple[tuple[str, ...], bool]] = {
    "url": (("http",), False),  # or url_env: exactly one of the two
    "expected_status": (("http",), False),
    "keyword": (("http",), False),
    "tls_warning_days": (("http",), False),
    "verify_tls": (("http",), False),
    "host": (("tcp",), True),
    "port": (("tcp",), True),
    "cluster": (("postgres",), False),
    "node": (("postgres",), False),
    "dsn_env": (("postgres",), False),
    "expected_replicas": (("postgres",), False),
    "lag_warning_bytes": (("postgres",), False),
    "lag_critical_bytes": (("postgres",), False),
    "connections_warning_pct": (("postgres",), False),
    "connections_critical_pct": (("postgres",), False),
    "url_env": (("redis", "http"), False),
    "queue": (("celery",), True),
    "period_seconds": (("heartbeat",), True),
    "grace_seconds": (("heartbeat",), False),
    "source": (("heartbeat",), False),
    "policy": (("backup", "archive"), True),
    "disk_paths": (("host", "host_push"), False),
    **{limit: (("host", "host_push"), False) for limit in HOST_LIMITS},
}


def _int(errors: dict[str, str], name: str, value: Any, low: int, high: int) -> int | None:
    if isinstance(value, bool):
        errors[name] = f"{value!r} is not a whole number."
        return None
    try:
        number = int(value)
        if isinstance(value, float) and not value.is_integer():
            raise ValueError
    except (TypeError, ValueError):
        errors[name] = f"{value!r} is not a whole number."
        return None
    if not low <= number <= high:
        errors[name] = f"{number} is out of range ({low}–{high})."
        return None
    return number


REDIS_OWN = ("HADR_REDIS_URL",)  # the one portal secret a check may name: a Redis check of the portal's own broker


@dataclass(frozen=True)
class CheckConfig:
    """A check's validated settings: `Check.config`, and the rows it names (`Check.node`, `Check.policy`)."""

    config: dict[str, Any]
    node: Node | None = None
    policy: BackupPolicy | None = None


def config_validate(kind: str, raw: dict[str, Any]) -> CheckConfig:
    if kind not in Check.Kind.values:
        raise ValidationError({"kind": f"Unknown kind of check {kind!r}; one of {', '.join(Check.Kind.values)}."})
    errors: dict[str, str] = {}
    config: dict[str, Any] = {}
    for name, value in raw.items():
        if value in (None, "") or name not in FIELDS:
            if name not in FIELDS:
                errors[name] = f"Not a setting of a {kind} check."
            continue
        if kind not in FIELDS[name][0]:
            errors[name] = f"Not a setting of a {kind} check."
            continue
        config[name] = value
    for name, (kinds, required) in FIELDS.items():
        if kind in kinds and required and name not in config:
            errors[name] = "Required for this kind of check."

    for name in ("url", "keyword", "host", "source", "cluster", "node", "dsn_env", "url_env", "queue", "policy"):
        if name in config and not isinstance(config[name], str):
            errors[name] = f"{config[name]!r} is not text."
    if "url" in config and isinstance(config["url"], str):
        try:
            parts = urlsplit(str(config["url"]))
            full = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:  # e.g. brackets that are not an IPv6 address
            full = False
        if refusal := outbound_url_refusal(config["url"], env_key="url_env"):
            errors["url"] = refusal
        elif not full:
            errors["url"] = "Enter a full http:// or https:// URL, e.g. http://127.0.0.1:8001/health."
    if kind == "http" and ("url" in config) == ("url_env" in config) and "url" not in errors:
        errors["url"] = (
            "Give the URL, or the environment variable holding it (url_env) when it carries credentials — "
            f"{'not both' if 'url' in config else 'one of the two'}."
        )
    if "host" in config and isinstance(config["host"], str) and (refusal := outbound_host_refusal(config["host"])):
        errors["host"] = refusal
    for name, low, high in (
        ("expected_status", 100, 599),
        ("tls_warning_days", 0, 365),
        ("port", 1, 65535),
        ("expected_replicas", 0, 32),
        ("lag_warning_bytes", 0, 2**62),
        ("lag_critical_bytes", 0, 2**62),
        ("connections_warning_pct", 1, 100),
        ("connections_critical_pct", 1, 100),
        ("period_seconds", 10, 90 * 86400),
        ("grace_seconds", 0, 7 * 86400),
    ):
        if name in config:
            number = _int(errors, name, config[name], low, high)
            if number is not None:
                config[name] = number
    for name in HOST_LIMITS:
        if name in config:
            try:
                config[name] = float(config[name])
                if not 0 <= config[name] <= 100:
                    raise ValueError
            except (TypeError, ValueError):
                errors[name] = f"{raw[name]!r} is not a percentage (0–100)."
    for warning, critical in (
        ("cpu_warning", "cpu_critical"),
        ("memory_warning", "memory_critical"),
        ("disk_warning", "disk_critical"),
        ("lag_warning_bytes", "lag_critical_bytes"),
        ("connections_warning_pct", "connections_critical_pct"),
    ):
        if (
            isinstance(config.get(warning), int | float)
            and isinstance(config.get(critical), int | float)
            and config[warning] > config[critical]
        ):
            errors[warning] = f"The warning threshold must not exceed the critical one ({config[critical]})."
    if "verify_tls" in config:
        config["verify_tls"] = config["verify_tls"] in (True, "true", "on", "1", 1)
    if "disk_paths" in config:
        paths = config["disk_paths"]
        paths = [p.strip() for p in paths.split(",")] if isinstance(paths, str) else list(paths)
        if not paths or not all(isinstance(p, str) and p.startswith("/") for p in paths):
            errors["disk_paths"] = "Absolute paths, comma-separated, e.g. /, /var/lib/postgresql."
        elif len(paths) > MAX_DISKS:
            errors["disk_paths"] = f"At most {MAX_DISKS} paths ({len(paths)} given): each one is a series on /metrics."
        config["disk_paths"] = paths
    if "url_env" in config and "url_env" not in errors:
        own = REDIS_OWN if kind == "redis" else ()
        if problem := env_reference_problem(str(config["url_env"]), allowed=own):
            errors["url_env"] = f"{problem} Never the secret itself."
    if "dsn_env" in config and "dsn_env" not in errors and not DSN_ENV_PATTERN.match(str(config["dsn_env"])):
        errors["dsn_env"] = f"{DSN_ENV_HELP} Never the DSN itself, nor another of the portal's variables."
    node = policy = None
    if kind == "postgres" and not {"cluster", "node", "dsn_env"} & set(errors):
        by_node = "cluster" in config or "node" in config
        if by_node == ("dsn_env" in config) or (by_node and not ("cluster" in config and "node" in config)):
            errors["cluster"] = "Name a cluster and node from the catalog, or a dsn_env — exactly one of the two."
        elif by_node:
            cluster_name, node_name = config.pop("cluster"), config.pop("node")
            node = Node.objects.select_related("cluster").filter(cluster__name=cluster_name, name=node_name).first()
            if node is None:
                errors["node"] = f"No node {node_name!r} in cluster {cluster_name!r}."
    if kind in ("backup", "archive") and isinstance(config.get("policy"), str):
        policy_name = config.pop("policy")
        policy = BackupPolicy.objects.filter(name=policy_name).first()
        if policy is None:
            errors["policy"] = f"No backup policy named {policy_name!r}."
        elif kind == "archive" and not policy.is_physical:
            errors["policy"] = f"{policy_name} takes logical backups: name a pgBackRest policy (it archives WAL)."
    if kind == "celery" and config.get("queue") not in (None, "checks", "ops", "default"):
        errors["queue"] = "One of the portal's queues: checks, ops, default."
    if errors:
        raise ValidationError(errors)
    return CheckConfig(config, node=node, policy=policy)
