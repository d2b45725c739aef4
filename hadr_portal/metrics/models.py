"""Business and resource metrics: the onboarding funnel's counts, database sizes, the portal's own errors."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from hadr_portal.adapters.sqlguard import sql_refusal
from hadr_portal.core.validators import dsn_env_name, slug
from hadr_portal.status.models import new_token

STEP_PATTERN = re.compile(r"^[a-z0-9_][a-z0-9_-]*$")
SINCE_PLACEHOLDER = "%(since)s"
FUNNEL_QUERY = "funnel query"  # how the SQL guard's refusals name it


class Funnel(models.Model):
    """A conversion funnel: ordered steps whose counts come from a read-only query on a replica, or are pushed.

    The query is configuration (catalog or admin), never request input. It must pass the SQL guard (one SELECT
    calling only allowlisted functions: adapters/sqlguard.py), checked when saved and again when it runs. It
    runs on a node that reports being a replica — never on a primary — as the cluster's read role (never a
    superuser), with a statement timeout in a read-only transaction, and receives one parameter, `%(since)s`;
    it returns `(step, hour, count)` rows.
    """

    class Source(models.TextChoices):
        QUERY = "query", "Query on a replica"
        PUSH = "push", "Pushed by the application"

    name = models.CharField(max_length=64, unique=True, validators=[slug])
    description = models.CharField(max_length=200, blank=True)
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.QUERY)
    steps = models.JSONField(default=list, help_text="Step names in funnel order, e.g. signed_up, email_verified")
    # Removing the cluster leaves a query funnel with nowhere to read (stale, saying so); removing the node it was
    # pinned to lets it read whichever node of its cluster is the replica.
    cluster = models.ForeignKey(
        "databases.Cluster",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="funnels",
        help_text="Catalog cluster whose replica is read",
    )
    node = models.ForeignKey(
        "databases.Node",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="funnels",
        help_text="That node of the cluster only (empty: any node that is a replica)",
    )
    dbname = models.CharField(max_length=63, blank=True, help_text="Database to read (empty: the cluster's)")
    dsn_env = models.CharField(
        max_length=100,
        blank=True,
        validators=[dsn_env_name],
        help_text="Or: a HADR_DSN_* variable holding a replica's DSN (its user a read role, never a superuser)",
    )
    query = models.TextField(blank=True, help_text="SELECT step, hour, count ... WHERE created_at >= %(since)s")
    interval_seconds = models.PositiveIntegerField(
        default=300,
        validators=[MinValueValidator(30), MaxValueValidator(86400)],
        help_text="Query: how often it runs. Push: how often counts are expected.",
    )
    timeout_seconds = models.FloatField(default=10.0, validators=[MinValueValidator(1), MaxValueValidator(120)])
    enabled = models.BooleanField(default=True)
    token = models.CharField(max_length=64, unique=True, default=new_token, help_text="Bearer token of the push API")
    next_run_at = models.DateTimeField(default=timezone.now, db_index=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """Steps: at least two distinct names. A query funnel: where to read (a cluster, optionally one of its
        nodes, or a DSN variable) and a query taking `%(since)s`."""
        errors: dict[str, str] = {}
        steps = self.steps if isinstance(self.steps, list) else None
        if steps is None or len(steps) < 2:
            errors["steps"] = "Give at least two steps, in funnel order."
        elif not all(isinstance(step, str) and STEP_PATTERN.match(step) for step in steps):
            errors["steps"] = "Step names: lower-case letters, digits, underscores and dashes."
        elif len(set(steps)) != len(steps):
            errors["steps"] = "Each step may appear only once."
        if self.source == self.Source.QUERY:
            if (self.cluster is not None) == bool(self.dsn_env):
                errors["cluster"] = "Name a cluster (its replica is read) or a DSN variable in dsn_env, not both."
            elif self.node is not None and self.node.cluster != self.cluster:
                errors["node"] = f"Node {self.node} is not in cluster {self.cluster or 'none'}."
            if SINCE_PLACEHOLDER not in self.query:
                errors["query"] = (
                    "The query must select (step, hour, count) rows and take %(since)s, e.g. "
                    "WHERE created_at >= %(since)s."
                )
            elif refusal := sql_refusal(self.query, kind=FUNNEL_QUERY, placeholders=True):
                errors["query"] = f"Refused: {refusal}."
        if errors:
            raise ValidationError(errors)

    def stale_after_seconds(self) -> float:
        """Data older than this is stale: two missed runs (or pushes), plus the time a run may take."""
        return 2 * self.interval_seconds + self.timeout_seconds + 60

    def stale_reason(self, now: datetime | None = None) -> str:
        """Why the counts cannot be trusted right now, or "" when they can."""
        now = now or timezone.now()
        if self.last_error:
            return self.last_error
        if self.last_success_at is None:
            return "no counts yet" if self.source == self.Source.QUERY else "no counts pushed yet"
        if now - self.last_success_at > timedelta(seconds=self.stale_after_seconds()):
            return "the collector has not run" if self.source == self.Source.QUERY else "no counts pushed recently"
        return ""


class FunnelDayCount(models.Model):
    """How many reached one step on one day (the portal's time zone). Kept as long as the funnel exists."""

    funnel = models.ForeignKey(Funnel, on_delete=models.CASCADE, related_name="day_counts")
    day = models.DateField()
    step = models.CharField(max_length=64)
    count = models.BigIntegerField(validators=[MinValueValidator(0)])

    class Meta:
        ordering = ["funnel", "day", "step"]
        constraints = [
            models.UniqueConstraint(fields=["funnel", "day", "step"], name="funnel_day_step_unique"),
            models.CheckConstraint(condition=models.Q(count__gte=0), name="funnel_day_count_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.funnel_id} {self.day} {self.step}={self.count}"


class FunnelHourCount(models.Model):
    """How many reached one step in one hour; kept `HADR_FUNNEL_HOURLY_DAYS` days."""

    funnel = models.ForeignKey(Funnel, on_delete=models.CASCADE, related_name="hour_counts")
    hour = models.DateTimeField()
    step = models.CharField(max_length=64)
    count = models.BigIntegerField(validators=[MinValueValidator(0)])

    class Meta:
        ordering = ["funnel", "hour", "step"]
        constraints = [
            models.UniqueConstraint(fields=["funnel", "hour", "step"], name="funnel_hour_step_unique"),
            models.CheckConstraint(condition=models.Q(count__gte=0), name="funnel_hour_count_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.funnel_id} {self.hour:%Y-%m-%d %H}:00 {self.step}={self.count}"


class DatabaseSize(models.Model):
    """One sample of a managed database's size (pg_database_size), for its growth chart."""

    cluster = models.ForeignKey("databases.Cluster", on_delete=models.CASCADE, related_name="+")
    dbname = models.CharField(max_length=63)
    at = models.DateTimeField(default=timezone.now)
    bytes = models.BigIntegerField()

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["cluster", "dbname", "-at"], name="metrics_dbsize_cluster_db_at")]

    def __str__(self) -> str:
        return f"{self.cluster_id}/{self.dbname} {self.at:%Y-%m-%d %H:%M} {self.bytes}"


class LoggedError(models.Model):
    """An ERROR or CRITICAL record of the portal's own log (web, workers, beat), for the Errors page.

    Written by `errorlog.DatabaseErrorHandler` on a connection of its own, so a record survives the
    rollback of the transaction it was logged in; capped at `HADR_ERROR_LOG_KEEP` rows.
    """

    at = models.DateTimeField(default=timezone.now, db_index=True)
    level = models.CharField(max_length=8)
    logger = models.CharField(max_length=200)
    message = models.TextField()
    exception = models.TextField(blank=True)
    operation_id = models.BigIntegerField(null=True, blank=True, help_text="The operation it was logged in, if any")
    process = models.CharField(max_length=200, blank=True, help_text="host:pid")

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.level} {self.logger}: {self.message[:80]}"
