"""Managed PostgreSQL clusters and their nodes (separate from the portal's own database)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from hadr_portal.adapters.pgnode import controller_problems, hook_problems
from hadr_portal.adapters.postgres import NodeAddress
from hadr_portal.core.models import Operation
from hadr_portal.core.validators import env_name, slug


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


class Cluster(models.Model):
    """A primary with its replicas, holding the application's databases."""

    name = models.CharField(max_length=64, unique=True, validators=[slug])
    description = models.CharField(max_length=200, blank=True)
    dbname = models.CharField(max_length=63, default="postgres", help_text="Database the portal connects to")
    user = models.CharField(max_length=63, default="postgres")
    password_env = models.CharField(
        max_length=100,
        blank=True,
        validators=[env_name],
        help_text="Name of the environment variable holding the password (never the password itself)",
    )
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

    def address(self) -> NodeAddress:
        password = os.environ.get(self.cluster.password_env, "") if self.cluster.password_env else ""
        return NodeAddress(self.host, self.port, self.cluster.dbname, self.cluster.user, password)

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

    class Meta:
        ordering = ["-operation__created_at"]

    def __str__(self) -> str:
        return f"{self.cluster.name}: {self.old_primary or '?'} → {self.new_primary}"
