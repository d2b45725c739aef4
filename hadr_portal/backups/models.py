"""Where backups go, how often they are taken and kept, and every backup ever taken."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from hadr_portal.core.outbound import outbound_url_refusal
from hadr_portal.core.scheduling import next_after
from hadr_portal.core.validators import slug, validate_cron, validate_optional_cron

from .verification import verify_queries_validate

DEFAULT_DRILL_SCHEDULE = "0 4 * * 0"  # Sundays at 04:00


class StorageTarget(models.Model):
    """A place for backups: a local directory or an S3 bucket. Credentials are named, never stored."""

    class Kind(models.TextChoices):
        LOCAL = "local", "Local directory"
        S3 = "s3", "S3 (or compatible)"

    name = models.CharField(max_length=64, unique=True, validators=[slug])
    kind = models.CharField(max_length=16, choices=Kind.choices)
    config = models.JSONField(
        default=dict,
        help_text="local: path. s3: bucket, prefix, endpoint_url, region, sse, access_key_env, secret_key_env",
    )

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """An S3 endpoint URL passes the rule of every outbound URL (core.outbound): no credentials in it (they are
        named by access_key_env / secret_key_env), no refused address."""
        endpoint = self.config.get("endpoint_url") if isinstance(self.config, dict) else None
        if isinstance(endpoint, str) and (refusal := outbound_url_refusal(endpoint, env_key="access_key_env")):
            raise ValidationError({"config": f"endpoint_url: {refusal}"})


class BackupPolicy(models.Model):
    """One database's backups: what engine, where, when (cron), and how long they are kept.

    Retention never deletes the newest good backup, a pinned one, or one a restore is using.
    """

    class Engine(models.TextChoices):
        PG_DUMP = "pg_dump", "Logical (pg_dump, custom format)"
        PG_DUMP_DIR = "pg_dump_dir", "Logical (pg_dump, directory format, parallel)"
        PGBACKREST = "pgbackrest", "Physical (pgBackRest: the whole cluster, WAL archived, any point in time)"

    class SetType(models.TextChoices):
        FULL = "full", "Full"
        DIFF = "diff", "Differential (since the last full)"
        INCR = "incr", "Incremental (since the last backup)"

    class Retention(models.TextChoices):
        AGE = "age", "By age (scheduled N days, manual M days)"
        CALENDAR = "calendar", "Calendar (last N daily, weekly, monthly)"

    name = models.CharField(max_length=64, unique=True, validators=[slug])
    cluster = models.ForeignKey("databases.Cluster", on_delete=models.PROTECT, related_name="backup_policies")
    dbname = models.CharField(max_length=63, help_text="Database to back up (physical backups take the whole cluster)")
    engine = models.CharField(max_length=16, choices=Engine.choices, default=Engine.PG_DUMP)
    compress = models.CharField(max_length=32, blank=True, help_text="pg_dump: 0-9; pgBackRest: lz4, zst, gz")
    jobs = models.PositiveSmallIntegerField(default=2, validators=[MinValueValidator(1), MaxValueValidator(16)])
    storage = models.ForeignKey(StorageTarget, on_delete=models.PROTECT, related_name="policies")
    copy_storage = models.ForeignKey(
        StorageTarget,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="copy_policies",
        help_text="pgBackRest: a second repository (e.g. S3 when the first is local); WAL is archived to both",
    )
    set_type = models.CharField(
        max_length=4, choices=SetType.choices, default=SetType.FULL, help_text="pgBackRest: what the schedule takes"
    )
    wal_rpo_seconds = models.PositiveIntegerField(
        default=900,
        validators=[MinValueValidator(10)],
        help_text="pgBackRest: the newest archived WAL may be this old (archive_timeout is a third of it, at least 10 s)",
    )
    archive_push_queue_max = models.CharField(
        max_length=16, blank=True, help_text="pgBackRest: WAL kept for a broken archive before it is dropped, e.g. 4GiB"
    )
    archive_state = models.JSONField(default=dict, blank=True, help_text="pgBackRest: what archiving last said")
    archive_state_at = models.DateTimeField(null=True, blank=True)
    schedule = models.CharField(max_length=100, default="0 2 * * *", validators=[validate_cron])
    enabled = models.BooleanField(default=True)
    retention = models.CharField(max_length=16, choices=Retention.choices, default=Retention.AGE)
    keep_scheduled_days = models.PositiveIntegerField(default=7, validators=[MinValueValidator(1)])
    keep_manual_days = models.PositiveIntegerField(default=30, validators=[MinValueValidator(1)])
    keep_daily = models.PositiveIntegerField(default=7)
    keep_weekly = models.PositiveIntegerField(default=4)
    keep_monthly = models.PositiveIntegerField(default=6)
    rpo_minutes = models.PositiveIntegerField(default=1440, validators=[MinValueValidator(1)])
    grace_minutes = models.PositiveIntegerField(default=60, help_text="Late by this much after the schedule: alert")
    next_run_at = models.DateTimeField(null=True, blank=True)
    verify = models.JSONField(
        default=list,
        blank=True,
        validators=[verify_queries_validate],
        help_text="Read-only queries a restored database must answer: [{name, sql, expect}] (see verification.py)",
    )
    drill_schedule = models.CharField(
        max_length=100,
        default=DEFAULT_DRILL_SCHEDULE,
        blank=True,
        validators=[validate_optional_cron],
        help_text="Cron schedule of restore drills (empty: none)",
    )
    next_drill_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "backup policies"
        constraints = [
            # one stanza per cluster: its WAL archive is the cluster's, whatever the databases
            models.UniqueConstraint(
                fields=["cluster"], condition=Q(engine="pgbackrest"), name="one_pgbackrest_policy_per_cluster"
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def target(self) -> str:
        return f"backup:{self.name}"

    @property
    def drill_target(self) -> str:
        return f"restore-drill:{self.name}"

    @property
    def is_physical(self) -> bool:
        return self.engine == self.Engine.PGBACKREST

    @property
    def subject(self) -> str:
        """What its backups hold, as the pages name it: `cluster/database`, or a physical policy's whole cluster."""
        return f"{self.cluster.name} · whole cluster" if self.is_physical else f"{self.cluster.name}/{self.dbname}"

    @property
    def archive_timeout_seconds(self) -> int:
        """PostgreSQL's archive_timeout for this RPO: a segment is switched and archived at least this often."""
        return max(10, self.wal_rpo_seconds // 3)

    def next_after(self, moment: datetime, schedule: str | None = None) -> datetime:
        return next_after(schedule or self.schedule, moment)

    def period_seconds(self, around: datetime | None = None) -> float:
        """The time between two scheduled runs (cron schedules need not be regular: take the next one)."""
        first = self.next_after(around or timezone.now())
        return (self.next_after(first) - first).total_seconds()


class Backup(models.Model):
    """One backup: its bytes in storage, their size and SHA-256, and the manifest beside them.

    `good` only once the stored object has been re-read and its size and checksum match.
    """

    class Kind(models.TextChoices):
        SCHEDULED = "scheduled", "Scheduled"
        MANUAL = "manual", "Manual"
        SAFETY = "safety", "Safety (before a restore)"

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        GOOD = "good", "Good"
        FAILED = "failed", "Failed"
        DELETED = "deleted", "Deleted"

    policy = models.ForeignKey(BackupPolicy, on_delete=models.PROTECT, related_name="backups")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    engine = models.CharField(max_length=16, choices=BackupPolicy.Engine.choices)
    storage = models.ForeignKey(StorageTarget, on_delete=models.PROTECT, related_name="backups")
    key = models.CharField(max_length=500, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING, db_index=True)
    size = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    server_version = models.CharField(max_length=100, blank=True)
    database_size = models.BigIntegerField(null=True, blank=True)
    lsn = models.CharField(max_length=32, blank=True)
    set_type = models.CharField(max_length=4, choices=BackupPolicy.SetType.choices, blank=True)
    repo = models.PositiveSmallIntegerField(null=True, blank=True, help_text="pgBackRest: the repository (repoN)")
    prior = models.CharField(max_length=64, blank=True, help_text="pgBackRest: the set a diff or incr builds on")
    wal_start = models.CharField(max_length=24, blank=True)
    wal_stop = models.CharField(max_length=24, blank=True)
    consistent_at = models.DateTimeField(
        null=True, blank=True, help_text="pgBackRest: the earliest moment this set restores to"
    )
    manifest = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    pinned = models.BooleanField(default=False)
    verified_at = models.DateTimeField(null=True, blank=True, help_text="Last verified restore (drills)")
    deleted_at = models.DateTimeField(null=True, blank=True)
    operation = models.OneToOneField(
        "core.Operation", null=True, blank=True, on_delete=models.SET_NULL, related_name="backup"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            # a pgBackRest set is checksummed file by file in its own manifest: its key is the set's label
            models.CheckConstraint(
                condition=~Q(status="good")
                | (Q(size__isnull=False) & ~Q(key="") & (~Q(sha256="") | Q(engine="pgbackrest"))),
                name="good_backup_has_size_checksum_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.policy.name} {self.started_at:%Y-%m-%d %H:%M} {self.kind} {self.status}"

    @property
    def is_physical(self) -> bool:
        return self.engine == BackupPolicy.Engine.PGBACKREST

    @property
    def label(self) -> str:
        """pgBackRest's name of the set (its key in the portal)."""
        return self.key if self.is_physical else ""

    @property
    def duration_seconds(self) -> float | None:
        return (self.finished_at - self.started_at).total_seconds() if self.finished_at else None

    @property
    def throughput_mb_s(self) -> float | None:
        seconds = self.duration_seconds
        return self.size / 1e6 / seconds if self.size and seconds else None


class Restore(models.Model):
    """One restore of a backup (the wizard, `manage.py restore`) or restore drill (the schedule): what was
    restored where, what the pre-flight and the verification found, and what it measured.

    The data is always restored into a database the portal created for it (`work_database`) and verified
    there. Replacing production swaps that database in only after it verified, keeping the old one renamed
    (`kept_database`) until a DBA drops it: a failed restore leaves production as it was. A drill's scratch
    database, and a failed restore's new one, are dropped by the operation's clean-up (the reaper's too).
    """

    class Kind(models.TextChoices):
        RESTORE = "restore", "Restore"
        DRILL = "drill", "Restore drill"
        LOSS_DRILL = "loss_drill", "Cluster-loss drill"

    class Situation(models.TextChoices):
        CORRUPTION = "corruption", "Data corruption"
        LOST_SERVER = "lost_server", "Lost server"
        VERIFICATION = "verification", "Verification only"

    class Destination(models.TextChoices):
        NEW_DATABASE = "new_database", "A new database on the managed server"
        OTHER_SERVER = "other_server", "Another server"
        REPLACE = "replace", "Replace the production database"
        SCRATCH = "scratch", "A scratch database, dropped afterwards"
        INSTANCE = "instance", "A scratch instance at the chosen point: look, then decide"

    class TargetType(models.TextChoices):
        LATEST = "latest", "The latest moment the archive holds"
        TIME = "time", "A date and time, to the second"
        NAME = "name", "A restore point"
        XID = "xid", "A transaction id"
        IMMEDIATE = "immediate", "The end of the backup itself"

    class Outcome(models.TextChoices):
        COPIED_BACK = "copied_back", "Tables copied back"
        REPLACED = "replaced", "Cluster replaced"
        DISCARDED = "discarded", "Discarded"
        EXPIRED = "expired", "Stopped after its time to live"

    class Status(models.TextChoices):
        DRAFT = "draft", "Being prepared"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        READY = "ready", "Ready: waiting for a decision"
        VERIFIED = "verified", "Verified"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        DONE = "done", "Done"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.RESTORE)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT, db_index=True)
    situation = models.CharField(max_length=16, choices=Situation.choices, blank=True)
    incident_at = models.DateTimeField(null=True, blank=True, help_text="When the data went bad (data-loss window)")
    policy = models.ForeignKey(BackupPolicy, on_delete=models.PROTECT, related_name="restores")
    backup = models.ForeignKey(Backup, null=True, blank=True, on_delete=models.PROTECT, related_name="restores")
    destination = models.CharField(max_length=16, choices=Destination.choices, blank=True)
    destination_cluster = models.ForeignKey(
        "databases.Cluster", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    destination_database = models.CharField(
        max_length=63, blank=True, help_text="The name the restored data ends up under"
    )
    work_database = models.CharField(max_length=63, blank=True, help_text="The database it is restored into first")
    work_created = models.BooleanField(
        default=False, help_text="The portal created the working database (or data directory): clean-up removes it"
    )
    kept_database = models.CharField(max_length=63, blank=True, help_text="The replaced database, renamed")
    kept_dropped_at = models.DateTimeField(null=True, blank=True)
    data_directory = models.CharField(max_length=500, blank=True, help_text="Physical backups: the new server's data")
    port = models.PositiveIntegerField(null=True, blank=True, help_text="Physical backups: the new server's port")
    safety_backup = models.ForeignKey(Backup, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    preflight = models.JSONField(default=list, blank=True)
    preflight_at = models.DateTimeField(null=True, blank=True)
    verification = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    requested_at = models.DateTimeField(null=True, blank=True, help_text="When it was asked to run (RTO starts)")
    started_at = models.DateTimeField(null=True, blank=True)
    restored_at = models.DateTimeField(null=True, blank=True)
    swapped_at = models.DateTimeField(null=True, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    target_type = models.CharField(max_length=16, choices=TargetType.choices, blank=True)
    target_value = models.CharField(max_length=200, blank=True, help_text="A restore point's name or a xid")
    target_time = models.DateTimeField(null=True, blank=True, help_text="The point in time recovery stops at")
    target_label = models.CharField(max_length=200, blank=True, help_text="How the DBA chose it, in words")
    recovered_to = models.DateTimeField(null=True, blank=True, help_text="The last transaction the instance replayed")
    recovered_lsn = models.CharField(max_length=32, blank=True)
    scratch_expires_at = models.DateTimeField(null=True, blank=True)
    scratch_warned_at = models.DateTimeField(null=True, blank=True)
    scratch_removed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, blank=True)
    copy_back = models.JSONField(default=dict, blank=True, help_text="Tables copied back, with counts before/after")
    marker_check = models.JSONField(default=dict, blank=True, help_text="Drills: marker rows present / absent")
    achieved_rpo_seconds = models.FloatField(null=True, blank=True, help_text="Committed seconds not recovered")
    session = models.IntegerField(null=True, blank=True, help_text="pgbackrest's process group while it runs")
    steps = models.JSONField(
        default=list,
        blank=True,
        help_text="Replacing a cluster: each step written before it acts (the reaper reads it)",
    )
    kept_data_directory = models.CharField(
        max_length=500, blank=True, help_text="Replacing a cluster: the old primary's data, kept until a DBA removes it"
    )
    rto_seconds = models.FloatField(null=True, blank=True, help_text="From the request to verified")
    data_loss_seconds = models.FloatField(null=True, blank=True, help_text="The backup's age when the incident began")
    error = models.TextField(blank=True)
    operation = models.OneToOneField(
        "core.Operation", null=True, blank=True, on_delete=models.SET_NULL, related_name="restore"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} of {self.policy.name} ({self.status})"

    @property
    def is_physical(self) -> bool:
        engine = self.backup.engine if self.backup else self.policy.engine
        return engine == BackupPolicy.Engine.PGBACKREST

    @property
    def kept_data_name(self) -> str:
        """The kept data directory's own name: what a DBA types to remove it."""
        return self.kept_data_directory.rstrip("/").rsplit("/", 1)[-1]

    @property
    def has_scratch_instance(self) -> bool:
        """A scratch server of this restore may still run (the portal started it and has not removed it)."""
        return bool(self.data_directory) and self.work_created and self.scratch_removed_at is None

    @property
    def operation_target(self) -> str:
        """The operation's target: two restores into one database (or one port) collide in the database."""
        if self.kind in (self.Kind.DRILL, self.Kind.LOSS_DRILL):
            return self.policy.drill_target
        if self.is_physical:
            return f"server:127.0.0.1:{self.port}"
        cluster = self.destination_cluster.name if self.destination_cluster else self.policy.cluster.name
        return f"database:{cluster}/{self.destination_database}"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def planned_work_database(self) -> str:
        """Where the data is restored first: a database of its own unless the destination is a new database."""
        if self.destination == self.Destination.REPLACE:  # always the policy's own database
            return _database_name(self.policy.dbname, f"__restore_{self.pk}")
        if self.kind in (self.Kind.DRILL, self.Kind.LOSS_DRILL):
            return _database_name(self.policy.dbname, f"__drill_{self.pk}")
        return self.destination_database

    @property
    def planned_kept_database(self) -> str:
        return _database_name(self.policy.dbname, f"__before_restore_{self.pk}")

    @property
    def duration_seconds(self) -> float | None:
        end = self.swapped_at or self.verified_at
        return (end - self.started_at).total_seconds() if end and self.started_at else None

    @property
    def verified_ok(self) -> bool | None:
        if not self.verification:
            return None
        return all(item.get("ok") for item in self.verification)


def _database_name(base: str, suffix: str) -> str:
    """`base` + `suffix` within PostgreSQL's 63-byte limit on names (the base is shortened)."""
    room = 63 - len(suffix.encode())
    shortened = base.encode()[:room].decode(errors="ignore")
    return shortened + suffix


class RestorePoint(models.Model):
    """A named point in a cluster's WAL (`pg_create_restore_point`), made before a risky change: recovery can stop
    exactly there."""

    class Source(models.TextChoices):
        WEB = "web", "The portal"
        CLI = "cli", "manage.py restore_point"
        API = "api", "The HTTP API (a deploy pipeline)"
        DRILL = "drill", "A drill"

    cluster = models.ForeignKey("databases.Cluster", on_delete=models.CASCADE, related_name="restore_points")
    name = models.CharField(max_length=63)
    lsn = models.CharField(max_length=32)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    source = models.CharField(max_length=8, choices=Source.choices)
    note = models.CharField(max_length=200, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["cluster", "name"], name="restore_point_name_unique")]

    def __str__(self) -> str:
        return f"{self.cluster.name}: {self.name} at {self.lsn}"
