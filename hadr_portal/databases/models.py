"""Managed PostgreSQL clusters and their nodes (separate from the portal's own database)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from hadr_portal.adapters.pg.connection import NodeAddress
from hadr_portal.adapters.pg.node import NodeController, controller_from_config, controller_problems, hook_problems
from hadr_portal.core.models import Operation
from hadr_portal.core.validators import env_name, env_reference, slug


def _table_check(value: object, problems: Callable[[dict[str, Any]], list[str]], example: str) -> None:
    if not isinstance(value, dict):
        raise ValidationError(f"Expected a table such as {example}.")
    found = problems(value)
    if found:
        raise ValidationError(" ".join(found))


def node_controller_validate(value: object) -> None:
    _table_check(value, controller_problems, '{controller = "pg_ctl", data_directory = "/var/lib/postgresql/15/main"}')


def hook_validate(value: object) -> None:
    _table_check(value, hook_problems, '{argv = ["/usr/local/bin/point-dsn"], timeout_seconds = 60}')


class Purpose(models.TextChoices):
    """Why the portal connects to a managed node: each purpose uses the database role it needs, no more."""

    ADMIN = "admin", "Administration: failover, fencing, rebuild, restore"
    MONITOR = "monitor", "Monitoring: health checks, replication lag, database sizes"
    READ = "read", "Reading: funnel and restore verification queries"
    BACKUP = "backup", "Backups: pg_dump, restore points, drill markers (pgBackRest: the data's owner, locally)"


# What each purpose's own role needs, as the Databases page and the README say it.
PURPOSE_GRANTS = {
    Purpose.MONITOR: "pg_monitor",
    Purpose.READ: "pg_read_all_data (or SELECT on the tables its queries read); never a superuser",
    Purpose.BACKUP: "pg_read_all_data; EXECUTE on pg_create_restore_point(text) and pg_switch_wal()",
}


def _role_field(purpose: str, grants: str) -> models.CharField:
    return models.CharField(
        max_length=63,
        blank=True,
        help_text=f"Database role for {purpose} ({grants}); empty: the admin user",
    )


def _password_env_field(purpose: str) -> models.CharField:
    return models.CharField(
        max_length=100,
        blank=True,
        validators=[env_name],
        help_text=f"Environment variable holding the {purpose} role's password (never the password itself)",
    )


class Cluster(models.Model):
    """A primary with its replicas, holding the application's databases.

    `user` / `password_env` is the admin account (failover, fencing, rebuild, restore need it). Monitoring,
    reading and backups each use a role of their own when one is set (`credentials()`), else the admin account;
    user-written queries refuse to run as a superuser, so reading needs its own role in practice.
    """

    name = models.CharField(max_length=64, unique=True, validators=[slug])
    description = models.CharField(max_length=200, blank=True)
    dbname = models.CharField(max_length=63, default="postgres", help_text="Database the portal connects to")
    user = models.CharField(max_length=63, default="postgres", help_text="Admin account: failover, rebuild, restore")
    password_env = models.CharField(
        max_length=100,
        blank=True,
        validators=[env_name],
        help_text="Name of the environment variable holding the password (never the password itself)",
    )
    monitor_user = _role_field("health checks, replication lag and sizes", PURPOSE_GRANTS[Purpose.MONITOR])
    monitor_password_env = _password_env_field("monitoring")
    read_user = _role_field("funnel and verification queries", PURPOSE_GRANTS[Purpose.READ])
    read_password_env = _password_env_field("read")
    backup_user = _role_field("pg_dump and restore points", PURPOSE_GRANTS[Purpose.BACKUP])
    backup_password_env = _password_env_field("backup")
    max_failover_lag_bytes = models.BigIntegerField(
        default=16 * 1024 * 1024,
        validators=[MinValueValidator(0)],
        help_text="A failover is refused when the replica is further behind, unless a DBA gives a reason",
    )
    post_failover_hook = models.JSONField(
        default=dict,
        blank=True,
        validators=[hook_validate],
        help_text="Program run after a failover (argv, no shell), e.g. to update a DSN or a DNS record",
    )
    primary = models.ForeignKey(
        "Node",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The node applications should use; set by failovers (until then, the node that reports primary)",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def target(self) -> str:
        """How operations and the audit log name this cluster."""
        return f"cluster:{self.name}"

    def clean(self) -> None:
        """A purpose's password variable names the password of its own role: no variable without the role."""
        errors = {
            f"{purpose.value}_user": f"Name the role whose password {purpose.value}_password_env holds."
            for purpose in PURPOSE_GRANTS
            if getattr(self, f"{purpose.value}_password_env") and not getattr(self, f"{purpose.value}_user")
        }
        if errors:
            raise ValidationError(errors)

    def own_role(self, purpose: Purpose) -> bool:
        """Whether `purpose` has a role of its own (False: it falls back to the admin account)."""
        return purpose != Purpose.ADMIN and bool(getattr(self, f"{Purpose(purpose).value}_user"))

    def credentials(self, purpose: Purpose) -> tuple[str, str]:
        """(user, name of the password variable) that `purpose` connects with: its own role, else the admin one."""
        if self.own_role(purpose):
            prefix = Purpose(purpose).value
            return getattr(self, f"{prefix}_user"), getattr(self, f"{prefix}_password_env")
        return self.user, self.password_env

    def login(self, purpose: Purpose) -> tuple[str, str]:
        """(user, password) that `purpose` connects with, the password read from its variable."""
        user, password_env = self.credentials(purpose)
        return user, env_reference(password_env)


class Node(models.Model):
    """One PostgreSQL server of a cluster, and what it last said about itself."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="nodes")
    name = models.CharField(max_length=64, validators=[slug])
    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(65535)])
    controller = models.JSONField(
        default=dict,
        blank=True,
        validators=[node_controller_validate],
        help_text="How the portal stops, starts and rebuilds this node (pg_ctl or command)",
    )
    last_probe = models.JSONField(default=dict, blank=True)
    last_probe_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["cluster", "name"]
        constraints = [models.UniqueConstraint(fields=["cluster", "name"], name="node_name_unique_in_cluster")]

    def __str__(self) -> str:
        return f"{self.cluster.name}/{self.name}"

    def address(self, purpose: Purpose) -> NodeAddress:
        """Where and as whom to connect for `purpose` (see Cluster.credentials); the password from its variable."""
        user, password = self.cluster.login(purpose)
        return NodeAddress(self.host, self.port, self.cluster.dbname, user, password)

    def controller_built(self) -> NodeController:
        """Its catalog controller, ready to act: a command controller's programs run as HADR_COMMAND_USER."""
        return controller_from_config(self.controller, command_user=settings.COMMAND_USER)

    @property
    def role(self) -> str:
        if not self.last_probe:
            return "unknown"
        if self.last_probe.get("reachable"):
            return self.last_probe.get("role", "unknown")
        return "down" if self.last_probe.get("refused") else "unreachable"

    @property
    def slot_name(self) -> str:
        """The physical replication slot this node uses when it is a replica."""
        return "hadr_" + self.name.replace("-", "_")


class Failover(models.Model):
    """One promotion of a replica, and what it measured."""

    operation = models.OneToOneField(Operation, on_delete=models.PROTECT, related_name="failover")
    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="failovers")
    old_primary = models.CharField(max_length=64, blank=True)
    new_primary = models.CharField(max_length=64)
    old_primary_state = models.CharField(max_length=32, help_text="up, down or unreachable when it started")
    fencing = models.CharField(max_length=300, blank=True, help_text="How the old primary was kept from writing")
    lag_bytes = models.BigIntegerField(null=True, blank=True, help_text="WAL the replica had not received")
    override_reason = models.TextField(blank=True)
    isolation_reason = models.TextField(blank=True)
    promoted_at = models.DateTimeField(null=True, blank=True)
    writable_at = models.DateTimeField(null=True, blank=True)
    seconds_to_writable = models.FloatField(null=True, blank=True, help_text="From the request to the first write")
    steps = models.JSONField(
        default=list,
        blank=True,
        help_text="fence, promote, record, hook: each written before it acts (the reaper reads it)",
    )
    finished_by_reaper = models.TextField(blank=True, help_text="What the reaper did from the steps after a crash")

    class Meta:
        ordering = ["-operation__created_at"]

    def __str__(self) -> str:
        return f"{self.cluster.name}: {self.old_primary or '?'} → {self.new_primary}"
