"""Managed PostgreSQL clusters and their nodes (separate from the portal's own database)."""

from __future__ import annotations

import os

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from hadr_portal.adapters.postgres import NodeAddress
from hadr_portal.core.validators import env_name, slug


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
    max_failover_lag_bytes = models.BigIntegerField(default=16 * 1024 * 1024, validators=[MinValueValidator(0)])

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
        return self.last_probe.get("role", "unknown") if self.last_probe.get("reachable") else "unreachable"
