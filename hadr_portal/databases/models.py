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
from hadr_portal.core.validators import env_name, env_reference, slug, validate_optional_cron


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
    PROBE = "probe", "Write probe: a row a second in hadr_probe.writes, read back on the replicas"


# What each purpose's own role needs, as the Databases page and the README say it.
PURPOSE_GRANTS = {
    Purpose.MONITOR: "pg_monitor",
    Purpose.READ: "pg_read_all_data (or SELECT on the tables its queries read); never a superuser",
    Purpose.BACKUP: "pg_read_all_data; EXECUTE on pg_create_restore_point(text) and pg_switch_wal()",
    Purpose.PROBE: "INSERT, SELECT and DELETE on hadr_probe.writes (`manage.py write_probe_setup` grants them)",
}


MONTHLY_DRILL = "0 5 1 * *"  # the first of the month, 05:00


def drill_schedule_validate(value: str) -> None:
    if value != "off":
        validate_optional_cron(value)


class Engine(models.TextChoices):
    """Who fails the cluster over: the portal on a DBA's confirmation, or Patroni by itself (the portal asks it)."""

    DIRECT = "direct", "Direct: the portal promotes a replica when a DBA confirms (pg_promote, fencing)"
    PATRONI = "patroni", "Patroni: automatic failover with etcd; the portal reads and asks its REST API"


def patroni_urls_validate(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(url, str) for url in value):
        raise ValidationError(
            'Expected a list of REST API URLs, e.g. ["http://10.0.0.5:8008", "http://10.0.0.6:8008"].'
        )
    for url in value:
        if not url.startswith(("http://", "https://")):
            raise ValidationError(f"{url!r} is not an http:// or https:// URL of a Patroni REST API.")


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
    engine = models.CharField(max_length=16, choices=Engine.choices, default=Engine.DIRECT)
    patroni_urls = models.JSONField(
        default=list,
        blank=True,
        validators=[patroni_urls_validate],
        help_text="Patroni engine: every member's REST API (tried in turn, so a dead leader's does not blind it)",
    )
    patroni_user = models.CharField(
        max_length=63, blank=True, help_text="Patroni REST API user (restapi.authentication)"
    )
    patroni_password_env = models.CharField(
        max_length=100,
        blank=True,
        validators=[env_name],
        help_text="Environment variable holding the Patroni REST API password",
    )
    synchronous_mode = models.BooleanField(
        default=False,
        help_text="Patroni engine: commits wait for a synchronous standby, so a failover loses none (applied by "
        "`manage.py ha CLUSTER apply`)",
    )
    switchover_drill_schedule = models.CharField(
        max_length=100,
        blank=True,
        validators=[drill_schedule_validate],
        help_text=f'Cron schedule of the switchover drill; empty: monthly ("{MONTHLY_DRILL}") for a Patroni cluster, '
        'none for a direct one; "off": none',
    )
    next_drill_at = models.DateTimeField(null=True, blank=True)
    ha_state = models.JSONField(default=dict, blank=True, help_text="What Patroni last said (GET /cluster, /history)")
    ha_state_at = models.DateTimeField(null=True, blank=True)
    probe_user = _role_field("the write probe", PURPOSE_GRANTS[Purpose.PROBE])
    probe_password_env = _password_env_field("write probe")
    probe_state = models.JSONField(
        default=dict, blank=True, help_text="The write probe's last writes: where, when, and each replica's delay"
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
        if self.engine == Engine.PATRONI:
            if not self.patroni_urls:
                errors["patroni_urls"] = "A Patroni cluster needs its members' REST API URLs."
            if not (self.patroni_user and self.patroni_password_env):
                errors["patroni_user"] = (
                    "Name the REST API user and the variable holding its password: without restapi.authentication "
                    "anyone on the network may switch the cluster over."
                )
        if errors:
            raise ValidationError(errors)

    @property
    def is_patroni(self) -> bool:
        return self.engine == Engine.PATRONI

    @property
    def drill_schedule(self) -> str:
        """The switchover drill's cron: monthly for Patroni unless set ("off": none); a direct cluster's only when
        asked (its drill is a failover that leaves the old primary to rebuild)."""
        if self.switchover_drill_schedule == "off":
            return ""
        return self.switchover_drill_schedule or (MONTHLY_DRILL if self.is_patroni else "")

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


class LeaderChange(models.Model):
    """The cluster's writable primary moved, as the write probe saw it: automatically (Patroni), or by a
    switchover or failover an operation asked for. What it cost is measured, not inferred: the RTO is the time
    from the last probe row committed on the old leader to the first on the new, the RPO the probe rows
    committed on the old leader that the new one does not have."""

    class Cause(models.TextChoices):
        AUTOMATIC = "automatic", "Automatic failover"
        SWITCHOVER = "switchover", "Switchover"
        FAILOVER = "failover", "Manual failover"

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="leader_changes")
    cause = models.CharField(max_length=16, choices=Cause.choices)
    operation = models.ForeignKey(Operation, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    old_leader = models.CharField(max_length=64, blank=True)
    new_leader = models.CharField(max_length=64)
    timeline = models.PositiveIntegerField(null=True, blank=True, help_text="The new leader's timeline")
    detected_at = models.DateTimeField()
    last_write_old_at = models.DateTimeField(null=True, blank=True)
    first_write_new_at = models.DateTimeField()
    rto_seconds = models.FloatField(null=True, blank=True)
    rows_lost = models.IntegerField(null=True, blank=True, help_text="Probe rows committed on the old leader, missing")
    rows_checked = models.IntegerField(default=0)
    events = models.JSONField(default=list, blank=True, help_text="[{at, what}]: the timeline of the change")
    settled = models.BooleanField(default=False, help_text="Replicas follow and the old leader's fate is known")

    class Meta:
        ordering = ["-detected_at"]

    def __str__(self) -> str:
        return f"{self.cluster.name}: {self.old_leader or '?'} → {self.new_leader} ({self.get_cause_display()})"

    @property
    def rpo_seconds(self) -> float | None:
        """The probe writes once a second: rows lost are seconds of writes lost."""
        return float(self.rows_lost) if self.rows_lost is not None else None


class ProbeWrite(models.Model):
    """One probe row the cluster acknowledged as committed (kept an hour: the RPO of a change is counted from
    these)."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="+")
    seq = models.BigIntegerField()
    node = models.CharField(max_length=64)
    at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["cluster", "seq"])]

    def __str__(self) -> str:
        return f"{self.node}: probe row {self.seq}"
